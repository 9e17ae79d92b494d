# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""Tests for the offline demo dataset generator (MVTec AD layout from scikit-image's CC0/public-domain images)."""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("skimage")

from anomalib_gaussft.cli import demo_data as demo_data_cli
from anomalib_gaussft.data import (
    DEFAULT_CATEGORIES,
    DEMO_CATEGORIES,
    DEMO_SOURCES,
    defects,
    demo_dataset,
    generate_demo_dataset,
    render_sample,
)

SMALL = {"image_size": 64, "n_train": 3, "n_test_good": 2, "n_test_defect": 2}


def _read(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def _digests(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module")
def small_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("demo")
    assert generate_demo_dataset(root, ["brick", "coffee"], seed=0, **SMALL) == root
    return root


def test_categories_and_sources_table() -> None:
    assert len(DEMO_CATEGORIES) >= 4
    kinds = {DEMO_SOURCES[c].kind for c in DEMO_CATEGORIES}
    assert kinds == {"texture", "object"}
    for category in DEMO_CATEGORIES:
        source = DEMO_SOURCES[category]
        assert source.license in {"CC0-1.0", "Public domain"}
        assert source.source
        assert len(source.defects) >= 3
        assert all(defect in defects.DEFECTS for defect in source.defects)
    assert set(DEFAULT_CATEGORIES) <= set(DEMO_CATEGORIES)


def test_layout_and_counts(small_root: Path) -> None:
    assert sorted(p.name for p in small_root.iterdir()) == ["brick", "coffee"]  # no "<cat>.tmp" left behind
    for category in ("brick", "coffee"):
        cat = small_root / category
        defects = DEMO_SOURCES[category].defects
        assert sorted(p.name for p in (cat / "test").iterdir()) == sorted(["good", *defects])
        assert sorted(p.name for p in (cat / "ground_truth").iterdir()) == sorted(defects)
        assert sorted(p.name for p in (cat / "train" / "good").iterdir()) == ["000.png", "001.png", "002.png"]
        assert sorted(p.name for p in (cat / "test" / "good").iterdir()) == ["000.png", "001.png"]
        for defect in defects:
            assert sorted(p.name for p in (cat / "test" / defect).iterdir()) == ["000.png", "001.png"]
            masks = sorted(p.name for p in (cat / "ground_truth" / defect).iterdir())
            assert masks == ["000_mask.png", "001_mask.png"]
        for path in cat.rglob("*.png"):
            image = _read(path)
            assert image.shape[:2] == (64, 64)
            assert image.dtype == np.uint8
            if "ground_truth" in path.parts or DEMO_SOURCES[category].kind == "texture":
                assert image.ndim == 2  # masks and the grey-level textures are single channel
            else:
                assert image.shape == (64, 64, 3)


def test_files_are_the_rendered_samples(small_root: Path) -> None:
    for category in ("brick", "coffee"):
        cat = small_root / category
        for split, label in [("train", "good"), ("test", "good")]:
            for path in sorted((cat / split / label).glob("*.png")):
                clean, image, mask = render_sample(category, split, label, int(path.stem), seed=0, image_size=64)
                np.testing.assert_array_equal(_read(path), image)
                np.testing.assert_array_equal(image, clean)
                assert not mask.any()
        for defect in DEMO_SOURCES[category].defects:
            for path in sorted((cat / "test" / defect).glob("*.png")):
                _, image, mask = render_sample(category, "test", defect, int(path.stem), seed=0, image_size=64)
                stored_mask = _read(cat / "ground_truth" / defect / f"{path.stem}_mask.png")
                np.testing.assert_array_equal(_read(path), image)
                np.testing.assert_array_equal(stored_mask, mask)
                assert set(np.unique(stored_mask)) == {0, 255}


def _render_with_and_without_defect(
    monkeypatch: pytest.MonkeyPatch, category: str, defect: str, index: int, **kwargs: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Render a test sample, and again from the same stream with the defect drawn as nothing.

    Returns the defective image, its mask, the support the defect function drew, and the defect-free rendering.
    """
    drawn = {}
    draw = defects.DEFECTS[defect]

    def recording(clean: np.ndarray, ctx: defects.DefectContext, rng: np.random.Generator) -> defects.Defect:
        layer, alpha, support = draw(clean, ctx, rng)
        drawn["support"] = support.copy()
        return layer, alpha, support

    def nothing(clean: np.ndarray, ctx: defects.DefectContext, rng: np.random.Generator) -> defects.Defect:
        none = np.zeros(clean.shape[:2], bool)
        return clean, none.astype(np.float32), none

    with monkeypatch.context() as patch:
        patch.setattr(defects, "DEFECTS", {**defects.DEFECTS, defect: recording})
        _, image, mask = render_sample(category, "test", defect, index, **kwargs)
        patch.setattr(defects, "DEFECTS", {**defects.DEFECTS, defect: nothing})
        _, without, no_mask = render_sample(category, "test", defect, index, **kwargs)
    assert not no_mask.any()
    return image, mask, drawn["support"], without


@pytest.mark.parametrize("category", DEMO_CATEGORIES)
def test_every_mask_is_the_defect_support_and_sized(category: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The mask is exactly the region the defect was drawn on, and exactly where the image differs from the same
    sample rendered without the defect."""
    for defect in DEMO_SOURCES[category].defects:
        for index in range(3):
            image, mask, support, without = _render_with_and_without_defect(
                monkeypatch, category, defect, index, image_size=128, seed=3
            )
            assert mask.dtype == np.uint8
            assert mask.shape == (128, 128)
            assert set(np.unique(mask)) == {0, 255}
            np.testing.assert_array_equal(mask > 0, support)
            differs = image != without if image.ndim == 2 else (image != without).any(axis=-1)
            np.testing.assert_array_equal(mask > 0, differs)
            area = (mask > 0).mean()
            assert 0.002 < area < 0.08, (category, defect, index, area)
            # A defect is visible, not a one-grey-level nudge.
            assert np.abs(image.astype(int) - without.astype(int))[mask > 0].mean() > 8


def test_normal_images_vary(small_root: Path) -> None:
    for category in ("brick", "coffee"):
        train = [_read(p).astype(int) for p in sorted((small_root / category / "train" / "good").glob("*.png"))]
        assert all(np.abs(train[0] - other).mean() > 1 for other in train[1:])


def test_deterministic_by_seed(tmp_path: Path, small_root: Path) -> None:
    again = generate_demo_dataset(tmp_path / "again", ["brick", "coffee"], seed=0, **SMALL)
    assert _digests(again) == _digests(small_root)
    other = generate_demo_dataset(tmp_path / "other", ["brick"], seed=1, **SMALL)
    a, b = _digests(small_root / "brick"), _digests(other / "brick")
    pngs = [name for name in a if name.endswith(".png")]
    assert a.keys() == b.keys()
    assert all(a[name] != b[name] for name in pngs)


def test_counts_do_not_change_other_images(tmp_path: Path, small_root: Path) -> None:
    root = generate_demo_dataset(tmp_path, ["coffee"], seed=0, image_size=64, n_train=5, n_test_good=1, n_test_defect=1)
    for name in ("train/good/001.png", "test/good/000.png", "test/stain/000.png", "ground_truth/stain/000_mask.png"):
        assert (root / "coffee" / name).read_bytes() == (small_root / "coffee" / name).read_bytes()


def test_loads_with_anomalib_mvtecad(small_root: Path) -> None:
    from anomalib.data import MVTecAD

    for category in ("brick", "coffee"):
        datamodule = MVTecAD(root=small_root, category=category, num_workers=0, train_batch_size=2, eval_batch_size=8)
        datamodule.prepare_data()  # must not try to download: the category folder exists
        datamodule.setup()
        n_defects = len(DEMO_SOURCES[category].defects)
        assert len(datamodule.train_data) == SMALL["n_train"]
        assert len(datamodule.test_data) == SMALL["n_test_good"] + n_defects * SMALL["n_test_defect"]
        samples = datamodule.test_data.samples
        assert (samples.label_index == 1).sum() == n_defects * SMALL["n_test_defect"]
        abnormal = samples[samples.label_index == 1]
        pairs = zip(abnormal.image_path, abnormal.mask_path, strict=True)
        assert all(Path(mask).name == Path(image).stem + "_mask.png" for image, mask in pairs)
        for index in range(len(datamodule.test_data)):
            item = datamodule.test_data[index]
            assert item.image.shape == (3, 64, 64)
            assert item.gt_mask.shape == (64, 64)
            if item.gt_label:
                expected = _read(Path(item.mask_path)) > 0
                np.testing.assert_array_equal(item.gt_mask.numpy().astype(bool), expected)
                assert expected.any()
            else:
                assert not item.gt_mask.any()
        batch = next(iter(datamodule.test_dataloader()))
        assert batch.image.shape[1:] == (3, 64, 64)


def test_bad_category(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"'bottle'.*brick.*coffee") as info:
        generate_demo_dataset(tmp_path / "unused", ["brick", "bottle"])
    for category in DEMO_CATEGORIES:
        assert category in str(info.value)
    assert not (tmp_path / "unused").exists()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"image_size": 16}, "image_size"),
        ({"n_train": 0}, "n_train"),
        ({"n_test_defect": -1}, "n_test_defect"),
        ({"seed": -1}, "seed"),
        ({"categories": []}, "No categories"),
    ],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        generate_demo_dataset(tmp_path, **{"categories": ["brick"], **kwargs})


