# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""Smoke test of ``tools/local_model_study.py`` on the tiny demo data, and checks of its local models."""

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from anomalib_gaussft.model.gaussian import MultivariateGaussian, StreamingGaussianEstimator, mahalanobis_distance
from anomalib_gaussft.model.torch_model import GaussFTModel
from tools.local_model_study import (
    LEVELS,
    SINGLE_GAUSSIAN_SETTINGS,
    Features,
    Mixture,
    PerPosition,
    ProjectedMixture,
    SharedGaussian,
    TiedMixture,
    _prepare,
    extract,
    local_features,
    make_local_model,
    run_category,
    summarize,
)


@pytest.fixture(scope="module")
def study(demo_root: Path) -> Iterator[tuple[GaussFTModel, Features]]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the study runs; small matrices are slower with threads on a busy machine
    torch.manual_seed(0)
    # three pooled levels keep the global Gaussians small (the study uses all nine); they include blocks.1 for s4
    model = GaussFTModel(
        "tf_efficientnet_lite0",
        pretrained=False,
        layers=list(LEVELS["s4"]),
        map_layers=list(LEVELS["s8"]),
        **SINGLE_GAUSSIAN_SETTINGS,
    ).eval()
    yield model, extract(demo_root, "coffee", model, image_size=64)
    torch.set_num_threads(threads)


def test_shared_candidate_reproduces_gaussft_anomaly_map(study: tuple, demo_root: Path) -> None:
    """The ``shared-s8`` candidate at sigma 4 is GaussFT's own map: same features, Gaussian, upsampling and blur."""
    model, features = study
    rows = run_category(features, model, "coffee", ["shared-s8"], sigmas=(4.0,), folds=2, normal_fraction=1.0)
    # run_category leaves the model fitted on all training images (global levels and the s8 local Gaussian)
    from anomalib.data.datasets import MVTecADDataset
    from anomalib.data.utils import read_image

    from anomalib_gaussft import GaussFT

    samples = MVTecADDataset(demo_root, "coffee", split="test").samples
    images = torch.stack([read_image(path, as_tensor=True) for path in samples.image_path])
    transform = GaussFT.configure_pre_processor((64, 64), model.feature_extractor.backbone)
    with torch.no_grad():
        output = model(transform.transform(images))
    labels = torch.tensor(samples.label_index.to_numpy() == 1)
    maps, masks = output.anomaly_map[:, 0], features.masks
    from anomalib_gaussft.evaluation import rank_auroc

    assert torch.equal(labels, features.labels)
    assert bool(masks[labels].flatten(1).any(dim=1).all()), "every defective image has a defect mask"
    assert not bool(masks[~labels].any())
    assert rows[0]["pixel_auroc"] == pytest.approx(rank_auroc(maps[~masks], maps[masks]), abs=1e-6)
    maxima = maps.flatten(1).amax(dim=1)
    assert rows[0]["image_max"] == pytest.approx(rank_auroc(maxima[~labels], maxima[labels]), abs=1e-9)
    assert rows[0]["image_global"] == pytest.approx(rank_auroc(output.pred_score[~labels], output.pred_score[labels]))


def test_every_candidate_runs_and_is_summarised(study: tuple) -> None:
    model, features = study
    candidates = ["shared-s8", "mix2-s8", "perpos-s8", "shared-s4-agg3"]
    rows = run_category(features, model, "coffee", candidates, sigmas=(2.0, 4.0), folds=2)
    names = {row["candidate"] for row in rows}
    assert names == {"shared-s8", "mix2-s8:min", "mix2-s8:nll", "perpos-s8", "shared-s4-agg3"}
    assert len(rows) == 2 * len(names)
    by_name = {row["candidate"]: row for row in rows}
    assert (by_name["shared-s8"]["dim"], by_name["shared-s8"]["stride"]) == (152, 8)
    assert (by_name["shared-s4-agg3"]["dim"], by_name["shared-s4-agg3"]["stride"]) == (176, 4)
    assert by_name["shared-s8"]["model_bytes"] == 4 * (152 + 152**2)
    assert by_name["perpos-s8"]["model_bytes"] == 8 * 8 * 4 * (152 + 152**2)  # 64 px input: 8 x 8 positions
    assert "| mix2-s8:min | 4 |" in summarize(rows)


def test_mixture_of_one_component_is_the_shared_gaussian() -> None:
    torch.manual_seed(0)
    train, test = torch.randn(6, 5, 4, 4) * 3 + 1, torch.randn(2, 5, 4, 4)
    shared, mixture = SharedGaussian(), Mixture(1)
    shared.fit(train)
    mixture.fit(train)
    torch.testing.assert_close(mixture.score(test)["min"], shared.score(test)[""])


