# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

r"""How fit time, peak memory and model size grow with the number of training images, model by model.

For every training-set size ``N`` the study links a random subset of ``N`` of the category's normal training images
(seeded; the test images and masks as they are) into an MVTec-layout folder under ``--output`` (hard links where the
file system allows, else copies: anomalib refuses files whose real path lies outside the root, so not symbolic
links) and runs ``anomalib-gaussft benchmark``'s runner on it, every model in a fresh process. The
runner's data split holds 20 % of the ``N`` images out for the validation set (``val_split_mode="synthetic"``), so
the models fit on ``0.8 N`` images. Writes ``scaling.csv`` (one row per size and model), ``scaling.md`` and
``scaling.png`` (fit time and peak memory against ``N``).

Example:
    .. code-block:: bash

        python -m tools.scaling_study --root ../shared/datasets --category magnetic_tile --sizes 100 300 600 \\
            --models GaussFT-fixed GaussFT Patchcore --threads 1 --output results/scaling

    On a tiny generated category (random weights):

    >>> import tempfile
    >>> from anomalib_gaussft.data.demo_dataset import generate_demo_dataset
    >>> folder = Path(tempfile.mkdtemp())
    >>> root = generate_demo_dataset(folder / "data", ["brick"], image_size=32, n_train=12, n_test_good=4,
    ...                              n_test_defect=2)
    >>> subset = link_subset(root, "brick", 5, folder / "subsets", seed=0)
    >>> len(list((subset / "brick" / "train" / "good").iterdir()))
    5
    >>> sorted(path.name for path in (subset / "brick" / "test").iterdir()) == sorted(
    ...     path.name for path in (root / "brick" / "test").iterdir()
    ... )  # every test folder, as it is
    True
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import random
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from anomalib_gaussft.benchmark.models import MODEL_CHOICES, prepared_weights
from anomalib_gaussft.benchmark.runner import run_benchmark
from tools._csv import write_rows

__all__ = ["link_subset", "main", "plot", "run_sizes"]

_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


def link_subset(root: Path, category: str, size: int, output: Path, seed: int = 0) -> Path:
    """An MVTec-layout root under ``output`` whose ``category`` has ``size`` of the training images, linked.

    Args:
        root: Dataset root holding ``category/train/good``, ``category/test`` and ``category/ground_truth``.
        category: The category.
        size: How many normal training images to link (a seeded random subset).
        output: Folder the subset root is made in (``output/<size>``).
        seed: Seed of the subset.

    Returns:
        The subset's root (pass it as ``root`` with the same ``category``).

    Raises:
        ValueError: If the category has fewer than ``size`` training images.
    """
    source = (root / category).resolve()
    images = sorted(path for path in (source / "train" / "good").iterdir() if path.suffix.lower() in _IMAGE_SUFFIXES)
    if size > len(images):
        msg = f"{source / 'train' / 'good'} holds {len(images)} images, fewer than --sizes {size}."
        raise ValueError(msg)
    chosen = random.Random(seed).sample(images, size)
    target = output / str(size) / category
    good = target / "train" / "good"
    good.mkdir(parents=True, exist_ok=True)
    for stale in good.iterdir():
        stale.unlink()
    for image in chosen:
        _link(image, good / image.name)
    for folder in ("test", "ground_truth"):
        for file in (source / folder).rglob("*"):
            destination = target / folder / file.relative_to(source / folder)
            if file.is_file() and not destination.exists():
                destination.parent.mkdir(parents=True, exist_ok=True)
                _link(file, destination)
    return output / str(size)


def _link(source: Path, destination: Path) -> None:
    """A hard link to ``source`` at ``destination``, or a copy where the file systems differ."""
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)


def run_sizes(args: argparse.Namespace) -> list[dict]:
    """Run the benchmark's runner on every size; one row per size and model."""
    rows = []
    for size in args.sizes:
        subset = link_subset(args.root, args.category, size, args.output / "subsets", seed=args.seed)
        results = run_benchmark(
            subset, [args.category], args.output / "runs" / str(size), models=args.models, backbone=args.backbone,
            image_size=(args.image_size[0], args.image_size[-1]), epochs=args.epochs,
            pretrained=not args.random_weights, seed=args.seed, batch_size=args.batch_size,
            min_seconds=args.min_seconds, limit_heap=args.limit_heap,
        )  # fmt: skip
        for result in results:
            rows.append({
                "training_images": size,
                "model": result.model,
                "fit_seconds": round(result.fit_seconds, 2),
                "peak_rss_mb": round(result.peak_rss_mb, 1),
                "model_mb": round(result.model_mb, 2),
                "image_auroc_raw": round(result.image_auroc_raw, 4),
                "pixel_auroc_raw": round(result.pixel_auroc_raw, 4),
                "throughput": round(result.throughput, 2),
                "epochs": result.epochs,
            })  # fmt: skip
    return rows


