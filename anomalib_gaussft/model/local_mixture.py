# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""The local density model of the anomaly map: a mixture of Gaussians over local feature vectors.

Normal local appearance is multi-modal (background and object, the parts of an object, the grains of a texture); one
Gaussian shared by every position has to cover all modes and becomes wide everywhere. GaussFT clusters the local
feature vectors of the training images with k-means and fits one Ledoit-Wolf Gaussian per cluster; a position's
anomaly score is its Mahalanobis distance to the *nearest* component (``docs/studies/local_model.md``: pixel AUROC
0.912 with one shared Gaussian, 0.969 with 16 components on 3 x 3-averaged features, six demo categories; the
mixture's likelihood scored lower than the minimum distance).

Three pieces, one per job:

* :class:`LocalVectorSample` collects the training vectors, at most ``max_vectors`` of them (uniform thinning with a
  seeded generator beyond that), and gathers them across DDP ranks.
* :func:`kmeans` clusters them (k-means++ seeding, Lloyd iterations) in a canonical order, so that the result does
  not depend on the order the vectors came in (e.g. how DDP split the images).
* :class:`LocalGaussianMixture` holds the components in buffers and scores positions with one matrix product per
  component and a minimum: exportable to ONNX and OpenVINO. With one component it is the shared Gaussian.

Example:
    >>> import torch
    >>> sample = LocalVectorSample(dim=2)
    >>> sample.update(torch.cat([torch.randn(200, 2) - 5, torch.randn(200, 2) + 5]))
    >>> mixture = LocalGaussianMixture(dim=2, components=2)
    >>> mixture.load_fits(sample.fit(components=2))
    >>> distances = mixture(torch.tensor([[-5.0, -5.0], [5.0, 5.0], [0.0, 0.0]]))
    >>> bool(distances[0] < 1 and distances[1] < 1 and distances[2] > 3)
    True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

import torch
from torch import nn

from anomalib_gaussft.model.gaussian import GaussianFit, StreamingGaussianEstimator, mahalanobis_distance
from anomalib_gaussft.model.precision import in_float32
from anomalib_gaussft.model.triangular_storage import LowerTriangularStorage

__all__ = ["COMPONENTS_PER_PRODUCT", "ROW_BLOCKS", "LocalGaussianMixture", "LocalVectorSample", "gather_rows", "kmeans"]


def gather_rows(rows: torch.Tensor, all_gather: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Concatenate every process's ``rows`` (``(n_r, ...)``, ``n_r`` may differ), in rank order.

    Args:
        rows: This process's rows.
        all_gather: Returns a tensor of the same shape from every process stacked along a new first dimension, such as
            ``trainer.strategy.all_gather``.

    Returns:
        The rows of all processes, ``(sum_r n_r, ...)``.

    Example:
        >>> gather_rows(torch.ones(3, 2), lambda tensor: tensor.unsqueeze(0)).shape  # one process
        torch.Size([3, 2])
    """
    count = torch.tensor([rows.shape[0]], device=rows.device)
    counts = all_gather(count).reshape(-1).tolist()
    padded = rows.new_zeros((max(counts), *rows.shape[1:]))
    padded[: rows.shape[0]] = rows
    gathered = all_gather(padded).reshape(len(counts), -1, *rows.shape[1:])
    return torch.cat([gathered[rank, :n] for rank, n in enumerate(counts)])


def _canonical_order(vectors: torch.Tensor) -> torch.Tensor:
    """The vectors sorted by a fixed random projection: the same set in any order gives the same tensor."""
    generator = torch.Generator().manual_seed(0)
    direction = torch.randn(vectors.shape[1], generator=generator, dtype=torch.float64).to(vectors.device)
    return vectors[torch.argsort(vectors.double() @ direction, stable=True)]


def _nearest(
    vectors: torch.Tensor, centroids: torch.Tensor, squared_norms: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of the nearest centroid of every vector and the squared distance to it.

    ``squared_norms``, the vectors' squared norms ``(n, 1)``, computed once by a caller that calls this many times on
    the same vectors (k-means: once per seeded centroid and per iteration; the norms cost as much as a product with
    one centroid).
    """
    if squared_norms is None:
        squared_norms = (vectors * vectors).sum(1, keepdim=True)
    squared = squared_norms - 2 * vectors @ centroids.T + (centroids * centroids).sum(1)
    distances, labels = squared.clamp_min(0).min(dim=1)
    return labels, distances


def kmeans(vectors: torch.Tensor, k: int, iterations: int = 30, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """k-means with k-means++ seeding; the result depends on the set of vectors, not their order.

    Args:
        vectors: ``(n, p)`` float vectors.
        k: Number of clusters; at most ``n``.
        iterations: Maximum number of Lloyd iterations (it stops earlier when no label changes).
        seed: Seed of the k-means++ seeding.

    Returns:
        ``(centroids, labels)``: ``(k, p)`` centroids and the cluster of every vector, ``(n,)``, for the vectors in
        the order given. A cluster that ends empty keeps its last centroid.

    Raises:
        ValueError: If ``k`` is not between 1 and ``n``.

    Example:
        >>> points = torch.tensor([[0.0], [0.1], [10.0], [10.1]])
        >>> centroids, labels = kmeans(points, k=2)
        >>> sorted(centroids.flatten().tolist()), labels[0] == labels[1] != labels[2] == labels[3]
        ([0.05000000074505806, 10.050000190734863], tensor(True))
    """
    if not 1 <= k <= vectors.shape[0]:
        msg = f"k-means needs 1 <= k <= {vectors.shape[0]} (the number of vectors), got k={k}."
        raise ValueError(msg)
    points = _canonical_order(vectors.float())
    norms = (points * points).sum(1, keepdim=True)
    generator = torch.Generator().manual_seed(seed)
    first = int(torch.randint(points.shape[0], (1,), generator=generator))
    centroids = points[first : first + 1]
    _, squared = _nearest(points, centroids, norms)  # to the nearest centroid so far, updated with each new one
    for _ in range(1, k):  # k-means++: the next centroid with probability proportional to the squared distance
        if squared.sum() <= 0:  # fewer distinct vectors than clusters: repeat one
            centroids = torch.cat([centroids, centroids[:1]])
            continue
        index = int(torch.multinomial(squared.double().cpu(), 1, generator=generator))
        centroids = torch.cat([centroids, points[index : index + 1]])
        squared = torch.minimum(squared, _nearest(points, points[index : index + 1], norms)[1])
    labels = None
    for _ in range(iterations):
        new_labels, _ = _nearest(points, centroids, norms)
        if labels is not None and torch.equal(new_labels, labels):
            break
        labels = new_labels
        counts = torch.bincount(labels, minlength=k).unsqueeze(1)
        sums = torch.zeros_like(centroids).index_add_(0, labels, points)
        centroids = torch.where(counts > 0, sums / counts.clamp_min(1), centroids)
    labels, _ = _nearest(vectors.float(), centroids)
    return centroids, labels


class LocalVectorSample:
    """The local feature vectors of the training images, at most ``max_vectors`` of them.

    Beyond ``max_vectors`` the sample is thinned uniformly: every stored vector is kept with probability 1/2 and
    every later one with the halved keeping probability (a seeded generator, so the same images in the same order
    give the same sample). Below the limit every vector is kept, and the fit does not depend on their order.

    Args:
        dim: Feature dimension ``p``.
        max_vectors: Most vectors kept (``100_000`` of 152 float32 dimensions take 61 MB).
        seed: Seed of the thinning and of k-means.

    Example:
        >>> sample = LocalVectorSample(dim=3, max_vectors=100)
        >>> for _ in range(5):
        ...     sample.update(torch.randn(40, 3))
        >>> sample.n_seen, sample.n_samples <= 100
        (200, True)
    """

    def __init__(self, dim: int, max_vectors: int = 100_000, seed: int = 0) -> None:
        if dim < 1 or max_vectors < 1:
            msg = f"LocalVectorSample needs dim >= 1 and max_vectors >= 1, got dim={dim}, max_vectors={max_vectors}."
            raise ValueError(msg)
        self.dim = dim
        self.max_vectors = max_vectors
        self.seed = seed
        self.keep_probability = 1.0
        self.n_seen = 0
        self._chunks: list[torch.Tensor] = []
        self._generator = torch.Generator().manual_seed(seed)

    @property
    def n_samples(self) -> int:
        """Number of vectors kept."""
        return sum(chunk.shape[0] for chunk in self._chunks)

    @property
    def vectors(self) -> torch.Tensor:
        """The kept vectors, ``(n, p)`` float32."""
        if not self._chunks:
            return torch.zeros(0, self.dim)
        return torch.cat(self._chunks)

    def _keep(self, vectors: torch.Tensor, probability: float) -> torch.Tensor:
        mask = torch.rand(vectors.shape[0], generator=self._generator) < probability
        return vectors[mask.to(vectors.device)]

    def update(self, vectors: torch.Tensor) -> None:
        """Add vectors ``(n, p)``.

        Raises:
            ValueError: If the shape does not match or a vector is not finite.
        """
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            msg = f"Expected local vectors of shape (n, {self.dim}), got {tuple(vectors.shape)}."
            raise ValueError(msg)
        vectors = vectors.detach().float()
        if not torch.isfinite(vectors).all():
            msg = "Local features contain NaN or infinite values (fp16 overflow or a diverged run?)."
            raise ValueError(msg)
        self.n_seen += vectors.shape[0]
        if self.keep_probability < 1:
            vectors = self._keep(vectors, self.keep_probability)
        self._chunks.append(vectors)
        while self.n_samples > self.max_vectors:
            self.keep_probability /= 2
            self._chunks = [self._keep(self.vectors, 0.5)]

    def all_gather(self, all_gather: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Replace the sample by the union of every process's samples (thinned with a fresh seeded generator).

        Args:
            all_gather: See :func:`gather_rows`.
        """
        vectors = gather_rows(self.vectors, all_gather)
        self.n_seen = int(all_gather(torch.tensor([self.n_seen], device=vectors.device)).sum())
        if vectors.shape[0] > self.max_vectors:  # the same on every rank: the same data and the same fresh seed
            generator = torch.Generator().manual_seed(self.seed)
            vectors = vectors[torch.randperm(vectors.shape[0], generator=generator)[: self.max_vectors].sort().values]
        self._chunks = [vectors]

    def fit(self, components: int, ridge: float = 1e-6) -> list[GaussianFit]:
        """Cluster the sample into ``components`` with :func:`kmeans` and fit a Ledoit-Wolf Gaussian per cluster.

        Args:
            components: Number of mixture components ``k``. With fewer distinct vectors, or clusters that end
                empty, the missing components repeat the first one (a repeated component changes no minimum).
            ridge: See :meth:`StreamingGaussianEstimator.fit`.

        Returns:
            ``components`` fits (float64).

        Raises:
            ValueError: If no vector was collected.
        """
        vectors = self.vectors
        if vectors.shape[0] == 0:
            msg = "No local feature vectors were collected: the anomaly map's Gaussians cannot be fitted."
            raise ValueError(msg)
        if components == 1:
            labels = torch.zeros(vectors.shape[0], dtype=torch.long, device=vectors.device)
        else:
            _, labels = kmeans(vectors, min(components, vectors.shape[0]), seed=self.seed)
        fits = []
        for cluster in range(components):
            members = vectors[labels == cluster]
            if members.shape[0] == 0:
                continue
            estimator = StreamingGaussianEstimator(self.dim, device=vectors.device)
            estimator.update(_canonical_order(members))
            fits.append(estimator.fit(ridge=ridge))
        return fits + [fits[0]] * (components - len(fits))


#: Mixture components scored by one matrix product.
COMPONENTS_PER_PRODUCT = 16
#: Row blocks of the whitening matrices. They are lower triangular, so the rows of block ``i`` read only the first
#: ``(i + 1) p / b`` features: the products do ``(b + 1) / (2 b)`` of the full ones' work (9 / 16 for 8 blocks), and
#: each product's output is ``g p / b`` floats per vector.
ROW_BLOCKS = 8


class LocalGaussianMixture(LowerTriangularStorage, nn.Module):
    """``k`` Gaussians over local feature vectors; ``forward`` returns the Mahalanobis distance to the nearest one.

    Buffers (float32): ``means`` ``(k, p)``, ``whitenings`` ``(k, p, p)`` (their lower triangles in the state dict,
    :mod:`~anomalib_gaussft.model.triangular_storage`) and ``fitted``. Scoring takes
    one product per :data:`COMPONENTS_PER_PRODUCT` components and :data:`ROW_BLOCKS` row block; the peak memory is
    that product's output, ``(n, g p / b)``.

    Args:
        dim: Feature dimension ``p``.
        components: Number of components ``k``; ``1`` is one Gaussian shared by every position.

    Example:
        >>> mixture = LocalGaussianMixture(dim=4, components=3)
        >>> mixture.distance_map(torch.zeros(2, 4, 5, 5)).shape
        torch.Size([2, 1, 5, 5])
    """

    triangular_buffers: ClassVar[dict[str, torch.dtype]] = {"whitenings": torch.float32}

    def __init__(self, dim: int, components: int = 16) -> None:
        super().__init__()
        if components < 1:
            msg = f"The local mixture needs at least one component, got {components} (setting `local_components`)."
            raise ValueError(msg)
        self.dim = dim
        self.components = components
        self.register_buffer("means", torch.zeros(components, dim))
        self.register_buffer("whitenings", torch.eye(dim).repeat(components, 1, 1))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))
        self.means: torch.Tensor
        self.whitenings: torch.Tensor
        self.fitted: torch.Tensor

    def load_fits(self, fits: Sequence[GaussianFit]) -> None:
        """Store one fit per component (converted to the buffers' dtype and device).

        Raises:
            ValueError: If the number of fits or their dimension does not match.
        """
        if len(fits) != self.components or any(fit.mean.shape != (self.dim,) for fit in fits):
            msg = f"Expected {self.components} fits of dimension {self.dim}, got {len(fits)}."
            raise ValueError(msg)
        self.means.copy_(torch.stack([fit.mean for fit in fits]))
        self.whitenings.copy_(torch.stack([fit.whitening for fit in fits]))
        self.fitted.fill_(True)

    @in_float32
    def forward(self, vectors: torch.Tensor) -> torch.Tensor:
        """Distance of ``vectors`` ``(..., p)`` to the nearest component, shape ``(...)``.

        The whitened vectors ``W (x - m) = W x - W m`` are computed :data:`COMPONENTS_PER_PRODUCT` components and
        one of :data:`ROW_BLOCKS` row blocks at a time, each product reading only the features that block's rows
        of the lower-triangular ``W`` can reach: the same distances to float rounding as one full product per
        component (``tests/test_local_mixture.py``) for about 9 / 16 of its arithmetic.
        """
        means, whitenings = self.means.detach(), self.whitenings.detach()
        if self.components == 1:
            return mahalanobis_distance(vectors, means[0], whitenings[0])
        flat = vectors.reshape(-1, self.dim)
        offsets = (whitenings @ means.unsqueeze(-1)).squeeze(-1)  # (k, p): W m
        bounds = sorted({round(self.dim * (block + 1) / ROW_BLOCKS) for block in range(ROW_BLOCKS)} - {0})
        nearest = None
        for first in range(0, self.components, COMPONENTS_PER_PRODUCT):
            group = slice(first, first + COMPONENTS_PER_PRODUCT)
            squared, start = None, 0
            for end in bounds:
                rows = whitenings[group, start:end, :end]  # (g, b, end): these rows are zero beyond column `end`
                whitened = flat[:, :end] @ rows.flatten(0, 1).T - offsets[group, start:end].flatten()
                part = (whitened * whitened).unflatten(-1, (rows.shape[0], end - start)).sum(dim=-1)  # (n, g)
                squared, start = part if squared is None else squared + part, end
            closest = squared.amin(dim=-1)
            nearest = closest if nearest is None else torch.minimum(nearest, closest)
        return nearest.clamp_min(1e-12).sqrt().reshape(vectors.shape[:-1])

    def distance_map(self, features: torch.Tensor) -> torch.Tensor:
        """Distance at every position of ``(N, p, H, W)`` features, shape ``(N, 1, H, W)``."""
        return self(features.permute(0, 2, 3, 1)).unsqueeze(1)

    def extra_repr(self) -> str:
        """Dimension and number of components in the module's repr."""
        return f"dim={self.dim}, components={self.components}"
