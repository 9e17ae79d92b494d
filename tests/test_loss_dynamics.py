# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""The loss-dynamics script (docs/studies/loss_and_fit_time.md) on the tiny demo data."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tools import loss_dynamics


def test_records_every_step_and_epoch(demo_root: Path) -> None:
    records = loss_dynamics.run_loss_dynamics(
        demo_root, "brick", pretrained=False, layers=["blocks.2", "head"], image_size=64, epochs=2, batch_size=8
    )
    assert [record.epoch for record in records] == [0, 1, 2]
    assert records[0].steps == []
    assert records[0].stale_after is None
    n_train = len(list((demo_root / "brick" / "train" / "good").glob("*.png")))
    for record in records[1:]:
        assert len(record.steps) == math.ceil(n_train / 8)
        assert all(math.isfinite(value) and value > 0 for value in [*record.steps, record.stale_after, record.refit])
    assert all(0.0 <= record.image_auroc <= 1.0 for record in records)
    assert "epoch 1: steps [" in loss_dynamics.format_record(records[1])


def test_unknown_optimizer_is_named(demo_root: Path) -> None:
    with pytest.raises(ValueError, match="optimizer 'lbfgs'"):
        loss_dynamics.run_loss_dynamics(demo_root, "brick", pretrained=False, optimizer="lbfgs")


def test_main_prints_one_line_per_epoch(demo_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The documented command on the tiny demo data (random weights, 32 px, one epoch)."""
    code = loss_dynamics.main([
        "--root", str(demo_root), "--category", "coffee", "--random-weights", "--image-size", "32",
        "--epochs", "1", "--batch-size", "8", "--layers", "blocks.2", "head",
    ])  # fmt: skip
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["epoch 0", "epoch 1"]
    assert lines[0].startswith("epoch 0: steps [-] stale_after - refit ")
    assert lines[1].count(",") == 2  # 24 training images in batches of 8: three steps
