# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""The estimators that one pass over the normal training images fills, for every Gaussian of a ``GaussFTModel``.

:class:`GaussianEstimators` bundles the global levels' streaming moments, the local vectors that the mixture is
clustered on and, with per-position Gaussians, every position's moments; :mod:`~anomalib_gaussft.model.fitting`
fills it and ``GaussFTModel.load_fits`` turns it into Gaussians.

"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from anomalib_gaussft.model.gaussian import StreamingGaussianEstimator
from anomalib_gaussft.model.local_sample import LocalVectorSample, position_priorities
from anomalib_gaussft.model.positional_gaussians import PositionalGaussianEstimator

__all__ = ["GaussianEstimators"]


@dataclass
class GaussianEstimators:
    """The estimators of every Gaussian of a :class:`GaussFTModel`, by name.

    Attributes:
        levels: One streaming estimator per global level, in the model's ``layers`` order; each receives one pooled
            feature vector per image.
        local: The sample of local feature vectors (every position of every image, up to its limit) that the
            anomaly map's mixture is fitted on.
        positional: The moments of every position's local vectors, for the per-position Gaussians (``None``
            without them).

    Example:
        >>> estimators = GaussianEstimators(levels=[StreamingGaussianEstimator(4)], local=LocalVectorSample(2))
        >>> estimators.update([torch.randn(3, 4)], local=torch.randn(3, 2, 5, 5))
        >>> estimators.n_images, estimators.local.n_samples
        (3, 75)
    """

    levels: list[StreamingGaussianEstimator]
    local: LocalVectorSample
    positional: PositionalGaussianEstimator | None = None

    @property
    def n_images(self) -> int:
        """Number of images accumulated (counted by the first global level; the local sample counts positions)."""
        return self.levels[0].n_samples if self.levels else 0

    def update(self, pooled: Sequence[torch.Tensor], local: torch.Tensor, keys: Sequence[int] | None = None) -> None:
        """Add a batch: pooled features per global level ``[(N, p_l)]`` and the local feature map ``(N, p, h, w)``.

        Args:
            pooled: Pooled features per global level.
            local: The local feature map.
            keys: One key per image (:func:`~anomalib_gaussft.model.local_mixture.image_keys`), which picks the
                positions the local sample keeps; ``None``: the sample's own seeded draws (order-dependent).

        Raises:
            ValueError: If the number of pooled levels differs from the number of estimators.
        """
        if len(pooled) != len(self.levels):
            msg = f"Got pooled features of {len(pooled)} levels for {len(self.levels)} level estimators."
            raise ValueError(msg)
        for estimator, features in zip(self.levels, pooled, strict=True):
            estimator.update(features)
        priorities = None if keys is None else position_priorities(keys, local.shape[2] * local.shape[3])
        self.local.update(local.permute(0, 2, 3, 1).reshape(-1, local.shape[1]), priorities)
        if self.positional is not None:
            self.positional.update(local)

    def all_reduce(
        self,
        reduce_sum: Callable[[torch.Tensor], torch.Tensor],
        all_gather: Callable[[torch.Tensor], torch.Tensor],
    ) -> None:
        """Combine the statistics of every process: sum the global and per-position moments, gather the local samples.

        Args:
            reduce_sum: See :meth:`StreamingGaussianEstimator.all_reduce`.
            all_gather: See :meth:`LocalVectorSample.all_gather`.
        """
        for estimator in self.levels:
            estimator.all_reduce(reduce_sum)
        self.local.all_gather(all_gather)
        if self.positional is not None:
            self.positional.all_reduce(reduce_sum)
