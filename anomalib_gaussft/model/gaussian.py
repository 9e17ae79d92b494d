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
from typing import ClassVar

import torch
from torch import nn

from anomalib_gaussft.model.precision import in_float32
from anomalib_gaussft.model.triangular_storage import LowerTriangularStorage

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
        covariance: Empirical (biased, divided by ``n``) covariance, shape ``(..., p, p)`` (leading dimensions: a
            batch of independent Gaussians), float64.
        sum_fourth_power_norms: ``sum_i ||x_i - mean||^4`` over the samples, float64, shape ``(...)``.
        count: Number of samples ``n``.

    Returns:
        The shrinkage intensity in ``[0, 1]``, float64, shape ``(...)``.
    """
    n_features = covariance.shape[-1]
    mu = _trace(covariance) / n_features
    delta_ = (covariance**2).sum(dim=(-2, -1))  # sklearn: sum((X^T X)^2) / n^2
    beta = (sum_fourth_power_norms / count - delta_) / (n_features * count)
    delta = (delta_ - n_features * mu**2) / n_features  # = ||C - mu I||_F^2 / p
    beta = torch.minimum(beta, delta)
    degenerate = (delta <= 0) | (beta <= 0)  # isotropic or degenerate data: the target already equals C
    return torch.where(degenerate, torch.zeros_like(delta), beta / torch.where(degenerate, 1, delta))


def _trace(matrices: torch.Tensor) -> torch.Tensor:  # of every matrix of (..., p, p)
    return matrices.diagonal(dim1=-2, dim2=-1).sum(dim=-1)


def _outer(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:  # (..., p) x (..., q) -> (..., p, q)
    return first.unsqueeze(-1) * second.unsqueeze(-2)


def _dot(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:  # along the last dimension
    return (first * second).sum(dim=-1)


@dataclass(frozen=True)
class GaussianFit:
    """A fitted Gaussian in float64, before it is stored in a :class:`MultivariateGaussian`.

    The fit of a batched estimator (``batch_shape``) holds every Gaussian of the batch along leading dimensions.

    Attributes:
        mean: Mean vector, shape ``(..., p)``.
        covariance: Ledoit-Wolf shrunk covariance (plus the ridge), shape ``(..., p, p)``.
        whitening: Inverse of the lower Cholesky factor ``L`` of ``covariance``; ``||W (x - mean)||`` is the
            Mahalanobis distance.
        shrinkage: The Ledoit-Wolf shrinkage intensity that was applied (a float; a ``(...)`` tensor for a batch).
        count: Number of samples the fit used (each Gaussian of a batch).
    """

    mean: torch.Tensor
    covariance: torch.Tensor
    whitening: torch.Tensor
    shrinkage: float | torch.Tensor
    count: int


class StreamingGaussianEstimator:
    """Accumulates the moments of feature vectors in float64 and fits a Ledoit-Wolf Gaussian.

    The statistics are the count ``n``, ``sum y``, ``sum y y^T``, ``sum ||y||^2 y`` and ``sum ||y||^4`` of the
    shifted samples ``y = x - shift``. They are additive, so batches (and DDP ranks, see :meth:`all_reduce`) can be
    summed in any order; memory is ``O(p^2)`` whatever the number of samples. The shift only improves numerical
    accuracy; by default it is the mean of the first batch.

    With ``batch_shape`` the estimator holds that many independent Gaussians at once (e.g. one per position of a
    feature map): every statistic gains the leading ``batch_shape`` dimensions, an update is one batched matrix
    product, :meth:`all_reduce` issues the same seven collectives whatever the batch, and :meth:`fit` factorises
    every covariance in one batched call. Each Gaussian of the batch gets the numbers an estimator of its own gets.

    Args:
        dim: Feature dimension ``p``.
        shift: Optional vector subtracted from every sample before accumulation, shape ``(*batch_shape, p)``.
            Defaults to zeros.
        device: Device of the accumulators. Defaults to the device of ``shift`` or the CPU.
        batch_shape: Leading dimensions of independent Gaussians (default: one Gaussian).

    Example:
        >>> estimator = StreamingGaussianEstimator(dim=4)
        >>> estimator.update(torch.randn(100, 4))
        >>> fit = estimator.fit()
        >>> fit.mean.shape, fit.covariance.shape
        (torch.Size([4]), torch.Size([4, 4]))

        Three independent Gaussians, each fitted on its own 50 samples:

        >>> batched = StreamingGaussianEstimator(dim=4, batch_shape=(3,))
        >>> batched.update(torch.randn(3, 50, 4))
        >>> batched.fit().whitening.shape, batched.n_samples
        (torch.Size([3, 4, 4]), 50)
    """

    def __init__(
        self,
        dim: int,
        shift: torch.Tensor | None = None,
        device: torch.device | str | None = None,
        batch_shape: tuple[int, ...] = (),
    ) -> None:
        if dim < 1:
            msg = f"Feature dimension must be positive, got {dim}."
            raise ValueError(msg)
        if device is None:
            device = shift.device if shift is not None else "cpu"
        self.dim = dim
        self.batch_shape = tuple(batch_shape)
        kwargs = {"dtype": torch.float64, "device": device}
        self._shift_given = shift is not None
        vector = (*self.batch_shape, dim)
        self.shift = torch.zeros(vector, **kwargs) if shift is None else shift.detach().to(**kwargs).clone()
        if self.shift.shape != vector:
            msg = f"Shift must have shape {vector}, got {tuple(self.shift.shape)}."
            raise ValueError(msg)
        self.count = torch.zeros((), **kwargs)
        self.sum = torch.zeros(vector, **kwargs)
        self.sum_outer = torch.zeros((*vector, dim), **kwargs)
        self.sum_norm2_weighted = torch.zeros(vector, **kwargs)
        self.sum_norm4 = torch.zeros(self.batch_shape, **kwargs)

    def update(self, samples: torch.Tensor) -> None:
        """Add a batch of samples.

        Args:
            samples: Tensor of shape ``(*batch_shape, n, p)``; any float dtype (converted to float64).

        Raises:
            ValueError: If the shape does not match or the samples contain NaN or infinite values.
        """
        expected = (*self.batch_shape, "n", self.dim)
        if samples.ndim != len(expected) or samples.shape[:-2] != self.batch_shape or samples.shape[-1] != self.dim:
            msg = f"Expected samples of shape ({', '.join(map(str, expected))}), got {tuple(samples.shape)}."
            raise ValueError(msg)
        x = samples.detach().to(dtype=torch.float64, device=self.shift.device)
        if not torch.isfinite(x).all():
            msg = (
                "Features contain NaN or infinite values (for example from fp16 overflow under mixed precision, "
                "or from a diverged fine-tuning run); the Gaussian cannot be estimated from them."
            )
            raise ValueError(msg)
        if not self._shift_given and self.count.item() == 0 and x.shape[-2] > 0:
            self.shift = x.mean(dim=-2)  # centre on the first batch: keeps float64 sums well conditioned
        y = x - self.shift.unsqueeze(-2)
        norm2 = (y * y).sum(dim=-1)
        self.count += y.shape[-2]
        self.sum += y.sum(dim=-2)
        flat = y.reshape(-1, *y.shape[-2:])  # (batch, n, p): accumulate in place, no (batch, p, p) temporary
        self.sum_outer.view(-1, self.dim, self.dim).baddbmm_(flat.mT, flat)
        self.sum_norm2_weighted += (norm2.unsqueeze(-2) @ y).squeeze(-2)
        self.sum_norm4 += (norm2 * norm2).sum(dim=-1)

    def _moments_about(self, new_shift: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The accumulated moments re-expressed for samples shifted by ``new_shift`` instead of ``self.shift``.

        With ``d = shift - new_shift`` every sample becomes ``y + d``; the sums expand exactly.

        Returns:
            ``(sum, sum_outer, sum_norm2_weighted, sum_norm4)`` about ``new_shift``.
        """
        n, s1, s2, v, s4 = self.count, self.sum, self.sum_outer, self.sum_norm2_weighted, self.sum_norm4
        d = self.shift - new_shift
        dd = _dot(d, d)
        s1_d = _dot(s1, d)
        s2_d = (s2 @ d.unsqueeze(-1)).squeeze(-1)
        trace_s2 = _trace(s2)
        new_s1 = s1 + n * d
        new_s2 = s2 + _outer(s1, d) + _outer(d, s1) + n * _outer(d, d)
        new_v = v + (trace_s2 + 2 * s1_d + n * dd).unsqueeze(-1) * d + 2 * s2_d + dd.unsqueeze(-1) * s1
        new_s4 = s4 + 4 * _dot(d, s2_d) + n * dd * dd + 4 * _dot(v, d) + 2 * dd * trace_s2 + 4 * dd * s1_d
        return new_s1, new_s2, new_v, new_s4

    def all_reduce(self, reduce_sum: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Sum the statistics across processes, e.g. DDP ranks, so every rank holds the global moments.

        Each rank may have centred its samples differently; the moments are first re-expressed about the mean of
        all ranks' shifts (the same on every rank), then summed. Seven calls of ``reduce_sum``, whatever the
        ``batch_shape``.

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
        """Number of samples accumulated so far (into each Gaussian of a batch)."""
        return int(self.count.item())

    def mean(self) -> torch.Tensor:
        """Sample mean, float64."""
        self._check_not_empty()
        return self.shift + self.sum / self.count

    def covariance(self) -> torch.Tensor:
        """Empirical (maximum likelihood, divided by ``n``) covariance, float64."""
        self._check_not_empty()
        centered_mean = self.sum / self.count
        covariance = self.sum_outer / self.count - _outer(centered_mean, centered_mean)
        return (covariance + covariance.mT) / 2

    def ledoit_wolf(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Ledoit-Wolf shrunk covariance and its shrinkage intensity (equal to sklearn's ``LedoitWolf``).

        Returns:
            ``(covariance, shrinkage)`` in float64.
        """
        covariance = self.covariance()
        _, _, _, sum_fourth = self._moments_about(self.mean())  # sum_i ||x_i - mean||^4
        shrinkage = ledoit_wolf_shrinkage(covariance, sum_fourth.clamp_min(0), self.n_samples)
        mu = _trace(covariance) / self.dim
        eye = torch.eye(self.dim, dtype=covariance.dtype, device=covariance.device)
        target = (shrinkage * mu)[..., None, None] * eye
        return (1 - shrinkage)[..., None, None] * covariance + target, shrinkage

    def fit(self, ridge: float = 1e-6) -> GaussianFit:
        """Fit the Gaussian: mean, Ledoit-Wolf covariance and its Cholesky-based whitening matrix.

        Args:
            ridge: Relative ridge added to the diagonal before the Cholesky factorisation, as a fraction of the
                mean variance ``trace(C) / p`` (an absolute ``ridge`` when all variances are zero, e.g. constant
                images). Keeps the factorisation defined for singular data; ``1e-6`` changes scores negligibly.

        Returns:
            The fitted :class:`GaussianFit` (every Gaussian of a batch along its leading dimensions).

        Raises:
            ValueError: If a covariance stays not positive definite even with a large ridge (non-finite features).
        """
        covariance, shrinkage = self.ledoit_wolf()
        mu = _trace(covariance) / self.dim
        scale = torch.where(mu > 0, mu, torch.ones_like(mu))[..., None, None]
        eye = torch.eye(self.dim, dtype=covariance.dtype, device=covariance.device)
        covariance = covariance + ridge * scale * eye
        cholesky, info = torch.linalg.cholesky_ex(covariance)
        for factor in (1e-4, 1e-2, 1.0):  # not positive definite even with the ridge: raise it where needed
            failed = info != 0
            if not failed.any():
                break
            retried, info_retried = torch.linalg.cholesky_ex(covariance + factor * scale * eye)
            cholesky = torch.where(failed[..., None, None], retried, cholesky)
            info = torch.where(failed, info_retried, info)
        if (info != 0).any():
            msg = "Covariance is not positive definite; are the features finite?"
            raise ValueError(msg)
        whitening = torch.linalg.solve_triangular(cholesky, eye.expand_as(cholesky), upper=False)
        return GaussianFit(
            mean=self.mean(),
            covariance=covariance,
            whitening=whitening,
            shrinkage=shrinkage if self.batch_shape else float(shrinkage),
            count=self.n_samples,
        )

    def _check_not_empty(self) -> None:
        if self.count.item() == 0:
            msg = "No samples were accumulated: the Gaussian cannot be estimated from an empty training set."
            raise ValueError(msg)


@in_float32
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


class MultivariateGaussian(LowerTriangularStorage, nn.Module):
    """A fitted Gaussian held in buffers; ``forward`` returns Mahalanobis distances.

    Buffers are float32 (the fit is float64) and start as the standard normal until :meth:`load_fit` is called.
    The state dict holds the whitening matrix's lower triangle (:mod:`~anomalib_gaussft.model.triangular_storage`).

    Args:
        dim: Feature dimension ``p``.

    Example:
        >>> gaussian = MultivariateGaussian(dim=3)
        >>> gaussian(torch.zeros(2, 3))
        tensor([1.0000e-06, 1.0000e-06])
    """

    triangular_buffers: ClassVar[dict[str, torch.dtype]] = {"whitening": torch.float32}

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
        """Mahalanobis distance at every position of ``(N, p, H, W)`` features, shape ``(N, 1, H, W)``."""
        return self(features.permute(0, 2, 3, 1)).unsqueeze(1)

    def extra_repr(self) -> str:
        """Dimension shown in the module's repr."""
        return f"dim={self.dim}"
