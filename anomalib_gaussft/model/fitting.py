# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""One pass over the normal training images into the estimators of every Gaussian of a :class:`GaussFTModel`.

:meth:`GaussFT.fit_gaussians <anomalib_gaussft.model.GaussFT.fit_gaussians>` runs :func:`fit_training_set` on every
rank: :func:`accumulate_training_set` collects the statistics, which are combined over the ranks and fitted; for the
combined image score :func:`training_score_terms` then scores the training images once more. Each pass

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
from torch.utils.data import DistributedSampler

from anomalib_gaussft.model.checks import image_file_problems, image_paths
from anomalib_gaussft.model.local_mixture import gather_rows
from anomalib_gaussft.model.torch_model import GaussFTModel, GaussianEstimators

__all__ = ["accumulate_training_set", "fit_training_set", "training_score_terms", "unpadded_length"]


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
) -> Iterator[torch.Tensor]:
    """This rank's pre-processed training images, batch by batch, without the sampler's repeats.

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


@contextmanager
def _evaluating(model: GaussFTModel) -> Iterator[None]:
    """Eval mode inside, the model's mode restored afterwards (also on errors)."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


@torch.no_grad()
def accumulate_training_set(
    model: GaussFTModel,
    dataloader: Iterable[Any],
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    device: torch.device | str = "cpu",
) -> GaussianEstimators:
    """Stream this rank's training images through the eval-mode ``model`` into new estimators.

    Args:
        model: The torch model; its training mode is restored afterwards, also on errors.
        dataloader: Batches of normal images (anomalib ``Batch`` objects or image tensors ``(N, 3, H, W)``).
        transform: Pre-processing applied to every batch (Lightning's pre-processor hooks do not run here).
        device: Device the images and the estimators go to.

    Returns:
        The estimators of this rank, not yet combined over ranks nor fitted.

    Raises:
        OSError: If an image file fails to decode (the files named, when the dataloader's dataset names them).
    """
    estimators = model.new_estimators(device)
    with _evaluating(model):
        for images in _training_batches(dataloader, transform, device):
            model.accumulate(images, estimators)
    return estimators


@torch.no_grad()
def training_score_terms(
    model: GaussFTModel,
    dataloader: Iterable[Any],
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """The combined image score's two terms (:meth:`GaussFTModel.score_terms`) of this rank's training images.

    Args:
        model: A fitted torch model; its training mode is restored afterwards.
        dataloader: Batches of normal images, as for :func:`accumulate_training_set`.
        transform: Pre-processing applied to every batch.
        device: Device the images go to.

    Returns:
        ``(n_images, 2)`` terms.
    """
    terms = []
    with _evaluating(model):
        for images in _training_batches(dataloader, transform, device):
            pooled, local = model.embed(images)
            terms.append(model.score_terms(pooled, model.anomaly_map(local, images.shape[-2:])))
    return torch.cat(terms) if terms else torch.zeros(0, 2, device=device)


def fit_training_set(
    model: GaussFTModel,
    dataloader: Iterable[Any],
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    device: torch.device | str = "cpu",
    reduce_sum: Callable[[torch.Tensor], torch.Tensor] | None = None,
    all_gather: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> int:
    """Fit every Gaussian of ``model`` (and the combined score's scales) on the training images of every rank.

    One pass accumulates the estimators; under DDP (``reduce_sum`` and ``all_gather`` given) the global moments are
    summed and the local samples gathered, so every rank fits the same model. With ``image_score="combined"`` a
    second pass scores the training images and sets the two terms' scales to their medians (over all ranks).

    Args:
        model: The torch model.
        dataloader: This rank's batches of normal images.
        transform: Pre-processing applied to every batch.
        device: Device of the images and the estimators.
        reduce_sum: Sum of a tensor over all processes, e.g. ``lambda t: strategy.reduce(t, reduce_op="sum")``.
        all_gather: A tensor of every process stacked, e.g. ``strategy.all_gather``.

    Returns:
        The number of training images the Gaussians were fitted on (over all ranks).

    Raises:
        ValueError: If there are no training images.
    """
    estimators = accumulate_training_set(model, dataloader, transform, device)
    distributed = reduce_sum is not None and all_gather is not None
    if distributed:
        estimators.all_reduce(reduce_sum, all_gather)
    if estimators.n_images == 0:
        msg = "The training set is empty: GaussFT cannot fit a Gaussian without normal training images."
        raise ValueError(msg)
    model.load_fits(estimators)
    if model.image_score_mode == "combined":
        terms = training_score_terms(model, dataloader, transform, device)
        model.load_score_scales(gather_rows(terms, all_gather) if distributed else terms)
    return estimators.n_images
