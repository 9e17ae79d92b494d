# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""``anomalib-gaussft benchmark``: GaussFT against PaDiM and PatchCore on the same data and backbone."""

from anomalib_gaussft.benchmark.runner import (
    DEFAULT_DEMO_CATEGORIES,
    MODEL_CHOICES,
    MODELS,
    BenchmarkResult,
    Target,
    Throughput,
    add_arguments,
    baseline_settings,
    check_targets,
    format_markdown,
    main,
    measure_throughput,
    peak_rss_mb,
    plot_auroc,
    plot_scores,
    read_csv,
    reset_peak_rss,
    run,
    run_benchmark,
    write_csv,
)

__all__ = [
    "DEFAULT_DEMO_CATEGORIES",
    "MODELS",
    "MODEL_CHOICES",
    "BenchmarkResult",
    "Target",
    "Throughput",
    "add_arguments",
    "baseline_settings",
    "check_targets",
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
