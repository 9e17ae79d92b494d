# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""Trainable multi-level feature extractor over a timm backbone.

The paper family (Rippel et al. 2020, 2021) reads features at every block level of an EfficientNet: the stem,
each of the seven block stages and the conv head. timm's ``features_only`` wrapper exposes only the stride
changes, so for the EfficientNet family (any timm model with ``conv_stem``, ``bn1``, ``blocks``, ``conv_head``,
``bn2``) this module runs the trunk stage by stage and names the levels ``stem``, ``blocks.0`` ... ``blocks.N``,
``head``. Any other timm CNN is supported through ``forward_intermediates``, with level names taken from
``feature_info`` (e.g. ``act1``, ``layer1`` ... ``layer4`` for ResNets).

Unlike anomalib's ``TimmFeatureExtractor(requires_grad=False)`` the backbone stays trainable, the modules after
the deepest requested level are dropped (no wasted compute, smaller exports), and weights come from
:mod:`anomalib_gaussft.weights` (local file, bundled packages or the hub cache) rather than a download.

Example:
    >>> import torch
    >>> extractor = FeatureExtractor("tf_efficientnet_lite0", layers=["blocks.2", "head"], pretrained=False)
    >>> [f.shape[1] for f in extractor(torch.rand(1, 3, 64, 64))]
    [40, 1280]
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Sequence
from typing import NamedTuple

import timm
import torch
from torch import nn

from anomalib_gaussft.weights import load_pretrained_weights

logger = logging.getLogger(__name__)

__all__ = ["FeatureExtractor", "PretrainedConfig", "available_levels", "backbone_levels", "pretrained_config"]

_EFFICIENTNET_PARTS = ("conv_stem", "bn1", "blocks", "conv_head", "bn2")


def _is_efficientnet_like(model: nn.Module) -> bool:
    return all(hasattr(model, part) for part in _EFFICIENTNET_PARTS) and isinstance(model.blocks, nn.Sequential)


class PretrainedConfig(NamedTuple):
    """What a backbone was pretrained with: input ``(height, width)`` and per-channel normalisation."""

    input_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]


