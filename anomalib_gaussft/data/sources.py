# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""The demo categories: which scikit-image image each one is made from, and the random views of it.

Every image ships inside the scikit-image wheel and is CC0 or public domain (:data:`DEMO_SOURCES` records the license
and provenance). Texture categories are random rotated, flipped and scaled crops of a large texture
(:func:`texture_view`); object categories show the same aligned object with a few pixels of jitter
(:func:`object_view`). :func:`photometric` adds brightness/contrast jitter.

Example:
    >>> DEMO_CATEGORIES
    ('brick', 'gravel', 'grass', 'coffee', 'retina', 'cat')
    >>> DEMO_SOURCES["cat"].skimage_name, DEMO_SOURCES["cat"].kind, DEMO_SOURCES["cat"].license
    ('chelsea', 'object', 'CC0-1.0')
    >>> source_image("brick", 64).shape
    (107, 107, 1)

"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType, ModuleType
from typing import Literal

import cv2
import numpy as np
from numpy.typing import NDArray

__all__ = [
    "DEFAULT_CATEGORIES",
    "DEMO_CATEGORIES",
    "DEMO_SOURCES",
    "INSTALL_HINT",
    "DemoSource",
    "check_category",
    "import_skimage_data",
    "object_view",
    "photometric",
    "quantize",
    "source_image",
    "texture_view",
    "warp",
]

#: How to install what the demo dataset needs.
INSTALL_HINT = "pip install 'anomalib-gaussft[demo]'"


@dataclass(frozen=True)
class DemoSource:
    """Provenance and rendering recipe of one demo category.

    Attributes:
        skimage_name: Name of the ``skimage.data`` function that loads the image offline.
        kind: ``"texture"`` (random crops of a large texture) or ``"object"`` (one aligned object with jitter).
        license: License of the image, as stated in its scikit-image docstring.
        source: Where scikit-image took the image from, as stated in its docstring.
        defects: Names of the defect folders written under ``test/`` and ``ground_truth/``.
        crop: For objects, ``(top, left, height, width)`` of the source region in source pixels; ``None`` keeps the
            whole image.
        roi: ``(top, left, bottom, right)`` fractions of the output image in which defects are centred.

    """

    skimage_name: str
    kind: Literal["texture", "object"]
    license: str
    source: str
    defects: tuple[str, ...]
    crop: tuple[int, int, int, int] | None = None
    roi: tuple[float, float, float, float] = (0.12, 0.12, 0.88, 0.88)


_TEXTURE_DEFECTS = ("crack", "hole", "patch", "stain")
_OBJECT_DEFECTS = ("missing", "patch", "scratch", "stain")

#: License and source of every image used, taken from the docstrings of ``skimage.data`` (scikit-image 0.26).
#: Only images that load offline from the scikit-image wheel and are CC0 or public domain are used. Left out on
#: purpose: ``coins`` (Brooklyn Museum, only "no known copyright restrictions", not an explicit CC0/PD grant),
#: ``astronaut`` (public domain, but a portrait of a person), ``moon``/``page``/``colorwheel``/``logo`` (no license
#: stated), and ``eagle``, ``skin``, ``lily``, ``kidney``, ``brain``, ``palisades_of_vogt``, ``human_mitosis``,
#: ``nickel_solidification``, ``protein_transport``, ``vortex`` (not in the wheel: they need ``pooch`` and network).
DEMO_SOURCES: Mapping[str, DemoSource] = MappingProxyType(
    {
        "brick": DemoSource(
            skimage_name="brick",
            kind="texture",
            license="CC0-1.0",
            source="CC0Textures 'Bricks25' (https://cc0textures.com/view.php?tex=Bricks25), via skimage.data.brick",
            defects=_TEXTURE_DEFECTS,
        ),
        "gravel": DemoSource(
            skimage_name="gravel",
            kind="texture",
            license="CC0-1.0",
            source="CC0Textures 'Gravel04' (https://cc0textures.com/view.php?tex=Gravel04), via skimage.data.gravel",
            defects=_TEXTURE_DEFECTS,
        ),
        "grass": DemoSource(
            skimage_name="grass",
            kind="texture",
            license="CC0-1.0",
            source="DeviantArt linolafett 'Grass-01' (https://www.deviantart.com/linolafett/art/Grass-01-434853879), "
            "via skimage.data.grass",
            defects=_TEXTURE_DEFECTS,
        ),
        "coffee": DemoSource(
            skimage_name="coffee",
            kind="object",
            license="CC0-1.0",
            source="Photograph by Rachel Michetti, courtesy of Pikolo Espresso Bar, via skimage.data.coffee",
            defects=_OBJECT_DEFECTS,
            crop=(0, 80, 400, 400),
            roi=(0.2, 0.12, 0.9, 0.88),
        ),
        "retina": DemoSource(
            skimage_name="retina",
            kind="object",
            license="CC0-1.0",
            source="Mikael Haggstrom, 'Fundus photograph of normal left eye' (Wikimedia Commons), "
            "via skimage.data.retina",
            defects=_OBJECT_DEFECTS,
            roi=(0.22, 0.22, 0.78, 0.78),
        ),
        "cat": DemoSource(
            skimage_name="chelsea",
            kind="object",
            license="CC0-1.0",
            source="Photograph of Chelsea the cat by Stefan van der Walt, via skimage.data.chelsea",
            defects=_OBJECT_DEFECTS,
            crop=(0, 90, 300, 300),
            roi=(0.15, 0.15, 0.85, 0.85),
        ),
    }
)

