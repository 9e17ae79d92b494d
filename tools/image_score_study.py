# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

r"""Which image score, and how many mixture components? Chosen by pseudo-anomalies, checked against test labels.

Per category GaussFT's embeddings are extracted once (fixed pretrained features, GaussFT's pre-processing): the
pooled levels and the aggregated local map of the training images, of the test images, and of pseudo-anomalies made
from every training image by each of ``ForgettingDetection``'s generators (one seeded batch per generator). Per split
seed the training images are split like anomalib's synthetic validation split: 80 % to fit, 20 % held out. The global
Gaussians and, for every ``K`` in ``--components``, a mixture of ``K`` Gaussians are fitted on the fit images
(``GaussFTModel``'s own estimators); every candidate score is then computed for

* the test images: **test AUROC** (raw scores, ``rank_auroc``), which needs labels;
* the held-out normal images against the pseudo-anomalies made from them: **pseudo-AUROC**, the label-free criterion
  (the same one ``ForgettingDetection`` uses to pick an epoch).

Candidates, from the global score ``g`` (sum of the pooled levels' distances), the mean ``t_q`` of the anomaly map's
top ``q`` of pixels and its maximum, with medians ``m`` and median absolute deviations over the fit images:
``global`` (``g``), ``global_sq`` (sum of squared distances), ``top1`` (``t_1%``), ``combined_topQ``
(``g / m_g + t_q / m_t``; GaussFT's ``"combined"`` at 1 %), ``geometric_topQ`` (``sqrt(g t_q)``; GaussFT's
``"geometric"`` at 2 %), ``geometric_top2_wA`` (``g^A t_2%^(1-A)``, ``A`` in :data:`WEIGHTS`), ``combined_max``
(the maximum instead of ``t_q``), ``combined3`` (``combined_top1`` plus the maximum's ratio), ``max_ratio`` (the
larger of the two ratios), ``robust_z`` (``(g - m_g) / MAD_g + (t - m_t) / MAD_t``), ``combined_sq``
(``global_sq`` in place of ``g``).

``--local-models`` chooses the anomaly maps the local terms come from: ``mixture`` (the nearest of ``K`` components),
``positional`` (each position's own Gaussian) and ``min`` (the smaller of the two, GaussFT's map with
``local_positional=True``); the per-position Gaussians are fitted on the same fit images (``GaussFTModel``'s own
estimator). ``--cache DIR`` keeps each category's embeddings in ``DIR/<category>.pt`` and reuses them.

Example:
    .. code-block:: bash

        python -m tools.image_score_study --root /work/data/demo_large --categories brick cat \
            --seeds 0 1 2 --components 16 32 64 --output results/image_score_study
        python -m tools.image_score_study --root /work/data/demo_large --categories brick cat \
            --components 64 --local-models mixture positional min --output results/positional_study
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from anomalib_gaussft.evaluation import rank_auroc
from anomalib_gaussft.forgetting.pseudo_anomalies import PSEUDO_ANOMALIES, build_pseudo_anomalies
from anomalib_gaussft.model.anomaly_map import top_fraction_mean
from anomalib_gaussft.model.local_mixture import LocalGaussianMixture
from anomalib_gaussft.model.torch_model import GaussFTModel
from tools._csv import write_rows

__all__ = ["Embeddings", "candidate_scores", "extract", "run_category", "summarize"]

#: The row every other row is compared with: GaussFT's image score and mixture before this study.
REFERENCE = ("combined_top1", 16, "mixture")
#: The anomaly maps a study can take its local terms from (module docstring).
LOCAL_MODELS = ("mixture", "positional", "min")
CHUNK = 20  # images per backbone or mixture batch
#: Weights of the global term in the weighted geometric candidates ``geometric_top2_wA``.
WEIGHTS = (0.2, 0.3, 0.4, 0.6, 0.7, 0.8)
Embeddings = tuple[list[torch.Tensor], torch.Tensor]  # pooled levels [(N, p_l)], aggregated local map (N, p, h, w)


@torch.no_grad()
def _embed(model: GaussFTModel, transform: torch.nn.Module, images: torch.Tensor) -> Embeddings:
    pooled, local = [], []
    for start in range(0, len(images), CHUNK):
        levels, features = model.embed(transform(images[start : start + CHUNK]))
        pooled.append(levels)
        local.append(features.half())  # halves the cache; the mixture scores it in float32
    return [torch.cat(level) for level in zip(*pooled, strict=True)], torch.cat(local)


def extract(root: Path, category: str, model: GaussFTModel, image_size: int) -> dict:
    """Embeddings of the training and test images and of every generator's pseudo-anomalies of the training images."""
    from anomalib.data.datasets import MVTecADDataset
    from anomalib.data.utils import read_image

    from anomalib_gaussft import GaussFT

    transform = GaussFT.configure_pre_processor((image_size, image_size), model.feature_extractor.backbone).transform
    out: dict = {}
    for split in ("train", "test"):
        samples = MVTecADDataset(root, category, split=split).samples
        if samples.empty:
            msg = f"No {split} images for category {category!r} under {root}."
            raise ValueError(msg)
        images = torch.stack([read_image(path, as_tensor=True) for path in samples.image_path])
        out[split] = _embed(model, transform, images)
        if split == "train":
            out["pseudo"] = {
                name: _embed(model, transform, generator(images, torch.Generator().manual_seed(0))[0])
                for name, generator in build_pseudo_anomalies(list(PSEUDO_ANOMALIES)).items()
            }
        else:
            out["labels"] = torch.tensor(samples.label_index.to_numpy() == 1)
    return out


