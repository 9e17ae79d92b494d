# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""Shared fixtures: a small generated MVTec-layout dataset and tiny, randomly initialised models."""

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the tests never reach a hub
os.environ.setdefault("TRUST_REMOTE_CODE", "1")

TINY_BACKBONE = "tf_efficientnet_lite0"  # randomly initialised in tests where the weights don't matter
TINY_SIZE = (64, 64)


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small demo dataset (two categories, 64 px) generated once per test session."""
    from anomalib_gaussft.data.demo_dataset import generate_demo_dataset

    root = tmp_path_factory.mktemp("demo")
    return generate_demo_dataset(root, ["brick", "coffee"], image_size=64, n_train=24, n_test_good=6, n_test_defect=3)


# Constructor arguments for a fast GaussFT: tiny input, random weights, few levels (module-scoped fixtures use it
# directly, function-scoped tests through `tiny_model_kwargs`).
TINY_MODEL_KWARGS = {
    "backbone": TINY_BACKBONE,
    "pretrained": False,
    "image_size": TINY_SIZE,
    "layers": ["blocks.2", "blocks.4", "head"],
    "map_layers": ["blocks.2", "blocks.4"],
}


@pytest.fixture
def tiny_model_kwargs() -> dict:
    """A fresh copy of :data:`TINY_MODEL_KWARGS`."""
    return {key: list(value) if isinstance(value, list) else value for key, value in TINY_MODEL_KWARGS.items()}


@contextlib.contextmanager
def single_torch_thread() -> Iterator[None]:
    """One torch thread: on a small shared machine two spinning OpenMP threads can make a tiny run 50x slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
