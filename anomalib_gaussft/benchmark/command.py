# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""``anomalib-gaussft benchmark`` and ``python -m anomalib_gaussft.benchmark``: run, then write CSV, tables, plots.

Outputs in ``--output``: ``results.csv`` (one row per model and category), ``results.md`` (the tables and the
targets), ``benchmark_auroc.png`` (image and pixel AUROC per category) and ``benchmark_scores.png`` (raw image
scores of normal vs anomalous test images per model and category, with the fitted threshold; not with
``--summarise``, as ``results.csv`` keeps no per-image score). What is measured is
described in :mod:`anomalib_gaussft.benchmark.runner`.

Example:
    .. code-block:: bash

        anomalib-gaussft benchmark                                   # demo data, offline Lite0 weights, 224 px
        anomalib-gaussft benchmark --threads 1                       # one torch thread (a shared CPU)
        anomalib-gaussft benchmark --root ./datasets/MVTecAD --categories bottle cable --epochs 10
        python -m anomalib_gaussft.benchmark --categories brick --epochs 2 --output /tmp/bench
        anomalib-gaussft benchmark --seeds 0 1 2 --threads 1             # mean and spread over three seeds
        anomalib-gaussft benchmark --summarise run_a/results.csv run_b/results.csv --output merged

    The arguments, from Python:

    >>> parser = argparse.ArgumentParser()
    >>> add_arguments(parser)
    >>> args = parser.parse_args(["--categories", "brick", "--epochs", "2"])
    >>> args.categories, args.epochs, args.models, args.image_size
    (['brick'], 2, ['GaussFT', 'Padim', 'Patchcore'], [224])
    >>> parser.parse_args(["--image-size", "160", "400"]).image_size  # height and width, for long parts
    [160, 400]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from anomalib_gaussft.benchmark.models import MODEL_CHOICES, MODELS, prepared_weights
from anomalib_gaussft.benchmark.report import format_markdown, plot_auroc, plot_scores
from anomalib_gaussft.benchmark.results import BenchmarkResult, read_csv, write_csv
from anomalib_gaussft.benchmark.runner import run_benchmark
from anomalib_gaussft.data.demo_dataset import DEFAULT_CATEGORIES

__all__ = ["add_arguments", "main", "run"]

_DESCRIPTION = "GaussFT vs PaDiM vs PatchCore on the same data, backbone, input size and pre-processing."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``anomalib-gaussft benchmark`` to ``parser`` (see the module example)."""
    parser.add_argument(
        "--root",
        type=Path,
        default=None,
        help="MVTec-layout dataset root (default: the demo data, generated into ./datasets/demo)",
    )
    parser.add_argument(
        "--categories",
        "--category",
        nargs="+",
        default=None,
        metavar="CATEGORY",
        help=f"categories (default: {' '.join(DEFAULT_CATEGORIES)} for the demo data, else all of --root)",
    )
    parser.add_argument(
        "--models",
        nargs="+",
        default=list(MODELS),
        choices=MODEL_CHOICES,
        help=f"models to run (default: {' '.join(MODELS)}; GaussFT-fixed adds GaussFT without fine-tuning)",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="GaussFT's maximum epochs, the pretrained one included (default: GaussFT's own bound, DEFAULT_MAX_EPOCHS)",
    )
    parser.add_argument(
        "--image-size",
        type=int,
        nargs="+",
        default=[224],
        metavar=("H", "W"),
        help="model input size: one side of a square, or height and width for long parts (default: 224)",
    )
    parser.add_argument("--backbone", default="tf_efficientnet_lite0", help="timm backbone for all three models")
    parser.add_argument("--output", type=Path, default=Path("benchmark_output"), help="results, tables and plots")
    parser.add_argument(
        "--seeds",
        "--seed",
        dest="seeds",
        type=int,
        nargs="+",
        default=[0],
        metavar="SEED",
        help="seed(s) of the data split and training (the demo data takes the first); with several, every model runs "
        "once per seed and the report adds the mean and standard deviation over the seeds (default: 0)",
    )
    parser.add_argument(
        "--summarise",
        type=Path,
        nargs="+",
        default=None,
        metavar="CSV",
        help="run nothing: merge the results.csv files of earlier runs (e.g. one per seed or per category) into "
        "one report in --output",
    )
    parser.add_argument("--batch-size", type=int, default=16, help="train and eval batch size (default: 16)")
    parser.add_argument("--num-workers", type=int, default=0, help="dataloader workers (default: 0)")
    parser.add_argument(
        "--hub-cache",
        type=Path,
        default=None,
        help="Hugging Face hub cache for PaDiM's/PatchCore's timm weights (default for backbones with bundled "
        "weights: <output>/hub_cache, filled offline from the bundled package)",
    )
    parser.add_argument(
        "--random-weights", action="store_true", help="randomly initialised backbones (smoke tests only)"
    )
    parser.add_argument(
        "--min-seconds", type=float, default=3.0, help="minimum timed wall time per throughput measurement"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads (default: torch's choice). On a machine shared with other jobs use 1: "
        "OpenMP threads waiting for a descheduled sibling can make every layer many times slower",
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="run all models and categories in this process, one after another, instead of each in a fresh process "
        "as `anomalib train` does (later models then inherit the allocator's state: faster or slower fits)",
    )
    parser.add_argument(
        "--limit-heap",
        action="store_true",
        help="serve allocations of 1 MiB and more with mmap (glibc), as MALLOC_MMAP_THRESHOLD_=1048576 does: only if "
        "memory grows without bound on your machine; it slows every model (docs/studies/benchmark_history.md)",
    )


def _command_line() -> str:
    """The command that runs this benchmark, as typed (empty when called from other Python code)."""
    program = Path(sys.argv[0])
    if program.name == "anomalib-gaussft":
        return f"`{' '.join(['anomalib-gaussft', *sys.argv[1:]])}`: "
    if program.name == "__main__.py" and program.parent.name == "benchmark":
        return f"`{' '.join(['python -m anomalib_gaussft.benchmark', *sys.argv[1:]])}`: "
    return ""


def _categories(root: Path | None, categories: Sequence[str] | None) -> list[str]:
    """The categories given, else the demo's defaults (no ``--root``), else every category folder under root."""
    if categories:
        return list(categories)
    if root is None:
        return list(DEFAULT_CATEGORIES)
    found = sorted(path.name for path in root.iterdir() if (path / "train" / "good").is_dir())
    if not found:
        msg = f"No category folders with train/good under {root} (setting `--root`)."
        raise ValueError(msg)
    return found


