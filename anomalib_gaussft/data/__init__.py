# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""Demo data: an MVTec-layout dataset made from scikit-image's CC0 images, with synthetic defects and exact masks.

Modules, in reading order:

- :mod:`~anomalib_gaussft.data.sources`: the category table (which scikit-image image, its license) and the random
  views of the source images;
- :mod:`~anomalib_gaussft.data.defects`: the synthetic defects and their exact masks;
- :mod:`~anomalib_gaussft.data.render`: one sample, from its own random stream;
- :mod:`~anomalib_gaussft.data.demo_dataset`: writing the dataset (:func:`generate_demo_dataset`).

The ``anomalib-gaussft demo-data`` command is :mod:`anomalib_gaussft.cli.demo_data`.

Example:
    >>> from anomalib_gaussft.data import DEFAULT_CATEGORIES, DEMO_SOURCES
    >>> [(category, DEMO_SOURCES[category].kind) for category in DEFAULT_CATEGORIES]
    [('brick', 'texture'), ('coffee', 'object'), ('cat', 'object')]

"""

from anomalib_gaussft.data.demo_dataset import (
    DEFAULT_IMAGE_SIZE,
    DEFAULT_N_TEST_DEFECT,
    DEFAULT_N_TEST_GOOD,
    DEFAULT_N_TRAIN,
    CategoryReport,
    generate_demo_dataset,
    write_demo_dataset,
)
from anomalib_gaussft.data.render import render_sample
from anomalib_gaussft.data.sources import DEFAULT_CATEGORIES, DEMO_CATEGORIES, DEMO_SOURCES, DemoSource

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
