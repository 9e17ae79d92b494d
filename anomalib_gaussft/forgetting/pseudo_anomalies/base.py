# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""The base class of every pseudo-anomaly generator and the helpers the generators share.

:class:`PseudoAnomaly` holds the contract of the package (see :mod:`anomalib_gaussft.forgetting.pseudo_anomalies`):
it validates the batch, picks partners, retries weak proposals and assembles the output so that pixels outside the
mask are bit-identical to the input. A generator only implements :meth:`PseudoAnomaly._propose`. The helpers draw
every random number through the caller's ``torch.Generator`` (on the generator's device), sample rectangles and
their masks, pair images with partners and check arguments.

Example:
    A generator proposes one augmented image and the mask of the region it replaced; the base class does the rest:

    >>> import torch
    >>> class InvertCorner(PseudoAnomaly):
    ...     name = "invert_corner"
    ...
    ...     def _propose(self, image, partner, generator):
    ...         mask = torch.zeros(image.shape[-2:], dtype=torch.bool)
    ...         mask[:8, :8] = True
    ...         return 1 - image, mask
    >>> images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    >>> augmented, masks = InvertCorner()(images, torch.Generator().manual_seed(0))
    >>> int(masks[0].sum()), torch.equal(augmented[:, :, 8:], images[:, :, 8:])
    (64, True)
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor

__all__ = ["PseudoAnomaly"]


# ----------------------------------------------------------------------------------------------------------------------
# Random helpers: every draw goes through the caller's generator, on the generator's device.
# ----------------------------------------------------------------------------------------------------------------------
def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    """Draw a float uniformly from ``[low, high)``."""
    u = torch.rand((), generator=generator, device=generator.device).item()
    return low + (high - low) * u


def _randint(generator: torch.Generator, low: int, high: int) -> int:
    """Draw an integer uniformly from ``[low, high)``."""
    return int(torch.randint(low, high, (1,), generator=generator, device=generator.device).item())


def _derangement(n: int, generator: torch.Generator) -> Tensor:
    """Return a random permutation of ``range(n)`` without fixed points (``n >= 2``).

    A random permutation ``s`` is drawn and every ``s[i]`` is mapped to ``s[(i + k) % n]`` with a random shift
    ``k`` in ``[1, n - 1]``; this never maps an index to itself. Not uniform over all derangements, which does not
    matter for pseudo-anomaly partners.
    """
    if n < 2:
        msg = f"A permutation without fixed points needs at least 2 elements, got {n}."
        raise ValueError(msg)
    order = torch.randperm(n, generator=generator, device=generator.device).cpu()
    shift = _randint(generator, 1, n)
    partner = torch.empty(n, dtype=torch.long)
    partner[order] = order.roll(-shift)
    return partner


def _sample_rect_size(
    height: int,
    width: int,
    area_range: tuple[float, float],
    aspect_range: tuple[float, float],
    generator: torch.Generator,
    max_tries: int = 100,
) -> tuple[int, int]:
    """Sample the integer size ``(rect_h, rect_w)`` of a rectangle inside a ``height x width`` image.

    The area fraction is uniform in ``area_range`` and the aspect ratio ``rect_w / rect_h`` log-uniform in
    ``aspect_range``. Sizes are rounded to pixels and clipped to the image; samples whose rounded area fraction falls
    outside ``area_range`` are rejected, so the returned area is in range whenever some rectangle of the image is
    (the last sample is returned if ``max_tries`` samples were all rejected).
    """
    total = height * width
    low_px, high_px = area_range[0] * total, area_range[1] * total
    log_low, log_high = math.log(aspect_range[0]), math.log(aspect_range[1])
    rect_h = rect_w = 1
    for _ in range(max_tries):
        area = _uniform(generator, low_px, high_px)
        aspect = math.exp(_uniform(generator, log_low, log_high))
        rect_h = min(max(round(math.sqrt(area / aspect)), 1), height)
        rect_w = min(max(round(math.sqrt(area * aspect)), 1), width)
        if low_px <= rect_h * rect_w <= high_px:
            break
    return rect_h, rect_w


def _sample_rect(
    height: int,
    width: int,
    area_range: tuple[float, float],
    aspect_range: tuple[float, float],
    generator: torch.Generator,
) -> tuple[int, int, int, int]:
    """Sample a rectangle ``(top, left, rect_h, rect_w)`` lying fully inside a ``height x width`` image."""
    rect_h, rect_w = _sample_rect_size(height, width, area_range, aspect_range, generator)
    top = _randint(generator, 0, height - rect_h + 1)
    left = _randint(generator, 0, width - rect_w + 1)
    return top, left, rect_h, rect_w


def _rect_mask(height: int, width: int, rect: tuple[int, int, int, int], device: torch.device) -> Tensor:
    """Return a boolean ``(height, width)`` mask of the rectangle ``(top, left, rect_h, rect_w)``."""
    top, left, rect_h, rect_w = rect
    mask = torch.zeros(height, width, dtype=torch.bool, device=device)
    mask[top : top + rect_h, left : left + rect_w] = True
    return mask