def run(args: argparse.Namespace) -> int:
    """Run the benchmark; write CSV, markdown and plots to ``args.output``; print the markdown.

    Args:
        args: Parsed arguments (see :func:`add_arguments`).

    Returns:
        The exit status (0).

    Raises:
        ValueError: For ``--epochs`` below 1 or ``--image-size`` below 32.
    """
    if (args.epochs is not None and args.epochs < 1) or len(args.image_size) > 2 or min(args.image_size) < 32:
        msg = f"--epochs must be >= 1 and --image-size one or two sides >= 32, got {args.epochs} and {args.image_size}."
        raise ValueError(msg)
    image_size = (args.image_size[0], args.image_size[-1])
    start = time.perf_counter()
    output = args.output.resolve()
    output.mkdir(parents=True, exist_ok=True)
    if args.summarise:
        missing = [str(path) for path in args.summarise if not path.is_file()]
        if missing:
            msg = f"No results.csv at {', '.join(missing)} (setting `--summarise`)."
            raise FileNotFoundError(msg)
        results = [result for path in args.summarise for result in read_csv(path)]
        settings = f"{_command_line()}merged from {', '.join(str(path) for path in args.summarise)}."
        _write_report(results, settings, output, start)
        return 0
    categories = _categories(args.root, args.categories)
    if args.root is None:
        from anomalib_gaussft.data.demo_dataset import generate_demo_dataset

        print(f"Writing the demo dataset ({', '.join(categories)}) to ./datasets/demo ...", flush=True)
        root = generate_demo_dataset(Path("datasets/demo"), categories, seed=args.seeds[0]).resolve()
    else:
        root = args.root.resolve()
    weights = contextlib.nullcontext()
    if not args.random_weights:
        print(f"Preparing offline {args.backbone} weights ...", flush=True)
        weights = prepared_weights(args.backbone, output / "hub_cache", args.hub_cache)
    import torch

    previous_threads = torch.get_num_threads()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        threads = torch.get_num_threads()
        results = []
        with weights:
            for seed in args.seeds:  # one run folder per seed when there are several
                folder = output / f"seed_{seed}" if len(args.seeds) > 1 else output
                seed_results = run_benchmark(
                    root, categories, folder, models=args.models, backbone=args.backbone, image_size=image_size,
                    epochs=args.epochs, pretrained=not args.random_weights, seed=seed, batch_size=args.batch_size,
                    num_workers=args.num_workers, min_seconds=args.min_seconds, limit_heap=args.limit_heap,
                    isolate=not args.in_process,
                )  # fmt: skip
                if len(args.seeds) > 1:  # kept if a later seed is interrupted (merge them with --summarise)
                    write_csv(seed_results, folder / "results.csv")
                results += seed_results
    finally:
        torch.set_num_threads(previous_threads)
    from anomalib_gaussft.model.optimization import DEFAULT_MAX_EPOCHS

    seeds = "seed" + ("s " if len(args.seeds) > 1 else " ") + ", ".join(map(str, args.seeds))
    processes = "all in one process" if args.in_process else "each model and category in a fresh process"
    epochs = args.epochs or f"its default {DEFAULT_MAX_EPOCHS}"
    settings = (
        f"{_command_line()}{args.backbone} at {image_size[0]} x {image_size[1]} px, GaussFT up to {epochs} epochs, "
        f"{seeds}, {threads} torch thread(s) on {os.cpu_count()} CPUs, {processes}; data {root}."
    )
    _write_report(results, settings, output, start)
    return 0


def _write_report(results: list[BenchmarkResult], settings: str, output: Path, start: float) -> None:
    """Write ``results.csv``, ``results.md`` and the plots to ``output`` and print the markdown."""
    write_csv(results, output / "results.csv")
    markdown = format_markdown(results, settings)
    (output / "results.md").write_text(markdown)
    plot_auroc(results, output / "benchmark_auroc.png")
    written = ["results.csv", "results.md", "benchmark_auroc.png"]
    if any(result.normal_scores or result.anomalous_scores for result in results):  # not kept in results.csv
        plot_scores(results, output / "benchmark_scores.png")
        written.append("benchmark_scores.png")
    print(f"\nDone in {time.perf_counter() - start:.0f} s.\n")
    print(markdown)
    print(f"Written to {output}: {', '.join(written)}")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m anomalib_gaussft.benchmark``.

    Args:
        argv: Arguments without the program name; ``None`` reads ``sys.argv``.

    Returns:
        The exit status (0).
    """
    parser = argparse.ArgumentParser(prog="python -m anomalib_gaussft.benchmark", description=_DESCRIPTION)
    add_arguments(parser)
    return run(parser.parse_args(argv))
