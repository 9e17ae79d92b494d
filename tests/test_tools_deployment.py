# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""``python -m tools.deployment_benchmark`` on tiny data, and its exported score-only GaussFT against eager PyTorch.

The whole tool with every backend takes minutes (three dynamo exports, PaDiM, PatchCore, INT8); here its main entry
runs the eager PyTorch backend end to end on 32 px images with random weights, and one export (the score-only
module) is checked against eager PyTorch in ONNX Runtime and OpenVINO.
"""

from __future__ import annotations

import csv
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from tools import _deployment_runtimes as runtimes
from tools import deployment_benchmark


def test_main_runs_on_tiny_data_and_restores_the_process_state(tmp_path: Path) -> None:
    """A smoke run of the documented command (torch backend); warnings, threads and working directory restored.

    Before the fix the run crashed reading ``blur.kernel`` (the model's blur became separable) and left a
    process-wide ``warnings.filterwarnings("ignore")`` behind.
    """
    filters, threads, cwd = list(warnings.filters), torch.get_num_threads(), Path.cwd()
    code = deployment_benchmark.main([
        "--output-dir", str(tmp_path / "out"), "--image-size", "32", "--n-train", "8", "--batch-size", "2",
        "--rounds", "1", "--throughput-batches", "1", "--latency-runs", "2", "--warmup", "0", "--threads", "1",
        "--backends", "torch", "--no-baselines", "--no-int8", "--random-weights",
    ])  # fmt: skip
    assert code == 0
    assert ("ignore", None, Warning, None, 0) not in warnings.filters  # no process-wide "ignore everything" left
    assert warnings.filters == filters
    assert (torch.get_num_threads(), Path.cwd()) == (threads, cwd)
    with (tmp_path / "out" / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    # GaussFT's default geometric image score needs the map: no score-only variant
    assert [(row["model"], row["backend"]) for row in rows] == [("backbone", "torch"), ("gaussft", "torch")]
    assert all(float(row["throughput"]) > 0 for row in rows)
    markdown = (tmp_path / "out" / "results.md").read_text()
    assert "Command: `python -m tools.deployment_benchmark --output-dir" in markdown
    assert "| anomaly map (upsampling, blur sigma 4: one matrix per axis) |" in markdown  # the model's own map
    assert "| torch eager (reference) | 0.00e+00 | 100% |" in markdown


def test_exported_score_only_module_matches_eager_pytorch(tmp_path: Path) -> None:
    """The image-score graph (no anomaly map) gives the full model's normalised score in ONNX Runtime and OpenVINO."""
    from anomalib.data import MVTecAD
    from anomalib.engine import Engine

    from anomalib_gaussft import GaussFT
    from anomalib_gaussft.data.demo_dataset import generate_demo_dataset

    root = generate_demo_dataset(tmp_path / "data", ["brick"], image_size=32, n_train=8, n_test_good=2,
                                 n_test_defect=1)  # fmt: skip
    module = GaussFT(backbone="tf_efficientnet_lite0", pretrained=False, image_size=(32, 32), fine_tune=False,
                     layers=["blocks.1", "blocks.2"], map_layers=["blocks.2"], forgetting_detection=False,
                     image_score="global", visualizer=False)  # fmt: skip  # a short trunk: a quick export
    previous = Path.cwd()
    os.chdir(tmp_path)  # anomalib's engine writes relative folders
    try:
        Engine(max_epochs=1, accelerator="cpu", devices=1, logger=False, default_root_dir=tmp_path / "runs").fit(
            module, datamodule=MVTecAD(root=root, category="brick", train_batch_size=4, eval_batch_size=4)
        )
    finally:
        os.chdir(previous)
    module.eval()
    images = np.random.default_rng(0).random((3, 3, 32, 32), dtype=np.float32)
    with torch.inference_mode():
        expected = module(torch.from_numpy(images)).pred_score.numpy()
    score_only = runtimes.score_only_module(module)
    eager_score, eager_label = runtimes.torch_runner(score_only)(images)
    np.testing.assert_allclose(eager_score.numpy(), expected, rtol=1e-5, atol=1e-6)
    assert (eager_label.numpy() == (expected > 0.5)).all()

    onnx_path = runtimes.export_onnx(score_only, tmp_path / "score" / "model.onnx", 32, ["pred_score", "pred_label"])
    onnx_score, _ = runtimes.onnxruntime_runner(onnx_path, threads=1)(images)
    np.testing.assert_allclose(onnx_score, expected, rtol=1e-4, atol=1e-5)
    xml_path = runtimes.onnx_to_openvino(onnx_path, tmp_path / "score" / "model.xml")
    assert not runtimes.static_batch(xml_path)
    result = runtimes.openvino_runner(xml_path, threads=1)(images)
    np.testing.assert_allclose(np.asarray(result["pred_score"]), expected, rtol=1e-4, atol=1e-5)


def test_score_only_module_refuses_the_geometric_image_score() -> None:
    from anomalib_gaussft import GaussFT

    module = GaussFT(backbone="tf_efficientnet_lite0", pretrained=False, image_size=(32, 32), image_score="geometric",
                     visualizer=False)  # fmt: skip
    with pytest.raises(ValueError, match="image_score='global'"):
        runtimes.score_only_module(module)
