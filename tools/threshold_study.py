# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""Measure GaussFT's ``target_fpr`` threshold and its order-preserving normalisation through anomalib's ``Engine``.

For every category and seed: train GaussFT through ``Engine.fit`` with ``target_fpr`` and a validation split of held-out
normal images (``val_split_mode=synthetic``), test it through ``Engine.test``, and record

* the false-positive rate on the normal test images (labels as anomalib assigns them: raw score above the threshold),
* the true-positive rate on the defective ones,
* anomalib's reported ``image_AUROC`` and ``pixel_AUROC`` next to the rank AUROC of the raw image scores and maps.

The seed changes the validation split (which normals calibrate the threshold) and the training order. A
``target_fpr`` guarantee is in expectation over that draw: the mean FPR over seeds should be at most the target,
within its sampling error (``sqrt(FPR (1 - FPR) / n_normal)`` per run).

Example:
    .. code-block:: bash

        anomalib-gaussft demo-data --root datasets/demo_large --n-test-good 201 --n-test-defect 51
        python -m tools.threshold_study --root datasets/demo_large --target-fpr 0.1 --seeds 0 1 2 --fixed-features
"""

from __future__ import annotations

import argparse
import csv
import logging
import math
import statistics
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from anomalib_gaussft.benchmark.runner import score_collector
from anomalib_gaussft.data import DEFAULT_CATEGORIES
from anomalib_gaussft.evaluation import rank_auroc
from anomalib_gaussft.model import GaussFTPostProcessor

__all__ = ["MODEL_KWARGS", "ThresholdRun", "main", "run_one", "summarize"]


@dataclass
class ThresholdRun:
    """One trained model: its test false-positive rate and AUROCs (anomalib's and on raw scores)."""

    category: str
    seed: int
    target_fpr: float
    n_calibration: int
    n_normal: int
    false_positive_rate: float
    true_positive_rate: float
    image_auroc_reported: float
    image_auroc_raw: float
    pixel_auroc_reported: float
    pixel_auroc_raw: float


#: The model of the study: the bundled ImageNet EfficientNet-Lite0 at its native input size.
MODEL_KWARGS = {"backbone": "tf_efficientnet_lite0"}  # image_size: the backbone's own 224 px


def run_one(
    root: Path,
    category: str,
    seed: int,
    target_fpr: float,
    fine_tune: bool,
    epochs: int,
    work_dir: Path,
    model_kwargs: dict | None = None,
) -> ThresholdRun:
    """Train, test and measure one category with one seed (see the module docstring).

    ``model_kwargs`` replace :data:`MODEL_KWARGS` (e.g. a tiny random backbone in tests).
    """
    from anomalib.data import MVTecAD
    from anomalib.engine import Engine
    from lightning.pytorch import seed_everything

    from anomalib_gaussft import GaussFT

    seed_everything(seed, workers=True)
    datamodule = MVTecAD(
        root=root,
        category=category,
        train_batch_size=16,
        eval_batch_size=32,
        num_workers=0,
        val_split_mode="synthetic",
        val_split_ratio=0.4,
        seed=seed,
    )
    model = GaussFT(
        **(MODEL_KWARGS if model_kwargs is None else model_kwargs),
        fine_tune=fine_tune,
        post_processor=GaussFTPostProcessor(target_fpr=target_fpr),
        visualizer=False,
    )
    collector = score_collector()  # the raw scores and maps of Engine.test, before post-processing
    engine = Engine(
        max_epochs=epochs,
        default_root_dir=work_dir / f"{category}_{seed}",
        logger=False,
        enable_progress_bar=False,
        accelerator="cpu",
        callbacks=[collector],
    )
    engine.fit(model, datamodule=datamodule)
    metrics = engine.test(model, datamodule=datamodule, verbose=False)[0]

    score, label = torch.tensor(collector.scores), torch.tensor(collector.labels).bool()
    pixel, mask = torch.cat(collector.maps), torch.cat(collector.masks)
    threshold = model.post_processor.image_threshold
    validation = datamodule.val_data.samples
    return ThresholdRun(
        category=category,
        seed=seed,
        target_fpr=target_fpr,
        n_calibration=int((validation.label_index == 0).sum()),
        n_normal=int((~label).sum()),
        false_positive_rate=float((score[~label] > threshold).double().mean()),
        true_positive_rate=float((score[label] > threshold).double().mean()),
        image_auroc_reported=float(metrics["image_AUROC"]),
        image_auroc_raw=rank_auroc(score[~label], score[label]),
        pixel_auroc_reported=float(metrics["pixel_AUROC"]),
        pixel_auroc_raw=rank_auroc(pixel[~mask], pixel[mask]),
    )


def summarize(runs: Sequence[ThresholdRun]) -> str:
    """A markdown table per category and the overall mean FPR with its standard error."""
    lines = [
        "| category | seeds | calibration normals | FPR (mean) | TPR (mean) | image AUROC anomalib / raw | "
        "pixel AUROC anomalib / raw |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for category in dict.fromkeys(run.category for run in runs):
        rows = [run for run in runs if run.category == category]
        lines.append(
            f"| {category} | {len(rows)} | {statistics.mean(r.n_calibration for r in rows):.0f} | "
            f"{statistics.mean(r.false_positive_rate for r in rows):.3f} | "
            f"{statistics.mean(r.true_positive_rate for r in rows):.3f} | "
            f"{statistics.mean(r.image_auroc_reported for r in rows):.4f} / "
            f"{statistics.mean(r.image_auroc_raw for r in rows):.4f} | "
            f"{statistics.mean(r.pixel_auroc_reported for r in rows):.4f} / "
            f"{statistics.mean(r.pixel_auroc_raw for r in rows):.4f} |"
        )
    fprs = [run.false_positive_rate for run in runs]
    mean = statistics.mean(fprs)
    n_normal = sum(run.n_normal for run in runs)
    error = math.sqrt(max(mean * (1 - mean), 1e-12) / n_normal)
    gaps = [abs(r.image_auroc_reported - r.image_auroc_raw) for r in runs]
    pixel_gaps = [abs(r.pixel_auroc_reported - r.pixel_auroc_raw) for r in runs]
    lines += [
        "",
        f"Mean FPR over {len(runs)} runs: {mean:.4f} (target {runs[0].target_fpr}; binomial standard error "
        f"{error:.4f} over {n_normal} normal test images).",
        f"Largest |anomalib - raw| AUROC gap: image {max(gaps):.4f}, pixel {max(pixel_gaps):.4f}.",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tools.threshold_study``."""
    parser = argparse.ArgumentParser(prog="python -m tools.threshold_study", description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="MVTec-layout dataset root")
    parser.add_argument("--categories", nargs="+", default=list(DEFAULT_CATEGORIES))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--target-fpr", type=float, default=0.1)
    parser.add_argument("--fixed-features", action="store_true", help="fine_tune=False (one epoch, fast)")
    parser.add_argument("--epochs", type=int, default=6, help="epochs when fine-tuning")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", type=Path, default=Path("results/threshold_study"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", module="lightning")
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    args.output.mkdir(parents=True, exist_ok=True)
    runs = []
    for category in args.categories:
        for seed in args.seeds:
            run = run_one(
                args.root,
                category,
                seed,
                args.target_fpr,
                fine_tune=not args.fixed_features,
                epochs=1 if args.fixed_features else args.epochs,
                work_dir=args.output / "runs",
            )
            print(
                f"{category} seed {seed}: FPR {run.false_positive_rate:.3f} TPR {run.true_positive_rate:.3f} "
                f"image AUROC {run.image_auroc_reported:.4f} / raw {run.image_auroc_raw:.4f}",
                flush=True,
            )
            runs.append(run)
    with (args.output / "threshold_study.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(asdict(runs[0])))
        writer.writeheader()
        writer.writerows(asdict(run) for run in runs)
    print(summarize(runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
