# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""PyTorch model of GaussFT: backbone -> per-level pooled features and local maps -> Gaussians -> scores and maps.

Data flows one way:

1. :class:`~anomalib_gaussft.model.feature_extractor.FeatureExtractor` returns the feature maps of the requested levels.
2. Global path: every level in ``layers`` is global-average-pooled; one :class:`MultivariateGaussian` per level;
   the image score is the sum of the per-level Mahalanobis distances (Rippel et al. 2020, 2021).
3. Local path: the ``map_layers`` feature maps are concatenated at the finest resolution; one shared Gaussian over
   local feature vectors gives a distance at every position; upsampled and smoothed into the anomaly map.

In training mode ``forward`` returns the pooled features (the loss needs them, with gradients); in eval mode it
returns an :class:`~anomalib.data.InferenceBatch` with ``pred_score`` and ``anomaly_map``. The Gaussians are fitted
by the Lightning module through :meth:`GaussFTModel.new_estimators` (a :class:`GaussianEstimators`: one estimator
per global level and one for the local Gaussian), :meth:`GaussFTModel.accumulate` and :meth:`GaussFTModel.load_fits`.

Example:
    >>> import torch
    >>> model = GaussFTModel("tf_efficientnet_lite0", pretrained=False).eval()
    >>> output = model(torch.rand(2, 3, 64, 64))
    >>> output.pred_score.shape, output.anomaly_map.shape
    (torch.Size([2]), torch.Size([2, 1, 64, 64]))
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from anomalib.data import InferenceBatch
from torch import nn

from anomalib_gaussft.model.anomaly_map import AnomalyMapGenerator, concatenate_local_features
from anomalib_gaussft.model.feature_extractor import FeatureExtractor, backbone_levels
from anomalib_gaussft.model.gaussian import MultivariateGaussian, StreamingGaussianEstimator
from anomalib_gaussft.weights import PretrainedWeightsNotFoundError

__all__ = ["IMAGE_SCORES", "GaussFTModel", "GaussianEstimators", "default_map_layers"]

IMAGE_SCORES = ("global", "combined")

logger = logging.getLogger(__name__)


def default_map_layers(levels: Sequence[str]) -> list[str]:
    """Default levels for the anomaly map: mid-level features at strides 8 and 16.

    For EfficientNets (levels ``stem, blocks.0..6, head``) these are ``blocks.2`` and ``blocks.4``; for other
    backbones (e.g. ResNet ``act1, layer1..layer4``) the third and fourth levels, ``layer2`` and ``layer3``.
    """
    if "blocks.4" in levels:
        return ["blocks.2", "blocks.4"]
    return list(levels[2:4]) if len(levels) >= 4 else [levels[-1]]


