# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""Forgetting study: the validation pseudo-AUROC against the test AUROC per epoch, and the ablation table.

One fine-tuning run per category records, after every epoch (and for the pretrained starting point, epoch 0 with
GaussFT's ``pretrained_epoch``), the overall and per-augmentation pseudo-AUROC of
:class:`~anomalib_gaussft.forgetting.ForgettingDetection` and the test image and pixel AUROC. The run never stops
early, so the stop rule can be applied afterwards to any curve: the callback's decision depends on the curve only,
so applying its rule (:func:`~anomalib_gaussft.forgetting.stop_rule.select_epoch`) to the overall curve gives
exactly the epoch the callback would restore, and applying it to one augmentation's curve gives the epoch that
augmentation alone would choose. Output: CSV of the curves, ``ablation.md`` (fixed features; fine-tuning for all
epochs without the callback; with the callback; each augmentation alone) and a plot per category with the chosen
epoch marked.

Example:
    .. code-block:: bash

        python -m tools.forgetting_study --categories brick coffee --epochs 10 --lr 1e-3
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from anomalib_gaussft.data import DEFAULT_CATEGORIES
from anomalib_gaussft.forgetting.stop_rule import select_epoch
from tools._csv import write_rows

__all__ = ["TestSetTracker", "select_epoch"]


def _tracker_class() -> type:
    from lightning.pytorch import Callback
    from lightning.pytorch.trainer.states import TrainerFn

    from anomalib_gaussft.evaluation import eval_mode, rank_auroc

    class _TestSetTracker(Callback):
        """Score the test set after every validation epoch (for studies only: it reads test labels)."""

        def __init__(self) -> None:
            self.image_auroc: list[float] = []
            self.pixel_auroc: list[float] = []
            self.scores: list[list[float]] = []
            self.labels: list[bool] = []

        @torch.no_grad()
        def on_validation_epoch_end(self, trainer, pl_module) -> None:
            if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
                return
            transform = pl_module.pre_processor.transform
            scores, labels, maps, masks = [], [], [], []
            with eval_mode(pl_module.model) as model:
                for batch in trainer.datamodule.test_dataloader():
                    image, mask = transform(batch.image.to(pl_module.device), batch.gt_mask)
                    output = model(image)
                    scores.append(output.pred_score.cpu())
                    labels.append(batch.gt_label.cpu())
                    maps.append(output.anomaly_map.cpu().flatten())
                    masks.append(mask.cpu().flatten() > 0)
            score, label = torch.cat(scores), torch.cat(labels).bool()
            pixel, mask = torch.cat(maps), torch.cat(masks)
            self.scores.append(score.tolist())
            self.labels = label.tolist()
            self.image_auroc.append(rank_auroc(score[~label], score[label]))
            self.pixel_auroc.append(rank_auroc(pixel[~mask], pixel[mask]))

    return _TestSetTracker


def TestSetTracker() -> object:  # noqa: N802 - a factory so that importing this module stays light
    """A Lightning callback recording the test image and pixel AUROC (and image scores) after every validation."""
    return _tracker_class()()


def _recording_detector(**kwargs: object) -> object:
    """A :class:`~anomalib_gaussft.forgetting.ForgettingDetection` that keeps every epoch's held-out image scores.

    ``detector.holdout_history[epoch]`` is ``{"normal": [...], "<augmentation>": [...]}``, the scores the
    pseudo-AUROC of that epoch was computed from, for studying other selection rules afterwards.
    """
    from anomalib_gaussft import ForgettingDetection

    class _Recording(ForgettingDetection):
        def __init__(self, **kwargs: object) -> None:
            super().__init__(**kwargs)
            self.holdout_history: list[dict[str, list[float]]] = []

        def holdout_scores(self, pl_module):
            normal, pseudo = super().holdout_scores(pl_module)
            self.holdout_history.append({"normal": normal.tolist(), **{k: v.tolist() for k, v in pseudo.items()}})
            return normal, pseudo

    return _Recording(**kwargs)


def study_category(root: Path, category: str, epochs: int, lr: float, image_size: int, seed: int, output: Path) -> dict:
    """Fine-tune GaussFT on one category for ``epochs`` epochs without stopping; return the recorded curves."""
    from anomalib.data import MVTecAD
    from anomalib.engine import Engine
    from lightning.pytorch import seed_everything

    from anomalib_gaussft import GaussFT

    seed_everything(seed)
    # Curves only: no restore, and no final re-fit with the held-out images (nothing is scored after it).
    detector = _recording_detector(patience=10**6, restore_best=False, return_held_out=False, seed=seed)
    tracker = TestSetTracker()
    model = GaussFT(
        backbone="tf_efficientnet_lite0",
        image_size=(image_size, image_size),
        lr=lr,
        fallback_backbone=None,
        forgetting_detection=detector,
    )
    datamodule = MVTecAD(
        root=root, category=category, train_batch_size=16, eval_batch_size=16, num_workers=0,
        val_split_mode="synthetic", val_split_ratio=0.2, seed=seed,
    )  # fmt: skip
    engine = Engine(
        max_epochs=epochs, default_root_dir=output / "runs", accelerator="cpu", logger=False, callbacks=[tracker]
    )
    engine.fit(model, datamodule=datamodule)
    rows = []
    n_epochs = len(tracker.image_auroc)
    per_augmentation = {name: [] for name in detector.augmentation_names}
    for epoch in range(n_epochs):
        rows.append(
            {
                "category": category,
                "epoch": epoch,
                "val_pseudo_AUROC": detector.history[epoch],
                "test_image_AUROC": tracker.image_auroc[epoch],
                "test_pixel_AUROC": tracker.pixel_auroc[epoch],
            }
        )
    for name in per_augmentation:
        per_augmentation[name] = detector.per_augmentation_history[name][:n_epochs]
        for epoch, value in enumerate(per_augmentation[name]):
            rows[epoch][f"val_pseudo_AUROC_{name}"] = value
    scores = {"test": tracker.scores, "test_labels": tracker.labels, "holdout": detector.holdout_history[:n_epochs]}
    return {"rows": rows, "per_augmentation": per_augmentation, "scores": scores}


def _ablation(results: dict[str, dict], patience: int) -> list[dict]:
    """Rows of the ablation table: test image/pixel AUROC of each selection rule, per category and mean."""
    rules: dict[str, object] = {"fixed features (epoch 0)": lambda rows, _: 0}
    rules["fine-tuned, all epochs, no callback"] = lambda rows, _: len(rows) - 1
    rules["fine-tuned + ForgettingDetection (all augmentations)"] = lambda rows, _: select_epoch(
        [r["val_pseudo_AUROC"] for r in rows], patience
    )[0]
    names = next(iter(results.values()))["per_augmentation"].keys()
    for name in names:
        rules[f"  ... {name} only"] = lambda rows, aug, name=name: select_epoch(aug[name], patience)[0]
    table = []
    for rule, choose in rules.items():
        row = {"rule": rule}
        for category, result in results.items():
            epoch = choose(result["rows"], result["per_augmentation"])
            chosen = result["rows"][epoch]
            row[category] = (chosen["test_image_AUROC"], chosen["test_pixel_AUROC"], epoch)
        row["mean_image"] = sum(v[0] for k, v in row.items() if k in results) / len(results)
        row["mean_pixel"] = sum(v[1] for k, v in row.items() if k in results) / len(results)
        table.append(row)
    return table


def _write_outputs(results: dict[str, dict], output: Path, patience: int, command: str) -> None:
    import matplotlib as mpl

    mpl.use("Agg")
    import matplotlib.pyplot as plt

    output.mkdir(parents=True, exist_ok=True)
    rows = [row for result in results.values() for row in result["rows"]]
    write_rows(output / "forgetting_curves.csv", rows)
    table = _ablation(results, patience)
    categories = list(results)
    lines = [
        f"Command: `{command}`",
        "",
        "Test image AUROC / pixel AUROC (chosen epoch; 0 = pretrained features) per category.",
        "",
        "| selection | " + " | ".join(categories) + " | mean image | mean pixel |",
        "|---|" + "---:|" * (len(categories) + 2),
    ]
    for row in table:
        cells = [f"{row[c][0]:.3f} / {row[c][1]:.3f} ({row[c][2]})" for c in categories]
        lines.append(
            f"| {row['rule']} | " + " | ".join(cells) + f" | {row['mean_image']:.3f} | {row['mean_pixel']:.3f} |"
        )
    (output / "ablation.md").write_text("\n".join(lines) + "\n")
    figure, axes = plt.subplots(1, len(categories), figsize=(4.5 * len(categories), 3.6), squeeze=False)
    for axis, (category, result) in zip(axes[0], results.items(), strict=True):
        epochs = [r["epoch"] for r in result["rows"]]
        axis.plot(epochs, [r["val_pseudo_AUROC"] for r in result["rows"]], "o-", label="validation pseudo-AUROC")
        axis.plot(epochs, [r["test_image_AUROC"] for r in result["rows"]], "s-", label="test image AUROC")
        chosen, stopped = select_epoch([r["val_pseudo_AUROC"] for r in result["rows"]], patience)
        axis.axvline(chosen, color="green", linestyle="--", label=f"restored epoch ({chosen})")
        if stopped is not None:
            axis.axvline(stopped, color="red", linestyle=":", label=f"forgetting detected ({stopped})")
        axis.set_title(category)
        axis.set_xlabel("epoch (0 = pretrained)")
        axis.set_ylim(min(0.5, axis.get_ylim()[0]), 1.01)
        axis.grid(alpha=0.3)
    axes[0][0].set_ylabel("AUROC")
    axes[0][-1].legend(loc="lower left", fontsize=8)
    figure.tight_layout()
    figure.savefig(output / "forgetting_curves.png", dpi=110)
    (output / "results.json").write_text(json.dumps(results, indent=1))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tools.forgetting_study``."""
    parser = argparse.ArgumentParser(prog="python -m tools.forgetting_study", description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("datasets/demo"))
    parser.add_argument("--categories", nargs="+", default=list(DEFAULT_CATEGORIES))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, default=1e-3, help="High enough to show forgetting within the epochs.")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--patience", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0, help="Seed of the validation split, held-out normals, training")
    parser.add_argument(
        "--no-generate",
        action="store_true",
        help="Use the dataset under --root as it is (a larger demo set, MVTec AD) instead of writing the demo data",
    )
    parser.add_argument("--output", type=Path, default=Path("results/forgetting_study"))
    args = parser.parse_args(argv)
    command = "python -m tools.forgetting_study " + " ".join(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from anomalib_gaussft.data.demo_dataset import generate_demo_dataset

    root = args.root if args.no_generate else generate_demo_dataset(args.root, args.categories, seed=args.seed)
    results = {}
    for category in args.categories:
        results[category] = study_category(
            root, category, args.epochs, args.lr, args.image_size, args.seed, args.output
        )
        _write_outputs(results, args.output, args.patience, command)
    print((args.output / "ablation.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
