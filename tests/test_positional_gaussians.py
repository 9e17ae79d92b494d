# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""Per-position Gaussians: fits, distances, the grid, the score they enter, and checkpoints saved before them."""

from __future__ import annotations

import pytest
import torch
from sklearn.covariance import LedoitWolf

from anomalib_gaussft.model.gaussian import StreamingGaussianEstimator, mahalanobis_distance
from anomalib_gaussft.model.positional_gaussians import PositionalGaussianEstimator, PositionalGaussians
from anomalib_gaussft.model.torch_model import GaussFTModel
from tests.conftest import TINY_MODEL_KWARGS


def _estimated(features: torch.Tensor) -> PositionalGaussianEstimator:
    estimator = PositionalGaussianEstimator(dim=features.shape[1])
    for batch in features.split(7):
        estimator.update(batch)
    return estimator


def _fitted(features: torch.Tensor) -> PositionalGaussians:
    estimator = _estimated(features)
    gaussians = PositionalGaussians(dim=features.shape[1])
    gaussians.load_fits(estimator.fit(), estimator.grid)
    return gaussians


def test_each_position_gets_the_ledoit_wolf_gaussian_of_its_own_vectors() -> None:
    """Distances equal sklearn's Ledoit-Wolf Mahalanobis distance of each position's vectors, position by position."""
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(20, 4, 2, 3, generator=generator) * torch.arange(1, 7).view(1, 1, 2, 3)  # scale by position
    estimator = _estimated(features)
    fit = estimator.fit()
    gaussians = PositionalGaussians(dim=4)
    gaussians.load_fits(fit, estimator.grid)
    queries = torch.randn(5, 4, 2, 3, generator=generator)
    distances = gaussians.distance_map(queries)
    assert distances.shape == (5, 1, 2, 3)
    for i in range(2):
        for j in range(3):
            reference = LedoitWolf().fit(features[:, :, i, j].double().numpy())
            expected = torch.from_numpy(reference.mahalanobis(queries[:, :, i, j].double().numpy())).sqrt()
            position = i * 3 + j
            estimated = mahalanobis_distance(queries[:, :, i, j].double(), fit.mean[position], fit.whitening[position])
            torch.testing.assert_close(estimated, expected, rtol=1e-4, atol=1e-5)  # the fit itself
            # the module holds the whitenings as stored, in float16 (2^-11 of each matrix's largest entry)
            torch.testing.assert_close(distances[:, 0, i, j].double(), expected, rtol=1e-3, atol=1e-5)
    assert gaussians.grid.tolist() == [2, 3]
    assert bool(gaussians.fitted)


def test_the_grid_must_stay_the_same_and_errors_name_the_setting() -> None:
    estimator = PositionalGaussianEstimator(dim=2)
    estimator.update(torch.randn(3, 2, 4, 4))
    with pytest.raises(ValueError, match=r"5 x 4 positions after 4 x 4.*`image_size`"):
        estimator.update(torch.randn(3, 2, 5, 4))
    with pytest.raises(ValueError, match=r"shape \(N, 2, h, w\)"):
        estimator.update(torch.randn(3, 3, 4, 4))
    with pytest.raises(ValueError, match="No local feature maps"):
        PositionalGaussianEstimator(dim=2).fit()
    unfitted = PositionalGaussians(dim=2)  # explains no position yet: the mixture's distance stands
    assert unfitted.distance_map(torch.randn(1, 2, 4, 4)).isposinf().all()
    gaussians = PositionalGaussians(dim=2)
    gaussians.load_fits(estimator.fit(), estimator.grid)
    with pytest.raises(ValueError, match=r"grid of 4 x 4 positions; these features have 8 x 8.*`image_size`"):
        gaussians.distance_map(torch.randn(1, 2, 8, 8))


def test_a_state_dict_gives_an_empty_module_the_saved_grid() -> None:
    features = torch.randn(12, 3, 3, 2, generator=torch.Generator().manual_seed(1))
    fitted = _fitted(features)
    loaded = PositionalGaussians(dim=3)
    loaded.load_state_dict(fitted.state_dict())
    queries = torch.randn(4, 3, 3, 2)
    # the state dict stores the whitenings in float16, and the fitted module holds them rounded as stored
    torch.testing.assert_close(loaded.distance_map(queries), fitted.distance_map(queries), rtol=0, atol=0)
    assert loaded.grid.tolist() == [3, 2]
    assert "grid=(3, 2)" in repr(loaded)


