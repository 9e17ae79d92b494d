# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""The sample of local training vectors that the anomaly map's mixture is fitted on.

A training set has far more local feature vectors than the mixture needs (119,364 in the 609 magnetic-tile training
images at 224 px): :class:`LocalVectorSample` keeps at most ``max_vectors`` of them, those of the smallest
priorities. :func:`position_priorities` draws each image's priorities from a generator seeded by
:func:`image_keys`, a hash of the image's bytes, so the sample holds the same positions of the same images whatever
order the images come in, however they are batched or split over DDP ranks (:func:`gather_rows`), and in every
epoch of a fine-tuning fit: two epochs' mixtures then differ by the weights alone, not by which vectors were drawn.

Example:
    >>> images = torch.rand(4, 3, 8, 8)
    >>> sample = LocalVectorSample(dim=2, max_vectors=10)
    >>> sample.update(torch.randn(4 * 5, 2), position_priorities(image_keys(images), positions=5))
    >>> sample.n_seen, sample.n_samples
    (20, 10)
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import torch

from anomalib_gaussft.model.gaussian import GaussianFit, StreamingGaussianEstimator
from anomalib_gaussft.model.local_mixture import canonical_order, kmeans

__all__ = ["LocalVectorSample", "gather_rows", "image_keys", "position_priorities"]


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


def image_keys(images: torch.Tensor) -> list[int]:
    """A 64-bit key per image, from its exact bytes: the same image gives the same key in any batch or order.

    Args:
        images: ``(N, ...)`` images (any dtype and device).

    Returns:
        ``N`` keys (unsigned 64-bit integers).

    Example:
        >>> images = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
        >>> image_keys(images)[1:] == image_keys(images[1:]), image_keys(images)[0] == image_keys(images)[1]
        (True, False)
    """
    rows = images.detach().contiguous().cpu().reshape(images.shape[0], -1).numpy()
    return [int.from_bytes(hashlib.blake2b(row.tobytes(), digest_size=8).digest(), "little") for row in rows]


def position_priorities(keys: Sequence[int], positions: int) -> torch.Tensor:
    """Uniform priorities in ``[0, 1)`` for every position of every image, drawn from a generator seeded by its key.

    :class:`LocalVectorSample` keeps the vectors of the smallest priorities: with these, the same positions of the
    same images whatever order the images come in, how they are batched or split over DDP ranks, and in every epoch.

    Args:
        keys: One key per image (:func:`image_keys`).
        positions: Local vectors per image (``h * w``).

    Returns:
        ``(N * positions,)`` float64 priorities, image by image (the order of ``(N, p, h, w)`` features flattened
        position-last, as :class:`~anomalib_gaussft.model.estimators.GaussianEstimators` does).

    Example:
        >>> both = position_priorities([7, 8], 3)
        >>> both.shape, torch.equal(position_priorities([8], 3), both[3:])
        (torch.Size([6]), True)
    """
    generator = torch.Generator()
    rows = [torch.rand(positions, generator=generator.manual_seed(key), dtype=torch.float64) for key in keys]
    return torch.cat(rows) if rows else torch.zeros(0, dtype=torch.float64)


