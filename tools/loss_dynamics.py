# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""How GaussFT's Mahalanobis loss behaves while fine-tuning: step by step, epoch by epoch.

The Lightning module logs one ``train_loss`` per epoch. This script opens that number up, in plain PyTorch on one
MVTec-layout category, with the same model (:class:`~anomalib_gaussft.model.GaussFTModel`), loss and schedule
as :class:`~anomalib_gaussft.GaussFT` (Gaussians re-fitted on the whole training set before every epoch and held
fixed within it, BatchNorm statistics frozen). Per epoch it prints:

* ``steps``: the loss of each training batch just before its optimiser step, against the epoch's Gaussian;
* ``stale_after``: the mean loss of all training images after the epoch's steps, still against the epoch's Gaussian;
* ``refit``: the same after re-fitting the Gaussian on the new features (the next epoch's starting point);
* ``image_AUROC``: the test image AUROC with the re-fitted Gaussians (score = sum of per-level distances).

Epoch 0 is the pretrained network (no step). ``docs/studies/loss_and_fit_time.md`` shows and explains the
numbers.

Example:
    .. code-block:: bash

        python -m tools.loss_dynamics --root datasets/demo --category brick --epochs 4
        python -m tools.loss_dynamics --root datasets/demo --category brick --optimizer sgd --lr 1e-5
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from anomalib_gaussft.evaluation import rank_auroc
from anomalib_gaussft.model.lightning_model import GaussFT
from anomalib_gaussft.model.loss import MahalanobisLoss
from anomalib_gaussft.model.optimization import warmup_factor
from anomalib_gaussft.model.torch_model import GaussFTModel

__all__ = ["EpochRecord", "load_split", "run_loss_dynamics"]


@dataclass
class EpochRecord:
    """What one epoch of fine-tuning did to the loss and to the test AUROC."""

    epoch: int
    steps: list[float] = field(default_factory=list)
    stale_after: float | None = None
    refit: float = 0.0
    image_auroc: float = 0.0


def load_split(root: Path, category: str, split: str, transform: Callable) -> tuple[torch.Tensor, torch.Tensor]:
    """A split of an MVTec-layout category as listed by anomalib, read by anomalib and pre-processed by ``transform``.

    Returns:
        Images ``(N, 3, H, W)`` and labels ``(N,)`` (1 = anomalous).

    Raises:
        FileNotFoundError: If the split holds no image.
    """
    from anomalib.data.datasets import MVTecADDataset
    from anomalib.data.utils import read_image

    samples = MVTecADDataset(root=root, category=category, split=split).samples
    if samples.empty:
        msg = f"No {split} images for category {category!r} under {root} (settings `--root`, `--category`)."
        raise FileNotFoundError(msg)
    images = torch.stack([transform(read_image(path, as_tensor=True)) for path in samples.image_path])
    return images, torch.as_tensor(samples.label_index.to_numpy())


def run_loss_dynamics(
    root: Path,
    category: str,
    *,
    backbone: str = "tf_efficientnet_lite0",
    pretrained: bool = True,
    layers: Sequence[str] | None = None,
    image_size: int = 224,
    epochs: int = 4,
    batch_size: int = 16,
    optimizer: str = "adam",
    lr: float = 1e-4,
    warmup_steps: int = 12,
    seed: int = 0,
) -> list[EpochRecord]:
    """Fine-tune GaussFT's torch model on ``root/category/train/good`` and record the loss at every step.

    Args:
        root: MVTec-layout dataset root.
        category: Category folder.
        backbone: timm backbone.
        pretrained: Load ImageNet weights (:mod:`anomalib_gaussft.weights`).
        layers: Pooled levels (``None``: every level).
        image_size: Square input size.
        epochs: Fine-tuning epochs after the pretrained epoch 0.
        batch_size: Training batch size.
        optimizer: ``"adam"`` (GaussFT's) or ``"sgd"`` (momentum 0.9).
        lr: Learning rate.
        warmup_steps: Linear warm-up steps, as GaussFT's (``0``: none).
        seed: Seed of the batch order.

    Returns:
        One :class:`EpochRecord` per epoch, epoch 0 first.
    """
    if optimizer not in {"adam", "sgd"}:
        msg = f"Unknown optimizer {optimizer!r} (setting `--optimizer`); choose 'adam' or 'sgd'."
        raise ValueError(msg)
    torch.manual_seed(seed)
    model = GaussFTModel(backbone, layers=layers, pretrained=pretrained)
    transform = GaussFT.configure_pre_processor((image_size, image_size), backbone).transform  # GaussFT's own
    train, _ = load_split(root, category, "train", transform)
    test, labels = load_split(root, category, "test", transform)
    loss_fn = MahalanobisLoss()

    def refit() -> None:
        model.eval()
        estimators = model.new_estimators("cpu")
        for start in range(0, len(train), 32):
            model.accumulate(train[start : start + 32], estimators)
        model.load_fits(estimators)

    @torch.no_grad()
    def training_loss() -> float:
        model.eval()
        pooled, _ = model.embed(train)
        return float(loss_fn(pooled, model.gaussians))

    @torch.no_grad()
    def test_auroc() -> float:
        model.eval()
        scores = model(test).pred_score
        return rank_auroc(scores[labels == 0], scores[labels == 1])  # ranks: no sigmoid on unbounded scores

    refit()
    records = [EpochRecord(epoch=0, refit=training_loss(), image_auroc=test_auroc())]
    parameters = list(model.feature_extractor.parameters())
    if optimizer == "adam":
        optim = torch.optim.Adam(parameters, lr=lr)
    else:
        optim = torch.optim.SGD(parameters, lr=lr, momentum=0.9)
    generator = torch.Generator().manual_seed(seed)
    step = 0
    for epoch in range(1, epochs + 1):
        record = EpochRecord(epoch=epoch)
        model.train()
        order = torch.randperm(len(train), generator=generator)
        for start in range(0, len(train), batch_size):
            loss = loss_fn(model(train[order[start : start + batch_size]]), model.gaussians)
            optim.zero_grad()
            loss.backward()
            for group in optim.param_groups:
                group["lr"] = lr * warmup_factor(step, warmup_steps)
            optim.step()
            step += 1
            record.steps.append(float(loss.detach()))
        record.stale_after = training_loss()
        refit()
        record.refit, record.image_auroc = training_loss(), test_auroc()
        records.append(record)
    return records


def format_record(record: EpochRecord) -> str:
    """One line per epoch, as the script prints it."""
    steps = ", ".join(f"{value:.1f}" for value in record.steps) or "-"
    stale = "-" if record.stale_after is None else f"{record.stale_after:.1f}"
    return (
        f"epoch {record.epoch}: steps [{steps}] stale_after {stale} refit {record.refit:.1f} "
        f"image_AUROC {record.image_auroc:.4f}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tools.loss_dynamics``."""
    parser = argparse.ArgumentParser(prog="python -m tools.loss_dynamics", description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("datasets/demo"), help="MVTec-layout root (demo data).")
    parser.add_argument("--category", default="brick")
    parser.add_argument("--backbone", default="tf_efficientnet_lite0")
    parser.add_argument("--random-weights", action="store_true", help="randomly initialised backbone")
    parser.add_argument("--layers", nargs="+", default=None, help="pooled levels (default: every level)")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--optimizer", choices=["adam", "sgd"], default="adam")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--warmup-steps", type=int, default=12, help="linear warm-up steps (GaussFT's default)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if not (args.root / args.category).is_dir():
        from anomalib_gaussft.data.demo_dataset import DEMO_SOURCES, generate_demo_dataset

        if args.category not in DEMO_SOURCES:
            msg = f"{args.root / args.category} does not exist (settings `--root`, `--category`)."
            raise SystemExit(msg)
        generate_demo_dataset(args.root, [args.category], seed=args.seed)
    records = run_loss_dynamics(
        args.root, args.category, backbone=args.backbone, pretrained=not args.random_weights, layers=args.layers,
        image_size=args.image_size, epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer,
        lr=args.lr, warmup_steps=args.warmup_steps, seed=args.seed,
    )  # fmt: skip
    for record in records:
        print(format_record(record), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
