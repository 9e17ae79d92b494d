# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

r"""Which fine-tuning recipe of GaussFT's Mahalanobis objective beats fixed features, chosen without test labels.

Plain PyTorch on :class:`~anomalib_gaussft.model.GaussFTModel` (global levels only; the anomaly map is not used).
Per recipe, category and seed it holds out ``--holdout`` normal training images (the seed picks them and the batch
order), fine-tunes on the rest and records per epoch (epoch 0 = the pretrained network, i.e. fixed features):

* the raw-score test image AUROC (:func:`~anomalib_gaussft.evaluation.rank_auroc`) with the scoring Gaussians
  re-fitted on all training images, both for the sum of the per-level distances (GaussFT's ``image_score``) and
  for the sum of ``d_l / sqrt(p_l)``; a recipe reports the one matching its loss weighting;
* the label-free selection signal of :class:`~anomalib_gaussft.forgetting.ForgettingDetection`: the pseudo-AUROC
  of the held-out normals against pseudo-anomalies made from them by all its generators; the chosen epoch is
  :func:`~anomalib_gaussft.forgetting.select_epoch` on that curve (latest best, the callback's default patience; it
  was 3 when ``docs/studies/recipes.md`` was recorded);
* the training loss, and in epoch 1 the loss of the first two batches (the second after one optimiser step).

Images are resized once per category and cached as uint8 tensors under ``--cache``; the test set is scored every
``--test-every`` epochs (and at the chosen epoch). ``docs/studies/recipes.md`` has the commands and the results.

Example:
    .. code-block:: bash

        python -m tools.recipe_study --root /work/data/demo_large --recipes baseline sqrtp --seeds 0 --epochs 6 \
            --output runs/recipes
        python -m tools.recipe_study --summarise runs/recipes/rows.csv
"""

from __future__ import annotations

import argparse
import copy
import csv
import math
import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from anomalib_gaussft.evaluation import rank_auroc
from anomalib_gaussft.forgetting import PSEUDO_ANOMALIES, build_pseudo_anomalies, select_epoch
from anomalib_gaussft.model.torch_model import GaussFTModel

__all__ = ["RECIPES", "Recipe", "fit_level_gaussians", "run_recipe", "summarise"]

WEIGHTINGS = ("sum", "sqrtp")


@dataclass(frozen=True)
class Recipe:
    """One fine-tuning recipe.

    Attributes:
        name: Short name (``--recipes``).
        lr: Adam learning rate.
        weighting: ``"sum"``: loss and score are the sum of the per-level distances (GaussFT today); ``"sqrtp"``:
            each level's distance divided by ``sqrt(p_l)`` (levels weighted equally).
        cross_fit: Each epoch, split the training images into two folds and compute each image's loss against the
            Gaussians fitted on the other fold (an out-of-sample distance). Scoring still uses all training images.
        warmup_steps: Linear learning-rate warm-up over this many optimiser steps (0: none).
        frozen: Parameter-name prefixes of the feature extractor that are not trained.
        refit_loss_gaussian: Re-fit the loss Gaussians every epoch; ``False`` keeps the pretrained fit (fixed centre).
    """

    name: str
    lr: float = 1e-4
    weighting: str = "sum"
    cross_fit: bool = False
    warmup_steps: int = 0
    frozen: tuple[str, ...] = ()
    refit_loss_gaussian: bool = True


_EARLY = ("conv_stem.", "bn1.", "blocks.0.", "blocks.1.")
RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe("baseline"),
        Recipe("sqrtp", weighting="sqrtp"),
        Recipe("crossfit", cross_fit=True),
        Recipe("sqrtp_crossfit", weighting="sqrtp", cross_fit=True),
        Recipe("sqrtp_warmup", weighting="sqrtp", warmup_steps=12),
        Recipe("sqrtp_crossfit_warmup", weighting="sqrtp", cross_fit=True, warmup_steps=12),
        Recipe("sqrtp_crossfit_frozen", weighting="sqrtp", cross_fit=True, frozen=_EARLY),
        Recipe("sqrtp_crossfit_3e-4", lr=3e-4, weighting="sqrtp", cross_fit=True),
        Recipe("sqrtp_fixedcentre", weighting="sqrtp", refit_loss_gaussian=False),
        Recipe("warmup_frozen_3e-4", lr=3e-4, warmup_steps=12, frozen=_EARLY),
        Recipe("warmup_frozen_1e-3", lr=1e-3, warmup_steps=12, frozen=_EARLY),
    )
}
"""The named recipes; ``baseline`` is GaussFT's default (Adam 1e-4, all levels summed, re-fit every epoch)."""


