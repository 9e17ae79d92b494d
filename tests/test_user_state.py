# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""Nothing of the user's changed, none of their data leaked, one decision for all ranks.

* Fitting with forgetting detection leaves the datamodule's training set as it was: a second model fitted on the same
  datamodule trains on the same images.
* A Torch export of a model trained with a ``ForgettingDetection`` instance holds the model and nothing of the training
  data: no image, no file path, no second copy of the weights.
* A checkpoint written while the model holds the best epoch's state holds one copy of the weights, and resuming from
  it still restores that epoch.
* Under DDP every rank takes rank 0's pseudo-AUROC, so the ranks stop and restore together.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from anomalib.data import MVTecAD
from anomalib.engine import Engine
from conftest import single_torch_thread
from lightning.pytorch import Callback
from lightning.pytorch.trainer.states import TrainerFn

from anomalib_gaussft import GaussFT
from anomalib_gaussft.forgetting import ForgettingDetection


@pytest.fixture(autouse=True)
def _one_thread() -> Any:
    with single_torch_thread():
        yield


class _TrainingFiles(Callback):
    """The image files of the dataset each fit's training loop iterates."""

    def __init__(self) -> None:
        self.fits: list[list[str]] = []

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        del pl_module
        self.fits.append(sorted(str(path) for path in trainer.train_dataloader.dataset.samples.image_path))


def _datamodule(root: Path, split: str = "synthetic") -> MVTecAD:
    return MVTecAD(
        root=root, category="coffee", train_batch_size=8, eval_batch_size=8, num_workers=0, val_split_mode=split,
        val_split_ratio=0.2,
    )  # fmt: skip


def _fit(model: GaussFT, datamodule: MVTecAD, folder: Path, max_epochs: int = 2, **kwargs: Any) -> Engine:
    engine = Engine(
        max_epochs=max_epochs, default_root_dir=folder, accelerator="cpu", logger=False, enable_progress_bar=False,
        **kwargs,
    )  # fmt: skip
    engine.fit(model, datamodule=datamodule)
    return engine


def _state_bytes(module: torch.nn.Module) -> int:  # in memory: full float32 whitenings (the state dict packs them)
    return sum(tensor.numel() * tensor.element_size() for tensor in [*module.parameters(), *module.buffers()])


def test_fitting_leaves_the_datamodules_training_set_as_it_was(
    demo_root: Path, tmp_path: Path, tiny_model_kwargs: dict
) -> None:
    """Two models fitted one after the other on one datamodule (a benchmark loop, a notebook) see the same images."""
    datamodule = _datamodule(demo_root, split="same_as_test")  # every held-out image comes from the training set
    datamodule.setup()
    before = sorted(str(path) for path in datamodule.train_data.samples.image_path)
    recorder = _TrainingFiles()
    detectors = []
    for run in range(2):
        detector = ForgettingDetection(augmentations=["cutpaste"], min_holdout=8)
        _fit(
            GaussFT(**tiny_model_kwargs, forgetting_detection=detector),
            datamodule,
            tmp_path / str(run),
            callbacks=[recorder],
        )
        detectors.append(detector)
        assert sorted(str(path) for path in datamodule.train_data.samples.image_path) == before
    assert len(detectors[0].removed_from_training) == 8
    assert recorder.fits[0] == recorder.fits[1], "the second model trained on fewer images"
    assert len(recorder.fits[0]) == len(before) - 8
    assert not set(recorder.fits[0]) & set(detectors[0].removed_from_training)


