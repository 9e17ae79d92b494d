# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""GaussFT vs PaDiM vs PatchCore on the same data, backbone, input size and pre-processing, in one process.

For every category and model the benchmark builds a fresh ``MVTecAD`` datamodule (thresholds are fitted on
anomalib's synthetic anomalies made from 20 % of the training images, ``val_split_mode="synthetic"``, for all three
models alike: no test label is seen before testing), trains the model with anomalib's ``Engine`` and tests it. It
records:

* image AUROC / F1 and pixel AUROC / F1 / AUPRO (``anomalib.metrics.AUPRO``, FPR limit 0.3), from one
  :class:`~anomalib.metrics.Evaluator` given to every model;
* fit time: ``Engine.fit`` wall time after the data are prepared (GaussFT: fine-tuning with forgetting detection,
  up to ``--epochs`` epochs; PaDiM and PatchCore: their single feature-collection epoch);
* inference throughput in images/s: eval-mode ``model(images)`` on a batch of 16 raw test images, i.e. the whole
  anomalib module with pre-processing (resize, normalisation), the model and post-processing (normalisation,
  thresholds); for GaussFT also the image-score path alone (backbone plus pooled Gaussians, no anomaly map) next
  to the bare timm backbone (classifier included) on the same pre-processed batch;
* peak resident memory (RSS) during the model's fit, test and throughput runs: Linux ``VmHWM``, reset before each
  model through ``/proc/self/clear_refs``; where that is unavailable, ``resource.getrusage`` (the process's peak
  so far, so it cannot go down between models).