def test_the_image_score_reads_the_smaller_distance_and_the_map_stays_the_mixtures() -> None:
    torch.manual_seed(0)
    kwargs = {key: value for key, value in TINY_MODEL_KWARGS.items() if key != "image_size"}
    model = GaussFTModel(**kwargs).eval()
    plain = GaussFTModel(**{**kwargs, "local_positional": False}).eval()
    plain.load_state_dict(model.state_dict(), strict=False)  # the same backbone
    images = torch.rand(6, 3, 64, 64)
    for torch_model in (model, plain):
        estimators = torch_model.new_estimators("cpu")
        torch_model.accumulate(images, estimators)
        torch_model.load_fits(estimators)
    assert plain.positional_gaussians is None
    assert model.is_fitted
    assert plain.is_fitted
    queries = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        pooled, local = model.embed(queries)
        mixture = model.local_mixture.distance_map(local)
        own = model.positional_gaussians.distance_map(local)
        score_map = model.anomaly_map_generator(torch.minimum(mixture, own), (64, 64))
        output, plain_output = model(queries), plain(queries)
    torch.testing.assert_close(output.anomaly_map, model.anomaly_map_generator(mixture, (64, 64)))
    torch.testing.assert_close(plain_output.anomaly_map, output.anomaly_map)
    torch.testing.assert_close(model.score_map(local, (64, 64)), score_map)
    torch.testing.assert_close(output.pred_score, model.image_score(pooled, score_map))
    assert (own < mixture).any()  # the per-position Gaussians change the score
    assert not torch.allclose(output.pred_score, plain_output.pred_score)


def test_the_batched_estimator_gives_every_position_the_fit_of_its_own_estimator() -> None:
    """One batched estimator equals one estimator per position (the numbers before batching), also after a reduce."""
    generator = torch.Generator().manual_seed(2)
    features = torch.randn(25, 6, 3, 4, generator=generator) * torch.rand(1, 6, 3, 4, generator=generator) * 5 + 2
    features[:, :, 0, 0] = 1.5  # a constant position: the ridge fallback, position by position
    batched = PositionalGaussianEstimator(dim=6)
    singles = [StreamingGaussianEstimator(6) for _ in range(12)]
    for batch in features.split(9):
        batched.update(batch)
        for position, estimator in enumerate(singles):
            estimator.update(batch.flatten(2)[:, :, position])
    double = lambda tensor: tensor * 2  # noqa: E731 (two identical processes)
    batched.all_reduce(double)
    for estimator in singles:
        estimator.all_reduce(double)
    fit = batched.fit()
    assert fit.mean.shape == (12, 6)
    assert fit.count == 50
    for position, estimator in enumerate(singles):
        single = estimator.fit()
        torch.testing.assert_close(fit.mean[position], single.mean, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(fit.whitening[position], single.whitening, rtol=1e-10, atol=1e-10)
        assert float(fit.shrinkage[position]) == pytest.approx(single.shrinkage, abs=1e-12)


def test_a_two_process_fit_issues_as_many_collectives_at_any_input_size() -> None:
    """Two gloo processes: the collectives of a fit do not grow with the positions, and the fit equals one process's."""
    from _ddp_workers import fit_shard_worker, module_tensors, run_on_gloo_ranks

    from anomalib_gaussft.model.fitting import fit_training_set

    calls = []
    for size in (32, 64):  # 8 x 8 and 16 x 16 positions at layer1 (stride 4)
        torch.manual_seed(0)
        model = GaussFTModel("resnet18", layers=["layer1", "layer2"], map_layers=["layer1"], pretrained=False)
        model.local_mixture = type(model.local_mixture)(model.local_mixture.dim, components=2)
        images = torch.rand(11, 3, size, size, generator=torch.Generator().manual_seed(size))
        single = type(model)("resnet18", layers=["layer1", "layer2"], map_layers=["layer1"], pretrained=False)
        single.local_mixture = type(single.local_mixture)(single.local_mixture.dim, components=2)
        single.load_state_dict(model.state_dict())
        fit_training_set(single, images.split(3))
        results = run_on_gloo_ranks(fit_shard_worker, model, images)
        reference = module_tensors(single)
        for _, counts, state in results:
            calls.append(counts)
            for key in ("positional_gaussians.means", "positional_gaussians.whitenings", "gaussians.0.whitening"):
                scale = reference[key].abs().max().item()
                actual = torch.from_numpy(state[key])
                torch.testing.assert_close(actual, reference[key], rtol=1e-6, atol=1e-6 * scale, msg=key)
    assert calls[0] == calls[1] == calls[2] == calls[3], calls  # both ranks, both sizes
    assert calls[0]["reduce_sum"] <= 7 * 3  # seven per estimator: two global levels and the per-position one