def test_render_sample_validation() -> None:
    with pytest.raises(ValueError, match="split"):
        render_sample("brick", "val", "good", 0)
    with pytest.raises(ValueError, match="crack"):
        render_sample("brick", "test", "missing", 0)
    with pytest.raises(ValueError, match="'good'"):
        render_sample("brick", "train", "crack", 0)


def test_skip_overwrite_and_refuse(tmp_path: Path) -> None:
    root = generate_demo_dataset(tmp_path, ["brick"], seed=0, **SMALL)
    probe = root / "brick" / "train" / "good" / "000.png"
    probe.write_bytes(b"edited")  # a skipped category is left untouched
    generate_demo_dataset(tmp_path, ["brick"], seed=0, **SMALL)
    assert probe.read_bytes() == b"edited"
    with pytest.raises(FileExistsError, match="overwrite"):
        generate_demo_dataset(tmp_path, ["brick"], seed=5, **SMALL)
    generate_demo_dataset(tmp_path, ["brick"], seed=0, overwrite=True, **SMALL)
    assert probe.read_bytes() != b"edited"
    (tmp_path / "coffee").mkdir()  # not written by the generator: never deleted, even with overwrite
    with pytest.raises(FileExistsError, match="not written by the demo-data generator"):
        generate_demo_dataset(tmp_path, ["coffee"], overwrite=True, **SMALL)
    assert (tmp_path / "coffee").is_dir()