@dataclass
class GaussianEstimators:
    """The streaming estimators of every Gaussian of a :class:`GaussFTModel`, by name.

    Attributes:
        levels: One estimator per global level, in the model's ``layers`` order; each receives one pooled feature
            vector per image.
        local: The estimator of the local Gaussian of the anomaly map; it receives every local feature vector (every
            position of every image).

    Example:
        >>> estimators = GaussianEstimators(levels=[StreamingGaussianEstimator(4)], local=StreamingGaussianEstimator(2))
        >>> estimators.update([torch.randn(3, 4)], local=torch.randn(3, 2, 5, 5))
        >>> estimators.n_images, estimators.local.n_samples
        (3, 75)
        >>> len(list(estimators))  # every estimator, global levels first
        2
    """

    levels: list[StreamingGaussianEstimator]
    local: StreamingGaussianEstimator

    def __iter__(self) -> Iterator[StreamingGaussianEstimator]:
        """Every estimator: the global levels in order, then the local one."""
        yield from self.levels
        yield self.local

    @property
    def n_images(self) -> int:
        """Number of images accumulated (counted by the first global level; the local estimator counts positions)."""
        return self.levels[0].n_samples if self.levels else 0

    def update(self, pooled: Sequence[torch.Tensor], local: torch.Tensor) -> None:
        """Add a batch: pooled features per global level ``[(N, p_l)]`` and the local feature map ``(N, p, h, w)``.

        Raises:
            ValueError: If the number of pooled levels differs from the number of estimators.
        """
        if len(pooled) != len(self.levels):
            msg = f"Got pooled features of {len(pooled)} levels for {len(self.levels)} level estimators."
            raise ValueError(msg)
        for estimator, features in zip(self.levels, pooled, strict=True):
            estimator.update(features)
        self.local.update(local.permute(0, 2, 3, 1).reshape(-1, local.shape[1]))

    def all_reduce(self, reduce_sum: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Sum every estimator's statistics across processes (see :meth:`StreamingGaussianEstimator.all_reduce`)."""
        for estimator in self:
            estimator.all_reduce(reduce_sum)


class GaussFTModel(nn.Module):
    """Feature extractor plus the fitted Gaussians that score images and positions.

    Args:
        backbone: timm model name (optionally with a pretrained tag).
        layers: Levels that are pooled into image-level Gaussians; ``None`` uses every level.
        map_layers: Levels concatenated for the local Gaussian of the anomaly map; ``None`` uses
            :func:`default_map_layers`.
        pretrained: Load ImageNet weights (see :mod:`anomalib_gaussft.weights`).
        weights_path: Local weights file for the backbone.
        freeze_batchnorm: Keep BatchNorm layers in eval mode (running statistics fixed) while training. Batches of
            normal images only would otherwise shift the statistics the pretrained features depend on.
        image_score: ``"global"``: sum of the per-level Mahalanobis distances of the pooled features (the paper).
            ``"combined"``: the mean of the per-level distances divided by ``sqrt(p_l)`` plus the maximum of the
            local distance map divided by ``sqrt(p_local)``; adds local evidence for small defects.
        sigma: Standard deviation of the anomaly map's Gaussian smoothing, in input pixels.
    """

    def __init__(
        self,
        backbone: str,
        layers: Sequence[str] | None = None,
        map_layers: Sequence[str] | None = None,
        pretrained: bool = True,
        weights_path: str | None = None,
        freeze_batchnorm: bool = True,
        image_score: str = "global",
        sigma: float = 4.0,
    ) -> None:
        super().__init__()
        if image_score not in IMAGE_SCORES:
            msg = f"Unknown image_score {image_score!r} (setting `image_score`); choose one of {IMAGE_SCORES}."
            raise ValueError(msg)
        self.freeze_batchnorm = freeze_batchnorm
        self.image_score_mode = image_score
        # Resolve the level lists before building the extractor so that it returns exactly their union.
        levels = backbone_levels(backbone)
        self.layers = list(layers) if layers is not None else levels
        self.map_layers = list(map_layers) if map_layers is not None else default_map_layers(levels)
        self.feature_extractor = FeatureExtractor(
            backbone,
            layers=[*self.layers, *self.map_layers],
            pretrained=pretrained,
            weights_path=weights_path,
        )
        channels = dict(zip(self.feature_extractor.layers, self.feature_extractor.channels, strict=True))
        strides = dict(zip(self.feature_extractor.layers, self.feature_extractor.strides, strict=True))
        self.map_layers = sorted(
            self.map_layers, key=lambda name: (strides[name], self.feature_extractor.layers.index(name))
        )
        self.gaussians = nn.ModuleList(MultivariateGaussian(channels[name]) for name in self.layers)
        self.local_gaussian = MultivariateGaussian(sum(channels[name] for name in self.map_layers))
        self.anomaly_map_generator = AnomalyMapGenerator(sigma=sigma)

    @classmethod
    def with_fallback(cls, backbone: str, fallback_backbone: str | None, **kwargs: Any) -> GaussFTModel:
        """Build the model, or, with a warning, on ``fallback_backbone`` when ``backbone`` has no pretrained weights.

        Args:
            backbone: timm model name.
            fallback_backbone: Backbone used instead when no pretrained weights for ``backbone`` can be found
                (e.g. offline without the EfficientNet-B4 weights); ``None`` re-raises the error. Never used with an
                explicit ``weights_path``.
            **kwargs: The other arguments of :class:`GaussFTModel`.

        Returns:
            The model; ``model.feature_extractor.backbone`` names the backbone it was built on.

        Raises:
            PretrainedWeightsNotFoundError: If no weights are found and there is no fallback to take.
        """
        try:
            return cls(backbone, **kwargs)
        except PretrainedWeightsNotFoundError as error:
            if fallback_backbone is None or fallback_backbone == backbone or kwargs.get("weights_path"):
                raise
            message = (
                f"No pretrained weights for backbone {backbone!r} are available here ({error}). Falling back to "
                f"{fallback_backbone!r} (setting `fallback_backbone`; set it to null to make this an error)."
            )
            warnings.warn(message, stacklevel=3)
            logger.warning(message)
            return cls(fallback_backbone, **kwargs)

    @property
    def is_fitted(self) -> bool:
        """Whether every Gaussian has been fitted (or loaded from a checkpoint)."""
        return bool(self.local_gaussian.fitted) and all(bool(g.fitted) for g in self.gaussians)

    def train(self, mode: bool = True) -> GaussFTModel:
        """Set training mode; with ``freeze_batchnorm`` the BatchNorm layers stay in eval mode."""
        super().train(mode)
        if mode and self.freeze_batchnorm:
            for module in self.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.train(False)
        return self

    def embed(self, images: torch.Tensor, with_local: bool = True) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """Pooled features per global level ``[(N, p_l)]`` and the local feature map ``(N, p_local, h, w)``.

        Args:
            images: Normalised images ``(N, 3, H, W)``.
            with_local: Also build the local feature map (``None`` in its place otherwise, e.g. for the image score
                alone).
        """
        features = dict(zip(self.feature_extractor.layers, self.feature_extractor(images), strict=True))
        pooled = [features[name].mean(dim=(2, 3)) for name in self.layers]
        local = concatenate_local_features([features[name] for name in self.map_layers]) if with_local else None
        return pooled, local

    def forward(self, images: torch.Tensor) -> list[torch.Tensor] | InferenceBatch:
        """Pooled features (training mode) or ``InferenceBatch(pred_score, anomaly_map)`` (eval mode)."""
        pooled, local = self.embed(images)
        if self.training:
            return pooled
        local_scores = self.local_gaussian.distance_map(local)
        anomaly_map = self.anomaly_map_generator(local_scores, images.shape[-2:])
        return InferenceBatch(pred_score=self.image_score(pooled, local_scores), anomaly_map=anomaly_map)

    def level_distances(self, pooled: Sequence[torch.Tensor]) -> torch.Tensor:
        """Mahalanobis distance of each global level's pooled features to its Gaussian, shape ``(N, L)``."""
        return torch.stack([gaussian(p) for gaussian, p in zip(self.gaussians, pooled, strict=True)], dim=1)

    def image_score(self, pooled: Sequence[torch.Tensor], local_scores: torch.Tensor | None = None) -> torch.Tensor:
        """Image score ``(N,)`` from the pooled features (and, for ``"combined"``, the local distance map).

        Args:
            pooled: Pooled features per global level, as returned by :meth:`embed`.
            local_scores: Local distance map ``(N, 1, h, w)``; needed only for ``image_score="combined"``.

        Returns:
            The raw (unnormalised) image scores.
        """
        distances = self.level_distances(pooled)
        if self.image_score_mode == "global":
            return distances.sum(dim=1)
        if local_scores is None:
            msg = "image_score='combined' needs the local distance map (`local_scores`)."
            raise ValueError(msg)
        dims = torch.tensor([g.dim for g in self.gaussians], dtype=distances.dtype, device=distances.device)
        local_max = local_scores.flatten(1).amax(dim=1) / self.local_gaussian.dim**0.5
        return (distances / dims.sqrt()).mean(dim=1) + local_max

    def new_estimators(self, device: torch.device | str) -> GaussianEstimators:
        """Empty estimators for every Gaussian: one per global level (``layers`` order) and the local one.

        Example:
            >>> model = GaussFTModel("resnet18", layers=["layer1", "layer2"], map_layers=["layer1"], pretrained=False)
            >>> estimators = model.new_estimators("cpu")
            >>> [estimator.dim for estimator in estimators.levels], estimators.local.dim
            ([64, 128], 64)
        """
        return GaussianEstimators(
            levels=[StreamingGaussianEstimator(gaussian.dim, device=device) for gaussian in self.gaussians],
            local=StreamingGaussianEstimator(self.local_gaussian.dim, device=device),
        )

    @torch.no_grad()
    def accumulate(self, images: torch.Tensor, estimators: GaussianEstimators) -> None:
        """Add the features of a batch of normal, pre-processed images to the estimators."""
        estimators.update(*self.embed(images))

    def load_fits(self, estimators: GaussianEstimators) -> None:
        """Fit every estimator and store the Gaussians in the buffers.

        Example:
            >>> model = GaussFTModel("resnet18", layers=["layer1"], map_layers=["layer1"], pretrained=False).eval()
            >>> estimators = model.new_estimators("cpu")
            >>> model.accumulate(torch.rand(4, 3, 32, 32), estimators)
            >>> model.load_fits(estimators)
            >>> model.is_fitted, estimators.n_images
            (True, 4)
        """
        if len(estimators.levels) != len(self.gaussians):
            msg = f"Got estimators for {len(estimators.levels)} global levels; this model has {len(self.gaussians)}."
            raise ValueError(msg)
        for gaussian, estimator in zip(self.gaussians, estimators.levels, strict=True):
            gaussian.load_fit(estimator.fit())
        self.local_gaussian.load_fit(estimators.local.fit())
