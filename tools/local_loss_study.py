# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

r"""Fine-tuning aimed at what the detector reads: the Mahalanobis loss on the local feature vectors.

GaussFT's loss (the paper's) is the Mahalanobis distance of the pooled features of every level to their Gaussians,
while its anomaly map, and half of its image score, read the local feature vectors at ``map_layers`` through the
mixture of Gaussians. This study fine-tunes GaussFT, at its defaults otherwise (forgetting detection, the epoch
bound, warm-up), with one of these objectives, the Gaussians held fixed within an epoch and re-fitted between them
as for the paper's loss:

* ``global``: the paper's loss (GaussFT as it is);
* ``local``: the mean over positions of each local vector's distance to the nearest mixture component, the value
  the anomaly map shows before upsampling and smoothing;
* ``both``: the sum of the two;
* ``positional``: the paper's loss plus the mean over positions of each local vector's distance to its position's own
  Gaussian (the other half of the score map the image score reads).

Each run goes through ``anomalib-gaussft benchmark``'s own runner (same data split, metrics, raw-score AUROCs and
per-defect-type AUROCs) in this process, and writes its ``results.csv`` in the benchmark's format, so that
``anomalib-gaussft benchmark --summarise`` merges it with a benchmark run (GaussFT-fixed, PaDiM, ...).

Example:
    .. code-block:: bash

        python -m tools.local_loss_study --root ../shared/datasets --category magnetic_tile --objective local \\
            --seeds 0 1 2 --threads 1 --output results/local_loss
        python -m tools.local_loss_study --root ../shared/datasets --category magnetic_tile --objective global \\
            --lr 3e-4 --seeds 0 1 2 --threads 1 --output results/global_lr3e-4
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from anomalib_gaussft.model.lightning_model import GaussFT

__all__ = ["OBJECTIVES", "LocalLossGaussFT", "main"]

OBJECTIVES = ("global", "local", "both", "positional")


class LocalLossGaussFT(GaussFT):
    """GaussFT whose fine-tuning loss is ``objective`` (see the module docstring); everything else as GaussFT's.

    Example:
        >>> model = LocalLossGaussFT("local", backbone="resnet18", pretrained=False, image_size=(32, 32))
        >>> model.fit_gaussians([torch.rand(4, 3, 32, 32)])
        >>> model.model.train()
        GaussFTModel(...)
        >>> bool(model.objective_loss(torch.rand(2, 3, 32, 32)) > 0)
        True
        >>> positional = LocalLossGaussFT("positional", backbone="resnet18", pretrained=False, image_size=(32, 32))
        >>> positional.fit_gaussians([torch.rand(4, 3, 32, 32)])
        >>> _ = positional.model.train()
        >>> bool(torch.isfinite(positional.objective_loss(torch.rand(2, 3, 32, 32))))
        True
    """

    def __init__(self, objective: str = "local", **kwargs: Any) -> None:
        if objective not in OBJECTIVES:
            msg = f"Unknown objective {objective!r} (setting `--objective`); choose one of {OBJECTIVES}."
            raise ValueError(msg)
        super().__init__(**kwargs)
        self.objective = objective

    def objective_loss(self, images: torch.Tensor) -> torch.Tensor:
        """The study's loss of a batch of pre-processed normal images."""
        pooled, local = self.model.embed(images)
        loss = self.loss(pooled, self.model.gaussians) if self.objective != "local" else 0.0
        if self.objective in {"local", "both"}:
            loss = loss + self.model.local_mixture.distance_map(local).mean()
        if self.objective == "positional":
            loss = loss + self.model.positional_gaussians.distance_map(local).mean()
        return loss

    def training_step(self, batch: Any, *args: Any, **kwargs: Any) -> Any:
        """GaussFT's training step with :meth:`objective_loss` as the loss."""
        del args, kwargs
        if self._scoring_only(self.current_epoch):  # as GaussFT: the pretrained epoch computes no loss
            return self._zero_loss()
        loss = self.objective_loss(batch.image)
        if not torch.isfinite(loss):
            msg = f"The {self.objective} loss became {loss.item()} at step {self.global_step}."
            raise FloatingPointError(msg)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=batch.image.shape[0])
        return loss


def main(argv: Sequence[str] | None = None) -> int:
    """Run the objective on every seed through the benchmark's runner; write ``results.csv`` and print a summary."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, required=True, help="MVTec-layout dataset root")
    parser.add_argument("--category", required=True)
    parser.add_argument("--objective", choices=OBJECTIVES, default="local")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--backbone", default="tf_efficientnet_lite0")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--epochs", type=int, default=None, help="maximum epochs (default: GaussFT's own bound)")
    parser.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate (GaussFT's default 1e-4)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (use 1 on a shared machine)")
    parser.add_argument("--random-weights", action="store_true", help="random backbones (smoke tests only)")
    parser.add_argument("--min-seconds", type=float, default=3.0)
    parser.add_argument("--output", type=Path, default=Path("results") / "local_loss")
    args = parser.parse_args(argv)
    import anomalib_gaussft.benchmark.runner as runner
    from anomalib_gaussft.benchmark.results import write_csv

    if args.threads:
        torch.set_num_threads(args.threads)
    build = runner.build_model

    def build_model(name: str, backbone: str, image_size: Any, pretrained: bool) -> Any:
        if name != "GaussFT":
            return build(name, backbone, image_size, pretrained)
        reference = build(name, backbone, image_size, pretrained)  # the benchmark's settings, then ours on top
        return LocalLossGaussFT(
            args.objective, backbone=backbone, image_size=reference.image_size, pretrained=pretrained,
            fallback_backbone=None, lr=args.lr, evaluator=reference.evaluator, visualizer=False,
        )  # fmt: skip

    runner.build_model = build_model
    results = []
    try:
        for seed in args.seeds:
            results += runner.run_benchmark(
                args.root, [args.category], args.output / f"seed_{seed}", models=["GaussFT"], backbone=args.backbone,
                image_size=args.image_size, epochs=args.epochs, pretrained=not args.random_weights, seed=seed,
                min_seconds=args.min_seconds, isolate=False,
            )  # fmt: skip
    finally:
        runner.build_model = build
    args.output.mkdir(parents=True, exist_ok=True)
    for result in results:
        result.model = f"GaussFT-{args.objective}" + (f"-lr{args.lr:g}" if args.lr != parser.get_default("lr") else "")
    write_csv(results, args.output / "results.csv")
    for result in results:
        print(
            f"seed {result.seed}: raw image AUROC {result.image_auroc_raw:.4f}, raw pixel AUROC "
            f"{result.pixel_auroc_raw:.4f}, epochs {result.epochs}, kept epoch {result.best_epoch}, "
            f"fit {result.fit_seconds:.0f} s, per type {result.image_auroc_by_type}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
