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
by the Lightning module through :meth:`GaussFTModel.new_estimators`, :meth:`GaussFTModel.accumulate` and
:meth:`GaussFTModel.load_fits`.

Example:
    >>> import torch
    >>> model = GaussFTModel("tf_efficientnet_lite0", pretrained=False).eval()
    >>> output = model(torch.rand(2, 3, 64, 64))
    >>> output.pred_score.shape, output.anomaly_map.shape
    (torch.Size([2]), torch.Size([2, 1, 64, 64]))
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from anomalib.data import InferenceBatch
from torch import nn

from anomalib_gaussft.model.anomaly_map import AnomalyMapGenerator, concatenate_local_features
from anomalib_gaussft.model.feature_extractor import FeatureExtractor, backbone_levels
from anomalib_gaussft.model.gaussian import MultivariateGaussian, StreamingGaussianEstimator

__all__ = ["IMAGE_SCORES", "GaussFTModel", "default_map_layers"]

IMAGE_SCORES = ("global", "combined")


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

    def new_estimators(self, device: torch.device | str) -> list[StreamingGaussianEstimator]:
        """Empty estimators, one per global level followed by one for the local Gaussian."""
        gaussians = [*self.gaussians, self.local_gaussian]
        return [StreamingGaussianEstimator(g.dim, device=device) for g in gaussians]

    @torch.no_grad()
    def accumulate(self, images: torch.Tensor, estimators: Sequence[StreamingGaussianEstimator]) -> None:
        """Add the features of a batch of normal, pre-processed images to the estimators."""
        pooled, local = self.embed(images)
        for estimator, features in zip(estimators[:-1], pooled, strict=True):
            estimator.update(features)
        estimators[-1].update(local.permute(0, 2, 3, 1).reshape(-1, local.shape[1]))

    def load_fits(self, estimators: Sequence[StreamingGaussianEstimator]) -> None:
        """Fit every estimator and store the Gaussians in the buffers."""
        for gaussian, estimator in zip([*self.gaussians, self.local_gaussian], estimators, strict=True):
            gaussian.load_fit(estimator.fit())