def _self_partner(image: Tensor) -> Tensor:
    """Return the partner of a lone image: flipped horizontally and rolled by a third of its height and width."""
    height, width = image.shape[-2:]
    return torch.roll(torch.flip(image, dims=(-1,)), shifts=(height // 3, width // 3), dims=(-2, -1))


# ----------------------------------------------------------------------------------------------------------------------
# Argument validation
# ----------------------------------------------------------------------------------------------------------------------
def _check_range(
    name: str,
    value: Sequence[float],
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
) -> tuple[float, float]:
    """Validate a ``(min, max)`` pair, optionally bounded by ``low`` (open if ``low_open``) and ``high``."""
    if len(value) != 2:
        msg = f"`{name}` must be a (min, max) pair, got {value!r}."
        raise ValueError(msg)
    lo, hi = float(value[0]), float(value[1])
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
        msg = f"`{name}` must be a finite (min, max) pair with min <= max, got {value!r}."
        raise ValueError(msg)
    if low is not None and (lo < low or (low_open and lo == low)):
        bound = f"> {low}" if low_open else f">= {low}"
        msg = f"`{name}` values must be {bound}, got {value!r}."
        raise ValueError(msg)
    if high is not None and hi > high:
        msg = f"`{name}` values must be <= {high}, got {value!r}."
        raise ValueError(msg)
    return lo, hi


def _check_images(images: Tensor) -> None:
    """Check that ``images`` is a floating-point ``(N, C, H, W)`` batch with ``C`` in ``{1, 3}``."""
    if not isinstance(images, Tensor) or images.ndim != 4:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        msg = f"Expected images of shape (N, C, H, W), got {shape}."
        raise ValueError(msg)
    if not images.is_floating_point():
        msg = f"Expected floating-point images in [0, 1], got dtype {images.dtype}."
        raise ValueError(msg)
    if images.shape[1] not in {1, 3}:
        msg = f"Expected 1 or 3 channels, got {images.shape[1]}."
        raise ValueError(msg)
    if images.shape[2] < 1 or images.shape[3] < 1:
        msg = f"Expected non-empty images, got shape {tuple(images.shape)}."
        raise ValueError(msg)


# ----------------------------------------------------------------------------------------------------------------------
# Base class
# ----------------------------------------------------------------------------------------------------------------------
class PseudoAnomaly(ABC):
    """Base class of the pseudo-anomaly generators.

    Subclasses set :attr:`name` (their registry key) and :attr:`uses_partner`, and implement :meth:`_propose`, which
    proposes one augmented image and the mask of the region it replaced. :meth:`__call__` validates the batch, picks
    partners, retries weak proposals (see the module docstring) and composes the output so that pixels outside the
    mask are bit-identical to the input.

    Args:
        min_change: Mean absolute change (inside the mask, over pixels and channels) a proposal should reach to be
            accepted without retrying.
        max_tries: Maximum number of proposals per image; the one with the largest change is kept if none reaches
            ``min_change``.

    """

    name: ClassVar[str] = ""
    uses_partner: ClassVar[bool] = False

    def __init__(self, min_change: float = 0.02, max_tries: int = 8) -> None:
        if not (math.isfinite(min_change) and min_change >= 0):
            msg = f"`min_change` must be a finite number >= 0, got {min_change!r}."
            raise ValueError(msg)
        if max_tries < 1:
            msg = f"`max_tries` must be >= 1, got {max_tries!r}."
            raise ValueError(msg)
        self.min_change = float(min_change)
        self.max_tries = int(max_tries)

    @abstractmethod
    def _propose(self, image: Tensor, partner: Tensor | None, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Propose an augmentation of one image.

        Args:
            image: Float32 image ``(C, H, W)`` in ``[0, 1]``.
            partner: Float32 partner image ``(C, H, W)`` if :attr:`uses_partner`, else ``None``.
            generator: Source of randomness.

        Returns:
            The candidate image ``(C, H, W)`` (only its values inside the mask are used) and the boolean mask
            ``(H, W)`` of the replaced region.

        """

    @torch.no_grad()
    def __call__(self, images: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Turn a batch of normal images into pseudo-anomalies.

        Args:
            images: Float images ``(N, C, H, W)`` in ``[0, 1]``, ``C`` in ``{1, 3}``, not normalised.
            generator: Source of all randomness; the same generator state gives the same output.

        Returns:
            ``(augmented_images, masks)``: the augmented images (input shape and dtype, values in ``[0, 1]``) and float
            masks ``(N, 1, H, W)`` in ``{0, 1}`` marking exactly the replaced pixels.

        Raises:
            ValueError: If ``images`` is not a floating-point ``(N, C, H, W)`` batch with 1 or 3 channels.

        """
        _check_images(images)
        n, _, height, width = images.shape
        partner_index: Tensor | None = None
        if self.uses_partner and n > 1:
            partner_index = _derangement(n, generator)
        outputs = images.clone()
        masks = torch.zeros(n, 1, height, width, dtype=images.dtype, device=images.device)
        for i in range(n):
            image = images[i]
            work = image.float()
            partner: Tensor | None = None
            if self.uses_partner:
                partner = images[int(partner_index[i])].float() if partner_index is not None else _self_partner(work)
            best: tuple[Tensor, Tensor] | None = None
            best_change = -math.inf
            for _ in range(self.max_tries):
                candidate, mask = self._propose(work, partner, generator)
                candidate = torch.where(mask, candidate.clamp(0.0, 1.0).to(images.dtype), image)
                change = (candidate.float() - work).abs().mean(dim=0)[mask].mean().item() if mask.any() else 0.0
                if change > best_change:
                    best, best_change = (candidate, mask), change
                if change >= self.min_change:
                    break
            if best is not None:
                outputs[i] = best[0]
                masks[i, 0] = best[1].to(images.dtype)
        return outputs, masks

    def __repr__(self) -> str:
        args = ", ".join(f"{key}={value!r}" for key, value in vars(self).items())
        return f"{type(self).__name__}({args})"
