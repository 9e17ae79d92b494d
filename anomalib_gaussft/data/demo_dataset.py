# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""Small offline demo dataset in the MVTec AD layout, built from images bundled with scikit-image.

The generator turns a handful of real photographs and textures that ship inside the scikit-image wheel (all CC0 or
public domain, see :data:`DEMO_SOURCES`) into an anomaly-detection dataset with the exact folder layout of MVTec AD::

    <root>/<category>/train/good/000.png
    <root>/<category>/test/good/000.png
    <root>/<category>/test/<defect>/000.png
    <root>/<category>/ground_truth/<defect>/000_mask.png

Texture categories (``brick``, ``gravel``, ``grass``) are random crops of a large texture with flips, small
rotations, scale and brightness/contrast jitter, so every normal image is distinct. Object categories (``coffee``,
``retina``, ``cat``) show the same aligned object with a few pixels of shift, a small rotation, photometric jitter and
sensor noise, like the object categories of MVTec AD.

Defects are synthetic but drawn on the real images: ``crack``, ``hole``, ``patch`` (CutPaste-like foreign texture)
and ``stain`` for textures; ``missing``, ``patch`` (content pasted from elsewhere in the image), ``scratch`` and
``stain`` for objects. They cover roughly 0.5% to 5% of the image. Every ground-truth mask is exact: it is 255
precisely on the pixels whose stored value differs from the defect-free rendering of the same sample (which
:func:`render_sample` returns) and 0 elsewhere.

Everything is deterministic given ``seed``: each image has its own random stream derived from
``(seed, category, split, label, index)``, so changing a count does not change the other images.

The folders load with anomalib's own MVTec AD datamodule; anomalib does not check the category name against the 15
official ones (it only downloads MVTec AD when ``<root>/<category>`` is missing).

Example:
    >>> from anomalib.data import MVTecAD
    >>> from anomalib_gaussft.data.demo_dataset import generate_demo_dataset
    >>> root = generate_demo_dataset("./datasets/demo", ["brick", "coffee"], seed=0)
    >>> datamodule = MVTecAD(root=root, category="brick")
    >>> datamodule.setup()
    >>> len(datamodule.train_data)
    60

    From the command line (once wired as a subcommand)::

        anomalib-gaussft demo-data --root ./datasets/demo --categories brick coffee --seed 0

"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType, ModuleType
from typing import Literal

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "DEFAULT_CATEGORIES",
    "DEMO_CATEGORIES",
    "DEMO_SOURCES",
    "DemoSource",
    "add_arguments",
    "generate_demo_dataset",
    "render_sample",
    "run",
]

_INSTALL_HINT = "pip install 'anomalib-gaussft[demo]'"
_MARKER = ".demo_data.json"
_FORMAT_VERSION = 1
_MIN_IMAGE_SIZE = 32
_MAX_IMAGE_SIZE = 1024


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
#: Categories the demo, the benchmark and the studies run by default: one texture and two objects.
DEFAULT_CATEGORIES: tuple[str, ...] = ("brick", "coffee", "cat")


# ----------------------------------------------------------------------------------------------------------------------
# Source images
# ----------------------------------------------------------------------------------------------------------------------
def _import_skimage_data() -> ModuleType:
    try:
        from skimage import data
    except ImportError as err:
        msg = (
            "The demo dataset needs scikit-image (it uses the CC0/public-domain images bundled with it). "
            f"Install it with: {_INSTALL_HINT}"
        )
        raise ImportError(msg) from err
    return data


@lru_cache(maxsize=16)
def _source_image(category: str, image_size: int) -> NDArray[np.float32]:
    """Load and pre-scale the source image of ``category`` as float32 ``(H, W, C)`` in ``[0, 255]``.

    Textures are area-downscaled so that a crop of ~60% of the side maps about 1:1 onto ``image_size``; objects are
    cropped to their square region and resized to ``image_size``.
    """
    import cv2

    spec = DEMO_SOURCES[category]
    data = _import_skimage_data()
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
    return image[..., None] if image.ndim == 2 else image


