# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""The fine-tuning objective: Mahalanobis distance of normal images to the induced Gaussian.

Rippel et al. (2021) induce a multivariate Gaussian for the normal class in the network's features and fine-tune
with the Mahalanobis distance of normal training images to it as the loss. The Gaussian's parameters are held
fixed (re-estimated on a schedule from the current network, see :class:`anomalib_gaussft.GaussFT`); gradients flow
through the features only.

Example:
    >>> import torch
    >>> from anomalib_gaussft.model.gaussian import MultivariateGaussian
    >>> loss_fn = MahalanobisLoss()
    >>> features = [torch.randn(4, 8, requires_grad=True), torch.randn(4, 16, requires_grad=True)]
    >>> loss = loss_fn(features, [MultivariateGaussian(8), MultivariateGaussian(16)])
    >>> loss.backward()
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from anomalib_gaussft.model.gaussian import MultivariateGaussian

__all__ = ["MahalanobisLoss"]


class MahalanobisLoss(nn.Module):
    """Mean over the batch of the summed per-level Mahalanobis distances.

    ``loss = 1/N sum_n sum_l d_l(f_l(x_n))`` with ``d_l`` the Mahalanobis distance to level ``l``'s Gaussian.
    This is the same quantity as the image score of the fixed Gaussians, so lowering the loss pulls normal images
    towards the centre of the normal class in every level.
    """

    def forward(self, features: Sequence[torch.Tensor], gaussians: Sequence[MultivariateGaussian]) -> torch.Tensor:
        """Compute the loss.

        Args:
            features: Pooled features per level, each of shape ``(N, p_l)``.
            gaussians: The fitted Gaussian of each level, same order.

        Returns:
            Scalar loss tensor.
        """
        if len(features) != len(gaussians) or not features:
            msg = f"Expected one Gaussian per feature level, got {len(features)} levels and {len(gaussians)} Gaussians."
            raise ValueError(msg)
        distances = torch.stack([gaussian(level) for level, gaussian in zip(features, gaussians, strict=True)], dim=1)
        return distances.sum(dim=1).mean()
