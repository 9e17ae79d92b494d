# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""The anomaly map's Gaussian mixture, its fit, the image scores, and their equality under DDP."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from anomalib_gaussft.model.anomaly_map import AnomalyMapGenerator
from anomalib_gaussft.model.fitting import fit_training_set
from anomalib_gaussft.model.gaussian import MultivariateGaussian, StreamingGaussianEstimator
from anomalib_gaussft.model.local_mixture import LocalGaussianMixture, kmeans
from anomalib_gaussft.model.local_sample import LocalVectorSample
from anomalib_gaussft.model.torch_model import GaussFTModel


def _two_modes(n: int = 300, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    offsets = torch.tensor([[-6.0, 0.0], [6.0, 0.0]]).repeat_interleave(n // 2, dim=0)
    return offsets + torch.randn(n, 2, generator=generator)


def test_kmeans_depends_on_the_set_of_vectors_not_their_order() -> None:
    vectors = torch.randn(500, 8, generator=torch.Generator().manual_seed(1))
    permutation = torch.randperm(500, generator=torch.Generator().manual_seed(2))
    centroids, labels = kmeans(vectors, k=5)
    centroids_permuted, labels_permuted = kmeans(vectors[permutation], k=5)
    torch.testing.assert_close(centroids_permuted, centroids, rtol=0, atol=0)
    torch.testing.assert_close(labels_permuted, labels[permutation], rtol=0, atol=0)
    with pytest.raises(ValueError, match="k=501"):
        kmeans(vectors, k=501)


def test_mixture_scores_the_distance_to_the_nearest_component() -> None:
    sample = LocalVectorSample(dim=2)
    sample.update(_two_modes())
    fits = sample.fit(components=2)
    mixture = LocalGaussianMixture(dim=2, components=2)
    mixture.load_fits(fits)
    queries = torch.randn(50, 2, generator=torch.Generator().manual_seed(3)) * 8
    expected = torch.stack(
        [
            ((queries.double() - fit.mean) @ torch.linalg.inv(fit.covariance) * (queries.double() - fit.mean))
            .sum(dim=1)
            .sqrt()
            for fit in fits
        ]
    ).amin(dim=0)
    torch.testing.assert_close(mixture(queries).double(), expected, rtol=1e-4, atol=1e-5)
    # The modes' midpoint is far from both components, but close to one Gaussian stretched over both modes.
    shared = MultivariateGaussian(dim=2)
    shared.load_fit(sample.fit(components=1)[0])
    midpoint = torch.zeros(1, 2)
    assert mixture(midpoint).item() > 4.0
    assert shared(midpoint).item() < 1.0


@pytest.mark.parametrize(("dim", "components"), [(37, 20), (5, 3), (152, 17)])
def test_block_triangular_scoring_equals_one_full_product_per_component(dim: int, components: int) -> None:
    """Dimensions the row blocks do not divide, components the groups do not divide, fewer dimensions than blocks."""
    generator = torch.Generator().manual_seed(dim)
    factors = torch.randn(components, dim, dim, generator=generator).tril() * 0.3 + 2 * torch.eye(dim)
    mixture = LocalGaussianMixture(dim=dim, components=components)
    mixture.whitenings.copy_(torch.linalg.inv(factors).tril())
    mixture.means.copy_(torch.randn(components, dim, generator=generator))
    queries = torch.randn(64, dim, generator=generator) * 2
    whitened = torch.einsum(
        "kij,nkj->nki", mixture.whitenings.double(), queries.double()[:, None] - mixture.means.double()
    )
    expected = whitened.pow(2).sum(dim=-1).amin(dim=-1).sqrt()
    torch.testing.assert_close(mixture(queries).double(), expected, rtol=1e-5, atol=0)


def test_one_component_is_the_shared_gaussian_of_all_vectors() -> None:
    vectors = torch.randn(400, 6, generator=torch.Generator().manual_seed(4)) * torch.arange(1.0, 7.0)
    sample = LocalVectorSample(dim=6)
    estimator = StreamingGaussianEstimator(6)
    for chunk in vectors.split(64):
        sample.update(chunk)
        estimator.update(chunk)
    mixture, shared = LocalGaussianMixture(6, components=1), MultivariateGaussian(6)
    mixture.load_fits(sample.fit(components=1))
    shared.load_fit(estimator.fit())
    features = torch.randn(2, 6, 5, 5)
    torch.testing.assert_close(mixture.distance_map(features), shared.distance_map(features), rtol=1e-5, atol=1e-6)


def test_sample_keeps_every_vector_below_its_limit_and_thins_reproducibly_above() -> None:
    vectors = torch.randn(1000, 3, generator=torch.Generator().manual_seed(5))
    complete = LocalVectorSample(dim=3, max_vectors=1000)
    complete.update(vectors)
    torch.testing.assert_close(complete.vectors, vectors)

    def thinned(seed: int) -> torch.Tensor:
        sample = LocalVectorSample(dim=3, max_vectors=100, seed=seed)
        for chunk in vectors.split(50):
            sample.update(chunk)
        assert (sample.n_seen, sample.n_samples) == (1000, 100)
        return sample.vectors

    torch.testing.assert_close(thinned(0), thinned(0))
    assert not torch.equal(thinned(0), thinned(1))
    with pytest.raises(ValueError, match=r"shape \(n, 3\)"):
        complete.update(torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"one priority per local vector, \(2,\)"):
        complete.update(torch.zeros(2, 3), torch.zeros(3))


def test_sample_with_priorities_keeps_the_smallest_in_any_order_and_chunking() -> None:
    """The kept set is the ``max_vectors`` vectors of the smallest priorities, however the vectors come in."""
    generator = torch.Generator().manual_seed(6)
    vectors, priorities = torch.randn(1000, 3, generator=generator), torch.rand(1000, generator=generator).double()
    expected = vectors[priorities.argsort()[:100]]

    def kept(order: torch.Tensor, chunk: int) -> torch.Tensor:
        sample = LocalVectorSample(dim=3, max_vectors=100)
        for indices in order.split(chunk):
            sample.update(vectors[indices], priorities[indices])
        assert sample.n_samples == 100
        return sample.vectors[sample.priorities.argsort()]

    torch.testing.assert_close(kept(torch.arange(1000), 50), expected, rtol=0, atol=0)
    torch.testing.assert_close(kept(torch.randperm(1000, generator=generator), 7), expected, rtol=0, atol=0)


def test_a_thinned_fit_depends_on_the_images_not_their_order_or_batches() -> None:
    """The local sample keeps the same positions of the same images, however the images are shuffled and batched."""
    images = torch.rand(12, 3, 32, 32, generator=torch.Generator().manual_seed(7))
    reference, shuffled = _model(max_local_vectors=100), _model(max_local_vectors=100)
    fit_training_set(reference, images.split(4))
    fit_training_set(shuffled, images[torch.randperm(12, generator=torch.Generator().manual_seed(8))].split(5))
    with torch.no_grad():
        _, local = reference.embed(images[:1])
    assert 12 * local.shape[2] * local.shape[3] > 100  # 192 local vectors (4 x 4 per image), thinned to 100
    torch.testing.assert_close(shuffled.local_mixture.means, reference.local_mixture.means, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(
        shuffled.local_mixture.whitenings, reference.local_mixture.whitenings, rtol=1e-4, atol=1e-5
    )


def _model(**kwargs: object) -> GaussFTModel:
    torch.manual_seed(0)
    defaults = {
        "layers": ["layer1", "layer2"],
        "map_layers": ["layer2", "layer1"],
        "pretrained": False,
    }
    return GaussFTModel("resnet18", **{**defaults, **kwargs, "local_components": 3}).eval()


def _double_distance(x: torch.Tensor, mean: torch.Tensor, whitening: torch.Tensor) -> torch.Tensor:
    precision = whitening.double().T @ whitening.double()
    centred = x.double() - mean.double()
    return ((centred @ precision) * centred).sum(dim=-1).sqrt()


def test_image_scores_equal_their_documented_formulas() -> None:
    """``geometric``: sqrt(global * top-2 % mean of the score map); ``global``: the sum of the per-level distances.
    The score map: at every position the smaller of the distance to the nearest mixture component and to the
    position's own Gaussian."""
    model = _model()
    train = [torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(seed)) for seed in range(3)]
    fit_training_set(model, train)
    assert model.is_fitted

    def terms(images: torch.Tensor, top_fraction: float = 0.02) -> torch.Tensor:
        with torch.no_grad():
            features = dict(zip(["layer1", "layer2"], model.feature_extractor(images), strict=True))
        pooled = [features[name].mean(dim=(2, 3)) for name in model.layers]
        global_score = sum(
            _double_distance(x, g.mean, g.whitening) for x, g in zip(pooled, model.gaussians, strict=True)
        )
        fine = features["layer1"]  # stride 4: layer2 (stride 8) is resized to it
        coarse = F.interpolate(features["layer2"], size=fine.shape[-2:], mode="bilinear")
        # 4 x 4 windows, one per 2 x 2 cell (the defaults `local_aggregation=4`, `local_stride=2`)
        local = F.avg_pool2d(torch.cat([fine, coarse], 1), 4, stride=2, padding=1, count_include_pad=False)
        local = local.permute(0, 2, 3, 1)
        mixture = model.local_mixture
        distances = torch.stack(
            [_double_distance(local, m, w) for m, w in zip(mixture.means, mixture.whitenings, strict=True)]
        ).amin(dim=0)
        positional = model.positional_gaussians  # each position's own Gaussian, row by row
        height, width = local.shape[1:3]
        own = torch.stack([
            _double_distance(local[:, i, j], positional.means[i * width + j], positional.whitenings[i * width + j])
            for i in range(height)
            for j in range(width)
        ], dim=1).view(-1, height, width)  # fmt: skip
        distances = torch.minimum(distances, own)
        anomaly_map = AnomalyMapGenerator(sigma=4)(distances.unsqueeze(1).float(), images.shape[-2:])
        top = anomaly_map.flatten(1).sort(dim=1, descending=True).values[:, : round(top_fraction * 32 * 32)]
        return torch.stack([global_score, top.double().mean(dim=1)], dim=1)

    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        actual = model(images).pred_score
    torch.testing.assert_close(actual.double(), terms(images).prod(dim=1).sqrt(), rtol=1e-4, atol=0)
    model.image_score_mode = "global"
    with torch.no_grad():
        torch.testing.assert_close(model(images).pred_score.double(), terms(images)[:, 0], rtol=1e-4, atol=0)


def test_the_fit_takes_one_pass_over_the_training_images(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every Gaussian, the per-position ones included, comes from one pass; nothing else is fitted."""
    model = _model(max_local_vectors=100)  # a thinned sample
    train = [torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(seed)) for seed in range(3)]
    embed, calls = model.embed, []
    monkeypatch.setattr(model, "embed", lambda *args, **kwargs: calls.append(1) or embed(*args, **kwargs))
    fit_training_set(model, train)
    assert len(calls) == len(train)
    assert model.is_fitted


def test_the_global_score_fits_no_per_position_gaussians() -> None:
    """``image_score="global"`` never reads the per-position Gaussians, so they are neither built nor stored."""
    model = _model(image_score="global")
    assert model.positional_gaussians is None
    assert not any(key.startswith("positional_gaussians.") for key in model.state_dict())
    fit_training_set(model, [torch.rand(4, 3, 32, 32)])
    assert model.is_fitted


def test_the_geometric_score_refuses_a_missing_map_and_aggregation_windows_must_be_centred() -> None:
    model = _model()
    with pytest.raises(ValueError, match="needs the anomaly map"):
        model.image_score([torch.zeros(1, 64), torch.zeros(1, 128)])
    for size, stride in ((2, 1), (3, 2), (1, 2), (3, 0)):
        with pytest.raises(ValueError, match="`local_aggregation`, `local_stride`"):
            GaussFTModel("resnet18", pretrained=False, local_aggregation=size, local_stride=stride)
    with pytest.raises(ValueError, match="image_score"):
        GaussFTModel("resnet18", pretrained=False, image_score="combined")


class _TwoRanks:
    """Collectives for two threads that stand for two DDP ranks (every collective is called by both, in order)."""

    def __init__(self) -> None:
        self.barrier = threading.Barrier(2)
        self.slots: list[torch.Tensor | None] = [None, None]

    def all_gather(self, rank: int) -> Callable[[torch.Tensor], torch.Tensor]:
        def gather(tensor: torch.Tensor) -> torch.Tensor:
            self.slots[rank] = tensor.clone()
            self.barrier.wait()
            stacked = torch.stack([slot for slot in self.slots if slot is not None])
            self.barrier.wait()
            return stacked

        return gather

    def reduce_sum(self, rank: int) -> Callable[[torch.Tensor], torch.Tensor]:
        gather = self.all_gather(rank)
        return lambda tensor: gather(tensor).sum(dim=0)


@pytest.mark.parametrize("max_local_vectors", [100_000, 100])
def test_two_ranks_fit_the_same_model_as_one_process(max_local_vectors: int) -> None:
    """DDP splits the images (in another order) over ranks; the mixture and the Gaussians come out the same.

    Also when the local sample is thinned (100 of 256 vectors): it keeps the same positions of the same images.
    """
    train = [torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(seed)) for seed in range(4)]
    single = _model(max_local_vectors=max_local_vectors)
    fit_training_set(single, train)
    ranks = [_model(max_local_vectors=max_local_vectors), _model(max_local_vectors=max_local_vectors)]
    collectives, errors = _TwoRanks(), []

    def run(rank: int) -> None:
        try:
            batches = train[1 - rank :: 2][::-1]  # rank 0: batches 3, 1; rank 1: batches 2, 0
            fit_training_set(
                ranks[rank],
                batches,
                reduce_sum=collectives.reduce_sum(rank),
                all_gather=collectives.all_gather(rank),
            )
        except Exception as error:  # re-raised in the main thread
            errors.append(error)
            collectives.barrier.abort()

    threads = [threading.Thread(target=run, args=(rank,)) for rank in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors
    for model in ranks:
        torch.testing.assert_close(model.local_mixture.means, single.local_mixture.means, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(
            model.local_mixture.whitenings, single.local_mixture.whitenings, rtol=1e-4, atol=1e-5
        )
        ours, theirs = model.positional_gaussians, single.positional_gaussians
        torch.testing.assert_close(ours.means, theirs.means, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(ours.whitenings, theirs.whitenings, rtol=1e-4, atol=1e-5)
        for ours, theirs in zip(model.gaussians, single.gaussians, strict=True):
            torch.testing.assert_close(ours.whitening, theirs.whitening, rtol=1e-4, atol=1e-5)
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ranks[0](images).anomaly_map, single(images).anomaly_map, rtol=1e-4, atol=1e-4)