def fit_level_gaussians(model: GaussFTModel, pooled: Sequence[torch.Tensor]) -> nn.ModuleList:
    """Gaussians of the global levels fitted on pooled features (the only use of the estimator API here).

    Example:
        >>> model = GaussFTModel("tf_efficientnet_lite0", pretrained=False, layers=["blocks.2", "head"])
        >>> fits = fit_level_gaussians(model, [torch.randn(6, 40), torch.randn(6, 1280)])
        >>> [g.dim for g in fits], bool(fits[0].fitted)
        ([40, 1280], True)
    """
    gaussians = copy.deepcopy(model.gaussians)
    estimators = model.new_estimators("cpu").levels
    for gaussian, estimator, features in zip(gaussians, estimators, pooled, strict=True):
        estimator.update(features.detach())
        gaussian.load_fit(estimator.fit())
    return gaussians


def level_distances(gaussians: Sequence[nn.Module], pooled: Sequence[torch.Tensor]) -> torch.Tensor:
    """Distances ``(N, L)`` of pooled features to the given per-level Gaussians."""
    return torch.stack([gaussian(features) for gaussian, features in zip(gaussians, pooled, strict=True)], dim=1)


def level_weights(model: GaussFTModel, weighting: str) -> torch.Tensor:
    """Per-level weights ``(L,)`` of a weighting: ones, or ``1 / sqrt(p_l)``."""
    if weighting not in WEIGHTINGS:
        msg = f"Unknown weighting {weighting!r} (Recipe.weighting); choose one of {WEIGHTINGS}."
        raise ValueError(msg)
    dims = torch.tensor([float(g.dim) for g in model.gaussians])
    return torch.ones_like(dims) if weighting == "sum" else dims.rsqrt()


@dataclass
class CategoryData:
    """A category's images, resized to the input size and stored as uint8 ``(N, 3, H, W)``."""

    train: torch.Tensor
    test: torch.Tensor
    test_labels: torch.Tensor


def load_category(root: Path, category: str, image_size: int, cache: Path | None = None) -> CategoryData:
    """Read and resize a category once (anomalib's reader, GaussFT's resize), cached as uint8 tensors."""
    path = None if cache is None else cache / f"{category}_{image_size}px.pt"
    if path is not None and path.is_file():
        return CategoryData(**torch.load(path))
    from torchvision.transforms.v2 import Resize

    from tools.loss_dynamics import load_split

    resize = Resize((image_size, image_size), antialias=True)
    train, _ = load_split(root, category, "train", resize)
    test, labels = load_split(root, category, "test", resize)
    to_uint8 = lambda x: (x.clamp(0, 1) * 255).round().to(torch.uint8)  # noqa: E731
    data = CategoryData(to_uint8(train), to_uint8(test), labels)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(vars(data), path)
    return data


def subsample_test(data: CategoryData, per_class: int | None) -> CategoryData:
    """At most ``per_class`` normal and ``per_class`` anomalous test images, the same for every seed and recipe."""
    if per_class is None:
        return data
    order = torch.randperm(len(data.test_labels), generator=torch.Generator().manual_seed(0))
    keep = torch.cat([order[data.test_labels[order] == label][:per_class] for label in (0, 1)]).sort().values
    return CategoryData(data.train, data.test[keep], data.test_labels[keep])


