# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""ForgettingDetection: rank AUROC, the stop rule, hold-out split, pseudo-AUROC recomputed independently, stop and
restore exactly the best epoch (also across a resume), other anomalib models."""

import random
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from anomalib.data import MVTecAD
from anomalib.data.utils import read_image
from anomalib.engine import Engine
from conftest import single_torch_thread
from lightning.pytorch import Callback
from sklearn.metrics import roc_auc_score

from anomalib_gaussft import GaussFT
from anomalib_gaussft.evaluation import rank_auroc
from anomalib_gaussft.forgetting import ForgettingDetection, StopRule, select_epoch


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with single_torch_thread():
        yield


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
    assert select_epoch([0.8, 0.9, 0.9, 0.91], patience=1) == (2, 2)  # a tie is no improvement; the later epoch kept
    assert select_epoch([0.8, 0.9, 0.9, 0.91], patience=2) == (3, None)
    assert select_epoch([0.9, 0.9, 0.9, 0.9], patience=3) == (3, 3)  # a plateau stops: fine-tuning no longer helps
    assert select_epoch([0.9, 0.92, 0.94], patience=2, min_delta=0.05) == (2, 2)  # gains within min_delta don't count
    assert select_epoch([0.9, 0.8, 0.96, 0.9], patience=2, min_delta=0.05) == (2, None)  # a larger one resets
    with pytest.raises(ValueError, match="at least one score"):
        select_epoch([])
    with pytest.raises(ValueError, match="patience"):
        StopRule(patience=0)


def _latest_argmax(scores: list[float]) -> int:
    return max(range(len(scores)), key=lambda epoch: (scores[epoch], epoch))


def _last_improvement(scores: list[float]) -> int:
    """The first epoch that reached the highest score so far (later ties are no improvement)."""
    return scores.index(max(scores))


def _stop_oracle(scores: list[float], patience: int) -> tuple[int, int | None]:
    """The rule for min_delta=0 said differently: stop ``patience`` epochs after the running maximum last rose."""
    for epoch in range(len(scores)):
        if epoch - _last_improvement(scores[: epoch + 1]) >= patience:
            return _latest_argmax(scores[: epoch + 1]), epoch
    return _latest_argmax(scores), None


def _random_curves(count: int) -> list[tuple[list[float], int]]:
    rng = random.Random(0)
    return [
        ([rng.choice([0.5, 0.6, 0.7, 0.8]) for _ in range(rng.randint(1, 10))], rng.randint(1, 4)) for _ in range(count)
    ]


def test_stop_rule_agrees_with_an_independent_formulation() -> None:
    for curve, patience in _random_curves(300):
        assert select_epoch(curve, patience) == _stop_oracle(curve, patience), (curve, patience)
        rule = StopRule(patience)
        for epoch, score in enumerate(curve):
            stop = rule.update(score, epoch)
            assert rule.best_epoch == _latest_argmax(curve[: epoch + 1]), (curve, epoch)
            assert rule.best_score == max(curve[: epoch + 1])
            assert stop == (epoch - _last_improvement(curve[: epoch + 1]) >= patience), (curve, patience, epoch)


def test_stop_rule_resumed_from_a_saved_state_decides_as_if_never_interrupted(tmp_path: Path) -> None:
    for curve, patience in _random_curves(30):
        uninterrupted = StopRule(patience, min_delta=0.05)
        expected = [uninterrupted.update(score, epoch) for epoch, score in enumerate(curve)]
        for split in range(len(curve) + 1):
            first = StopRule(patience, min_delta=0.05)
            decisions = [first.update(score, epoch) for epoch, score in enumerate(curve[:split])]
            torch.save(first.state_dict(), tmp_path / "rule.pt")  # as in a checkpoint, read back with weights_only
            resumed = StopRule(patience, min_delta=0.05)
            resumed.load_state_dict(torch.load(tmp_path / "rule.pt", weights_only=True))
            decisions += [resumed.update(score, epoch) for epoch, score in enumerate(curve) if epoch >= split]
            assert decisions == expected, (curve, patience, split)
            assert resumed.state_dict() == uninterrupted.state_dict()


def test_unknown_augmentation_and_bad_settings_are_named() -> None:
    with pytest.raises(ValueError, match="sharpen"):
        ForgettingDetection(augmentations=["sharpen"])
    with pytest.raises(ValueError, match="holdout_fraction"):
        ForgettingDetection(holdout_fraction=1.5)


@torch.no_grad()
def _raw_scores(module: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    module.eval()
    return module.model(module.pre_processor.transform(images)).pred_score.clone()


def _independent_pseudo_aurocs(module: torch.nn.Module, detector: ForgettingDetection) -> dict[str, float]:
    """The callback's metrics recomputed here: the held-out normals against the pseudo-anomalies, with this test's
    own scoring and sklearn's AUROC."""
    normal = _raw_scores(module, detector._normal).numpy()
    pseudo = {name: _raw_scores(module, images).numpy() for name, images in detector._pseudo.items()}

    def auroc(anomalous: np.ndarray) -> float:
        return roc_auc_score(np.r_[np.zeros(len(normal)), np.ones(len(anomalous))], np.r_[normal, anomalous])

    metrics = {"val_pseudo_AUROC": auroc(np.concatenate(list(pseudo.values())))}
    metrics.update({f"val_pseudo_AUROC_{name}": auroc(scores) for name, scores in pseudo.items()})
    return metrics


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
    # The restore alone: the final re-fit with the held-out images is tested on its own below.
    detector = ForgettingDetection(
        augmentations=["cutpaste", "mixup"], patience=2, min_holdout=4, return_held_out=False
    )
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
    assert select_epoch(detector.history, patience=2) == (1, 3)  # the study's rule is the callback's
    assert engine.trainer.current_epoch == 4  # epochs 0..3 ran, then the trainer stopped
    assert not torch.equal(recorder.scores[1], recorder.scores[3]), "weights did not change: the test proves nothing"
    torch.testing.assert_close(_raw_scores(model, images), recorder.scores[1], rtol=0, atol=0)
    # the checkpoint written after the decision holds the restored state too
    reloaded = GaussFT.load_from_checkpoint(engine.best_model_path)
    torch.testing.assert_close(_raw_scores(reloaded, images), recorder.scores[1], rtol=0, atol=0)


