# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""One pass over the normal training images into the estimators of every Gaussian of a :class:`GaussFTModel`.

:meth:`GaussFT.fit_gaussians <anomalib_gaussft.model.GaussFT.fit_gaussians>` runs :func:`fit_training_set` on every
rank: :func:`accumulate_training_set` collects the statistics in one pass, which are summed over the ranks and
fitted. The pass

* runs the model in eval mode without gradients and restores its mode afterwards, also when it fails;
* counts each image once under DDP: Lightning's ``DistributedSampler`` repeats images to give every rank as many,
  and :func:`unpadded_length` says how many of a rank's images are not repeats;
* names the files when an image fails to decode (PIL's errors name none).

Example:
    >>> import torch
    >>> from anomalib_gaussft.model import GaussFTModel
    >>> model = GaussFTModel("resnet18", layers=["layer1"], map_layers=["layer1"], pretrained=False).train()
    >>> estimators = accumulate_training_set(model, [torch.rand(4, 3, 32, 32), torch.rand(2, 3, 32, 32)])
    >>> estimators.n_images, model.training
    (6, True)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from anomalib.data import Batch
from torch import nn
from torch.utils.data import DistributedSampler

from anomalib_gaussft.model.checks import image_file_problems, image_paths
from anomalib_gaussft.model.torch_model import GaussFTModel, GaussianEstimators

__all__ = ["accumulate_training_set", "eval_mode", "fit_training_set", "unpadded_length"]


def unpadded_length(dataloader: Any) -> int | None:
    """How many of a rank's samples no other rank also gets, under a padding ``DistributedSampler``; else ``None``.

    When the dataset size is not divisible by the number of ranks, ``DistributedSampler`` (``drop_last=False``, as
    Lightning sets it up for training) appends the first indices again so that every rank gets as many samples.
    Sample ``k`` of rank ``r`` is entry ``r + k * num_replicas`` of the padded list, and the entries from
    ``len(dataset)`` on are the repeats: they are the last samples of their ranks, whatever the shuffle.

    Args:
        dataloader: A dataloader; its ``sampler`` (or its batch sampler's ``sampler``) is looked at.

    Returns:
        The number of leading samples of this rank that are not repeats, or ``None`` if nothing is repeated.

    Example:
        >>> from torch.utils.data import DataLoader
        >>> [unpadded_length(DataLoader(range(5), sampler=DistributedSampler(range(5), 2, rank))) for rank in (0, 1)]
        [3, 2]
        >>> unpadded_length(DataLoader(range(5))) is None
        True
    """
    candidates = (
        getattr(dataloader, "sampler", None),
        getattr(getattr(dataloader, "batch_sampler", None), "sampler", 0),
    )
    sampler = next((s for s in candidates if isinstance(s, DistributedSampler)), None)
    if sampler is None or sampler.drop_last:
        return None
    return len(range(sampler.rank, len(sampler.dataset), sampler.num_replicas))


def _training_batches(
    dataloader: Iterable[Any],
    transform: Callable[[torch.Tensor], torch.Tensor] | None,
    device: torch.device | str,
    extra_images: torch.Tensor | None = None,
) -> Iterator[torch.Tensor]:
    """This rank's pre-processed training images, batch by batch, without the sampler's repeats; then ``extra_images``.

    Raises:
        OSError: If an image file fails to decode (the files named, when the dataloader's dataset names them).
    """
    remaining = unpadded_length(dataloader)
    try:
        for batch in dataloader:
            images = (batch.image if isinstance(batch, Batch) else batch).to(device)
            if remaining is not None:  # drop the sampler's repeats, the last images of this rank
                images, remaining = images[:remaining], max(remaining - images.shape[0], 0)
            if images.shape[0] > 0:
                yield transform(images) if transform is not None else images
    except (OSError, SyntaxError) as error:  # PIL's errors for truncated or corrupt files name no file
        if not (problems := image_file_problems(image_paths(dataloader), decode=True)):
            raise
        msg = f"Cannot read {len(problems)} training image(s): {'; '.join(problems[:5])}."
        raise OSError(msg) from error
    if extra_images is not None and extra_images.shape[0] > 0:
        images = extra_images.to(device)
        yield transform(images) if transform is not None else images


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Put ``module`` in eval mode for the block and restore its previous mode afterwards, also on errors.

    The model's copy, used by the passes here and by
    :func:`~anomalib_gaussft.model.post_processing.refit_on_validation`. Its twin
    :func:`anomalib_gaussft.evaluation.eval_mode` serves forgetting detection, which must not import ``model/``
    (it works with any anomalib model; ``tests/test_layout.py``).

    Example:
        A module in eval mode stays in it, also when the block fails:

        >>> norm = nn.BatchNorm1d(3).eval()
        >>> try:
        ...     with eval_mode(norm) as inside:
        ...         raise RuntimeError(inside.training)
        ... except RuntimeError as error:
        ...     print(error, norm.training)
        False False
    """
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


@torch.no_grad()
def accumulate_training_set(
    model: GaussFTModel,
    dataloader: Iterable[Any],
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    device: torch.device | str = "cpu",
    extra_images: torch.Tensor | None = None,
) -> GaussianEstimators:
    """Stream this rank's training images through the eval-mode ``model`` into new estimators.

    Args:
        model: The torch model; its training mode is restored afterwards, also on errors.
        dataloader: Batches of normal images (anomalib ``Batch`` objects or image tensors ``(N, 3, H, W)``).
        transform: Pre-processing applied to every batch (Lightning's pre-processor hooks do not run here).
        device: Device the images and the estimators go to.
        extra_images: More normal images ``(N, 3, H, W)`` of this rank, after the dataloader's (e.g. the ones
            :class:`~anomalib_gaussft.forgetting.ForgettingDetection` held out of the training set), pre-processed
            like them.

    Returns:
        The estimators of this rank, not yet summed over ranks nor fitted.

    Raises:
        OSError: If an image file fails to decode (the files named, when the dataloader's dataset names them).
    """
    estimators = model.new_estimators(device)
    with eval_mode(model):
        for images in _training_batches(dataloader, transform, device, extra_images):
            model.accumulate(images, estimators)
    return estimators


def fit_training_set(
    model: GaussFTModel,
    dataloader: Iterable[Any],
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    device: torch.device | str = "cpu",
    reduce_sum: Callable[[torch.Tensor], torch.Tensor] | None = None,
    all_gather: Callable[[torch.Tensor], torch.Tensor] | None = None,
    extra_images: torch.Tensor | None = None,
) -> int:
    """Fit every Gaussian of ``model`` on the training images of every rank.

    One pass accumulates the estimators; under DDP (``reduce_sum`` and ``all_gather`` given) the global moments are
    summed and the local samples gathered, so every rank fits the same model.

    Args:
        model: The torch model.
        dataloader: This rank's batches of normal images.
        transform: Pre-processing applied to every batch.
        device: Device of the images and the estimators.
        reduce_sum: Sum of a tensor over all processes, e.g. ``lambda t: strategy.reduce(t, reduce_op="sum")``.
        all_gather: A tensor of every process stacked, e.g. ``strategy.all_gather``.
        extra_images: More normal images ``(N, 3, H, W)`` of this rank, fitted on after the dataloader's (give them
            to one rank only under DDP).

    Returns:
        The number of training images the Gaussians were fitted on (over all ranks).

    Raises:
        ValueError: If there are no training images.
    """
    distributed = reduce_sum is not None and all_gather is not None
    estimators = accumulate_training_set(model, dataloader, transform, device, extra_images)
    if distributed:
        estimators.all_reduce(reduce_sum, all_gather)
    if estimators.n_images == 0:
        msg = "The training set is empty: GaussFT cannot fit a Gaussian without normal training images."
        raise ValueError(msg)
    model.load_fits(estimators)
    return estimators.n_images
