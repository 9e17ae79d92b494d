# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""Anomaly maps for segmentation: a Gaussian over local feature vectors, applied at every position.

The fine-tuned network's mid-level feature maps are resized to the finest of them, concatenated and averaged over
3 x 3 neighbourhoods; a mixture of Gaussians is fitted to their local feature vectors (every position of every
training image; :mod:`~anomalib_gaussft.model.local_mixture`). At inference the Mahalanobis distance of each local
vector to the nearest component is the local anomaly score; the map is upsampled to the input size and smoothed
with a Gaussian kernel (sigma 4 px, as in PaDiM; two 1-D passes). Unlike PaDiM's one Gaussian per position, the
mixture needs no spatial alignment between images and its memory does not grow with the input size
(see ``docs/method.md``).

Example:
    >>> import torch
    >>> generator = AnomalyMapGenerator(sigma=4)
    >>> generator(torch.rand(2, 1, 28, 28), image_size=(224, 224)).shape
    torch.Size([2, 1, 224, 224])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from anomalib_gaussft.model.precision import in_float32

__all__ = [
    "AnomalyMapGenerator",
    "SeparableGaussianBlur",
    "aggregate_local_features",
    "concatenate_local_features",
    "top_fraction_mean",
]


def concatenate_local_features(features: Sequence[torch.Tensor]) -> torch.Tensor:
    """Resize feature maps to the spatial size of the first (finest) one and concatenate them along channels.

    Args:
        features: Feature maps ``(N, C_i, H_i, W_i)``, finest first.

    Returns:
        Tensor of shape ``(N, sum C_i, H_0, W_0)``.
    """
    size = features[0].shape[-2:]
    resized = [features[0]] + [F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in features[1:]]
    return torch.cat(resized, dim=1)


def aggregate_local_features(features: torch.Tensor, size: int) -> torch.Tensor:
    """Average every local feature vector over its ``size x size`` neighbourhood (PatchCore's aggregation).

    Stride 1, the output keeps the input's size; at the borders only the positions inside the map are averaged.

    Args:
        features: ``(N, C, H, W)`` feature maps.
        size: Odd neighbourhood size; ``1`` returns ``features`` unchanged.

    Returns:
        The averaged features, ``(N, C, H, W)``.

    Example:
        >>> features = torch.zeros(1, 1, 3, 3)
        >>> features[0, 0, 1, 1] = 9.0
        >>> aggregate_local_features(features, 3)[0, 0]
        tensor([[2.2500, 1.5000, 2.2500],
                [1.5000, 1.0000, 1.5000],
                [2.2500, 1.5000, 2.2500]])
    """
    if size == 1:
        return features
    return F.avg_pool2d(features, size, stride=1, padding=size // 2, count_include_pad=False)


def top_fraction_mean(maps: torch.Tensor, fraction: float) -> torch.Tensor:
    """Mean of the largest ``fraction`` of each map's values (at least one value), shape ``(N,)``.

    A robust local image score: the maximum rests on one pixel, the top 1 % on a small region.

    Example:
        >>> top_fraction_mean(torch.arange(200.0).reshape(2, 1, 10, 10), 0.02)
        tensor([ 98.5000, 198.5000])
    """
    flat = maps.flatten(1)
    count = max(1, round(fraction * flat.shape[1]))
    return flat.topk(count, dim=1).values.mean(dim=1)


class SeparableGaussianBlur(nn.Module):
    """Gaussian smoothing as two 1-D convolutions with reflect padding.

    The same result as anomalib's ``GaussianBlur2d`` as PaDiM's anomaly map builds it (kernel size
    ``2 * int(4 * sigma + 0.5) + 1``, whose ``K x K`` kernel is the outer product of this 1-D kernel), up to float32
    rounding (below ``3e-6`` of the map's maximum; ``tests/test_model.py``), with ``2K`` instead of ``K^2`` products
    per pixel: for sigma 4 (K = 33) the dense blur cost more than the
    backbone in the OpenVINO export (``docs/deployment.md``). The kernel is a non-persistent buffer, rebuilt from
    ``sigma``.

    Args:
        sigma: Standard deviation in pixels.
    """

    def __init__(self, sigma: float) -> None:
        super().__init__()
        radius = int(4.0 * sigma + 0.5)
        positions = torch.arange(-radius, radius + 1, dtype=torch.float32)
        kernel = torch.exp(-(positions**2) / (2 * sigma**2))
        kernel = kernel / kernel.sum()
        self.radius = radius
        self.register_buffer("horizontal", kernel.reshape(1, 1, 1, -1), persistent=False)
        self.register_buffer("vertical", kernel.reshape(1, 1, -1, 1), persistent=False)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        """Smooth ``(N, 1, H, W)`` maps."""
        maps = F.conv2d(F.pad(maps, (self.radius, self.radius, 0, 0), mode="reflect"), self.horizontal)
        return F.conv2d(F.pad(maps, (0, 0, self.radius, self.radius), mode="reflect"), self.vertical)


class AnomalyMapGenerator(nn.Module):
    """Upsample a local score map to the input size and smooth it.

    Args:
        sigma: Standard deviation of the Gaussian smoothing kernel in pixels of the input image. ``0`` disables it.
    """

    def __init__(self, sigma: float = 4.0) -> None:
        super().__init__()
        self.sigma = sigma
        self.blur = SeparableGaussianBlur(sigma) if sigma > 0 else None

    @in_float32
    def forward(self, local_scores: torch.Tensor, image_size: tuple[int, int] | torch.Size) -> torch.Tensor:
        """Return the anomaly map ``(N, 1, H, W)`` at ``image_size`` from local scores ``(N, 1, h, w)`` (in float32)."""
        anomaly_map = F.interpolate(local_scores, size=tuple(image_size), mode="bilinear", align_corners=False)
        return self.blur(anomaly_map) if self.blur is not None else anomaly_map
