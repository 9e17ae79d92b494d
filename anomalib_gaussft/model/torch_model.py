# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""PyTorch model of GaussFT: backbone -> per-level pooled features and local maps -> Gaussians -> scores and maps.

Data flows one way:

1. :class:`~anomalib_gaussft.model.feature_extractor.FeatureExtractor` returns the feature maps of the requested levels.
2. Global path: every level in ``layers`` is global-average-pooled; one :class:`MultivariateGaussian` per level;
   the image score is the sum of the per-level Mahalanobis distances (Rippel et al. 2020, 2021).
3. Local path: the ``map_layers`` feature maps are concatenated at the finest resolution and averaged over 4 x 4
   windows at stride 2 (one local vector per 2 x 2 positions); a mixture of Gaussians over these local feature vectors
   (:class:`~anomalib_gaussft.model.local_mixture.LocalGaussianMixture`) gives the distance to the nearest component at
   every position; upsampled and smoothed into the anomaly map. One Gaussian per position
   (:class:`~anomalib_gaussft.model.positional_gaussians.PositionalGaussians`) gives the distance to that position's
   normal appearance. The per-position Gaussians feed the image score only: its score map (:meth:`score_map`) takes
   the smaller of the two distances at each position; the anomaly map is the mixture's alone.
4. Image score (``image_score="geometric"``, the default): the geometric mean of the global score and the mean of the
   score map's top 2 %; ``"global"`` is the paper's global score alone (no per-position Gaussians are fitted then).

In training mode ``forward`` returns the pooled features (the loss needs them, with gradients); in eval mode it
returns an :class:`~anomalib.data.InferenceBatch` with ``pred_score`` and ``anomaly_map``. The Gaussians are fitted
by the Lightning module through :meth:`GaussFTModel.new_estimators` (a :class:`GaussianEstimators`: one estimator
per global level and a sample of local vectors for the mixture), :meth:`GaussFTModel.accumulate` and
:meth:`GaussFTModel.load_fits`.

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
from collections.abc import Sequence
from typing import Any

import torch
from anomalib.data import InferenceBatch
from torch import nn

from anomalib_gaussft.model.anomaly_map import (
    AnomalyMapGenerator,
    aggregate_local_features,
    check_aggregation,
    concatenate_local_features,
    top_fraction_mean,
)
from anomalib_gaussft.model.estimators import GaussianEstimators
from anomalib_gaussft.model.feature_extractor import FeatureExtractor, backbone_levels
from anomalib_gaussft.model.gaussian import MultivariateGaussian, StreamingGaussianEstimator
from anomalib_gaussft.model.local_mixture import LocalGaussianMixture
from anomalib_gaussft.model.local_sample import LocalVectorSample, image_keys
from anomalib_gaussft.model.positional_gaussians import PositionalGaussianEstimator, PositionalGaussians
from anomalib_gaussft.weights import PretrainedWeightsNotFoundError

__all__ = ["IMAGE_SCORES", "TOP_FRACTION", "GaussFTModel", "GaussianEstimators", "default_map_layers"]

IMAGE_SCORES = ("geometric", "global")
#: The fraction of the score map's pixels whose mean is the local term of the geometric image score.
TOP_FRACTION = 0.02

logger = logging.getLogger(__name__)