def _local_map(
    model: GaussFTModel, mixture: LocalGaussianMixture, local: torch.Tensor, size: int, local_model: str
) -> torch.Tensor:
    """The ``(N, 1, size, size)`` map of the ``local_model`` (:data:`LOCAL_MODELS`), with the study's ``mixture``.

    ``min`` is the model's own score map (:meth:`GaussFTModel.score_map`) with the study's mixture distances.
    """
    if local_model == "min":
        return model.score_map(local, (size, size), mixture=mixture.distance_map(local))
    scorer = model.positional_gaussians if local_model == "positional" else mixture
    return model.anomaly_map_generator(scorer.distance_map(local), (size, size))


def _terms(
    model: GaussFTModel, mixture: LocalGaussianMixture, embeddings: Embeddings, size: int, local_model: str = "mixture"
) -> dict:
    pooled, local = embeddings
    distances = model.level_distances(pooled)
    maps = torch.cat([_local_map(model, mixture, chunk.float(), size, local_model) for chunk in local.split(CHUNK)])
    terms = {"g": distances.sum(dim=1), "gsq": distances.square().sum(dim=1), "max": maps.flatten(1).amax(dim=1)}
    for q in (0.5, 1, 2, 4):
        terms[f"top{q:g}"] = top_fraction_mean(maps, q / 100)
    return terms