def _warp(image: NDArray[np.float32], matrix: NDArray[np.float64], size: int) -> NDArray[np.float32]:
    """Warp with an inverse (destination -> source) affine map, reflecting at the border."""
    import cv2

    out = cv2.warpAffine(
        image,
        matrix,
        (size, size),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REFLECT_101,
    )
    return _as_hwc(out)


def _texture_view(
    source: NDArray[np.float32],
    size: int,
    rng: np.random.Generator,
    *,
    max_angle: float = 10.0,
    scale_range: tuple[float, float] = (0.9, 1.1),
) -> NDArray[np.float32]:
    """Random rotated, flipped, scaled crop of a texture, fully inside the texture."""
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
    return _warp(source, np.hstack([linear, offset[:, None]]), size)


def _object_view(base: NDArray[np.float32], size: int, rng: np.random.Generator) -> NDArray[np.float32]:
    """Return the aligned object with a few pixels of shift, a small rotation and a small scale change."""
    import cv2

    angle = rng.uniform(-2.0, 2.0)
    scale = rng.uniform(0.98, 1.02)
    shift = rng.uniform(-0.02, 0.02, size=2) * size
    matrix = cv2.getRotationMatrix2D((size / 2.0, size / 2.0), angle, scale)
    matrix[:, 2] += shift
    return _warp(base, matrix, size)


def _photometric(image: NDArray[np.float32], rng: np.random.Generator, strength: float) -> NDArray[np.float32]:
    gain = rng.uniform(1.0 - strength, 1.0 + strength)
    contrast = rng.uniform(1.0 - strength, 1.0 + strength)
    mean = float(image.mean())
    image *= contrast * gain  # ((image - mean) * contrast + mean) * gain, in place on the fresh warp output
    image += mean * (1.0 - contrast) * gain
    return image


# ----------------------------------------------------------------------------------------------------------------------
# Defects: each returns (layer, alpha, support); the defective image is clean * (1 - alpha) + layer * alpha on support.
# ----------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Context:
    category: str
    spec: DemoSource
    size: int
    source: NDArray[np.float32]


_Defect = tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.bool_]]


def _roi_point(ctx: _Context, rng: np.random.Generator, margin: float = 0.0) -> NDArray[np.float64]:
    top, left, bottom, right = ctx.spec.roi
    lo_x, hi_x = left * ctx.size + margin, right * ctx.size - margin
    lo_y, hi_y = top * ctx.size + margin, bottom * ctx.size - margin
    x = rng.uniform(lo_x, max(lo_x, hi_x))
    y = rng.uniform(lo_y, max(lo_y, hi_y))
    return np.array([x, y])


def _radius_for_area(size: int, rng: np.random.Generator, low: float, high: float) -> float:
    """Radius of a disc covering a random fraction in ``[low, high]`` of the image."""
    return float(np.sqrt(rng.uniform(low, high) * size * size / np.pi))


