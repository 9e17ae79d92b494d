# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""Vetting what GaussFT is handed: training image files and checkpoints, with errors that name the file at fault.

anomalib reads images with PIL and Lightning loads checkpoints with ``torch.load``; both fail (or silently go wrong)
with messages that name no file. :class:`~anomalib_gaussft.model.GaussFT` calls these checks first:

* :func:`image_paths` and :func:`image_file_problems` find training images that anomalib cannot read, or would clip
  to white (16-bit and float images), before the Gaussians are fitted on them;
* :func:`read_checkpoint` and :func:`check_checkpoint` refuse an unreadable file, another model's checkpoint, or one
  whose tensors do not fit the model, before anything is built from it.

Example:
    >>> gaussft = {"state_dict": {"model.local_mixture.mean": torch.zeros(3)}, "gaussft_checkpoint_format": 3}
    >>> check_checkpoint(gaussft, "Checkpoint gaussft.ckpt")  # GaussFT's Gaussians, in this format: no error
    >>> patchcore = {"state_dict": {"model.memory_bank": torch.zeros(3)}}
    >>> check_checkpoint(patchcore, "Checkpoint patchcore.ckpt")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    ValueError: Checkpoint patchcore.ckpt is not a GaussFT checkpoint: ...
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image

if TYPE_CHECKING:
    from anomalib_gaussft.model.lightning_model import GaussFT

__all__ = [
    "CHECKPOINT_FORMAT",
    "check_checkpoint",
    "check_training_images",
    "image_file_problems",
    "image_paths",
    "read_checkpoint",
]

#: The layout of GaussFT's checkpoints, saved as ``checkpoint["gaussft_checkpoint_format"]``; other formats are
#: refused. Format 2 came with anomalib-gaussft 0.2.0 (an image score that fitted scales, and its buffers, removed),
#: format 3 with 0.3.0 (the local features averaged over 4 x 4 windows at stride 2: a coarser positional grid).
CHECKPOINT_FORMAT = 3
#: The release that introduced :data:`CHECKPOINT_FORMAT`.
CHECKPOINT_FORMAT_SINCE = "0.3.0"


def image_paths(dataloader: Any) -> list[str]:
    """Image files behind an anomalib dataloader (its dataset's ``samples.image_path``); empty for other loaders.

    Args:
        dataloader: Any iterable of batches; only an anomalib dataset's ``samples`` table names files.

    Returns:
        The image paths as strings, in the dataset's order.

    Example:
        >>> image_paths([torch.zeros(2, 3, 8, 8)])  # a plain list of tensors names no file
        []
    """
    samples = getattr(getattr(dataloader, "dataset", None), "samples", None)
    if samples is None or "image_path" not in getattr(samples, "columns", ()):
        return []
    return [str(path) for path in samples["image_path"]]


def image_file_problems(paths: Sequence[str | Path], decode: bool = False) -> list[str]:
    """``"path (problem)"`` for each image file that anomalib's reader cannot read or would silently corrupt.

    anomalib's ``read_image`` converts with PIL to 8-bit RGB, which clips 16-bit and float single-channel images
    (PIL modes ``I;16``, ``I``, ``F``) at 255: most of such an image turns white. Only the headers are read, unless
    ``decode`` (every file is then decoded: slow, meant to explain a failure).

    Args:
        paths: Image files.
        decode: Also decode every image (finds truncated files, whose headers are intact).

    Returns:
        One ``"path (problem)"`` line per unusable file; empty if all are usable.

    Example:
        >>> import numpy as np, tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> Image.fromarray(np.zeros((4, 4), dtype=np.uint16)).save(folder / "depth.png")
        >>> _ = (folder / "broken.png").write_bytes(b"not a PNG")
        >>> for problem in image_file_problems([folder / "depth.png", folder / "broken.png"]):
        ...     print(problem.replace(f"{folder}/", ""))
        depth.png (PIL mode I;16: 16-bit or float, which anomalib clips to 8 bits)
        broken.png (UnidentifiedImageError: cannot identify image file 'broken.png')
    """
    problems = []
    for path in paths:
        try:
            with Image.open(path) as image:
                if image.mode in {"I", "F"} or image.mode.startswith("I;"):
                    problems.append(f"{path} (PIL mode {image.mode}: 16-bit or float, which anomalib clips to 8 bits)")
                elif decode:
                    image.load()
        except Exception as error:  # any failure to read the file is the problem being reported
            problems.append(f"{path} ({type(error).__name__}: {error})")
    return problems


def check_training_images(paths: Sequence[str | Path]) -> None:
    """Refuse training images that anomalib cannot read or would clip, naming them (:func:`image_file_problems`).

    Raises:
        ValueError: Naming up to five unusable files and what is wrong with each.

    Example:
        >>> check_training_images([])  # nothing to refuse
    """
    if problems := image_file_problems(paths):
        msg = f"{len(problems)} training image(s) cannot be used: {'; '.join(problems[:5])}."
        raise ValueError(msg)


