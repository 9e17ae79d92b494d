# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""Worker functions for multi-process (gloo) tests, run in processes forked from the test."""

import socket
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from anomalib_gaussft.model.gaussian import StreamingGaussianEstimator


def module_tensors(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The parameters and buffers as the module holds them in memory (the state dict packs the whitenings)."""
    return {key: value.detach() for key, value in [*module.named_parameters(), *module.named_buffers()]}


def gaussian_shard_worker(rank: int, world_size: int, port: int, data: np.ndarray, queue) -> None:
    """Estimate the Gaussian of this rank's shard, all-reduce the moments, and report the fit."""
    torch.set_num_threads(1)  # forked: the parent's OpenMP thread pool does not exist in this process
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        shard = np.array_split(data, world_size)[rank]
        estimator = StreamingGaussianEstimator(dim=data.shape[1])
        for chunk in np.array_split(shard, 2 + rank):  # different batching and first-batch shift on each rank
            estimator.update(torch.from_numpy(chunk))

        def reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
            return tensor

        estimator.all_reduce(reduce_sum)
        fit = estimator.fit()
        queue.put((rank, fit.mean.numpy(), fit.covariance.numpy(), fit.count))
    finally:
        dist.destroy_process_group()


def fit_shard_worker(rank: int, world_size: int, port: int, model, images: torch.Tensor, queue) -> None:
    """Fit every Gaussian of ``model`` on this rank's shard of ``images``, counting the collectives it issues.

    Reports ``(rank, collectives, state_dict)``: the number of ``reduce_sum`` and ``all_gather`` calls of the fit, and
    the fitted model's state.
    """
    from anomalib_gaussft.model.fitting import fit_training_set

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    calls = {"reduce_sum": 0, "all_gather": 0}
    try:

        def reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
            calls["reduce_sum"] += 1
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
            return tensor

        def all_gather(tensor: torch.Tensor) -> torch.Tensor:
            calls["all_gather"] += 1
            gathered = [torch.empty_like(tensor) for _ in range(world_size)]
            dist.all_gather(gathered, tensor.contiguous())
            return torch.stack(gathered)

        shard = images.tensor_split(world_size)[rank]
        fit_training_set(model, shard.split(3), reduce_sum=reduce_sum, all_gather=all_gather)
        queue.put((rank, dict(calls), {key: value.numpy() for key, value in module_tensors(model).items()}))
    finally:
        dist.destroy_process_group()


def run_on_gloo_ranks(worker: Callable[..., None], *args: Any, world_size: int = 2) -> list[Any]:
    """Run ``worker(rank, world_size, port, *args, queue)`` in ``world_size`` forked processes; return what they put.

    Forked, the workers start in a second instead of importing torch and anomalib again (about 8 s each). Each worker
    puts one result on the queue; the results come back in the order they arrive, and every process must exit 0.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    context = mp.get_context("fork")
    queue = context.Queue()
    processes = [
        context.Process(target=worker, args=(rank, world_size, port, *args, queue)) for rank in range(world_size)
    ]
    for process in processes:
        process.start()
    results = [queue.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    return results
