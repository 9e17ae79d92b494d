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


def test_scaling_study_merges_earlier_runs_into_one_table_and_plot(tmp_path: Path) -> None:
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    header = (
        "training_images,model,fit_seconds,peak_rss_mb,model_mb,image_auroc_raw,pixel_auroc_raw,throughput,epochs\n"
    )
    first.write_text(header + "100,Patchcore,437.8,2896.6,15.93,0.8873,0.7947,7.43,1\n")
    second.write_text(
        header
        + "100,GaussFT-fixed,20.5,3100.0,99.87,0.9,0.8,15.0,1\n50,GaussFT-fixed,16.6,3378,99.87,0.858,0.766,6.0,1\n"
    )
    assert scaling_study.main(["--merge", str(first), str(second), "--output", str(tmp_path / "out")]) == 0
    rows = list(csv.DictReader((tmp_path / "out" / "scaling.csv").open()))
    assert [(row["model"], row["training_images"]) for row in rows] == [
        ("GaussFT-fixed", "50"),
        ("GaussFT-fixed", "100"),
        ("Patchcore", "100"),
    ]
    assert (tmp_path / "out" / "scaling.png").stat().st_size > 0