def _markdown(rows: Sequence[dict], command: str) -> str:
    lines = [
        f"Command: `{command}`",
        "",
        "| training images | model | fit (s) | peak RSS (MB) | model (MB) | image AUROC (raw) | pixel AUROC (raw) |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {row['training_images']} | {row['model']} | {row['fit_seconds']:.1f} | {row['peak_rss_mb']:.0f} | "
        f"{row['model_mb']:.1f} | {row['image_auroc_raw']:.3f} | {row['pixel_auroc_raw']:.3f} |"
        for row in rows
    ]
    return "\n".join(lines) + "\n"


def plot(rows: Sequence[dict], path: Path, title: str) -> None:
    """Fit time and peak memory against the number of training images, one line per model."""
    import matplotlib as mpl

    mpl.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for model in dict.fromkeys(row["model"] for row in rows):
        own = sorted((row for row in rows if row["model"] == model), key=lambda row: row["training_images"])
        sizes = [row["training_images"] for row in own]
        axes[0].plot(sizes, [row["fit_seconds"] for row in own], marker="o", label=model)
        axes[1].plot(sizes, [row["peak_rss_mb"] for row in own], marker="o", label=model)
    axes[0].set(xlabel="training images (before the 20 % validation split)", ylabel="fit time (s)", yscale="log")
    axes[1].set(xlabel="training images (before the 20 % validation split)", ylabel="peak RSS (MB)")
    axes[0].legend()
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the arguments, run every size, write ``scaling.csv``, ``scaling.md`` and ``scaling.png``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, help="MVTec-layout dataset root")
    parser.add_argument("--category", default=None)
    parser.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        default=None,
        metavar="CSV",
        help="run nothing: merge the scaling.csv files of earlier runs (e.g. one per model) into one table and plot",
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 300, 600], help="training-set sizes")
    parser.add_argument("--models", nargs="+", default=["GaussFT-fixed", "Patchcore"], choices=MODEL_CHOICES)
    parser.add_argument("--backbone", default="tf_efficientnet_lite0")
    parser.add_argument("--image-size", type=int, nargs="+", default=[224], metavar=("H", "W"))
    parser.add_argument("--epochs", type=int, default=None, help="GaussFT's maximum epochs (default: its own bound)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the subsets, the data split and training")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--min-seconds", type=float, default=3.0, help="minimum timed wall time per throughput")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (use 1 on a shared machine)")
    parser.add_argument("--random-weights", action="store_true", help="random backbones (smoke tests only)")
    parser.add_argument(
        "--limit-heap",
        action="store_true",
        help="serve allocations of 1 MiB and more with mmap in every model's process (the benchmark's --limit-heap): "
        "PatchCore's greedy coreset on a few dozen images otherwise grew to 20 GB here",
    )
    parser.add_argument("--output", type=Path, default=Path("results") / "scaling")
    args = parser.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    args.output = args.output.resolve()
    args.output.mkdir(parents=True, exist_ok=True)
    command = " ".join(["python -m tools.scaling_study", *(sys.argv[1:] if argv is None else argv)])
    if args.merge:
        rows = [_typed(row) for path in args.merge for row in csv.DictReader(path.open())]
        rows.sort(key=lambda row: (row["model"], row["training_images"]))
        return _write(rows, args.output, command, args.category or "merged runs", args.backbone)
    if args.root is None or args.category is None:
        parser.error("--root and --category are required unless --merge is given")
    weights = contextlib.nullcontext()
    if not args.random_weights:
        weights = prepared_weights(args.backbone, args.output / "hub_cache")
    with weights:
        rows = run_sizes(args)
    return _write(rows, args.output, command, args.category, args.backbone)


def _typed(row: dict) -> dict:
    """A row read back from ``scaling.csv``, with its numbers as numbers."""
    return {key: value if key == "model" else (int(value) if key in {"training_images", "epochs"} else float(value))
            for key, value in row.items()}  # fmt: skip


def _write(rows: list[dict], output: Path, command: str, category: str, backbone: str) -> int:
    """Write ``scaling.csv``, ``scaling.md`` and ``scaling.png`` to ``output``; print the table."""
    write_rows(output / "scaling.csv", rows)
    (output / "scaling.md").write_text(_markdown(rows, command))
    plot(rows, output / "scaling.png", f"{category}: cost against training-set size ({backbone})")
    print(_markdown(rows, command))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