def pretrained_config(backbone: str) -> PretrainedConfig:
    """The input size and normalisation of ``backbone``'s pretrained weights (timm's pretrained config).

    Unknown names get ImageNet's statistics at 224 px.

    Example:
        >>> pretrained_config("tf_efficientnet_lite0")
        PretrainedConfig(input_size=(224, 224), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
        >>> pretrained_config("tf_efficientnet_b4.aa_in1k").input_size
        (380, 380)
    """
    config = timm.models.get_pretrained_cfg(backbone)
    if config is None:
        return PretrainedConfig((224, 224), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    height, width = config.input_size[-2:]
    return PretrainedConfig((int(height), int(width)), tuple(config.mean), tuple(config.std))


def _create_timm_model(backbone: str) -> nn.Module:
    try:
        return timm.create_model(backbone, pretrained=False)
    except RuntimeError as exc:  # timm: "Unknown model (name)", "Invalid pretrained tag (tag) for name."
        base = backbone.split(".")[0]
        if "Invalid pretrained tag" in str(exc):
            tags = timm.list_pretrained(f"{base}.*")
            msg = f"Unknown pretrained tag in backbone {backbone!r} (setting `backbone`); timm has: {', '.join(tags)}."
            raise ValueError(msg) from exc
        if "Unknown model" not in str(exc):
            raise
        suggestions = difflib.get_close_matches(base, timm.list_models(), n=8, cutoff=0.6)
        msg = f"Unknown backbone {backbone!r}: timm has no such model (setting `backbone`)."
        if suggestions:
            msg += f" Similar names: {', '.join(suggestions)}."
        raise ValueError(msg) from exc


def available_levels(model: nn.Module) -> list[str]:
    """Names of the feature levels a timm model offers, shallow to deep.

    Args:
        model: A timm model (with its classifier).

    Returns:
        Level names, e.g. ``["stem", "blocks.0", ..., "blocks.6", "head"]`` for EfficientNets.
    """
    if _is_efficientnet_like(model):
        return ["stem", *[f"blocks.{i}" for i in range(len(model.blocks))], "head"]
    return [info["module"] for info in model.feature_info]


def backbone_levels(backbone: str) -> list[str]:
    """Names of the feature levels of a timm backbone, without allocating or loading its weights.

    Example:
        >>> backbone_levels("resnet18")
        ['act1', 'layer1', 'layer2', 'layer3', 'layer4']
    """
    with torch.device("meta"):
        return available_levels(_create_timm_model(backbone))


class FeatureExtractor(nn.Module):
    """Run a timm backbone and return the feature maps of the requested levels, shallow to deep.

    Args:
        backbone: timm model name, optionally with a pretrained tag (``tf_efficientnet_b4.aa_in1k``).
        layers: Level names to return (see :func:`available_levels`); ``None`` returns every level.
        pretrained: Load ImageNet weights through :func:`anomalib_gaussft.weights.load_pretrained_weights`.
        weights_path: Local weights file to load instead of the bundled or cached weights.
        channels_last: Keep the weights and run the images in the channels-last memory format, which oneDNN's
            CPU convolutions (and cuDNN's) run faster: about 1.5x for EfficientNet-Lite0's forward and backward
            passes on one CPU core (``docs/studies/loss_and_fit_time.md``). The outputs are the same up to
            float rounding; exports are unaffected.

    Attributes:
        layers: The returned level names, in forward order.
        channels: Channels of each returned level.
        strides: Down-sampling factor of each returned level.
        mean: Normalisation mean the backbone was trained with (from timm's pretrained config).
        std: Normalisation standard deviation the backbone was trained with.
        input_size: ``(height, width)`` the backbone was pretrained at (timm's pretrained config; 224 if unknown).
        weights_source: Where the pretrained weights came from (``"random initialisation"`` when not pretrained).
    """

    def __init__(
        self,
        backbone: str,
        layers: Sequence[str] | None = None,
        pretrained: bool = True,
        weights_path: str | None = None,
        channels_last: bool = True,
    ) -> None:
        super().__init__()
        model = _create_timm_model(backbone)
        self.channels_last = channels_last
        self.backbone = backbone
        self.weights_source = "random initialisation"
        if pretrained or weights_path:
            self.weights_source = load_pretrained_weights(model, backbone, weights_path)
            logger.info("Loaded %s weights from %s.", backbone, self.weights_source)
        self.input_size, self.mean, self.std = pretrained_config(backbone)

        levels = available_levels(model)
        requested = list(levels if layers is None else layers)
        unknown = [name for name in requested if name not in levels]
        if unknown or not requested:
            msg = (
                f"Unknown feature level(s) {unknown} for backbone {backbone!r} (setting `layers`). Available: {levels}."
            )
            raise ValueError(msg)
        self.layers = sorted(set(requested), key=levels.index)
        self._efficientnet = _is_efficientnet_like(model)
        deepest = levels.index(self.layers[-1])
        if self._efficientnet:
            self.conv_stem, self.bn1 = model.conv_stem, model.bn1
            n_blocks = min(deepest, len(model.blocks))  # level i >= 1 is blocks.(i-1)
            self.blocks = nn.Sequential(*list(model.blocks.children())[:n_blocks])
            if self.layers[-1] == "head":
                self.conv_head, self.bn2 = model.conv_head, model.bn2
        else:
            self._indices = [levels.index(name) for name in self.layers]
            model.prune_intermediate_layers(self._indices, prune_norm=True, prune_head=True)
            self.model = model
        if channels_last:
            self.to(memory_format=torch.channels_last)
        self.train(False)
        with torch.no_grad():
            probe = self(torch.zeros(1, 3, 64, 64))
        self.channels = [int(f.shape[1]) for f in probe]
        self.strides = [64 // int(f.shape[-1]) for f in probe]

    def freeze_before(self, level: str) -> list[str]:
        """Keep the parameters that run before ``level`` at their current (pretrained) weights: no gradients.

        Fine-tuning then trains ``level`` and what follows it, and the backward pass stops at ``level``'s input.

        Args:
            level: A level name of :func:`available_levels` (for instance the shallowest map layer).

        Returns:
            Names of the parameters frozen, in forward order.

        Raises:
            ValueError: If the extractor does not return ``level`` (naming the setting ``map_layers``).

        Example:
            >>> extractor = FeatureExtractor("resnet18", layers=["layer2", "layer3"], pretrained=False)
            >>> frozen = extractor.freeze_before("layer2")
            >>> frozen[0], frozen[-1], any(name.startswith("model.layer2") for name in frozen)
            ('model.conv1.weight', 'model.layer1.1.bn2.bias', False)
        """
        if level not in self.layers:
            msg = f"Feature level {level!r} is not one this extractor returns (setting `map_layers`): {self.layers}."
            raise ValueError(msg)
        if self._efficientnet:
            target = {"stem": "conv_stem", "head": "conv_head"}.get(level, level)
        else:
            target = f"model.{level}"
        before: dict[str, nn.Parameter] = {}
        for name, module in self.named_modules():  # registration order: forward order for timm's CNNs
            if name == target:
                break
            before.update({f"{name}.{key}": parameter for key, parameter in module.named_parameters(recurse=False)})
        else:  # never freeze everything because the level's module has another name than expected
            msg = f"Feature level {level!r} of {self.backbone!r} has no module {target!r} to freeze the levels before."
            raise ValueError(msg)
        for parameter in before.values():
            parameter.requires_grad_(False)
        return list(before)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps of the requested levels for a batch of normalised images ``(N, 3, H, W)``."""
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        if not self._efficientnet:
            return list(self.model.forward_intermediates(images, indices=self._indices, intermediates_only=True))
        features: list[torch.Tensor] = []
        x = self.bn1(self.conv_stem(images))
        if "stem" in self.layers:
            features.append(x)
        for index, block in enumerate(self.blocks):
            x = block(x)
            if f"blocks.{index}" in self.layers:
                features.append(x)
        if "head" in self.layers:
            features.append(self.bn2(self.conv_head(x)))
        return features
