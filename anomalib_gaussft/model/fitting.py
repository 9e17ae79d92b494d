# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""One pass over the normal training images into the estimators of every Gaussian of a :class:`GaussFTModel`.

:meth:`GaussFT.fit_gaussians <anomalib_gaussft.model.GaussFT.fit_gaussians>` runs :func:`accumulate_training_set`
on every rank, sums the estimators over the ranks and loads the fits. The pass

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

from collections.abc import Callable, Iterable
from typing import Any

import torch
from anomalib.data import Batch
from torch.utils.data import DistributedSampler

from anomalib_gaussft.model.checks import image_file_problems, image_paths
from anomalib_gaussft.model.torch_model import GaussFTModel, GaussianEstimators

__all__ = ["accumulate_training_set", "unpadded_length"]


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
        The estimators of this rank, not yet summed over ranks nor fitted.

    Raises:
        OSError: If an image file fails to decode (the files named, when the dataloader's dataset names them).
    """
    estimators = model.new_estimators(device)
    remaining = unpadded_length(dataloader)
    was_training = model.training
    model.eval()
    try:
        for batch in dataloader:
            images = (batch.image if isinstance(batch, Batch) else batch).to(device)
            if remaining is not None:  # drop the sampler's repeats, the last images of this rank
                images, remaining = images[:remaining], max(remaining - images.shape[0], 0)
            if images.shape[0] == 0:
                continue
            model.accumulate(transform(images) if transform is not None else images, estimators)
    except (OSError, SyntaxError) as error:  # PIL's errors for truncated or corrupt files name no file
        if not (problems := image_file_problems(image_paths(dataloader), decode=True)):
            raise
        msg = f"Cannot read {len(problems)} training image(s): {'; '.join(problems[:5])}."
        raise OSError(msg) from error
    finally:
        model.train(was_training)
    return estimators