PaDiM and PatchCore use the same backbone as GaussFT (EfficientNet-Lite0 by default: PaDiM on ``blocks.1``,
``blocks.2``, ``blocks.4`` with 100 random feature dimensions, PatchCore on ``blocks.2`` and ``blocks.4``,
i.e. the strides 4/8/16 and 8/16 of their papers' ResNet layers) and GaussFT's pre-processor (resize to
``--image-size`` and the backbone's own normalisation).

Outputs in ``--output``: ``results.csv`` (one row per model and category), ``results.md`` (the tables and the
targets), ``benchmark_auroc.png`` (image and pixel AUROC per category) and ``benchmark_scores.png`` (raw image
scores of normal vs anomalous test images per model and category, with the fitted threshold).

Example:
    .. code-block:: bash

        anomalib-gaussft benchmark                                   # demo data, offline Lite0 weights, 224 px
        anomalib-gaussft benchmark --threads 1                       # what docs/benchmarks.md shows (shared CPU)
        anomalib-gaussft benchmark --root ./datasets/MVTecAD --categories bottle cable --epochs 10
        python -m anomalib_gaussft.benchmark --categories brick --epochs 2 --output /tmp/bench

    From Python, on any MVTec-layout folder (pretrained weights must be loadable, see :func:`run`):

    >>> from pathlib import Path
    >>> results = run_benchmark(Path("datasets/demo"), ["brick"], Path("/tmp/bench"))  # doctest: +SKIP
    >>> print(format_markdown(results))  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import ctypes
import gc
import math
import os
import resource
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from anomalib.metrics import Evaluator
    from anomalib.models.components import AnomalibModule
    from lightning.pytorch import Callback

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

#: Models compared by default, in the order they run.
MODELS = ("GaussFT", "Padim", "Patchcore")
#: Every model the benchmark can run: :data:`MODELS` plus ``GaussFT-fixed``, the same GaussFT network with fixed
#: ImageNet features (``fine_tune=False``: the fixed-feature Gaussian AD of Rippel et al. 2020), the ablation that
#: shows what fine-tuning adds.
MODEL_CHOICES = (*MODELS, "GaussFT-fixed")
#: Demo categories benchmarked by default (the demo's own: one texture, two objects).
DEFAULT_DEMO_CATEGORIES = ("brick", "coffee", "cat")
_THROUGHPUT_BATCH = 16
_M_MMAP_THRESHOLD = -3  # glibc mallopt parameter
_MMAP_THRESHOLD_BYTES = 1 << 20


# ----------------------------------------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------------------------------------
@dataclass
class BenchmarkResult:
    """Metrics and costs of one model on one category.

    Attributes:
        model: One of :data:`MODEL_CHOICES`.
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
        image_score_throughput: GaussFT only: images/s of the image-score path (backbone and pooled Gaussians).
        backbone_throughput: GaussFT only: images/s of the bare timm backbone on the same batch, measured next to
            ``image_score_throughput``.
        peak_rss_mb: Peak resident memory in MB while this model was built, trained, tested and timed.
        threshold: Raw image threshold fitted on the validation set.
        image_auroc_raw: Test image AUROC of the raw scores (ranks, ties counted half). ``image_auroc`` is anomalib's
            metric on the post-processed scores, which anomalib min-max normalises with the validation set's range
            and clamps to ``[0, 1]``: test scores beyond that range tie, which can lower the AUROC.
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
    normal_scores: list[float] = field(default_factory=list, repr=False)
    anomalous_scores: list[float] = field(default_factory=list, repr=False)

    @classmethod
    def csv_fields(cls) -> list[str]:
        """Columns of ``results.csv`` (everything but the per-image scores)."""
        return [f.name for f in fields(cls) if f.name not in {"normal_scores", "anomalous_scores"}]


@dataclass
class Throughput:
    """Images per second of one forward function.

    Attributes:
        images_per_second: Throughput.
        runs: Timed batches.
        seconds: Timed wall time.
    """

    images_per_second: float
    runs: int
    seconds: float


# ----------------------------------------------------------------------------------------------------------------------
# Measurements
# ----------------------------------------------------------------------------------------------------------------------
def measure_throughput(
    forward: Callable[[torch.Tensor], object],
    images: torch.Tensor,
    min_seconds: float = 3.0,
    min_runs: int = 3,
) -> Throughput:
    """Time ``forward(images)`` under ``torch.no_grad`` after one warm-up call.

    Args:
        forward: The function to time, e.g. an eval-mode module.
        images: The input batch.
        min_seconds: Keep timing until this much wall time has passed ...
        min_runs: ... and at least this many batches ran.

    Returns:
        The measured :class:`Throughput`.

    Example:
        >>> import torch
        >>> result = measure_throughput(torch.nn.Identity(), torch.zeros(4, 3, 8, 8), min_seconds=0.0, min_runs=2)
        >>> result.runs, result.images_per_second > 0
        (2, True)
    """
    import torch

    with torch.no_grad():
        forward(images)
        runs = 0
        start = time.perf_counter()
        elapsed = 0.0
        while runs < min_runs or elapsed < min_seconds:
            forward(images)
            runs += 1
            elapsed = time.perf_counter() - start
    return Throughput(images_per_second=runs * images.shape[0] / elapsed, runs=runs, seconds=elapsed)


def _read_status_kb(key: str) -> float | None:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(f"{key}:"):
                    return float(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (``VmHWM``) of this process.

    Returns:
        Whether it was reset (Linux only); :func:`peak_rss_mb` then reports the peak since this call.
    """
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        return False
    return _read_status_kb("VmHWM") is not None


def peak_rss_mb() -> float:
    """Peak resident memory in MB: ``VmHWM`` (since :func:`reset_peak_rss`) or ``ru_maxrss`` (process lifetime).

    Example:
        >>> peak_rss_mb() > 0
        True
    """
    peak_kb = _read_status_kb("VmHWM")
    if peak_kb is None:
        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 if sys.platform == "darwin" else 1)
    return peak_kb / 1024


def _limit_heap_fragmentation() -> None:
    """Serve allocations of 1 MiB and more with ``mmap`` (glibc), so that freed tensors go back to the system.

    Without it, PatchCore's coreset selection (a fresh ``N x d`` temporary per selected point, interleaved with
    small allocations of its progress bar) grew the glibc heap by about one temporary per iteration on this
    machine, to over 20 GB. Equivalent to ``MALLOC_MMAP_THRESHOLD_=1048576``; a no-op outside glibc.
    """
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)


