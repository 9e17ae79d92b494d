# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""Smoke test of ``tools/holdout_cost.py`` on the tiny demo data."""

from pathlib import Path

from conftest import TINY_MODEL_KWARGS

from tools.holdout_cost import holdout_cost


def test_holdout_cost_fits_with_and_without_the_held_out_images(demo_root: Path) -> None:
    result = holdout_cost(demo_root, "coffee", seed=0, **{**TINY_MODEL_KWARGS, "fallback_backbone": None})
    # demo coffee: 24 training images; the synthetic split takes 4 for validation (2 stay normal), the callback
    # holds out 8 normals: the 2 of the validation set and 6 removed from the 20 training images.
    assert (result.n_training, result.n_removed) == (14, 6)
    assert 0.0 <= result.auroc_without <= 1.0
    assert 0.0 <= result.auroc_with <= 1.0
    assert result.auroc_with != result.auroc_without  # six more images change the fit
