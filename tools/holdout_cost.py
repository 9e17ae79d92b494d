# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""What forgetting detection's held-out images cost the Gaussians: fixed features fitted with and without them.

For each category and seed, anomalib's datamodule makes its validation split (``val_split_mode``, ``seed``), then
:class:`~anomalib_gaussft.forgetting.ForgettingDetection` (seed ``seed``) chooses its held-out normals exactly as in
training, by its own ``setup``: the validation set's normals first, then images it removes from the training set.
GaussFT with fixed ImageNet features is fitted twice through :meth:`GaussFT.fit_gaussians
<anomalib_gaussft.GaussFT.fit_gaussians>`: on the remaining training images, and on those plus the removed ones
(``extra_images``, as :meth:`GaussFT.refit_with_held_out <anomalib_gaussft.GaussFT.refit_with_held_out>` does when
training ends). Each is scored on the test set: rank AUROC of the raw image scores.

Example:
    .. code-block:: bash

        python -m tools.holdout_cost --root datasets/demo_large --categories grass gravel --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace

import torch

from tools._csv import write_rows

__all__ = ["HoldoutCost", "holdout_cost", "main"]


@dataclass(frozen=True)
class HoldoutCost:
    """Test image AUROC (raw scores) of one category and seed, fitted without and with the held-out images."""

    category: str
    seed: int
    n_training: int
    n_removed: int
    auroc_without: float
    auroc_with: float


def holdout_cost(
    root: Path, category: str, seed: int, val_split_mode: str = "synthetic", **model_kwargs: object
) -> HoldoutCost:
    """Fit fixed-feature GaussFT on ``category`` without and with the images forgetting detection holds out."""
    from anomalib.data import MVTecAD
    from anomalib.data.utils import read_image

    from anomalib_gaussft import ForgettingDetection, GaussFT
    from anomalib_gaussft.evaluation import rank_auroc, score_images

    datamodule = MVTecAD(
        root=root, category=category, train_batch_size=16, eval_batch_size=16, num_workers=0,
        val_split_mode=val_split_mode, val_split_ratio=0.2, seed=seed,
    )  # fmt: skip
    datamodule.setup()
    model_kwargs = {"backbone": "tf_efficientnet_lite0", "fallback_backbone": None, **model_kwargs}
    detector = ForgettingDetection(seed=seed)
    trainer = SimpleNamespace(datamodule=datamodule)
    detector.setup(trainer, GaussFT(**model_kwargs, fine_tune=False), "fit")  # removes its hold-out from training
    removed = torch.stack([read_image(path, as_tensor=True) for path in detector.removed_from_training])
    test = datamodule.test_data.samples
    images = torch.stack([read_image(path, as_tensor=True) for path in test.image_path])
    labels = torch.as_tensor(test.label_index.to_numpy() == 1)
    aurocs = []
    for extra in (None, removed):
        model = GaussFT(**model_kwargs, fine_tune=False)
        model.fit_gaussians(datamodule.train_dataloader(), extra_images=extra)
        scores = score_images(model, images, batch_size=16)
        aurocs.append(rank_auroc(scores[~labels], scores[labels]))
    return HoldoutCost(category, seed, len(datamodule.train_data), len(removed), *aurocs)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tools.holdout_cost``."""
    parser = argparse.ArgumentParser(prog="python -m tools.holdout_cost", description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="An MVTec AD-layout dataset (e.g. the demo data)")
    parser.add_argument("--categories", nargs="+", required=True)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--val-split-mode", default="synthetic")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", type=Path, default=Path("results/holdout_cost"))
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    args.output.mkdir(parents=True, exist_ok=True)
    rows = []
    for category in args.categories:
        for seed in args.seeds:
            row = holdout_cost(args.root, category, seed, args.val_split_mode)
            rows.append(asdict(row))
            print(
                f"{category} seed {seed}: {row.n_training} training images, {row.n_removed} held out: AUROC "
                f"{row.auroc_without:.4f} without them, {row.auroc_with:.4f} with them "
                f"({row.auroc_with - row.auroc_without:+.4f})",
                flush=True,
            )
            write_rows(args.output / "holdout_cost.csv", rows)
    gains = [row["auroc_with"] - row["auroc_without"] for row in rows]
    print(f"mean change with the held-out images: {sum(gains) / len(gains):+.4f} over {len(gains)} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
