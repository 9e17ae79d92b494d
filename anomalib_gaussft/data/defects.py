# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""Synthetic defects drawn on the real demo images, and their exact ground-truth masks.

Textures get ``crack``, ``hole``, ``patch`` (a foreign piece of the same material) and ``stain``; objects get
``missing``, ``patch`` (CutPaste: content from elsewhere in the image), ``scratch`` and ``stain``. They cover roughly
0.5% to 5% of the image.

Each defect function returns ``(layer, alpha, support)``: the defective image is ``clean * (1 - alpha) + layer *
alpha`` on ``support`` and ``clean`` elsewhere. :func:`add_defect` composes it, quantises it, and makes the mask
exact: 255 precisely on the pixels whose stored value differs from the defect-free rendering, 0 elsewhere.

Example:
    >>> from anomalib_gaussft.data.sources import DEMO_SOURCES, source_image
    >>> rng = np.random.default_rng(0)
    >>> clean = np.full((64, 64, 1), 128, np.float32)
    >>> ctx = DefectContext("brick", DEMO_SOURCES["brick"], 64, source_image("brick", 64))
    >>> image, mask = add_defect("hole", clean, np.zeros_like(clean), np.full((64, 64, 1), 128, np.uint8), ctx, rng)
    >>> bool(((mask > 0) == (image[..., 0] != 128)).all()), bool(0.002 < (mask > 0).mean() < 0.08)
    (True, True)

"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import cv2
import numpy as np
from numpy.typing import NDArray

from anomalib_gaussft.data.sources import DemoSource, quantize, texture_view, warp

__all__ = ["DEFECTS", "Defect", "DefectContext", "add_defect"]


@dataclass(frozen=True)
class DefectContext:
    """What a defect function may look at besides the clean image.

    Attributes:
        category: The demo category.
        spec: Its :class:`~anomalib_gaussft.data.sources.DemoSource` (kind, region of interest).
        size: Side of the square image.
        source: The category's source image (textures paste foreign pieces of it).

    """

    category: str
    spec: DemoSource
    size: int
    source: NDArray[np.float32]


#: ``(layer, alpha, support)`` returned by a defect function.
Defect = tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.bool_]]


def _roi_point(ctx: DefectContext, rng: np.random.Generator, margin: float = 0.0) -> NDArray[np.float64]:
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
    return cv2.GaussianBlur(support.astype(np.float32), (0, 0), sigma)


def _random_walk(
    start: NDArray[np.float64], heading: float, steps: int, step: float, turn: float, rng: np.random.Generator
) -> NDArray[np.float64]:
    pts = [start]
    for _ in range(steps):
        heading += rng.uniform(-turn, turn)
        pts.append(pts[-1] + step * np.array([np.cos(heading), np.sin(heading)]))
    return np.array(pts)


def _crack(clean: NDArray[np.float32], ctx: DefectContext, rng: np.random.Generator) -> Defect:
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


def _hole(clean: NDArray[np.float32], ctx: DefectContext, rng: np.random.Generator) -> Defect:
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


