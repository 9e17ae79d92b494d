# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""``python -m tools.image_score_study`` on one tiny category: rows for every split, K, map and score; the summary."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from tools import image_score_study


def test_study_scores_every_candidate_on_test_and_pseudo_anomalies(
    demo_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = image_score_study.main([
        "--root", str(demo_root), "--categories", "brick", "--seeds", "0", "1", "--components", "2", "16",
        "--image-size", "64", "--random-weights", "--output", str(tmp_path),
    ])  # fmt: skip
    assert code == 0
    rows = list(csv.DictReader((tmp_path / "image_score_study.csv").open()))
    scores = {row["score"] for row in rows}
    assert {"global", "combined_top1", "geometric_top2", "robust_z"} <= scores
    assert len(rows) == 2 * 2 * len(scores)  # seeds x K x candidates
    # the global score does not depend on K; the map's scores do
    by_k = {(row["seed"], row["components"], row["score"]): row["pseudo_auroc"] for row in rows}
    assert by_k[("0", "2", "global")] == by_k[("0", "16", "global")]
    assert any(by_k[(seed, "2", "top1")] != by_k[(seed, "16", "top1")] for seed in ("0", "1"))
    table = capsys.readouterr().out
    reference = next(line for line in table.splitlines() if line.startswith("| combined_top1 | 16 |"))
    assert "| +0.0000 ± 0.0000 | 0 / 2 / 0 |" in reference  # compared with itself: two ties


def test_study_compares_local_models_and_reuses_its_cache(demo_root: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)  # the random backbone: the same whatever ran before in this process
    arguments = [
        "--root", str(demo_root), "--categories", "brick", "--seeds", "0", "--components", "4", "--image-size", "64",
        "--random-weights", "--local-models", "mixture", "positional", "min", "--cache", str(tmp_path / "cache"),
    ]  # fmt: skip
    assert image_score_study.main([*arguments, "--output", str(tmp_path / "first")]) == 0
    assert (tmp_path / "cache" / "brick.pt").is_file()
    first = list(csv.DictReader((tmp_path / "first" / "image_score_study.csv").open()))
    assert {row["local_model"] for row in first} == {"mixture", "positional", "min"}
    top = {row["local_model"]: row["test_auroc"] for row in first if row["score"] == "top1"}
    assert len(set(top.values())) > 1  # the maps differ
    glob = {row["local_model"]: row["test_auroc"] for row in first if row["score"] == "global"}
    assert len(set(glob.values())) == 1  # the global score does not read the map
    assert image_score_study.main([*arguments, "--output", str(tmp_path / "second")]) == 0  # from the cache
    second = list(csv.DictReader((tmp_path / "second" / "image_score_study.csv").open()))
    assert second == first
