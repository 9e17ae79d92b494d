# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""Reliability: bad input either works or stops with a message naming the file or problem; resume; determinism.

Every run is a tiny randomly initialised EfficientNet-Lite0 at 32 px on a few PNGs written to ``tmp_path``, with
anomalib's ``Folder`` datamodule and ``Engine`` (CPU). See ``docs/reliability.md`` for the behaviour behind each case.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from anomalib.data import Folder
from anomalib.engine import Engine
from conftest import single_torch_thread
from lightning.pytorch import seed_everything
from PIL import Image

from anomalib_gaussft import GaussFT
from anomalib_gaussft.evaluation import rank_auroc
from anomalib_gaussft.forgetting import ForgettingDetection
from tools.memory_benchmark import run_in_subprocesses

SIZE = 32
TINY = {
    "backbone": "tf_efficientnet_lite0",
    "pretrained": False,
    "image_size": (SIZE, SIZE),
    "layers": ["blocks.2", "blocks.4"],
    "map_layers": ["blocks.2"],
    "visualizer": False,
}


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with single_torch_thread():
        yield


def _write_images(
    folder: Path, count: int, size: int | tuple[int, int] = SIZE, mode: str = "RGB", seed: int = 0, start: int = 0
) -> list[Path]:
    """Smooth random colour textures as PNGs ``{start:03d}.png`` ... in ``folder``, converted to ``mode``."""
    folder.mkdir(parents=True, exist_ok=True)
    width, height = (size, size) if isinstance(size, int) else size
    rng = np.random.default_rng(seed)
    paths = []
    for index in range(start, start + count):
        coarse = rng.integers(0, 256, size=(max(height // 4, 2), max(width // 4, 2), 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((width, height), Image.BILINEAR).convert(mode)
        path = folder / f"{index:03d}.png"
        image.save(path)
        paths.append(path)
    return paths


def _dataset(root: Path, n_train: int = 12) -> Path:
    """A ``Folder`` layout: ``train/good`` (``n_train`` images), ``test/good`` and ``test/bad`` (4 each)."""
    _write_images(root / "train" / "good", n_train, seed=0)
    _write_images(root / "test" / "good", 4, seed=1)
    _write_images(root / "test" / "bad", 4, seed=2)
    return root


def _datamodule(root: Path, train_batch_size: int = 8) -> Folder:
    return Folder(
        name="reliability",
        root=root,
        normal_dir="train/good",
        abnormal_dir="test/bad",
        normal_test_dir="test/good",
        train_batch_size=train_batch_size,
        eval_batch_size=8,
        num_workers=0,
    )


def _engine(root: Path, max_epochs: int = 1) -> Engine:
    return Engine(
        max_epochs=max_epochs,
        default_root_dir=root / "results",
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )


def _checkpoints(root: Path) -> list[Path]:
    return sorted((root / "results").rglob("*.ckpt"))


def _gaussian_buffers(model: GaussFT) -> dict[str, torch.Tensor]:
    return {key: value.clone() for key, value in model.state_dict().items() if "gaussian" in key}


def _assert_metrics(metrics: list[dict[str, float]], model: GaussFT, datamodule: Folder) -> None:
    """The reported image AUROC is that of the model's own post-processed scores on the test set, recomputed here."""
    scores, labels = [], []
    model.eval()
    with torch.no_grad():
        for batch in datamodule.test_dataloader():
            scores.append(model(batch.image).pred_score)
            labels.append(batch.gt_label.bool())
    scores, labels = torch.cat(scores), torch.cat(labels)
    assert metrics[0]["image_AUROC"] == pytest.approx(rank_auroc(scores[~labels], scores[labels]), abs=1e-4)


def _scores(model: GaussFT, images: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model.model(model.pre_processor.transform(images)).pred_score


# ---------------------------------------------------------------------------------------------------- training data
def test_empty_training_folder_is_refused_naming_the_folder(tmp_path: Path) -> None:
    root = _dataset(tmp_path, n_train=0)
    (root / "train" / "good").mkdir(parents=True, exist_ok=True)
    with pytest.raises(RuntimeError, match=r"Found 0 .*images in .*train/good"):  # anomalib's own check
        _engine(root).train(GaussFT(**TINY), datamodule=_datamodule(root))
    assert not _checkpoints(root)
    with pytest.raises(ValueError, match="training set is empty"):  # any other loader that yields nothing
        GaussFT(**TINY).fit_gaussians([])


def test_single_training_image_trains_without_forgetting_detection(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = _dataset(tmp_path, n_train=1)
    model = GaussFT(**TINY)
    datamodule = _datamodule(root)
    with caplog.at_level(logging.WARNING, logger="anomalib_gaussft"):
        metrics = _engine(root, max_epochs=2).train(model, datamodule=datamodule)
    _assert_metrics(metrics, model, datamodule)
    assert "ForgettingDetection is disabled: 1 training images are too few" in caplog.text
    assert model.model.is_fitted
    assert all(torch.isfinite(value).all() for value in _gaussian_buffers(model).values())


def test_grayscale_rgba_palette_and_mixed_size_images_train(tmp_path: Path) -> None:
    train = tmp_path / "train" / "good"
    _write_images(train, 4, mode="L", seed=0, start=0)
    _write_images(train, 4, mode="RGBA", seed=1, start=4)
    _write_images(train, 3, size=(40, 28), mode="P", seed=2, start=8)
    _write_images(train, 3, size=48, seed=3, start=11)
    _write_images(tmp_path / "test" / "good", 2, size=(36, 52), mode="L", seed=4)
    _write_images(tmp_path / "test" / "good", 2, size=24, mode="RGBA", seed=5, start=2)
    _write_images(tmp_path / "test" / "bad", 4, size=44, seed=6)
    model = GaussFT(**TINY, forgetting_detection=False)
    datamodule = _datamodule(tmp_path)
    metrics = _engine(tmp_path).train(model, datamodule=datamodule)
    _assert_metrics(metrics, model, datamodule)
    assert {tuple(datamodule.test_data[i].image.shape[:1]) for i in range(len(datamodule.test_data))} == {(3,)}
    assert _checkpoints(tmp_path)


def test_16_bit_images_are_refused_naming_the_files(tmp_path: Path) -> None:
    root = _dataset(tmp_path)
    sixteen_bit = root / "train" / "good" / "003.png"
    values = np.linspace(0, 65535, SIZE * SIZE).reshape(SIZE, SIZE).astype(np.uint16)
    Image.fromarray(values).save(sixteen_bit)  # anomalib's reader would clip it to a white image
    with pytest.raises(ValueError, match=rf"cannot be used: {re.escape(str(sixteen_bit))}.*I;16.*clips to 8 bits"):
        _engine(root).train(GaussFT(**TINY, forgetting_detection=False), datamodule=_datamodule(root))
    assert not _checkpoints(root)


def test_corrupt_image_is_refused_naming_the_file(tmp_path: Path) -> None:
    root = _dataset(tmp_path)
    corrupt = root / "train" / "good" / "005.png"
    corrupt.write_bytes(b"this is not a PNG file")
    with pytest.raises(
        ValueError, match=rf"1 training image\(s\) cannot be used: {re.escape(str(corrupt))} \(UnidentifiedImageError"
    ):
        _engine(root).train(GaussFT(**TINY, forgetting_detection=False), datamodule=_datamodule(root))
    assert not _checkpoints(root)


def test_truncated_image_is_refused_naming_the_file(tmp_path: Path) -> None:
    root = _dataset(tmp_path)
    truncated = root / "train" / "good" / "007.png"
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])  # a valid header: only decoding fails ("image file is truncated")
    with pytest.raises(
        OSError, match=rf"Cannot read 1 training image\(s\): {re.escape(str(truncated))} \(OSError: image file is trunc"
    ):
        _engine(root).train(GaussFT(**TINY, forgetting_detection=False), datamodule=_datamodule(root))
    assert not _checkpoints(root)


def test_constant_images_give_a_finite_gaussian_and_scores(tmp_path: Path) -> None:
    root = _dataset(tmp_path)
    gray = Image.new("RGB", (SIZE, SIZE), (120, 120, 120))
    for path in (root / "train" / "good").glob("*.png"):
        gray.save(path)  # every feature is constant: the covariance is exactly zero before the ridge
    model = GaussFT(**TINY, forgetting_detection=False)
    datamodule = _datamodule(root)
    metrics = _engine(root, max_epochs=2).train(model, datamodule=datamodule)  # the fine-tuning epoch too
    _assert_metrics(metrics, model, datamodule)
    assert all(torch.isfinite(value).all() for value in _gaussian_buffers(model).values())
    same = torch.full((1, 3, SIZE, SIZE), 120 / 255)
    scores = _scores(model, torch.cat([same, torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))]))
    assert torch.isfinite(scores).all()
    assert scores[0] < scores[1]


# ---------------------------------------------------------------------------------------------------- numerics
def _poison(model: GaussFT, monkeypatch: pytest.MonkeyPatch, *, training_only: bool) -> None:
    """Make the backbone return ``inf`` features, as fp16 overflow would (always, or only in training mode)."""
    extractor = model.model.feature_extractor
    forward = extractor.forward

    def overflowing(images: torch.Tensor) -> list[torch.Tensor]:
        features = forward(images)
        if training_only and not extractor.training:
            return features
        return [feature * float("inf") for feature in features]

    monkeypatch.setattr(extractor, "forward", overflowing)


def test_non_finite_features_stop_the_fit_with_a_clear_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _dataset(tmp_path)
    model = GaussFT(**TINY)
    _poison(model, monkeypatch, training_only=False)
    with pytest.raises(ValueError, match=r"Features contain NaN or infinite values \(for example from fp16 overflow"):
        _engine(root).train(model, datamodule=_datamodule(root))
    assert not _checkpoints(root)


def test_non_finite_training_loss_stops_with_a_clear_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _dataset(tmp_path)
    model = GaussFT(**TINY)
    _poison(model, monkeypatch, training_only=True)
    # The pretrained epoch computes no loss: the first fine-tuning epoch (the second epoch) meets the overflow.
    with pytest.raises(FloatingPointError, match=r"training loss became (inf|nan) at step \d+.*16-mixed"):
        _engine(root, max_epochs=2).train(model, datamodule=_datamodule(root))
    for path in _checkpoints(root):  # the pretrained epoch's, written before the overflow: a finite model
        state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
        weights = [value for key, value in state.items() if key.startswith("model.") and value.is_floating_point()]
        assert weights, path
        assert all(torch.isfinite(value).all() for value in weights), path


# ---------------------------------------------------------------------------------------------------- settings
def test_unknown_backbone_or_tag_names_what_timm_has() -> None:
    with pytest.raises(ValueError, match=r"Unknown backbone 'efficientnet_b99x'.*Similar names: efficientnet_b"):
        GaussFT(backbone="efficientnet_b99x", pretrained=False)
    with pytest.raises(
        ValueError, match=r"Unknown pretrained tag in backbone 'resnet18.no_such_tag'.*resnet18\.a1_in1k"
    ):
        GaussFT(backbone="resnet18.no_such_tag", pretrained=False)


# ---------------------------------------------------------------------------------------------------- checkpoints
def test_checkpoint_of_another_model_is_refused_naming_the_file(tmp_path: Path) -> None:
    from anomalib.models import Padim

    root = _dataset(tmp_path, n_train=4)
    engine = _engine(root)
    padim = Padim(backbone="resnet18", pre_trained=False, layers=["layer1"], n_features=8, visualizer=False)
    engine.fit(padim, datamodule=_datamodule(root))
    checkpoint = engine.trainer.checkpoint_callback.best_model_path
    message = rf"Checkpoint {re.escape(checkpoint)} is not a GaussFT checkpoint.*model\.feature_extractor"
    with pytest.raises(ValueError, match=message):
        GaussFT.load_from_checkpoint(checkpoint)
    with pytest.raises(ValueError, match=message):
        _engine(tmp_path / "test").test(GaussFT(**TINY), datamodule=_datamodule(root), ckpt_path=checkpoint)


# ---------------------------------------------------------------------------------------------------- resume and seed
def _run(root: Path, name: str, max_epochs: int, ckpt_path: str | None = None) -> dict[str, Any]:
    """Fine-tune with seed 0 (one batch per epoch, so the shuffle order cannot matter); scores of fixed probes."""
    seed_everything(0)
    forgetting = ForgettingDetection(augmentations=["cutpaste"], patience=5, restore_best=False)
    model = GaussFT(**TINY, lr=1e-3, forgetting_detection=forgetting)
    engine = _engine(root / name, max_epochs=max_epochs)
    datamodule = _datamodule(root, train_batch_size=8)  # 16 images - 8 held out = one batch of 8
    engine.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    probes = torch.rand(4, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    return {
        "model": model,
        "scores": _scores(model, probes),
        "gaussians": _gaussian_buffers(model),
        "epoch": engine.trainer.current_epoch,
        "step": engine.trainer.global_step,
        "history": list(forgetting.history),
        "checkpoint": engine.trainer.checkpoint_callback.best_model_path,
    }


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Two uninterrupted 2-epoch runs with the same seed, and a 1-epoch run resumed to 2 epochs."""
    with single_torch_thread():  # set up before the autouse fixture runs; restored for the modules after this one
        root = _dataset(tmp_path_factory.mktemp("resume"), n_train=16)
        results = {"full": _run(root, "full", 2), "again": _run(root, "again", 2), "first": _run(root, "first", 1)}
        results["resumed"] = _run(root, "resumed", 2, ckpt_path=results["first"]["checkpoint"])
    return results


def test_same_seed_gives_identical_scores(runs: dict[str, dict[str, Any]]) -> None:
    torch.testing.assert_close(runs["again"]["scores"], runs["full"]["scores"], rtol=0, atol=0)
    for key, value in runs["full"]["gaussians"].items():
        torch.testing.assert_close(runs["again"]["gaussians"][key], value, rtol=0, atol=0)


def test_resume_continues_where_it_stopped(runs: dict[str, dict[str, Any]]) -> None:
    full, first, resumed = runs["full"], runs["first"], runs["resumed"]
    assert (first["epoch"], resumed["epoch"]) == (1, full["epoch"]) == (1, 2)
    assert resumed["step"] == full["step"]
    assert resumed["history"][:1] == first["history"]  # the forgetting callback's state came back with the checkpoint
    assert resumed["history"] == pytest.approx(full["history"], abs=1e-6)
    assert not torch.allclose(first["scores"], full["scores"])  # the second epoch did change the model...
    torch.testing.assert_close(resumed["scores"], full["scores"], rtol=1e-5, atol=0)  # ...and resuming redid it
    for key, value in full["gaussians"].items():
        if value.dtype == torch.float16:
            # per-position whitenings, stored scaled to [-1, 1] in float16: values that agree to float32 rounding
            # can round one float16 step (at most 2^-11) apart
            torch.testing.assert_close(resumed["gaussians"][key], value, rtol=0, atol=2**-11)
            continue
        scale = value.double().abs().max().item() if value.is_floating_point() else 0.0
        torch.testing.assert_close(resumed["gaussians"][key], value, rtol=1e-5, atol=1e-5 * scale)


def test_checkpoint_with_other_shapes_is_refused_naming_the_file(
    runs: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    checkpoint = runs["full"]["checkpoint"]
    other = {"layers": ["blocks.3"], "map_layers": ["blocks.3"]}
    message = (
        r"does not fit this GaussFT model .*gaussians\.0\.mean: \(40,\) in the checkpoint, \(80,\) here.*"
        r"saved with backbone='tf_efficientnet_lite0', layers=\['blocks\.2', 'blocks\.4'\]"
    )
    with pytest.raises(ValueError, match=rf"The checkpoint {message}"):
        GaussFT.load_from_checkpoint(checkpoint, **other)
    root = _dataset(tmp_path, n_train=4)
    with pytest.raises(ValueError, match=rf"Checkpoint {re.escape(checkpoint)} {message}"):
        _engine(root).test(GaussFT(**{**TINY, **other}), datamodule=_datamodule(root), ckpt_path=checkpoint)
    reloaded = GaussFT.load_from_checkpoint(checkpoint)  # the right settings come from the checkpoint itself
    torch.testing.assert_close(_gaussian_buffers(reloaded), runs["full"]["gaussians"], rtol=0, atol=0)


@pytest.mark.parametrize("saved_format", [None, 2])
def test_checkpoint_saved_before_0_3_0_is_refused_with_a_message_to_retrain(
    runs: dict[str, dict[str, Any]], tmp_path: Path, saved_format: int | None
) -> None:
    """Older layouts are refused, not misread: 0.2.0 removed an image score and its buffers (0.1.0 saved no format
    stamp), 0.3.0 coarsened the positional grid (format 2 loads without a shape error, and would score wrongly)."""
    checkpoint = torch.load(runs["full"]["checkpoint"], map_location="cpu", weights_only=False)
    assert checkpoint["gaussft_checkpoint_format"] == 3
    if saved_format is None:
        del checkpoint["gaussft_checkpoint_format"]  # as 0.1.0 saved it
    else:
        checkpoint["gaussft_checkpoint_format"] = saved_format
    old = tmp_path / "old.ckpt"
    torch.save(checkpoint, old)
    message = (
        rf"was saved before anomalib-gaussft 0\.3\.0 \(checkpoint format {saved_format or 1}; this version reads "
        r"format 3\)\. Retrain the model with this version"
    )
    with pytest.raises(ValueError, match=rf"Checkpoint {re.escape(str(old))} {message}"):
        GaussFT.load_from_checkpoint(old)
    root = _dataset(tmp_path, n_train=4)
    with pytest.raises(ValueError, match=rf"Checkpoint {re.escape(str(old))} {message}"):
        _engine(root).test(GaussFT(**TINY), datamodule=_datamodule(root), ckpt_path=str(old))


# ---------------------------------------------------------------------------------------------------- memory
def test_memory_benchmark_streams_every_image_through_fixed_size_estimators() -> None:
    """The measured peak memory of fitting the Gaussians does not grow with the number of training images.

    128 px images with the local mixture on the ``stem`` level (32 channels at stride 2, one local vector per 2 x 2
    positions: 1024 per image), so that keeping every local vector would cost 128 KiB per image in float32: 126 MiB more
    for 1024 than for 16 images (``store_all_features_mib``). With the local sample limited to 8192 vectors (1 MiB; both
    counts fill it) the fit may grow by at most a quarter of that (31.5 MiB): room for the allocator's and the data
    loader's jitter, which reached 20 MiB on a 2-core CI machine, but not for keeping the samples. A control run whose
    local sample may hold 262144 vectors (32 MiB: 1024 images fill it, 16 do not) must exceed the same tolerance, so the
    test also fails if the measurement stops seeing growth (as it did in-process after other tests, before the tool
    returned free heap memory ahead of the fit). Each fit runs in a fresh process: measured in the test worker, heap
    left by earlier tests once pushed the growth to 33.5 MiB (7.6, 0.6 and 0.6 MiB when measured on its own).
    """

    def growth(max_local_vectors: int) -> tuple[float, float]:
        small, large = run_in_subprocesses(
            (16, 1024),
            image_size=128,
            batch_size=8,
            layers=["blocks.2"],
            map_layers=["stem"],
            max_local_vectors=max_local_vectors,
        )
        # the default geometric score has no medians to fit: one pass, thinned local sample or not
        assert (small["n_samples"], large["n_samples"], small["passes"], large["passes"]) == (16, 1024, 1, 1)
        return large["peak_increase_mib"] - small["peak_increase_mib"], (
            large["store_all_features_mib"] - small["store_all_features_mib"]
        )

    streaming, store_all = growth(max_local_vectors=8192)
    tolerance = store_all / 4
    assert store_all > 100
    assert streaming < tolerance, f"the fit's peak memory grew by {streaming} MiB from 16 to 1024 images"
    keeping, _ = growth(max_local_vectors=2**18)
    assert keeping > tolerance, f"a local sample of 262144 vectors grew by only {keeping} MiB: the measurement is blind"
