# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""One model on one category, and every model on every category: train, test, time, measure memory.

Every model runs on every category in a fresh Python process (``isolate=True``, the default), as a user's
``anomalib train`` does: the allocator's state that one model leaves behind changes the next model's speed (a
PatchCore fit that follows another model in the same process took 30 s instead of 140 s,
``docs/studies/benchmark_history.md``).
For every category and model the benchmark builds a fresh ``MVTecAD`` datamodule (thresholds are fitted on
anomalib's synthetic anomalies made from 20 % of the training images, ``val_split_mode="synthetic"``, for all three
models alike: no test label is seen before testing), trains the model with anomalib's ``Engine`` and tests it. It
records:

* image AUROC / F1 and pixel AUROC / F1 / AUPRO (``anomalib.metrics.AUPRO``, FPR limit 0.3), from one
  :class:`~anomalib.metrics.Evaluator` given to every model;
* fit time: ``Engine.fit`` wall time after the data are prepared (GaussFT: fine-tuning with forgetting detection,
  up to ``epochs`` epochs; PaDiM and PatchCore: their single feature-collection epoch);
* inference throughput in images/s: eval-mode ``model(images)`` on a batch of 16 raw test images, i.e. the whole
  anomalib module with pre-processing (resize, normalisation), the model and post-processing (normalisation,
  thresholds); for GaussFT also the image-score path alone (backbone plus pooled Gaussians, no anomaly map, with
  ``image_score="global"``; the whole forward with the default geometric score, which needs the map) next
  to the bare timm backbone (classifier included) on the same pre-processed batch;
* peak resident memory (RSS) during the model's fit, test and throughput runs: Linux ``VmHWM``, reset before each
  model through ``/proc/self/clear_refs``; where that is unavailable, ``resource.getrusage`` (the process's peak
  so far, so it cannot go down between models);
* the raw image scores of the test images and their rank AUROC
  (:func:`anomalib_gaussft.evaluation.rank_auroc`), overall and for each defect type (test folder) alone.

The models are built by :func:`anomalib_gaussft.benchmark.models.build_model`; the command line, which also writes
the files, is :mod:`anomalib_gaussft.benchmark.command`.

Example:
    GaussFT with fixed random features on a tiny generated category (pretrained weights must be loadable for real
    runs, see :func:`~anomalib_gaussft.benchmark.models.prepared_weights`):

    >>> import shutil
    >>> import tempfile
    >>> from pathlib import Path
    >>> from anomalib_gaussft.data.demo_dataset import generate_demo_dataset
    >>> folder = Path(tempfile.mkdtemp())
    >>> root = generate_demo_dataset(folder / "data", ["brick"], image_size=32, n_train=10, n_test_good=4,
    ...                              n_test_defect=2)
    >>> results = run_benchmark(root, ["brick"], folder / "out", models=["GaussFT-fixed"], image_size=32,
    ...                         epochs=1, pretrained=False, batch_size=4, min_seconds=0.0,
    ...                         isolate=False)  # doctest: +ELLIPSIS
    [1/1] GaussFT-fixed on 'brick': fit, test, throughput ...
    [1/1] GaussFT-fixed on 'brick': image AUROC ...
    >>> [(r.model, r.category, r.epochs, len(r.normal_scores), len(r.anomalous_scores)) for r in results]
    [('GaussFT-fixed', 'brick', 1, 4, 8)]
    >>> shutil.rmtree(folder)