# ----------------------------------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------------------------------
def baseline_settings(backbone: str) -> dict[str, dict[str, Any]]:
    """PaDiM's and PatchCore's layers (and PaDiM's ``n_features``) for ``backbone``.

    EfficientNets: PaDiM on ``blocks.1``, ``blocks.2``, ``blocks.4`` (strides 4, 8, 16 like ResNet ``layer1-3`` in
    the PaDiM paper) keeping 100 random dimensions (at most all of them); PatchCore on ``blocks.2`` and ``blocks.4``
    (strides 8 and 16 like ``layer2-3`` in the PatchCore paper). Other backbones: anomalib's defaults.

    Args:
        backbone: timm model name.

    Returns:
        ``{"Padim": {...}, "Patchcore": {...}}`` keyword arguments.

    Example:
        >>> baseline_settings("tf_efficientnet_lite0")["Patchcore"]
        {'layers': ['blocks.2', 'blocks.4']}
    """
    import timm
    import torch

    with torch.device("meta"):
        info = timm.create_model(backbone, pretrained=False).feature_info
    channels = {entry["module"]: int(entry["num_chs"]) for entry in info}
    if "blocks.4" in channels:
        padim_layers, patchcore_layers = ["blocks.1", "blocks.2", "blocks.4"], ["blocks.2", "blocks.4"]
    else:
        padim_layers, patchcore_layers = ["layer1", "layer2", "layer3"], ["layer2", "layer3"]
    missing = [name for name in {*padim_layers, *patchcore_layers} if name not in channels]
    if missing:
        msg = f"Backbone {backbone!r} has no feature level(s) {missing} for PaDiM/PatchCore (setting `--backbone`)."
        raise ValueError(msg)
    n_features = None
    if backbone not in {"resnet18", "wide_resnet50_2"}:  # anomalib has defaults only for these two
        n_features = min(100, sum(channels[name] for name in padim_layers))
    return {"Padim": {"layers": padim_layers, "n_features": n_features}, "Patchcore": {"layers": patchcore_layers}}


def _evaluator() -> Evaluator:
    """The same test metrics for every model: anomalib's defaults plus pixel AUPRO."""
    from anomalib.metrics import AUPRO, AUROC, Evaluator, F1Score

    return Evaluator(
        test_metrics=[
            AUROC(fields=["pred_score", "gt_label"], prefix="image_"),
            F1Score(fields=["pred_label", "gt_label"], prefix="image_"),
            AUROC(fields=["anomaly_map", "gt_mask"], prefix="pixel_", strict=False),
            F1Score(fields=["pred_mask", "gt_mask"], prefix="pixel_", strict=False),
            AUPRO(fields=["anomaly_map", "gt_mask"], prefix="pixel_", strict=False),
        ]
    )


def _build_model(name: str, backbone: str, image_size: int, pretrained: bool) -> AnomalibModule:
    """One of :data:`MODEL_CHOICES` with the shared backbone, pre-processing and evaluator."""
    from anomalib.models import Padim, Patchcore

    from anomalib_gaussft.model.lightning_model import GaussFT

    size = (image_size, image_size)
    common: dict[str, Any] = {"evaluator": _evaluator(), "visualizer": False}
    if name in {"GaussFT", "GaussFT-fixed"}:
        return GaussFT(
            backbone=backbone, image_size=size, pretrained=pretrained, fallback_backbone=None,
            fine_tune=name == "GaussFT", **common,
        )  # fmt: skip
    import timm

    config = timm.create_model(backbone, pretrained=False).pretrained_cfg
    common["pre_processor"] = GaussFT.configure_pre_processor(size, config["mean"], config["std"])
    settings = baseline_settings(backbone)
    if name == "Padim":
        return Padim(backbone=backbone, pre_trained=pretrained, **settings["Padim"], **common)
    if name == "Patchcore":
        return Patchcore(backbone=backbone, pre_trained=pretrained, **settings["Patchcore"], **common)
    msg = f"Unknown model {name!r} (setting `--models`); choose from {MODEL_CHOICES}."
    raise ValueError(msg)