class _TrainingSetRecorder(Callback):
    """Records the image files of the dataset the training loop iterates."""

    def __init__(self) -> None:
        self.paths: set[str] = set()

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        del pl_module
        self.paths = {str(path) for path in trainer.train_dataloader.dataset.samples.image_path}


def test_holdout_is_removed_from_training_and_pseudo_anomalies_are_fixed(
    demo_root: Path, tmp_path: Path, tiny_model_kwargs: dict
) -> None:
    detector = ForgettingDetection(
        augmentations=["cutmix", "cutpaste_scar"], min_holdout=4, seed=3, return_held_out=False
    )
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
    recorder = _TrainingSetRecorder()
    engine = Engine(max_epochs=2, default_root_dir=tmp_path, accelerator="cpu", logger=False, callbacks=[recorder])
    engine.fit(model, datamodule=datamodule)
    training = recorder.paths  # what the training loop was given
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
    # the datamodule's own training set is put back as it was, every image in it
    assert {str(path) for path in datamodule.train_data.samples.image_path} == training | set(
        detector.removed_from_training
    )
    assert len(detector.history) == 2
    assert detector.best_epoch == _latest_argmax(detector.history)
    # What was logged is what the model restored at the end scores: recomputed here independently.
    logged = engine.trainer.callback_metrics
    assert float(logged["val_pseudo_AUROC"]) == pytest.approx(detector.history[-1], abs=1e-6)
    recomputed = _independent_pseudo_aurocs(model, detector)
    assert set(recomputed) == {"val_pseudo_AUROC", "val_pseudo_AUROC_cutmix", "val_pseudo_AUROC_cutpaste_scar"}
    assert detector.history[detector.best_epoch] == pytest.approx(recomputed["val_pseudo_AUROC"], abs=1e-12)
    for name, values in detector.per_augmentation_history.items():
        assert float(logged[f"val_pseudo_AUROC_{name}"]) == pytest.approx(values[-1], abs=1e-6)
        assert values[detector.best_epoch] == pytest.approx(recomputed[f"val_pseudo_AUROC_{name}"], abs=1e-12)
    again = ForgettingDetection(augmentations=["cutmix", "cutpaste_scar"], min_holdout=4, seed=3)
    again._normal = detector._normal
    again._make_pseudo_anomalies()
    for name, images in detector._pseudo.items():
        assert torch.equal(images, again._pseudo[name])
        assert not torch.equal(images, detector._normal)


@torch.no_grad()
def _pooled_mean(module: GaussFT, images: torch.Tensor) -> torch.Tensor:
    """Mean of the first global level's pooled features of ``images`` (``[0, 1]``), computed here."""
    module.eval()
    pooled, _ = module.model.embed(module.pre_processor.transform(images), with_local=False)
    return pooled[0].double().mean(dim=0)


