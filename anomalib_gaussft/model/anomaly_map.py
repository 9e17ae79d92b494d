# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""Anomaly maps for segmentation: a Gaussian over local feature vectors, applied at every position.

The fine-tuned network's mid-level feature maps are resized to the finest of them, concatenated and averaged over
4 x 4 windows at stride 2; a mixture of Gaussians is fitted to the resulting local feature vectors (every cell of every
training image; :mod:`~anomalib_gaussft.model.local_mixture`). At inference the Mahalanobis distance of each local
vector to the nearest component is the local anomaly score; the map is upsampled to the input size and smoothed
with a Gaussian kernel (sigma 4 px, as in PaDiM; with the upsampling, one matrix per axis). Unlike PaDiM's one
Gaussian per position, the mixture needs no spatial alignment between images and its memory does not grow with the
input size (see ``docs/method.md``).

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
    "check_aggregation",
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


def check_aggregation(size: int, stride: int) -> None:
    """Raise if ``size x size`` windows at ``stride`` cannot be centred on their cells (see below).

    Raises:
        ValueError: Unless ``size >= stride >= 1`` and ``size - stride`` is even.
    """
    if stride < 1 or size < stride or (size - stride) % 2:
        msg = (
            f"A local aggregation of size {size} at stride {stride} has no centred windows: it needs "
            "size >= stride >= 1 with size - stride even (settings `local_aggregation`, `local_stride`)."
        )
        raise ValueError(msg)


def aggregate_local_features(features: torch.Tensor, size: int, stride: int = 1) -> torch.Tensor:
    """Average the local feature vectors over ``size x size`` windows, one window per ``stride x stride`` cell.

    The window of output cell ``(i, j)`` is centred on the ``stride x stride`` block of input positions the cell stands
    for (rows ``stride i - (size - stride) / 2`` to ``stride i + (size + stride) / 2 - 1``), so upsampling the output
    to the input's extent puts every value back where its window was. Stride 1 (PatchCore's aggregation) keeps the
    input's size; stride ``s`` gives ``ceil(H / s) x ceil(W / s)`` cells. At the borders only the positions inside
    the map are averaged.

    Args:
        features: ``(N, C, H, W)`` feature maps.
        size: Window size; ``size - stride`` must be even and non-negative.
        stride: Input positions per output cell along each axis.

    Returns:
        The averaged features, ``(N, C, ceil(H / stride), ceil(W / stride))``.

    Raises:
        ValueError: If ``size`` and ``stride`` do not centre the windows.

    Example:
        >>> features = torch.zeros(1, 1, 3, 3)
        >>> features[0, 0, 1, 1] = 9.0
        >>> aggregate_local_features(features, 3)[0, 0]
        tensor([[2.2500, 1.5000, 2.2500],
                [1.5000, 1.0000, 1.5000],
                [2.2500, 1.5000, 2.2500]])
        >>> aggregate_local_features(torch.arange(16.0).reshape(1, 1, 4, 4), 4, stride=2)[0, 0]
        tensor([[ 5.,  6.],
                [ 9., 10.]])
    """
    check_aggregation(size, stride)
    if size == 1:
        return features
    padding = (size - stride) // 2
    return F.avg_pool2d(features, size, stride=stride, padding=padding, ceil_mode=True, count_include_pad=False)


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
        return self.blur_columns(maps)

    def blur_columns(self, maps: torch.Tensor) -> torch.Tensor:
        """Smooth ``(N, 1, H, W)`` maps along ``H`` only (the second of :meth:`forward`'s two passes)."""
        padded = F.pad(maps, (0, 0, self.radius, self.radius), mode="reflect")
        return F.conv2d(padded, self.vertical.to(maps.dtype))


class AnomalyMapGenerator(nn.Module):
    """Upsample a local score map to the input size and smooth it.

    Bilinear upsampling (``align_corners=False``) and the separable blur are both linear and act on each axis alone, so
    together they are one matrix per axis: the map is ``K_h @ scores @ K_w^T`` with ``K`` the ``(H, h)`` matrix of
    upsampling then blurring one axis (:meth:`axis_matrix`, built by running :func:`torch.nn.functional.interpolate`
    and :class:`SeparableGaussianBlur` on the identity). Two small matrix products instead of an upsampled map blurred
    with ``2K`` products per pixel: the same maps up to float32 rounding (``tests/test_model.py``), and in exported
    graphs the matrices are constants.

    Args:
        sigma: Standard deviation of the Gaussian smoothing kernel in pixels of the input image. ``0`` disables it.

    Example:
        >>> generator = AnomalyMapGenerator(sigma=4.0)
        >>> scores = torch.rand(2, 1, 14, 14)
        >>> fused = generator(scores, (224, 224))
        >>> upsampled = F.interpolate(scores, size=(224, 224), mode="bilinear", align_corners=False)
        >>> fused.shape, torch.allclose(fused, generator.blur(upsampled), atol=1e-5)
        (torch.Size([2, 1, 224, 224]), True)
    """

    def __init__(self, sigma: float = 4.0) -> None:
        super().__init__()
        self.sigma = sigma
        self.blur = SeparableGaussianBlur(sigma) if sigma > 0 else None

    def axis_matrix(self, size_in: int, size_out: int, like: torch.Tensor) -> torch.Tensor:
        """The ``(size_out, size_in)`` matrix that upsamples one axis bilinearly and blurs it (on ``like``'s device)."""
        basis = torch.eye(size_in, dtype=like.dtype, device=like.device).reshape(size_in, 1, size_in, 1)
        columns = F.interpolate(basis, size=(size_out, 1), mode="bilinear", align_corners=False)
        if self.blur is not None:
            columns = self.blur.blur_columns(columns)
        return columns.reshape(size_in, size_out).transpose(0, 1)

    @in_float32
    def forward(self, local_scores: torch.Tensor, image_size: tuple[int, int] | torch.Size) -> torch.Tensor:
        """Return the anomaly map ``(N, 1, H, W)`` at ``image_size`` from local scores ``(N, 1, h, w)`` (in float32)."""
        (height, width), (rows, columns) = tuple(image_size), local_scores.shape[-2:]
        vertical = self.axis_matrix(int(rows), int(height), local_scores)
        horizontal = self.axis_matrix(int(columns), int(width), local_scores)
        return vertical @ local_scores @ horizontal.transpose(0, 1)
