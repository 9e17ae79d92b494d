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

* :class:`~anomalib_gaussft.model.local_sample.LocalVectorSample` collects the training vectors (at most a fixed
  number) and fits the components on them;
* :func:`kmeans` clusters them (k-means++ seeding, Lloyd iterations) in a canonical order, so that the result does
  not depend on the order the vectors came in (e.g. how DDP split the images).
* :class:`LocalGaussianMixture` holds the components in buffers and scores positions with one matrix product per
  component and a minimum: exportable to ONNX and OpenVINO. With one component it is the shared Gaussian.

Example:
    >>> import torch
    >>> from anomalib_gaussft.model.local_sample import LocalVectorSample
    >>> sample = LocalVectorSample(dim=2)
    >>> sample.update(torch.cat([torch.randn(200, 2) - 5, torch.randn(200, 2) + 5]))
    >>> mixture = LocalGaussianMixture(dim=2, components=2)
    >>> mixture.load_fits(sample.fit(components=2))
    >>> distances = mixture(torch.tensor([[-5.0, -5.0], [5.0, 5.0], [0.0, 0.0]]))
    >>> bool(distances[0] < 1 and distances[1] < 1 and distances[2] > 3)
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import nn

from anomalib_gaussft.model.gaussian import GaussianFit, mahalanobis_distance
from anomalib_gaussft.model.precision import in_float32
from anomalib_gaussft.model.triangular_storage import LowerTriangularStorage

__all__ = ["COMPONENTS_PER_PRODUCT", "ROW_BLOCKS", "LocalGaussianMixture", "canonical_order", "kmeans"]


def canonical_order(vectors: torch.Tensor) -> torch.Tensor:
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
    points = canonical_order(vectors.float())
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
