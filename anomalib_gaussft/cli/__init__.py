# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""The ``anomalib-gaussft`` command: demo data, offline weights, the demo job and the benchmark.

Training, testing and export go through anomalib's own CLI (``anomalib train --model GaussFT ...``); this command
only covers what anomalib has no verb for.

Example:
    .. code-block:: bash

        anomalib-gaussft demo-data --root ./datasets/demo --categories brick coffee
        anomalib-gaussft weights import --backbone tf_efficientnet_lite0
        anomalib-gaussft weights list
        anomalib-gaussft demo
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

__all__ = ["main"]

# subcommand -> (module with add_arguments/run, help)
SUBCOMMANDS = {
    "demo-data": (
        "anomalib_gaussft.cli.demo_data",
        "Write the MVTec-layout demo dataset made from scikit-image's CC0 images.",
    ),
    "weights": (
        "anomalib_gaussft.cli.weights",
        "Offline pretrained weights: list them, import them into the hub cache.",
    ),
    "demo": ("anomalib_gaussft.cli.demo", "The main job: demo data, GaussFT training, test, pictures, export, table."),
    "benchmark": ("anomalib_gaussft.benchmark", "GaussFT vs PaDiM vs PatchCore on the same data and backbone."),
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one subparser per subcommand."""
    parser = argparse.ArgumentParser(prog="anomalib-gaussft", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        subparser = subparsers.add_parser(name, help=help_text, description=help_text)
        module = importlib.import_module(module_name)
        module.add_arguments(subparser)
        subparser.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``anomalib-gaussft`` console script.

    Args:
        argv: Arguments without the program name; defaults to ``sys.argv[1:]``.

    Returns:
        The exit status.
    """
    args = build_parser().parse_args(argv)
    return int(args._run(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
