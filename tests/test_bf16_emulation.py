# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""Smoke test of ``tools/bf16_emulation.py``: the emulation rounds, and restores the model afterwards."""

import torch
from conftest import TINY_MODEL_KWARGS

from anomalib_gaussft import GaussFT
from anomalib_gaussft.evaluation import score_images
from tools.bf16_emulation import bfloat16_backbone, measure


def test_emulation_changes_scores_and_leaves_the_model_as_it_was() -> None:
    torch.manual_seed(0)
    module = GaussFT(**TINY_MODEL_KWARGS, fine_tune=False, visualizer=False)
    images = torch.rand(8, 3, 64, 64)
    before = score_images(module, images)
    with bfloat16_backbone(module.model.feature_extractor):
        rounded = score_images(module, images)
    assert not torch.equal(rounded, before)
    assert torch.equal(score_images(module, images), before)  # hooks removed, weights restored
    results = measure(module, images, torch.tensor([0, 0, 0, 0, 1, 1, 1, 1]))
    assert results["float32"][1] == 0.0
    assert results["bfloat16 backbone and scoring"][1] > 0.0
