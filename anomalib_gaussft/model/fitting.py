# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""One pass over the normal training images into the estimators of every Gaussian of a :class:`GaussFTModel`.

:meth:`GaussFT.fit_gaussians <anomalib_gaussft.model.GaussFT.fit_gaussians>` runs :func:`fit_training_set` on every
rank: :func:`accumulate_training_set` collects the statistics, which are combined over the ranks and fitted; for the
combined image score the training images are then scored with the fitted model. That needs no second pass through
the backbone while the local sample holds every local vector (the pass keeps the images' pooled features beside it,
about 2 % of the local vectors' memory): the scores come from the features of the first pass
(:func:`_terms_from_first_pass`). Otherwise (larger training sets, or DDP) :func:`training_score_terms` runs the
images through the model once more. Each pass

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
from dataclasses import dataclass, field
from typing import Any

import torch
from anomalib.data import Batch
from torch import nn
from torch.utils.data import DistributedSampler

from anomalib_gaussft.model.checks import image_file_problems, image_paths
from anomalib_gaussft.model.local_mixture import gather_rows
from anomalib_gaussft.model.torch_model import GaussFTModel, GaussianEstimators

__all__ = ["accumulate_training_set", "eval_mode", "fit_training_set", "training_score_terms", "unpadded_length"]


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


@dataclass
class _FirstPass:
    """What the first pass keeps to score the training images without a second one (see the module docstring).

    Attributes:
        pooled: Pooled features per batch and global level; emptied once a batch cannot be kept.
        grid: ``(h, w)`` of the first batch's local feature map.
        image_size: ``(H, W)`` of the first batch's pre-processed images.
        batch_size: Size of the first batch (the batch size the scores are computed in).
        complete: Whether every batch so far was kept (same sizes, the local sample never thinned).
    """

    pooled: list[list[torch.Tensor]] = field(default_factory=list)
    grid: tuple[int, int] | None = None
    image_size: tuple[int, int] | None = None
    batch_size: int = 0
    complete: bool = True

    def keep(self, images: torch.Tensor, pooled: list[torch.Tensor], local: torch.Tensor, unthinned: bool) -> None:
        """Keep a batch's pooled features, unless the sample was thinned or the sizes differ from the first batch."""
        size, grid = (int(images.shape[-2]), int(images.shape[-1])), (int(local.shape[-2]), int(local.shape[-1]))
        if self.grid is None:  # the first batch
            self.grid, self.image_size, self.batch_size = grid, size, int(images.shape[0])
        self.complete = self.complete and unthinned and (size, grid) == (self.image_size, self.grid)
        if self.complete:
            self.pooled.append(pooled)
        else:
            self.pooled.clear()  # the second pass will score the images: free the copy at once


@torch.no_grad()
def accumulate_training_set(
    model: GaussFTModel,
    dataloader: Iterable[Any],
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    device: torch.device | str = "cpu",
    first_pass: _FirstPass | None = None,
    extra_images: torch.Tensor | None = None,
) -> GaussianEstimators:
    """Stream this rank's training images through the eval-mode ``model`` into new estimators.

    Args:
        model: The torch model; its training mode is restored afterwards, also on errors.
        dataloader: Batches of normal images (anomalib ``Batch`` objects or image tensors ``(N, 3, H, W)``).
        transform: Pre-processing applied to every batch (Lightning's pre-processor hooks do not run here).
        device: Device the images and the estimators go to.
        first_pass: Filled with what scoring the images from this pass needs (internal; see the module docstring).
        extra_images: More normal images ``(N, 3, H, W)`` of this rank, after the dataloader's (e.g. the ones
            :class:`~anomalib_gaussft.forgetting.ForgettingDetection` held out of the training set), pre-processed
            like them.

    Returns:
        The estimators of this rank, not yet combined over ranks nor fitted.

    Raises:
        OSError: If an image file fails to decode (the files named, when the dataloader's dataset names them).
    """
    estimators = model.new_estimators(device)
    with eval_mode(model):
        for images in _training_batches(dataloader, transform, device, extra_images):
            pooled, local = model.accumulate(images, estimators)
            if first_pass is not None:
                unthinned = estimators.local.n_samples == estimators.local.n_seen
                first_pass.keep(images, pooled, local, unthinned)
    return estimators


@torch.no_grad()
def _terms_from_first_pass(
    model: GaussFTModel, estimators: GaussianEstimators, first_pass: _FirstPass
) -> torch.Tensor | None:
    """:func:`training_score_terms` from the first pass's features, or ``None`` if it did not keep them all.

    The local sample holds every position of every image in the order of the pass, ``(image, row, column)``, when
    it was never thinned; the kept pooled features hold the rest.
    """
    sample = estimators.local
    if not first_pass.complete or not first_pass.pooled:
        return None
    height, width = first_pass.grid
    positions = height * width
    n_images = sum(batch[0].shape[0] for batch in first_pass.pooled)
    if sample.n_samples != sample.n_seen or sample.n_samples != n_images * positions:
        return None
    vectors = sample.vectors
    pooled = [torch.cat(level) for level in zip(*first_pass.pooled, strict=True)]
    terms = []
    with eval_mode(model):
        for start in range(0, n_images, first_pass.batch_size):
            stop = min(start + first_pass.batch_size, n_images)
            grids = vectors[start * positions : stop * positions].view(stop - start, height, width, -1)
            local = grids.permute(0, 3, 1, 2)
            score_map = model.score_map(local, first_pass.image_size)
            terms.append(model.score_terms([level[start:stop] for level in pooled], score_map))
    return torch.cat(terms)


@torch.no_grad()
def training_score_terms(
    model: GaussFTModel,
    dataloader: Iterable[Any],
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    device: torch.device | str = "cpu",
    extra_images: torch.Tensor | None = None,
) -> torch.Tensor:
    """The combined image score's two terms (:meth:`GaussFTModel.score_terms`) of this rank's training images.

    Args:
        model: A fitted torch model; its training mode is restored afterwards.
        dataloader: Batches of normal images, as for :func:`accumulate_training_set`.
        transform: Pre-processing applied to every batch.
        device: Device the images go to.
        extra_images: More normal images of this rank, as for :func:`accumulate_training_set`.

    Returns:
        ``(n_images, 2)`` terms.
    """
    terms = []
    with eval_mode(model):
        for images in _training_batches(dataloader, transform, device, extra_images):
            pooled, local = model.embed(images)
            terms.append(model.score_terms(pooled, model.score_map(local, images.shape[-2:])))
    return torch.cat(terms) if terms else torch.zeros(0, 2, device=device)


def fit_training_set(
    model: GaussFTModel,
    dataloader: Iterable[Any],
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    device: torch.device | str = "cpu",
    reduce_sum: Callable[[torch.Tensor], torch.Tensor] | None = None,
    all_gather: Callable[[torch.Tensor], torch.Tensor] | None = None,
    extra_images: torch.Tensor | None = None,
) -> int:
    """Fit every Gaussian of ``model`` (and the combined score's scales) on the training images of every rank.

    One pass accumulates the estimators; under DDP (``reduce_sum`` and ``all_gather`` given) the global moments are
    summed and the local samples gathered, so every rank fits the same model. With ``image_score="combined"`` the
    training images are scored with the fitted model, from the first pass's features when the local sample kept
    them all (one process), else in a second pass, and the two terms' scales are set to their medians (over all
    ranks).

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
    combined = model.image_score_mode == "combined"
    first_pass = _FirstPass() if combined and not distributed else None
    estimators = accumulate_training_set(model, dataloader, transform, device, first_pass, extra_images)
    if distributed:
        estimators.all_reduce(reduce_sum, all_gather)
    if estimators.n_images == 0:
        msg = "The training set is empty: GaussFT cannot fit a Gaussian without normal training images."
        raise ValueError(msg)
    model.load_fits(estimators)
    if combined:
        terms = _terms_from_first_pass(model, estimators, first_pass) if first_pass is not None else None
        if terms is None:
            terms = training_score_terms(model, dataloader, transform, device, extra_images)
        model.load_score_scales(gather_rows(terms, all_gather) if distributed else terms)
    return estimators.n_images
