# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""Where GaussFT's deployed time goes, and the deployment benchmark's ``results.md`` / ``results.csv``.

* :func:`eager_breakdown`: milliseconds per image of each stage of GaussFT's eager forward (the stages of
  :meth:`GaussFTModel.forward`, timed one by one);
* :func:`openvino_profile`: the same from OpenVINO's per-node counters, nodes attributed to stages through the
  PyTorch module scopes the dynamo exporter stores in the ONNX metadata;
* :func:`environment` and :func:`write_results`: the machine, the settings and the tables.

Example:
    >>> import numpy as np
    >>> from anomalib_gaussft import GaussFT
    >>> module = GaussFT(backbone="tf_efficientnet_lite0", pretrained=False, image_size=(32, 32), visualizer=False)
    >>> stages = eager_breakdown(module.eval(), np.zeros((2, 3, 32, 32), dtype=np.float32), repeats=1, warmup=0)
    >>> [name for name, _ in stages][-3:]  # doctest: +NORMALIZE_WHITESPACE
    ['per-position Gaussians and the score map (minimum, upsampling, blur)', 'image score (geometric)',
     'post-processing (normalise, threshold)']
"""

from __future__ import annotations

import csv
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from anomalib_gaussft.model.lightning_model import GaussFT

__all__ = ["eager_breakdown", "environment", "openvino_profile", "write_results"]

_UNATTRIBUTED = "unattributed (inserted by OpenVINO)"
_SCOPES = (  # dynamo name scope prefix -> stage (first match wins)
    ("pre_processor", "pre-processing (resize, normalise)"),
    ("post_processor", "post-processing (normalise, threshold)"),
    ("model.feature_extractor", "backbone trunk"),
    ("model.gaussians", "global Gaussians (pooled levels)"),
    ("model.local_mixture", "local mixture (every position)"),
    ("model.positional_gaussians", "per-position Gaussians"),
    ("model.anomaly_map_generator", "map upsampling and blur (anomaly and score maps)"),
    ("model", "pooling, concatenation, sums"),
)


def _blur_size(module: GaussFT) -> str:
    if module.model.anomaly_map_generator.blur is None:
        return "no blur"
    return f"blur sigma {module.model.anomaly_map_generator.sigma:g}"


def eager_breakdown(module: GaussFT, batch: np.ndarray, repeats: int, warmup: int) -> list[tuple[str, float]]:
    """Median milliseconds per image of each stage of GaussFT's eager forward on ``batch`` (see the module example).

    Args:
        module: A fitted (or, for timing only, unfitted) eval-mode GaussFT.
        batch: Raw images ``(N, 3, H, W)`` in ``[0, 1]``.
        repeats: Timed passes (the median is reported).
        warmup: Untimed passes first.

    Returns:
        ``(stage, ms per image)`` in pipeline order.
    """
    import torch

    model = module.model
    images = torch.from_numpy(batch)
    state: dict[str, Any] = {}

    def pre() -> None:
        state["x"] = module.pre_processor(images)

    def backbone() -> None:
        state["features"] = dict(zip(model.feature_extractor.layers, model.feature_extractor(state["x"]), strict=True))

    def global_gaussians() -> None:
        state["pooled"] = [state["features"][name].mean(dim=(2, 3)) for name in model.layers]
        state["global"] = model.level_distances(state["pooled"])

    def local_mixture() -> None:
        state["local_features"] = model.local_feature_map(state["features"])
        state["local"] = model.local_mixture.distance_map(state["local_features"])

    def anomaly_map() -> None:
        state["map"] = model.anomaly_map_generator(state["local"], state["x"].shape[-2:])

    def score_map() -> None:  # the map the image score reads: the anomaly map, or with per-position Gaussians its own
        state["score_map"] = state["map"]
        if model.positional_gaussians is not None:
            state["score_map"] = model.score_map(state["local_features"], state["x"].shape[-2:], state["local"])

    def image_score() -> None:
        state["score"] = model.image_score(state["pooled"], state["score_map"])

    def post_process() -> None:
        from anomalib.data import InferenceBatch

        module.post_processor(InferenceBatch(pred_score=state["score"], anomaly_map=state["map"]))

    stages: list[tuple[str, Callable[[], None]]] = [
        ("pre-processing (resize, normalise)", pre),
        ("backbone trunk", backbone),
        (f"global Gaussians ({len(model.layers)} levels, pooled)", global_gaussians),
        (
            f"local mixture ({model.local_mixture.components} x {model.local_mixture.dim}-dim, every position)",
            local_mixture,
        ),
        (f"anomaly map (upsampling, {_blur_size(module)}: one matrix per axis)", anomaly_map),
        ("per-position Gaussians and the score map (minimum, upsampling, blur)", score_map),
        (f"image score ({model.image_score_mode})", image_score),
        ("post-processing (normalise, threshold)", post_process),
    ]
    timings: dict[str, list[float]] = {name: [] for name, _ in stages}
    with torch.inference_mode():
        for repeat in range(warmup + repeats):
            for name, stage in stages:
                start = time.perf_counter()
                stage()
                if repeat >= warmup:
                    timings[name].append((time.perf_counter() - start) * 1000 / len(batch))
    return [(name, statistics.median(values)) for name, values in timings.items()]


def openvino_profile(
    xml_path: Path, onnx_path: Path, batch: np.ndarray, repeats: int, warmup: int, threads: int | None
) -> list[tuple[str, float]]:
    """Median milliseconds per image of each stage of the OpenVINO f32 GaussFT graph, from per-node counters.

    Nodes that OpenVINO inserts itself (layout reorders, fused constants) are listed as unattributed.
    """
    import onnx
    import openvino as ov

    scopes = {}
    for node in onnx.load(str(onnx_path), load_external_data=False).graph.node:
        metadata_props = {prop.key: prop.value for prop in node.metadata_props}
        names = metadata_props.get("pkg.torch.onnx.name_scopes", "[]").strip("[]").replace("'", "").split(", ")
        module = names[-2] if len(names) >= 2 else ""  # the deepest module scope; the last name is the op's
        scopes[node.name] = next((stage for prefix, stage in _SCOPES if module.startswith(prefix)), None)
    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f32", "PERF_COUNT": True}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    request = ov.Core().compile_model(str(xml_path), "CPU", config).create_infer_request()
    for _ in range(warmup):
        request.infer({0: batch})
    totals: dict[str, list[float]] = {}
    for _ in range(repeats):
        request.infer({0: batch})
        per_stage: dict[str, float] = {}
        for info in request.get_profiling_info():
            stage = scopes.get(info.node_name.split("/")[0]) or _UNATTRIBUTED
            per_stage[stage] = per_stage.get(stage, 0.0) + info.real_time.total_seconds() * 1000 / len(batch)
        for stage, value in per_stage.items():
            totals.setdefault(stage, []).append(value)
    order = [_SCOPES[i][1] for i in (0, 2, 3, 7, 4, 6, 5, 1)] + [_UNATTRIBUTED]  # pipeline order
    return [(stage, statistics.median(totals[stage])) for stage in order if stage in totals]


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def environment(settings: str, load_before: float, total_s: float, measure_s: float) -> list[str]:
    """Lines describing the machine, the library versions and the run (``settings``: the measurement settings)."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return [
        f"CPU: {cpu}, {cores} usable cores; load average before {load_before:.1f}, after {os.getloadavg()[0]:.1f}",
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), onnxruntime {_version('onnxruntime')}, "
        f"openvino {_version('openvino')}, Python {platform.python_version()}",
        settings,
        f"wall time {total_s:.0f} s, of which measuring {measure_s:.0f} s",
    ]


