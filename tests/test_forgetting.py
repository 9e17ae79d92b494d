# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""ForgettingDetection: rank AUROC, hold-out split, stop and restore exactly the best epoch, other anomalib models."""

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from anomalib.data import MVTecAD
from anomalib.engine import Engine
from lightning.pytorch import Callback
from sklearn.metrics import roc_auc_score

from anomalib_gaussft import ForgettingDetection, GaussFT
from anomalib_gaussft.evaluation import rank_auroc
from tools.forgetting_study import select_epoch


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rank_auroc_matches_sklearn_with_ties_and_unbounded_scores(seed: int) -> None:
    rng = np.random.default_rng(seed)
    normal = np.round(rng.normal(size=300) * 1e4)  # large, tied values: a sigmoid would squash them all to 1
    anomalous = np.round(rng.normal(loc=0.5, size=120) * 1e4)
    expected = roc_auc_score(np.r_[np.zeros(300), np.ones(120)], np.r_[normal, anomalous])
    assert rank_auroc(torch.from_numpy(normal), torch.from_numpy(anomalous)) == pytest.approx(expected, abs=1e-12)
    with pytest.raises(ValueError, match="at least one"):
        rank_auroc(torch.zeros(0), torch.ones(3))


def test_select_epoch_rule() -> None:
    assert select_epoch([0.8, 0.9, 0.85, 0.84, 0.83, 0.95], patience=3) == (1, 4)
    assert select_epoch([0.8, 0.9, 0.9, 0.91], patience=1) == (3, None)  # ties move the best to the later epoch
    assert select_epoch([0.9, 0.89, 0.95], patience=2, min_delta=0.05) == (2, None)  # small drops are tolerated


def test_unknown_augmentation_and_bad_settings_are_named() -> None:
    with pytest.raises(ValueError, match="sharpen"):
        ForgettingDetection(augmentations=["sharpen"])
    with pytest.raises(ValueError, match="holdout_fraction"):
        ForgettingDetection(holdout_fraction=1.5)


