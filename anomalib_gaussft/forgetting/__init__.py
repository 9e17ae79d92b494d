# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""Callbacks of GaussFT: forgetting detection with pseudo-anomalies.

Example:
    >>> from anomalib_gaussft.forgetting import ForgettingDetection
    >>> ForgettingDetection(augmentations=["cutpaste"]).augmentation_names
    ['cutpaste']
"""

from anomalib_gaussft.forgetting.callback import ForgettingDetection
from anomalib_gaussft.forgetting.pseudo_anomalies import PSEUDO_ANOMALIES, build_pseudo_anomalies

__all__ = ["PSEUDO_ANOMALIES", "ForgettingDetection", "build_pseudo_anomalies"]
