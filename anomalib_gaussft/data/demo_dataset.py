# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""Small offline demo dataset in the MVTec AD layout, built from images bundled with scikit-image.

The generator turns a handful of real photographs and textures that ship inside the scikit-image wheel (all CC0 or
public domain, see :data:`~anomalib_gaussft.data.sources.DEMO_SOURCES`) into an anomaly-detection dataset with the
exact folder layout of MVTec AD::

    <root>/<category>/train/good/000.png
    <root>/<category>/test/good/000.png
    <root>/<category>/test/<defect>/000.png
    <root>/<category>/ground_truth/<defect>/000_mask.png

Texture categories (``brick``, ``gravel``, ``grass``) are random crops of a large texture with flips, small
rotations, scale and brightness/contrast jitter, so every normal image is distinct. Object categories (``coffee``,
``retina``, ``cat``) show the same aligned object with a few pixels of shift, a small rotation, photometric jitter and
sensor noise, like the object categories of MVTec AD (:mod:`anomalib_gaussft.data.sources`).

Defects are synthetic but drawn on the real images (:mod:`anomalib_gaussft.data.defects`). Every ground-truth mask
is exact: it is 255 precisely on the pixels whose stored value differs from the defect-free rendering of the same
sample (which :func:`render_sample` returns) and 0 elsewhere.

Everything is deterministic given ``seed``: each image has its own random stream derived from
``(seed, category, split, label, index)``, so changing a count does not change the other images.

The folders load with anomalib's own MVTec AD datamodule; anomalib does not check the category name against the 15
official ones (it only downloads MVTec AD when ``<root>/<category>`` is missing). From the command line:
``anomalib-gaussft demo-data --root ./datasets/demo --categories brick coffee --seed 0``.

Example:
    >>> import tempfile
    >>> from anomalib.data import MVTecAD
    >>> from anomalib_gaussft.data import generate_demo_dataset
    >>> root = generate_demo_dataset(tempfile.mkdtemp(), ["brick"], image_size=32, n_train=4, n_test_good=2)
    >>> datamodule = MVTecAD(root=root, category="brick")
    >>> datamodule.setup()
    >>> len(datamodule.train_data), len(datamodule.test_data)  # test: 2 good + 4 defect types x 8
    (4, 34)

"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from anomalib_gaussft.data.render import check_image_size, render_sample
from anomalib_gaussft.data.sources import (
    DEFAULT_CATEGORIES,
    DEMO_CATEGORIES,
    DEMO_SOURCES,
    DemoSource,
    check_category,
    import_skimage_data,
    source_image,
)

__all__ = [
    "DEFAULT_CATEGORIES",
    "DEFAULT_IMAGE_SIZE",
    "DEFAULT_N_TEST_DEFECT",
    "DEFAULT_N_TEST_GOOD",
    "DEFAULT_N_TRAIN",
    "DEMO_CATEGORIES",
    "DEMO_SOURCES",
    "CategoryReport",
    "DemoSource",
    "generate_demo_dataset",
    "render_sample",
    "write_demo_dataset",
]

#: Defaults of :func:`generate_demo_dataset` and ``anomalib-gaussft demo-data``: the fast demo.
DEFAULT_IMAGE_SIZE = 256
DEFAULT_N_TRAIN = 60
DEFAULT_N_TEST_GOOD = 12
DEFAULT_N_TEST_DEFECT = 8

_MARKER = ".demo_data.json"
_FORMAT_VERSION = 1


@dataclass
class CategoryReport:
    """What :func:`write_demo_dataset` did for one category.

    Attributes:
        category: The category.
        path: Its folder, ``<root>/<category>``.
        counts: Images per folder, e.g. ``{"train/good": 60, "test/good": 12, "test/crack": 8, ...}``.
        skipped: ``True`` if the folder already held demo data with the same settings and was left as it was.

    """

    category: str
    path: Path
    counts: dict[str, int] = field(default_factory=dict)
    skipped: bool = False

    @property
    def total(self) -> int:
        """Number of images (masks not counted)."""
        return sum(self.counts.values())


