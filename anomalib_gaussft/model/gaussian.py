# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""The multivariate Gaussian of the normal class: streaming estimation and Mahalanobis scoring.

Two pieces, one per job:

* :class:`StreamingGaussianEstimator` accumulates float64 moments of feature vectors batch by batch (memory
  independent of the number of images), can be summed across DDP ranks, and fits a Gaussian with Ledoit-Wolf
  shrinkage that equals :class:`sklearn.covariance.LedoitWolf` on the same data. It is well defined with fewer
  samples than dimensions.
* :class:`MultivariateGaussian` is the fitted Gaussian as an ``nn.Module``: its mean and whitening matrix
  (the inverse Cholesky factor of the covariance) live in buffers, so they move with ``.to()``, load from
  checkpoints and export with ``torch.export``. Scoring is a matrix product and a norm: no autograd needed,
  no data-dependent branches.

Example:
    >>> import torch
    >>> estimator = StreamingGaussianEstimator(dim=8)
    >>> for _ in range(4):
    ...     estimator.update(torch.randn(16, 8))
    >>> gaussian = MultivariateGaussian(dim=8)
    >>> gaussian.load_fit(estimator.fit())
    >>> gaussian(torch.randn(3, 8)).shape
    torch.Size([3])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

__all__ = [
    "GaussianFit",
    "MultivariateGaussian",
    "StreamingGaussianEstimator",
    "ledoit_wolf_shrinkage",
    "mahalanobis_distance",
]


def ledoit_wolf_shrinkage(
    covariance: torch.Tensor,
    sum_fourth_power_norms: torch.Tensor,
    count: int,
) -> torch.Tensor:
    """Ledoit-Wolf shrinkage intensity, as computed by ``sklearn.covariance.ledoit_wolf_shrinkage``.

    The shrunk covariance is ``(1 - s) * C + s * mu * I`` with ``mu = trace(C) / p``. sklearn computes ``s`` from
    the centred data matrix; everything it needs is the empirical covariance ``C`` and ``sum_i ||x_i - mean||^4``,
    which :class:`StreamingGaussianEstimator` accumulates without keeping the samples.

    Args:
        covariance: Empirical (biased, divided by ``n``) covariance, shape ``(p, p)``, float64.
        sum_fourth_power_norms: ``sum_i ||x_i - mean||^4`` over the samples, a float64 scalar.
        count: Number of samples ``n``.

    Returns:
        The shrinkage intensity in ``[0, 1]`` as a float64 scalar tensor.
    """
    n_features = covariance.shape[0]
    mu = torch.trace(covariance) / n_features
    delta_ = (covariance**2).sum()  # sklearn: sum((X^T X)^2) / n^2
    beta = (sum_fourth_power_norms / count - delta_) / (n_features * count)
    delta = (delta_ - n_features * mu**2) / n_features  # = ||C - mu I||_F^2 / p
    beta = torch.minimum(beta, delta)
    if delta <= 0 or beta <= 0:  # isotropic or degenerate data: the target already equals C
        return torch.zeros((), dtype=covariance.dtype, device=covariance.device)
    return beta / delta


@dataclass(frozen=True)
class GaussianFit:
    """A fitted Gaussian in float64, before it is stored in a :class:`MultivariateGaussian`.

    Attributes:
        mean: Mean vector, shape ``(p,)``.
        covariance: Ledoit-Wolf shrunk covariance (plus the ridge), shape ``(p, p)``.
        whitening: Inverse of the lower Cholesky factor ``L`` of ``covariance``; ``||W (x - mean)||`` is the
            Mahalanobis distance.
        shrinkage: The Ledoit-Wolf shrinkage intensity that was applied.
        count: Number of samples the fit used.
    """

    mean: torch.Tensor
    covariance: torch.Tensor
    whitening: torch.Tensor
    shrinkage: float
    count: int


