# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""One Gaussian per position of the local feature map (PaDiM-style), beside the mixture shared by all positions.

The anomaly map's mixture (:mod:`~anomalib_gaussft.model.local_mixture`) asks whether a local feature vector looks
like *some* normal local appearance anywhere in the image. Where images are aligned (objects, textures photographed
the same way), the normal appearance at a position is narrower than that: :class:`PositionalGaussians` holds one
Ledoit-Wolf Gaussian per position, fitted on the training images' vectors at that position. The per-position Gaussians
feed the image score only: its score map takes, at each position, the smaller of the two distances (a position is
normal when either model explains it); the anomaly map is the mixture's alone (``docs/method.md``, "Image score").

* :class:`PositionalGaussianEstimator` accumulates the moments of every position in one batched
  :class:`~anomalib_gaussft.model.gaussian.StreamingGaussianEstimator` (one Gaussian per position): one batched
  product per batch of images, a handful of collectives per fit under DDP whatever the number of positions, and
  additive moments, so DDP sums them exactly.
* :class:`PositionalGaussians` stores the fits as float32 buffers ``means`` ``(P, p)`` and ``whitenings``
  ``(P, p, p)``, ``P = h x w``. The grid is known only once the model has seen features (it follows from the input
  size), so the buffers start empty and take the fitted (or loaded) shape.

Example:
    >>> estimator = PositionalGaussianEstimator(dim=3)
    >>> estimator.update(torch.randn(10, 3, 2, 4))
    >>> gaussians = PositionalGaussians(dim=3)
    >>> gaussians.load_fits(estimator.fit(), estimator.grid)
    >>> gaussians.means.shape, gaussians.distance_map(torch.randn(5, 3, 2, 4)).shape
    (torch.Size([8, 3]), torch.Size([5, 1, 2, 4]))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn

from anomalib_gaussft.model.gaussian import GaussianFit, StreamingGaussianEstimator
from anomalib_gaussft.model.precision import in_float32
from anomalib_gaussft.model.triangular_storage import LowerTriangularStorage, round_to_storage

__all__ = ["PositionalGaussianEstimator", "PositionalGaussians"]


