# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""Worker functions for multi-process (gloo) tests, run in processes forked from the test."""

import numpy as np
import torch
import torch.distributed as dist

from anomalib_gaussft.model.gaussian import StreamingGaussianEstimator


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
