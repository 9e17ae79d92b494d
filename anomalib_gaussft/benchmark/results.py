# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""One benchmark result (one model on one category) and ``results.csv``, written and read back.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> row = BenchmarkResult("GaussFT", "brick", 0.9, 0.8, 0.95, 0.4, 0.7, 12.5, 1.0, 6, 4, 30.0, normal_scores=[1.0])
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     write_csv([row], Path(folder) / "results.csv")
    ...     back = read_csv(Path(folder) / "results.csv")
    >>> back[0].model, back[0].best_epoch, back[0].image_score_throughput, back[0].normal_scores
    ('GaussFT', 4, None, [])
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

__all__ = ["BenchmarkResult", "read_csv", "write_csv"]


@dataclass
class BenchmarkResult:
    """Metrics and costs of one model on one category.

    Attributes:
        model: One of :data:`~anomalib_gaussft.benchmark.models.MODEL_CHOICES`.
        category: Dataset category.
        image_auroc: Test image AUROC.
        image_f1: Test image F1 at the threshold fitted on the synthetic validation set.
        pixel_auroc: Test pixel AUROC.
        pixel_f1: Test pixel F1 at the fitted pixel threshold.
        pixel_aupro: Test pixel AUPRO (FPR limit 0.3).
        fit_seconds: Wall time of ``Engine.fit``.
        test_seconds: Wall time of ``Engine.test`` (includes the metric computation).
        epochs: Training epochs run.
        best_epoch: GaussFT: the epoch forgetting detection kept (1-based); ``None`` for the others.
        throughput: Whole-model images/s (pre-processing, model, post-processing) at batch 16.
        image_score_throughput: GaussFT only: images/s of the image-score path (backbone and pooled Gaussians; with
            the default geometric score also the anomaly map, which it needs).
        backbone_throughput: GaussFT only: images/s of the bare timm backbone on the same batch, measured next to
            ``image_score_throughput``.
        peak_rss_mb: Peak resident memory in MB while this model was built, trained, tested and timed.
        threshold: Raw image threshold fitted on the validation set.
        image_auroc_raw: Test image AUROC of the raw scores (ranks, ties counted half). ``image_auroc`` is anomalib's
            metric on the post-processed scores, which anomalib min-max normalises with the validation set's range
            and clamps to ``[0, 1]``: test scores beyond that range tie, which can lower the AUROC.
        pixel_auroc_raw: Test pixel AUROC of the raw anomaly maps (ranks), beside anomalib's ``pixel_auroc``.
        model_mb: Size of the trained model's serialised state dict in MB (backbone, fitted statistics, memory bank).
        seed: The run's seed (data split and training); ``None`` in CSVs written before the column existed.
        image_auroc_by_type: Raw-score image AUROC of the normal test images against each defect type's (the test
            folders of the MVTec layout), written to the CSV as ``type=value;...``.
        normal_scores: Raw image scores of the normal test images (not written to the CSV).
        anomalous_scores: Raw image scores of the anomalous test images (not written to the CSV).
    """

    model: str
    category: str
    image_auroc: float
    image_f1: float
    pixel_auroc: float
    pixel_f1: float
    pixel_aupro: float
    fit_seconds: float
    test_seconds: float
    epochs: int
    best_epoch: int | None
    throughput: float
    image_score_throughput: float | None = None
    backbone_throughput: float | None = None
    peak_rss_mb: float = math.nan
    threshold: float = math.nan
    image_auroc_raw: float = math.nan
    pixel_auroc_raw: float = math.nan
    model_mb: float = math.nan
    seed: int | None = None
    image_auroc_by_type: dict[str, float] = field(default_factory=dict)
    normal_scores: list[float] = field(default_factory=list, repr=False)
    anomalous_scores: list[float] = field(default_factory=list, repr=False)

    @classmethod
    def csv_fields(cls) -> list[str]:
        """Columns of ``results.csv`` (everything but the per-image scores).

        Example:
            >>> BenchmarkResult.csv_fields()[:3], "normal_scores" in BenchmarkResult.csv_fields()
            (['model', 'category', 'image_auroc'], False)
        """
        return [f.name for f in fields(cls) if f.name not in {"normal_scores", "anomalous_scores"}]


def write_csv(results: Sequence[BenchmarkResult], path: Path) -> None:
    """Write one row per result (without the per-image scores); see the module example."""
    columns = BenchmarkResult.csv_fields()
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for result in results:
            row = asdict(result)
            row["image_auroc_by_type"] = ";".join(f"{k}={v!r}" for k, v in result.image_auroc_by_type.items())
            writer.writerow({key: row[key] for key in columns})


def read_csv(path: Path) -> list[BenchmarkResult]:
    r"""Read ``results.csv`` back (without the per-image scores), e.g. to re-render the tables.

    Raises:
        ValueError: If the file has columns a :class:`BenchmarkResult` does not (naming the file).

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = Path(folder) / "results.csv"
        ...     _ = path.write_text("model,category,speed\nPadim,brick,3\n")
        ...     read_csv(path)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ValueError: .../results.csv has unknown columns ['speed']; was it written by this benchmark?
    """
    types = {f.name: f.type for f in fields(BenchmarkResult)}
    results = []
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            values: dict[str, Any] = {}
            for key, text in row.items():
                if key in {"model", "category"}:
                    values[key] = text
                elif key == "image_auroc_by_type":
                    values[key] = {k: float(v) for k, v in (item.split("=") for item in text.split(";") if item)}
                elif text == "":
                    values[key] = None
                elif key in {"epochs", "best_epoch", "seed"}:
                    values[key] = int(text)
                else:
                    values[key] = float(text)
            unknown = set(values) - set(types)
            if unknown:
                msg = f"{path} has unknown columns {sorted(unknown)}; was it written by this benchmark?"
                raise ValueError(msg)
            results.append(BenchmarkResult(**values))
    return results
