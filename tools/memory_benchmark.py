# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""Peak memory of GaussFT's Gaussian fit for different numbers of training images.

The fit (:meth:`~anomalib_gaussft.GaussFT.fit_gaussians`) streams the training set batch by batch into float64
moment accumulators (:class:`~anomalib_gaussft.model.gaussian.StreamingGaussianEstimator`), so its memory is set by the
feature dimensions and the batch size, not by the number of images. This module measures that: it fits a GaussFT
model on ``n`` synthetic images (generated on the fly, so no dataset sits in memory) and reports the peak resident
set size (RSS) during the fit over the RSS before it, from the kernel's peak counter reset just before the fit
(:mod:`anomalib_gaussft.benchmark.measure`: Linux ``VmHWM``; elsewhere the process's lifetime peak, an upper
bound). For comparison it also reports what a fit that kept every feature vector in memory (as PaDiM-style
estimators do) would need.

The command runs each measurement in a fresh Python process, so that memory freed by one run cannot hide growth in
the next.

Example:
    From the command line::

        python -m tools.memory_benchmark --images 100 2000

    or for one count, in this process:

    >>> from tools.memory_benchmark import measure_fit_memory
    >>> result = measure_fit_memory(8, image_size=32, batch_size=4, layers=["blocks.2"], map_layers=["blocks.2"])
    >>> result["n_samples"], result["peak_rss_mib"] >= result["rss_before_mib"]
    (8, True)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from anomalib_gaussft.benchmark.measure import current_rss_mb, peak_rss_mb, release_free_memory, reset_peak_rss

__all__ = ["SyntheticImages", "measure_fit_memory", "run_in_subprocesses"]

_MIB = 1024**2