def _write_png(path: Path, image: NDArray[np.uint8]) -> None:
    """Write ``image`` (RGB or grey) as a PNG."""
    array = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    params = [cv2.IMWRITE_PNG_COMPRESSION, 1]
    if hasattr(cv2, "IMWRITE_PNG_FILTER"):  # OpenCV >= 4.10: a fixed filter is much faster than adaptive filtering
        params += [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP]
    ok, buffer = cv2.imencode(".png", array, params)
    if not ok:
        msg = f"Could not encode {path} as PNG."
        raise OSError(msg)
    path.write_bytes(buffer.tobytes())


def _name_width(count: int) -> int:
    return max(3, len(str(max(count - 1, 0))))


def _plan(spec: DemoSource, n_train: int, n_test_good: int, n_test_defect: int) -> list[tuple[str, str, int]]:
    folders = [("train", "good", n_train), ("test", "good", n_test_good)]
    folders += [("test", defect, n_test_defect) for defect in spec.defects]
    return folders


def _write_category(
    tmp: Path, category: str, params: dict[str, int], folders: list[tuple[str, str, int]]
) -> dict[str, int]:
    jobs: list[tuple[str, str, int, Path, Path | None]] = []
    counts: dict[str, int] = {}
    for split, label, count in folders:
        image_dir = tmp / split / label
        image_dir.mkdir(parents=True, exist_ok=True)
        mask_dir = None
        if label != "good":
            mask_dir = tmp / "ground_truth" / label
            mask_dir.mkdir(parents=True, exist_ok=True)
        width = _name_width(count)
        for index in range(count):
            stem = f"{index:0{width}d}"
            mask_path = None if mask_dir is None else mask_dir / f"{stem}_mask.png"
            jobs.append((split, label, index, image_dir / f"{stem}.png", mask_path))
        counts[f"{split}/{label}"] = count

    def write(job: tuple[str, str, int, Path, Path | None]) -> None:
        split, label, index, image_path, mask_path = job
        _, image, mask = render_sample(
            category, split, label, index, image_size=params["image_size"], seed=params["seed"]
        )
        _write_png(image_path, image)
        if mask_path is not None:
            _write_png(mask_path, mask)

    # Every image has its own random stream, so the output does not depend on the order the threads run in.
    # OpenCV, NumPy and file I/O release the GIL for the heavy parts.
    source_image(category, params["image_size"])  # load once before the threads start
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        try:
            for _ in pool.map(write, jobs):
                pass
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)  # stop queued images before the caller removes the folder
            raise
    return counts


def _read_marker(path: Path) -> dict | None:
    marker = path / _MARKER
    if not marker.is_file():
        return None
    try:
        return json.loads(marker.read_text())
    except (OSError, ValueError):
        return None


