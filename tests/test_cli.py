# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""The real ``anomalib`` console script with GaussFT: registration by bare name, YAML configs, a full train."""

import csv
import importlib
import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

BIN = Path(sys.executable).parent
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}


def _run(args: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout, check=False)


def test_registration_hook_is_light_and_the_cli_resolves_bare_and_dotted_names(tmp_path: Path) -> None:
    """The ``.pth`` hook imports no torch; anomalib's first import registers GaussFT for ``get_model`` and the CLI.

    One fresh interpreter (anomalib's imports take about 8 s): the hook is checked at start-up, then ``get_model``
    resolves the bare name, then the console script's entry point (``anomalib.cli.cli:main``, what
    ``BIN / "anomalib"`` calls) resolves ``--model GaussFT`` and ``--model anomalib_gaussft.GaussFT``, the bare name
    first (fails if the bare name stops resolving), each with a weights file and the post-processor's ``target_fpr``.
    """
    code = (
        "import sys\n"
        "assert 'torch' not in sys.modules, 'the .pth hook imported torch at interpreter start'\n"
        "assert any(type(f).__name__ == '_AnomalibModelsFinder' for f in sys.meta_path), 'hook not installed'\n"
        "import anomalib.models as models\n"
        "from anomalib.models import get_model\n"
        "model = get_model('GaussFT', backbone='resnet18', pretrained=False, image_size=(64, 64))\n"
        "print('=== MODEL', type(model).__module__, type(model).__name__, 'GaussFT' in models.__all__, flush=True)\n"
        "from anomalib.cli.cli import main\n"
        "for name in ('GaussFT', 'anomalib_gaussft.GaussFT'):\n"
        "    sys.argv = ['anomalib', 'train', '--data', 'anomalib.data.MVTecAD', '--print_config',\n"
        "                '--model', name, '--model.backbone', 'resnet18', '--model.pretrained', 'weights/r18.pth',\n"
        "                '--model.post_processor', 'anomalib_gaussft.model.GaussFTPostProcessor',\n"
        "                '--model.post_processor.target_fpr', '0.05']\n"
        "    try:\n"
        "        main()\n"
        "    except SystemExit as exit_:\n"
        "        assert exit_.code in (None, 0), (name, exit_.code)\n"
        "    print('=== END', name, flush=True)\n"
    )
    result = _run([sys.executable, "-c", code], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    _, _, printed = result.stdout.partition("=== MODEL ")
    assert printed.splitlines()[0] == "anomalib_gaussft.model.lightning_model GaussFT True", result.stdout[-3000:]
    outputs = printed.split("=== END ")
    assert [output.split()[0] for output in outputs[1:]] == ["GaussFT", "anomalib_gaussft.GaussFT"]
    for output in outputs[:2]:  # the configuration each name printed
        assert "class_path: anomalib_gaussft.GaussFT" in output
        assert "backbone: resnet18" in output
        assert "pretrained: weights/r18.pth" in output  # a weights file through `pretrained`
        assert "class_path: anomalib_gaussft.model.GaussFTPostProcessor" in output  # target_fpr: the post-processor's
        assert "target_fpr: 0.05" in output


def test_registration_works_when_the_plugin_is_imported_before_anomalib(tmp_path: Path) -> None:
    """Importing the plugin first executes ``anomalib.models`` half-way through the plugin's own import.

    Every entry point into the plugin (``from anomalib_gaussft import GaussFT``, ``import anomalib_gaussft.model``,
    ``import anomalib_gaussft.model.anomaly_map``) runs ``anomalib_gaussft/model/__init__.py`` from its top, so they
    import the same modules in the same order (their ``sys.modules`` orders were compared: identical apart from
    numpy's lazily loaded submodules); one fresh interpreter covers them.
    """
    code = (
        "from anomalib_gaussft import GaussFT\n"
        "import anomalib.models as models\n"
        "from anomalib.models import get_model\n"
        "assert models.GaussFT is GaussFT\n"
        "print(type(get_model('GaussFT', backbone='resnet18', pretrained=False)).__name__)\n"
    )
    result = subprocess.run(
        [sys.executable, "-W", "error::RuntimeWarning", "-c", code],
        cwd=tmp_path,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "could not register" not in result.stderr
    assert result.stdout.strip().splitlines()[-1] == "GaussFT"


@pytest.mark.slow
def test_anomalib_train_with_yaml_config_reports_metrics_and_loss(demo_root: Path, tmp_path: Path) -> None:
    config = tmp_path / "gaussft.yaml"
    # patience 3: all four epochs run whatever the pseudo-AUROC does (the earliest stop is epoch 3, the last one).
    config.write_text(
        "model:\n"
        "  class_path: GaussFT\n"
        "  init_args:\n"
        "    backbone: tf_efficientnet_lite0\n"
        "    pretrained: false\n"
        "    image_size: [64, 64]\n"
        "    layers: [blocks.2, blocks.4, head]\n"
        "    lr: 0.0001\n"
        "    forgetting_detection:\n"
        "      class_path: anomalib_gaussft.forgetting.ForgettingDetection\n"
        "      init_args: {augmentations: [cutpaste, mixup], min_holdout: 4, patience: 3}\n"
    )
    logs = tmp_path / "logs"
    args = [
        str(BIN / "anomalib"), "train", "--config", str(config),
        "--data", "anomalib.data.MVTecAD", "--data.root", str(demo_root), "--data.category", "brick",
        "--data.num_workers", "0", "--data.train_batch_size", "8", "--data.eval_batch_size", "8",
        "--data.val_split_mode", "synthetic", "--data.val_split_ratio", "0.2",
        "--trainer.max_epochs", "4", "--trainer.accelerator", "cpu",
        "--trainer.logger", "lightning.pytorch.loggers.CSVLogger", "--trainer.logger.save_dir", str(logs),
        "--trainer.logger.name", "gaussft", "--trainer.logger.version", "0",
        "--seed_everything", "0", "--default_root_dir", str(tmp_path / "results"),
    ]  # fmt: skip
    result = _run(args, tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert "image_AUROC" in result.stdout
    assert "pixel_AUROC" in result.stdout
    with (logs / "gaussft" / "version_0" / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    losses = {int(row["epoch"]): float(row["train_loss"]) for row in rows if row["train_loss"]}
    # Epoch 0 scores the pretrained network (no optimiser step, no loss computed); epochs 1-3 fine-tune.
    assert sorted(losses) == [1, 2, 3]
    assert all(0 < loss < float("inf") for loss in losses.values()), losses
    assert len(set(losses.values())) == 3, f"fine-tuning did not change the loss: {losses}"
    tested = [row for row in rows if row["image_AUROC"]]
    assert 0 <= float(tested[-1]["image_AUROC"]) <= 1
    assert 0 <= float(tested[-1]["pixel_AUROC"]) <= 1
    pseudo = [float(row["val_pseudo_AUROC"]) for row in rows if row.get("val_pseudo_AUROC")]
    assert len(pseudo) == 4, "forgetting detection did not log its pseudo-AUROC each epoch"
    assert list((tmp_path / "results").rglob("images/**/*.png")), "anomalib's visualizer wrote no pictures"


@pytest.mark.slow
def test_bare_anomalib_train_ends_within_the_default_epoch_bound(demo_root: Path, tmp_path: Path) -> None:
    """No ``--trainer.max_epochs``: Lightning would run 1000 epochs; GaussFT stops at ``DEFAULT_MAX_EPOCHS``.

    Forgetting detection is off here, so nothing but the bound ends the fit (with it, a plateau also stops it).
    """
    from anomalib_gaussft.model.lightning_model import DEFAULT_MAX_EPOCHS

    logs = tmp_path / "logs"
    args = [
        str(BIN / "anomalib"), "train", "--model", "GaussFT",
        "--model.backbone", "tf_efficientnet_lite0", "--model.pretrained", "false", "--model.image_size", "[32, 32]",
        "--model.layers", "[blocks.2, blocks.4]", "--model.local_components", "2", "--model.forgetting_detection",
        "false", "--model.visualizer", "false",
        "--data", "anomalib.data.MVTecAD", "--data.root", str(demo_root), "--data.category", "brick",
        "--data.num_workers", "0", "--data.train_batch_size", "8", "--data.eval_batch_size", "8",
        "--trainer.accelerator", "cpu", "--trainer.logger", "lightning.pytorch.loggers.CSVLogger",
        "--trainer.logger.save_dir", str(logs), "--trainer.logger.name", "gaussft", "--trainer.logger.version", "0",
        "--default_root_dir", str(tmp_path / "results"),
    ]  # fmt: skip
    result = _run(args, tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    with (logs / "gaussft" / "version_0" / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    epochs = {int(row["epoch"]) for row in rows if row.get("train_loss")}  # epoch 0, the pretrained one, logs none
    assert epochs == set(range(1, DEFAULT_MAX_EPOCHS)), sorted(epochs)
    assert "image_AUROC" in result.stdout  # and then it tested


def test_plugin_command_parses_every_subcommand() -> None:
    from anomalib_gaussft.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["demo", "--categories", "brick", "--epochs", "3", "--no-export"])
    assert (args.categories, args.epochs, args.no_export) == (["brick"], 3, True)
    assert parser.parse_args(["demo-data", "--root", "x"]).command == "demo-data"
    assert parser.parse_args(["weights", "list"]).command == "weights"
    assert parser.parse_args(["benchmark"]).command == "benchmark"


def test_demo_reads_metrics_and_formats_the_table(tmp_path: Path) -> None:
    from anomalib_gaussft.cli.demo import DemoResult, _read_metrics, format_table

    metrics = tmp_path / "metrics.csv"
    metrics.write_text(
        "epoch,image_AUROC,pixel_AUROC,step,train_loss,val_pseudo_AUROC\n"
        "0,,,0,,0.8\n1,,,1,,0.9\n1,,,1,18.0,\n2,,,2,,0.85\n2,,,2,17.0,\n3,0.97,0.95,3,,\n"
    )
    parsed = _read_metrics(metrics)
    assert parsed == {"image_AUROC": 0.97, "pixel_AUROC": 0.95, "epochs": 3.0, "best_epoch": 1.0}
    table = format_table([DemoResult("brick", 0.97, 0.95, 3, 1, 12.0, tmp_path, None)])
    assert "| brick | 0.970 | 0.950 | 3 (2) | 12 s |" in table
    with pytest.raises(FileNotFoundError, match="was not written"):
        _read_metrics(tmp_path / "missing.csv")


# ----------------------------------------------------------------------------------------------------------------------
# `anomalib-gaussft`: light to start; a subcommand's module is imported only when it is chosen
# ----------------------------------------------------------------------------------------------------------------------
def test_help_imports_neither_torch_nor_anomalib(tmp_path: Path) -> None:
    # The console script itself, with Python's import log: nothing heavy may appear in it.
    script = BIN / "anomalib-gaussft"
    result = _run([sys.executable, "-X", "importtime", str(script), "--help"], tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert all(name in result.stdout for name in ("demo-data", "weights", "demo", "benchmark"))
    imported = {line.split("|")[-1].strip().split(".")[0] for line in result.stderr.splitlines() if "|" in line}
    assert "anomalib_gaussft" in imported  # the log is the right one
    assert not imported & {"torch", "anomalib", "lightning", "timm", "numpy"}, sorted(imported)

    # Building the parser and the help of the light subcommands do not import them either.
    code = (
        "import contextlib, io, sys\n"
        "from anomalib_gaussft.cli import build_parser, main\n"
        "build_parser()\n"
        "for argv in (['--help'], ['weights', '--help'], ['weights', 'import', '--help'], ['demo-data', '--help']):\n"
        "    with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.suppress(SystemExit):\n"
        "        main(argv)\n"
        "    assert 'usage: anomalib-gaussft' in out.getvalue(), argv\n"
        "heavy = sorted(name for name in ('torch', 'anomalib', 'lightning', 'timm') if name in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    result = _run([sys.executable, "-c", code], tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "HEAVY []"


def test_subcommand_help_lists_its_own_options(capsys: pytest.CaptureFixture[str]) -> None:
    from anomalib_gaussft.cli import main

    with pytest.raises(SystemExit) as info:
        main(["demo-data", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "--n-test-good" in out
    assert "--n-test-defect" in out
    with pytest.raises(SystemExit):
        main(["weights"])  # a weights sub-command is required
    assert "{import,list}" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------------------------------
# The registration hook (tested on this checkout's copy; the installed one is `_anomalib_gaussft_registration`)
# ----------------------------------------------------------------------------------------------------------------------
FAKE_TARGET = "fake_anomalib_models_for_gaussft_tests"


@pytest.fixture
def registration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """This checkout's registration module, aimed at a stand-in for ``anomalib.models`` whose import it watches."""
    from anomalib_gaussft import _registration

    (tmp_path / f"{FAKE_TARGET}.py").write_text("VALUE = 1\n__all__ = ['VALUE']\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    monkeypatch.setattr(_registration, "TARGET_MODULE", FAKE_TARGET)
    monkeypatch.delitem(sys.modules, FAKE_TARGET, raising=False)
    monkeypatch.delenv("ANOMALIB_GAUSSFT_NO_REGISTER", raising=False)
    importlib.invalidate_caches()
    yield _registration
    sys.modules.pop(FAKE_TARGET, None)


def _broken_register(models_module: object) -> None:
    msg = "No module named 'timm'"
    raise ModuleNotFoundError(msg)


def test_registration_failure_warns_with_its_cause(registration: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registration, "register", _broken_register)
    registration.install()
    with pytest.warns(RuntimeWarning, match=r"could not register GaussFT.*ModuleNotFoundError: No module named 'timm'"):
        module = importlib.import_module(FAKE_TARGET)
    assert module.VALUE == 1  # the watched import itself still works

    # Registering when the target is already imported reports the same way.
    with pytest.warns(RuntimeWarning, match="No module named 'timm'"):
        registration.install()


def test_registration_failure_never_raises_even_with_warnings_as_errors(
    registration: ModuleType,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(registration, "register", _broken_register)
    registration.install()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        module = importlib.import_module(FAKE_TARGET)
    assert module.VALUE == 1
    assert "could not register GaussFT" in capsys.readouterr().err


def test_registration_registers_or_is_turned_off(registration: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(registration, "register", calls.append)
    monkeypatch.setenv("ANOMALIB_GAUSSFT_NO_REGISTER", "1")
    registration.install()
    importlib.import_module(FAKE_TARGET)
    assert calls == []
    sys.modules.pop(FAKE_TARGET)

    monkeypatch.delenv("ANOMALIB_GAUSSFT_NO_REGISTER")
    registration.install()
    module = importlib.import_module(FAKE_TARGET)
    assert calls == [module]
