# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""Two-process DDP training (gloo, CPU) of GaussFT on the small demo data.

Lightning's ``strategy="ddp"`` starts the other ranks by re-running the launching script, so the DDP run is this
file executed as a script in a subprocess (``python tests/test_ddp.py DATA_ROOT OUTPUT``): every rank trains with
``Engine(strategy="ddp", devices=2, accelerator="cpu")`` and saves what it ended with (weights and buffers, thresholds,
forgetting decisions, metrics) to ``OUTPUT/rank<r>.pt``. The tests then check that

* training reports test metrics, the same on both ranks;
* the Gaussians fitted under DDP (statistics summed over ranks) equal a single-process fit of the same network on
  the same images (the training images and the 8 that forgetting detection held out and gave back at the end),
  and so do the post-processor's thresholds;
* both ranks hold identical weights, Gaussians and post-processor thresholds and took the same forgetting decisions.

The demo category here has 23 training images; forgetting detection holds out 8, so 15 remain: not divisible by the
world size, so Lightning's ``DistributedSampler`` repeats one image to give both ranks 8. The fit must count it once
(``anomalib_gaussft.model.fitting.unpadded_length``; ``test_sampler_repeats_are_left_out_of_the_fit`` checks that
for many sizes in-process).
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from _ddp_workers import module_tensors
from anomalib.data import MVTecAD
from anomalib.engine import Engine
from lightning.pytorch import seed_everything
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from anomalib_gaussft import GaussFT
from anomalib_gaussft.forgetting import ForgettingDetection
from anomalib_gaussft.model import GaussFTModel
from anomalib_gaussft.model.fitting import accumulate_training_set, unpadded_length

WORLD_SIZE = 2
BATCH_SIZE = 8
N_TRAIN = 23  # 15 after forgetting detection's hold-out of 8: odd, so the sampler pads
MODEL_KWARGS: dict[str, Any] = {
    "backbone": "tf_efficientnet_lite0",
    "pretrained": False,
    "image_size": (64, 64),  # the demo images' size: the resize is an identity in both runs
    "layers": ["blocks.2", "blocks.4"],
    "map_layers": ["blocks.2"],
    "lr": 1e-3,
    "visualizer": False,
}


def _datamodule(root: str | Path) -> MVTecAD:
    return MVTecAD(root=root, category="brick", train_batch_size=BATCH_SIZE, eval_batch_size=BATCH_SIZE, num_workers=0)