def default_map_layers(levels: Sequence[str]) -> list[str]:
    """Default levels for the anomaly map: mid-level features at strides 8 and 16.

    For EfficientNets (levels ``stem, blocks.0..6, head``) these are ``blocks.2`` and ``blocks.4``; for other
    backbones (e.g. ResNet ``act1, layer1..layer4``) the third and fourth levels, ``layer2`` and ``layer3``.
    """
    if "blocks.4" in levels:
        return ["blocks.2", "blocks.4"]
    return list(levels[2:4]) if len(levels) >= 4 else [levels[-1]]


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
        image_score: ``"geometric"``: the geometric mean of the global score and the mean of the score map's top 2 %
            (:data:`TOP_FRACTION`), pooled evidence and local evidence for small defects, each counted by its
            ratio to its typical normal value (``docs/method.md``, "Image score"). ``"global"``: the sum of the
            per-level Mahalanobis distances of the pooled features alone (the paper).
        sigma: Standard deviation of the anomaly map's Gaussian smoothing, in input pixels.
        local_components: Number of Gaussians of the anomaly map's mixture (k-means clusters of the training's local
            vectors); ``1``: one Gaussian shared by every position.
        local_aggregation: Average the local feature vectors over ``local_aggregation x local_aggregation``
            windows before the mixture sees them (``1``: none; :func:`aggregate_local_features`).
        local_stride: One window per ``local_stride x local_stride`` positions of the finest map layer: the mixture
            and the per-position Gaussians score ``local_stride^2`` times fewer positions. ``local_aggregation -
            local_stride`` must be even (centred windows). The default 4 x 4 windows at stride 2 scored magnetic tiles
            and the demo data as well as or better than 3 x 3 windows at stride 1 for a quarter of the work
            (``docs/studies/local_stride.md``).
        local_positional: Also fit one Gaussian per position of the local feature map (PaDiM-style,
            :class:`PositionalGaussians`) for the geometric image score: its score map reads the smaller of the
            mixture's and the position's distance (:meth:`score_map`); the anomaly map stays the mixture's
            (``docs/method.md``, "Image score"). Costs ``h w (p + p^2)`` floats: 18 MB at 224 px. Not fitted for
            ``image_score="global"``, which never reads them.
        max_local_vectors: Most local training vectors the mixture is fitted on (a uniform sample beyond that).
    """

    def __init__(
        self,
        backbone: str,
        layers: Sequence[str] | None = None,
        map_layers: Sequence[str] | None = None,
        pretrained: bool = True,
        weights_path: str | None = None,
        freeze_batchnorm: bool = True,
        image_score: str = "geometric",
        sigma: float = 4.0,
        local_components: int = 64,
        local_aggregation: int = 4,
        local_stride: int = 2,
        max_local_vectors: int = 100_000,
        local_positional: bool = True,
    ) -> None:
        super().__init__()
        if image_score not in IMAGE_SCORES:
            msg = f"Unknown image_score {image_score!r} (setting `image_score`); choose one of {IMAGE_SCORES}."
            raise ValueError(msg)
        check_aggregation(local_aggregation, local_stride)
        self.freeze_batchnorm = freeze_batchnorm
        self.local_aggregation = local_aggregation
        self.local_stride = local_stride
        self.max_local_vectors = max_local_vectors
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
        self.local_mixture = LocalGaussianMixture(sum(channels[name] for name in self.map_layers), local_components)
        positional = local_positional and image_score != "global"
        self.positional_gaussians = PositionalGaussians(self.local_mixture.dim) if positional else None
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
        """Whether every Gaussian has been fitted or loaded."""
        positional = self.positional_gaussians is None or bool(self.positional_gaussians.fitted)
        local = bool(self.local_mixture.fitted) and positional
        return local and all(bool(g.fitted) for g in self.gaussians)

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
        if not with_local:
            return pooled, None
        return pooled, self.local_feature_map(features)

    def local_feature_map(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """The local feature map ``(N, p_local, h, w)`` the mixture scores, from the extractor's features by level."""
        local = concatenate_local_features([features[name] for name in self.map_layers])
        return aggregate_local_features(local, self.local_aggregation, self.local_stride)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor] | InferenceBatch:
        """Pooled features (training mode) or ``InferenceBatch(pred_score, anomaly_map)`` (eval mode)."""
        pooled, local = self.embed(images)
        if self.training:
            return pooled
        size = images.shape[-2:]
        mixture = self.local_mixture.distance_map(local)
        anomaly_map = self.anomaly_map_generator(mixture, size)
        score_map = None
        if self.image_score_mode == "geometric":
            score_map = anomaly_map if self.positional_gaussians is None else self.score_map(local, size, mixture)
        return InferenceBatch(pred_score=self.image_score(pooled, score_map), anomaly_map=anomaly_map)

    def anomaly_map(self, local: torch.Tensor, image_size: tuple[int, int] | torch.Size) -> torch.Tensor:
        """The anomaly map ``(N, 1, H, W)`` at ``image_size`` from the local feature map of :meth:`embed`.

        Each position's distance to the nearest mixture component, upsampled and smoothed.
        """
        return self.anomaly_map_generator(self.local_mixture.distance_map(local), image_size)

    def score_map(
        self, local: torch.Tensor, image_size: tuple[int, int] | torch.Size, mixture: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The map whose top fraction the image score reads, ``(N, 1, H, W)``.

        With per-position Gaussians each position's value is the smaller of the distance to the nearest mixture
        component and to the position's own Gaussian (``docs/method.md``, "Image score"); without them it is
        :meth:`anomaly_map`.

        Args:
            local: The local feature map of :meth:`embed`.
            image_size: Output size.
            mixture: The mixture's distances ``(N, 1, h, w)`` if already computed.
        """
        mixture = self.local_mixture.distance_map(local) if mixture is None else mixture
        if self.positional_gaussians is not None:
            mixture = torch.minimum(mixture, self.positional_gaussians.distance_map(local))
        return self.anomaly_map_generator(mixture, image_size)

    def level_distances(self, pooled: Sequence[torch.Tensor]) -> torch.Tensor:
        """Mahalanobis distance of each global level's pooled features to its Gaussian, shape ``(N, L)``."""
        return torch.stack([gaussian(p) for gaussian, p in zip(self.gaussians, pooled, strict=True)], dim=1)

    def global_score(self, pooled: Sequence[torch.Tensor]) -> torch.Tensor:
        """The paper's image score ``(N,)``: the sum of the per-level Mahalanobis distances of the pooled features."""
        return self.level_distances(pooled).sum(dim=1)

    def image_score(self, pooled: Sequence[torch.Tensor], anomaly_map: torch.Tensor | None = None) -> torch.Tensor:
        """Image score ``(N,)`` from the pooled features (and, but for ``"global"``, the anomaly map).

        Args:
            pooled: Pooled features per global level, as returned by :meth:`embed`.
            anomaly_map: The map the score reads, ``(N, 1, H, W)`` (:meth:`score_map`: the anomaly map, or with
                per-position Gaussians the smaller of the two distances); needed by ``"geometric"``.

        Returns:
            The raw (unnormalised) image scores.

        Example:
            >>> model = GaussFTModel("resnet18", layers=["layer1"], map_layers=["layer1"], pretrained=False)
            >>> pooled, anomaly_map = [torch.ones(1, 64)], torch.full((1, 1, 10, 10), 4.0)  # unfitted: N(0, I)
            >>> model.global_score(pooled), model.image_score(pooled, anomaly_map)  # sqrt(8 * 4)
            (tensor([8.]), tensor([5.6569]))
        """
        if self.image_score_mode == "global":
            return self.global_score(pooled)
        if anomaly_map is None:
            msg = f"image_score={self.image_score_mode!r} needs the anomaly map (`anomaly_map`)."
            raise ValueError(msg)
        local = top_fraction_mean(anomaly_map, TOP_FRACTION)
        return (self.global_score(pooled).clamp_min(0) * local.clamp_min(0)).sqrt()

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
            local=LocalVectorSample(self.local_mixture.dim, max_vectors=self.max_local_vectors),
            positional=None
            if self.positional_gaussians is None
            else PositionalGaussianEstimator(self.local_mixture.dim, device=device),
        )

    @torch.no_grad()
    def accumulate(
        self, images: torch.Tensor, estimators: GaussianEstimators
    ) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """Add a batch of normal, pre-processed images' features to the estimators; return them (:meth:`embed`).

        The local sample's positions are drawn per image from its bytes (:func:`image_keys`), so the fit does not
        depend on the order or batching of the images.
        """
        pooled, local = self.embed(images)
        estimators.update(pooled, local, keys=image_keys(images))
        return pooled, local

    def load_fits(self, estimators: GaussianEstimators) -> None:
        """Fit every estimator and store the Gaussians in the buffers.

        Example:
            >>> model = GaussFTModel("resnet18", layers=["layer1"], map_layers=["layer1"], pretrained=False).eval()
            >>> estimators = model.new_estimators("cpu")
            >>> _ = model.accumulate(torch.rand(4, 3, 32, 32), estimators)
            >>> model.load_fits(estimators)
            >>> bool(model.local_mixture.fitted), estimators.n_images
            (True, 4)
        """
        if len(estimators.levels) != len(self.gaussians):
            msg = f"Got estimators for {len(estimators.levels)} global levels; this model has {len(self.gaussians)}."
            raise ValueError(msg)
        for gaussian, estimator in zip(self.gaussians, estimators.levels, strict=True):
            gaussian.load_fit(estimator.fit())
        self.local_mixture.load_fits(estimators.local.fit(self.local_mixture.components))
        if self.positional_gaussians is not None:
            if estimators.positional is None or estimators.positional.grid is None:
                msg = "The model has per-position Gaussians (`local_positional`) but the estimators hold no moments."
                raise ValueError(msg)
            self.positional_gaussians.load_fits(estimators.positional.fit(), estimators.positional.grid)
