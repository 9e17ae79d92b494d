# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""GaussFT: the Lightning module, its torch model and its post-processor.

Data flows one way: images -> feature extractor -> pooled and local features -> one Gaussian per pooled level and a
mixture of Gaussians over local vectors -> image scores and anomaly maps (:class:`GaussFTModel`) -> anomalib's
post-processing (:class:`GaussFTPostProcessor`), all driven by the Lightning module :class:`GaussFT`.
``README.md`` beside this file has the diagram, a map of the modules, usage and the results at the defaults.

Example:
    >>> from anomalib_gaussft.model import GaussFT
    >>> GaussFT(backbone="resnet18", pretrained=False, image_size=(64, 64)).model.layers
    ['act1', 'layer1', 'layer2', 'layer3', 'layer4']
"""

from anomalib_gaussft.model.lightning_model import GaussFT
from anomalib_gaussft.model.post_processing import GaussFTPostProcessor
from anomalib_gaussft.model.torch_model import GaussFTModel

__all__ = ["GaussFT", "GaussFTModel", "GaussFTPostProcessor"]