#: Names of the categories :func:`generate_demo_dataset` can write.
DEMO_CATEGORIES: tuple[str, ...] = tuple(DEMO_SOURCES)

#: Categories the demo and the benchmark use by default: one texture and two objects.
DEFAULT_CATEGORIES: tuple[str, ...] = ("brick", "coffee", "cat")


def check_category(category: str) -> None:
    """Raise a ``ValueError`` listing the valid categories if ``category`` is not one of them.

    Args:
        category: A category name.

    Example:
        >>> check_category("bottle")
        Traceback (most recent call last):
        ...
        ValueError: Unknown demo category 'bottle'. Valid categories: brick, gravel, grass, coffee, retina, cat.

    """
    if category not in DEMO_SOURCES:
        msg = f"Unknown demo category {category!r}. Valid categories: {', '.join(DEMO_CATEGORIES)}."
        raise ValueError(msg)


# ----------------------------------------------------------------------------------------------------------------------
# Source images
# ----------------------------------------------------------------------------------------------------------------------
def import_skimage_data() -> ModuleType:
    """Import ``skimage.data``, or raise an ``ImportError`` that says how to install scikit-image.

    Returns:
        The ``skimage.data`` module.

    Raises:
        ImportError: If scikit-image is not installed (the message holds :data:`INSTALL_HINT`).

    """
    try:
        from skimage import data
    except ImportError as err:
        msg = (
            "The demo dataset needs scikit-image (it uses the CC0/public-domain images bundled with it). "
            f"Install it with: {INSTALL_HINT}"
        )
        raise ImportError(msg) from err
    return data


@lru_cache(maxsize=16)
def source_image(category: str, image_size: int) -> NDArray[np.float32]:
    """Load and pre-scale the source image of ``category`` as float32 ``(H, W, C)`` in ``[0, 255]`` (cached).

    Textures are area-downscaled so that a crop of ~60% of the side maps about 1:1 onto ``image_size``; objects are
    cropped to their square region and resized to ``image_size``.

    Args:
        category: One of :data:`DEMO_CATEGORIES`.
        image_size: Side of the images that will be rendered from it.

    Returns:
        A read-only array; ``C`` is 1 for the grey-level textures and 3 for the colour objects.

    Raises:
        ImportError: If scikit-image is not installed.
        RuntimeError: If the installed scikit-image cannot load the image offline.

    Example:
        >>> source_image("coffee", 64).shape
        (64, 64, 3)

    """
    spec = DEMO_SOURCES[category]
    data = import_skimage_data()
    try:
        image = np.asarray(getattr(data, spec.skimage_name)())
    except Exception as err:  # e.g. a future scikit-image moving the file out of the wheel (needs pooch + network)
        msg = f"Could not load skimage.data.{spec.skimage_name}() offline for demo category {category!r}: {err}"
        raise RuntimeError(msg) from err
    if image.ndim == 3:
        image = image[..., :3]
    if spec.crop is not None:
        top, left, height, width = spec.crop
        image = image[top : top + height, left : left + width]
    image = np.ascontiguousarray(image.astype(np.float32))
    if spec.kind == "texture":
        side = min(image.shape[:2])
        target = round(image_size / 0.6)
        if target < side:
            scale = target / side
            size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    else:
        interp = cv2.INTER_AREA if image_size < min(image.shape[:2]) else cv2.INTER_CUBIC
        image = np.clip(cv2.resize(image, (image_size, image_size), interpolation=interp), 0, 255)
    image = _as_hwc(image)
    image.setflags(write=False)
    return image


