# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

r"""What storing the per-position whitenings in float16 costs: the test scores before and after a state-dict round trip.

GaussFT's state dict (checkpoints, ``torch.save(model.state_dict())``) holds the whitening matrices' lower triangles,
the per-position ones in float16 (:mod:`anomalib_gaussft.model.triangular_storage`), and a fitted model holds those
rounded values from the fit on. To measure what the rounding costs, the study fits with it switched off, so that the
model scores with the float32 matrices it fitted, then loads its state dict (the rounded ones) and scores again. For
every category and seed the study fits GaussFT at the defaults with fixed features (``GaussFT-fixed`` of the benchmark:
the same data split and evaluator), tests it, loads its own state dict back and tests it again, and reports raw image
and pixel AUROC both times, the largest relative change of an image score, and the state dict's size. Writes
``storage.csv`` and ``storage.md`` to ``--output``.

Example:
    .. code-block:: bash

        python -m tools.storage_study --root ../shared/datasets --categories magnetic_tile --seeds 0 1 2 \\
            --threads 1 --output results/storage

    On a tiny generated category (random weights):

    >>> import tempfile
    >>> from anomalib_gaussft.data.demo_dataset import generate_demo_dataset
    >>> folder = Path(tempfile.mkdtemp())
    >>> root = generate_demo_dataset(folder / "data", ["brick"], image_size=32, n_train=10, n_test_good=4,
    ...                              n_test_defect=4)
    >>> row = run_category(root, "brick", seed=0, output=folder / "runs", backbone="resnet18", image_size=64,
    ...                    pretrained=False)
    >>> 0 < row["largest_relative_change"] < 1e-2, row["image_auroc_loaded"] >= 0
    (True, True)
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from unittest import mock

from anomalib_gaussft.benchmark.measure import state_dict_megabytes
from anomalib_gaussft.benchmark.models import build_model, prepared_weights
from anomalib_gaussft.benchmark.runner import score_collector
from anomalib_gaussft.model import positional_gaussians
from tools._csv import write_rows

__all__ = ["main", "run_category", "summarize"]


def _test(model: Any, datamodule: Any, output: Path) -> dict[str, Any]:
    """Raw image scores and rank AUROCs of one test pass."""
    import torch
    from anomalib.engine import Engine

    from anomalib_gaussft.evaluation import rank_auroc

    collector = score_collector()
    engine = Engine(
        accelerator="cpu", devices=1, default_root_dir=output, logger=False, callbacks=[collector],
        enable_progress_bar=False,
    )  # fmt: skip
    engine.test(model, datamodule=datamodule, verbose=False)
    scores, labels = torch.tensor(collector.scores), torch.tensor(collector.labels)
    pixels, masks = torch.cat(collector.maps), torch.cat(collector.masks)
    return {
        "scores": scores,
        "image_auroc": rank_auroc(scores[labels == 0], scores[labels == 1]),
        "pixel_auroc": rank_auroc(pixels[~masks], pixels[masks]),
    }


def run_category(
    root: Path,
    category: str,
    *,
    seed: int,
    output: Path,
    backbone: str = "tf_efficientnet_lite0",
    image_size: int = 224,
    pretrained: bool = True,
) -> dict[str, Any]:
    """Fit, test, reload the state dict and test again on one category; one row of the study."""
    from anomalib.data import MVTecAD
    from anomalib.engine import Engine
    from lightning.pytorch import seed_everything

    seed_everything(seed, workers=True)
    datamodule = MVTecAD(
        root=root, category=category, train_batch_size=16, eval_batch_size=16, num_workers=0,
        val_split_mode="synthetic", val_split_ratio=0.2, seed=seed,
    )  # fmt: skip
    model = build_model("GaussFT-fixed", backbone, image_size, pretrained)
    engine = Engine(
        accelerator="cpu", devices=1, default_root_dir=output / category / f"seed_{seed}", logger=False,
        enable_model_summary=False, enable_progress_bar=False,
    )  # fmt: skip
    with mock.patch.object(positional_gaussians, "round_to_storage", lambda matrices, dtype: matrices):
        engine.fit(model, datamodule=datamodule)  # float32 whitenings in memory
    fitted = _test(model, datamodule, output / category / f"seed_{seed}")
    model.load_state_dict(model.state_dict())  # the float32 whitenings replaced by the stored ones
    loaded = _test(model, datamodule, output / category / f"seed_{seed}")
    change = ((loaded["scores"] - fitted["scores"]).abs() / fitted["scores"].abs().clamp_min(1e-12)).max()
    return {
        "category": category,
        "seed": seed,
        "image_auroc_fitted": round(fitted["image_auroc"], 5),
        "image_auroc_loaded": round(loaded["image_auroc"], 5),
        "pixel_auroc_fitted": round(fitted["pixel_auroc"], 5),
        "pixel_auroc_loaded": round(loaded["pixel_auroc"], 5),
        "largest_relative_change": float(change),
        "state_dict_mb": round(state_dict_megabytes(model), 1),
    }


def summarize(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown table: per category, the mean over seeds fitted and loaded, and the largest change.

    Example:
        >>> row = {"category": "brick", "seed": 0, "image_auroc_fitted": 0.9, "image_auroc_loaded": 0.9,
        ...        "pixel_auroc_fitted": 0.8, "pixel_auroc_loaded": 0.8, "largest_relative_change": 1e-4,
        ...        "state_dict_mb": 39.1}
        >>> print(summarize([row]).splitlines()[2])
        | brick | 1 | 0.9000 | 0.9000 | 0.8000 | 0.8000 | 1.0e-04 | 39.1 MB |
    """
    lines = [
        "| category | seeds | image AUROC, fitted | image AUROC, loaded | pixel AUROC, fitted | pixel AUROC, loaded "
        "| largest relative change of an image score | state dict |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    categories = list(dict.fromkeys(row["category"] for row in rows))
    for category in [*categories, "mean"] if len(categories) > 1 else categories:
        chosen = rows if category == "mean" else [row for row in rows if row["category"] == category]
        means = [
            statistics.fmean(row[key] for row in chosen)
            for key in ("image_auroc_fitted", "image_auroc_loaded", "pixel_auroc_fitted", "pixel_auroc_loaded")
        ]
        largest = max(row["largest_relative_change"] for row in chosen)
        size = max(row["state_dict_mb"] for row in chosen)
        lines.append(
            f"| {category} | {len({row['seed'] for row in chosen})} | "
            + " | ".join(f"{value:.4f}" for value in means)
            + f" | {largest:.1e} | {size} MB |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m tools.storage_study", description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, required=True, help="MVTec-layout dataset root")
    parser.add_argument("--categories", nargs="+", required=True)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--backbone", default="tf_efficientnet_lite0")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--output", type=Path, default=Path("results/storage"))
    args = parser.parse_args(argv)
    import torch

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    args.output.mkdir(parents=True, exist_ok=True)
    rows = []
    with prepared_weights(args.backbone, args.output / "hub_cache"):
        for seed in args.seeds:
            for category in args.categories:
                row = run_category(
                    args.root.resolve(), category, seed=seed, output=args.output / "runs",
                    backbone=args.backbone, image_size=args.image_size,
                )  # fmt: skip
                rows.append(row)
                print(rows[-1], flush=True)
                write_rows(args.output / "storage.csv", rows)
    table = summarize(rows)
    (args.output / "storage.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
