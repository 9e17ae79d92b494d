# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""Register ``GaussFT`` with anomalib when ``anomalib.models`` is imported.

anomalib 2.7 has no plugin entry points: ``anomalib train --model GaussFT`` resolves a bare name only among
``AnomalibModule`` subclasses that are already imported, and ``anomalib.models.get_model`` (used by
``anomalib benchmark``) looks the name up as an attribute of ``anomalib.models``. This module is installed at the
top level of site-packages (as ``_anomalib_gaussft_registration``) and called from a ``.pth`` file at interpreter
start. It imports nothing heavy: it only adds a ``sys.meta_path`` finder that waits for ``anomalib.models`` to be
imported, lets it execute, then imports :mod:`anomalib_gaussft` and sets ``anomalib.models.GaussFT``.

It never breaks the interpreter nor the import of ``anomalib.models``: a failure to register (e.g. a broken
install of this package or of one of its dependencies) is caught and reported as a ``RuntimeWarning`` that names the
cause, instead of surfacing later as "model GaussFT not found". ``ANOMALIB_GAUSSFT_DEBUG=1`` also prints the
traceback on stderr. ``ANOMALIB_GAUSSFT_NO_REGISTER=1`` turns the hook off.

"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import logging
import os
import sys
import traceback
import warnings
from types import ModuleType

logger = logging.getLogger("anomalib_gaussft.registration")

TARGET_MODULE = "anomalib.models"


PLUGIN_MODULE = "anomalib_gaussft.model.lightning_model"


def _being_imported(name: str) -> bool:
    """Whether module ``name`` is executing right now (in ``sys.modules``, its ``GaussFT`` not yet defined).

    That happens when the plugin is imported first: its own import of anomalib executes ``anomalib.models`` (and so
    this hook) half-way through the plugin's module.
    """
    module = sys.modules.get(name)
    return module is not None and not hasattr(module, "GaussFT")


def register(models_module: ModuleType) -> None:
    """Import the plugin and expose its model classes as attributes of ``anomalib.models``.

    If the plugin's module is itself being imported (it imported anomalib, which executed ``anomalib.models``), the
    class does not exist yet: ``GaussFT`` is then served by a module ``__getattr__`` on ``anomalib.models`` (PEP 562),
    which imports it on first access, by when the plugin's import has finished.

    Args:
        models_module: The executed ``anomalib.models`` module.
    """
    exported = getattr(models_module, "__all__", None)
    if isinstance(exported, list) and "GaussFT" not in exported:
        exported.append("GaussFT")
    if _being_imported(PLUGIN_MODULE):
        fallback = getattr(models_module, "__getattr__", None)

        def __getattr__(name: str) -> object:  # noqa: N807 - the PEP 562 hook
            if name == "GaussFT":
                from anomalib_gaussft.model.lightning_model import GaussFT

                models_module.GaussFT = GaussFT
                return GaussFT
            if fallback is not None:
                return fallback(name)
            msg = f"module {models_module.__name__!r} has no attribute {name!r}"
            raise AttributeError(msg)

        models_module.__getattr__ = __getattr__
        return
    from anomalib_gaussft.model.lightning_model import GaussFT

    models_module.GaussFT = GaussFT


def _report(exc: BaseException) -> None:
    """Warn that registration failed, naming the cause; never raise (not even with ``-W error``)."""
    message = (
        f"anomalib-gaussft: could not register GaussFT with anomalib.models ({type(exc).__name__}: {exc}); "
        "`--model GaussFT` and get_model('GaussFT') will not find it. "
        "Set ANOMALIB_GAUSSFT_NO_REGISTER=1 to turn the hook off."
    )
    logger.debug(message, exc_info=exc)
    try:
        if os.environ.get("ANOMALIB_GAUSSFT_DEBUG"):
            traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
        warnings.warn(message, RuntimeWarning, stacklevel=2)
    except Exception:  # warnings turned into errors: say it on stderr instead of failing the import
        try:
            print(f"warning: {message}", file=sys.stderr)
        except Exception:  # no usable stderr: nothing left to report to
            logger.debug("could not report the registration failure", exc_info=True)


def _register_safely(models_module: ModuleType) -> None:
    """Call :func:`register`, reporting any failure with :func:`_report` instead of raising it."""
    try:
        register(models_module)
    except Exception as exc:
        _report(exc)


class _RegisteringLoader(importlib.abc.Loader):
    """Wrap the real loader of ``anomalib.models``; register the plugin right after the module executes."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)  # failures of anomalib itself propagate unchanged
        _register_safely(module)

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
            _register_safely(sys.modules[TARGET_MODULE])
            return
        if not any(isinstance(finder, _AnomalibModelsFinder) for finder in sys.meta_path):
            sys.meta_path.insert(0, _AnomalibModelsFinder())
    except Exception as exc:
        _report(exc)