class StreamingGaussianEstimator:
    """Accumulates the moments of feature vectors in float64 and fits a Ledoit-Wolf Gaussian.

    The statistics are the count ``n``, ``sum y``, ``sum y y^T``, ``sum ||y||^2 y`` and ``sum ||y||^4`` of the
    shifted samples ``y = x - shift``. They are additive, so batches (and DDP ranks, see :meth:`all_reduce`) can be
    summed in any order; memory is ``O(p^2)`` whatever the number of samples. The shift only improves numerical
    accuracy; by default it is the mean of the first batch.

    Args:
        dim: Feature dimension ``p``.
        shift: Optional vector subtracted from every sample before accumulation. Defaults to zeros.
        device: Device of the accumulators. Defaults to the device of ``shift`` or the CPU.

    Example:
        >>> estimator = StreamingGaussianEstimator(dim=4)
        >>> estimator.update(torch.randn(100, 4))
        >>> fit = estimator.fit()
        >>> fit.mean.shape, fit.covariance.shape
        (torch.Size([4]), torch.Size([4, 4]))
    """

    def __init__(self, dim: int, shift: torch.Tensor | None = None, device: torch.device | str | None = None) -> None:
        if dim < 1:
            msg = f"Feature dimension must be positive, got {dim}."
            raise ValueError(msg)
        if device is None:
            device = shift.device if shift is not None else "cpu"
        self.dim = dim
        kwargs = {"dtype": torch.float64, "device": device}
        self._shift_given = shift is not None
        self.shift = torch.zeros(dim, **kwargs) if shift is None else shift.detach().to(**kwargs).clone()
        if self.shift.shape != (dim,):
            msg = f"Shift must have shape ({dim},), got {tuple(self.shift.shape)}."
            raise ValueError(msg)
        self.count = torch.zeros((), **kwargs)
        self.sum = torch.zeros(dim, **kwargs)
        self.sum_outer = torch.zeros(dim, dim, **kwargs)
        self.sum_norm2_weighted = torch.zeros(dim, **kwargs)
        self.sum_norm4 = torch.zeros((), **kwargs)

    def update(self, samples: torch.Tensor) -> None:
        """Add a batch of samples.

        Args:
            samples: Tensor of shape ``(n, p)``; any float dtype (converted to float64).

        Raises:
            ValueError: If the shape does not match or the samples contain NaN or infinite values.
        """
        if samples.ndim != 2 or samples.shape[1] != self.dim:
            msg = f"Expected samples of shape (n, {self.dim}), got {tuple(samples.shape)}."
            raise ValueError(msg)
        x = samples.detach().to(dtype=torch.float64, device=self.shift.device)
        if not torch.isfinite(x).all():
            msg = (
                "Features contain NaN or infinite values (for example from fp16 overflow under mixed precision, "
                "or from a diverged fine-tuning run); the Gaussian cannot be estimated from them."
            )
            raise ValueError(msg)
        if not self._shift_given and self.count.item() == 0 and x.shape[0] > 0:
            self.shift = x.mean(dim=0)  # centre on the first batch: keeps float64 sums well conditioned
        y = x - self.shift
        norm2 = (y * y).sum(dim=1)
        self.count += y.shape[0]
        self.sum += y.sum(dim=0)
        self.sum_outer += y.T @ y
        self.sum_norm2_weighted += norm2 @ y
        self.sum_norm4 += (norm2 * norm2).sum()

    def _moments_about(self, new_shift: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The accumulated moments re-expressed for samples shifted by ``new_shift`` instead of ``self.shift``.

        With ``d = shift - new_shift`` every sample becomes ``y + d``; the sums expand exactly.

        Returns:
            ``(sum, sum_outer, sum_norm2_weighted, sum_norm4)`` about ``new_shift``.
        """
        n, s1, s2, v, s4 = self.count, self.sum, self.sum_outer, self.sum_norm2_weighted, self.sum_norm4
        d = self.shift - new_shift
        dd = d @ d
        s1_d = s1 @ d
        s2_d = s2 @ d
        trace_s2 = torch.trace(s2)
        new_s1 = s1 + n * d
        new_s2 = s2 + torch.outer(s1, d) + torch.outer(d, s1) + n * torch.outer(d, d)
        new_v = v + trace_s2 * d + 2 * s2_d + 2 * s1_d * d + dd * s1 + n * dd * d
        new_s4 = s4 + 4 * (d @ s2_d) + n * dd * dd + 4 * (v @ d) + 2 * dd * trace_s2 + 4 * dd * s1_d
        return new_s1, new_s2, new_v, new_s4

    def all_reduce(self, reduce_sum: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Sum the statistics across processes, e.g. DDP ranks, so every rank holds the global moments.

        Each rank may have centred its samples differently; the moments are first re-expressed about the mean of
        all ranks' shifts (the same on every rank), then summed.

        Args:
            reduce_sum: A function that returns the sum of a tensor over all processes, such as
                ``lambda t: trainer.strategy.reduce(t, reduce_op="sum")``.
        """
        world_size = reduce_sum(torch.ones((), dtype=torch.float64, device=self.shift.device))
        common_shift = reduce_sum(self.shift.clone()) / world_size
        s1, s2, v, s4 = self._moments_about(common_shift)
        self.shift = common_shift
        self.count = reduce_sum(self.count.clone())
        self.sum = reduce_sum(s1)
        self.sum_outer = reduce_sum(s2)
        self.sum_norm2_weighted = reduce_sum(v)
        self.sum_norm4 = reduce_sum(s4)

    @property
    def n_samples(self) -> int:
        """Number of samples accumulated so far."""
        return int(self.count.item())

    def mean(self) -> torch.Tensor:
        """Sample mean, float64."""
        self._check_not_empty()
        return self.shift + self.sum / self.count

    def covariance(self) -> torch.Tensor:
        """Empirical (maximum likelihood, divided by ``n``) covariance, float64."""
        self._check_not_empty()
        centered_mean = self.sum / self.count
        covariance = self.sum_outer / self.count - torch.outer(centered_mean, centered_mean)
        return (covariance + covariance.T) / 2

    def ledoit_wolf(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Ledoit-Wolf shrunk covariance and its shrinkage intensity (equal to sklearn's ``LedoitWolf``).

        Returns:
            ``(covariance, shrinkage)`` in float64.
        """
        covariance = self.covariance()
        _, _, _, sum_fourth = self._moments_about(self.mean())  # sum_i ||x_i - mean||^4
        shrinkage = ledoit_wolf_shrinkage(covariance, sum_fourth.clamp_min(0), self.n_samples)
        mu = torch.trace(covariance) / self.dim
        eye = torch.eye(self.dim, dtype=covariance.dtype, device=covariance.device)
        return (1 - shrinkage) * covariance + shrinkage * mu * eye, shrinkage

    def fit(self, ridge: float = 1e-6) -> GaussianFit:
        """Fit the Gaussian: mean, Ledoit-Wolf covariance and its Cholesky-based whitening matrix.

        Args:
            ridge: Relative ridge added to the diagonal before the Cholesky factorisation, as a fraction of the
                mean variance ``trace(C) / p`` (an absolute ``ridge`` when all variances are zero, e.g. constant
                images). Keeps the factorisation defined for singular data; ``1e-6`` changes scores negligibly.

        Returns:
            The fitted :class:`GaussianFit`.
        """
        covariance, shrinkage = self.ledoit_wolf()
        mu = torch.trace(covariance) / self.dim
        scale = mu if mu > 0 else torch.ones_like(mu)
        eye = torch.eye(self.dim, dtype=covariance.dtype, device=covariance.device)
        covariance = covariance + ridge * scale * eye
        cholesky, info = torch.linalg.cholesky_ex(covariance)
        if info.item() != 0:  # not positive definite even with the ridge: raise it until it is
            for factor in (1e-4, 1e-2, 1.0):
                cholesky, info = torch.linalg.cholesky_ex(covariance + factor * scale * eye)
                if info.item() == 0:
                    break
            else:
                msg = "Covariance is not positive definite; are the features finite?"
                raise ValueError(msg)
        whitening = torch.linalg.solve_triangular(cholesky, eye, upper=False)
        return GaussianFit(
            mean=self.mean(),
            covariance=covariance,
            whitening=whitening,
            shrinkage=float(shrinkage),
            count=self.n_samples,
        )

    def _check_not_empty(self) -> None:
        if self.count.item() == 0:
            msg = "No samples were accumulated: the Gaussian cannot be estimated from an empty training set."
            raise ValueError(msg)


def mahalanobis_distance(samples: torch.Tensor, mean: torch.Tensor, whitening: torch.Tensor) -> torch.Tensor:
    """Mahalanobis distance ``sqrt((x - mean)^T Sigma^-1 (x - mean))`` along the last dimension.

    Args:
        samples: Tensor of shape ``(..., p)``.
        mean: Mean vector ``(p,)``.
        whitening: Inverse Cholesky factor ``W`` with ``Sigma^-1 = W^T W``, shape ``(p, p)``.

    Returns:
        Distances of shape ``(...)``. Differentiable with respect to ``samples`` (the square root is taken of a
        value clamped at ``1e-12`` so the gradient stays finite at the mean).
    """
    whitened = (samples - mean) @ whitening.T
    return (whitened * whitened).sum(dim=-1).clamp_min(1e-12).sqrt()


class MultivariateGaussian(nn.Module):
    """A fitted Gaussian held in buffers; ``forward`` returns Mahalanobis distances.

    Buffers are float32 (the fit is float64) and start as the standard normal until :meth:`load_fit` is called.

    Args:
        dim: Feature dimension ``p``.

    Example:
        >>> gaussian = MultivariateGaussian(dim=3)
        >>> gaussian(torch.zeros(2, 3))
        tensor([1.0000e-06, 1.0000e-06])
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("whitening", torch.eye(dim))
        self.register_buffer("shrinkage", torch.zeros(()))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))
        self.mean: torch.Tensor
        self.whitening: torch.Tensor
        self.shrinkage: torch.Tensor
        self.fitted: torch.Tensor

    def load_fit(self, fit: GaussianFit) -> None:
        """Store a fitted Gaussian in the buffers (converted to the buffers' dtype and device).

        Args:
            fit: Result of :meth:`StreamingGaussianEstimator.fit`.
        """
        if fit.mean.shape != (self.dim,):
            msg = f"Fit has dimension {fit.mean.shape[0]}, this Gaussian expects {self.dim}."
            raise ValueError(msg)
        self.mean.copy_(fit.mean)
        self.whitening.copy_(fit.whitening)
        self.shrinkage.fill_(fit.shrinkage)
        self.fitted.fill_(True)

    def forward(self, samples: torch.Tensor) -> torch.Tensor:
        """Mahalanobis distance of ``samples`` (shape ``(..., p)``) to the Gaussian.

        The buffers are constants here: gradients flow into ``samples`` only.
        """
        return mahalanobis_distance(samples, self.mean.detach(), self.whitening.detach())

    def distance_map(self, features: torch.Tensor) -> torch.Tensor:
        """Mahalanobis distance at every position of a feature map.

        Args:
            features: Tensor of shape ``(N, p, H, W)``.

        Returns:
            Distances of shape ``(N, 1, H, W)``.
        """
        return self(features.permute(0, 2, 3, 1)).unsqueeze(1)

    def extra_repr(self) -> str:
        """Dimension shown in the module's repr."""
        return f"dim={self.dim}"
