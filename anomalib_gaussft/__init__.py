# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""anomalib-gaussft: GaussFT, transfer-learning Gaussian anomaly detection by fine-tuning representations.

An anomalib model plugin implementing Rippel, Chavan, Lei, Merhof, "Transfer Learning Gaussian Anomaly Detection by
Fine-tuning Representations" (IMPROVE 2022, arXiv:2108.04116): a multivariate Gaussian is induced for the normal
class in the features of an ImageNet-pretrained CNN, the CNN is fine-tuned with the Mahalanobis distance of normal
images to it, and pseudo-anomalies detect the onset of catastrophic forgetting.

Installing the package registers ``GaussFT`` with anomalib, so ``anomalib train --model GaussFT`` works. Training
and testing go through anomalib's ``Engine`` or CLI::

    Engine(max_epochs=10).train(GaussFT(backbone="tf_efficientnet_lite0"), datamodule=MVTecAD(category="bottle"))
    anomalib train --model GaussFT --data anomalib.data.MVTecAD --data.category bottle --trainer.max_epochs 10

Example:
    >>> from anomalib.models import get_model
    >>> from anomalib_gaussft import GaussFT
    >>> model = get_model("GaussFT", backbone="tf_efficientnet_lite0", image_size=(224, 224))  # bundled weights
    >>> isinstance(model, GaussFT), model.image_size
    (True, (224, 224))
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from anomalib_gaussft.forgetting import ForgettingDetection
    from anomalib_gaussft.model.lightning_model import GaussFT

__all__ = ["ForgettingDetection", "GaussFT"]
__version__ = "0.5.0"

# The two public classes are imported on first access (PEP 562), so that light modules such as
# `anomalib_gaussft.model.gaussian` or `anomalib_gaussft.data.demo_dataset` do not pull in anomalib and Lightning.
_LAZY = {"GaussFT": "anomalib_gaussft.model.lightning_model", "ForgettingDetection": "anomalib_gaussft.forgetting"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    msg = f"module 'anomalib_gaussft' has no attribute {name!r}"
    raise AttributeError(msg)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
