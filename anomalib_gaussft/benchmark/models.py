# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""The compared models, built alike: GaussFT, PaDiM and PatchCore on one backbone, one pre-processing, one evaluator.

PaDiM and PatchCore use the same backbone as GaussFT (EfficientNet-Lite0 by default: PaDiM on ``blocks.1``,
``blocks.2``, ``blocks.4`` with 100 random feature dimensions, PatchCore on ``blocks.2`` and ``blocks.4``, i.e. the
strides 4/8/16 and 8/16 of their papers' ResNet layers; :func:`baseline_settings`) and GaussFT's pre-processor
(resize to the input size and the backbone's own normalisation). Their backbones load pretrained weights through
timm's Hugging Face hub cache, which :func:`prepared_weights` fills offline from the bundled weights. The
benchmark and ``tools/deployment_benchmark.py`` build their models here.

Example:
    >>> model = build_model("Padim", "tf_efficientnet_lite0", 64, pretrained=False)
    >>> type(model).__name__, model.model.layers
    ('Padim', ['blocks.1', 'blocks.2', 'blocks.4'])
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from anomalib.metrics import Evaluator
    from anomalib.models.components import AnomalibModule

__all__ = ["MODELS", "MODEL_CHOICES", "baseline_settings", "build_model", "offline_hub_cache", "prepared_weights"]

#: Models compared by default, in the order they run.
MODELS = ("GaussFT", "Padim", "Patchcore")
#: Every model the benchmark can run: :data:`MODELS` plus ``GaussFT-fixed``, the same GaussFT network with fixed
#: ImageNet features (``fine_tune=False``: the fixed-feature Gaussian AD of Rippel et al. 2020), the ablation that
#: shows what fine-tuning adds.
MODEL_CHOICES = (*MODELS, "GaussFT-fixed")


def baseline_settings(backbone: str) -> dict[str, dict[str, Any]]:
    """PaDiM's and PatchCore's layers (and PaDiM's ``n_features``) for ``backbone``.

    EfficientNets: PaDiM on ``blocks.1``, ``blocks.2``, ``blocks.4`` (strides 4, 8, 16 like ResNet ``layer1-3`` in
    the PaDiM paper) keeping 100 random dimensions (at most all of them); PatchCore on ``blocks.2`` and ``blocks.4``
    (strides 8 and 16 like ``layer2-3`` in the PatchCore paper). Other backbones: anomalib's defaults.

    Args:
        backbone: timm model name.

    Returns:
        ``{"Padim": {...}, "Patchcore": {...}}`` keyword arguments.

    Raises:
        ValueError: If the backbone lacks one of these levels (naming the setting ``--backbone``).

    Example:
        >>> baseline_settings("tf_efficientnet_lite0")["Patchcore"]
        {'layers': ['blocks.2', 'blocks.4']}
    """
    import timm
    import torch

    with torch.device("meta"):
        info = timm.create_model(backbone, pretrained=False).feature_info
    channels = {entry["module"]: int(entry["num_chs"]) for entry in info}
    if "blocks.4" in channels:
        padim_layers, patchcore_layers = ["blocks.1", "blocks.2", "blocks.4"], ["blocks.2", "blocks.4"]
    else:
        padim_layers, patchcore_layers = ["layer1", "layer2", "layer3"], ["layer2", "layer3"]
    missing = [name for name in {*padim_layers, *patchcore_layers} if name not in channels]
    if missing:
        msg = f"Backbone {backbone!r} has no feature level(s) {missing} for PaDiM/PatchCore (setting `--backbone`)."
        raise ValueError(msg)
    n_features = None
    if backbone not in {"resnet18", "wide_resnet50_2"}:  # anomalib has defaults only for these two
        n_features = min(100, sum(channels[name] for name in padim_layers))
    return {"Padim": {"layers": padim_layers, "n_features": n_features}, "Patchcore": {"layers": patchcore_layers}}


def _evaluator() -> Evaluator:
    """The same test metrics for every model: anomalib's defaults plus pixel AUPRO."""
    from anomalib.metrics import AUPRO, AUROC, Evaluator, F1Score

    return Evaluator(
        test_metrics=[
            AUROC(fields=["pred_score", "gt_label"], prefix="image_"),
            F1Score(fields=["pred_label", "gt_label"], prefix="image_"),
            AUROC(fields=["anomaly_map", "gt_mask"], prefix="pixel_", strict=False),
            F1Score(fields=["pred_mask", "gt_mask"], prefix="pixel_", strict=False),
            AUPRO(fields=["anomaly_map", "gt_mask"], prefix="pixel_", strict=False),
        ]
    )


def build_model(name: str, backbone: str, image_size: int | tuple[int, int], pretrained: bool) -> AnomalibModule:
    """One of :data:`MODEL_CHOICES` with the shared backbone, pre-processing and evaluator.

    Args:
        name: ``"GaussFT"``, ``"GaussFT-fixed"``, ``"Padim"`` or ``"Patchcore"``.
        backbone: timm backbone of every model.
        image_size: Input size ``(height, width)``, or one side of a square.
        pretrained: ImageNet weights (GaussFT through :mod:`anomalib_gaussft.weights`, the others through timm).

    Returns:
        The anomalib module, not yet trained.

    Raises:
        ValueError: For an unknown model name (naming the setting ``--models``).

    Example:
        >>> build_model("GaussFT-fixed", "tf_efficientnet_lite0", 64, pretrained=False).fine_tune
        False
    """
    from anomalib.models import Padim, Patchcore

    from anomalib_gaussft.model.lightning_model import GaussFT

    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    common: dict[str, Any] = {"evaluator": _evaluator(), "visualizer": False}
    if name in {"GaussFT", "GaussFT-fixed"}:
        return GaussFT(
            backbone=backbone, image_size=size, pretrained=pretrained, fallback_backbone=None,
            fine_tune=name == "GaussFT", **common,
        )  # fmt: skip
    common["pre_processor"] = GaussFT.configure_pre_processor(size, backbone)
    settings = baseline_settings(backbone)
    if name == "Padim":
        return Padim(backbone=backbone, pre_trained=pretrained, **settings["Padim"], **common)
    if name == "Patchcore":
        return Patchcore(backbone=backbone, pre_trained=pretrained, **settings["Patchcore"], **common)
    msg = f"Unknown model {name!r} (setting `--models`); choose from {MODEL_CHOICES}."
    raise ValueError(msg)


@contextmanager
def offline_hub_cache(cache: Path) -> Iterator[Path]:
    """Point huggingface_hub (imported or not) at ``cache``, offline, inside the block; restore it afterwards.

    Example:
        >>> import os
        >>> with offline_hub_cache(Path("/tmp/hub_cache")):
        ...     os.environ["HF_HUB_CACHE"], os.environ["HF_HUB_OFFLINE"]
        ('/tmp/hub_cache', '1')
        >>> os.environ.get("HF_HUB_CACHE") == "/tmp/hub_cache"
        False
    """
    from huggingface_hub import constants  # imported before the change: its defaults are read now

    saved_env = {key: os.environ.get(key) for key in ("HF_HUB_CACHE", "HF_HUB_OFFLINE")}
    saved_constants = (constants.HF_HUB_CACHE, constants.HF_HUB_OFFLINE)
    os.environ["HF_HUB_CACHE"] = str(cache)
    os.environ["HF_HUB_OFFLINE"] = "1"
    constants.HF_HUB_CACHE, constants.HF_HUB_OFFLINE = str(cache), True  # read at import time: patch them too
    try:
        yield cache
    finally:
        constants.HF_HUB_CACHE, constants.HF_HUB_OFFLINE = saved_constants
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def prepared_weights(backbone: str, cache: Path, hub_cache: Path | None = None) -> Iterator[None]:
    """Inside the block, PaDiM's and PatchCore's ``timm.create_model(pretrained=True)`` find the weights offline.

    For backbones with bundled weights these are imported into ``hub_cache`` (default: ``cache``) and
    huggingface_hub is pointed at it (:func:`offline_hub_cache`); for others only an explicit ``hub_cache`` is used.

    Args:
        backbone: timm backbone name.
        cache: Default hub cache folder for the bundled weights.
        hub_cache: An explicit hub cache (setting ``--hub-cache``), used instead of ``cache``.
    """
    from anomalib_gaussft.weights import bundled_weights_available, import_weights_to_hub_cache

    if bundled_weights_available(backbone):
        folder = (hub_cache or cache).resolve()
        with offline_hub_cache(folder):
            import_weights_to_hub_cache(backbone, cache_dir=folder)
            yield
    elif hub_cache is not None:
        with offline_hub_cache(hub_cache.resolve()):
            yield
    else:
        yield