def test_error_leaves_no_partial_category(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    original = demo_dataset._write_png

    def failing(path: Path, image: np.ndarray) -> None:
        calls["n"] += 1
        if calls["n"] > 5:
            msg = "disk full"
            raise OSError(msg)
        original(path, image)

    monkeypatch.setattr(demo_dataset, "_write_png", failing)
    with pytest.raises(OSError, match="disk full"):
        generate_demo_dataset(tmp_path, ["brick"], **SMALL)
    assert list(tmp_path.iterdir()) == []


def test_missing_scikit_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "skimage", None)
    with pytest.raises(ImportError, match=r"pip install 'anomalib-gaussft\[demo\]'"):
        generate_demo_dataset(tmp_path, ["brick"], **SMALL)


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="anomalib-gaussft demo-data")
    demo_data_cli.add_arguments(parser)
    argv = ["--root", str(tmp_path), "--categories", "gravel", "retina", "--seed", "0", "--image-size", "64"]
    argv += ["--n-train", "2", "--n-test-good", "1", "--n-test-defect", "1"]
    assert demo_data_cli.run(parser.parse_args(argv)) == 0
    out = capsys.readouterr().out
    assert "gravel" in out
    assert "retina" in out
    assert str(tmp_path.resolve()) in out
    assert len(list((tmp_path / "retina" / "test").rglob("*.png"))) == 1 + 4
    assert demo_data_cli.run(parser.parse_args(argv)) == 0
    assert "skipped" in capsys.readouterr().out
    assert demo_data_cli.run(parser.parse_args(["--root", str(tmp_path), "--categories", "bottle"])) == 1
    assert "Valid categories" in capsys.readouterr().err


def test_cli_test_set_sizes_and_defaults(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--n-test-good` / `--n-test-defect` size the test set (benchmarks); the defaults stay the fast demo's."""
    from anomalib_gaussft.cli import build_parser, main

    defaults = build_parser().parse_args(["demo-data"])
    assert (defaults.image_size, defaults.n_train, defaults.n_test_good, defaults.n_test_defect) == (256, 60, 12, 8)
    argv = ["demo-data", "--root", str(tmp_path), "--categories", "cat", "--image-size", "32", "--n-train", "1"]
    assert main([*argv, "--n-test-good", "5", "--n-test-defect", "3"]) == 0
    assert "test good 5, defects: missing 3, patch 3, scratch 3, stain 3 (written)" in capsys.readouterr().out
    assert len(list((tmp_path / "cat" / "test" / "good").iterdir())) == 5
    assert len(list((tmp_path / "cat" / "ground_truth" / "stain").iterdir())) == 3