class LocalVectorSample:
    """The local feature vectors of the training images, at most ``max_vectors`` of them.

    Every vector comes with a priority, uniform in ``[0, 1)``; beyond ``max_vectors`` the sample keeps the vectors of
    the smallest priorities (a uniform sample without replacement). With priorities from :func:`position_priorities`
    the sample is the same whatever order the images come in and however DDP splits them, and it holds the same
    positions of the same images in every epoch, so that epochs differ by their weights only; without, priorities are
    drawn from a generator seeded with ``seed`` (the same vectors in the same order give the same sample). Below the
    limit every vector is kept, and the fit does not depend on their order.

    Args:
        dim: Feature dimension ``p``.
        max_vectors: Most vectors kept (``100_000`` of 152 float32 dimensions take 61 MB).
        seed: Seed of the priorities drawn when none are given, and of k-means.

    Example:
        >>> sample = LocalVectorSample(dim=3, max_vectors=100)
        >>> for _ in range(5):
        ...     sample.update(torch.randn(40, 3))
        >>> sample.n_seen, sample.n_samples
        (200, 100)
    """

    def __init__(self, dim: int, max_vectors: int = 100_000, seed: int = 0) -> None:
        if dim < 1 or max_vectors < 1:
            msg = f"LocalVectorSample needs dim >= 1 and max_vectors >= 1, got dim={dim}, max_vectors={max_vectors}."
            raise ValueError(msg)
        self.dim = dim
        self.max_vectors = max_vectors
        self.seed = seed
        self.n_seen = 0
        self._chunks: list[torch.Tensor] = []
        self._priorities: list[torch.Tensor] = []
        self._threshold: float | None = None  # the largest priority kept, once the sample is full
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

    @property
    def priorities(self) -> torch.Tensor:
        """The kept vectors' priorities, ``(n,)`` float64."""
        if not self._priorities:
            return torch.zeros(0, dtype=torch.float64)
        return torch.cat(self._priorities)

    def update(self, vectors: torch.Tensor, priorities: torch.Tensor | None = None) -> None:
        """Add vectors ``(n, p)`` with their priorities ``(n,)`` (``None``: drawn from the seeded generator).

        Raises:
            ValueError: If a shape does not match or a vector is not finite.
        """
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            msg = f"Expected local vectors of shape (n, {self.dim}), got {tuple(vectors.shape)}."
            raise ValueError(msg)
        if priorities is None:
            priorities = torch.rand(vectors.shape[0], generator=self._generator, dtype=torch.float64)
        elif priorities.shape != (vectors.shape[0],):
            msg = f"Expected one priority per local vector, ({vectors.shape[0]},), got {tuple(priorities.shape)}."
            raise ValueError(msg)
        vectors = vectors.detach().float()
        if not torch.isfinite(vectors).all():
            msg = "Local features contain NaN or infinite values (fp16 overflow or a diverged run?)."
            raise ValueError(msg)
        self.n_seen += vectors.shape[0]
        priorities = priorities.detach().to(device="cpu", dtype=torch.float64)
        if self._threshold is not None:  # a full sample already holds max_vectors smaller priorities
            below = priorities < self._threshold
            vectors, priorities = vectors[below.to(vectors.device)], priorities[below]
        self._chunks.append(vectors)
        self._priorities.append(priorities)
        if self.n_samples > self.max_vectors:
            self._keep_smallest(self.vectors, self.priorities)

    def _keep_smallest(self, vectors: torch.Tensor, priorities: torch.Tensor) -> None:
        """Keep the ``max_vectors`` vectors of the smallest priorities (ties broken by priority order, stably)."""
        if vectors.shape[0] > self.max_vectors:
            kept = torch.argsort(priorities, stable=True)[: self.max_vectors].sort().values
            vectors, priorities = vectors[kept.to(vectors.device)], priorities[kept]
            self._threshold = float(priorities.max())
        self._chunks, self._priorities = [vectors], [priorities]

    def all_gather(self, all_gather: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Replace the sample by the ``max_vectors`` vectors of the smallest priorities of every process's samples.

        With :func:`position_priorities` this is the sample one process would have kept of all the images.

        Args:
            all_gather: See :func:`gather_rows`.
        """
        vectors = gather_rows(self.vectors, all_gather)
        priorities = gather_rows(self.priorities.to(vectors.device), all_gather).cpu()
        self.n_seen = int(all_gather(torch.tensor([self.n_seen], device=vectors.device)).sum())
        self._keep_smallest(vectors, priorities)

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
            estimator.update(canonical_order(members))
            fits.append(estimator.fit(ridge=ridge))
        return fits + [fits[0]] * (components - len(fits))
