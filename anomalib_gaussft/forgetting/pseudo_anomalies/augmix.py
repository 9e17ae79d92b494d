# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""AugMix-style corruption (Hendrycks et al. 2020) as a pseudo-anomaly: :class:`AugMixCorruption`.

Example:
    >>> import torch
    >>> images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    >>> corrupted, masks = AugMixCorruption()(images, torch.Generator().manual_seed(0))
    >>> 0.02 <= masks[0].mean().item() <= 0.15  # by default a local rectangle is corrupted
    True
    >>> corrupted, masks = AugMixCorruption(region=False)(images, torch.Generator().manual_seed(0))
    >>> bool(masks.all())
    True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import ClassVar

import torch
from torch import Tensor
from torchvision.transforms.v2 import functional as F  # noqa: N812

from anomalib_gaussft.forgetting.pseudo_anomalies.base import (
    PseudoAnomaly,
    _check_range,
    _randint,
    _rect_mask,
    _sample_rect,
    _uniform,
)

__all__ = ["AugMixCorruption"]

_BILINEAR = F.InterpolationMode.BILINEAR


# Random draws only AugMix needs (Dirichlet chain weights, Beta corruption weight, signed magnitudes).
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