class _FitCounts(logging.Handler):
    """Collects the number of images of every Gaussian fit from GaussFT's log."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.counts: list[int] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg.startswith("Fitted GaussFT Gaussians"):
            self.counts.append(int(record.args[0]))


def train_ddp(root: str, output: str) -> None:
    """Train on every rank (run by each process) and save the rank's final state to ``output/rank<r>.pt``."""
    seed_everything(0)
    counts = _FitCounts()
    gaussft_logger = logging.getLogger("anomalib_gaussft.model.lightning_model")
    gaussft_logger.addHandler(counts)
    gaussft_logger.setLevel(logging.DEBUG)
    forgetting = ForgettingDetection(augmentations=["cutpaste", "mixup"], patience=3)
    model = GaussFT(**MODEL_KWARGS, forgetting_detection=forgetting)
    datamodule = _datamodule(root)
    engine = Engine(
        max_epochs=2,  # the pretrained (scoring-only) epoch and one fine-tuning epoch
        accelerator="cpu",
        devices=WORLD_SIZE,
        strategy="ddp",
        default_root_dir=Path(output) / "results",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    metrics = engine.train(model, datamodule=datamodule)
    trainer = engine.trainer
    torch.save(
        {
            "rank": trainer.global_rank,
            "world_size": trainer.world_size,
            "threads": torch.get_num_threads(),
            "metrics": metrics,
            "epoch": trainer.current_epoch,
            "fit_counts": counts.counts,
            "datamodule_images": len(datamodule.train_data),  # the user's training set, put back whole
            "train_images": sorted(
                str(path)
                for path in datamodule.train_data.samples.image_path
                if str(path) not in forgetting.removed_from_training
            ),
            "held_out": forgetting._normal[-len(forgetting.removed_from_training) :],  # given back at the end
            "forgetting": {
                "history": forgetting.history,
                "best_epoch": forgetting.best_epoch,
                "stopped_epoch": forgetting.stopped_epoch,
                "best_score": forgetting.best_score,
            },
            "thresholds": (model.post_processor.image_threshold.item(), model.post_processor.pixel_threshold.item()),
            "state_dict": module_tensors(model),
        },
        Path(output) / f"rank{trainer.global_rank}.pt",
    )


@pytest.fixture(scope="module")
def odd_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo category with :data:`N_TRAIN` training images (64 px)."""
    from anomalib_gaussft.data.demo_dataset import generate_demo_dataset

    root = tmp_path_factory.mktemp("odd_demo")
    return generate_demo_dataset(root, ["brick"], image_size=64, n_train=N_TRAIN, n_test_good=6, n_test_defect=3)


@pytest.fixture(scope="module")
def ranks(odd_root: Path, tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """Run the DDP training in a subprocess and load what each rank saved."""
    output = tmp_path_factory.mktemp("ddp")
    completed = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), str(odd_root), str(output)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    return [torch.load(output / f"rank{rank}.pt", weights_only=False) for rank in range(WORLD_SIZE)]


def test_ddp_training_reports_metrics_on_every_rank(ranks: list[dict[str, Any]]) -> None:
    assert [result["rank"] for result in ranks] == list(range(WORLD_SIZE))
    assert all(result["world_size"] == WORLD_SIZE and result["epoch"] == 2 for result in ranks)
    assert {"image_AUROC", "image_F1Score", "pixel_AUROC", "pixel_F1Score"} <= ranks[0]["metrics"][0].keys()
    assert ranks[1]["metrics"] == ranks[0]["metrics"]  # torchmetrics synchronise the test metrics over the ranks


def test_ddp_gaussians_and_thresholds_equal_a_single_process_run(ranks: list[dict[str, Any]], odd_root: Path) -> None:
    train_images = ranks[0]["train_images"]
    assert len(train_images) == 15  # odd: the DistributedSampler gave each rank 8, one image twice
    assert [result["datamodule_images"] for result in ranks] == [N_TRAIN] * WORLD_SIZE
    held_out = ranks[0]["held_out"]
    assert held_out.shape[0] == 8
    for result in ranks:  # each image counted once; the final fit also on the 8 held-out images (rank 0's copy)
        assert result["fit_counts"][:-1] == [len(train_images)] * (len(result["fit_counts"]) - 1)
        assert result["fit_counts"][-1] == len(train_images) + 8
    model = GaussFT(**MODEL_KWARGS, forgetting_detection=False)
    saved = ranks[0]["state_dict"]
    stored = model.state_dict().keys()
    model.load_state_dict({key: value for key, value in saved.items() if key in stored})  # the backbone as DDP left it
    datamodule = _datamodule(odd_root)
    datamodule.setup()
    keep = set(train_images)
    datamodule.train_data.subsample(
        [i for i, path in enumerate(datamodule.train_data.samples.image_path) if str(path) in keep], inplace=True
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(ranks[0]["threads"])  # the ranks' thread count: same float32 convolution results
    try:
        model.fit_gaussians(datamodule.train_dataloader(), extra_images=held_out)
        engine = Engine(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
        engine.validate(model, datamodule=datamodule)  # thresholds from the 9 validation images, each once
    finally:
        torch.set_num_threads(threads)
    single = module_tensors(model)
    # everything fit_gaussians sets: global levels, mixture, per-position Gaussians
    fitted = ("model.gaussians.", "model.local_mixture.", "model.positional_gaussians.")
    assert sum(key.startswith(fitted) for key in single) == 4 * len(model.model.gaussians) + 3 + 4
    for key, reference in single.items():
        if not key.startswith(fitted):
            continue
        for result in ranks:
            actual = result["state_dict"][key]
            if reference.is_floating_point():
                scale = reference.double().abs().max().item()
                torch.testing.assert_close(actual, reference, rtol=1e-6, atol=1e-6 * scale, msg=key)
            else:
                assert torch.equal(actual, reference), key
    # Lightning's sampler also repeats one of the 9 validation images under DDP; here that does not move anomalib's
    # F1-optimal thresholds, but an image repeated above them would (post-processor and sampler are not GaussFT's).
    thresholds = (model.post_processor.image_threshold.item(), model.post_processor.pixel_threshold.item())
    for result in ranks:
        assert result["thresholds"] == pytest.approx(thresholds, rel=1e-5)


def test_ddp_ranks_agree_on_weights_thresholds_and_forgetting(ranks: list[dict[str, Any]]) -> None:
    first, second = ranks
    assert first["state_dict"].keys() == second["state_dict"].keys()
    for key, value in first["state_dict"].items():
        assert torch.equal(value, second["state_dict"][key]), key
    assert first["thresholds"] == second["thresholds"]
    assert all(torch.isfinite(torch.tensor(result["thresholds"])).all() for result in ranks)
    assert first["forgetting"] == second["forgetting"]
    assert len(first["forgetting"]["history"]) == 2  # one decision per epoch, taken identically on both ranks


@pytest.mark.parametrize("shuffle", [False, True])
def test_sampler_repeats_are_left_out_of_the_fit(shuffle: bool) -> None:
    """Every image is counted exactly once over the ranks' ``DistributedSampler`` shards, whatever their padding."""
    for size, world_size, batch_size in ((15, 2, 4), (14, 2, 4), (5, 4, 1), (3, 4, 2), (10, 3, 3)):
        seen: list[int] = []
        for rank in range(world_size):
            sampler = DistributedSampler(range(size), num_replicas=world_size, rank=rank, shuffle=shuffle, seed=1)
            loader = DataLoader(range(size), sampler=sampler, batch_size=batch_size)
            kept = unpadded_length(loader)
            assert kept == len(range(rank, size, world_size))
            seen += [int(index) for batch in loader for index in batch][:kept]
        assert sorted(seen) == list(range(size)), (size, world_size)


class _Images(Dataset):
    """Image tensors as a map-style dataset (a plain ``(3, H, W)`` tensor per index)."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.images[index]


def test_fit_of_padded_shards_counts_every_image_once() -> None:
    """The per-rank passes of ``fit_gaussians`` over padded shards count 3 + 2 images, not 3 + 3 (one repeated)."""
    model = GaussFTModel("resnet18", layers=["layer1"], map_layers=["layer1"], pretrained=False)
    images = _Images(torch.rand(5, 3, 32, 32))
    shards = [DistributedSampler(images, num_replicas=WORLD_SIZE, rank=rank, shuffle=False) for rank in (0, 1)]
    estimators = [accumulate_training_set(model, DataLoader(images, sampler=s, batch_size=2)) for s in shards]
    assert [e.n_images for e in estimators] == [3, 2]
    torch.testing.assert_close(  # the global level's sums over the two ranks equal those of the five images
        sum(e.levels[0].sum + e.levels[0].count * e.levels[0].shift for e in estimators),
        accumulate_training_set(model, [images.images]).levels[0].mean().mul(5),
    )


if __name__ == "__main__":
    train_ddp(sys.argv[1], sys.argv[2])
