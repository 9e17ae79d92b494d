# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""The Gaussian estimator against sklearn / numpy / scipy, and its streaming and DDP-style properties."""

import numpy as np
import pytest
import torch
from _ddp_workers import gaussian_shard_worker, run_on_gloo_ranks
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import mahalanobis
from sklearn.covariance import LedoitWolf

from anomalib_gaussft.model.gaussian import MultivariateGaussian, StreamingGaussianEstimator, mahalanobis_distance


def _estimate(data: np.ndarray, chunks: int = 5) -> StreamingGaussianEstimator:
    estimator = StreamingGaussianEstimator(dim=data.shape[1])
    for chunk in np.array_split(data, chunks):
        if len(chunk):
            estimator.update(torch.from_numpy(chunk))
    return estimator


@pytest.mark.parametrize(
    ("n", "p", "scale", "offset"),
    [(200, 16, 1.0, 0.0), (10, 40, 1.0, 0.0), (500, 64, 50.0, 1e3), (2000, 3, 1e-3, 5.0)],
)
def test_ledoit_wolf_matches_sklearn(n: int, p: int, scale: float, offset: float) -> None:
    rng = np.random.default_rng(n + p)
    data = rng.normal(size=(n, p)) @ rng.normal(size=(p, p)) * scale + offset
    covariance, shrinkage = _estimate(data).ledoit_wolf()
    reference = LedoitWolf().fit(data)
    np.testing.assert_allclose(float(shrinkage), reference.shrinkage_, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(
        covariance.numpy(), reference.covariance_, rtol=1e-6, atol=1e-6 * np.abs(reference.covariance_).max()
    )


def test_mean_and_empirical_covariance_match_numpy() -> None:
    data = np.random.default_rng(0).normal(size=(300, 12)) * 3 + 7
    estimator = _estimate(data, chunks=11)
    np.testing.assert_allclose(estimator.mean().numpy(), data.mean(axis=0), rtol=1e-10)
    np.testing.assert_allclose(
        estimator.covariance().numpy(), np.cov(data, rowvar=False, bias=True), rtol=1e-9, atol=1e-12
    )
    assert estimator.n_samples == 300


def test_mahalanobis_matches_scipy() -> None:
    rng = np.random.default_rng(1)
    data = rng.normal(size=(100, 6)) @ rng.normal(size=(6, 6))
    fit = _estimate(data).fit(ridge=0.0)
    inverse = np.linalg.inv(fit.covariance.numpy())
    queries = rng.normal(size=(5, 6)) * 2
    ours = mahalanobis_distance(torch.from_numpy(queries), fit.mean, fit.whitening).numpy()
    expected = [mahalanobis(q, fit.mean.numpy(), inverse) for q in queries]
    np.testing.assert_allclose(ours, expected, rtol=1e-8)
    gaussian = MultivariateGaussian(6)
    gaussian.load_fit(fit)
    np.testing.assert_allclose(gaussian(torch.from_numpy(queries).float()).numpy(), expected, rtol=1e-4)
    assert bool(gaussian.fitted)


def test_fewer_samples_than_dimensions_is_well_defined() -> None:
    data = np.random.default_rng(2).normal(size=(5, 50))
    fit = _estimate(data, chunks=2).fit()
    assert 0 < fit.shrinkage <= 1
    assert torch.isfinite(fit.whitening).all()
    assert torch.linalg.eigvalsh(fit.covariance).min() > 0


def test_constant_data_gives_finite_gaussian() -> None:
    fit = _estimate(np.full((20, 8), 3.0)).fit()
    distances = mahalanobis_distance(torch.full((2, 8), 3.0, dtype=torch.float64), fit.mean, fit.whitening)
    assert torch.isfinite(fit.whitening).all()
    assert torch.allclose(distances, torch.full((2,), 1e-6, dtype=torch.float64))


def test_rejects_non_finite_and_empty() -> None:
    estimator = StreamingGaussianEstimator(dim=3)
    with pytest.raises(ValueError, match="NaN or infinite"):
        estimator.update(torch.tensor([[1.0, float("nan"), 0.0]]))
    with pytest.raises(ValueError, match="empty training set"):
        estimator.fit()
    with pytest.raises(ValueError, match=r"shape \(n, 3\)"):
        estimator.update(torch.zeros(4, 5))


def test_all_reduce_across_two_gloo_processes_equals_single_fit() -> None:
    """Statistics summed over two real (gloo) processes give the single-process Gaussian to 1e-6."""
    data = np.random.default_rng(3).normal(size=(401, 10)) * 4 + 2
    single = _estimate(data).fit()
    results = run_on_gloo_ranks(gaussian_shard_worker, data)
    for _, mean, covariance, count in results:
        assert count == 401
        np.testing.assert_allclose(mean, single.mean.numpy(), rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(covariance, single.covariance.numpy(), rtol=1e-6, atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(min_value=2, max_value=60),
    p=st.integers(min_value=1, max_value=20),
    rank=st.integers(min_value=1, max_value=20),
    log_scale=st.floats(min_value=-4, max_value=4),
    seed=st.integers(min_value=0, max_value=2**16),
)
def test_property_matches_sklearn_on_random_and_rank_deficient_data(
    n: int, p: int, rank: int, log_scale: float, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    rank = min(rank, p)
    data = rng.normal(size=(n, rank)) @ rng.normal(size=(rank, p)) * 10**log_scale + rng.normal() * 10**log_scale
    estimator = _estimate(data, chunks=3)
    covariance, _ = estimator.ledoit_wolf()
    reference = LedoitWolf().fit(data).covariance_
    np.testing.assert_allclose(
        covariance.numpy(), reference, rtol=1e-6, atol=1e-6 * max(np.abs(reference).max(), 1e-300)
    )
    fit = estimator.fit()
    assert torch.isfinite(fit.whitening).all()
    distances = mahalanobis_distance(torch.from_numpy(data), fit.mean, fit.whitening)
    assert torch.isfinite(distances).all()


def test_refitted_distances_ignore_scale_rotation_and_shift_of_the_features() -> None:
    """Why GaussFT's loss cannot fall against a re-fitted Gaussian by moving, scaling or rotating the features.

    Ledoit-Wolf shrinks towards a multiple of the identity, so re-fitting on ``a Q x + b`` (``Q`` orthogonal) gives
    the same distances as on ``x``, also with fewer samples than dimensions. Fine-tuning lowers the epoch-start loss
    only by changing the shape of the normal class's features (docs/studies/loss_and_fit_time.md).
    """
    generator = torch.Generator().manual_seed(0)
    samples = torch.randn(30, 40, generator=generator, dtype=torch.float64) * torch.linspace(0.1, 3, 40)
    rotation, _ = torch.linalg.qr(torch.randn(40, 40, generator=generator, dtype=torch.float64))
    moved = 7.5 * samples @ rotation.T + 3.0

    def refitted_distances(data: torch.Tensor) -> torch.Tensor:
        estimator = StreamingGaussianEstimator(40)
        estimator.update(data)
        fit = estimator.fit(ridge=0.0)
        return mahalanobis_distance(data, fit.mean, fit.whitening)

    torch.testing.assert_close(refitted_distances(moved), refitted_distances(samples), rtol=1e-8, atol=0)
    reshaped = samples * torch.linspace(3, 0.1, 40, dtype=torch.float64)  # a change of shape does change them
    assert not torch.allclose(refitted_distances(reshaped), refitted_distances(samples), rtol=1e-3)