def candidate_scores(terms: dict[str, torch.Tensor], fit: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Every candidate image score (module docstring) from the score terms of some images and of the fit images.

    Example:
        >>> fit = {"g": torch.tensor([1.0, 2.0, 3.0]), "gsq": torch.ones(3), "max": torch.ones(3)}
        >>> fit |= {f"top{q:g}": torch.ones(3) for q in (0.5, 1, 2, 4)}
        >>> scores = candidate_scores({key: value[:1] * 4 for key, value in fit.items()}, fit)
        >>> scores["combined_top1"].item(), scores["geometric_top2"].item()  # 4/2 + 4/1, sqrt(4 * 4)
        (6.0, 4.0)
    """
    median = {key: value.median() for key, value in fit.items()}
    mad = {key: (value - median[key]).abs().median().clamp_min(1e-12) for key, value in fit.items()}

    def ratio(key: str) -> torch.Tensor:
        return terms[key] / median[key]

    scores = {"global": terms["g"], "global_sq": terms["gsq"], "top1": terms["top1"]}
    for q in ("0.5", "1", "2", "4"):
        scores[f"combined_top{q}"] = ratio("g") + ratio(f"top{q}")
    for q in ("1", "2"):
        scores[f"geometric_top{q}"] = (terms["g"] * terms[f"top{q}"]).sqrt()
    for weight in WEIGHTS:  # the geometric mean with the global term weighted (0.5: geometric_top2)
        scores[f"geometric_top2_w{weight:g}"] = terms["g"].pow(weight) * terms["top2"].pow(1 - weight)
    scores["combined_max"] = ratio("g") + ratio("max")
    scores["combined3"] = scores["combined_top1"] + ratio("max")
    scores["max_ratio"] = torch.maximum(ratio("g"), ratio("top1"))
    scores["robust_z"] = (terms["g"] - median["g"]) / mad["g"] + (terms["top1"] - median["top1"]) / mad["top1"]
    scores["combined_sq"] = ratio("gsq") + ratio("top1")
    return scores


def run_category(
    data: dict,
    model: GaussFTModel,
    category: str,
    seeds: Sequence[int],
    components: Sequence[int],
    size: int,
    local_models: Sequence[str] = ("mixture",),
) -> list[dict]:
    """One row per split seed, ``K``, local model and candidate: test AUROC and pseudo-AUROC."""
    train_pooled, train_local = data["train"]
    n = len(train_local)
    rows = []
    for seed in seeds:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        fit, held = order[: round(0.8 * n)], order[round(0.8 * n) :]
        estimators = model.new_estimators("cpu")
        estimators.update([level[fit] for level in train_pooled], train_local[fit].float())
        model.load_fits(estimators)
        pseudo = list(data["pseudo"].values())  # (pooled levels, local map) per generator
        pseudo_set = (
            [torch.cat([level[held]] + [p[i][held] for p, _ in pseudo]) for i, level in enumerate(train_pooled)],
            torch.cat([train_local[held]] + [local[held] for _, local in pseudo]),
        )
        pseudo_labels = torch.arange(len(pseudo_set[1])) >= len(held)
        fit_set = ([level[fit] for level in train_pooled], train_local[fit])
        for k in components:
            mixture = LocalGaussianMixture(model.local_mixture.dim, k)
            mixture.load_fits(estimators.local.fit(k))
            for local_model in local_models:
                fit_terms = _terms(model, mixture, fit_set, size, local_model)
                test = candidate_scores(_terms(model, mixture, data["test"], size, local_model), fit_terms)
                held_out = candidate_scores(_terms(model, mixture, pseudo_set, size, local_model), fit_terms)
                key = {"category": category, "seed": seed, "components": k, "local_model": local_model}
                rows += _rows(test, held_out, data["labels"], pseudo_labels, key)
    return rows


def _rows(test: dict, held_out: dict, labels: torch.Tensor, pseudo_labels: torch.Tensor, key: dict) -> list[dict]:
    """One row per candidate: ``key`` with its test AUROC and pseudo-AUROC."""
    return [
        {
            **key,
            "score": name,
            "test_auroc": rank_auroc(scores[~labels], scores[labels]),
            "pseudo_auroc": rank_auroc(held_out[name][~pseudo_labels], held_out[name][pseudo_labels]),
        }
        for name, scores in test.items()
    ]


def summarize(rows: Sequence[dict]) -> str:
    """Markdown table, best pseudo-AUROC first.

    Means over categories and seeds, and the paired change against :data:`REFERENCE` (mean and standard deviation over
    the category-seed pairs; wins / ties / losses).
    """

    def key(row: dict) -> tuple:  # rows written before --local-models had the mixture's maps
        return row["score"], int(row["components"]), row.get("local_model") or "mixture"

    cell = {(r["category"], int(r["seed"]), *key(r)): r for r in rows}
    categories = sorted({r["category"] for r in rows})
    candidates = sorted({key(r) for r in rows})
    pairs = sorted({(r["category"], int(r["seed"])) for r in rows})
    lines = [
        "| score | K | map | test AUROC | std over seeds | pseudo-AUROC | test change vs reference | "
        "wins / ties / losses | " + " | ".join(categories) + " |",
        "|---|---:|---|---:|---:|---:|---:|---|" + "---:|" * len(categories),
    ]  # fmt: skip

    def value(pair: tuple, candidate: tuple, metric: str) -> float:
        return float(cell[(*pair, *candidate)][metric])

    ranked = sorted(candidates, key=lambda c: -statistics.mean(value(p, c, "pseudo_auroc") for p in pairs))
    for candidate in ranked:
        seeds = sorted({seed for _, seed in pairs})
        per_seed = [statistics.mean(value(p, candidate, "test_auroc") for p in pairs if p[1] == s) for s in seeds]
        change = (
            [value(p, candidate, "test_auroc") - value(p, REFERENCE, "test_auroc") for p in pairs]
            if REFERENCE in candidates
            else [float("nan")]
        )
        record = f"{sum(d > 0 for d in change)} / {sum(d == 0 for d in change)} / {sum(d < 0 for d in change)}"
        per_category = [
            statistics.mean(value(p, candidate, "test_auroc") for p in pairs if p[0] == c) for c in categories
        ]
        spread = statistics.stdev(change) if len(change) > 1 else 0.0
        lines.append(
            f"| {candidate[0]} | {candidate[1]} | {candidate[2]} | {statistics.mean(per_seed):.4f} | "
            f"{statistics.stdev(per_seed) if len(per_seed) > 1 else 0.0:.4f} | "
            f"{statistics.mean(value(p, candidate, 'pseudo_auroc') for p in pairs):.4f} | "
            f"{statistics.mean(change):+.4f} ± {spread:.4f} | {record} | "
            + " | ".join(f"{x:.3f}" for x in per_category) + " |"
        )  # fmt: skip
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tools.image_score_study``."""
    parser = argparse.ArgumentParser(prog="python -m tools.image_score_study", description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="MVTec-layout dataset root")
    parser.add_argument("--categories", nargs="+", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="split seeds (80 %% fit, 20 %% held)")
    parser.add_argument("--components", type=int, nargs="+", default=[16, 32, 64], help="mixture sizes K")
    parser.add_argument(
        "--local-models", nargs="+", default=["mixture"], choices=LOCAL_MODELS, help="maps of the local terms"
    )
    parser.add_argument("--cache", type=Path, default=None, help="keep and reuse embeddings in DIR/<category>.pt")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--random-weights", action="store_true", help="randomly initialised backbone (smoke tests)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", type=Path, default=Path("results/image_score_study"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.output.mkdir(parents=True, exist_ok=True)
    # The embeddings are GaussFT's at its defaults; the study fits its own mixtures (``load_fits`` fits one component)
    # and, only where a requested map reads them, the per-position Gaussians (on the same fit images).
    positional = any(local_model != "mixture" for local_model in args.local_models)
    model = GaussFTModel(
        "tf_efficientnet_lite0", pretrained=not args.random_weights, local_components=1, local_positional=positional
    ).eval()
    rows: list[dict] = []
    for category in args.categories:
        start = time.perf_counter()
        cached = args.cache / f"{category}.pt" if args.cache else None
        if cached is not None and cached.is_file():
            data = torch.load(cached)
        else:
            data = extract(args.root, category, model, args.image_size)
            if cached is not None:
                cached.parent.mkdir(parents=True, exist_ok=True)
                torch.save(data, cached)
        rows += run_category(data, model, category, args.seeds, args.components, args.image_size, args.local_models)
        print(f"{category}: {time.perf_counter() - start:.1f} s", flush=True)
        write_rows(args.output / "image_score_study.csv", rows)
    print(summarize(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
