# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""``anomalib-gaussft benchmark``: GaussFT against PaDiM and PatchCore on the same data and backbone.

Modules, in the order the data flows:

* :mod:`~anomalib_gaussft.benchmark.models`: the models, built alike (backbone, layers, pre-processing, evaluator,
  offline weights);
* :mod:`~anomalib_gaussft.benchmark.measure`: throughput and peak memory (also used by ``tools/``);
* :mod:`~anomalib_gaussft.benchmark.runner`: one model on one category, and :func:`run_benchmark` over all;
* :mod:`~anomalib_gaussft.benchmark.results`: :class:`BenchmarkResult` and ``results.csv``;
* :mod:`~anomalib_gaussft.benchmark.report`: GaussFT's targets, the markdown tables, the plots;
* :mod:`~anomalib_gaussft.benchmark.command`: the command line (``anomalib-gaussft benchmark``,
  ``python -m anomalib_gaussft.benchmark``).

Example:
    >>> from anomalib_gaussft.benchmark import MODELS, baseline_settings
    >>> MODELS, baseline_settings("tf_efficientnet_lite0")["Padim"]["layers"]
    (('GaussFT', 'Padim', 'Patchcore'), ['blocks.1', 'blocks.2', 'blocks.4'])
"""

from anomalib_gaussft.benchmark.command import add_arguments, main, run
from anomalib_gaussft.benchmark.measure import (
    Throughput,
    current_rss_mb,
    measure_throughput,
    peak_rss_mb,
    reset_peak_rss,
)
from anomalib_gaussft.benchmark.models import MODEL_CHOICES, MODELS, baseline_settings, build_model
from anomalib_gaussft.benchmark.report import Target, check_targets, format_markdown, plot_auroc, plot_scores
from anomalib_gaussft.benchmark.results import BenchmarkResult, read_csv, write_csv
from anomalib_gaussft.benchmark.runner import run_benchmark

__all__ = [
    "MODELS",
    "MODEL_CHOICES",
    "BenchmarkResult",
    "Target",
    "Throughput",
    "add_arguments",
    "baseline_settings",
    "build_model",
    "check_targets",
    "current_rss_mb",
    "format_markdown",
    "main",
    "measure_throughput",
    "peak_rss_mb",
    "plot_auroc",
    "plot_scores",
    "read_csv",
    "reset_peak_rss",
    "run",
    "run_benchmark",
    "write_csv",
]
