# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""Pseudo-anomalies pasted from the image itself (Li et al. 2021): :class:`CutPaste` and :class:`CutPasteScar`.

Example:
    >>> import torch
    >>> images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    >>> pasted, masks = CutPaste()(images, torch.Generator().manual_seed(0))
    >>> 0.02 <= masks[0].mean().item() <= 0.15  # a rectangle of 2 % to 15 % of the image
    True
    >>> scarred, masks = CutPasteScar()(images, torch.Generator().manual_seed(0))
    >>> masks[0].mean().item() < 0.05  # a thin scar
    True
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor
from torchvision.transforms.v2 import functional as F  # noqa: N812

from anomalib_gaussft.forgetting.pseudo_anomalies.base import (
    PseudoAnomaly,
    _check_range,
    _randint,
    _rect_mask,
    _sample_rect_size,
    _uniform,
)

__all__ = ["CutPaste", "CutPasteScar"]


def _color_jitter(patch: Tensor, strength: float, generator: torch.Generator) -> Tensor:
    """Jitter brightness, contrast, saturation and hue of ``patch`` (``(C, h, w)`` in ``[0, 1]``), in that order.

    Factors are uniform in ``[1 - strength, 1 + strength]`` and the hue shift in ``[-strength, strength]`` (capped at
    0.5), like ``torchvision.transforms.ColorJitter(strength, strength, strength, strength)`` with a fixed order.
    Saturation and hue are only changed for 3-channel patches.
    """
    if strength <= 0:
        return patch
    low, high = max(0.0, 1.0 - strength), 1.0 + strength
    patch = F.adjust_brightness(patch, _uniform(generator, low, high))
    patch = F.adjust_contrast(patch, _uniform(generator, low, high))
    if patch.shape[-3] == 3:
        patch = F.adjust_saturation(patch, _uniform(generator, low, high))
        hue = min(strength, 0.5)
        patch = F.adjust_hue(patch, _uniform(generator, -hue, hue))
    return patch.clamp(0.0, 1.0)


