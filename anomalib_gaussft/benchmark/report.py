# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""The benchmark's report: GaussFT's targets, the markdown tables and the two plots.

Example:
    >>> from anomalib_gaussft.benchmark.results import BenchmarkResult
    >>> rows = [
    ...     BenchmarkResult("GaussFT", "brick", 0.90, 0.8, 0.95, 0.4, 0.7, 12.0, 1.0, 6, 4, 30.0),
    ...     BenchmarkResult("Padim", "brick", 0.85, 0.7, 0.96, 0.4, 0.8, 5.0, 1.0, 1, None, 35.0),
    ... ]
    >>> print(format_markdown(rows).splitlines()[2])
    | brick | GaussFT | 0.900 | 0.950 | 0.700 | 0.800 | 0.400 | 12.0 s | 6 (4) | 30.0 | nan MB | - MB | - | - |
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from anomalib_gaussft.benchmark.measure import THROUGHPUT_BATCH
from anomalib_gaussft.benchmark.results import BenchmarkResult

__all__ = ["Target", "check_targets", "format_markdown", "format_seed_summary", "plot_auroc", "plot_scores"]


def _mean(values: Sequence[float | None]) -> float:
    present = [value for value in values if value is not None and not math.isnan(value)]
    return sum(present) / len(present) if present else math.nan


def _by_model(results: Sequence[BenchmarkResult]) -> dict[str, list[BenchmarkResult]]:
    grouped: dict[str, list[BenchmarkResult]] = {}
    for result in results:
        grouped.setdefault(result.model, []).append(result)
    return grouped


def _seeds(results: Sequence[BenchmarkResult]) -> list[int | None]:
    return sorted(dict.fromkeys(r.seed for r in results), key=lambda seed: -1 if seed is None else seed)


#: Columns of the seed summary: (attribute, heading, digits).
_SEED_COLUMNS = (
    ("image_auroc", "image AUROC", 3),
    ("image_auroc_raw", "image AUROC, raw scores", 3),
    ("pixel_auroc", "pixel AUROC", 3),
    ("pixel_auroc_raw", "pixel AUROC, raw maps", 3),
    ("pixel_aupro", "pixel AUPRO", 3),
    ("fit_seconds", "fit time (s)", 1),
    ("model_mb", "model size (MB)", 1),
)


