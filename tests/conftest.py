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
# Under pytest-xdist (`make test` runs one worker per core) every worker computes on one thread, and so do the processes
# it starts (set before torch is imported): two workers with two OpenMP threads each would fight over two cores.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

# `make test` hands whole files to the two workers (`--dist loadfile --no-loadscope-reorder`) in collection order; the
# longest files (seconds under `make test`, measured 2026-11-29 with one core busy elsewhere) go first so that both
# workers end together.
LONGEST_FIRST = (
    "test_export.py",  # 67 s: one dynamo export of the whole pipeline, OpenVINO compression, the CLI export
    "test_cli.py",  # 57 s: two fresh interpreters and an `anomalib train`
    "test_benchmark.py",  # 50 s: `anomalib benchmark` beside the in-process benchmark
    "test_model.py",  # 39 s
    "test_ddp.py",  # 35 s: two DDP ranks
    "test_reliability.py",  # 31 s
    "test_forgetting.py",  # 31 s
    "test_tools_deployment.py",  # 22 s
    "test_weights.py",  # 22 s
    "test_recipe_study.py",  # 18 s
    "test_tools_memory.py",  # 15 s: a fresh interpreter
    "test_loss_dynamics.py",  # 13 s
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist, run the files of :data:`LONGEST_FIRST` first (each file's tests stay in their order)."""
    del config
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    rank = {name: index for index, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order


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
    # 4 instead of the default 64 mixture components: the same code paths, and an ONNX export (dynamo traces one
    # Mahalanobis distance per component) of 7.6 instead of 12.4 s; the default is exported in tests/test_model.py.
    "local_components": 4,
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
