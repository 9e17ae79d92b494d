# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""Which local model should GaussFT's anomaly map use? Candidates compared on fixed pretrained features.

Per category the feature maps of the pretrained backbone are extracted once (224 px, GaussFT's pre-processing); every
candidate is then fitted on the training images' cached local feature vectors and scored on the test images:

* ``shared``: one Ledoit-Wolf Gaussian shared by every position (GaussFT today); ``mixK``: k-means with ``K``
  clusters, one Gaussian per cluster, scored by the minimum Mahalanobis distance (``:min``) or the mixture's negative
  log-likelihood up to a constant (``:nll``); ``tiedK``: the same clusters with one covariance shared by all, scored
  by the nearest cluster mean under it (``:min``); ``pcaQmixK``: ``mixK`` in the ``Q`` leading principal directions
  of the training vectors; ``perpos``: one Gaussian per position (PaDiM-style).
* Local features ``s8``: ``blocks.2`` + ``blocks.4`` at stride 8 (152-d for Lite0); ``s4``: ``blocks.1`` + ``blocks.2``
  + ``blocks.4`` at stride 4 (176-d); ``-agg3``: a 3 x 3 average of the local vectors first (PatchCore's aggregation);
  ``-agg4s2``: a 4 x 4 average at stride 2 (a quarter of the positions, each centred on its cell of the coarser grid).

Maps are upsampled and blurred (``AnomalyMapGenerator``, several ``sigma``). Reported: pixel AUROC (all anomalous test
pixels and a fixed random fraction of the normal ones), image AUROC of the map's maximum, of its top-1 % mean and of
``global / median(global) + local / median(local)`` with GaussFT's global score (sum of the nine pooled levels'
distances); the medians come from the training images, in-sample (``_train``) or out-of-fold (``_oof``: the Gaussians
refitted without the fold). Fit time (on cached features) and bytes of the fitted Gaussians (float32) per candidate.

Example:
    .. code-block:: bash

        python -m tools.local_model_study --root /work/data/demo_large --categories brick cat --output results/local
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F  # noqa: N812

from anomalib_gaussft.evaluation import rank_auroc
from anomalib_gaussft.model.anomaly_map import (
    AnomalyMapGenerator,
    aggregate_local_features,
    concatenate_local_features,
)
from anomalib_gaussft.model.gaussian import MultivariateGaussian, StreamingGaussianEstimator, mahalanobis_distance
from anomalib_gaussft.model.torch_model import GaussFTModel
from tools._csv import write_rows

__all__ = [
    "DEFAULT_CANDIDATES",
    "SINGLE_GAUSSIAN_SETTINGS",
    "Features",
    "extract",
    "kmeans",
    "make_local_model",
    "run_category",
    "summarize",
]

#: GaussFT as it was when this study ran: the paper's global image score and one Gaussian shared by every position of
#: the anomaly map, on unaggregated local features.
SINGLE_GAUSSIAN_SETTINGS = {
    "image_score": "global",
    "local_components": 1,
    "local_aggregation": 1,
    "local_stride": 1,
    "local_positional": False,
}
LEVELS = {"s8": ("blocks.2", "blocks.4"), "s4": ("blocks.1", "blocks.2", "blocks.4")}
#: Candidate-name suffix -> (window size, stride) of the local vectors' averaging (module docstring).
AGGREGATIONS = {"": (1, 1), "agg3": (3, 1), "agg4s2": (4, 2)}
_DEFAULTS = "shared-s8 mix4-s8 mix8-s8 mix16-s8 mix32-s8 perpos-s8 shared-s4 mix16-s4 shared-s8-agg3 mix16-s8-agg3"
DEFAULT_CANDIDATES = (*_DEFAULTS.split(), "mix32-s8-agg3")
CHUNK = 40  # images per scoring batch


@dataclass
class Features:
    """Cached features of one category: local levels ``{name: (N, C, h, w)}``, pooled levels, labels and masks."""

    train_levels: dict[str, torch.Tensor]
    test_levels: dict[str, torch.Tensor]
    train_pooled: list[torch.Tensor]
    test_pooled: list[torch.Tensor]
    labels: torch.Tensor  # (N_test,) bool
    masks: torch.Tensor  # (N_test, H, W) bool


@torch.no_grad()
def extract(root: Path, category: str, model: GaussFTModel, image_size: int, batch_size: int = 20) -> Features:
    """Read a category (``MVTecADDataset``), pre-process as ``GaussFT`` and keep every level the study needs."""
    from anomalib.data.datasets import MVTecADDataset
    from anomalib.data.utils import read_image

    from anomalib_gaussft import GaussFT

    extractor = model.feature_extractor
    transform = GaussFT.configure_pre_processor((image_size, image_size), extractor.backbone).transform
    local_names = sorted({name for names in LEVELS.values() for name in names})
    out: dict[str, dict] = {}
    for split in ("train", "test"):
        samples = MVTecADDataset(root, category, split=split).samples
        if samples.empty:
            msg = f"No {split} images for category {category!r} under {root}."
            raise ValueError(msg)
        levels: dict[str, list[torch.Tensor]] = {name: [] for name in local_names}
        pooled, masks = [], []
        for start in range(0, len(samples), batch_size):
            rows = samples.iloc[start : start + batch_size]
            images = torch.stack([transform(read_image(path, as_tensor=True)) for path in rows.image_path])  # any sizes
            features = dict(zip(extractor.layers, extractor(images), strict=True))
            pooled.append([features[name].mean(dim=(2, 3)) for name in model.layers])
            for name in local_names:
                levels[name].append(features[name])
            for row in rows.itertuples():
                mask = torch.zeros(1, 1, image_size, image_size, dtype=torch.bool)
                if row.label_index == 1 and isinstance(row.mask_path, str) and row.mask_path:
                    raw = read_image(row.mask_path, as_tensor=True)[:1].unsqueeze(0)
                    mask = F.interpolate(raw, size=(image_size, image_size), mode="nearest") > 0.5
                masks.append(mask[0, 0])
        out[split] = {
            "levels": {name: torch.cat(chunks) for name, chunks in levels.items()},
            "pooled": [torch.cat(level) for level in zip(*pooled, strict=True)],
            "labels": torch.tensor(samples.label_index.to_numpy() == 1),
            "masks": torch.stack(masks),
        }
    train, test = out["train"], out["test"]
    return Features(train["levels"], test["levels"], train["pooled"], test["pooled"], test["labels"], test["masks"])


def local_features(levels: dict[str, torch.Tensor], names: Sequence[str], index: slice | torch.Tensor) -> torch.Tensor:
    """Concatenate the local levels ``names`` (finest first) of the images ``index`` at the finest stride."""
    return concatenate_local_features([levels[name][index] for name in names])


def _vectors(features: torch.Tensor) -> torch.Tensor:
    return features.permute(0, 2, 3, 1).reshape(-1, features.shape[1])


def _nearest(vectors: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    norms = (centres * centres).sum(dim=1)
    return torch.cat([(norms - 2 * chunk @ centres.T).argmin(dim=1) for chunk in vectors.split(65536)])


def kmeans(vectors: torch.Tensor, k: int, seed: int = 0, iterations: int = 30) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means with k-means++ seeding (on at most 20 000 vectors); returns ``(centres, assignment)``.

    Example:
        >>> points = torch.cat([torch.randn(50, 2), torch.randn(50, 2) + 20])
        >>> _, assignment = kmeans(points, 2)
        >>> len(set(assignment[:50].tolist())), bool(assignment[0] != assignment[-1])
        (1, True)
    """
    generator = torch.Generator().manual_seed(seed)
    sample = vectors[torch.randperm(len(vectors), generator=generator)[:20000]].double()
    centres = sample[torch.randint(len(sample), (1,), generator=generator)]
    closest = ((sample - centres[0]) ** 2).sum(dim=1)
    for _ in range(1, k):
        new = sample[torch.multinomial(closest.clamp_min(0) + 1e-12, 1, generator=generator)]
        centres = torch.cat([centres, new])
        closest = torch.minimum(closest, ((sample - new[0]) ** 2).sum(dim=1))
    x = vectors.double()
    for _ in range(iterations):
        assignment = _nearest(x, centres)
        counts = torch.bincount(assignment, minlength=k).double()
        sums = torch.zeros_like(centres).index_add_(0, assignment, x)
        updated = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], centres)
        if torch.equal(updated, centres):
            break
        centres = updated
    return centres.float(), _nearest(x, centres)


def _fit(vectors: torch.Tensor) -> MultivariateGaussian:
    estimator = StreamingGaussianEstimator(vectors.shape[1])
    for chunk in vectors.split(65536):
        estimator.update(chunk)
    gaussian = MultivariateGaussian(vectors.shape[1])
    gaussian.load_fit(estimator.fit())
    return gaussian


class SharedGaussian:
    """One Gaussian for every position (GaussFT's anomaly map)."""

    def fit(self, train: torch.Tensor) -> None:
        """Fit on training feature maps ``(N, p, h, w)``."""
        self.gaussian = _fit(_vectors(train))
        self.nbytes = 4 * (self.gaussian.dim + self.gaussian.dim**2)

    def score(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """Distance maps ``(N, 1, h, w)`` by variant."""
        return {"": self.gaussian.distance_map(features)}


class Mixture:
    """k-means clusters of the training vectors, one Ledoit-Wolf Gaussian each; min distance and mixture NLL."""

    def __init__(self, k: int, seed: int = 0) -> None:
        self.k, self.seed = k, seed

    def fit(self, train: torch.Tensor) -> None:
        """Fit on training feature maps ``(N, p, h, w)``."""
        vectors = _vectors(train)
        _, assignment = kmeans(vectors, self.k, self.seed)
        members = [vectors[assignment == j] for j in range(self.k)]
        self.gaussians = [_fit(m) for m in members if len(m) > 0]
        counts = torch.tensor([len(m) for m in members if len(m) > 0], dtype=torch.float32)
        self.log_weights = (counts / counts.sum()).log()
        # log det(Sigma) = -2 sum(log diag(W)) with W the inverse Cholesky factor
        self.log_dets = torch.stack([-2 * g.whitening.diagonal().log().sum() for g in self.gaussians])
        self.nbytes = sum(4 * (g.dim + g.dim**2) + 8 for g in self.gaussians)

    def score(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """Distance maps ``(N, 1, h, w)``: ``min`` over components and the negative log-likelihood ``nll``."""
        x = features.permute(0, 2, 3, 1)
        distances = torch.stack([mahalanobis_distance(x, g.mean, g.whitening) for g in self.gaussians], dim=1)
        log_terms = self.log_weights[:, None, None] - 0.5 * distances**2 - 0.5 * self.log_dets[:, None, None]
        nll = -torch.logsumexp(log_terms, dim=1)
        return {"min": distances.amin(dim=1, keepdim=True), "nll": nll.unsqueeze(1)}


class ProjectedMixture(Mixture):
    """:class:`Mixture` in the ``q`` leading principal directions of the training vectors: ``(q / p)^2`` of its cost."""

    def __init__(self, q: int, k: int, seed: int = 0) -> None:
        super().__init__(k, seed)
        self.q = q

    def fit(self, train: torch.Tensor) -> None:
        """Fit the directions, then the mixture on the projected training feature maps ``(N, p, h, w)``."""
        vectors = _vectors(train).double()
        self.centre = vectors.mean(dim=0)
        _, _, directions = torch.linalg.svd(vectors - self.centre, full_matrices=False)
        self.basis = directions[: self.q].T.float()  # (p, q)
        self.centre = self.centre.float()
        super().fit(self._project(train))
        self.nbytes += 4 * self.basis.numel()

    def _project(self, features: torch.Tensor) -> torch.Tensor:
        return torch.einsum("nphw,pq->nqhw", features - self.centre[:, None, None], self.basis)

    def score(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """:meth:`Mixture.score` of the projected features."""
        return super().score(self._project(features))


class TiedMixture:
    """k-means clusters with one shared (tied) Ledoit-Wolf covariance of the vectors around their cluster's mean.

    Scored by the distance to the nearest cluster mean under the shared whitening: one ``p x p`` product per position
    and ``K`` distances in the whitened space, where :class:`Mixture` takes ``K`` products.
    """

    def __init__(self, k: int, seed: int = 0) -> None:
        self.k, self.seed = k, seed

    def fit(self, train: torch.Tensor) -> None:
        """Fit on training feature maps ``(N, p, h, w)``."""
        vectors = _vectors(train)
        _, assignment = kmeans(vectors, self.k, self.seed)
        self.means = torch.stack(
            [vectors[assignment == j].mean(0) if (assignment == j).any() else vectors[0] for j in range(self.k)]
        )
        self.gaussian = _fit(vectors - self.means[assignment])
        self.whitened_means = self.means @ self.gaussian.whitening.T  # (K, p)
        self.nbytes = 4 * (self.means.numel() + self.gaussian.dim**2)

    def score(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """Distance maps ``(N, 1, h, w)``: ``min`` over the cluster means."""
        whitened = features.permute(0, 2, 3, 1) @ self.gaussian.whitening.T  # (N, h, w, p)
        squared = torch.cdist(whitened.flatten(0, 2), self.whitened_means).pow(2).amin(dim=1)
        return {"min": squared.clamp_min(1e-12).sqrt().reshape(*whitened.shape[:3]).unsqueeze(1)}


class PerPosition:
    """One Gaussian per position (PaDiM-style): needs aligned images; memory ``h * w * (p + p^2)`` floats."""

    def fit(self, train: torch.Tensor) -> None:
        """Fit on training feature maps ``(N, p, h, w)``."""
        _, _, h, w = train.shape
        fits = [_fit(train[:, :, i // w, i % w]) for i in range(h * w)]
        self.mean = torch.stack([g.mean for g in fits])  # (P, p)
        self.whitening = torch.stack([g.whitening for g in fits])  # (P, p, p)
        self.nbytes = 4 * (self.mean.numel() + self.whitening.numel())

    def score(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """Distance maps ``(N, 1, h, w)``."""
        n, _, h, w = features.shape
        diff = features.flatten(2).permute(2, 0, 1) - self.mean[:, None]  # (P, N, p)
        whitened = diff @ self.whitening.transpose(1, 2)
        return {"": whitened.pow(2).sum(-1).clamp_min(1e-12).sqrt().T.reshape(n, 1, h, w)}


def make_local_model(name: str) -> tuple[tuple[str, ...], str, Callable[[], object]]:
    """Parse a candidate name ``<shared|mixK|tiedK|pcaQmixK|perpos>-<s8|s4>[-agg3|-agg4s2]``.

    Returns:
        ``(levels, aggregation, factory)``; the aggregation is ``""``, ``"agg3"`` or ``"agg4s2"``.
    """
    parts = name.split("-")
    suffixes = [[], *([key] for key in AGGREGATIONS if key)]
    if len(parts) not in (2, 3) or parts[1] not in LEVELS or parts[2:] not in suffixes:
        msg = (
            f"Unknown candidate {name!r} (setting --candidates): use "
            "<shared|mixK|tiedK|pcaQmixK|perpos>-<s8|s4>[-agg3|-agg4s2]."
        )
        raise ValueError(msg)
    kind = parts[0]
    if kind == "shared":
        factory: Callable[[], object] = SharedGaussian
    elif kind == "perpos":
        factory = PerPosition
    elif kind.startswith("mix") and kind[3:].isdigit():
        factory = lambda k=int(kind[3:]): Mixture(k)  # noqa: E731
    elif kind.startswith("pca") and "mix" in kind and kind[3:].replace("mix", "", 1).isdigit():
        q, k = (int(number) for number in kind[3:].split("mix"))
        factory = lambda q=q, k=k: ProjectedMixture(q, k)  # noqa: E731
    elif kind.startswith("tied") and kind[4:].isdigit():
        factory = lambda k=int(kind[4:]): TiedMixture(k)  # noqa: E731
    else:
        msg = f"Unknown local model {kind!r} in candidate {name!r} (setting --candidates)."
        raise ValueError(msg)
    return LEVELS[parts[1]], "".join(parts[2:]), factory


def _score(model: object, levels: dict[str, torch.Tensor], names: Sequence[str], agg: str, n: int) -> dict:
    """Low-resolution score maps of ``n`` images by variant, in chunks."""
    out: dict[str, list[torch.Tensor]] = {}
    for start in range(0, n, CHUNK):
        features = _prepare(local_features(levels, names, slice(start, start + CHUNK)), agg)
        for variant, scores in model.score(features).items():
            out.setdefault(variant, []).append(scores)
    return {variant: torch.cat(chunks) for variant, chunks in out.items()}


def _prepare(features: torch.Tensor, agg: str) -> torch.Tensor:
    """The candidate's aggregation (window size, stride) as GaussFT's own :func:`aggregate_local_features` does it."""
    return aggregate_local_features(features, *AGGREGATIONS[agg])


def _map_stats(scores: torch.Tensor, generator: AnomalyMapGenerator, size: int, masks=None, keep=None):
    """Per-image max and top-1 % mean of the maps; with masks also the (subsampled) pixel AUROC."""
    maxima, tops, normal, anomalous = [], [], [], []
    top_k = max(1, size * size // 100)
    for start in range(0, len(scores), CHUNK):
        maps = generator(scores[start : start + CHUNK], (size, size))[:, 0]
        flat = maps.flatten(1)
        maxima.append(flat.amax(dim=1))
        tops.append(flat.topk(top_k, dim=1).values.mean(dim=1))
        if masks is not None:
            gt = masks[start : start + CHUNK]
            anomalous.append(maps[gt])
            normal.append(maps[~gt & keep[start : start + CHUNK]])
    pixel = rank_auroc(torch.cat(normal), torch.cat(anomalous)) if masks is not None and masks.any() else math.nan
    return torch.cat(maxima), torch.cat(tops), pixel


def _combo_auroc(labels, global_test, global_train, local_test, local_train) -> float:
    """AUROC of ``global / median(global_train) + local / median(local_train)`` (NaN without positive medians)."""
    if global_train is None:
        return math.nan
    g, m = global_train.median(), local_train.median()
    if g <= 0 or m <= 0:
        return math.nan
    score = global_test / g + local_test / m
    return rank_auroc(score[~labels], score[labels])


def _folds(n: int, folds: int) -> list[torch.Tensor]:
    return [torch.arange(n)[fold::folds] for fold in range(folds)] if folds > 1 else []


def global_scores(model: GaussFTModel, features: Features, folds: int) -> tuple[torch.Tensor, ...]:
    """GaussFT's global image score of the test images, of the training images in-sample and out-of-fold."""
    n = len(features.train_pooled[0])
    local = local_features(features.train_levels, model.map_layers, slice(None))

    def fit(index: torch.Tensor) -> None:
        estimators = model.new_estimators("cpu")
        estimators.update([p[index] for p in features.train_pooled], local[index])
        model.load_fits(estimators)

    oof = torch.zeros(n)
    for held in _folds(n, folds):
        fit(torch.tensor([i for i in range(n) if i not in set(held.tolist())]))
        oof[held] = model.image_score([p[held] for p in features.train_pooled])
    fit(torch.arange(n))
    return model.image_score(features.test_pooled), model.image_score(features.train_pooled), oof


def run_category(
    features: Features,
    model: GaussFTModel,
    category: str,
    candidates: Sequence[str],
    sigmas: Sequence[float] = (2.0, 4.0),
    folds: int = 3,
    normal_fraction: float = 0.2,
    seed: int = 0,
) -> list[dict]:
    """Fit and score every candidate on one category's cached features; one row per candidate, variant and sigma."""
    labels, masks = features.labels, features.masks
    size = masks.shape[-1]
    keep = torch.rand(masks.shape, generator=torch.Generator().manual_seed(seed)) < normal_fraction
    g_test, g_train, g_oof = global_scores(model, features, folds)
    g_oof = g_oof if folds > 1 else None
    global_auroc = rank_auroc(g_test[~labels], g_test[labels])
    n_train, n_test = len(features.train_pooled[0]), len(labels)
    rows = []
    for name in candidates:
        names, agg, factory = make_local_model(name)
        train = _prepare(local_features(features.train_levels, names, slice(None)), agg)
        local_model = factory()
        start = time.perf_counter()
        local_model.fit(train)
        fit_seconds = time.perf_counter() - start
        start = time.perf_counter()
        test_scores = _score(local_model, features.test_levels, names, agg, n_test)
        score_ms = 1000 * (time.perf_counter() - start) / n_test
        train_scores = local_model.score(train)
        oof_scores = {variant: torch.zeros_like(s) for variant, s in train_scores.items()}
        for held in _folds(n_train, folds):
            fold_model = factory()
            fold_model.fit(train[[i for i in range(n_train) if i not in set(held.tolist())]])
            for variant, scores in fold_model.score(train[held]).items():
                oof_scores[variant][held] = scores
        for variant, scores in test_scores.items():
            for sigma in sigmas:
                generator = AnomalyMapGenerator(sigma=sigma)
                t_max, t_top, pixel = _map_stats(scores, generator, size, masks, keep)
                in_max, in_top, _ = _map_stats(train_scores[variant], generator, size)
                oof_max, oof_top, _ = _map_stats(oof_scores[variant], generator, size)
                rows.append(
                    {
                        "category": category,
                        "candidate": name + (f":{variant}" if variant else ""),
                        "dim": train.shape[1],
                        "stride": size // train.shape[-1],
                        "sigma": sigma,
                        "pixel_auroc": pixel,
                        "image_global": global_auroc,
                        "image_max": rank_auroc(t_max[~labels], t_max[labels]),
                        "image_top1pct": rank_auroc(t_top[~labels], t_top[labels]),
                        "image_combo_max_train": _combo_auroc(labels, g_test, g_train, t_max, in_max),
                        "image_combo_max_oof": _combo_auroc(labels, g_test, g_oof, t_max, oof_max),
                        "image_combo_top_train": _combo_auroc(labels, g_test, g_train, t_top, in_top),
                        "image_combo_top_oof": _combo_auroc(labels, g_test, g_oof, t_top, oof_top),
                        "fit_seconds": fit_seconds,
                        "score_ms_per_image": score_ms,
                        "model_bytes": local_model.nbytes,
                    }
                )
    return rows


_METRICS = (
    "pixel_auroc image_max image_top1pct image_combo_max_train image_combo_max_oof image_combo_top_train "
    "image_combo_top_oof"
)
METRICS = (*_METRICS.split(), "image_global")


def summarize(rows: Sequence[dict]) -> str:
    """Markdown: the mean over categories per candidate and sigma, and the per-category pixel and combo AUROCs."""
    keys = list(dict.fromkeys((row["candidate"], float(row["sigma"])) for row in rows))
    categories = list(dict.fromkeys(row["category"] for row in rows))
    index = {(row["candidate"], float(row["sigma"]), row["category"]): row for row in rows}

    def mean(key: tuple, metric: str) -> float:
        return statistics.mean(float(r[metric]) for (*k, _), r in index.items() if tuple(k) == key)

    lines = [
        "| candidate | sigma | pixel AUROC | image: max | top 1 % | global + max (train medians) | global + max (oof) "
        "| global + top 1 % (oof) | global | fit s | MB |",
        "|---|---:|" + "---:|" * 9,
    ]
    for key in keys:
        values = " | ".join(f"{mean(key, metric):.3f}" for metric in METRICS)
        fit, size = mean(key, "fit_seconds"), mean(key, "model_bytes") / 1e6
        lines.append(f"| {key[0]} | {key[1]:g} | {values} | {fit:.2f} | {size:.3f} |")
    for metric in ("pixel_auroc", "image_combo_max_oof"):
        header = "| candidate | sigma | " + " | ".join(categories) + " | mean |"
        lines += ["", f"{metric} per category:", "", header, "|---|---:|" + "---:|" * (len(categories) + 1)]
        for key in keys:
            values = [float(index[(*key, c)][metric]) if (*key, c) in index else math.nan for c in categories]
            cells = " | ".join(f"{v:.3f}" for v in values)
            lines.append(f"| {key[0]} | {key[1]:g} | {cells} | {statistics.mean(values):.3f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tools.local_model_study``."""
    parser = argparse.ArgumentParser(prog="python -m tools.local_model_study", description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="MVTec-layout dataset root")
    parser.add_argument("--categories", nargs="+", required=True)
    parser.add_argument("--candidates", nargs="+", default=list(DEFAULT_CANDIDATES))
    parser.add_argument("--sigmas", type=float, nargs="+", default=[2.0, 4.0])
    parser.add_argument("--folds", type=int, default=3, help="folds for the out-of-fold training medians (0: none)")
    parser.add_argument("--normal-pixel-fraction", type=float, default=0.2)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", type=Path, default=Path("results/local_model_study"))
    parser.add_argument("--append", action="store_true", help="add to the rows of an existing CSV in --output")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    for name in args.candidates:
        make_local_model(name)  # fail early on a typo
    args.output.mkdir(parents=True, exist_ok=True)
    model = GaussFTModel(  # GaussFT as it was when the study ran: global score, one shared local Gaussian
        "tf_efficientnet_lite0", pretrained=True, map_layers=list(LEVELS["s8"]), **SINGLE_GAUSSIAN_SETTINGS
    ).eval()
    path = args.output / "local_model_study.csv"
    rows: list[dict] = list(csv.DictReader(path.open())) if args.append and path.exists() else []
    for category in args.categories:
        start = time.perf_counter()
        features = extract(args.root, category, model, args.image_size)
        print(f"{category}: features in {time.perf_counter() - start:.1f} s", flush=True)
        start = time.perf_counter()
        new = run_category(
            features, model, category, args.candidates, args.sigmas, args.folds, args.normal_pixel_fraction
        )
        for row in new:
            print(
                f"  {row['candidate']} sigma {row['sigma']:g}: pixel {row['pixel_auroc']:.3f} max "
                f"{row['image_max']:.3f} combo {row['image_combo_max_oof']:.3f} fit {row['fit_seconds']:.2f} s",
                flush=True,
            )
        print(f"{category}: candidates in {time.perf_counter() - start:.1f} s", flush=True)
        rows += new
        del features
        write_rows(path, rows)
    print(summarize(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