def write_demo_dataset(
    root: str | Path,
    categories: Sequence[str] | None = None,
    *,
    image_size: int = DEFAULT_IMAGE_SIZE,
    n_train: int = DEFAULT_N_TRAIN,
    n_test_good: int = DEFAULT_N_TEST_GOOD,
    n_test_defect: int = DEFAULT_N_TEST_DEFECT,
    seed: int = 0,
    overwrite: bool = False,
) -> list[CategoryReport]:
    """Write the demo dataset like :func:`generate_demo_dataset` (same arguments and errors); report each category.

    Returns:
        One :class:`CategoryReport` per category, in order.

    Example:
        >>> import tempfile
        >>> root = tempfile.mkdtemp()
        >>> [report] = write_demo_dataset(root, ["cat"], image_size=32, n_train=2, n_test_good=1, n_test_defect=1)
        >>> report.counts["train/good"], report.counts["test/missing"], report.total, report.skipped
        (2, 1, 7, False)
        >>> write_demo_dataset(root, ["cat"], image_size=32, n_train=2, n_test_good=1, n_test_defect=1)[0].skipped
        True

    """
    if isinstance(categories, str):
        categories = [categories]
    selected = list(dict.fromkeys(DEMO_CATEGORIES if categories is None else categories))
    if not selected:
        msg = f"No categories given. Valid categories: {', '.join(DEMO_CATEGORIES)}."
        raise ValueError(msg)
    for category in selected:
        check_category(category)
    check_image_size(image_size)
    for name, value, minimum in (
        ("n_train", n_train, 1),
        ("n_test_good", n_test_good, 1),
        ("n_test_defect", n_test_defect, 1),
        ("seed", seed, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
            msg = f"{name} must be an integer >= {minimum}, got {value!r}."
            raise ValueError(msg)
    import_skimage_data()  # fail early with the install hint

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    params = {
        "format_version": _FORMAT_VERSION,
        "image_size": int(image_size),
        "n_train": int(n_train),
        "n_test_good": int(n_test_good),
        "n_test_defect": int(n_test_defect),
        "seed": int(seed),
    }
    reports = []
    for category in selected:
        spec = DEMO_SOURCES[category]
        final = root / category
        folders = _plan(spec, n_train, n_test_good, n_test_defect)
        report = CategoryReport(category, final, {f"{s}/{lbl}": c for s, lbl, c in folders})
        if final.exists():
            marker = _read_marker(final)
            if marker is None:
                msg = (
                    f"{final} exists but was not written by the demo-data generator (no {_MARKER}); "
                    "refusing to touch it. Remove it or choose another root."
                )
                raise FileExistsError(msg)
            if not overwrite:
                if {k: marker.get(k) for k in params} != params:
                    msg = (
                        f"{final} holds demo data generated with other settings ({marker}); "
                        "pass overwrite=True (--overwrite) to regenerate it."
                    )
                    raise FileExistsError(msg)
                report.skipped = True
                reports.append(report)
                continue

        tmp = root / f"{category}.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        try:
            report.counts = _write_category(tmp, category, params, folders)
            marker = {**params, "category": category, "license": spec.license, "source": spec.source}
            (tmp / _MARKER).write_text(json.dumps(marker, indent=2) + "\n")
            old = root / f"{category}.old"
            if final.exists():  # overwrite: swap the complete new folder in, then drop the old one
                if old.exists():
                    shutil.rmtree(old)
                final.rename(old)
            tmp.rename(final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if old.exists():
            shutil.rmtree(old)
        reports.append(report)
    return reports


def generate_demo_dataset(
    root: str | Path,
    categories: Sequence[str] | None = None,
    *,
    image_size: int = DEFAULT_IMAGE_SIZE,
    n_train: int = DEFAULT_N_TRAIN,
    n_test_good: int = DEFAULT_N_TEST_GOOD,
    n_test_defect: int = DEFAULT_N_TEST_DEFECT,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write the demo dataset in the MVTec AD layout under ``root``.

    Each category is written to ``<root>/<category>.tmp`` and renamed to ``<root>/<category>`` only once complete,
    so an error never leaves a half-written category behind. A category folder that already holds demo data
    generated with the same settings is skipped.

    Args:
        root: Dataset root; one folder per category is created inside it.
        categories: Categories to write, from :data:`DEMO_CATEGORIES`. ``None`` writes all of them.
        image_size: Side of the square images in pixels (32 to 1024).
        n_train: Normal training images per category.
        n_test_good: Normal test images per category.
        n_test_defect: Test images per defect type (each category has four defect types). One test image moves the
            image AUROC by up to ``1 / n_test_good`` or ``1 / (4 * n_test_defect)``: the defaults make a fast demo;
            for benchmarks where one image should move it by less than 0.005, use ``n_test_good >= 201`` and
            ``n_test_defect >= 51``.
        seed: Non-negative seed; the same seed gives byte-identical files.
        overwrite: Regenerate categories that already exist (only folders written by this generator are replaced).

    Returns:
        The dataset root, usable as ``anomalib.data.MVTecAD(root=root, category=...)``.

    Raises:
        ValueError: If a category is unknown (the message lists the valid ones) or a size or count is invalid.
        ImportError: If scikit-image is not installed.
        RuntimeError: If a source image cannot be loaded offline by the installed scikit-image.
        FileExistsError: If ``<root>/<category>`` exists but was not written by this generator, or was written
            with other settings and ``overwrite`` is false.

    Example:
        >>> import tempfile
        >>> root = generate_demo_dataset(tempfile.mkdtemp(), ["coffee"], image_size=32, n_train=2, n_test_defect=1)
        >>> sorted(path.name for path in (root / "coffee" / "test").iterdir())
        ['good', 'missing', 'patch', 'scratch', 'stain']
        >>> len(list((root / "coffee" / "test" / "good").iterdir()))
        12

    """
    write_demo_dataset(
        root,
        categories,
        image_size=image_size,
        n_train=n_train,
        n_test_good=n_test_good,
        n_test_defect=n_test_defect,
        seed=seed,
        overwrite=overwrite,
    )
    return Path(root)
