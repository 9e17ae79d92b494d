# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""The ``anomalib-gaussft`` command: demo data, offline weights, the demo job and the benchmark.

Training, testing and export go through anomalib's own CLI (``anomalib train --model GaussFT ...``); this command
only covers what anomalib has no verb for::

    anomalib-gaussft demo-data --root ./datasets/demo --categories brick coffee
    anomalib-gaussft weights import --backbone tf_efficientnet_lite0
    anomalib-gaussft weights list
    anomalib-gaussft demo
    anomalib-gaussft benchmark

Each subcommand lives in a module with ``add_arguments(parser)`` and ``run(args)``. That module is imported only when
its subcommand is chosen, so ``anomalib-gaussft --help`` (and building the parser) imports neither torch nor
anomalib.

Example:
    >>> parser = build_parser()
    >>> args = parser.parse_args(["demo-data", "--categories", "brick", "--n-test-good", "250"])
    >>> args.command, args.categories, args.n_test_good
    ('demo-data', ['brick'], 250)
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence
from typing import Any

__all__ = ["SUBCOMMANDS", "build_parser", "main"]

#: subcommand -> (module with ``add_arguments`` / ``run``, help).
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


class _LazySubcommandParser(argparse.ArgumentParser):
    """A subcommand parser that imports its module and adds its arguments the first time it parses or prints help."""

    def __init__(self, *args: Any, module_name: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._module_name = module_name

    def _load(self) -> None:
        if self._module_name is None:
            return
        module = importlib.import_module(self._module_name)
        self._module_name = None
        module.add_arguments(self)
        self.set_defaults(_run=module.run)

    def parse_known_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> tuple[Any, list[str]]:
        self._load()
        return super().parse_known_args(args, namespace)

    def format_help(self) -> str:
        self._load()
        return super().format_help()

    def format_usage(self) -> str:
        self._load()
        return super().format_usage()


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one subparser per subcommand; a subcommand's module is imported when it is chosen.

    Returns:
        The parser of ``anomalib-gaussft``; ``parse_args`` sets ``command`` and ``_run`` (the module's ``run``).

    Example:
        >>> parser = build_parser()
        >>> parser.parse_args(["weights", "list"]).weights_command
        'list'
    """
    parser = argparse.ArgumentParser(prog="anomalib-gaussft", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=_LazySubcommandParser)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        subparsers.add_parser(name, help=help_text, description=help_text, module_name=module_name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``anomalib-gaussft`` console script.

    Args:
        argv: Arguments without the program name; defaults to ``sys.argv[1:]``.

    Returns:
        The exit status.

    Example:
        >>> main(["weights", "list", "--cache-dir", "/nonexistent/hub"])
        Hugging Face hub cache: /nonexistent/hub
        backbone ... in hub cache
        tf_efficientnet_lite0 ... no
        tf_efficientnet_lite1 ... no
        0
    """
    args = build_parser().parse_args(argv)
    return int(args._run(args) or 0)
