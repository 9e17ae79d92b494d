# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""``python -m tools.stop_rule_replay``: recorded curves replayed under other patiences and epoch bounds."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tools import stop_rule_replay


def _checkpoint(root: Path, seed: int, category: str, history: list[float]) -> None:
    folder = root / f"seed_{seed}" / "runs" / "GaussFT" / category / "GaussFT" / "MVTecAD" / category / "v0"
    path = folder / "weights" / "lightning" / "model.ckpt"
    path.parent.mkdir(parents=True)
    torch.save({"callbacks": {"ForgettingDetection": {"history": history}}}, path)


def test_replay_reads_checkpoints_and_csvs_and_applies_each_rule(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = tmp_path / "bench"
    _checkpoint(runs, 0, "tile", [0.80, 0.85, 0.84, 0.83, 0.90])  # patience 3 would see the late rise; 2 stops first
    _checkpoint(runs, 1, "tile", [0.90, 0.89, 0.88])
    curves = tmp_path / "curves.csv"
    curves.write_text(
        "seed,category,epoch,val_pseudo_AUROC,test_image_AUROC\n0,brick,0,0.7,0.90\n0,brick,1,0.8,0.95\n0,brick,2,0.6,0.91\n"
    )
    written = tmp_path / "out.csv"
    code = stop_rule_replay.main([
        "--runs", str(runs), "--curves", str(curves), "--curves-out", str(written), "--rules", "3:8", "2:8", "2:3",
    ])  # fmt: skip
    assert code == 0
    output = capsys.readouterr().out
    assert "| bench/seed_0/tile | 4 / 5 cut | 1 / 4 | 1 / 3 |" in output
    assert "| bench/seed_1/tile | 0 / 3 cut | 0 / 3 | 0 / 3 |" in output
    assert "| curves/seed_0/brick | 1 / 3 cut (0.9500) | 1 / 3 cut (0.9500) | 1 / 3 (0.9500) |" in output
    assert "3 curves; the kept epoch differs between the rules on 1." in output
    assert "patience 2, 3 epochs: 9 epochs run, mean test image AUROC 0.9500 over 1" in output
    assert written.read_text().splitlines()[:2] == ["run,epoch,val_pseudo_AUROC", "bench/seed_0/tile,0,0.8"]


def test_replay_without_curves_names_the_settings(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        stop_rule_replay.main(["--runs", str(tmp_path)])
