# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""``python -m tools.scaling_study`` on a tiny generated category: one row per size and model, the plot, the links."""

from __future__ import annotations

import csv
from pathlib import Path

from anomalib_gaussft.data.demo_dataset import generate_demo_dataset
from tools import scaling_study


def test_scaling_study_fits_each_subset_and_writes_rows_and_plot(tmp_path: Path) -> None:
    root = generate_demo_dataset(
        tmp_path / "data", ["brick"], image_size=32, n_train=12, n_test_good=4, n_test_defect=2
    )
    code = scaling_study.main([
        "--root", str(root), "--category", "brick", "--sizes", "6", "12", "--models", "GaussFT-fixed",
        "--random-weights", "--image-size", "32", "--batch-size", "4", "--min-seconds", "0",
        "--output", str(tmp_path / "out"),
    ])  # fmt: skip
    assert code == 0
    rows = list(csv.DictReader((tmp_path / "out" / "scaling.csv").open()))
    assert [(row["training_images"], row["model"]) for row in rows] == [("6", "GaussFT-fixed"), ("12", "GaussFT-fixed")]
    assert all(float(row["fit_seconds"]) > 0 and float(row["model_mb"]) > 0 for row in rows)
    assert (tmp_path / "out" / "scaling.png").stat().st_size > 0
    assert "| 12 | GaussFT-fixed |" in (tmp_path / "out" / "scaling.md").read_text()
    subset = tmp_path / "out" / "subsets" / "6" / "brick"
    assert len(list((subset / "train" / "good").iterdir())) == 6
    source = {path.name: path.stat().st_ino for path in (root / "brick" / "train" / "good").iterdir()}
    linked = [path for path in (subset / "train" / "good").iterdir()]
    assert all(path.stat().st_ino == source[path.name] for path in linked)  # hard links: nothing copied