@torch.no_grad()
def _raw_scores(module: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    module.eval()
    return module.model(module.pre_processor.transform(images)).pred_score.clone()


class _ScoreRecorder(Callback):
    """Records the model's scores on fixed images after every validation epoch (before any restore)."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images
        self.scores: dict[int, torch.Tensor] = {}

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        self.scores[trainer.current_epoch] = _raw_scores(pl_module, self.images)
        pl_module.train()


def test_stops_on_forgetting_and_restores_exactly_the_best_epoch(
    demo_root: Path, tmp_path: Path, tiny_model_kwargs: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scripted pseudo-AUROC curve (best at epoch 1, then falling) must stop at epoch 3 and restore epoch 1."""
    torch.manual_seed(0)
    detector = ForgettingDetection(augmentations=["cutpaste", "mixup"], patience=2, min_holdout=4)
    curve = iter([0.70, 0.90, 0.80, 0.60, 0.95, 0.95])
    monkeypatch.setattr(
        detector,
        "evaluate",
        lambda pl_module: {
            "val_pseudo_AUROC": next(curve),
            "val_pseudo_AUROC_cutpaste": 0.5,
            "val_pseudo_AUROC_mixup": 0.5,
        },
    )
    images = torch.rand(4, 3, 64, 64)
    recorder = _ScoreRecorder(images)
    model = GaussFT(**{**tiny_model_kwargs, "lr": 1e-2}, forgetting_detection=detector)
    datamodule = MVTecAD(
        root=demo_root,
        category="brick",
        train_batch_size=8,
        eval_batch_size=8,
        num_workers=0,
        val_split_mode="synthetic",
        val_split_ratio=0.2,
    )
    engine = Engine(max_epochs=6, default_root_dir=tmp_path, accelerator="cpu", logger=False, callbacks=[recorder])
    engine.fit(model, datamodule=datamodule)
    assert detector.stopped_epoch == 3
    assert detector.best_epoch == 1
    assert engine.trainer.current_epoch == 4  # epochs 0..3 ran, then the trainer stopped
    assert not torch.equal(recorder.scores[1], recorder.scores[3]), "weights did not change: the test proves nothing"
    torch.testing.assert_close(_raw_scores(model, images), recorder.scores[1], rtol=0, atol=0)
    # the checkpoint written after the decision holds the restored state too
    reloaded = GaussFT.load_from_checkpoint(engine.best_model_path)
    torch.testing.assert_close(_raw_scores(reloaded, images), recorder.scores[1], rtol=0, atol=0)


def test_holdout_is_removed_from_training_and_pseudo_anomalies_are_fixed(
    demo_root: Path, tmp_path: Path, tiny_model_kwargs: dict
) -> None:
    detector = ForgettingDetection(augmentations=["cutmix", "cutpaste_scar"], min_holdout=4, seed=3)
    model = GaussFT(**tiny_model_kwargs, forgetting_detection=detector)
    datamodule = MVTecAD(
        root=demo_root,
        category="coffee",
        train_batch_size=8,
        eval_batch_size=8,
        num_workers=0,
        val_split_mode="synthetic",
        val_split_ratio=0.2,
    )
    engine = Engine(max_epochs=2, default_root_dir=tmp_path, accelerator="cpu", logger=False)
    engine.fit(model, datamodule=datamodule)
    training = {str(path) for path in datamodule.train_data.samples.image_path}
    assert len(detector.holdout_paths) == 4
    assert not training & set(detector.holdout_paths), "held-out images are still in the training set"
    # The synthetic validation split already keeps some normal training images out of training: those come first,
    # and only the rest is taken from the training set.
    val = datamodule.val_data.samples
    val_normals = {str(path) for path in val.image_path[val.label_index == 0]}
    n_validation = min(len(val_normals), 4)
    assert n_validation > 0
    assert set(detector.holdout_paths[:n_validation]) <= val_normals
    assert detector.removed_from_training == detector.holdout_paths[n_validation:]
    assert len(training) + len(detector.removed_from_training) + len(val) == 24  # nothing else lost
    assert len(detector.history) == 2
    assert all(0.0 <= value <= 1.0 for value in detector.history)
    assert set(detector.per_augmentation_history) == {"cutmix", "cutpaste_scar"}
    again = ForgettingDetection(augmentations=["cutmix", "cutpaste_scar"], min_holdout=4, seed=3)
    again._normal = detector._normal
    again._make_pseudo_anomalies()
    for name, images in detector._pseudo.items():
        assert torch.equal(images, again._pseudo[name])
        assert not torch.equal(images, detector._normal)


def test_works_with_anomalib_stfpm(demo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ForgettingDetection on one of anomalib's own multi-epoch models (STFPM, real Lite0 teacher offline)."""
    import huggingface_hub.constants
    from anomalib.models import Stfpm

    from anomalib_gaussft.weights import import_weights_to_hub_cache

    cache = tmp_path / "hub"
    import_weights_to_hub_cache("tf_efficientnet_lite0", cache_dir=cache)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    detector = ForgettingDetection(augmentations=["cutpaste"], min_holdout=4, patience=1)
    model = Stfpm(
        backbone="tf_efficientnet_lite0",
        layers=["blocks.1", "blocks.2"],
        pre_processor=Stfpm.configure_pre_processor((64, 64)),
    )
    datamodule = MVTecAD(
        root=demo_root,
        category="brick",
        train_batch_size=8,
        eval_batch_size=8,
        num_workers=0,
        val_split_mode="synthetic",
        val_split_ratio=0.2,
    )
    engine = Engine(
        max_epochs=2, default_root_dir=tmp_path / "run", accelerator="cpu", logger=False, callbacks=[detector]
    )
    engine.fit(model, datamodule=datamodule)
    assert len(detector.history) == engine.trainer.current_epoch
    assert all(0.0 <= value <= 1.0 for value in detector.history)
    assert detector.best_epoch in (0, 1)


@pytest.mark.parametrize(("split", "use_validation"), [("synthetic", False), ("same_as_test", True)])
def test_holdout_comes_from_training_when_validation_normals_are_off_or_test_images(
    demo_root: Path, tmp_path: Path, split: str, use_validation: bool
) -> None:
    """Never test images: with ``same_as_test`` (or the option off) every held-out normal is a training image."""
    detector = ForgettingDetection(augmentations=["cutpaste"], min_holdout=4, use_validation_normals=use_validation)
    datamodule = MVTecAD(
        root=demo_root, category="coffee", train_batch_size=8, eval_batch_size=8, num_workers=0,
        val_split_mode=split, val_split_ratio=0.2,
    )  # fmt: skip
    datamodule.setup("fit")
    trainer = SimpleNamespace(datamodule=datamodule)
    detector.setup(trainer, SimpleNamespace(input_size=(64, 64)), "fit")
    assert len(detector.holdout_paths) == 4
    assert detector.removed_from_training == detector.holdout_paths
    assert all("/train/good/" in path for path in detector.holdout_paths)
