# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""Scoring images with a trained anomalib module and the rank AUROC of raw scores: one copy for every caller.

Forgetting detection, the benchmark and the studies in ``tools/`` all score images in eval mode and compare
normal with anomalous scores. They use these helpers, so that the eval-mode switch, the pre-processing and the
AUROC are written once.

Example:
    >>> import torch
    >>> rank_auroc(torch.tensor([0.0, 1.0]), torch.tensor([2.0, 1.0]))
    0.875
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

__all__ = ["eval_mode", "rank_auroc", "score_images"]


def rank_auroc(normal_scores: torch.Tensor, anomalous_scores: torch.Tensor) -> float:
    """AUROC from ranks: the probability that an anomalous score exceeds a normal one (ties count half).

    Computed with the Mann-Whitney U statistic over tie-averaged ranks in ``O(n log n)``, in float64, so unbounded
    scores are fine (no sigmoid squashing as in torchmetrics' BinaryAUROC on logits) and millions of pixels too.

    Args:
        normal_scores: Scores of normal samples (any shape, flattened).
        anomalous_scores: Scores of anomalous samples (any shape, flattened).

    Returns:
        The AUROC in ``[0, 1]``.

    Raises:
        ValueError: If either group is empty.

    Example:
        >>> rank_auroc(torch.tensor([0.0, 1.0, 2.0]), torch.tensor([3.0, 4.0]))
        1.0
    """
    normal = torch.as_tensor(normal_scores).detach().double().flatten().cpu()
    anomalous = torch.as_tensor(anomalous_scores).detach().double().flatten().cpu()
    n_normal, n_anomalous = normal.numel(), anomalous.numel()
    if n_normal == 0 or n_anomalous == 0:
        msg = "AUROC needs at least one normal and one anomalous score."
        raise ValueError(msg)
    scores = torch.cat([normal, anomalous])
    _, inverse, counts = torch.unique(scores, sorted=True, return_inverse=True, return_counts=True)
    last_rank = torch.cumsum(counts, dim=0).double()  # 1-based rank of the last element of each tie group
    average_rank = last_rank - (counts.double() - 1) / 2
    rank_sum = average_rank[inverse[n_normal:]].sum()
    u_statistic = rank_sum - n_anomalous * (n_anomalous + 1) / 2
    return float(u_statistic / (n_normal * n_anomalous))


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Put ``module`` in eval mode for the block and restore its previous mode afterwards, also on errors.

    Example:
        >>> layer = nn.Dropout().train()
        >>> with eval_mode(layer):
        ...     layer.training
        False
        >>> layer.training
        True
    """
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


@torch.no_grad()
def score_images(pl_module: Any, images: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
    """Raw image scores of an anomalib module's torch model for raw images in ``[0, 1]``.

    The images go through the module's pre-processor transform (Lightning's hooks are not called outside a trainer
    loop) and its eval-mode ``model``, whose output must have ``pred_score``; no post-processing is applied.

    Args:
        pl_module: An ``AnomalibModule`` (``model``, optionally ``pre_processor.transform`` and ``device``).
        images: Images ``(N, 3, H, W)``.
        batch_size: Images per forward pass.

    Returns:
        Float32 scores ``(N,)`` on the CPU.

    Example:
        >>> from anomalib_gaussft import GaussFT
        >>> module = GaussFT(backbone="resnet18", pretrained=False, image_size=(32, 32), forgetting_detection=False)
        >>> score_images(module, torch.rand(3, 3, 32, 32)).shape  # an unfitted model scores too, meaninglessly
        torch.Size([3])
    """
    transform = getattr(getattr(pl_module, "pre_processor", None), "transform", None)
    device = getattr(pl_module, "device", torch.device("cpu"))
    scores = []
    with eval_mode(pl_module.model) as model:
        for start in range(0, images.shape[0], batch_size):
            batch = images[start : start + batch_size].to(device)
            if transform is not None:
                batch = transform(batch)
            scores.append(model(batch).pred_score.flatten().float().cpu())
    return torch.cat(scores) if scores else torch.zeros(0)
