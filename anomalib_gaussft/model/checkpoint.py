# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""How GaussFT's checkpoints are written and read: self-contained, and checked before anything is built from them.

:class:`CheckpointMixin` goes before ``AnomalibModule`` in :class:`~anomalib_gaussft.model.GaussFT`'s bases. Saving
rewrites the hyperparameters so that loading needs no pretrained weights and no network (the fine-tuned backbone is
in the state dict), keeps ``fine_tuning_steps`` (where a resumed warm-up continues) and stamps the checkpoint format;
loading refuses another model's checkpoint, one saved before anomalib-gaussft 0.3.0, or one with other levels or
shapes, with a message that names the file (:func:`~anomalib_gaussft.model.checks.check_checkpoint`).

Example:
    >>> from anomalib_gaussft import GaussFT
    >>> model = GaussFT(backbone="resnet18", pretrained=False, image_size=(32, 32), forgetting_detection=False)
    >>> checkpoint = {"hyper_parameters": {"pretrained": True}}
    >>> model.on_save_checkpoint(checkpoint)
    >>> checkpoint["hyper_parameters"]["pretrained"], checkpoint["gaussft_levels"]["backbone"]
    (False, 'resnet18')
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from anomalib.utils.serialization import anomalib_safe_globals

from anomalib_gaussft.model.checks import CHECKPOINT_FORMAT, check_checkpoint, read_checkpoint

__all__ = ["CheckpointMixin"]


class CheckpointMixin:
    """Checkpoint hooks of :class:`~anomalib_gaussft.model.GaussFT` (see the module docstring)."""

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Save the checkpoint so that loading it needs no pretrained weights and no network.

        The fine-tuned backbone weights are in the state dict, so the hyperparameters are rewritten to build the
        backbone without pretrained weights, under the name actually used (after a fallback).
        """
        super().on_save_checkpoint(checkpoint)
        hyper_parameters = checkpoint.setdefault("hyper_parameters", {})
        hyper_parameters.update({"backbone": self.backbone, "pretrained": False, "image_size": list(self.image_size)})
        if not isinstance(hyper_parameters.get("forgetting_detection", True), bool):
            hyper_parameters["forgetting_detection"] = True
        checkpoint["gaussft_fine_tuning_steps"] = self.fine_tuning_steps  # where a resumed warm-up continues
        checkpoint["gaussft_checkpoint_format"] = CHECKPOINT_FORMAT
        # A copy that load_from_checkpoint's overrides do not touch, for the message of a mismatch.
        checkpoint["gaussft_levels"] = {
            "backbone": self.backbone,
            "layers": list(self.model.layers),
            "map_layers": list(self.model.map_layers),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse another model's checkpoint or one with other shapes (named) before anomalib restores it."""
        ckpt_path = self._trainer.ckpt_path if self._trainer is not None else None
        check_checkpoint(checkpoint, f"Checkpoint {ckpt_path}" if ckpt_path else "The checkpoint", model=self)
        self.fine_tuning_steps = int(checkpoint.get("gaussft_fine_tuning_steps", 0))
        super().on_load_checkpoint(checkpoint)

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: str | Path, *args, **kwargs) -> Any:
        """Load a trained GaussFT (arguments as :meth:`AnomalibModule.load_from_checkpoint`).

        A local file is first read by :func:`~anomalib_gaussft.model.checks.read_checkpoint` (only its structure:
        the tensors are memory-mapped and read once, by Lightning), so that a missing or unreadable file, or another
        model's checkpoint or one saved before anomalib-gaussft 0.3.0, is refused with a message naming the file
        before its hyperparameters build a model.

        Raises:
            FileNotFoundError: If a local ``checkpoint_path`` does not exist.
            ValueError: If the file is unreadable, not a GaussFT checkpoint, or saved before anomalib-gaussft 0.3.0.
        """
        with anomalib_safe_globals(extra=cls.checkpoint_safe_globals()):
            checkpoint = read_checkpoint(checkpoint_path, weights_only=kwargs.get("weights_only", True))
        if checkpoint is not None:  # None: a URL or stream, read by Lightning alone (on_load_checkpoint checks it)
            check_checkpoint(checkpoint, f"Checkpoint {checkpoint_path}")
        del checkpoint
        return super().load_from_checkpoint(checkpoint_path, *args, **kwargs)