class CutPaste(PseudoAnomaly):
    """Cut a rectangle of the image and paste it at another location of the same image (Li et al. 2021).

    Source and destination are drawn independently (they may overlap); the mask is the destination rectangle. The
    patch is colour-jittered (brightness, contrast, saturation, hue) as in the paper.

    Args:
        area_range: Range of the patch area as a fraction of the image area, within ``(0, 1]``.
        aspect_range: Range of the patch aspect ratio (width / height), sampled log-uniformly.
        color_jitter: Jitter strength applied to the patch (see ``torchvision.transforms.ColorJitter``); ``0``
            disables it.
        min_change: See :class:`PseudoAnomaly`.
        max_tries: See :class:`PseudoAnomaly`.

    """

    name: ClassVar[str] = "cutpaste"

    def __init__(
        self,
        area_range: tuple[float, float] = (0.02, 0.15),
        aspect_range: tuple[float, float] = (0.3, 3.3),
        color_jitter: float = 0.1,
        min_change: float = 0.02,
        max_tries: int = 8,
    ) -> None:
        super().__init__(min_change=min_change, max_tries=max_tries)
        self.area_range = _check_range("area_range", area_range, low=0.0, high=1.0, low_open=True)
        self.aspect_range = _check_range("aspect_range", aspect_range, low=0.0, low_open=True)
        if not (math.isfinite(color_jitter) and color_jitter >= 0):
            msg = f"`color_jitter` must be a finite number >= 0, got {color_jitter!r}."
            raise ValueError(msg)
        self.color_jitter = float(color_jitter)

    def _propose(self, image: Tensor, partner: Tensor | None, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        del partner
        height, width = image.shape[-2:]
        rect_h, rect_w = _sample_rect_size(height, width, self.area_range, self.aspect_range, generator)
        src_top = _randint(generator, 0, height - rect_h + 1)
        src_left = _randint(generator, 0, width - rect_w + 1)
        dst_top = _randint(generator, 0, height - rect_h + 1)
        dst_left = _randint(generator, 0, width - rect_w + 1)
        patch = image[:, src_top : src_top + rect_h, src_left : src_left + rect_w]
        patch = _color_jitter(patch, self.color_jitter, generator)
        candidate = image.clone()
        candidate[:, dst_top : dst_top + rect_h, dst_left : dst_left + rect_w] = patch
        return candidate, _rect_mask(height, width, (dst_top, dst_left, rect_h, rect_w), image.device)


class CutPasteScar(PseudoAnomaly):
    """Paste a thin, long, rotated patch of the image at another location of the same image (Li et al. 2021).

    A ``width x length`` axis-aligned patch (length along the image's vertical axis) is cut, colour-jittered, rotated
    by an angle from ``rotation_range`` (degrees) and pasted with its centre at a random location such that the
    rotated patch lies fully inside the image. Pixels are copied with nearest-neighbour sampling, so the scar holds
    (jittered) pixel values of the image; the mask is the rotated rectangle.

    The default sizes are those of the paper for 256 px images. They are scaled by ``min(H, W) / reference_size`` so
    that the scar covers the same fraction of smaller or larger images, then raised to at least 2 px wide and 4 px
    long so that it stays visible on small images, and shrunk (keeping its proportions) if the rotated patch would
    not fit the image.

    Args:
        width_range: Range of the scar width in pixels at ``reference_size``.
        length_range: Range of the scar length in pixels at ``reference_size``.
        rotation_range: Range of the rotation angle in degrees.
        color_jitter: Jitter strength applied to the scar; ``0`` disables it.
        reference_size: Image size (pixels, shorter side) at which ``width_range`` and ``length_range`` apply.
        min_change: See :class:`PseudoAnomaly`.
        max_tries: See :class:`PseudoAnomaly`.

    """

    name: ClassVar[str] = "cutpaste_scar"
    MIN_WIDTH_PX: ClassVar[float] = 2.0
    MIN_LENGTH_PX: ClassVar[float] = 4.0

    def __init__(
        self,
        width_range: tuple[float, float] = (2, 16),
        length_range: tuple[float, float] = (10, 25),
        rotation_range: tuple[float, float] = (-45, 45),
        color_jitter: float = 0.1,
        reference_size: int = 256,
        min_change: float = 0.02,
        max_tries: int = 8,
    ) -> None:
        super().__init__(min_change=min_change, max_tries=max_tries)
        self.width_range = _check_range("width_range", width_range, low=0.0, low_open=True)
        self.length_range = _check_range("length_range", length_range, low=0.0, low_open=True)
        self.rotation_range = _check_range("rotation_range", rotation_range)
        if not (math.isfinite(color_jitter) and color_jitter >= 0):
            msg = f"`color_jitter` must be a finite number >= 0, got {color_jitter!r}."
            raise ValueError(msg)
        if reference_size < 1:
            msg = f"`reference_size` must be >= 1, got {reference_size!r}."
            raise ValueError(msg)
        self.color_jitter = float(color_jitter)
        self.reference_size = int(reference_size)

    def scar_size(self, height: int, width: int, generator: torch.Generator) -> tuple[float, float]:
        """Sample the scar ``(width, length)`` in pixels for a ``height x width`` image, before fitting.

        Args:
            height: Image height in pixels.
            width: Image width in pixels.
            generator: Source of randomness.

        Returns:
            The scaled scar width and length, at least ``MIN_WIDTH_PX`` and ``MIN_LENGTH_PX``.

        """
        scale = min(height, width) / self.reference_size
        scar_w = max(_uniform(generator, *self.width_range) * scale, self.MIN_WIDTH_PX)
        scar_l = max(_uniform(generator, *self.length_range) * scale, self.MIN_LENGTH_PX)
        return scar_w, scar_l

    def _propose(self, image: Tensor, partner: Tensor | None, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        del partner
        height, width = image.shape[-2:]
        scar_w, scar_l = self.scar_size(height, width, generator)
        theta = math.radians(_uniform(generator, *self.rotation_range))
        cos_t, sin_t = math.cos(theta), math.sin(theta)
        # Half-extents of the rotated rectangle's bounding box; shrink the scar if it does not fit.
        half_x = (abs(cos_t) * scar_w + abs(sin_t) * scar_l) / 2
        half_y = (abs(sin_t) * scar_w + abs(cos_t) * scar_l) / 2
        fit = min(1.0, width / (2 * half_x), height / (2 * half_y), width / scar_w, height / scar_l)
        scar_w, scar_l, half_x, half_y = scar_w * fit, scar_l * fit, half_x * fit, half_y * fit
        # Source centre (axis-aligned patch) and destination centre (rotated patch), in continuous pixel coordinates.
        src_x = _uniform(generator, scar_w / 2, width - scar_w / 2)
        src_y = _uniform(generator, scar_l / 2, height - scar_l / 2)
        dst_x = _uniform(generator, half_x, width - half_x)
        dst_y = _uniform(generator, half_y, height - half_y)

        # Colour-jitter the source patch (its bounding pixels) before sampling from it.
        x0, x1 = max(math.floor(src_x - scar_w / 2), 0), min(math.floor(src_x + scar_w / 2) + 1, width)
        y0, y1 = max(math.floor(src_y - scar_l / 2), 0), min(math.floor(src_y + scar_l / 2) + 1, height)
        source = image.clone()
        source[:, y0:y1, x0:x1] = _color_jitter(image[:, y0:y1, x0:x1], self.color_jitter, generator)

        # Map the destination pixel centres of the rotated patch's bounding box into the scar's frame (inverse
        # rotation about the destination centre); pixels whose coordinates fall inside the scar form the mask.
        r0, r1 = max(math.floor(dst_y - half_y), 0), min(math.ceil(dst_y + half_y) + 1, height)
        c0, c1 = max(math.floor(dst_x - half_x), 0), min(math.ceil(dst_x + half_x) + 1, width)
        ys = torch.arange(r0, r1, dtype=torch.float32, device=image.device) + 0.5 - dst_y
        xs = torch.arange(c0, c1, dtype=torch.float32, device=image.device) + 0.5 - dst_x
        dy, dx = torch.meshgrid(ys, xs, indexing="ij")
        u = cos_t * dx + sin_t * dy
        v = -sin_t * dx + cos_t * dy
        mask = torch.zeros(height, width, dtype=torch.bool, device=image.device)
        mask[r0:r1, c0:c1] = (u.abs() <= scar_w / 2) & (v.abs() <= scar_l / 2)
        col = (src_x + u).floor().long().clamp(x0, x1 - 1)
        row = (src_y + v).floor().long().clamp(y0, y1 - 1)
        candidate = image.clone()
        candidate[:, r0:r1, c0:c1] = source[:, row, col]
        return candidate, mask
