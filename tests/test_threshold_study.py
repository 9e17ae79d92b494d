# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""Smoke test of ``tools/threshold_study.py`` on the tiny demo data."""

from pathlib import Path

import pytest
from conftest import TINY_MODEL_KWARGS

from tools.threshold_study import run_one, summarize


def test_threshold_study_runs_and_reports_anomalibs_auroc_equal_to_the_raw_one(demo_root: Path, tmp_path: Path) -> None:
    run = run_one(
        demo_root, "coffee", 0, 0.2, fine_tune=False, epochs=1, work_dir=tmp_path, model_kwargs=TINY_MODEL_KWARGS
    )
    assert run.n_calibration >= 4
    assert run.n_normal == 6
    assert run.image_auroc_reported == pytest.approx(run.image_auroc_raw, abs=1e-6)
    assert run.pixel_auroc_reported == pytest.approx(run.pixel_auroc_raw, abs=2e-3)
    assert "coffee" in summarize([run])
