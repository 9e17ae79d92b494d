# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""Mixed precision: the backbone may run in bfloat16 under autocast, the Gaussian arithmetic never does."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import TINY_MODEL_KWARGS, single_torch_thread

from anomalib_gaussft import GaussFT
from anomalib_gaussft.evaluation import rank_auroc


def _fitted_model(root: Path, **kwargs: object) -> tuple[GaussFT, torch.Tensor, torch.Tensor]:
    """A tiny GaussFT fitted on the demo brick training images; the pre-processed test images and labels."""
    from anomalib.data import MVTecAD

    torch.manual_seed(0)
    model = GaussFT(**{**TINY_MODEL_KWARGS, **kwargs}, forgetting_detection=False)
    datamodule = MVTecAD(root=root, category="brick", train_batch_size=8, eval_batch_size=200, num_workers=0)
    datamodule.setup()
    model.fit_gaussians(datamodule.train_dataloader())
    batch = next(iter(datamodule.test_dataloader()))
    return model.eval(), model.pre_processor.transform(batch.image), batch.gt_label


def test_gaussian_arithmetic_runs_in_float32_under_autocast(demo_root: Path) -> None:
    """Given the same features, every distance, map and score under bf16 autocast equals the float32 one."""
    with single_torch_thread():
        model, images, _ = _fitted_model(demo_root)
        torch_model = model.model
        with torch.no_grad():
            pooled, local = torch_model.embed(images)
            size = images.shape[-2:]

            def gaussian_outputs() -> tuple[torch.Tensor, ...]:
                return (
                    torch_model.level_distances(pooled),
                    torch_model.local_mixture.distance_map(local),
                    torch_model.positional_gaussians.distance_map(local),
                    torch_model.score_map(local, size),
                    torch_model.image_score(pooled, torch_model.score_map(local, size)),
                )

            reference = gaussian_outputs()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                mixed = gaussian_outputs()
    names = ("levels", "mixture", "positional", "map", "score")
    for name, expected, actual in zip(names, reference, mixed, strict=True):
        assert actual.dtype == torch.float32, name
        torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5, msg=name)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_scores_under_mixed_precision_rank_like_float32(tmp_path: Path, dtype: torch.dtype) -> None:
    """The whole forward under autocast (the real Lite0 backbone in 16 bits): image AUROC within 0.005 of 32-bit.

    24 normal and 32 anomalous test images: one pair ranked the other way moves the AUROC by 0.0013.
    """
    from anomalib_gaussft.data.demo_dataset import generate_demo_dataset

    root = generate_demo_dataset(tmp_path, ["brick"], image_size=64, n_train=24, n_test_good=24, n_test_defect=8)
    with single_torch_thread():
        model, images, labels = _fitted_model(root, pretrained=True, local_components=64)
        with torch.no_grad():
            full = model.model(images)
            with torch.autocast("cpu", dtype=dtype):
                mixed = model.model(images)
    assert mixed.pred_score.dtype == torch.float32
    assert mixed.anomaly_map.dtype == torch.float32
    normal, anomalous = labels == 0, labels == 1
    assert (int(normal.sum()), int(anomalous.sum())) == (24, 32)
    full_auroc = rank_auroc(full.pred_score[normal], full.pred_score[anomalous])
    mixed_auroc = rank_auroc(mixed.pred_score[normal], mixed.pred_score[anomalous])
    assert abs(mixed_auroc - full_auroc) <= 0.005, (mixed_auroc, full_auroc)
    correlation = torch.corrcoef(torch.stack([full.anomaly_map.flatten(), mixed.anomaly_map.flatten()]))[0, 1]
    assert correlation > 0.99