def _score_collector() -> Callback:
    """A callback keeping the raw image scores and labels of every test batch."""
    from lightning.pytorch import Callback

    class ScoreCollector(Callback):
        def __init__(self) -> None:
            self.scores: list[float] = []
            self.labels: list[int] = []

        def on_test_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, *args: Any) -> None:
            del trainer, pl_module, batch, args
            self.scores += outputs.pred_score.detach().flatten().cpu().tolist()
            self.labels += outputs.gt_label.detach().flatten().cpu().int().tolist()

    return ScoreCollector()


def _test_batch(datamodule: Any, size: int = _THROUGHPUT_BATCH) -> torch.Tensor:
    """The first ``size`` raw test images (repeated if there are fewer)."""
    import torch

    dataset = datamodule.test_data
    images = [dataset[index % len(dataset)].image for index in range(size)]
    return torch.stack(images)


def _gaussft_image_score_path(module: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    """GaussFT's image score without the anomaly map: backbone, pooled features, per-level Mahalanobis distances."""
    inner = module.model

    def score(images: torch.Tensor) -> torch.Tensor:
        return inner.image_score(inner.embed(images, with_local=False)[0])

    return score


def _benchmark_one(
    name: str,
    root: Path,
    category: str,
    *,
    backbone: str,
    image_size: int,
    epochs: int,
    pretrained: bool,
    seed: int,
    batch_size: int,
    num_workers: int,
    output: Path,
    min_seconds: float,
) -> BenchmarkResult:
    """Train, test and time one model on one category."""
    import timm
    import torch
    from anomalib.data import MVTecAD
    from anomalib.engine import Engine
    from lightning.pytorch import seed_everything
    from lightning.pytorch.trainer.states import TrainerFn

    from anomalib_gaussft.evaluation import rank_auroc
    from anomalib_gaussft.forgetting import ForgettingDetection

    gc.collect()
    reset_peak_rss()
    seed_everything(seed, workers=True)
    datamodule = MVTecAD(
        root=root,
        category=category,
        train_batch_size=batch_size,
        eval_batch_size=batch_size,
        num_workers=num_workers,
        val_split_mode="synthetic",
        val_split_ratio=0.2,
        seed=seed,
    )
    datamodule.setup(TrainerFn.FITTING)  # synthetic validation anomalies are made here, outside the fit timer
    model = _build_model(name, backbone, image_size, pretrained)
    collector = _score_collector()
    engine = Engine(
        accelerator="cpu",
        devices=1,
        max_epochs=epochs,  # PaDiM and PatchCore override it with their single epoch
        default_root_dir=output / "runs" / name / category,
        logger=False,
        callbacks=[collector],
        enable_model_summary=False,
    )
    start = time.perf_counter()
    engine.fit(model, datamodule=datamodule)
    fit_seconds = time.perf_counter() - start
    trainer = engine.trainer
    epochs_run = int(trainer.current_epoch)
    best_epoch = None
    for callback in trainer.callbacks:
        if isinstance(callback, ForgettingDetection) and callback.best_epoch is not None:
            best_epoch = int(callback.best_epoch) + 1
    start = time.perf_counter()
    metrics = engine.test(model, datamodule=datamodule, verbose=False)[0]
    test_seconds = time.perf_counter() - start

    model.eval()
    images = _test_batch(datamodule)
    throughput = measure_throughput(model, images, min_seconds=min_seconds).images_per_second
    image_score_throughput = backbone_throughput = None
    if name == "GaussFT":
        transformed = model.pre_processor.transform(images)
        bare = timm.create_model(backbone, pretrained=False).eval()
        backbone_throughput = measure_throughput(bare, transformed, min_seconds=min_seconds).images_per_second
        path = _gaussft_image_score_path(model)
        image_score_throughput = measure_throughput(path, transformed, min_seconds=min_seconds).images_per_second
        del bare
    scores = torch.tensor(collector.scores)
    labels = torch.tensor(collector.labels)
    normal, anomalous = scores[labels == 0], scores[labels == 1]
    raw_auroc = rank_auroc(normal, anomalous) if len(normal) and len(anomalous) else math.nan
    return BenchmarkResult(
        model=name,
        category=category,
        image_auroc=float(metrics["image_AUROC"]),
        image_f1=float(metrics["image_F1Score"]),
        pixel_auroc=float(metrics["pixel_AUROC"]),
        pixel_f1=float(metrics["pixel_F1Score"]),
        pixel_aupro=float(metrics["pixel_AUPRO"]),
        fit_seconds=fit_seconds,
        test_seconds=test_seconds,
        epochs=epochs_run,
        best_epoch=best_epoch,
        throughput=throughput,
        image_score_throughput=image_score_throughput,
        backbone_throughput=backbone_throughput,
        peak_rss_mb=peak_rss_mb(),
        threshold=float(model.post_processor.image_threshold),
        image_auroc_raw=raw_auroc,
        normal_scores=normal.tolist(),
        anomalous_scores=anomalous.tolist(),
    )


def run_benchmark(
    root: Path,
    categories: Sequence[str],
    output: Path,
    *,
    models: Sequence[str] = MODELS,
    backbone: str = "tf_efficientnet_lite0",
    image_size: int = 224,
    epochs: int = 6,
    pretrained: bool = True,
    seed: int = 0,
    batch_size: int = 16,
    num_workers: int = 0,
    min_seconds: float = 3.0,
) -> list[BenchmarkResult]:
    """Benchmark ``models`` on every category of an MVTec-layout dataset; write nothing.

    Pretrained weights must be loadable: GaussFT reads them through :mod:`anomalib_gaussft.weights`, PaDiM and
    PatchCore through timm (hub cache); :func:`run` prepares both for the bundled backbones.

    Args:
        root: Dataset root with one folder per category.
        categories: Categories to run.
        output: Folder for anomalib's run directories (checkpoints).
        models: Subset of :data:`MODEL_CHOICES`.
        backbone: timm backbone shared by all models.
        image_size: Square model input size.
        epochs: GaussFT's maximum fine-tuning epochs.
        pretrained: Use ImageNet weights (``False``: random weights, for smoke tests only).
        seed: Seed of the data split and of training.
        batch_size: Train and eval batch size.
        num_workers: Dataloader workers.
        min_seconds: Minimum timed wall time of each throughput measurement.

    Returns:
        One :class:`BenchmarkResult` per category and model.
    """
    unknown = [name for name in models if name not in MODEL_CHOICES]
    if unknown:
        msg = f"Unknown model(s) {unknown} (setting `--models`); choose from {MODEL_CHOICES}."
        raise ValueError(msg)
    _limit_heap_fragmentation()
    results = []
    steps = len(categories) * len(models)
    for index, (category, name) in enumerate(((c, m) for c in categories for m in models), start=1):
        print(f"[{index}/{steps}] {name} on {category!r}: fit, test, throughput ...", flush=True)
        with warnings.catch_warnings():  # metrics are read from `Engine.test`, not from a Lightning logger
            warnings.filterwarnings("ignore", message=".*but have no logger configured.*")
            result = _benchmark_one(
                name, root, category, backbone=backbone, image_size=image_size, epochs=epochs, pretrained=pretrained,
                seed=seed, batch_size=batch_size, num_workers=num_workers, output=output, min_seconds=min_seconds,
            )  # fmt: skip
        print(
            f"[{index}/{steps}] {name} on {category!r}: image AUROC {result.image_auroc:.3f}, pixel AUROC "
            f"{result.pixel_auroc:.3f}, AUPRO {result.pixel_aupro:.3f}, fit {result.fit_seconds:.1f} s, "
            f"{result.throughput:.1f} images/s, peak RSS {result.peak_rss_mb:.0f} MB",
            flush=True,
        )
        results.append(result)
    return results


# ----------------------------------------------------------------------------------------------------------------------
# Reports
# ----------------------------------------------------------------------------------------------------------------------
def write_csv(results: Sequence[BenchmarkResult], path: Path) -> None:
    """Write one row per result (without the per-image scores)."""
    columns = BenchmarkResult.csv_fields()
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for result in results:
            row = asdict(result)
            writer.writerow({key: row[key] for key in columns})


def read_csv(path: Path) -> list[BenchmarkResult]:
    """Read ``results.csv`` back (without the per-image scores), e.g. to re-render the tables.

    Example:
        >>> from anomalib_gaussft.benchmark import format_markdown, read_csv
        >>> print(format_markdown(read_csv(Path("benchmark_output/results.csv"))))  # doctest: +SKIP
    """
    types = {f.name: f.type for f in fields(BenchmarkResult)}
    results = []
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            values: dict[str, Any] = {}
            for key, text in row.items():
                if key in {"model", "category"}:
                    values[key] = text
                elif text == "":
                    values[key] = None
                elif key in {"epochs", "best_epoch"}:
                    values[key] = int(text)
                else:
                    values[key] = float(text)
            unknown = set(values) - set(types)
            if unknown:
                msg = f"{path} has unknown columns {sorted(unknown)}; was it written by this benchmark?"
                raise ValueError(msg)
            results.append(BenchmarkResult(**values))
    return results


def _mean(values: Sequence[float | None]) -> float:
    present = [value for value in values if value is not None and not math.isnan(value)]
    return sum(present) / len(present) if present else math.nan


def _by_model(results: Sequence[BenchmarkResult]) -> dict[str, list[BenchmarkResult]]:
    grouped: dict[str, list[BenchmarkResult]] = {}
    for result in results:
        grouped.setdefault(result.model, []).append(result)
    return grouped


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
    PaDiM's; fit time < PatchCore's; image-score throughput >= 0.9 x the bare backbone's; whole-model throughput
    (with anomaly maps) >= PaDiM's. Targets whose models were not run are left out.

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
    if "Patchcore" in grouped:
        fit, reference = mean_of("GaussFT", "fit_seconds"), mean_of("Patchcore", "fit_seconds")
        targets.append(Target("fit time < PatchCore", fit, reference, lower_is_better=True))
    value, bare = mean_of("GaussFT", "image_score_throughput"), mean_of("GaussFT", "backbone_throughput")
    if not math.isnan(value) and not math.isnan(bare):
        targets.append(Target("image-score throughput >= 0.9 x bare backbone", value, 0.9 * bare))
    if "Padim" in grouped:
        value, reference = mean_of("GaussFT", "throughput"), mean_of("Padim", "throughput")
        targets.append(Target("throughput with anomaly maps >= PaDiM", value, reference))
    return targets


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"


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
        "| images/s | peak RSS | image AUROC, raw scores |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        kept = f" ({r.best_epoch})" if r.best_epoch is not None else ""
        lines.append(
            f"| {r.category} | {r.model} | {_fmt(r.image_auroc)} | {_fmt(r.pixel_auroc)} | {_fmt(r.pixel_aupro)} "
            f"| {_fmt(r.image_f1)} | {_fmt(r.pixel_f1)} | {r.fit_seconds:.1f} s | {r.epochs}{kept} "
            f"| {_fmt(r.throughput, 1)} | {r.peak_rss_mb:.0f} MB | {_fmt(r.image_auroc_raw)} |"
        )
    lines += [
        "",
        "Mean over categories:",
        "",
        "| model | image AUROC | pixel AUROC | pixel AUPRO | fit time | images/s (whole model) | peak RSS (max) "
        "| image AUROC, raw scores |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, group in _by_model(results).items():
        lines.append(
            f"| {name} | {_fmt(_mean([r.image_auroc for r in group]))} | {_fmt(_mean([r.pixel_auroc for r in group]))} "
            f"| {_fmt(_mean([r.pixel_aupro for r in group]))} | {_mean([r.fit_seconds for r in group]):.1f} s "
            f"| {_fmt(_mean([r.throughput for r in group]), 1)} | {max(r.peak_rss_mb for r in group):.0f} MB "
            f"| {_fmt(_mean([r.image_auroc_raw for r in group]))} |"
        )
    gaussft = _by_model(results).get("GaussFT", [])
    if any(r.image_score_throughput is not None for r in gaussft):
        lines += [
            "",
            f"Throughput at batch {_THROUGHPUT_BATCH} on pre-processed images (mean over categories):",
            "",
            "| forward | images/s |",
            "|---|---:|",
            f"| bare timm backbone (with classifier) | {_fmt(_mean([r.backbone_throughput for r in gaussft]), 1)} |",
            f"| GaussFT image score (no anomaly map) | {_fmt(_mean([r.image_score_throughput for r in gaussft]), 1)} |",
        ]
    targets = check_targets(results)
    if targets:
        lines += ["", "| GaussFT target | GaussFT | to reach | result |", "|---|---:|---:|---|"]
        for t in targets:
            relative = f", {100 * t.margin / abs(t.reference):+.1f} %" if t.reference else ""
            result = f"{'met' if t.met else 'missed'} ({t.margin:+.3f}{relative})"
            lines.append(f"| {t.name} | {t.value:.3f} | {t.reference:.3f} | {result} |")
    return "\n".join(lines) + "\n"


def plot_auroc(results: Sequence[BenchmarkResult], path: Path) -> None:
    """Grouped bars of image and pixel AUROC per category and model."""
    import matplotlib as mpl

    mpl.use("Agg")
    import matplotlib.pyplot as plt

    categories = list(dict.fromkeys(r.category for r in results))
    models = list(dict.fromkeys(r.model for r in results))
    lookup = {(r.model, r.category): r for r in results}
    width = 0.8 / max(len(models), 1)
    figure, axes = plt.subplots(1, 2, figsize=(max(8.0, 1.6 * len(categories) + 4), 3.8), sharey=True)
    for axis, (key, title) in zip(axes, (("image_auroc", "image AUROC"), ("pixel_auroc", "pixel AUROC")), strict=True):
        for offset, model in enumerate(models):
            values = [getattr(lookup[(model, c)], key) if (model, c) in lookup else math.nan for c in categories]
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
    """Histograms of raw image scores, normal vs anomalous test images, per category (rows) and model (columns)."""
    import matplotlib as mpl

    mpl.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    categories = list(dict.fromkeys(r.category for r in results))
    models = list(dict.fromkeys(r.model for r in results))
    lookup = {(r.model, r.category): r for r in results}
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


# ----------------------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``anomalib-gaussft benchmark``."""
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
        help=f"categories (default: {' '.join(DEFAULT_DEMO_CATEGORIES)} for the demo data, else all of --root)",
    )
    parser.add_argument(
        "--models",
        nargs="+",
        default=list(MODELS),
        choices=MODEL_CHOICES,
        help=f"models to run (default: {' '.join(MODELS)}; GaussFT-fixed adds GaussFT without fine-tuning)",
    )
    parser.add_argument("--epochs", type=int, default=6, help="GaussFT's maximum fine-tuning epochs (default: 6)")
    parser.add_argument("--image-size", type=int, default=224, help="model input size (default: 224)")
    parser.add_argument("--backbone", default="tf_efficientnet_lite0", help="timm backbone for all three models")
    parser.add_argument("--output", type=Path, default=Path("benchmark_output"), help="results, tables and plots")
    parser.add_argument("--seed", type=int, default=0, help="seed of the demo data, the data split and training")
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


def _use_hub_cache(cache: Path) -> None:
    """Point huggingface_hub (already imported or not) at ``cache``, offline."""
    os.environ["HF_HUB_CACHE"] = str(cache)
    os.environ["HF_HUB_OFFLINE"] = "1"
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:  # read at import time: patch the module too
        constants.HF_HUB_CACHE = str(cache)
        constants.HF_HUB_OFFLINE = True


def _prepare_weights(backbone: str, output: Path, hub_cache: Path | None) -> None:
    """Make PaDiM's and PatchCore's ``timm.create_model(pretrained=True)`` find the backbone's weights."""
    from anomalib_gaussft.weights import bundled_weights_available, import_weights_to_hub_cache

    if bundled_weights_available(backbone):
        cache = (hub_cache or output / "hub_cache").resolve()
        _use_hub_cache(cache)
        import_weights_to_hub_cache(backbone, cache_dir=cache)
    elif hub_cache is not None:
        _use_hub_cache(hub_cache.resolve())


def _command_line() -> str:
    """The command that runs this benchmark, as typed (empty when called from other Python code)."""
    program = Path(sys.argv[0]).name
    if program == "anomalib-gaussft":
        return f"`{' '.join(['anomalib-gaussft', *sys.argv[1:]])}`: "
    if program == "benchmark.py":
        return f"`{' '.join(['python -m anomalib_gaussft.benchmark', *sys.argv[1:]])}`: "
    return ""


def _categories(root: Path | None, categories: Sequence[str] | None) -> list[str]:
    if categories:
        return list(categories)
    if root is None:
        return list(DEFAULT_DEMO_CATEGORIES)
    found = sorted(path.name for path in root.iterdir() if (path / "train" / "good").is_dir())
    if not found:
        msg = f"No category folders with train/good under {root} (setting `--root`)."
        raise ValueError(msg)
    return found


def run(args: argparse.Namespace) -> int:
    """Run the benchmark; write CSV, markdown and plots to ``args.output``; print the markdown."""
    if args.epochs < 1 or args.image_size < 32:
        msg = f"--epochs must be >= 1 and --image-size >= 32, got {args.epochs} and {args.image_size}."
        raise ValueError(msg)
    start = time.perf_counter()
    output = args.output.resolve()
    output.mkdir(parents=True, exist_ok=True)
    categories = _categories(args.root, args.categories)
    if args.root is None:
        from anomalib_gaussft.data.demo_dataset import generate_demo_dataset

        print(f"Writing the demo dataset ({', '.join(categories)}) to ./datasets/demo ...", flush=True)
        root = generate_demo_dataset(Path("datasets/demo"), categories, seed=args.seed).resolve()
    else:
        root = args.root.resolve()
    if not args.random_weights:
        print(f"Preparing offline {args.backbone} weights ...", flush=True)
        _prepare_weights(args.backbone, output, args.hub_cache)
    import torch

    previous_threads = torch.get_num_threads()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        threads = torch.get_num_threads()
        results = run_benchmark(
            root, categories, output, models=args.models, backbone=args.backbone, image_size=args.image_size,
            epochs=args.epochs, pretrained=not args.random_weights, seed=args.seed, batch_size=args.batch_size,
            num_workers=args.num_workers, min_seconds=args.min_seconds,
        )  # fmt: skip
    finally:
        torch.set_num_threads(previous_threads)
    settings = (
        f"{_command_line()}{args.backbone} at {args.image_size} px, GaussFT up to {args.epochs} epochs, seed "
        f"{args.seed}, {threads} torch thread(s) on {os.cpu_count()} CPUs; data {root}."
    )
    write_csv(results, output / "results.csv")
    markdown = format_markdown(results, settings)
    (output / "results.md").write_text(markdown)
    plot_auroc(results, output / "benchmark_auroc.png")
    plot_scores(results, output / "benchmark_scores.png")
    print(f"\nDone in {time.perf_counter() - start:.0f} s.\n")
    print(markdown)
    print(f"Written to {output}: results.csv, results.md, benchmark_auroc.png, benchmark_scores.png")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m anomalib_gaussft.benchmark``."""
    parser = argparse.ArgumentParser(prog="python -m anomalib_gaussft.benchmark", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