class Scorer:
    """Pooled features of uint8 images through the model in eval mode, normalised as GaussFT's pre-processor does."""

    def __init__(self, model: GaussFTModel, batch_size: int = 32) -> None:
        self.model = model
        self.batch_size = batch_size
        self.mean = torch.tensor(model.feature_extractor.mean).view(1, -1, 1, 1)
        self.std = torch.tensor(model.feature_extractor.std).view(1, -1, 1, 1)

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 or ``[0, 1]`` float images to the backbone's normalised input (channels-last, faster on CPU)."""
        images = images.float() / 255 if images.dtype == torch.uint8 else images
        return ((images - self.mean) / self.std).contiguous(memory_format=torch.channels_last)

    @torch.no_grad()
    def pooled(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Pooled features per level of all images, in eval mode."""
        self.model.eval()
        chunks = [
            self.model.embed(self.normalise(images[i : i + self.batch_size]), with_local=False)[0]
            for i in range(0, len(images), self.batch_size)
        ]
        return [torch.cat(level) for level in zip(*chunks, strict=True)]


def _aurocs(model: GaussFTModel, gaussians: nn.ModuleList, normal: list, anomalous: list) -> dict[str, float]:
    """AUROC of both score weightings for pooled features of normal and anomalous images."""
    out = {}
    for weighting in WEIGHTINGS:
        w = level_weights(model, weighting)
        scores = [(level_distances(gaussians, pooled) * w).sum(dim=1) for pooled in (normal, anomalous)]
        out[weighting] = rank_auroc(*scores)
    return out


def run_recipe(
    recipe: Recipe,
    model: GaussFTModel,
    data: CategoryData,
    *,
    seed: int = 0,
    epochs: int = 6,
    batch_size: int = 16,
    holdout: int = 8,
    test_every: int = 1,
    epoch0: dict | None = None,
    log: bool = True,
) -> list[dict]:
    """Fine-tune ``model`` (modified in place) with ``recipe`` and return one row per epoch (epoch 0 first).

    Args:
        recipe: The recipe.
        model: A freshly built or reset model (its current weights are the starting point).
        data: The category's images.
        seed: Seed of the held-out split, the pseudo-anomalies, the batch order and the folds.
        epochs: Fine-tuning epochs after epoch 0.
        batch_size: Training batch size.
        holdout: Normal training images held out for the pseudo-AUROC (not trained on, not in the Gaussians).
        test_every: Score the test set every this many epochs (epoch 0, the last and the chosen epoch always).
        epoch0: Cache of epoch 0 by seed, shared by the recipes of one category (same pretrained weights, same data).
        log: Print one line per epoch.
    """
    scorer = Scorer(model)
    generator = torch.Generator().manual_seed(seed)
    permutation = torch.randperm(len(data.train), generator=generator)
    held, train = data.train[permutation[:holdout]], data.train[permutation[holdout:]]
    normal = held.float() / 255
    pseudo = [
        augment(normal, torch.Generator().manual_seed(seed * 1000 + index + 1))[0]
        for index, augment in enumerate(build_pseudo_anomalies(list(PSEUDO_ANOMALIES)).values())
    ]  # as ForgettingDetection makes them
    val_images = torch.cat([normal, *pseudo])
    test_normal, test_anomalous = data.test[data.test_labels == 0], data.test[data.test_labels == 1]
    weights = level_weights(model, recipe.weighting)
    for name, parameter in model.feature_extractor.named_parameters():
        parameter.requires_grad_(not name.startswith(recipe.frozen) if recipe.frozen else True)
    parameters = [p for p in model.feature_extractor.parameters() if p.requires_grad]
    optimiser = torch.optim.Adam(parameters, lr=recipe.lr)
    warmup = max(recipe.warmup_steps, 1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: min(1.0, (step + 1) / warmup))

    def evaluate(epoch: int, train_pooled: list[torch.Tensor], with_test: bool) -> dict:
        gaussians = fit_level_gaussians(model, train_pooled)  # the scoring Gaussians: all training images
        val = scorer.pooled(val_images)
        n = len(normal)
        aurocs = _aurocs(model, gaussians, [f[:n] for f in val], [f[n:] for f in val])
        row = {"epoch": epoch} | {f"pseudo_auroc_{k}": v for k, v in aurocs.items()}
        if with_test:
            aurocs = _aurocs(model, gaussians, scorer.pooled(test_normal), scorer.pooled(test_anomalous))
            row |= {f"test_auroc_{k}": v for k, v in aurocs.items()}
        return row

    start = time.time()
    if epoch0 is not None and seed in epoch0:  # epoch 0 does not depend on the recipe: the same pretrained network
        train_pooled, row0 = epoch0[seed]
    else:
        train_pooled = scorer.pooled(train)
        row0 = evaluate(0, train_pooled, True)
        if epoch0 is not None:
            epoch0[seed] = (train_pooled, row0)
    loss_gaussians = fit_level_gaussians(model, train_pooled)  # kept by the fixed-centre recipe
    rows = [dict(row0)]
    states: dict[int, dict] = {}
    for epoch in range(1, epochs + 1):
        if recipe.cross_fit:
            fold = torch.randperm(len(train), generator=generator) % 2
            fold_gaussians = [fit_level_gaussians(model, [f[fold == k] for f in train_pooled]) for k in (0, 1)]
        elif recipe.refit_loss_gaussian:
            loss_gaussians = fit_level_gaussians(model, train_pooled)
        order = torch.randperm(len(train), generator=generator)
        model.train()
        losses = []
        for i in range(0, len(train), batch_size):
            index = order[i : i + batch_size]
            pooled, _ = model.embed(scorer.normalise(train[index]), with_local=False)
            if recipe.cross_fit:  # each image against the Gaussians of the fold it is not in
                other = (1 - fold[index]).unsqueeze(1)
                distances = torch.where(
                    other == 0, level_distances(fold_gaussians[0], pooled), level_distances(fold_gaussians[1], pooled)
                )
            else:
                distances = level_distances(loss_gaussians, pooled)
            loss = (distances * weights).sum(dim=1).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            scheduler.step()
            losses.append(float(loss.detach()))
        train_pooled = scorer.pooled(train)
        with_test = epoch % test_every == 0 or epoch == epochs
        row = evaluate(epoch, train_pooled, with_test) | {"train_loss": statistics.fmean(losses)}
        if epoch == 1:
            row |= {"step1_loss": losses[0], "step2_loss": losses[1] if len(losses) > 1 else math.nan}
        if not with_test:
            states[epoch] = {k: v.clone() for k, v in model.feature_extractor.state_dict().items()}
        rows.append(row)
        if log:
            print(
                f"  {recipe.name} seed {seed} epoch {epoch}: loss {row['train_loss']:.3g} "
                f"pseudo {row[f'pseudo_auroc_{recipe.weighting}']:.4f} "
                f"test {row.get(f'test_auroc_{recipe.weighting}', math.nan):.4f} ({time.time() - start:.0f} s)",
                flush=True,
            )
    for weighting in WEIGHTINGS:  # the epoch the label-free rule picks for either score: its test AUROC is needed
        chosen, _ = select_epoch([row[f"pseudo_auroc_{weighting}"] for row in rows])
        if chosen in states and f"test_auroc_{weighting}" not in rows[chosen]:
            model.feature_extractor.load_state_dict(states[chosen])
            rows[chosen] |= evaluate(chosen, scorer.pooled(train), True)
    for row in rows:
        row["pseudo_auroc"] = row[f"pseudo_auroc_{recipe.weighting}"]
        row["test_auroc"] = row.get(f"test_auroc_{recipe.weighting}", math.nan)
    chosen, _ = select_epoch([row["pseudo_auroc"] for row in rows])
    for row in rows:
        row["chosen"] = int(row["epoch"] == chosen)
    return rows


COLUMNS = [
    "recipe", "category", "seed", "epoch", "chosen", "test_auroc", "pseudo_auroc", "test_auroc_sum",
    "test_auroc_sqrtp", "pseudo_auroc_sum", "pseudo_auroc_sqrtp", "train_loss", "step1_loss", "step2_loss",
]  # fmt: skip


def _mean_std(values: Sequence[float], signed: bool = False) -> str:
    """``mean ± std`` of the values that are not NaN, with their count when some were NaN."""
    kept = [v for v in values if not math.isnan(v)]
    if not kept:
        return "-"
    spread = statistics.stdev(kept) if len(kept) > 1 else 0.0
    missing = f" (n={len(kept)})" if len(kept) < len(values) else ""
    return f"{statistics.fmean(kept):{'+' if signed else ''}.3f} ± {spread:.3f}{missing}"


def summarise(rows: Sequence[dict], score: str = "recipe") -> str:
    """Markdown tables: per recipe over categories x seeds, and per category (AUROC at the chosen epoch).

    Args:
        rows: The CSV's rows (numbers as floats, ``nan`` where empty).
        score: ``"recipe"``: the score weighted as the recipe's loss; ``"sum"`` or ``"sqrtp"``: that score for every
            recipe (the label-free rule then reads the pseudo-AUROC of that score).

    Example:
        >>> rows = [
        ...     {"recipe": "r", "category": "c", "seed": 0, "epoch": e, "test_auroc": t, "pseudo_auroc": p}
        ...     for e, (t, p) in enumerate([(0.80, 0.7), (0.85, 0.9), (0.90, 0.8)])
        ... ]
        >>> print(summarise(rows).splitlines()[2])
        | r | 1 | 0.800 ± 0.000 | 0.900 ± 0.000 | 0.850 ± 0.000 | +0.050 ± 0.000 | 1/1 | 1.0 / 2.0 | - |
    """
    test, pseudo = (
        ("test_auroc", "pseudo_auroc") if score == "recipe" else (f"test_auroc_{score}", f"pseudo_auroc_{score}")
    )
    runs: dict[tuple, list[dict]] = {}
    for row in rows:
        runs.setdefault((row["recipe"], row["category"], int(row["seed"])), []).append(row)
    per_recipe: dict[str, list[dict]] = {}
    for (recipe, category, _), epochs in runs.items():
        epochs = sorted(epochs, key=lambda r: int(r["epoch"]))
        aurocs = [-math.inf if math.isnan(float(r[test])) else float(r[test]) for r in epochs]
        chosen, _ = select_epoch([float(r[pseudo]) for r in epochs])
        step1, step2 = (float(epochs[1].get(k) or math.nan) for k in ("step1_loss", "step2_loss"))
        per_recipe.setdefault(recipe, []).append({
            "category": category, "fixed": aurocs[0], "best": max(aurocs), "chosen": float(epochs[chosen][test]),
            "chosen_epoch": chosen, "best_epoch": aurocs.index(max(aurocs)), "jump": step2 / step1,
        })  # fmt: skip
    lines = [
        "| recipe | runs | fixed (epoch 0) | best epoch | chosen epoch (label-free) | gain chosen - fixed "
        "| chosen > fixed | mean chosen / best epoch | step-2 / step-1 loss |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for recipe, results in per_recipe.items():
        col = {key: [r[key] for r in results] for key in results[0] if key != "category"}
        gains = [r["chosen"] - r["fixed"] for r in results]
        wins = f"{sum(g > 0 for g in gains)}/{len(gains)}"
        lines.append(
            f"| {recipe} | {len(results)} | {_mean_std(col['fixed'])} | {_mean_std(col['best'])} "
            f"| {_mean_std(col['chosen'])} | {_mean_std(gains, signed=True)} | {wins} "
            f"| {statistics.fmean(col['chosen_epoch']):.1f} / {statistics.fmean(col['best_epoch']):.1f} "
            f"| {_mean_std(col['jump'])} |"
        )
    categories = sorted({r["category"] for results in per_recipe.values() for r in results})
    lines += ["", "| recipe: fixed -> chosen | " + " | ".join(categories) + " |", "|---|" + "---:|" * len(categories)]
    for recipe, results in per_recipe.items():
        cells = []
        for category in categories:
            mine = [r for r in results if r["category"] == category]
            fixed, chosen = (statistics.fmean(r[k] for r in mine) if mine else math.nan for k in ("fixed", "chosen"))
            cells.append(f"{fixed:.3f} -> {chosen:.3f}")
        lines.append(f"| {recipe} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tools.recipe_study``."""
    parser = argparse.ArgumentParser(prog="python -m tools.recipe_study", description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("datasets/demo"), help="MVTec-layout root")
    parser.add_argument("--categories", nargs="+", default=["brick", "gravel", "grass", "coffee", "retina", "cat"])
    parser.add_argument("--recipes", nargs="+", default=["baseline"], choices=list(RECIPES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--holdout", type=int, default=8, help="held-out normal training images (pseudo-AUROC)")
    parser.add_argument("--test-every", type=int, default=2, help="score the test set every N epochs")
    parser.add_argument("--test-per-class", type=int, default=None, help="fixed subset of the test set per class")
    parser.add_argument("--random-weights", action="store_true", help="randomly initialised backbone")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache", type=Path, default=None, help="image cache folder (default OUTPUT/cache)")
    parser.add_argument("--output", type=Path, default=Path("runs/recipe_study"))
    parser.add_argument("--summarise", nargs="+", type=Path, default=None, help="only summarise these CSVs")
    parser.add_argument("--score", choices=["recipe", *WEIGHTINGS], default="recipe", help="score in the summary")
    args = parser.parse_args(argv)
    if args.summarise:
        rows = [row for path in args.summarise for row in csv.DictReader(path.open())]
        for row in rows:
            row.update({k: float(v) if v else math.nan for k, v in row.items() if k not in {"recipe", "category"}})
        print(summarise(rows, args.score))
        return 0
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    args.output.mkdir(parents=True, exist_ok=True)
    out = args.output / "rows.csv"
    rows: list[dict] = []
    model = GaussFTModel("tf_efficientnet_lite0", pretrained=not args.random_weights)
    model = model.to(memory_format=torch.channels_last)
    initial = copy.deepcopy(model.state_dict())
    with out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for category in args.categories:
            data = load_category(args.root, category, args.image_size, args.cache or args.output / "cache")
            data = subsample_test(data, args.test_per_class)
            epoch0: dict = {}
            for seed in args.seeds:
                for name in args.recipes:
                    print(f"{category} {name} seed {seed}", flush=True)
                    model.load_state_dict(initial)
                    run = run_recipe(
                        RECIPES[name], model, data, seed=seed, epochs=args.epochs, holdout=args.holdout,
                        test_every=args.test_every, epoch0=epoch0,
                    )  # fmt: skip
                    run = [{"recipe": name, "category": category, "seed": seed, **row} for row in run]
                    writer.writerows(run)
                    handle.flush()
                    rows += run
    print(f"rows: {out}\n")
    print(summarise(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