def test_final_fit_includes_the_held_out_images_and_refits_thresholds(
    demo_root: Path, tmp_path: Path, tiny_model_kwargs: dict
) -> None:
    """When training ends, the held-out training images join the final Gaussians; thresholds follow the new fit."""
    detector = ForgettingDetection(augmentations=["cutpaste"], min_holdout=6, seed=1)
    model = GaussFT(**tiny_model_kwargs, forgetting_detection=detector)
    datamodule = MVTecAD(
        root=demo_root, category="coffee", train_batch_size=8, eval_batch_size=8, num_workers=0,
        val_split_mode="synthetic", val_split_ratio=0.2,
    )  # fmt: skip
    engine = Engine(max_epochs=2, default_root_dir=tmp_path, accelerator="cpu", logger=False)
    engine.fit(model, datamodule=datamodule)
    removed = detector.removed_from_training
    assert removed, "nothing was held out of training: the test proves nothing"

    def load(paths: list[str]) -> torch.Tensor:
        return torch.stack([read_image(path, as_tensor=True) for path in paths])

    every_image = [str(path) for path in datamodule.train_data.samples.image_path]  # put back with every image
    assert set(removed) <= set(every_image)
    training = load([path for path in every_image if path not in removed])
    held_out = load(removed)
    both = _pooled_mean(model, torch.cat([training, held_out]))
    fitted = model.model.gaussians[0].mean.double()
    torch.testing.assert_close(fitted, both, rtol=0, atol=1e-5)
    assert not torch.allclose(fitted, _pooled_mean(model, training), rtol=0, atol=1e-4)  # the held-out ones count
    # The post-processor's range is that of the validation scores of the final model.
    scores = []
    with torch.no_grad():
        for batch in datamodule.val_dataloader():
            scores.append(model.model(model.pre_processor.transform(batch.image)).pred_score)
    scores = torch.cat(scores)
    post = model.post_processor
    torch.testing.assert_close(post.image_min, scores.min(), rtol=1e-6, atol=0)
    torch.testing.assert_close(post.image_max, scores.max(), rtol=1e-6, atol=0)
    # ... and the last checkpoint holds that final state.
    reloaded = GaussFT.load_from_checkpoint(engine.best_model_path)
    torch.testing.assert_close(reloaded.model.gaussians[0].mean, model.model.gaussians[0].mean, rtol=0, atol=0)
    torch.testing.assert_close(reloaded.post_processor.image_min, post.image_min, rtol=0, atol=0)


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
    history = detector.history
    assert len(history) == engine.trainer.current_epoch == 2
    assert detector.best_epoch == _latest_argmax(history)
    assert detector.stopped_epoch == (1 if history[1] < history[0] else None)  # patience 1
    recomputed = _independent_pseudo_aurocs(model, detector)  # STFPM as restored at the end
    assert history[detector.best_epoch] == pytest.approx(recomputed["val_pseudo_AUROC"], abs=1e-12)


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


def test_resumed_run_restores_the_best_epoch_of_before_the_resume(
    demo_root: Path, tmp_path: Path, tiny_model_kwargs: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Epoch 0 is best and the last epoch before the checkpoint; epoch 1 after resuming is worse: epoch 0 comes back."""
    probes = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(1))

    def fit(name: str, curve: list[float], max_epochs: int, ckpt_path: str | None = None):
        detector = ForgettingDetection(
            augmentations=["cutpaste"], patience=5, min_holdout=4, restore_best=True, return_held_out=False
        )
        scores = iter(curve)
        monkeypatch.setattr(
            detector, "evaluate", lambda pl_module: {"val_pseudo_AUROC": next(scores), "val_pseudo_AUROC_cutpaste": 0.5}
        )
        recorder = _ScoreRecorder(probes)
        model = GaussFT(**{**tiny_model_kwargs, "lr": 1e-2}, forgetting_detection=detector)
        datamodule = MVTecAD(
            root=demo_root, category="brick", train_batch_size=8, eval_batch_size=8, num_workers=0,
            val_split_mode="synthetic", val_split_ratio=0.2,
        )  # fmt: skip
        engine = Engine(
            max_epochs=max_epochs, default_root_dir=tmp_path / name, accelerator="cpu", logger=False,
            callbacks=[recorder],
        )  # fmt: skip
        engine.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
        return engine, model, detector, recorder

    first_engine, _, _, first = fit("first", [0.9], max_epochs=1)
    engine, model, detector, resumed = fit("resumed", [0.6], max_epochs=2, ckpt_path=first_engine.best_model_path)
    assert detector.history == [0.9, 0.6]
    assert detector.best_epoch == 0
    assert not torch.equal(resumed.scores[1], first.scores[0]), "epoch 1 did not change the model: proves nothing"
    torch.testing.assert_close(_raw_scores(model, probes), first.scores[0], rtol=0, atol=0)
    reloaded = GaussFT.load_from_checkpoint(engine.best_model_path)
    torch.testing.assert_close(_raw_scores(reloaded, probes), first.scores[0], rtol=0, atol=0)
