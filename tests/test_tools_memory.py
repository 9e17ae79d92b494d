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


def test_main_measures_in_a_fresh_process_and_prints_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    """One count (each count is one more fresh interpreter, about 10 s of imports); the growth with the count is
    measured in ``tests/test_reliability.py``."""
    code = memory_benchmark.main(["--images", "8", "--image-size", "32", "--batch-size", "4"])
    assert code == 0
    output = capsys.readouterr().out
    table, _, dump = output.partition("\n[")
    rows = [line for line in table.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [row.split(" | ")[0] for row in rows] == ["| 8"]
    results = json.loads("[" + dump)
    assert [(r["n_images"], r["n_samples"], r["image_size"], r["batch_size"]) for r in results] == [(8, 8, 32, 4)]
    assert results[0]["store_all_features_mib"] > 0
    assert all(r["peak_rss_mib"] >= r["rss_before_mib"] > 0 for r in results)
    assert rows[0].split(" | ")[1] == str(results[0]["peak_increase_mib"])  # the table shows the measurement


def test_a_failed_measurement_names_its_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory_benchmark.sys, "executable", "false")  # a process that fails at once
    with pytest.raises(RuntimeError, match="Memory measurement for 3 images failed"):
        memory_benchmark.run_in_subprocesses([3], image_size=32)
