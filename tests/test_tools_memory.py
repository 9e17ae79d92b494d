# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""``python -m tools.memory_benchmark`` on tiny data: one fresh process per count, a table and the JSON.

The measurement itself (peak memory does not grow with the training-set size) is tested in
``tests/test_reliability.py``.
"""

from __future__ import annotations

import json

import pytest

from tools import memory_benchmark


def test_main_measures_each_count_in_its_own_process(capsys: pytest.CaptureFixture[str]) -> None:
    code = memory_benchmark.main(["--images", "4", "8", "--image-size", "32", "--batch-size", "4"])
    assert code == 0
    output = capsys.readouterr().out
    table, _, dump = output.partition("\n[")
    rows = [line for line in table.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [row.split(" | ")[0] for row in rows] == ["| 4", "| 8"]
    results = json.loads("[" + dump)
    assert [(r["n_images"], r["n_samples"], r["image_size"], r["batch_size"]) for r in results] == [
        (4, 4, 32, 4), (8, 8, 32, 4),
    ]  # fmt: skip
    assert results[0]["store_all_features_mib"] * 2 == pytest.approx(results[1]["store_all_features_mib"], abs=0.1)
    assert all(r["peak_rss_mib"] >= r["rss_before_mib"] > 0 for r in results)
