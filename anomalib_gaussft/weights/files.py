# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""Weights files: read one into a state dict, and load a state dict strictly into a model.

A file may hold timm, torchvision (same ResNet / Wide-ResNet keys as timm) or EfficientNet-PyTorch key names; the
last are renamed by :mod:`anomalib_gaussft.weights.efficientnet_pytorch`. Loading is strict: every key and every
shape must match, and an error names the file and the first keys that do not.

Example:
    >>> import tempfile, timm, torch
    >>> with tempfile.NamedTemporaryFile(suffix=".pth") as file:
    ...     torch.save(timm.create_model("resnet18").state_dict(), file.name)
    ...     load_weights_file(timm.create_model("resnet18"), file.name) == f"file {file.name}"
    True

"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from anomalib_gaussft.weights.efficientnet_pytorch import (
    convert_efficientnet_pytorch_state_dict,
    is_efficientnet_pytorch_layout,
)

__all__ = ["load_state_dict_strict", "load_weights_file", "read_state_dict"]

_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")
_MAX_KEYS_SHOWN = 5


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a weights file into a plain state dict on the CPU.

    ``.safetensors`` files are read with safetensors, anything else with ``torch.load(weights_only=True)``. A dict
    wrapping the weights under ``state_dict`` / ``model_state_dict`` / ``model`` is unwrapped and a ``module.``
    prefix on every key (``DataParallel``) is stripped; keys are not renamed otherwise.

    Args:
        path: The weights file (``.pth``, ``.pt``, ``.bin`` or ``.safetensors``).

    Returns:
        The state dict, parameter name -> tensor.

    Raises:
        FileNotFoundError: If ``path`` is not a file.
        ValueError: If the file cannot be read as a state dict.

    Example:
        >>> read_state_dict("/no/such/file.pth")
        Traceback (most recent call last):
        ...
        FileNotFoundError: Pretrained weights file not found: /no/such/file.pth

    """
    path = Path(path).expanduser()
    if not path.is_file():
        msg = f"Pretrained weights file not found: {path}"
        raise FileNotFoundError(msg)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            loaded: Any = load_file(str(path), device="cpu")
        else:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any read failure means: not a weights file
        msg = f"Cannot read pretrained weights file {path} as a state dict ({type(error).__name__}: {error})."
        raise ValueError(msg) from error
    for key in _WRAPPER_KEYS:
        if isinstance(loaded, Mapping) and isinstance(loaded.get(key), Mapping):
            loaded = loaded[key]
            break
    if not isinstance(loaded, Mapping) or not all(isinstance(value, torch.Tensor) for value in loaded.values()):
        msg = f"Pretrained weights file {path} does not hold a state dict (a mapping of names to tensors)."
        raise ValueError(msg)
    state_dict = {str(key): value for key, value in loaded.items()}
    if state_dict and all(key.startswith("module.") for key in state_dict):
        state_dict = {key.removeprefix("module."): value for key, value in state_dict.items()}
    return state_dict


def _shorten(keys: Sequence[str]) -> str:
    """Format the first few keys of a list for an error message."""
    shown = ", ".join(keys[:_MAX_KEYS_SHOWN])
    more = f", ... ({len(keys)} in all)" if len(keys) > _MAX_KEYS_SHOWN else ""
    return f"[{shown}{more}]"


def load_state_dict_strict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Load ``state_dict`` into ``model``, requiring every key and shape to match.

    A missing BatchNorm ``num_batches_tracked`` is allowed (older checkpoints and some hub files lack it).

    Args:
        model: The model to load into.
        state_dict: Parameter name -> tensor, in ``model``'s key layout.
        source: Where the weights come from, for the error message (e.g. ``"file /x.pth"``).

    Raises:
        ValueError: Naming ``source`` and the first few missing / unexpected / mis-shaped keys.

    Example:
        >>> import timm
        >>> load_state_dict_strict(timm.create_model("resnet18"), {"fc.bias": torch.zeros(3)}, "a test")
        Traceback (most recent call last):
        ...
        ValueError: Weights from a test do not fit ResNet: missing keys [conv1.weight, ...]; shape mismatches [...].

    """
    expected = model.state_dict()
    # BatchNorm fills in a missing ``num_batches_tracked`` itself (older checkpoints and some hub files lack it).
    missing = [key for key in expected if key not in state_dict and not key.endswith(".num_batches_tracked")]
    unexpected = [key for key in state_dict if key not in expected]
    mismatched = [
        f"{key} {tuple(value.shape)} != {tuple(expected[key].shape)}"
        for key, value in state_dict.items()
        if key in expected and value.shape != expected[key].shape
    ]
    if missing or unexpected or mismatched:
        problems = []
        if missing:
            problems.append(f"missing keys {_shorten(missing)}")
        if unexpected:
            problems.append(f"unexpected keys {_shorten(unexpected)}")
        if mismatched:
            problems.append(f"shape mismatches {_shorten(mismatched)}")
        msg = f"Weights from {source} do not fit {type(model).__name__}: " + "; ".join(problems) + "."
        raise ValueError(msg)
    model.load_state_dict(state_dict, strict=True)


def load_weights_file(model: nn.Module, path: str | Path) -> str:
    """Load a local weights file (timm, torchvision or EfficientNet-PyTorch layout) strictly into ``model``.

    Args:
        model: The model to load into.
        path: The weights file (see :func:`read_state_dict`).

    Returns:
        ``"file <path>"``, with `` (EfficientNet-PyTorch layout)`` appended when the keys were renamed.

    Raises:
        FileNotFoundError: If ``path`` is not a file.
        ValueError: If the file is not a state dict or its weights do not fit ``model`` (the message names the file).

    Example:
        >>> import timm
        >>> load_weights_file(timm.create_model("resnet18"), "/no/such/file.pth")
        Traceback (most recent call last):
        ...
        FileNotFoundError: Pretrained weights file not found: /no/such/file.pth

    """
    path = Path(path).expanduser()
    state_dict = read_state_dict(path)
    layout = ""
    if is_efficientnet_pytorch_layout(state_dict):
        try:
            state_dict = convert_efficientnet_pytorch_state_dict(state_dict, model)
        except ValueError as error:
            msg = f"Weights file {path} (EfficientNet-PyTorch layout) does not fit the model: {error}"
            raise ValueError(msg) from error
        layout = " (EfficientNet-PyTorch layout)"
    load_state_dict_strict(model, state_dict, f"file {path}")
    return f"file {path}{layout}"
