# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""Register ``GaussFT`` with anomalib when ``anomalib.models`` is imported.

anomalib 2.7 has no plugin entry points: ``anomalib train --model GaussFT`` resolves a bare name only among
``AnomalibModule`` subclasses that are already imported, and ``anomalib.models.get_model`` (used by
``anomalib benchmark``) looks the name up as an attribute of ``anomalib.models``. This module is installed at the
top level of site-packages (as ``_anomalib_gaussft_registration``) and called from a ``.pth`` file at interpreter
start. It imports nothing heavy: it only adds a ``sys.meta_path`` finder that waits for ``anomalib.models`` to be
imported, lets it execute, then imports :mod:`anomalib_gaussft` and sets ``anomalib.models.GaussFT``.

It can never break the interpreter: every failure is caught and logged at debug level (set
``ANOMALIB_GAUSSFT_DEBUG=1`` to see it on stderr). ``ANOMALIB_GAUSSFT_NO_REGISTER=1`` turns the hook off.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import logging
import os
import sys
from types import ModuleType

logger = logging.getLogger("anomalib_gaussft.registration")

TARGET_MODULE = "anomalib.models"


def register(models_module: ModuleType) -> None:
    """Import the plugin and expose its model classes as attributes of ``anomalib.models``.

    Args:
        models_module: The executed ``anomalib.models`` module.
    """
    from anomalib_gaussft.model.lightning_model import GaussFT

    models_module.GaussFT = GaussFT
    exported = getattr(models_module, "__all__", None)
    if isinstance(exported, list) and "GaussFT" not in exported:
        exported.append("GaussFT")


def _report(exc: BaseException) -> None:
    logger.debug("anomalib-gaussft registration failed", exc_info=exc)
    if os.environ.get("ANOMALIB_GAUSSFT_DEBUG"):
        print(f"anomalib-gaussft: registration failed: {exc!r}", file=sys.stderr)


class _RegisteringLoader(importlib.abc.Loader):
    """Wrap the real loader of ``anomalib.models``; register the plugin right after the module executes."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)  # failures of anomalib itself propagate unchanged
        try:
            register(module)
        except Exception as exc:
            _report(exc)

    def __getattr__(self, name: str) -> object:  # e.g. get_resource_reader, is_package
        return getattr(self._loader, name)


class _AnomalibModelsFinder(importlib.abc.MetaPathFinder):
    """A meta path finder that only reacts to ``anomalib.models`` and delegates the search itself."""

    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != TARGET_MODULE:
            return None
        try:
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(fullname, path, target)
                if spec is not None and spec.loader is not None:
                    spec.loader = _RegisteringLoader(spec.loader)
                    return spec
        except Exception as exc:
            _report(exc)
        return None


def install() -> None:
    """Install the import hook (idempotent). Called from the ``.pth`` file; never raises."""
    try:
        if os.environ.get("ANOMALIB_GAUSSFT_NO_REGISTER"):
            return
        if TARGET_MODULE in sys.modules:  # anomalib.models already imported: register now
            register(sys.modules[TARGET_MODULE])
            return
        if not any(isinstance(finder, _AnomalibModelsFinder) for finder in sys.meta_path):
            sys.meta_path.insert(0, _AnomalibModelsFinder())
    except Exception as exc:
        _report(exc)