def _stain(clean: NDArray[np.float32], ctx: DefectContext, rng: np.random.Generator) -> Defect:
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
    area = rng.uniform(low, high) * size * size
    aspect = rng.uniform(0.4, 2.5)
    width, height = np.sqrt(area * aspect), np.sqrt(area / aspect)
    box = cv2.boxPoints(((float(center[0]), float(center[1])), (float(width), float(height)), rng.uniform(0, 180)))
    canvas = np.zeros((size, size), np.uint8)
    cv2.fillPoly(canvas, [np.round(box * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
    return canvas.astype(bool)


def _patch(clean: NDArray[np.float32], ctx: DefectContext, rng: np.random.Generator) -> Defect:
    size = ctx.size
    radius = _radius_for_area(size, rng, 0.01, 0.04)
    center = _roi_point(ctx, rng, margin=radius)
    support = _rotated_rect(size, center, rng, 0.01, 0.04)
    if ctx.spec.kind == "texture":
        # Foreign piece of the same material: other place, any orientation, clearly different scale and brightness.
        scale = rng.uniform(0.55, 0.75) if rng.random() < 0.5 else rng.uniform(1.4, 1.8)
        layer = texture_view(ctx.source, size, rng, max_angle=180.0, scale_range=(scale, scale))
    else:
        # CutPaste: content from another place of the same image.
        offset = rng.uniform(0.2, 0.4, size=2) * size * rng.choice([-1.0, 1.0], size=2)
        matrix = np.array([[1.0, 0.0, offset[0]], [0.0, 1.0, offset[1]]])
        if rng.random() < 0.5:
            matrix = cv2.getRotationMatrix2D((float(center[0]), float(center[1])), 180.0, 1.0)
            matrix[:, 2] += offset
        layer = warp(clean, matrix, size)
    gain = rng.uniform(0.8, 0.92) if rng.random() < 0.5 else rng.uniform(1.08, 1.2)
    return layer * gain, support.astype(np.float32), support


def _scratch(clean: NDArray[np.float32], ctx: DefectContext, rng: np.random.Generator) -> Defect:
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


def _missing(clean: NDArray[np.float32], ctx: DefectContext, rng: np.random.Generator) -> Defect:
    """Remove a piece of the object: the background (taken from an image corner) shows through."""
    size = ctx.size
    radius = _radius_for_area(size, rng, 0.008, 0.035)
    center = _roi_point(ctx, rng, margin=radius)
    support = _blob(size, center, radius, rng)
    corner = np.array([0.1, 0.1]) * size
    corner = np.where(rng.random(2) < 0.5, corner, size - corner)
    offset = corner - center
    matrix = np.array([[1.0, 0.0, offset[0]], [0.0, 1.0, offset[1]]])
    layer = warp(clean, matrix, size)
    return layer, support.astype(np.float32), support


#: Defect name -> function drawing it.
DEFECTS: Mapping[str, Callable[[NDArray[np.float32], DefectContext, np.random.Generator], Defect]] = MappingProxyType(
    {
        "crack": _crack,
        "hole": _hole,
        "missing": _missing,
        "patch": _patch,
        "scratch": _scratch,
        "stain": _stain,
    }
)


def add_defect(
    label: str,
    clean: NDArray[np.float32],
    noise: NDArray[np.float32],
    clean_u8: NDArray[np.uint8],
    ctx: DefectContext,
    rng: np.random.Generator,
) -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
    """Draw defect ``label`` on a clean rendering and return the stored image and its exact mask.

    Every pixel of the defect's support must differ from the clean image after quantisation (outside the support the
    two are bit-identical by construction): those the blend left unchanged are nudged by one grey level in the
    direction the defect pushed them, away from the saturated end. The mask is then 255 exactly where the image
    differs from ``clean_u8`` in any channel.

    Args:
        label: A key of :data:`DEFECTS`.
        clean: The defect-free float rendering, ``(H, W, C)``, before noise.
        noise: The sensor noise added to it (broadcast over ``C``).
        clean_u8: ``quantize(clean + noise)``, the stored defect-free image.
        ctx: Category, source and size.
        rng: The sample's random stream, after the clean rendering and the noise.

    Returns:
        ``(image, mask)``: the ``uint8`` ``(H, W, C)`` defective image and the ``uint8`` ``(H, W)`` mask.

    """
    layer, alpha, support = DEFECTS[label](clean, ctx, rng)
    a = alpha[support][:, None]
    before = clean[support]
    after = before * (1.0 - a) + layer[support] * a
    changed = quantize(after + noise[support])
    reference = clean_u8[support]
    unchanged = np.all(changed == reference, axis=-1)
    if unchanged.any():
        base = reference[unchanged].astype(np.int16)
        step = np.where((after - before)[unchanged] < 0, -1, 1).astype(np.int16)
        nudged = base + step
        nudged = np.where((nudged < 0) | (nudged > 255), base - step, nudged)
        changed[unchanged] = nudged.astype(np.uint8)
    image_u8 = clean_u8.copy()
    image_u8[support] = changed
    mask = np.zeros(clean_u8.shape[:2], np.uint8)
    mask[np.any(image_u8 != clean_u8, axis=-1)] = 255
    return image_u8, mask
