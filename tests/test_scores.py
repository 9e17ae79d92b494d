# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""Scores users can trust: order-preserving normalisation and the conformal FPR threshold.

The exported post-processing (float32 OpenVINO marks, order beyond the validation range, the default precision) is
tested in ``tests/test_export.py``, on its one export.
"""

import math
from pathlib import Path

import pytest
import torch
from anomalib.data import InferenceBatch, MVTecAD
from anomalib.engine import Engine
from anomalib.metrics.auroc import _AUROC
from anomalib.post_processing import PostProcessor
from conftest import TINY_MODEL_KWARGS

from anomalib_gaussft import GaussFT
from anomalib_gaussft.evaluation import rank_auroc, score_images
from anomalib_gaussft.model.post_processing import (
    GaussFTPostProcessor,
    conformal_threshold,
    order_preserving_normalize,
)


def _stats(low: float, high: float, threshold: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return torch.tensor(low), torch.tensor(high), torch.tensor(threshold)


# ------------------------------------------------------------------------------------------------ the monotone map
def test_normalisation_is_strictly_monotone_far_outside_the_validation_range() -> None:
    far = torch.logspace(0.5, 6, 1000)  # from 3 to 1e6, each 1.3% above the last
    scores = torch.cat([-far, torch.linspace(-3, 3, 601), far]).unique()  # sorted
    normalised = order_preserving_normalize(scores, *_stats(0.0, 2.0, 1.0))
    assert bool((normalised.diff() > 0).all())
    assert float(normalised.min()) > 0
    assert float(normalised.max()) < 1
    # anomalib's map ties everything outside threshold +- range / 2 at 0 or 1.
    clamped = PostProcessor._normalize(scores, *_stats(0.0, 2.0, 1.0))
    assert int((clamped == 1).sum()) > 900


def test_threshold_goes_to_one_half_with_anomalibs_slope() -> None:
    low, high, threshold = _stats(10.0, 30.0, 17.0)
    assert float(order_preserving_normalize(threshold, low, high, threshold)) == 0.5
    step = 1e-4
    points = torch.tensor([17.0 - step, 17.0 + step], dtype=torch.float64)
    ours = order_preserving_normalize(points, low.double(), high.double(), threshold.double())
    anomalibs = PostProcessor._normalize(points, low.double(), high.double(), threshold.double())
    assert float((ours[1] - ours[0]) / (anomalibs[1] - anomalibs[0])) == pytest.approx(1.0, abs=1e-3)


def test_degenerate_and_missing_statistics_behave_as_in_anomalib() -> None:
    scores = torch.tensor([0.0, 1.0, 2.0])
    assert torch.equal(order_preserving_normalize(scores, *_stats(1.0, 1.0, 1.0)), torch.tensor([0.0, 0.5, 1.0]))
    nan = torch.tensor(float("nan"))
    assert torch.equal(order_preserving_normalize(scores, nan, nan, nan), scores)
    # no threshold: the middle of the range goes to 0.5
    assert float(order_preserving_normalize(torch.tensor(5.0), torch.tensor(0.0), torch.tensor(10.0), nan)) == 0.5


def test_reported_auroc_equals_raw_score_auroc_and_labels_follow_the_raw_threshold() -> None:
    generator = torch.Generator().manual_seed(0)
    normal = torch.randn(300, generator=generator) * 3 + 20
    anomalous = torch.randn(200, generator=generator) * 40 + 45  # many far beyond the validation range
    raw = torch.cat([normal, anomalous])
    labels = torch.cat([torch.zeros(300), torch.ones(200)]).int()
    post = GaussFTPostProcessor()
    for name, value in {"image_min": 15.0, "image_max": 30.0, "pixel_min": 15.0, "pixel_max": 30.0}.items():
        getattr(post, name).fill_(value)
    post._image_threshold.fill_(24.0)
    output = post(InferenceBatch(pred_score=raw, anomaly_map=raw[:, None, None, None].expand(-1, 1, 2, 2)))
    reported = float(_AUROC()(output.pred_score, labels))  # anomalib's image_AUROC computation
    assert reported == pytest.approx(rank_auroc(normal, anomalous), abs=1e-6)
    assert torch.equal(output.pred_label, raw > 24.0)
    assert torch.equal(output.pred_mask[:, 0, 0, 0], raw > 24.0)  # pixel threshold falls back to the image one


# -------------------------------------------------------------------------------------- the conformal threshold
def test_conformal_threshold_rank_and_errors() -> None:
    scores = torch.arange(99.0).flip(0)
    assert float(conformal_threshold(scores, 0.05)) == 94.0  # ceil(100 * 0.95) = 95th smallest
    with pytest.raises(ValueError, match="needs at least 19 normal validation images"):
        conformal_threshold(torch.arange(10.0), 0.05)
    with pytest.raises(ValueError, match="target_fpr"):
        conformal_threshold(scores, 1.5)
    with pytest.raises(ValueError, match="target_fpr"):
        GaussFTPostProcessor(target_fpr=0.0)


@pytest.mark.parametrize(("n_calibration", "target_fpr"), [(19, 0.1), (40, 0.05), (12, 0.1)])
def test_conformal_threshold_bounds_the_false_positive_rate(n_calibration: int, target_fpr: float) -> None:
    """Over many draws of held-out and new normals from one distribution, the mean FPR is at most the target.

    For continuous scores the expected FPR is exactly ``1 - k / (n + 1)`` with ``k = ceil((n + 1)(1 - alpha))``: the
    mean must be within its sampling error of that value, so a threshold that were too strict fails too.
    """
    generator = torch.Generator().manual_seed(1)
    draws, n_new = 4000, 50
    calibration = torch.randn(draws, n_calibration, generator=generator).exp()  # skewed, like distances
    new = torch.randn(draws, n_new, generator=generator).exp()
    thresholds = torch.stack([conformal_threshold(row, target_fpr) for row in calibration])
    fpr = (new > thresholds[:, None]).double().mean(dim=1)
    k = math.ceil((n_calibration + 1) * (1 - target_fpr) - 1e-9)
    expected = 1 - k / (n_calibration + 1)
    standard_error = float(fpr.std()) / math.sqrt(draws)
    assert expected <= target_fpr
    assert float(fpr.mean()) <= target_fpr + 3 * standard_error
    assert float(fpr.mean()) == pytest.approx(expected, abs=4 * standard_error)


# ------------------------------------------------------------------------------------------ through the Engine
@pytest.fixture(scope="module")
def trained(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Engine, GaussFT, MVTecAD]:
    """Fixed-feature GaussFT with a conformal threshold at 20%, validation from held-out normals plus synthetic ones."""
    torch.manual_seed(0)
    model = GaussFT(
        **TINY_MODEL_KWARGS, fine_tune=False, post_processor=GaussFTPostProcessor(target_fpr=0.2), visualizer=False
    )
    datamodule = MVTecAD(
        root=demo_root,
        category="coffee",
        train_batch_size=8,
        eval_batch_size=8,
        num_workers=0,
        val_split_mode="synthetic",
        val_split_ratio=0.5,
        seed=0,
    )
    engine = Engine(max_epochs=1, default_root_dir=tmp_path_factory.mktemp("run"), accelerator="cpu", logger=False)
    engine.fit(model, datamodule=datamodule)
    return engine, model.eval(), datamodule


def test_target_fpr_sets_the_conformal_threshold_of_the_validation_normals(trained: tuple) -> None:
    _, model, datamodule = trained
    validation = datamodule.val_data
    normal = [index for index in range(len(validation)) if int(validation[index].gt_label) == 0]
    assert len(normal) >= 4  # enough for a 20% target
    images = torch.stack([validation[index].image for index in normal])
    expected = conformal_threshold(score_images(model, images), 0.2)
    assert float(model.post_processor.image_threshold) == pytest.approx(float(expected), rel=1e-5)
    assert model.post_processor.checkpoint_config()["target_fpr"] == 0.2
