# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""Pseudo-anomaly generators for detecting the onset of catastrophic forgetting.

Rippel et al. (2021) fine-tune the backbone of a Gaussian anomaly detector on normal data only and stop before the
representation collapses. Collapse is detected without real anomalies: held-out normal images are turned into
*pseudo-anomalies* with augmentations commonly used for vicinal risk minimisation (Mixup, CutMix, CutPaste, ...), and
the AUROC of normal versus pseudo-anomalous scores is tracked every epoch.

Every generator in this module works on **un-normalised** float images in ``[0, 1]`` of shape ``(N, C, H, W)``
(``C`` is 1 or 3; apply the model's pre-processor afterwards) and returns ``(augmented_images, masks)``:

* ``augmented_images`` has the input's shape and dtype and lies in ``[0, 1]``;
* ``masks`` has shape ``(N, 1, H, W)``, the input's dtype and values in ``{0, 1}``; it marks exactly the region whose
  pixels were replaced. Pixels outside the mask are bit-identical to the input (the output is assembled with
  :func:`torch.where`, never by arithmetic on untouched pixels). For :class:`Mixup` and whole-image
  :class:`AugMixCorruption` the mask covers the whole image.

All randomness comes from the ``torch.Generator`` passed to ``__call__``, so the same generator state gives the same
output. Random numbers are drawn on the generator's device and the image work happens on the images' device, so a CPU
generator can drive augmentations of CUDA images.

Minimum change: a proposal can be nearly invisible (a CutMix rectangle taken from the same flat background of a
similar image, a CutPaste patch pasted onto itself, an AugMix chain that happens to be near the identity). Each image
is therefore proposed up to ``max_tries`` times; the first proposal whose mean absolute change inside its mask (over
pixels and channels) reaches ``min_change`` is kept, otherwise the proposal with the largest change is kept. This is
best effort: nothing can change a constant image by cutting and pasting it, and partners that are nearly identical
to the image (Mixup) bias the kept blend weight towards the top of its range.

Partners (:class:`Mixup`, :class:`CutMix`) are the other images of the batch, assigned by a random permutation without
fixed points. A batch of one image is paired with a horizontally flipped copy of itself rolled by a third of its
height and width.

Example:
    >>> import torch
    >>> from anomalib_gaussft.forgetting.pseudo_anomalies import build_pseudo_anomalies
    >>> generators = build_pseudo_anomalies(["cutpaste", "mixup"])
    >>> sorted(generators)
    ['cutpaste', 'mixup']
    >>> images = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    >>> augmented, masks = generators["cutpaste"](images, torch.Generator().manual_seed(0))
    >>> augmented.shape, masks.shape
    (torch.Size([4, 3, 64, 64]), torch.Size([4, 1, 64, 64]))
    >>> bool(((augmented != images).any(dim=1, keepdim=True) <= masks.bool()).all())
    True

"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import ClassVar

import torch
from torch import Tensor
from torchvision.transforms.v2 import functional as F  # noqa: N812

__all__ = [
    "PSEUDO_ANOMALIES",
    "AugMixCorruption",
    "CutMix",
    "CutPaste",
    "CutPasteScar",
    "Mixup",
    "PseudoAnomaly",
    "build_pseudo_anomalies",
]

_BILINEAR = F.InterpolationMode.BILINEAR


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


def _random_sign(generator: torch.Generator) -> float:
    """Draw ``-1.0`` or ``1.0`` with equal probability."""
    return 1.0 if _uniform(generator, 0.0, 1.0) < 0.5 else -1.0


def _gamma(generator: torch.Generator, concentration: Sequence[float]) -> Tensor:
    """Draw independent Gamma(k, 1) samples (CPU, float64) for the given concentrations ``k``.

    ``torch.distributions`` cannot take a generator; ``torch._standard_gamma`` (which backs it) can.
    """
    alpha = torch.tensor(list(concentration), dtype=torch.float64, device=generator.device)
    return torch._standard_gamma(alpha, generator=generator).cpu()


def _dirichlet(generator: torch.Generator, alpha: float, size: int) -> list[float]:
    """Draw weights from a symmetric Dirichlet(``alpha``) distribution of dimension ``size``."""
    sample = _gamma(generator, [alpha] * size).clamp_min(1e-12)
    return (sample / sample.sum()).tolist()


def _beta(generator: torch.Generator, alpha: float, beta: float) -> float:
    """Draw from a Beta(``alpha``, ``beta``) distribution."""
    a, b = _gamma(generator, [alpha, beta]).clamp_min(1e-12).tolist()
    return a / (a + b)


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


# ----------------------------------------------------------------------------------------------------------------------
# Generators
# ----------------------------------------------------------------------------------------------------------------------
class Mixup(PseudoAnomaly):
    """Blend the whole image with another image of the batch (Zhang et al. 2018).

    The output is ``(1 - a) * image + a * partner`` with the partner weight ``a`` uniform in ``alpha_range``; the mask
    covers the whole image.

    Args:
        alpha_range: Range of the partner weight ``a``, within ``(0, 1]``.
        min_change: See :class:`PseudoAnomaly`.
        max_tries: See :class:`PseudoAnomaly`.

    """

    name: ClassVar[str] = "mixup"
    uses_partner: ClassVar[bool] = True

    def __init__(
        self,
        alpha_range: tuple[float, float] = (0.3, 0.6),
        min_change: float = 0.02,
        max_tries: int = 8,
    ) -> None:
        super().__init__(min_change=min_change, max_tries=max_tries)
        self.alpha_range = _check_range("alpha_range", alpha_range, low=0.0, high=1.0, low_open=True)

    def _propose(self, image: Tensor, partner: Tensor | None, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        assert partner is not None  # uses_partner: __call__ always passes one
        alpha = _uniform(generator, *self.alpha_range)
        mask = torch.ones(image.shape[-2:], dtype=torch.bool, device=image.device)
        return torch.lerp(image, partner, alpha), mask


class CutMix(PseudoAnomaly):
    """Replace a rectangle with the same rectangle of another image of the batch (Yun et al. 2019).

    Args:
        area_range: Range of the rectangle's area as a fraction of the image area, within ``(0, 1]``.
        aspect_range: Range of the rectangle's aspect ratio (width / height), sampled log-uniformly.
        min_change: See :class:`PseudoAnomaly`.
        max_tries: See :class:`PseudoAnomaly`.

    """

    name: ClassVar[str] = "cutmix"
    uses_partner: ClassVar[bool] = True

    def __init__(
        self,
        area_range: tuple[float, float] = (0.02, 0.15),
        aspect_range: tuple[float, float] = (0.3, 3.3),
        min_change: float = 0.02,
        max_tries: int = 8,
    ) -> None:
        super().__init__(min_change=min_change, max_tries=max_tries)
        self.area_range = _check_range("area_range", area_range, low=0.0, high=1.0, low_open=True)
        self.aspect_range = _check_range("aspect_range", aspect_range, low=0.0, low_open=True)

    def _propose(self, image: Tensor, partner: Tensor | None, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        assert partner is not None  # uses_partner: __call__ always passes one
        height, width = image.shape[-2:]
        rect = _sample_rect(height, width, self.area_range, self.aspect_range, generator)
        return partner, _rect_mask(height, width, rect, image.device)


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


# AugMix operations (Hendrycks et al. 2020, ``augmentations.py``) on float tensors. ``level`` is the severity in
# [1, 10]; each operation samples its own magnitude uniformly in [0.1, level] and scales it like the reference code,
# except that rotation and translation magnitudes are kept continuous (the reference truncates them to integers, which
# makes small magnitudes a no-op). Geometric operations fill uncovered pixels with black, like PIL.
def _sample_level(level: float, generator: torch.Generator) -> float:
    return _uniform(generator, 0.1, level)


def _op_autocontrast(image: Tensor, level: float, generator: torch.Generator) -> Tensor:
    del level, generator
    return F.autocontrast(image)


def _op_equalize(image: Tensor, level: float, generator: torch.Generator) -> Tensor:
    del level, generator
    return F.equalize(image)


def _op_posterize(image: Tensor, level: float, generator: torch.Generator) -> Tensor:
    bits = 4 - int(_sample_level(level, generator) * 4 / 10)
    return F.posterize(image, bits)


def _op_solarize(image: Tensor, level: float, generator: torch.Generator) -> Tensor:
    threshold = 1.0 - _sample_level(level, generator) / 10
    return F.solarize(image, threshold)


def _op_rotate(image: Tensor, level: float, generator: torch.Generator) -> Tensor:
    degrees = _sample_level(level, generator) * 30 / 10 * _random_sign(generator)
    return F.rotate(image, degrees, interpolation=_BILINEAR, fill=0.0)


def _affine(image: Tensor, translate: tuple[float, float], shear: tuple[float, float]) -> Tensor:
    return F.affine(
        image,
        angle=0.0,
        translate=list(translate),
        scale=1.0,
        shear=list(shear),
        interpolation=_BILINEAR,
        fill=0.0,
    )


def _shear_degrees(level: float, generator: torch.Generator) -> float:
    return math.degrees(math.atan(_sample_level(level, generator) * 0.3 / 10)) * _random_sign(generator)


def _op_shear_x(image: Tensor, level: float, generator: torch.Generator) -> Tensor:
    return _affine(image, (0.0, 0.0), (_shear_degrees(level, generator), 0.0))


def _op_shear_y(image: Tensor, level: float, generator: torch.Generator) -> Tensor:
    return _affine(image, (0.0, 0.0), (0.0, _shear_degrees(level, generator)))


def _op_translate_x(image: Tensor, level: float, generator: torch.Generator) -> Tensor:
    shift = _sample_level(level, generator) * (image.shape[-1] / 3) / 10 * _random_sign(generator)
    return _affine(image, (shift, 0.0), (0.0, 0.0))


def _op_translate_y(image: Tensor, level: float, generator: torch.Generator) -> Tensor:
    shift = _sample_level(level, generator) * (image.shape[-2] / 3) / 10 * _random_sign(generator)
    return _affine(image, (0.0, shift), (0.0, 0.0))


_AUGMIX_OPERATIONS: tuple[Callable[[Tensor, float, torch.Generator], Tensor], ...] = (
    _op_autocontrast,
    _op_equalize,
    _op_posterize,
    _op_solarize,
    _op_rotate,
    _op_shear_x,
    _op_shear_y,
    _op_translate_x,
    _op_translate_y,
)


class AugMixCorruption(PseudoAnomaly):
    """AugMix-style corruption (Hendrycks et al. 2020), by default of a local region.

    ``width`` chains of ``depth`` random operations (autocontrast, equalize, posterize, solarize, rotate, shear x/y,
    translate x/y; ``depth=-1`` draws 1 to 3 per chain) are applied to the target, their results are mixed with
    Dirichlet(``alpha``) weights, and the mixture is blended with the original: ``(1 - m) * target + m * mixture``.

    Design decisions:

    * ``region=True`` (default): the target is a random rectangle (area and aspect ranges as :class:`CutMix`) and the
      operations act on that crop alone (rotation about its centre, translation relative to its size), so the
      result is a *local* anomaly with a rectangular mask. ``region=False`` corrupts the whole image and the mask
      covers it, like the original AugMix.
    * The corruption weight ``m`` is ``Beta(alpha, alpha)`` rescaled into ``mix_weight_range``. AugMix uses the full
      ``(0, 1)`` range, where ``m`` close to 0 leaves the image almost untouched; the default ``(0.5, 1.0)`` keeps
      the corruption dominant so the pseudo-anomaly is visible.

    Args:
        severity: Severity of the operations, an integer in ``[1, 10]``.
        width: Number of augmentation chains (``>= 1``).
        depth: Operations per chain (``>= 1``), or ``-1`` for a random depth in ``[1, 3]`` per chain.
        alpha: Concentration of the Dirichlet chain weights and of the Beta corruption weight.
        mix_weight_range: Range into which the corruption weight ``m`` is rescaled, within ``[0, 1]``.
        region: Corrupt a random rectangle (``True``) or the whole image (``False``).
        area_range: Range of the region's area as a fraction of the image area (``region=True`` only).
        aspect_range: Range of the region's aspect ratio, width / height (``region=True`` only).
        min_change: See :class:`PseudoAnomaly`.
        max_tries: See :class:`PseudoAnomaly`.

    """

    name: ClassVar[str] = "augmix"

    def __init__(
        self,
        severity: int = 3,
        width: int = 3,
        depth: int = -1,
        alpha: float = 1.0,
        mix_weight_range: tuple[float, float] = (0.5, 1.0),
        region: bool = True,
        area_range: tuple[float, float] = (0.02, 0.15),
        aspect_range: tuple[float, float] = (0.3, 3.3),
        min_change: float = 0.02,
        max_tries: int = 8,
    ) -> None:
        super().__init__(min_change=min_change, max_tries=max_tries)
        if not 1 <= severity <= 10:
            msg = f"`severity` must be an integer in [1, 10], got {severity!r}."
            raise ValueError(msg)
        if width < 1:
            msg = f"`width` must be >= 1, got {width!r}."
            raise ValueError(msg)
        if depth == 0 or depth < -1:
            msg = f"`depth` must be >= 1 or -1 (random depth in [1, 3]), got {depth!r}."
            raise ValueError(msg)
        if not (math.isfinite(alpha) and alpha > 0):
            msg = f"`alpha` must be a finite number > 0, got {alpha!r}."
            raise ValueError(msg)
        self.severity = int(severity)
        self.width = int(width)
        self.depth = int(depth)
        self.alpha = float(alpha)
        self.mix_weight_range = _check_range("mix_weight_range", mix_weight_range, low=0.0, high=1.0)
        self.region = bool(region)
        self.area_range = _check_range("area_range", area_range, low=0.0, high=1.0, low_open=True)
        self.aspect_range = _check_range("aspect_range", aspect_range, low=0.0, low_open=True)

    def augment(self, target: Tensor, generator: torch.Generator) -> Tensor:
        """Apply the AugMix mixture to a whole tensor.

        Args:
            target: Float image ``(C, h, w)`` in ``[0, 1]``.
            generator: Source of randomness.

        Returns:
            The corrupted image, same shape, values in ``[0, 1]``.

        """
        weights = _dirichlet(generator, self.alpha, self.width)
        low, high = self.mix_weight_range
        mix_weight = low + (high - low) * _beta(generator, self.alpha, self.alpha)
        mixture = torch.zeros_like(target)
        for weight in weights:
            chained = target
            depth = self.depth if self.depth > 0 else _randint(generator, 1, 4)
            for _ in range(depth):
                operation = _AUGMIX_OPERATIONS[_randint(generator, 0, len(_AUGMIX_OPERATIONS))]
                chained = operation(chained, self.severity, generator)
            mixture += weight * chained
        return torch.lerp(target, mixture, mix_weight).clamp(0.0, 1.0)

    def _propose(self, image: Tensor, partner: Tensor | None, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        del partner
        height, width = image.shape[-2:]
        if not self.region:
            mask = torch.ones(height, width, dtype=torch.bool, device=image.device)
            return self.augment(image, generator), mask
        top, left, rect_h, rect_w = _sample_rect(height, width, self.area_range, self.aspect_range, generator)
        candidate = image.clone()
        crop = image[:, top : top + rect_h, left : left + rect_w]
        candidate[:, top : top + rect_h, left : left + rect_w] = self.augment(crop, generator)
        return candidate, _rect_mask(height, width, (top, left, rect_h, rect_w), image.device)


# ----------------------------------------------------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------------------------------------------------
PSEUDO_ANOMALIES: dict[str, type[PseudoAnomaly]] = {
    cls.name: cls for cls in (Mixup, CutMix, CutPaste, CutPasteScar, AugMixCorruption)
}
"""Pseudo-anomaly generator classes by registry name."""


def build_pseudo_anomalies(names: Sequence[str]) -> dict[str, PseudoAnomaly]:
    """Instantiate pseudo-anomaly generators with their default arguments.

    Names are matched case-insensitively, with ``-`` accepted for ``_`` (``"CutPaste-Scar"`` is ``"cutpaste_scar"``);
    duplicates are built once. A single string is treated as one name.

    Args:
        names: Registry names, keys of :data:`PSEUDO_ANOMALIES`: ``"mixup"``, ``"cutmix"``, ``"cutpaste"``,
            ``"cutpaste_scar"``, ``"augmix"``.

    Returns:
        The generators by canonical name, in the order given.

    Raises:
        ValueError: If a name is not in the registry; the message names it and lists the valid names.

    """
    if isinstance(names, str):
        names = [names]
    generators: dict[str, PseudoAnomaly] = {}
    for raw in names:
        key = str(raw).strip().lower().replace("-", "_")
        if key not in PSEUDO_ANOMALIES:
            msg = f"Unknown pseudo-anomaly {raw!r}; valid names are: {', '.join(PSEUDO_ANOMALIES)}."
            raise ValueError(msg)
        if key not in generators:
            generators[key] = PSEUDO_ANOMALIES[key]()
    return generators
