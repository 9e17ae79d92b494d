# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""Callbacks of GaussFT: forgetting detection with pseudo-anomalies.

Example:
    >>> from anomalib_gaussft.callbacks import ForgettingDetection
    >>> ForgettingDetection(augmentations=["cutpaste"]).augmentation_names
    ['cutpaste']
"""

from anomalib_gaussft.callbacks.augmentations import PSEUDO_ANOMALIES, build_pseudo_anomalies
from anomalib_gaussft.callbacks.forgetting import ForgettingDetection, rank_auroc

__all__ = ["PSEUDO_ANOMALIES", "ForgettingDetection", "build_pseudo_anomalies", "rank_auroc"]