class PositionalGaussianEstimator:
    """Streaming moments of the local feature vectors at every position of a fixed ``h x w`` grid.

    One :class:`~anomalib_gaussft.model.gaussian.StreamingGaussianEstimator` with ``batch_shape=(h w,)`` holds
    them, so an update, the DDP reduction and the fit each cost a fixed number of tensor operations, not one per
    position.

    Args:
        dim: Feature dimension ``p``.
        device: Device of the accumulators (float64: ``h w p^2`` numbers; the 14 x 14 positions of 152 dimensions
            at 224 px take 36 MB).

    Example:
        >>> estimator = PositionalGaussianEstimator(dim=2)
        >>> estimator.update(torch.ones(4, 2, 3, 3))
        >>> estimator.grid, estimator.n_images
        ((3, 3), 4)
    """

    def __init__(self, dim: int, device: torch.device | str = "cpu") -> None:
        if dim < 1:
            msg = f"Feature dimension must be positive, got {dim}."
            raise ValueError(msg)
        self.dim = dim
        self.device = device
        self.grid: tuple[int, int] | None = None
        self.estimator: StreamingGaussianEstimator | None = None

    @property
    def n_images(self) -> int:
        """Number of feature maps accumulated."""
        return self.estimator.n_samples if self.estimator is not None else 0

    def update(self, features: torch.Tensor) -> None:
        """Add local feature maps ``(N, p, h, w)``.

        Raises:
            ValueError: If the dimension or the grid differs from the first batch's.
        """
        if features.ndim != 4 or features.shape[1] != self.dim:
            msg = f"Expected local feature maps of shape (N, {self.dim}, h, w), got {tuple(features.shape)}."
            raise ValueError(msg)
        grid = (int(features.shape[2]), int(features.shape[3]))
        if self.grid is None:
            self.grid = grid
            self.estimator = StreamingGaussianEstimator(self.dim, device=self.device, batch_shape=(grid[0] * grid[1],))
        elif grid != self.grid:
            msg = (
                f"Local feature maps of {grid[0]} x {grid[1]} positions after {self.grid[0]} x {self.grid[1]}: the "
                "per-position Gaussians need every training image at the same size (setting `image_size`)."
            )
            raise ValueError(msg)
        self.estimator.update(features.detach().flatten(2).permute(2, 0, 1))  # (P, N, p)

    def all_reduce(self, reduce_sum: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Sum every position's moments over processes (see :meth:`StreamingGaussianEstimator.all_reduce`).

        Raises:
            ValueError: If this process accumulated nothing (every rank needs the grid to take part).
        """
        self._check_accumulated()
        self.estimator.all_reduce(reduce_sum)

    def fit(self, ridge: float = 1e-6) -> GaussianFit:
        """One Ledoit-Wolf fit per position, row by row along the fit's first dimension (``means`` ``(P, p)``).

        Raises:
            ValueError: If nothing was accumulated.
        """
        self._check_accumulated()
        return self.estimator.fit(ridge=ridge)

    def _check_accumulated(self) -> None:
        if self.estimator is None:
            msg = "No local feature maps were accumulated: the per-position Gaussians cannot be fitted."
            raise ValueError(msg)


class PositionalGaussians(LowerTriangularStorage, nn.Module):
    """One Gaussian per position; ``distance_map`` returns each position's Mahalanobis distance to its own Gaussian.

    Buffers (float32): ``means`` ``(P, p)``, ``whitenings`` ``(P, p, p)``, ``grid`` ``(2,)`` (``h, w``) and
    ``fitted``. Empty until :meth:`load_fits` or a state dict gives them their shape. The state dict holds the
    whitenings' lower triangles in float16, each scaled by its largest entry
    (:mod:`~anomalib_gaussft.model.triangular_storage`): 4.6 MB instead of 18 MB for 14 x 14 positions of 152
    dimensions. :meth:`load_fits` rounds the whitenings to those stored values, so a loaded model scores exactly
    like the fitted one.

    Args:
        dim: Feature dimension ``p``.

    Example:
        >>> gaussians = PositionalGaussians(dim=2)
        >>> eye = torch.eye(2).expand(2, 2, 2)
        >>> gaussians.load_fits(GaussianFit(torch.zeros(2, 2), eye, eye, torch.zeros(2), 1), (1, 2))
        >>> gaussians.distance_map(torch.full((1, 2, 1, 2), 3.0)).flatten().tolist()  # sqrt(3^2 + 3^2)
        [4.242640495300293, 4.242640495300293]
    """

    triangular_buffers: ClassVar[dict[str, torch.dtype]] = {"whitenings": torch.float16}

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.register_buffer("means", torch.zeros(0, dim))
        self.register_buffer("whitenings", torch.zeros(0, dim, dim))
        self.register_buffer("grid", torch.zeros(2, dtype=torch.long))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))
        self.means: torch.Tensor
        self.whitenings: torch.Tensor
        self.grid: torch.Tensor
        self.fitted: torch.Tensor

    def load_fits(self, fits: GaussianFit, grid: tuple[int, int]) -> None:
        """Store the batched fit of every position of the ``(h, w)`` grid, row by row.

        Args:
            fits: A fit with one Gaussian per position along its first dimension (``mean`` ``(h w, p)``), as
                :meth:`PositionalGaussianEstimator.fit` returns.
            grid: ``(h, w)``.

        Raises:
            ValueError: If the number of positions or the dimension does not match.
        """
        if fits.mean.shape != (grid[0] * grid[1], self.dim):
            msg = f"Expected {grid[0] * grid[1]} fits of dimension {self.dim} for a {grid[0]} x {grid[1]} grid."
            raise ValueError(msg)
        kwargs = {"dtype": self.means.dtype, "device": self.means.device}
        self.means = fits.mean.to(**kwargs)
        # held as stored, so that a model loaded from its state dict scores exactly like this one
        self.whitenings = round_to_storage(fits.whitening.to(**kwargs), self.triangular_buffers["whitenings"])
        self.grid = torch.tensor(grid, dtype=torch.long, device=self.grid.device)
        self.fitted.fill_(True)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        """Take the saved grid's number of positions before the values are copied (the buffers' size is the fit's)."""
        saved = state_dict.get(prefix + "means")
        if isinstance(saved, torch.Tensor) and saved.shape[1:] == self.means.shape[1:]:
            positions = saved.shape[0]
            self.means = torch.empty_like(self.means).resize_(positions, self.dim)
            self.whitenings = torch.empty_like(self.whitenings).resize_(positions, self.dim, self.dim)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @in_float32
    def distance_map(self, features: torch.Tensor) -> torch.Tensor:
        """Distance at every position of ``(N, p, h, w)`` features, shape ``(N, 1, h, w)``.

        Before any fit every distance is infinite: no position has a normal appearance yet, so the smaller of this
        and the mixture's distance is the mixture's.

        Raises:
            ValueError: If the features' grid is not the fitted one (another input size than at training).
        """
        height, width = features.shape[-2:]
        if self.means.shape[0] == 0:
            return features.new_full((features.shape[0], 1, height, width), float("inf"))
        if self.means.shape[0] != height * width:
            msg = (
                f"The per-position Gaussians were fitted on a grid of {' x '.join(map(str, self.grid.tolist()))} "
                f"positions; these features have {height} x {width}. Score images at the training size (setting "
                "`image_size`)."
            )
            raise ValueError(msg)
        vectors = features.flatten(2).permute(2, 0, 1) - self.means.unsqueeze(1)  # (P, N, p)
        whitened = torch.bmm(vectors, self.whitenings.transpose(1, 2))
        distances = (whitened * whitened).sum(dim=-1).clamp_min(1e-12).sqrt()  # (P, N)
        return distances.T.reshape(features.shape[0], 1, height, width)

    def extra_repr(self) -> str:
        """Dimension and grid in the module's repr."""
        return f"dim={self.dim}, grid={tuple(self.grid.tolist())}"
