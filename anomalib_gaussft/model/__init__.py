# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""GaussFT, the paper and nothing else: Gaussians, the Mahalanobis loss, features, scores, maps, the Lightning module.

Data flows one way: images -> :class:`FeatureExtractor` -> pooled and local features -> :class:`MultivariateGaussian`
per level and a :class:`LocalGaussianMixture` over local vectors -> image scores and anomaly maps
(:class:`GaussFTModel`) -> anomalib's post-processing (:class:`GaussFT`).
``README.md`` beside this file has the diagram, a map of the modules, usage and measured results.

Example:
    >>> from anomalib_gaussft.model import GaussFT
    >>> GaussFT(backbone="resnet18", pretrained=False, image_size=(64, 64)).model.layers
    ['act1', 'layer1', 'layer2', 'layer3', 'layer4']
"""

from anomalib_gaussft.model.anomaly_map import AnomalyMapGenerator
from anomalib_gaussft.model.feature_extractor import FeatureExtractor
from anomalib_gaussft.model.gaussian import MultivariateGaussian, StreamingGaussianEstimator
from anomalib_gaussft.model.lightning_model import GaussFT
from anomalib_gaussft.model.local_mixture import LocalGaussianMixture
from anomalib_gaussft.model.loss import MahalanobisLoss
from anomalib_gaussft.model.torch_model import GaussFTModel, GaussianEstimators

__all__ = [
    "AnomalyMapGenerator",
    "FeatureExtractor",
    "GaussFT",
    "GaussFTModel",
    "GaussianEstimators",
    "LocalGaussianMixture",
    "MahalanobisLoss",
    "MultivariateGaussian",
    "StreamingGaussianEstimator",
]