def read_checkpoint(path: Any, weights_only: bool = True) -> dict[str, Any] | None:
    """Read a local checkpoint file's contents, or ``None`` for what only Lightning can open (a URL, a stream).

    A zip-format checkpoint (every checkpoint of recent PyTorch and Lightning) is memory-mapped: only its pickled
    structure is read here, the tensor data stays on disk until Lightning loads it. Call it inside
    ``anomalib_safe_globals`` for anomalib's hyperparameter types to unpickle under ``weights_only``.

    Args:
        path: The ``checkpoint_path`` given to ``load_from_checkpoint``.
        weights_only: Restrict unpickling to tensors and allowlisted types, as Lightning will.

    Returns:
        The checkpoint (any unpickled object), or ``None`` if ``path`` is not a local file path.

    Raises:
        FileNotFoundError: If a local ``path`` is not an existing file (named).
        ValueError: If the file cannot be read as a checkpoint (named, with ``torch.load``'s reason).

    Example:
        >>> read_checkpoint("s3://bucket/model.ckpt") is None  # Lightning reads remote files itself
        True
        >>> read_checkpoint("no/such/model.ckpt")
        Traceback (most recent call last):
            ...
        FileNotFoundError: Checkpoint no/such/model.ckpt does not exist or is not a file.
    """
    if not isinstance(path, str | Path) or "://" in str(path):
        return None
    if not Path(path).is_file():
        msg = f"Checkpoint {path} does not exist or is not a file."
        raise FileNotFoundError(msg)
    try:
        return torch.load(path, map_location="cpu", mmap=zipfile.is_zipfile(path), weights_only=weights_only)
    except Exception as error:  # whatever torch.load reports, this file is the one at fault
        msg = f"Cannot read checkpoint {path}: {type(error).__name__}: {error}"
        raise ValueError(msg) from error


def check_checkpoint(checkpoint: Any, source: str, model: GaussFT | None = None) -> None:
    """Refuse another model's checkpoint, or one whose tensors do not fit ``model``, with a clear message.

    Args:
        checkpoint: The loaded checkpoint (a Lightning checkpoint is a dict with a ``state_dict``).
        source: How to name the checkpoint in messages, e.g. ``"Checkpoint runs/model.ckpt"``.
        model: The model it is about to be loaded into; ``None`` checks only that it is a GaussFT checkpoint.

    Raises:
        ValueError: If the checkpoint holds no GaussFT Gaussians, was saved before anomalib-gaussft 0.3.0, or holds
            tensors whose shapes differ from ``model``'s.

    Example:
        >>> from anomalib_gaussft.model import GaussFT
        >>> small = GaussFT(backbone="resnet18", pretrained=False, image_size=(32, 32), layers=["layer1"])
        >>> other = GaussFT(backbone="resnet18", pretrained=False, image_size=(32, 32), layers=["layer2"])
        >>> saved = {"state_dict": small.state_dict(), "gaussft_checkpoint_format": CHECKPOINT_FORMAT}
        >>> check_checkpoint(saved, "The checkpoint", model=other)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
            ...
        ValueError: The checkpoint does not fit this GaussFT model (2 tensors differ in shape, e.g. ...
    """
    state = (checkpoint.get("state_dict") if isinstance(checkpoint, dict) else None) or {}
    if not any(key.startswith("model.local_mixture.") for key in state):
        keys = ", ".join([key for key in state if key.startswith("model.")][:3] or list(state)[:3]) or "nothing"
        msg = (
            f"{source} is not a GaussFT checkpoint: it has no GaussFT Gaussians (`model.local_mixture.*`); its model "
            f"holds {keys}, .... Load it with the model class that saved it."
        )
        raise ValueError(msg)
    saved_format = checkpoint.get("gaussft_checkpoint_format", 1)
    if saved_format != CHECKPOINT_FORMAT:
        made_by = (
            f"before anomalib-gaussft {CHECKPOINT_FORMAT_SINCE}"
            if saved_format < CHECKPOINT_FORMAT
            else "by a newer anomalib-gaussft"
        )
        msg = (
            f"{source} was saved {made_by} (checkpoint format {saved_format}; this version reads format "
            f"{CHECKPOINT_FORMAT}). Retrain the model with this version (`anomalib train --model GaussFT ...`), or "
            "load it with the version that saved it."
        )
        raise ValueError(msg)
    if model is None:
        return
    expected = model.state_dict()  # the whitenings' packed triangles; the full matrices load as well
    full = {key: tensor.shape for key, tensor in [*model.named_parameters(), *model.named_buffers()]}
    mismatched = [
        f"{key}: {tuple(value.shape)} in the checkpoint, {tuple(expected[key].shape)} here"
        for key, value in state.items()
        if key in expected
        and expected[key].numel() > 0  # an empty buffer takes the saved shape (the per-position Gaussians' grid)
        and tuple(getattr(value, "shape", ())) not in (tuple(expected[key].shape), tuple(full.get(key, ())))
    ]
    if mismatched:
        saved = checkpoint.get("gaussft_levels") or checkpoint.get("hyper_parameters") or {}  # the former: as saved
        msg = (
            f"{source} does not fit this GaussFT model ({len(mismatched)} tensors differ in shape, e.g. "
            f"{'; '.join(mismatched[:3])}). It was saved with backbone={saved.get('backbone')!r}, "
            f"layers={saved.get('layers')}, map_layers={saved.get('map_layers')}; this model has "
            f"backbone={model.backbone!r}, layers={model.model.layers}, map_layers={model.model.map_layers}. "
            "Build the model with the checkpoint's settings, or use `GaussFT.load_from_checkpoint` without overrides."
        )
        raise ValueError(msg)