def test_the_training_set_is_put_back_when_fitting_fails(
    demo_root: Path, tmp_path: Path, tiny_model_kwargs: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    datamodule = _datamodule(demo_root, split="same_as_test")
    datamodule.setup()
    size = len(datamodule.train_data)
    model = GaussFT(**tiny_model_kwargs, forgetting_detection=ForgettingDetection(augmentations=["cutpaste"]))

    def fail(*args: Any, **kwargs: Any) -> None:
        msg = "a failure during training"
        raise RuntimeError(msg)

    monkeypatch.setattr(model, "training_step", fail)
    with pytest.raises(RuntimeError, match="a failure during training"):
        _fit(model, datamodule, tmp_path)
    assert len(datamodule.train_data) == size


def _objects(root: Any, limit: int = 20_000) -> list[Any]:
    """Every object reachable from ``root`` through attributes, dicts, lists and tuples (each once)."""
    seen, stack, found = set(), [root], []
    while stack and len(found) < limit:
        item = stack.pop()
        if id(item) in seen or isinstance(item, str | bytes | int | float | bool | type(None)):
            continue
        seen.add(id(item))
        found.append(item)
        if isinstance(item, dict):
            stack += list(item.keys()) + list(item.values())
        elif isinstance(item, list | tuple | set):
            stack += list(item)
        elif hasattr(item, "__dict__") and not isinstance(item, type):
            stack += list(vars(item).values())
    return found


def test_torch_export_holds_the_model_and_nothing_of_the_training_data(
    demo_root: Path, tmp_path: Path, tiny_model_kwargs: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's example (a ``ForgettingDetection`` instance) exported with anomalib's ``to_torch``."""
    detector = ForgettingDetection(augmentations=["cutpaste", "mixup"], patience=3)
    model = GaussFT(**tiny_model_kwargs, forgetting_detection=detector)
    datamodule = _datamodule(demo_root)
    _fit(model, datamodule, tmp_path / "fit")
    assert detector._normal is not None, "nothing was held out: the test proves nothing"
    assert detector._best_state is not None
    path = model.to_torch(tmp_path / "export")
    # the archive's tensors: the model's state, within 5 %
    with zipfile.ZipFile(path) as archive:
        stored = sum(info.file_size for info in archive.infolist() if "/data/" in info.filename)
    assert stored <= 1.05 * _state_bytes(model), (stored, _state_bytes(model))
    monkeypatch.setenv("TRUST_REMOTE_CODE", "1")
    exported = torch.load(path, weights_only=False)["model"]
    training_files = {str(p) for p in datamodule.train_data.samples.image_path}
    height, width = model.image_size
    for item in _objects(exported):
        if isinstance(item, torch.Tensor):
            assert not (item.ndim >= 3 and tuple(item.shape[-2:]) == (height, width)), f"image-shaped {item.shape}"
        if isinstance(item, list | tuple | set):
            assert not {str(entry) for entry in item} & training_files, "training file paths in the export"
    callback = exported.forgetting_detection
    assert callback is not detector
    assert callback.history == detector.history  # the curves stay; images, pseudo-anomalies and weights do not
    assert callback._normal is None
    assert callback._pseudo == {}
    assert callback._best_state is None


def _metrics(score: float) -> dict[str, float]:
    """What ``ForgettingDetection.evaluate`` returns for the ``cutpaste`` augmentation alone."""
    return {"val_pseudo_AUROC": score, "val_pseudo_AUROC_cutpaste": score}


class _WeightsAtValidation(Callback):
    """A copy of the model's state at the end of every validation."""

    def __init__(self) -> None:
        self.states: list[dict[str, torch.Tensor]] = []

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        del trainer
        self.states.append({key: value.clone() for key, value in pl_module.state_dict().items()})


def _checkpoint_callback_state(path: str) -> dict[str, Any]:
    checkpoint = torch.load(path, weights_only=False, map_location="cpu")
    (state,) = [value for key, value in checkpoint["callbacks"].items() if "ForgettingDetection" in key]
    return state


def test_a_checkpoint_holds_one_copy_of_the_weights_and_resumes_to_the_best_epoch(
    demo_root: Path, tmp_path: Path, tiny_model_kwargs: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last epoch is the best: the checkpoint's own weights are its state, stored once; resuming restores it."""

    watcher = _WeightsAtValidation()

    def fit(name: str, curve: list[float], max_epochs: int, ckpt_path: str | None = None) -> tuple[Engine, GaussFT]:
        detector = ForgettingDetection(augmentations=["cutpaste"], patience=5, min_holdout=4, return_held_out=False)
        scores = iter(curve)
        monkeypatch.setattr(detector, "evaluate", lambda pl_module: _metrics(next(scores)))
        model = GaussFT(**{**tiny_model_kwargs, "lr": 1e-2}, forgetting_detection=detector)
        engine = Engine(
            max_epochs=max_epochs, default_root_dir=tmp_path / name, accelerator="cpu", logger=False,
            enable_progress_bar=False, callbacks=[watcher],
        )  # fmt: skip
        engine.fit(model, datamodule=_datamodule(demo_root), ckpt_path=ckpt_path)
        return engine, model

    first, first_model = fit("first", [0.5, 0.9], max_epochs=2)  # epoch 1, the last, is the best
    state = _checkpoint_callback_state(first.best_model_path)
    assert state["best_state"] is None
    assert state["best_state_is_module"] is True
    checkpoint = torch.load(first.best_model_path, weights_only=False, map_location="cpu")
    optimizer = sum(
        value.numel() * value.element_size()
        for state in checkpoint["optimizer_states"]
        for parameter in state["state"].values()
        for value in parameter.values()
        if isinstance(value, torch.Tensor)
    )  # Adam's two moments: what resuming the optimiser needs
    size = Path(first.best_model_path).stat().st_size
    assert size - optimizer < 1.1 * _state_bytes(first_model), (size, optimizer, _state_bytes(first_model))
    saved = checkpoint["state_dict"]

    resumed, model = fit("resumed", [0.7], max_epochs=3, ckpt_path=first.best_model_path)  # epoch 2 is worse
    backbone = [key for key in saved if key.startswith("model.feature_extractor.") and saved[key].is_floating_point()]
    assert backbone
    epoch_2 = watcher.states[-1]
    assert any(not torch.equal(epoch_2[key], saved[key]) for key in backbone), "epoch 2 did not train: proves nothing"
    trained = model.state_dict()
    assert all(torch.equal(trained[key], saved[key]) for key in backbone)  # epoch 1 restored exactly
    state = _checkpoint_callback_state(resumed.best_model_path)
    assert state["best_epoch"] == 1
    assert state["history"] == [0.5, 0.9, 0.7]


def test_a_checkpoint_behind_the_best_epoch_keeps_its_state(
    demo_root: Path, tmp_path: Path, tiny_model_kwargs: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    detector = ForgettingDetection(augmentations=["cutpaste"], patience=5, min_holdout=4, restore_best=False)
    scores = iter([0.9, 0.5])  # epoch 0 best, epoch 1 worse and not restored: the checkpoint needs epoch 0's state
    monkeypatch.setattr(detector, "evaluate", lambda pl_module: _metrics(next(scores)))
    engine = _fit(
        GaussFT(**{**tiny_model_kwargs, "lr": 1e-2}, forgetting_detection=detector), _datamodule(demo_root), tmp_path
    )
    state = _checkpoint_callback_state(engine.best_model_path)
    assert state["best_state_is_module"] is False
    assert state["best_state"] is not None
    assert state["best_state"].keys() == detector._best_state.keys()


def test_every_rank_takes_rank_zeros_decision() -> None:
    """Rank 1's own pseudo-AUROC falls (it would stop alone at epoch 2); it follows rank 0's curve instead."""
    curves = {0: [0.80, 0.85, 0.86, 0.87], 1: [0.80, 0.70, 0.60, 0.50]}
    detectors = {rank: ForgettingDetection(augmentations=["cutpaste"], patience=2) for rank in curves}
    broadcast: dict[int, Any] = {}

    def strategy(rank: int) -> SimpleNamespace:
        def broadcast_from_rank_zero(obj: Any, src: int = 0) -> Any:
            assert src == 0
            if rank == 0:
                broadcast["value"] = obj
            return broadcast["value"]

        return SimpleNamespace(broadcast=broadcast_from_rank_zero)

    module = SimpleNamespace(log=lambda *args, **kwargs: None, state_dict=dict, load_state_dict=lambda state: None)
    stops = {0: [], 1: []}
    for epoch in range(4):
        for rank in (0, 1):  # rank 0 reaches the broadcast first
            detector = detectors[rank]
            detector._normal = torch.zeros(1)
            detector.evaluate = lambda pl_module, rank=rank, epoch=epoch: _metrics(curves[rank][epoch])
            trainer = SimpleNamespace(
                sanity_checking=False, state=SimpleNamespace(fn=TrainerFn.FITTING), current_epoch=epoch, max_epochs=10,
                should_stop=False, strategy=strategy(rank),
            )  # fmt: skip
            detector.on_validation_epoch_end(trainer, module)
            detector.on_validation_end(trainer, module)
            stops[rank].append(trainer.should_stop)
    assert detectors[1].history == detectors[0].history == curves[0]
    assert stops[0] == stops[1] == [False] * 4
    assert detectors[0].best_epoch == detectors[1].best_epoch == 3


def test_an_epoch_limit_the_user_gave_stands(demo_root: Path, tmp_path: Path, tiny_model_kwargs: dict) -> None:
    """``Engine(max_epochs=3)`` runs 3 epochs (GaussFT bounds only fits given no limit: ``tests/test_cli.py``)."""
    model = GaussFT(**tiny_model_kwargs, forgetting_detection=False)
    engine = _fit(model, _datamodule(demo_root), tmp_path, max_epochs=3)
    assert engine.trainer.current_epoch == 3
    assert engine.trainer.max_epochs == 3