def _as_hwc(image: NDArray[np.float32]) -> NDArray[np.float32]:
    """Give a grey-level ``(H, W)`` image a channel axis."""
    return image[..., None] if image.ndim == 2 else image


def warp(image: NDArray[np.float32], matrix: NDArray[np.float64], size: int) -> NDArray[np.float32]:
    """Warp with an inverse (destination -> source) affine map, reflecting at the border.

    Args:
        image: ``(H, W, C)`` float32 image.
        matrix: ``2 x 3`` affine map from output to input coordinates.
        size: Side of the square output.

    Returns:
        The ``(size, size, C)`` warped image.

    Example:
        >>> image = np.arange(16, dtype=np.float32).reshape(4, 4, 1)
        >>> shift = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])  # output (x, y) reads input (x + 1, y)
        >>> warp(image, shift, 4)[0, :, 0].tolist()
        [1.0, 2.0, 3.0, 2.0]

    """
    out = cv2.warpAffine(
        image,
        matrix,
        (size, size),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REFLECT_101,
    )
    return _as_hwc(out)


def texture_view(
    source: NDArray[np.float32],
    size: int,
    rng: np.random.Generator,
    *,
    max_angle: float = 10.0,
    scale_range: tuple[float, float] = (0.9, 1.1),
) -> NDArray[np.float32]:
    """Random rotated, flipped, scaled crop of a texture, fully inside the texture.

    Args:
        source: The texture from :func:`source_image`.
        size: Side of the square output.
        rng: Random stream (consumed in a fixed order).
        max_angle: Largest rotation in degrees.
        scale_range: Range of the random scale factor around the 1:1 crop.

    Returns:
        The ``(size, size, C)`` view, a new array.

    """
    height, width = source.shape[:2]
    side = min(height, width)
    scale = 0.6 * side / size * rng.uniform(*scale_range)
    angle = np.deg2rad(rng.uniform(-max_angle, max_angle))
    flip_x, flip_y = rng.choice([-1.0, 1.0], size=2)
    cos, sin = np.cos(angle), np.sin(angle)
    linear = scale * np.array([[cos, -sin], [sin, cos]]) @ np.diag([flip_x, flip_y])
    half = 0.5 * size * scale * (abs(cos) + abs(sin))
    half = min(half, 0.5 * side - 1.0)
    center = np.array([rng.uniform(half, width - half), rng.uniform(half, height - half)])
    offset = center - linear @ np.array([size / 2.0, size / 2.0])
    return warp(source, np.hstack([linear, offset[:, None]]), size)


def object_view(base: NDArray[np.float32], size: int, rng: np.random.Generator) -> NDArray[np.float32]:
    """Return the aligned object with a few pixels of shift, a small rotation and a small scale change.

    Args:
        base: The object from :func:`source_image`, already ``size`` pixels square.
        size: Side of the square output.
        rng: Random stream (consumed in a fixed order).

    Returns:
        The ``(size, size, C)`` view, a new array.

    """
    angle = rng.uniform(-2.0, 2.0)
    scale = rng.uniform(0.98, 1.02)
    shift = rng.uniform(-0.02, 0.02, size=2) * size
    matrix = cv2.getRotationMatrix2D((size / 2.0, size / 2.0), angle, scale)
    matrix[:, 2] += shift
    return warp(base, matrix, size)


def photometric(image: NDArray[np.float32], rng: np.random.Generator, strength: float) -> NDArray[np.float32]:
    """Random brightness (gain) and contrast change of up to ``strength``, in place.

    Args:
        image: A fresh float32 image; it is overwritten.
        rng: Random stream.
        strength: Largest relative change, e.g. ``0.05``.

    Returns:
        ``image``.

    """
    gain = rng.uniform(1.0 - strength, 1.0 + strength)
    contrast = rng.uniform(1.0 - strength, 1.0 + strength)
    mean = float(image.mean())
    image *= contrast * gain  # ((image - mean) * contrast + mean) * gain, in place on the fresh warp output
    image += mean * (1.0 - contrast) * gain
    return image


def quantize(image: NDArray[np.float32]) -> NDArray[np.uint8]:
    """Round to the nearest grey level and saturate; ``image`` is a temporary and is overwritten.

    Args:
        image: Float image in about ``[0, 255]``.

    Returns:
        The ``uint8`` image.

    Example:
        >>> quantize(np.array([-3.0, 0.4, 0.6, 254.5, 300.0], dtype=np.float32)).tolist()
        [0, 0, 1, 254, 255]

    """
    np.rint(image, out=image)
    np.clip(image, 0, 255, out=image)
    return image.astype(np.uint8)