def write_results(
    output_dir: Path,
    command: str,
    measurements: Sequence[Any],
    breakdowns: dict[str, list[tuple[str, float]]],
    accuracy: list[tuple[str, float, float, float]],
    lines_before: list[str],
    batch_size: int,
) -> None:
    """Write ``results.csv`` (one row per measurement) and ``results.md`` (environment, speed, stages, scores)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    with (output_dir / "results.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(asdict(measurements[0])))
        writer.writeheader()
        for m in measurements:
            writer.writerow(asdict(m))
    lines = [
        "# GaussFT deployment benchmark",
        "",
        f"Command: `{command}`",
        "",
        *[f"- {line}" for line in lines_before],
        "",
        "## Speed",
        "",
        f"| model | outputs | backend | precision | images/s (batch {batch_size}) | vs backbone | "
        "latency p50 (ms) | latency p95 (ms) | per-round images/s |",
        "|---|---|---|---|---:|---:|---:|---:|---|",
    ]
    for m in measurements:
        ratio = f"{m.vs_backbone:.0%}" if m.vs_backbone is not None and m.model != "backbone" else ""
        lines.append(
            f"| {m.model} | {m.outputs} | {m.backend} | {m.precision} | {m.throughput:.1f} | {ratio} | "
            f"{m.latency_p50_ms:.1f} | {m.latency_p95_ms:.1f} | {', '.join(str(r) for r in m.rounds)} |"
        )
    titles = {
        "torch": "eager PyTorch, stage by stage",
        "openvino": "OpenVINO f32, per-node counters grouped by PyTorch module",
    }
    for backend, breakdown in breakdowns.items():
        if not breakdown:
            continue
        total = sum(ms for _, ms in breakdown)
        lines += [
            "",
            f"## GaussFT forward, {titles[backend]}, batch {batch_size}: milliseconds per image",
            "",
            "| stage | ms / image | share |",
            "|---|---:|---:|",
            *[f"| {name} | {ms:.2f} | {ms / total:.0%} |" for name, ms in breakdown],
            f"| total | {total:.2f} | 100% |",
        ]
    lines += [
        "",
        "## Scores of the deployed GaussFT against eager PyTorch (demo test images)",
        "",
        "| runtime | max abs. score difference | label agreement (off the threshold) | image AUROC |",
        "|---|---:|---:|---:|",
        *[f"| {name} | {diff:.2e} | {agree:.0%} | {auroc:.3f} |" for name, diff, agree, auroc in accuracy],
        "",
    ]
    (output_dir / "results.md").write_text("\n".join(lines))