"""

from __future__ import annotations

import functools
import math
import multiprocessing
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from anomalib_gaussft.benchmark.measure import (
    THROUGHPUT_BATCH,
    limit_heap_fragmentation,
    measure_throughput,
    peak_rss_mb,
    release_free_memory,
    reset_peak_rss,
    state_dict_megabytes,
)
from anomalib_gaussft.benchmark.models import MODEL_CHOICES, MODELS, build_model
from anomalib_gaussft.benchmark.results import BenchmarkResult

if TYPE_CHECKING:
    import torch
    from lightning.pytorch import Callback

__all__ = ["run_benchmark", "score_collector"]


def score_collector() -> Callback:
    """A callback keeping the raw image scores and labels, and the raw maps and masks, of every test batch.

    As a trainer callback it runs before the model's post-processor, which normalises the batch in place.
    """
    from lightning.pytorch import Callback

    class ScoreCollector(Callback):
        def __init__(self) -> None:
            self.scores: list[float] = []
            self.labels: list[int] = []
            self.maps: list[torch.Tensor] = []
            self.masks: list[torch.Tensor] = []
            self.types: list[str] = []  # the test folder of every image: "good" or the defect type

        def on_test_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, *args: Any) -> None:
            del trainer, pl_module, batch, args
            self.scores += outputs.pred_score.detach().flatten().cpu().tolist()
            self.labels += outputs.gt_label.detach().flatten().cpu().int().tolist()
            self.types += [Path(path).parent.name for path in outputs.image_path]
            if outputs.anomaly_map is not None and outputs.gt_mask is not None:
                self.maps.append(outputs.anomaly_map.detach().flatten().cpu())
                self.masks.append(outputs.gt_mask.detach().flatten().cpu() > 0)

    return ScoreCollector()


def _test_batch(datamodule: Any, size: int = THROUGHPUT_BATCH) -> torch.Tensor:
    """The first ``size`` raw test images (repeated if there are fewer)."""
    import torch

    dataset = datamodule.test_data
    images = [dataset[index % len(dataset)].image for index in range(size)]
    return torch.stack(images)


def _gaussft_image_score_path(module: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    """GaussFT's image score alone.

    With ``image_score="global"``: the backbone, pooled features and per-level Mahalanobis distances, without the
    anomaly map; the other scores need the map, so it is the whole forward.
    """
    inner = module.model

    def score(images: torch.Tensor) -> torch.Tensor:
        if inner.image_score_mode == "global":
            return inner.image_score(inner.embed(images, with_local=False)[0])
        return inner(images).pred_score

    return score


def _benchmark_one(
    name: str,
    root: Path,
    category: str,
    *,
    backbone: str,
    image_size: int | tuple[int, int],
    epochs: int | None,
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

    release_free_memory()  # the previous model's freed heap must not count towards this model's peak
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
    model = build_model(name, backbone, image_size, pretrained)
    collector = score_collector()
    engine = Engine(
        accelerator="cpu",
        devices=1,
        max_epochs=epochs,  # None: GaussFT's own bound; PaDiM and PatchCore set their single epoch
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
    by_type = {}
    if len(normal):
        for defect in sorted({t for t, label in zip(collector.types, collector.labels, strict=True) if label == 1}):
            chosen = torch.tensor([t == defect for t in collector.types]) & (labels == 1)
            by_type[defect] = rank_auroc(normal, scores[chosen])
    pixel_raw_auroc = math.nan
    if collector.maps:
        pixels, masks = torch.cat(collector.maps), torch.cat(collector.masks)
        if masks.any() and not masks.all():
            pixel_raw_auroc = rank_auroc(pixels[~masks], pixels[masks])
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
        pixel_auroc_raw=pixel_raw_auroc,
        model_mb=state_dict_megabytes(model),
        seed=seed,
        image_auroc_by_type=by_type,
        normal_scores=normal.tolist(),
        anomalous_scores=anomalous.tolist(),
    )


def _run_job(
    name: str, root: Path, category: str, *, threads: int, limit_heap: bool, **settings: Any
) -> BenchmarkResult:
    """:func:`_benchmark_one` under the run's process settings (torch threads, heap limit), here or in a child."""
    import torch

    torch.set_num_threads(threads)
    if limit_heap:
        limit_heap_fragmentation()
    with warnings.catch_warnings():  # metrics are read from `Engine.test`, not from a Lightning logger
        warnings.filterwarnings("ignore", message=".*but have no logger configured.*")
        return _benchmark_one(name, root, category, **settings)


def _in_fresh_process(job: Callable[..., BenchmarkResult], *args: Any) -> BenchmarkResult:
    """``job(*args)`` in a new spawned Python process (errors re-raised here)."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(job, *args).result()


def run_benchmark(
    root: Path,
    categories: Sequence[str],
    output: Path,
    *,
    models: Sequence[str] = MODELS,
    backbone: str = "tf_efficientnet_lite0",
    image_size: int | tuple[int, int] = 224,
    epochs: int | None = None,
    pretrained: bool = True,
    seed: int = 0,
    batch_size: int = 16,
    num_workers: int = 0,
    min_seconds: float = 3.0,
    limit_heap: bool = False,
    isolate: bool = True,
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
        image_size: Model input size, ``(height, width)`` or one side of a square.
        epochs: GaussFT's maximum epochs (``None``: its own bound, ``DEFAULT_MAX_EPOCHS``).
        pretrained: Use ImageNet weights (``False``: random weights, for smoke tests only).
        seed: Seed of the data split and of training.
        batch_size: Train and eval batch size.
        num_workers: Dataloader workers.
        min_seconds: Minimum timed wall time of each throughput measurement.
        limit_heap: Serve allocations of 1 MiB and more with ``mmap`` in every model's process
            (:func:`~anomalib_gaussft.benchmark.measure.limit_heap_fragmentation`). Off by default: every model then
            runs under the allocator its users get; on this machine the limit doubled GaussFT's fit time and halved
            every model's throughput (``docs/studies/benchmark_history.md``).
        isolate: Run every model on every category in a fresh spawned process (its fit, test and throughput);
            ``False``: all in this process, one after another (faster to start; later models inherit the heap).

    Returns:
        One :class:`BenchmarkResult` per category and model.
    """
    unknown = [name for name in models if name not in MODEL_CHOICES]
    if unknown:
        msg = f"Unknown model(s) {unknown} (setting `--models`); choose from {MODEL_CHOICES}."
        raise ValueError(msg)
    import torch

    job = functools.partial(
        _run_job, threads=torch.get_num_threads(), limit_heap=limit_heap, backbone=backbone, image_size=image_size,
        epochs=epochs, pretrained=pretrained, seed=seed, batch_size=batch_size, num_workers=num_workers,
        output=output, min_seconds=min_seconds,
    )  # fmt: skip
    results = []
    steps = len(categories) * len(models)
    for index, (category, name) in enumerate(((c, m) for c in categories for m in models), start=1):
        where = "in a fresh process" if isolate else "in this process"
        print(f"[{index}/{steps}] {name} on {category!r}: fit, test, throughput {where} ...", flush=True)
        result = _in_fresh_process(job, name, root, category) if isolate else job(name, root, category)
        print(
            f"[{index}/{steps}] {name} on {category!r}: image AUROC {result.image_auroc:.3f}, pixel AUROC "
            f"{result.pixel_auroc:.3f}, AUPRO {result.pixel_aupro:.3f}, fit {result.fit_seconds:.1f} s, "
            f"{result.throughput:.1f} images/s, peak RSS {result.peak_rss_mb:.0f} MB",
            flush=True,
        )
        results.append(result)
    return results