def test_tied_mixture_scores_the_nearest_mean_under_the_shared_covariance() -> None:
    torch.manual_seed(0)
    train = torch.cat([torch.randn(40, 3, 2, 2), torch.randn(40, 3, 2, 2) + 10])
    tied = TiedMixture(2)
    tied.fit(train)
    x = torch.randn(2, 3, 1, 1) + torch.tensor([0.0, 10.0]).view(2, 1, 1, 1)
    expected = torch.stack(
        [mahalanobis_distance(x[:, :, 0, 0], mean, tied.gaussian.whitening) for mean in tied.means]
    ).amin(dim=0)
    torch.testing.assert_close(tied.score(x)["min"].flatten(), expected, rtol=1e-4, atol=1e-5)
    assert tied.score(x)["min"].max() < 5  # each query lies in one of the two clusters
    assert make_local_model("tied64-s8-agg3")[:2] == (LEVELS["s8"], "agg3")


def test_projected_mixture_is_the_mixture_of_the_leading_principal_coordinates() -> None:
    """Features that vary in two of five directions: a 2-dimensional projection loses nothing of their mixture."""
    torch.manual_seed(0)
    plane = torch.linalg.qr(torch.randn(5, 2))[0]  # (5, 2) orthonormal
    coordinates = torch.cat([torch.randn(60, 2, 2, 2), torch.randn(60, 2, 2, 2) + 8])
    train = torch.einsum("pq,nqhw->nphw", plane, coordinates) + torch.randn(120, 5, 2, 2) * 1e-3
    projected, mixture = ProjectedMixture(2, 2), Mixture(2)
    projected.fit(train)
    mixture.fit(torch.einsum("pq,nphw->nqhw", plane, train))
    assert projected.basis.shape == (5, 2)
    torch.testing.assert_close(projected.basis @ projected.basis.T, plane @ plane.T, rtol=0, atol=1e-3)  # same plane
    test = torch.einsum("pq,nqhw->nphw", plane, torch.randn(4, 2, 2, 2) * 3)
    torch.testing.assert_close(
        projected.score(test)["min"],
        mixture.score(torch.einsum("pq,nphw->nqhw", plane, test))["min"],
        rtol=2e-2,
        atol=2e-2,
    )
    assert isinstance(make_local_model("pca64mix32-s8-agg3")[2](), ProjectedMixture)


def test_mixture_nll_is_the_mixture_density() -> None:
    torch.manual_seed(0)
    train = torch.cat([torch.randn(40, 3, 2, 2), torch.randn(40, 3, 2, 2) + 10])
    mixture = Mixture(2)
    mixture.fit(train)
    x = torch.randn(1, 3, 1, 1)
    density = sum(
        w.exp()
        * torch.distributions.MultivariateNormal(g.mean, precision_matrix=g.whitening.T @ g.whitening)
        .log_prob(x[0, :, 0, 0])
        .exp()
        for w, g in zip(mixture.log_weights, mixture.gaussians, strict=True)
    )
    constant = 1.5 * torch.log(torch.tensor(2 * torch.pi))  # the study drops (p / 2) log(2 pi)
    torch.testing.assert_close(
        mixture.score(x)["nll"].flatten(), -density.log().reshape(1) - constant, rtol=1e-4, atol=1e-4
    )


def test_per_position_gaussian_scores_each_position_with_its_own_fit() -> None:
    torch.manual_seed(0)
    train, test = torch.randn(10, 4, 2, 3), torch.randn(3, 4, 2, 3)
    train[:, :, 1, 2] = train[:, :, 1, 2] * 5 + 7  # one position differs from the rest
    model = PerPosition()
    model.fit(train)
    estimator = StreamingGaussianEstimator(4)
    estimator.update(train[:, :, 1, 2])
    gaussian = MultivariateGaussian(4)
    gaussian.load_fit(estimator.fit())
    torch.testing.assert_close(model.score(test)[""][:, 0, 1, 2], gaussian(test[:, :, 1, 2]))


def test_local_features_and_candidate_names() -> None:
    levels = {
        "blocks.1": torch.ones(2, 3, 8, 8),
        "blocks.2": torch.ones(2, 4, 4, 4),
        "blocks.4": torch.ones(2, 5, 2, 2),
    }
    assert local_features(levels, LEVELS["s4"], slice(0, 1)).shape == (1, 12, 8, 8)
    assert make_local_model("mix16-s4-agg3")[:2] == (LEVELS["s4"], "agg3")
    assert make_local_model("mix16-s8-agg4s2")[:2] == (LEVELS["s8"], "agg4s2")
    with pytest.raises(ValueError, match="--candidates"):
        make_local_model("mixture-s8")


def test_strided_aggregation_averages_the_window_centred_on_each_cell_of_the_coarser_grid() -> None:
    features = torch.arange(36.0).reshape(1, 1, 6, 6)
    pooled = _prepare(features, "agg4s2")
    assert pooled.shape == (1, 1, 3, 3)
    assert pooled[0, 0, 1, 1] == features[0, 0, 1:5, 1:5].mean()  # rows and columns 2i - 1 .. 2i + 2 for i = 1
    assert pooled[0, 0, 0, 0] == features[0, 0, :3, :3].mean()  # only the positions inside the map at the border
    assert _prepare(features, "agg3").shape == features.shape
    assert torch.equal(_prepare(features, ""), features)