def _blob(size: int, center: NDArray[np.float64], radius: float, rng: np.random.Generator) -> NDArray[np.bool_]:
    """Irregular, smooth-ish closed blob (random star polygon, stretched and rotated)."""
    import cv2

    n = int(rng.integers(9, 15))
    angles = (np.arange(n) + rng.uniform(-0.3, 0.3, n)) * (2.0 * np.pi / n)
    radii = radius * rng.uniform(0.65, 1.25, n)
    radii = (radii + np.roll(radii, 1) + np.roll(radii, -1)) / 3.0
    stretch = rng.uniform(0.7, 1.45)
    theta = rng.uniform(0.0, np.pi)
    pts = np.stack([radii * np.cos(angles) * stretch, radii * np.sin(angles) / stretch], axis=1)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    pts = pts @ rot.T + center
    canvas = np.zeros((size, size), np.uint8)
    cv2.fillPoly(canvas, [np.round(pts * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
    return canvas.astype(bool)


def _soft(support: NDArray[np.bool_], sigma: float) -> NDArray[np.float32]:
    import cv2

    return cv2.GaussianBlur(support.astype(np.float32), (0, 0), sigma)


def _random_walk(
    start: NDArray[np.float64], heading: float, steps: int, step: float, turn: float, rng: np.random.Generator
) -> NDArray[np.float64]:
    pts = [start]
    for _ in range(steps):
        heading += rng.uniform(-turn, turn)
        pts.append(pts[-1] + step * np.array([np.cos(heading), np.sin(heading)]))
    return np.array(pts)


def _crack(clean: NDArray[np.float32], ctx: _Context, rng: np.random.Generator) -> _Defect:
    import cv2

    size = ctx.size
    thickness = max(1, round(size / 96))
    steps = int(rng.integers(10, 16))
    step = size * rng.uniform(0.025, 0.035)
    start = _roi_point(ctx, rng, margin=0.1 * size)
    heading = rng.uniform(0.0, 2.0 * np.pi)
    main = _random_walk(start, heading, steps, step, np.deg2rad(35), rng)
    k = int(rng.integers(2, steps - 2))
    branch = _random_walk(
        main[k], heading + rng.choice([-1.0, 1.0]) * rng.uniform(0.6, 1.2), steps // 2, step * 0.8, np.deg2rad(35), rng
    )
    canvas = np.zeros((size, size), np.uint8)
    for line, width in ((main, thickness + 1), (branch, thickness)):
        cv2.polylines(canvas, [np.round(line * 16).astype(np.int32)], False, 255, width, cv2.LINE_AA, shift=4)
    alpha = canvas.astype(np.float32) / 255.0
    support = alpha > 0.25
    layer = clean * rng.uniform(0.1, 0.3)
    return layer, alpha, support


def _hole(clean: NDArray[np.float32], ctx: _Context, rng: np.random.Generator) -> _Defect:
    size = ctx.size
    radius = _radius_for_area(size, rng, 0.006, 0.03)
    blob = _blob(size, _roi_point(ctx, rng, margin=radius), radius, rng)
    alpha = _soft(blob, max(0.6, radius / 8))
    support = alpha > 0.2
    # Dark pit with a little of the original structure and a shading gradient across it.
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    direction = rng.uniform(0.0, 2.0 * np.pi)
    shade = 1.0 + 0.3 * np.sin(direction + (xs * np.cos(direction) + ys * np.sin(direction)) / max(radius, 1.0))
    layer = clean * rng.uniform(0.12, 0.3) * shade[..., None] + rng.uniform(0.0, 12.0)
    return layer, np.minimum(alpha * 1.3, 1.0), support


def _stain(clean: NDArray[np.float32], ctx: _Context, rng: np.random.Generator) -> _Defect:
    size = ctx.size
    radius = _radius_for_area(size, rng, 0.006, 0.028)
    blob = _blob(size, _roi_point(ctx, rng, margin=radius), radius, rng)
    strength = rng.uniform(0.45, 0.75)
    alpha = strength * _soft(blob, max(0.8, radius / 4))
    support = alpha > 0.12 * strength
    channels = clean.shape[-1]
    if rng.random() < 0.6:  # dark, tinted stain (oil, rust, coffee): multiplicative
        tint = rng.uniform(0.25, 0.6, channels) if channels > 1 else np.full(1, rng.uniform(0.25, 0.5))
        layer = clean * tint.astype(np.float32)
    else:  # light or coloured deposit (dust, paint): towards a flat colour
        colour = rng.uniform(150.0, 255.0, channels) if channels > 1 else np.full(1, rng.uniform(200.0, 255.0))
        layer = np.broadcast_to(colour.astype(np.float32), clean.shape)
    return layer, alpha, support


def _rotated_rect(
    size: int, center: NDArray[np.float64], rng: np.random.Generator, low: float, high: float
) -> NDArray[np.bool_]:
    import cv2

    area = rng.uniform(low, high) * size * size
    aspect = rng.uniform(0.4, 2.5)
    width, height = np.sqrt(area * aspect), np.sqrt(area / aspect)
    box = cv2.boxPoints(((float(center[0]), float(center[1])), (float(width), float(height)), rng.uniform(0, 180)))
    canvas = np.zeros((size, size), np.uint8)
    cv2.fillPoly(canvas, [np.round(box * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
    return canvas.astype(bool)


def _patch(clean: NDArray[np.float32], ctx: _Context, rng: np.random.Generator) -> _Defect:
    size = ctx.size
    radius = _radius_for_area(size, rng, 0.01, 0.04)
    center = _roi_point(ctx, rng, margin=radius)
    support = _rotated_rect(size, center, rng, 0.01, 0.04)
    if ctx.spec.kind == "texture":
        # Foreign piece of the same material: other place, any orientation, clearly different scale and brightness.
        scale = rng.uniform(0.55, 0.75) if rng.random() < 0.5 else rng.uniform(1.4, 1.8)
        layer = _texture_view(ctx.source, size, rng, max_angle=180.0, scale_range=(scale, scale))
    else:
        # CutPaste: content from another place of the same image.
        import cv2

        offset = rng.uniform(0.2, 0.4, size=2) * size * rng.choice([-1.0, 1.0], size=2)
        matrix = np.array([[1.0, 0.0, offset[0]], [0.0, 1.0, offset[1]]])
        if rng.random() < 0.5:
            matrix = cv2.getRotationMatrix2D((float(center[0]), float(center[1])), 180.0, 1.0)
            matrix[:, 2] += offset
        layer = _warp(clean, matrix, size)
    gain = rng.uniform(0.8, 0.92) if rng.random() < 0.5 else rng.uniform(1.08, 1.2)
    return layer * gain, support.astype(np.float32), support


def _scratch(clean: NDArray[np.float32], ctx: _Context, rng: np.random.Generator) -> _Defect:
    import cv2

    size = ctx.size
    length = size * rng.uniform(0.3, 0.55)
    center = _roi_point(ctx, rng)
    heading = rng.uniform(0.0, 2.0 * np.pi)
    bend = rng.uniform(-0.4, 0.4)
    t = np.linspace(-0.5, 0.5, 24)
    angles = heading + bend * t * 2.0
    steps = np.stack([np.cos(angles), np.sin(angles)], axis=1) * (length / len(t))
    pts = np.cumsum(steps, axis=0)
    pts = pts - pts.mean(axis=0) + center
    canvas = np.zeros((size, size), np.uint8)
    thickness = max(1, round(size / 110))
    cv2.polylines(canvas, [np.round(pts * 16).astype(np.int32)], False, 255, thickness, cv2.LINE_AA, shift=4)
    alpha = rng.uniform(0.7, 0.95) * canvas.astype(np.float32) / 255.0
    support = alpha > 0.2
    # Bright scratch into the surface, or a dark one.
    layer = np.full_like(clean, rng.uniform(225.0, 255.0)) if rng.random() < 0.6 else clean * rng.uniform(0.1, 0.3)
    return layer, alpha, support


def _missing(clean: NDArray[np.float32], ctx: _Context, rng: np.random.Generator) -> _Defect:
    """Remove a piece of the object: the background (taken from an image corner) shows through."""
    size = ctx.size
    radius = _radius_for_area(size, rng, 0.008, 0.035)
    center = _roi_point(ctx, rng, margin=radius)
    support = _blob(size, center, radius, rng)
    corner = np.array([0.1, 0.1]) * size
    corner = np.where(rng.random(2) < 0.5, corner, size - corner)
    offset = corner - center
    matrix = np.array([[1.0, 0.0, offset[0]], [0.0, 1.0, offset[1]]])
    layer = _warp(clean, matrix, size)
    return layer, support.astype(np.float32), support


_DEFECTS: Mapping[str, Callable[[NDArray[np.float32], _Context, np.random.Generator], _Defect]] = MappingProxyType(
    {
        "crack": _crack,
        "hole": _hole,
        "missing": _missing,
        "patch": _patch,
        "scratch": _scratch,
        "stain": _stain,
    }
)


# ----------------------------------------------------------------------------------------------------------------------
# Rendering one sample
# ----------------------------------------------------------------------------------------------------------------------
def _stream(seed: int, category: str, split: str, label: str, index: int) -> np.random.Generator:
    key = [seed, zlib.crc32(category.encode()), zlib.crc32(split.encode()), zlib.crc32(label.encode()), index]
    return np.random.default_rng(np.random.SeedSequence(key))


def _quantize(image: NDArray[np.float32]) -> NDArray[np.uint8]:
    """Round to the nearest grey level and saturate; ``image`` is a temporary and is overwritten."""
    np.rint(image, out=image)
    np.clip(image, 0, 255, out=image)
    return image.astype(np.uint8)


def _check_category(category: str) -> None:
    if category not in DEMO_SOURCES:
        msg = f"Unknown demo category {category!r}. Valid categories: {', '.join(DEMO_CATEGORIES)}."
        raise ValueError(msg)


def render_sample(
    category: str,
    split: str,
    label: str,
    index: int,
    *,
    image_size: int = 256,
    seed: int = 0,
) -> tuple[NDArray[np.uint8], NDArray[np.uint8], NDArray[np.uint8]]:
    """Render one sample of the demo dataset exactly as :func:`generate_demo_dataset` writes it.

    Args:
        category: One of :data:`DEMO_CATEGORIES`.
        split: ``"train"`` or ``"test"``.
        label: ``"good"`` or, for ``split="test"``, one of the category's defect names.
        index: Index of the image within its folder (``000.png`` is index 0).
        image_size: Side of the square image in pixels.
        seed: Dataset seed.

    Returns:
        ``(clean, image, mask)``: the defect-free rendering and the stored image, both ``uint8`` of shape
        ``(H, W)`` (grey-level categories) or ``(H, W, 3)``, and the ``uint8`` ``(H, W)`` mask, 255 exactly where
        ``image != clean`` in any channel and 0 elsewhere. For ``"good"`` samples ``image`` equals ``clean`` and the
        mask is all zero.

    Raises:
        ValueError: If the category, split, label, index or size is invalid.

    """
    _check_category(category)
    _check_size(image_size)
    spec = DEMO_SOURCES[category]
    if split not in ("train", "test"):
        msg = f"split must be 'train' or 'test', got {split!r}."
        raise ValueError(msg)
    if label != "good" and (split != "test" or label not in spec.defects):
        msg = f"label for {split!r} of {category!r} must be 'good'" + (
            f" or one of {', '.join(spec.defects)}" if split == "test" else ""
        )
        msg += f", got {label!r}."
        raise ValueError(msg)
    if index < 0:
        msg = f"index must be >= 0, got {index}."
        raise ValueError(msg)

    rng = _stream(seed, category, split, label, index)
    source = _source_image(category, image_size)
    if spec.kind == "texture":
        clean = _photometric(_texture_view(source, image_size, rng), rng, 0.08)
        noise_sigma = 1.0
    else:
        clean = _photometric(_object_view(source, image_size, rng), rng, 0.05)
        noise_sigma = 1.5
    clean = clean.astype(np.float32, copy=False)

    noise = rng.standard_normal((image_size, image_size, 1), dtype=np.float32)  # luminance noise
    noise *= noise_sigma
    clean_u8 = _quantize(clean + noise)
    image_u8 = clean_u8.copy()
    mask = np.zeros((image_size, image_size), np.uint8)
    if label != "good":
        ctx = _Context(category=category, spec=spec, size=image_size, source=source)
        layer, alpha, support = _DEFECTS[label](clean, ctx, rng)
        a = alpha[support][:, None]
        before = clean[support]
        after = before * (1.0 - a) + layer[support] * a
        changed = _quantize(after + noise[support])
        # Make the mask exact: every pixel of the defect support must differ from the clean image after
        # quantisation (outside the support the two are bit-identical by construction). Nudge the unchanged ones by
        # one grey level in the direction the defect pushed them, away from the saturated end.
        reference = clean_u8[support]
        unchanged = np.all(changed == reference, axis=-1)
        if unchanged.any():
            base = reference[unchanged].astype(np.int16)
            step = np.where((after - before)[unchanged] < 0, -1, 1).astype(np.int16)
            nudged = base + step
            nudged = np.where((nudged < 0) | (nudged > 255), base - step, nudged)
            changed[unchanged] = nudged.astype(np.uint8)
        image_u8[support] = changed
        mask[np.any(image_u8 != clean_u8, axis=-1)] = 255

    if clean_u8.shape[-1] == 1:
        return clean_u8[..., 0], image_u8[..., 0], mask
    return clean_u8, image_u8, mask


# ----------------------------------------------------------------------------------------------------------------------
# Writing the dataset
# ----------------------------------------------------------------------------------------------------------------------
@dataclass
class _CategoryReport:
    category: str
    path: Path
    counts: dict[str, int] = field(default_factory=dict)
    skipped: bool = False

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def _check_size(image_size: int) -> None:
    if (
        isinstance(image_size, bool)
        or not isinstance(image_size, (int, np.integer))
        or not _MIN_IMAGE_SIZE <= image_size <= _MAX_IMAGE_SIZE
    ):
        msg = f"image_size must be between {_MIN_IMAGE_SIZE} and {_MAX_IMAGE_SIZE} pixels, got {image_size}."
        raise ValueError(msg)


def _write_png(path: Path, image: NDArray[np.uint8]) -> None:
    import cv2

    array = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    params = [cv2.IMWRITE_PNG_COMPRESSION, 1]
    if hasattr(cv2, "IMWRITE_PNG_FILTER"):  # OpenCV >= 4.10: a fixed filter is much faster than adaptive filtering
        params += [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP]
    ok, buffer = cv2.imencode(".png", array, params)
    if not ok:
        msg = f"Could not encode {path} as PNG."
        raise OSError(msg)
    path.write_bytes(buffer.tobytes())


def _name_width(count: int) -> int:
    return max(3, len(str(max(count - 1, 0))))


def _plan(spec: DemoSource, n_train: int, n_test_good: int, n_test_defect: int) -> list[tuple[str, str, int]]:
    folders = [("train", "good", n_train), ("test", "good", n_test_good)]
    folders += [("test", defect, n_test_defect) for defect in spec.defects]
    return folders


def _write_category(
    tmp: Path, category: str, params: dict[str, int], folders: list[tuple[str, str, int]]
) -> dict[str, int]:
    jobs: list[tuple[str, str, int, Path, Path | None]] = []
    counts: dict[str, int] = {}
    for split, label, count in folders:
        image_dir = tmp / split / label
        image_dir.mkdir(parents=True, exist_ok=True)
        mask_dir = None
        if label != "good":
            mask_dir = tmp / "ground_truth" / label
            mask_dir.mkdir(parents=True, exist_ok=True)
        width = _name_width(count)
        for index in range(count):
            stem = f"{index:0{width}d}"
            mask_path = None if mask_dir is None else mask_dir / f"{stem}_mask.png"
            jobs.append((split, label, index, image_dir / f"{stem}.png", mask_path))
        counts[f"{split}/{label}"] = count

    def write(job: tuple[str, str, int, Path, Path | None]) -> None:
        split, label, index, image_path, mask_path = job
        _, image, mask = render_sample(
            category, split, label, index, image_size=params["image_size"], seed=params["seed"]
        )
        _write_png(image_path, image)
        if mask_path is not None:
            _write_png(mask_path, mask)

    # Every image has its own random stream, so the output does not depend on the order the threads run in.
    # OpenCV, NumPy and file I/O release the GIL for the heavy parts.
    _source_image(category, params["image_size"])  # load once before the threads start
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        try:
            for _ in pool.map(write, jobs):
                pass
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)  # stop queued images before the caller removes the folder
            raise
    return counts


def _read_marker(path: Path) -> dict | None:
    marker = path / _MARKER
    if not marker.is_file():
        return None
    try:
        return json.loads(marker.read_text())
    except (OSError, ValueError):
        return None


def _generate(
    root: str | Path,
    categories: Sequence[str] | None,
    *,
    image_size: int,
    n_train: int,
    n_test_good: int,
    n_test_defect: int,
    seed: int,
    overwrite: bool,
) -> tuple[Path, list[_CategoryReport]]:
    if isinstance(categories, str):
        categories = [categories]
    selected = list(dict.fromkeys(DEMO_CATEGORIES if categories is None else categories))
    if not selected:
        msg = f"No categories given. Valid categories: {', '.join(DEMO_CATEGORIES)}."
        raise ValueError(msg)
    for category in selected:
        _check_category(category)
    _check_size(image_size)
    for name, value, minimum in (
        ("n_train", n_train, 1),
        ("n_test_good", n_test_good, 1),
        ("n_test_defect", n_test_defect, 1),
        ("seed", seed, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
            msg = f"{name} must be an integer >= {minimum}, got {value!r}."
            raise ValueError(msg)
    _import_skimage_data()  # fail early with the install hint

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    params = {
        "format_version": _FORMAT_VERSION,
        "image_size": int(image_size),
        "n_train": int(n_train),
        "n_test_good": int(n_test_good),
        "n_test_defect": int(n_test_defect),
        "seed": int(seed),
    }
    reports = []
    for category in selected:
        spec = DEMO_SOURCES[category]
        final = root / category
        folders = _plan(spec, n_train, n_test_good, n_test_defect)
        report = _CategoryReport(category, final, {f"{s}/{lbl}": c for s, lbl, c in folders})
        if final.exists():
            marker = _read_marker(final)
            if marker is None:
                msg = (
                    f"{final} exists but was not written by the demo-data generator (no {_MARKER}); "
                    "refusing to touch it. Remove it or choose another root."
                )
                raise FileExistsError(msg)
            if not overwrite:
                if {k: marker.get(k) for k in params} != params:
                    msg = (
                        f"{final} holds demo data generated with other settings ({marker}); "
                        "pass overwrite=True (--overwrite) to regenerate it."
                    )
                    raise FileExistsError(msg)
                report.skipped = True
                reports.append(report)
                continue

        tmp = root / f"{category}.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        try:
            report.counts = _write_category(tmp, category, params, folders)
            marker = {**params, "category": category, "license": spec.license, "source": spec.source}
            (tmp / _MARKER).write_text(json.dumps(marker, indent=2) + "\n")
            old = root / f"{category}.old"
            if final.exists():  # overwrite: swap the complete new folder in, then drop the old one
                if old.exists():
                    shutil.rmtree(old)
                final.rename(old)
            tmp.rename(final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if old.exists():
            shutil.rmtree(old)
        reports.append(report)
    return root, reports


def generate_demo_dataset(
    root: str | Path,
    categories: Sequence[str] | None = None,
    *,
    image_size: int = 256,
    n_train: int = 60,
    n_test_good: int = 12,
    n_test_defect: int = 8,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write the demo dataset in the MVTec AD layout under ``root``.

    Each category is written to ``<root>/<category>.tmp`` and renamed to ``<root>/<category>`` only once complete,
    so an error never leaves a half-written category behind. A category folder that already holds demo data
    generated with the same settings is skipped.

    Args:
        root: Dataset root; one folder per category is created inside it.
        categories: Categories to write, from :data:`DEMO_CATEGORIES`. ``None`` writes all of them.
        image_size: Side of the square images in pixels (32 to 1024).
        n_train: Normal training images per category.
        n_test_good: Normal test images per category.
        n_test_defect: Test images per defect type (each category has four defect types).
        seed: Non-negative seed; the same seed gives byte-identical files.
        overwrite: Regenerate categories that already exist (only folders written by this generator are replaced).

    Returns:
        The dataset root, usable as ``anomalib.data.MVTecAD(root=root, category=...)``.

    Raises:
        ValueError: If a category is unknown (the message lists the valid ones) or a size or count is invalid.
        ImportError: If scikit-image is not installed.
        RuntimeError: If a source image cannot be loaded offline by the installed scikit-image.
        FileExistsError: If ``<root>/<category>`` exists but was not written by this generator, or was written
            with other settings and ``overwrite`` is false.

    """
    root, _ = _generate(
        root,
        categories,
        image_size=image_size,
        n_train=n_train,
        n_test_good=n_test_good,
        n_test_defect=n_test_defect,
        seed=seed,
        overwrite=overwrite,
    )
    return root


# ----------------------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``demo-data`` options to ``parser``.

    Args:
        parser: The (sub)command parser to extend.

    """
    parser.add_argument(
        "--root", type=Path, default=Path("./datasets/demo"), help="dataset root (default: %(default)s)"
    )
    parser.add_argument(
        "--categories",
        nargs="+",
        default=None,
        metavar="CATEGORY",
        help=f"categories to write (default: all of {', '.join(DEMO_CATEGORIES)})",
    )
    parser.add_argument("--image-size", type=int, default=256, help="image side in pixels (default: %(default)s)")
    parser.add_argument("--n-train", type=int, default=60, help="normal training images (default: %(default)s)")
    parser.add_argument("--n-test-good", type=int, default=12, help="normal test images (default: %(default)s)")
    parser.add_argument("--n-test-defect", type=int, default=8, help="test images per defect (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true", help="regenerate categories that already exist")


def run(args: argparse.Namespace) -> int:
    """Generate the demo dataset from parsed ``demo-data`` arguments and print a summary.

    Args:
        args: Namespace produced by a parser extended with :func:`add_arguments`.

    Returns:
        Process exit code: 0 on success, 1 on a usage or environment error (message on stderr).

    """
    start = time.perf_counter()
    try:
        root, reports = _generate(
            args.root,
            args.categories,
            image_size=args.image_size,
            n_train=args.n_train,
            n_test_good=args.n_test_good,
            n_test_defect=args.n_test_defect,
            seed=args.seed,
            overwrite=args.overwrite,
        )
    except (ValueError, ImportError, FileExistsError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    elapsed = time.perf_counter() - start
    written = [r for r in reports if not r.skipped]
    print(f"Demo dataset (MVTec AD layout) in {root.resolve()}:")
    for report in reports:
        train = report.counts.get("train/good", 0)
        good = report.counts.get("test/good", 0)
        defects = {
            k.split("/", 1)[1]: v for k, v in report.counts.items() if k.startswith("test/") and k != "test/good"
        }
        status = "already there, skipped" if report.skipped else "written"
        detail = ", ".join(f"{name} {count}" for name, count in defects.items())
        print(f"  {report.category:<8} train {train}, test good {good}, defects: {detail} ({status})")
    images = sum(r.total for r in written)
    masks = sum(v for r in written for k, v in r.counts.items() if not k.endswith("/good"))
    print(f"Wrote {images} images and {masks} masks in {elapsed:.1f} s.")
    print(f"Use it with: anomalib.data.MVTecAD(root={str(root)!r}, category=<category>)")
    return 0
