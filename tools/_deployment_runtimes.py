# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""What ``tools/deployment_benchmark.py`` exports and runs: GaussFT's variants, ONNX/OpenVINO files, runtime calls.

* :func:`score_only_module`: GaussFT without the anomaly-map branch (pre-processing, backbone, pooled Gaussians,
  anomalib's score normalisation and label), through :meth:`GaussFTModel.embed` with ``with_local=False`` and
  :meth:`GaussFTModel.image_score`;
* :func:`trunk_module`: the backbone trunk GaussFT runs, deepest level out;
* :func:`export_onnx` / :func:`onnx_to_openvino`: the two halves of anomalib's ``to_openvino`` for plain modules;
* :func:`torch_runner`, :func:`onnxruntime_runner`, :func:`openvino_runner`: one ``run(images)`` call per backend;
* :func:`measure`: throughput (:func:`anomalib_gaussft.benchmark.measure.measure_throughput`) and batch-1 latency;
  :func:`measure_rounds`: all variants in interleaved rounds, the best round kept.

Example:
    >>> import numpy as np
    >>> from anomalib_gaussft import GaussFT
    >>> module = GaussFT(backbone="tf_efficientnet_lite0", pretrained=False, image_size=(32, 32), visualizer=False)
    >>> run = torch_runner(trunk_module(module))
    >>> run(np.zeros((2, 3, 32, 32), dtype=np.float32)).shape  # the head: 1280 channels at stride 32
    torch.Size([2, 1280, 1, 1])
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from anomalib_gaussft.benchmark.measure import measure_throughput

if TYPE_CHECKING:
    import torch
    from torch import nn

    from anomalib_gaussft.model.lightning_model import GaussFT

__all__ = [
    "export_onnx",
    "measure",
    "measure_rounds",
    "onnx_to_openvino",
    "onnxruntime_runner",
    "openvino_default_precision",
    "openvino_runner",
    "score_only_module",
    "static_batch",
    "torch_runner",
    "trunk_module",
]

Runner = Callable[[np.ndarray], Any]
logger = logging.getLogger("tools.deployment_benchmark")


def measure(
    run: Runner, batch: np.ndarray, single: np.ndarray, batches: int, calls: int, warmup: int
) -> tuple[float, float, float]:
    """Throughput (images/s) of ``batches`` calls on ``batch`` and batch-1 latency p50 / p95 (ms) of ``calls`` calls.

    Example:
        >>> images = np.zeros((4, 3, 8, 8), dtype=np.float32)
        >>> throughput, p50, p95 = measure(lambda x: x.sum(), images, images[:1], batches=2, calls=5, warmup=1)
        >>> throughput > 0 and 0 <= p50 <= p95
        True
    """
    throughput = measure_throughput(run, batch, min_seconds=0.0, min_runs=batches, warmup=warmup).images_per_second
    for _ in range(warmup):
        run(single)
    latencies = []
    for _ in range(calls):
        start = time.perf_counter()
        run(single)
        latencies.append((time.perf_counter() - start) * 1000)
    return throughput, float(np.percentile(latencies, 50)), float(np.percentile(latencies, 95))


def measure_rounds(
    candidates: list[tuple[Any, Runner]], batch: np.ndarray, rounds: int, batches: int, calls: int, warmup: int
) -> tuple[list[Any], list[float]]:
    """Measure every candidate in interleaved rounds, grouped by backend; keep the best round of each.

    Args:
        candidates: ``(measurement, run)`` pairs; the measurements (``model``, ``backend``, ``precision`` set) are
            filled in: best throughput and latencies, per-round throughputs, ratio to the backbone.
        batch: The throughput batch; its first image is the latency input.
        rounds: Interleaved rounds.
        batches: Timed batches per throughput measurement.
        calls: Timed batch-1 calls per latency measurement.
        warmup: Untimed calls before each measurement.

    Returns:
        The measurements in table order, and the 1-minute load average at the start of each round.
    """
    order = ("openvino", "onnxruntime", "torch")
    models = ("backbone", "gaussft-score", "gaussft", "padim", "patchcore")
    candidates = sorted(candidates, key=lambda c: (order.index(c[0].backend), c[0].precision != "f32",
                                                   c[0].precision, models.index(c[0].model)))  # fmt: skip
    results: list[list[tuple[float, float, float]]] = [[] for _ in candidates]
    loads = []
    for round_index in range(rounds):
        loads.append(os.getloadavg()[0])
        for (m, run), result in zip(candidates, results, strict=True):
            result.append(measure(run, batch, batch[:1].copy(), batches, calls, warmup))
            logger.info("round %d %s/%s/%s: %.1f img/s", round_index, m.model, m.backend, m.precision, result[-1][0])
    measurements = []
    for (m, _), result in zip(candidates, results, strict=True):
        throughputs, p50s, p95s = zip(*result, strict=True)
        m.throughput, m.latency_p50_ms, m.latency_p95_ms = max(throughputs), min(p50s), min(p95s)
        m.rounds = [round(value, 1) for value in throughputs]
        measurements.append(m)
    for m in measurements:
        backbones = {b.precision: b for b in measurements if b.model == "backbone" and b.backend == m.backend}
        limit = backbones.get(m.precision, backbones.get("f32"))
        m.vs_backbone = m.throughput / limit.throughput if limit else None
    return measurements, loads


def torch_runner(module: nn.Module) -> Runner:
    """Eager PyTorch under ``inference_mode`` (see the module example)."""
    import torch

    module.eval()

    def run(images: np.ndarray) -> Any:
        with torch.inference_mode():
            return module(torch.from_numpy(images))

    return run


def onnxruntime_runner(path: Path, threads: int | None) -> Runner:
    """An ONNX Runtime CPU session (``threads``: intra-op threads; ``None``: its default)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda images: session.run(None, {name: images})


def openvino_runner(path: Path | dict[int, Path], threads: int | None, precision: str | None = "f32") -> Runner:
    """Compile for the CPU; ``precision=None`` keeps the plugin's default inference precision.

    ``path`` may map batch sizes to models, for exports whose batch dimension is static.
    """
    import openvino as ov

    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": precision} if precision else {}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    core = ov.Core()
    paths = path if isinstance(path, dict) else {0: path}
    requests = {size: core.compile_model(str(p), "CPU", config).create_infer_request() for size, p in paths.items()}

    def run(images: np.ndarray) -> Any:
        return requests.get(len(images), requests.get(0)).infer({0: images})

    return run


def static_batch(xml_path: Path) -> bool:
    """Whether the OpenVINO model's batch dimension is static."""
    import openvino as ov

    return ov.Core().read_model(str(xml_path)).input(0).partial_shape[0].is_static


def openvino_default_precision() -> str:
    """The CPU plugin's default inference precision (``f32``, or ``bf16`` on CPUs with AVX512-BF16 or AMX)."""
    import openvino as ov

    return ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()


def score_only_module(module: GaussFT) -> nn.Module:
    """GaussFT without the anomaly-map branch: normalised image score and label only.

    Raises:
        ValueError: If the model scores images with ``image_score="geometric"``, which needs the map branch.
    """
    from torch import nn

    if module.model.image_score_mode != "global":
        msg = f"The score-only variant needs image_score='global', got {module.model.image_score_mode!r}."
        raise ValueError(msg)

    class ImageScoreOnly(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.pre_processor = module.pre_processor
            self.model = module.model
            self.post_processor = module.post_processor

        def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            pooled, _ = self.model.embed(self.pre_processor(images), with_local=False)
            post = self.post_processor
            score = post._normalize(  # anomalib's own normalisation
                self.model.image_score(pooled), post.image_min, post.image_max, post.image_threshold
            )
            return score, score > post.normalized_image_threshold

    return ImageScoreOnly().eval()


def trunk_module(module: GaussFT) -> nn.Module:
    """The backbone trunk GaussFT runs (its feature extractor), returning the deepest level only."""
    from torch import nn

    class Trunk(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.extractor = module.model.feature_extractor

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return self.extractor(images)[-1]

    return Trunk().eval()


def export_onnx(module: nn.Module, path: Path, image_size: int, output_names: list[str]) -> Path:
    """Export a plain module like anomalib's ``to_onnx``: dynamo exporter, opset 18, dynamic batch."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(2, 3, image_size, image_size)
    torch.onnx.export(
        module,
        (example,),
        str(path),
        dynamo=True,
        opset_version=18,
        input_names=["input"],
        output_names=output_names,
        dynamic_shapes=({0: torch.export.Dim("batch_size")},),
    )
    return path


def onnx_to_openvino(onnx_path: Path, xml_path: Path) -> Path:
    """The second half of anomalib's ``to_openvino``: ``ov.convert_model`` and ``ov.save_model`` (no FP16)."""
    import openvino as ov

    xml_path.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(ov.convert_model(onnx_path), xml_path, compress_to_fp16=False)
    return xml_path
