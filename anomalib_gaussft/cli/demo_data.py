# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""``anomalib-gaussft demo-data``: write the MVTec-layout demo dataset made from scikit-image's CC0 images.

The defaults write the fast demo (60 train, 12 good and 4 x 8 defective test images per category). One test image
moves the image AUROC by up to ``1 / n_test_good`` or ``1 / (4 * n_test_defect)``; for benchmarks where that must stay
below 0.005, write larger test sets::

    anomalib-gaussft demo-data --root ./datasets/bench --n-test-good 201 --n-test-defect 51

Importing this module imports NumPy and OpenCV, not torch or anomalib.

Example:
    >>> from anomalib_gaussft.cli import build_parser
    >>> args = build_parser().parse_args(["demo-data", "--n-test-good", "201", "--n-test-defect", "51"])
    >>> args.root, args.n_train, args.n_test_good, args.n_test_defect
    (PosixPath('datasets/demo'), 60, 201, 51)

"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from anomalib_gaussft.data import (
    DEFAULT_IMAGE_SIZE,
    DEFAULT_N_TEST_DEFECT,
    DEFAULT_N_TEST_GOOD,
    DEFAULT_N_TRAIN,
    DEMO_CATEGORIES,
    write_demo_dataset,
)

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``demo-data`` options to ``parser``.

    Args:
        parser: The (sub)command parser to extend.

    Example:
        >>> parser = argparse.ArgumentParser(prog="anomalib-gaussft demo-data")
        >>> add_arguments(parser)
        >>> args = parser.parse_args(["--categories", "brick", "cat", "--image-size", "64"])
        >>> args.categories, args.image_size, args.n_test_good, args.n_test_defect
        (['brick', 'cat'], 64, 12, 8)

    """
    parser.add_argument(
        "--root", type=Path, default=Path("./datasets/demo"), help="dataset root (default: %(default)s)"
    )
    parser.add_argument(
        "--categories",
        nargs="+",
        default=None,
        metavar="CATEGORY",
        help=f"categories to write (default: all of {', '.join(DEMO_CATEGORIES)})",
    )
    parser.add_argument(
        "--image-size", type=int, default=DEFAULT_IMAGE_SIZE, help="image side in pixels (default: %(default)s)"
    )
    parser.add_argument(
        "--n-train", type=int, default=DEFAULT_N_TRAIN, help="normal training images (default: %(default)s)"
    )
    parser.add_argument(
        "--n-test-good",
        type=int,
        default=DEFAULT_N_TEST_GOOD,
        help="normal test images per category (default: %(default)s; >= 201 for AUROC steps < 0.005)",
    )
    parser.add_argument(
        "--n-test-defect",
        type=int,
        default=DEFAULT_N_TEST_DEFECT,
        help="test images per defect type, 4 types per category (default: %(default)s; >= 51 for AUROC steps < 0.005)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true", help="regenerate categories that already exist")


def run(args: argparse.Namespace) -> int:
    """Generate the demo dataset from parsed ``demo-data`` arguments and print a summary.

    Args:
        args: Namespace produced by a parser extended with :func:`add_arguments`.

    Returns:
        Process exit code: 0 on success, 1 on a usage or environment error (message on stderr).

    Example:
        >>> import tempfile
        >>> parser = argparse.ArgumentParser(prog="anomalib-gaussft demo-data")
        >>> add_arguments(parser)
        >>> root = tempfile.mkdtemp()
        >>> run(parser.parse_args(["--root", root, "--categories", "brick", "--image-size", "32", "--n-train", "2"]))
        Demo dataset (MVTec AD layout) in ...:
          brick    train 2, test good 12, defects: crack 8, hole 8, patch 8, stain 8 (written)
        Wrote 46 images and 32 masks in ... s.
        Use it with: anomalib.data.MVTecAD(root='...', category=<category>)
        0

    """
    start = time.perf_counter()
    root = Path(args.root)
    try:
        reports = write_demo_dataset(
            args.root,
            args.categories,
            image_size=args.image_size,
            n_train=args.n_train,
            n_test_good=args.n_test_good,
            n_test_defect=args.n_test_defect,
            seed=args.seed,
            overwrite=args.overwrite,
        )
    except (ValueError, ImportError, FileExistsError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    elapsed = time.perf_counter() - start
    written = [r for r in reports if not r.skipped]
    print(f"Demo dataset (MVTec AD layout) in {root.resolve()}:")
    for report in reports:
        train = report.counts.get("train/good", 0)
        good = report.counts.get("test/good", 0)
        defects = {
            k.split("/", 1)[1]: v for k, v in report.counts.items() if k.startswith("test/") and k != "test/good"
        }
        status = "already there, skipped" if report.skipped else "written"
        detail = ", ".join(f"{name} {count}" for name, count in defects.items())
        print(f"  {report.category:<8} train {train}, test good {good}, defects: {detail} ({status})")
    images = sum(r.total for r in written)
    masks = sum(v for r in written for k, v in r.counts.items() if not k.endswith("/good"))
    print(f"Wrote {images} images and {masks} masks in {elapsed:.1f} s.")
    print(f"Use it with: anomalib.data.MVTecAD(root={str(root)!r}, category=<category>)")
    return 0
