# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""``python -m tools.fit_time_profile`` on one tiny category: every stage timed, the methods restored."""

from __future__ import annotations

from pathlib import Path

import pytest

import anomalib_gaussft.model.lightning_model as lightning_model
from tools import fit_time_profile


def test_profile_splits_the_fit_into_its_stages(demo_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fit_training_set = lightning_model.fit_training_set
    code = fit_time_profile.main([
        "--root", str(demo_root), "--category", "brick", "--epochs", "1", "--image-size", "64", "--random-weights",
    ])  # fmt: skip
    assert code == 0
    assert lightning_model.fit_training_set is fit_training_set  # restored
    output = capsys.readouterr().out
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ") for line in output.splitlines() if line[:2] == "| "}
    # one k-means per fit: one pass over the training images fits every Gaussian
    assert rows["fit_training_set"][3].rstrip(" |") == rows["... k-means + mixture fit"][3].rstrip(" |") != ""
    assert not any("second pass" in name for name in rows)
    assert int(rows["training_step"][3].rstrip(" |")) >= 1
    assert float(rows["rest (backward, optimiser, Lightning)"][1]) >= 0
    assert "brick: fit" in output
