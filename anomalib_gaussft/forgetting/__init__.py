# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""Forgetting detection with pseudo-anomalies: the callback, its stop rule and the pseudo-anomaly generators.

Example:
    >>> from anomalib_gaussft.forgetting import ForgettingDetection
    >>> ForgettingDetection(augmentations=["cutpaste"]).augmentation_names
    ['cutpaste']
"""

from anomalib_gaussft.forgetting.callback import ForgettingDetection
from anomalib_gaussft.forgetting.pseudo_anomalies import PSEUDO_ANOMALIES, build_pseudo_anomalies
from anomalib_gaussft.forgetting.stop_rule import StopRule, select_epoch

__all__ = ["PSEUDO_ANOMALIES", "ForgettingDetection", "StopRule", "build_pseudo_anomalies", "select_epoch"]