class SyntheticImages(Dataset):
    """Deterministic random RGB images in ``[0, 1]``, made when indexed (nothing is stored).

    Args:
        n_images: Number of images.
        image_size: Height and width in pixels.
        seed: Base seed; image ``i`` uses ``seed + i``.
    """

    def __init__(self, n_images: int, image_size: int, seed: int = 0) -> None:
        self.n_images = n_images
        self.image_size = image_size
        self.seed = seed

    def __len__(self) -> int:
        return self.n_images

    def __getitem__(self, index: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed + index)
        coarse = torch.rand(1, 3, self.image_size // 8, self.image_size // 8, generator=generator)
        size = (self.image_size, self.image_size)
        return torch.nn.functional.interpolate(coarse, size=size, mode="bilinear", align_corners=False)[0]


class _CountingLoader:
    """Iterates a dataloader and counts the images it yields in each pass."""

    def __init__(self, loader: DataLoader) -> None:
        self.loader = loader
        self.passes: list[int] = []

    def __iter__(self) -> Iterator[torch.Tensor]:
        self.passes.append(0)
        for batch in self.loader:
            self.passes[-1] += batch.shape[0]
            yield batch


def measure_fit_memory(
    n_images: int,
    backbone: str = "tf_efficientnet_lite0",
    image_size: int = 224,
    batch_size: int = 32,
    layers: Sequence[str] | None = None,
    map_layers: Sequence[str] | None = None,
    max_local_vectors: int | None = None,
) -> dict[str, Any]:
    """Fit GaussFT's Gaussians on ``n_images`` synthetic images in this process and measure the memory it takes.

    The backbone is randomly initialised (the weights do not change the memory). Before the measurement one batch
    is fitted once, so that lazily allocated buffers (allocator pools, convolution workspaces) are not counted.

    Args:
        n_images: Number of training images.
        backbone: timm backbone name.
        image_size: Input size in pixels (square).
        batch_size: Batch size of the fit.
        layers: GaussFT ``layers`` (``None``: every level).
        map_layers: GaussFT ``map_layers`` (``None``: the default).
        max_local_vectors: Most local vectors the anomaly map's mixture keeps (``None``: GaussFT's default).

    Returns:
        ``n_images``, ``n_samples`` (images the Gaussians were fitted on),
        ``passes`` (passes over the images: one), ``rss_before_mib``, ``peak_rss_mib``,
        ``peak_increase_mib`` (peak during the fit minus the RSS before it), ``peak_since_reset`` (``False`` where
        the peak counter could not be reset: the peak is then the process's lifetime peak),
        ``estimator_state_mib`` (float64 moment accumulators and the local sample, at most ``max_local_vectors``),
        ``store_all_features_mib`` (what keeping every
        pooled and local feature vector in float32 would take), ``seconds`` and the settings.
    """
    from anomalib_gaussft.model.lightning_model import GaussFT

    torch.manual_seed(0)
    model = GaussFT(
        backbone=backbone,
        pretrained=False,
        image_size=(image_size, image_size),
        layers=list(layers) if layers is not None else None,
        map_layers=list(map_layers) if map_layers is not None else None,
        forgetting_detection=False,
        evaluator=False,
        visualizer=False,
    )
    if max_local_vectors is not None:
        model.model.max_local_vectors = max_local_vectors
    model.fit_gaussians(DataLoader(SyntheticImages(batch_size, image_size, seed=10**6), batch_size=batch_size))

    loader = _CountingLoader(DataLoader(SyntheticImages(n_images, image_size), batch_size=batch_size))
    release_free_memory()  # else the fit could reuse resident free memory and its growth go unseen
    kernel_peak = reset_peak_rss()
    before = current_rss_mb()
    start = time.perf_counter()
    model.fit_gaussians(loader)
    seconds = time.perf_counter() - start
    peak = peak_rss_mb()

    dims = [gaussian.dim for gaussian in model.model.gaussians]
    local_dim = model.model.local_mixture.dim
    with torch.no_grad():
        model.model.eval()
        _, local = model.model.embed(torch.zeros(1, 3, image_size, image_size))
    positions = local.shape[-2] * local.shape[-1]
    # float64 moments per global level (shift, sums, sum_outer, scalars) and the capped float32 local sample
    local_sample = min(n_images * positions, model.model.max_local_vectors)
    estimator_bytes = sum(8 * (p * p + 2 * p + 3) for p in dims) + 4 * local_sample * local_dim
    store_all_bytes = 4 * n_images * (sum(dims) + positions * local_dim)
    return {
        "n_images": n_images,
        "n_samples": loader.passes[0],
        "passes": len(loader.passes),
        "backbone": backbone,
        "image_size": image_size,
        "batch_size": batch_size,
        "rss_before_mib": round(before, 1),
        "peak_rss_mib": round(peak, 1),
        "peak_increase_mib": round(peak - before, 1),
        "peak_since_reset": kernel_peak,
        "estimator_state_mib": round(estimator_bytes / _MIB, 2),
        "store_all_features_mib": round(store_all_bytes / _MIB, 1),
        "seconds": round(seconds, 1),
    }


def run_in_subprocesses(counts: Sequence[int], **kwargs: Any) -> list[dict[str, Any]]:
    """Run :func:`measure_fit_memory` for every count, each in a fresh Python process.

    Args:
        counts: Numbers of images.
        **kwargs: Further arguments of :func:`measure_fit_memory`.

    Returns:
        One result dictionary per count.
    """
    results = []
    repository = Path(__file__).resolve().parents[1]  # where `tools` imports from
    for count in counts:
        code = (
            "import json, sys\n"
            "from tools.memory_benchmark import measure_fit_memory\n"
            f"print('RESULT ' + json.dumps(measure_fit_memory({int(count)}, **json.loads(sys.argv[1]))))\n"
        )
        completed = subprocess.run(
            [sys.executable, "-c", code, json.dumps(kwargs)], capture_output=True, text=True, check=False,
            cwd=repository,
        )  # fmt: skip
        lines = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")]
        if completed.returncode != 0 or not lines:
            msg = f"Memory measurement for {count} images failed:\n{completed.stderr[-2000:]}"
            raise RuntimeError(msg)
        results.append(json.loads(lines[-1].removeprefix("RESULT ")))
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: print a Markdown table (and the JSON) of the measurements.

    Args:
        argv: Arguments without the program name; ``None`` reads ``sys.argv``.

    Returns:
        The exit status (0).
    """
    parser = argparse.ArgumentParser(prog="python -m tools.memory_benchmark", description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, nargs="+", default=[100, 2000], help="numbers of training images")
    parser.add_argument("--backbone", default="tf_efficientnet_lite0")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    results = run_in_subprocesses(
        args.images, backbone=args.backbone, image_size=args.image_size, batch_size=args.batch_size
    )
    print("| images | peak RSS increase in the fit (MiB) | estimator state (MiB) | store-all-features fit (MiB) | s |")
    print("|---:|---:|---:|---:|---:|")
    for result in results:
        print(
            f"| {result['n_images']} | {result['peak_increase_mib']} | {result['estimator_state_mib']} | "
            f"{result['store_all_features_mib']} | {result['seconds']} |"
        )
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
