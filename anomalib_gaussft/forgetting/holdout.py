# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""The normal images forgetting detection holds out: from a validation set of normals first, then from training.

:func:`choose_holdout` picks them with a seeded generator; the training loop then reads a copy of the training set
without them (:class:`~anomalib_gaussft.forgetting.ForgettingDetection` puts the user's own set back when fitting ends).
Never test images: a validation set is used only when anomalib's ``val_split_mode`` keeps it out of training and free
of test images.

Example:
    >>> images = resize_images([torch.rand(3, 10, 20), torch.rand(1, 5, 5)], (8, 8))
    >>> images.shape, bool(images.min() >= 0 and images.max() <= 1)
    (torch.Size([2, 3, 8, 8]), True)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812

__all__ = ["HoldOut", "choose_holdout", "resize_images", "validation_normals"]

#: anomalib ``val_split_mode`` values whose validation set is kept out of training and holds no test image.
VALIDATION_FROM_NORMALS = frozenset({"from_train", "synthetic", "from_dir"})


@dataclass
class HoldOut:
    """Held-out normal images and where they came from.

    Attributes:
        images: The images ``(N, 3, H, W)`` in ``[0, 1]``: the validation normals first, then the training images.
        validation_paths: Files of the images taken from the validation set.
        removed_paths: Files of the images taken from the training set.
        keep: Indices of the training set that the training loop keeps.
    """

    images: torch.Tensor
    validation_paths: list[str]
    removed_paths: list[str]
    keep: list[int]


def resize_images(images: Sequence[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
    """Images ``(C, h, w)`` of any size as one ``(N, 3, H, W)`` batch at ``size`` (grey repeated), in ``[0, 1]``."""
    resized = [
        F.interpolate(image[None, :3].float(), size=size, mode="bilinear", antialias=True, align_corners=False)[0]
        for image in images
    ]
    return torch.stack([image.expand(3, -1, -1) for image in resized]).clamp(0, 1)


def validation_normals(datamodule: Any, limit: int, generator: torch.Generator) -> tuple[list[torch.Tensor], list[str]]:
    """Up to ``limit`` normal images (and their files) of a validation set that holds no test image."""
    dataset = getattr(datamodule, "val_data", None)
    mode = str(getattr(getattr(datamodule, "val_split_mode", None), "value", ""))
    samples = getattr(dataset, "samples", None)
    if mode not in VALIDATION_FROM_NORMALS or samples is None or "label_index" not in samples.columns:
        return [], []
    normal = [int(index) for index in (samples.label_index == 0).to_numpy().nonzero()[0]]
    if len(normal) > limit:
        order = torch.randperm(len(normal), generator=generator).tolist()
        normal = sorted(normal[index] for index in order[:limit])
    return [dataset[index].image for index in normal], [str(path) for path in samples.image_path.iloc[normal]]


def choose_holdout(
    datamodule: Any,
    count: int,
    seed: int,
    use_validation_normals: bool = True,
    size: tuple[int, int] | None = None,
) -> HoldOut | None:
    """Choose ``count`` normal images: validation normals first (if allowed), the rest from the training set.

    Args:
        datamodule: An anomalib datamodule, set up (``train_data``, and ``val_data`` if there is one).
        count: Number of images to hold out.
        seed: Seed of the choice.
        use_validation_normals: Take normal images of the validation set first (see :data:`VALIDATION_FROM_NORMALS`).
        size: Size to resize the images to; default: the first image's.

    Returns:
        The held-out images, or ``None`` if the training set would keep fewer than two images.
    """
    dataset = datamodule.train_data
    generator = torch.Generator().manual_seed(seed)
    validation, validation_paths = (
        validation_normals(datamodule, count, generator) if use_validation_normals else ([], [])
    )
    n_total, n_from_training = len(dataset), count - len(validation)
    if n_total - n_from_training < 2:
        return None
    permutation = torch.randperm(n_total, generator=generator).tolist()
    holdout, keep = sorted(permutation[:n_from_training]), sorted(permutation[n_from_training:])
    images = validation + [dataset[index].image for index in holdout]
    return HoldOut(
        images=resize_images(images, size or tuple(images[0].shape[-2:])),
        validation_paths=validation_paths,
        removed_paths=[str(path) for path in dataset.samples.image_path.iloc[holdout]],
        keep=keep,
    )
