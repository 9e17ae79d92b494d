# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""Render one demo sample: a random view of the source image, sensor noise, and for test defects the defect.

Each sample has its own random stream derived from ``(seed, category, split, label, index)``, so a sample does not
depend on how many others are rendered, nor in which order.

Example:
    >>> clean, image, mask = render_sample("brick", "train", "good", 0, image_size=64)
    >>> clean.shape, bool((image == clean).all()), int(mask.max())
    ((64, 64), True, 0)

"""

from __future__ import annotations

import zlib

import numpy as np
from numpy.typing import NDArray

from anomalib_gaussft.data.defects import DefectContext, add_defect
from anomalib_gaussft.data.sources import (
    DEMO_SOURCES,
    check_category,
    object_view,
    photometric,
    quantize,
    source_image,
    texture_view,
)

__all__ = ["MAX_IMAGE_SIZE", "MIN_IMAGE_SIZE", "check_image_size", "render_sample"]

#: Smallest and largest image side, in pixels.
MIN_IMAGE_SIZE = 32
MAX_IMAGE_SIZE = 1024


def check_image_size(image_size: int) -> None:
    """Raise a ``ValueError`` naming ``image_size`` unless it is an integer in ``[MIN_IMAGE_SIZE, MAX_IMAGE_SIZE]``.

    Args:
        image_size: Side of the square images in pixels.

    Example:
        >>> check_image_size(16)
        Traceback (most recent call last):
        ...
        ValueError: image_size must be between 32 and 1024 pixels, got 16.

    """
    if (
        isinstance(image_size, bool)
        or not isinstance(image_size, (int, np.integer))
        or not MIN_IMAGE_SIZE <= image_size <= MAX_IMAGE_SIZE
    ):
        msg = f"image_size must be between {MIN_IMAGE_SIZE} and {MAX_IMAGE_SIZE} pixels, got {image_size}."
        raise ValueError(msg)


def _stream(seed: int, category: str, split: str, label: str, index: int) -> np.random.Generator:
    """The random stream of one sample."""
    key = [seed, zlib.crc32(category.encode()), zlib.crc32(split.encode()), zlib.crc32(label.encode()), index]
    return np.random.default_rng(np.random.SeedSequence(key))


def render_sample(
    category: str,
    split: str,
    label: str,
    index: int,
    *,
    image_size: int = 256,
    seed: int = 0,
) -> tuple[NDArray[np.uint8], NDArray[np.uint8], NDArray[np.uint8]]:
    """Render one sample of the demo dataset exactly as ``generate_demo_dataset`` writes it.

    Args:
        category: One of :data:`~anomalib_gaussft.data.sources.DEMO_CATEGORIES`.
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

    Example:
        >>> clean, image, mask = render_sample("coffee", "test", "scratch", 0, image_size=64)
        >>> clean.shape, image.dtype, mask.shape
        ((64, 64, 3), dtype('uint8'), (64, 64))
        >>> bool(((mask > 0) == (image != clean).any(axis=-1)).all())
        True

    """
    check_category(category)
    check_image_size(image_size)
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
    source = source_image(category, image_size)
    if spec.kind == "texture":
        clean = photometric(texture_view(source, image_size, rng), rng, 0.08)
        noise_sigma = 1.0
    else:
        clean = photometric(object_view(source, image_size, rng), rng, 0.05)
        noise_sigma = 1.5
    clean = clean.astype(np.float32, copy=False)

    noise = rng.standard_normal((image_size, image_size, 1), dtype=np.float32)  # luminance noise
    noise *= noise_sigma
    clean_u8 = quantize(clean + noise)
    if label == "good":
        image_u8, mask = clean_u8.copy(), np.zeros((image_size, image_size), np.uint8)
    else:
        ctx = DefectContext(category=category, spec=spec, size=image_size, source=source)
        image_u8, mask = add_defect(label, clean, noise, clean_u8, ctx, rng)

    if clean_u8.shape[-1] == 1:
        return clean_u8[..., 0], image_u8[..., 0], mask
    return clean_u8, image_u8, mask
