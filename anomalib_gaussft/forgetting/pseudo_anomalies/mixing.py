# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""Pseudo-anomalies that mix an image with another image of the batch: :class:`Mixup` and :class:`CutMix`.

The partner of each image is another image of the batch (a random permutation without fixed points); a batch of one
image is paired with a flipped and rolled copy of itself (see :class:`~.base.PseudoAnomaly`).

Example:
    >>> import torch
    >>> images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    >>> mixed, masks = Mixup()(images, torch.Generator().manual_seed(0))
    >>> bool(masks.all())  # Mixup changes the whole image
    True
    >>> cut, masks = CutMix()(images, torch.Generator().manual_seed(0))
    >>> 0.02 <= masks[0].mean().item() <= 0.15  # CutMix replaces a rectangle of 2 % to 15 % of the image
    True
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from anomalib_gaussft.forgetting.pseudo_anomalies.base import (
    PseudoAnomaly,
    _check_range,
    _rect_mask,
    _sample_rect,
    _uniform,
)

__all__ = ["CutMix", "Mixup"]


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
