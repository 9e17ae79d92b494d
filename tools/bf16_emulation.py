# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""How bfloat16 arithmetic moves GaussFT's scores: an emulation in PyTorch, for CPUs without bfloat16.

OpenVINO's CPU plugin computes convolutions in bfloat16 on CPUs that have it (bfloat16 inputs and weights, float32
accumulation, bfloat16 outputs). This script emulates that in float32 PyTorch by rounding the inputs, weights and
outputs of every convolution and linear layer of the backbone to bfloat16, and, separately, the Gaussian scoring
(mean subtraction, whitening, squared norm). It trains a fixed-feature GaussFT (one epoch through ``Engine``) on one
category and prints the rank AUROC of the raw test scores and the largest relative change of a score for:
float32, bfloat16 scoring only, bfloat16 backbone only, and both.

Example:
    .. code-block:: bash

        python -m tools.bf16_emulation --root datasets/demo_large --category gravel
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
from torch import nn

from anomalib_gaussft.evaluation import rank_auroc, score_images
from anomalib_gaussft.model import gaussian

__all__ = ["bfloat16_backbone", "bfloat16_scoring", "main", "measure"]


def _round(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.to(torch.bfloat16).float()


@contextmanager
def bfloat16_backbone(module: nn.Module) -> Iterator[None]:
    """Round the inputs, weights and outputs of every convolution and linear layer of ``module`` to bfloat16."""
    handles, weights = [], {}
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d | nn.Linear):
            weights[layer] = layer.weight.data.clone()
            layer.weight.data = _round(layer.weight.data)
            handles.append(layer.register_forward_pre_hook(lambda _, args: (_round(args[0]), *args[1:])))
            handles.append(layer.register_forward_hook(lambda _, __, output: _round(output)))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
        for layer, weight in weights.items():
            layer.weight.data = weight


@contextmanager
def bfloat16_scoring() -> Iterator[None]:
    """Compute every Mahalanobis distance with bfloat16 rounding of each intermediate result."""
    exact = gaussian.mahalanobis_distance

    def rounded(samples: torch.Tensor, mean: torch.Tensor, whitening: torch.Tensor) -> torch.Tensor:
        whitened = _round(_round(_round(samples) - _round(mean)) @ _round(whitening).T)
        return _round((whitened * whitened).sum(dim=-1)).clamp_min(1e-12).sqrt()

    gaussian.mahalanobis_distance = rounded
    try:
        yield
    finally:
        gaussian.mahalanobis_distance = exact


def measure(module: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> dict[str, tuple[float, float]]:
    """``{setting: (rank AUROC, largest relative score change against float32)}`` for the four settings."""
    reference = score_images(module, images, batch_size=32)
    results = {}
    for name, backbone, scoring in [
        ("float32", False, False),
        ("bfloat16 scoring only", False, True),
        ("bfloat16 backbone only", True, False),
        ("bfloat16 backbone and scoring", True, True),
    ]:
        with (
            bfloat16_backbone(module.model.feature_extractor) if backbone else nullcontext(),
            bfloat16_scoring() if scoring else nullcontext(),
        ):
            scores = score_images(module, images, batch_size=32)
        change = float(((scores - reference).abs() / reference.abs()).max())
        results[name] = (rank_auroc(scores[labels == 0], scores[labels == 1]), change)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tools.bf16_emulation``."""
    parser = argparse.ArgumentParser(prog="python -m tools.bf16_emulation", description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="MVTec-layout dataset root")
    parser.add_argument("--category", default="gravel")
    parser.add_argument("--backbone", default="tf_efficientnet_lite0")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from anomalib.data import MVTecAD
    from anomalib.engine import Engine

    from anomalib_gaussft import GaussFT

    datamodule = MVTecAD(root=args.root, category=args.category, num_workers=0, val_split_mode="synthetic", seed=0)
    module = GaussFT(backbone=args.backbone, fine_tune=False, visualizer=False)
    Engine(max_epochs=1, logger=False, enable_progress_bar=False, accelerator="cpu").fit(module, datamodule=datamodule)
    test = datamodule.test_data
    images = torch.stack([test[index].image for index in range(len(test))])
    labels = torch.tensor([int(test[index].gt_label) for index in range(len(test))])
    print("| arithmetic | rank AUROC | largest relative score change |\n|---|---:|---:|")
    for name, (auroc, change) in measure(module, images, labels).items():
        print(f"| {name} | {auroc:.4f} | {change:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