def format_seed_summary(results: Sequence[BenchmarkResult]) -> str:
    """Markdown: per model, the mean over categories of each seed, then their mean and standard deviation.

    Empty when the results hold one seed. A model's mean over a seed is taken only over the categories that seed ran.

    Args:
        results: Benchmark results of several seeds (:attr:`BenchmarkResult.seed`).

    Returns:
        The markdown table, or ``""``.

    Example:
        >>> rows = [BenchmarkResult("Padim", c, a, 0.5, 0.9, 0.3, 0.8, 10.0, 1.0, 1, None, 5.0, seed=s)
        ...         for s, c, a in ((0, "a", 0.8), (0, "b", 0.9), (1, "a", 0.9), (1, "b", 1.0))]
        >>> print(format_seed_summary(rows).splitlines()[-1])
        | Padim | 2 | 0.850, 0.950 | 0.900 ± 0.071 | - | 0.900 ± 0.000 | - | 0.800 ± 0.000 | 10.0 ± 0.0 | - |
    """
    seeds = _seeds(results)
    if len(seeds) < 2:
        return ""
    headings = " | ".join(heading for _, heading, _ in _SEED_COLUMNS)
    lines = [
        f"Mean over categories per seed, then mean ± standard deviation over the seeds ({', '.join(map(str, seeds))}):",
        "",
        f"| model | seeds | image AUROC per seed | {headings} |",
        "|---|---:|---|" + "---:|" * len(_SEED_COLUMNS),
    ]
    for name, group in _by_model(results).items():
        per_seed = {seed: [r for r in group if r.seed == seed] for seed in seeds}
        per_seed = {seed: rows for seed, rows in per_seed.items() if rows}
        cells = []
        for key, _, digits in _SEED_COLUMNS:
            means = [_mean([getattr(r, key) for r in rows]) for rows in per_seed.values()]
            means = [value for value in means if not math.isnan(value)]
            if not means:
                cells.append("-")
                continue
            spread = statistics.stdev(means) if len(means) > 1 else 0.0
            cells.append(f"{statistics.fmean(means):.{digits}f} ± {spread:.{digits}f}")
        image = ", ".join(_fmt(_mean([r.image_auroc for r in rows])) for rows in per_seed.values())
        lines.append(f"| {name} | {len(per_seed)} | {image} | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


@dataclass
class Target:
    """One of GaussFT's targets, evaluated on means over categories.

    Attributes:
        name: The target, e.g. ``"image AUROC >= PatchCore"``.
        value: GaussFT's value.
        reference: The value to reach (for the throughput target: 0.9 x the bare backbone's throughput).
        lower_is_better: ``True`` for fit time.
    """

    name: str
    value: float
    reference: float
    lower_is_better: bool = False

    @property
    def margin(self) -> float:
        """How far the target is exceeded (positive) or missed (negative), in the value's unit."""
        return self.reference - self.value if self.lower_is_better else self.value - self.reference

    @property
    def met(self) -> bool:
        """Whether the target is met (a tie meets ``>=`` targets, not ``<`` ones)."""
        return self.margin > 0 if self.lower_is_better else self.margin >= 0


def check_targets(results: Sequence[BenchmarkResult]) -> list[Target]:
    """Evaluate GaussFT's targets against the other models (means over categories).

    Targets: image AUROC >= the fixed-feature GaussFT's (``GaussFT-fixed``), PaDiM's and PatchCore's; pixel AUROC >=
    PaDiM's; model size < PaDiM's; fit time < PatchCore's; image-score throughput >= 0.9 x the bare backbone's;
    whole-model throughput (with anomaly maps) >= PaDiM's; anomalib's reported image and pixel AUROC within 0.002 of
    the raw-score ones in every category (GaussFT's order-preserving normalisation). Targets whose models or columns
    are missing are left out.

    Args:
        results: Benchmark results.

    Returns:
        One :class:`Target` per target that applies.

    Example:
        >>> rows = [
        ...     BenchmarkResult("GaussFT", "a", 0.9, 0, 0.9, 0, 0, 10.0, 1, 1, None, 50.0, 40.0, 42.0),
        ...     BenchmarkResult("Patchcore", "a", 0.95, 0, 0.9, 0, 0, 20.0, 1, 1, None, 30.0),
        ... ]
        >>> for target in check_targets(rows):
        ...     print(f"{target.name}: {target.met} ({target.margin:+.2f})")
        image AUROC >= PatchCore: False (-0.05)
        fit time < PatchCore: True (+10.00)
        image-score throughput >= 0.9 x bare backbone: True (+2.20)
    """
    grouped = _by_model(results)
    if not grouped.get("GaussFT"):
        return []

    def mean_of(model: str, key: str) -> float:
        return _mean([getattr(result, key) for result in grouped[model]])

    targets = []
    for reference, label in (("GaussFT-fixed", "fixed features"), ("Padim", "PaDiM"), ("Patchcore", "PatchCore")):
        if reference in grouped:
            targets.append(
                Target(f"image AUROC >= {label}", mean_of("GaussFT", "image_auroc"), mean_of(reference, "image_auroc"))
            )
    if "Padim" in grouped:
        targets.append(
            Target("pixel AUROC >= PaDiM", mean_of("GaussFT", "pixel_auroc"), mean_of("Padim", "pixel_auroc"))
        )
    if "Padim" in grouped and not math.isnan(size := mean_of("GaussFT", "model_mb")):
        targets.append(Target("model size < PaDiM (MB)", size, mean_of("Padim", "model_mb"), lower_is_better=True))
    if "Patchcore" in grouped:
        fit, reference = mean_of("GaussFT", "fit_seconds"), mean_of("Patchcore", "fit_seconds")
        targets.append(Target("fit time < PatchCore", fit, reference, lower_is_better=True))
    value, bare = mean_of("GaussFT", "image_score_throughput"), mean_of("GaussFT", "backbone_throughput")
    if not math.isnan(value) and not math.isnan(bare):
        targets.append(Target("image-score throughput >= 0.9 x bare backbone", value, 0.9 * bare))
    if "Padim" in grouped:
        value, reference = mean_of("GaussFT", "throughput"), mean_of("Padim", "throughput")
        targets.append(Target("throughput with anomaly maps >= PaDiM", value, reference))
    gaps = [
        abs(getattr(result, reported) - getattr(result, raw))
        for result in grouped["GaussFT"]
        for reported, raw in (("image_auroc", "image_auroc_raw"), ("pixel_auroc", "pixel_auroc_raw"))
        if not math.isnan(getattr(result, raw))
    ]
    if gaps:
        targets.append(Target("reported AUROC - raw-score AUROC < 0.002", max(gaps), 0.002, lower_is_better=True))
    return targets


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _by_type_table(results: Sequence[BenchmarkResult]) -> list[str]:
    """Lines of a table of raw image AUROC per defect type: one row per model and category, mean over seeds."""
    types = sorted({defect for r in results for defect in r.image_auroc_by_type})
    if not types:
        return []
    lines = [
        "",
        "Image AUROC of the raw scores per defect type (normal test images against that type's; mean over seeds):",
        "",
        f"| category | model | {' | '.join(types)} |",
        f"|---|---|{'---:|' * len(types)}",
    ]
    grouped: dict[tuple[str, str], list[BenchmarkResult]] = {}
    for r in results:
        grouped.setdefault((r.category, r.model), []).append(r)
    for (category, model), group in grouped.items():
        cells = [_fmt(_mean([r.image_auroc_by_type.get(defect) for r in group])) for defect in types]
        lines.append(f"| {category} | {model} | {' | '.join(cells)} |")
    return lines


def format_markdown(results: Sequence[BenchmarkResult], settings: str = "") -> str:
    """Markdown tables: per category, mean per model, throughput, and the targets.

    Args:
        results: Benchmark results.
        settings: A line describing the run (command, machine), put above the tables.

    Returns:
        The markdown text.
    """
    lines = [settings, ""] if settings else []
    lines += [
        "| category | model | image AUROC | pixel AUROC | pixel AUPRO | image F1 | pixel F1 | fit time | epochs (kept) "
        "| images/s | peak RSS | model size | image AUROC, raw scores | pixel AUROC, raw maps |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    several_seeds = len(_seeds(results)) > 1
    for r in results:
        kept = f" ({r.best_epoch})" if r.best_epoch is not None else ""
        category = f"{r.category}, seed {r.seed}" if several_seeds else r.category
        lines.append(
            f"| {category} | {r.model} | {_fmt(r.image_auroc)} | {_fmt(r.pixel_auroc)} | {_fmt(r.pixel_aupro)} "
            f"| {_fmt(r.image_f1)} | {_fmt(r.pixel_f1)} | {r.fit_seconds:.1f} s | {r.epochs}{kept} "
            f"| {_fmt(r.throughput, 1)} | {r.peak_rss_mb:.0f} MB | {_fmt(r.model_mb, 1)} MB "
            f"| {_fmt(r.image_auroc_raw)} | {_fmt(r.pixel_auroc_raw)} |"
        )
    lines += [
        "",
        "Mean over categories" + (" and seeds:" if several_seeds else ":"),
        "",
        "| model | image AUROC | pixel AUROC | pixel AUPRO | fit time | images/s (whole model) | peak RSS (max) "
        "| model size | image AUROC, raw scores | pixel AUROC, raw maps |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, group in _by_model(results).items():
        lines.append(
            f"| {name} | {_fmt(_mean([r.image_auroc for r in group]))} | {_fmt(_mean([r.pixel_auroc for r in group]))} "
            f"| {_fmt(_mean([r.pixel_aupro for r in group]))} | {_mean([r.fit_seconds for r in group]):.1f} s "
            f"| {_fmt(_mean([r.throughput for r in group]), 1)} | {max(r.peak_rss_mb for r in group):.0f} MB "
            f"| {_fmt(_mean([r.model_mb for r in group]), 1)} MB "
            f"| {_fmt(_mean([r.image_auroc_raw for r in group]))} | {_fmt(_mean([r.pixel_auroc_raw for r in group]))} |"
        )
    gaussft = _by_model(results).get("GaussFT", [])
    if any(r.image_score_throughput is not None for r in gaussft):
        lines += [
            "",
            f"Throughput at batch {THROUGHPUT_BATCH} on pre-processed images (mean over categories):",
            "",
            "| forward | images/s |",
            "|---|---:|",
            f"| bare timm backbone (with classifier) | {_fmt(_mean([r.backbone_throughput for r in gaussft]), 1)} |",
            "| GaussFT image score (without the anomaly map only for `image_score=global`) "
            f"| {_fmt(_mean([r.image_score_throughput for r in gaussft]), 1)} |",
        ]
    lines += _by_type_table(results)
    summary = format_seed_summary(results)
    if summary:
        lines += ["", summary.rstrip("\n")]
    targets = check_targets(results)
    if targets:
        lines += ["", "| GaussFT target | GaussFT | to reach | result |", "|---|---:|---:|---|"]
        for t in targets:
            relative = f", {100 * t.margin / abs(t.reference):+.1f} %" if t.reference else ""
            result = f"{'met' if t.met else 'missed'} ({t.margin:+.3f}{relative})"
            lines.append(f"| {t.name} | {t.value:.3f} | {t.reference:.3f} | {result} |")
    return "\n".join(lines) + "\n"


def plot_auroc(results: Sequence[BenchmarkResult], path: Path) -> None:
    """Grouped bars of image and pixel AUROC per category and model (the mean over seeds where there are several)."""
    import matplotlib as mpl

    mpl.use("Agg")
    import matplotlib.pyplot as plt

    categories = list(dict.fromkeys(r.category for r in results))
    models = list(dict.fromkeys(r.model for r in results))
    grouped: dict[tuple[str, str], list[BenchmarkResult]] = {}
    for r in results:
        grouped.setdefault((r.model, r.category), []).append(r)
    lookup = {
        key: {name: _mean([getattr(r, name) for r in rows]) for name in ("image_auroc", "pixel_auroc")}
        for key, rows in grouped.items()
    }
    width = 0.8 / max(len(models), 1)
    figure, axes = plt.subplots(1, 2, figsize=(max(8.0, 1.6 * len(categories) + 4), 3.8), sharey=True)
    for axis, (key, title) in zip(axes, (("image_auroc", "image AUROC"), ("pixel_auroc", "pixel AUROC")), strict=True):
        for offset, model in enumerate(models):
            values = [lookup[(model, c)][key] if (model, c) in lookup else math.nan for c in categories]
            positions = [i + (offset - (len(models) - 1) / 2) * width for i in range(len(categories))]
            bars = axis.bar(positions, values, width, label=model)
            axis.bar_label(bars, fmt="%.2f", fontsize=7, padding=1)
        axis.set_xticks(range(len(categories)), categories)
        axis.set_title(title)
        axis.set_ylim(0.0, 1.08)
        axis.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("AUROC")
    axes[1].legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_scores(results: Sequence[BenchmarkResult], path: Path) -> None:
    """Histograms of raw image scores, normal vs anomalous test images, per category (rows) and model (columns).

    With several seeds, the first seed's scores (the seeds' score scales differ, so they are not pooled).
    """
    import matplotlib as mpl

    mpl.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    categories = list(dict.fromkeys(r.category for r in results))
    models = list(dict.fromkeys(r.model for r in results))
    first = _seeds(results)[0] if results else None
    lookup = {(r.model, r.category): r for r in results if r.seed == first}
    figure, axes = plt.subplots(
        len(categories), len(models), figsize=(3.6 * len(models), 2.4 * len(categories)), squeeze=False
    )
    for row, category in enumerate(categories):
        for column, model in enumerate(models):
            axis = axes[row][column]
            result = lookup.get((model, category))
            if result is None:
                axis.set_axis_off()
                continue
            scores = result.normal_scores + result.anomalous_scores
            bins = np.histogram_bin_edges(scores, bins=20) if scores else 10
            axis.hist(result.normal_scores, bins=bins, alpha=0.6, label="normal", color="tab:blue")
            axis.hist(result.anomalous_scores, bins=bins, alpha=0.6, label="anomalous", color="tab:red")
            if not math.isnan(result.threshold):
                axis.axvline(result.threshold, color="black", linestyle="--", linewidth=1, label="threshold")
            axis.set_title(f"{model} / {category} (AUROC {result.image_auroc:.2f})", fontsize=9)
            axis.tick_params(labelsize=7)
            if row == len(categories) - 1:
                axis.set_xlabel("raw image score", fontsize=8)
    axes[0][-1].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
