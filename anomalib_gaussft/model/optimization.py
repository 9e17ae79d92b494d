# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""How GaussFT fine-tunes: Adam over the backbone, a linear warm-up, scoring-only steps and a default epoch bound.

:class:`FineTuningMixin` goes before ``AnomalibModule`` in :class:`~anomalib_gaussft.model.GaussFT`'s bases. It
reads the module's ``fine_tune``, ``lr``, ``warmup_steps``, ``pretrained_epoch`` and ``model`` and
keeps one piece of state, ``fine_tuning_steps`` (the optimiser steps that updated the weights; GaussFT saves it in
checkpoints so that a resumed warm-up continues where it stopped).

Example:
    >>> [warmup_factor(step, warmup_steps=4) for step in range(6)]  # times ``lr`` at fine-tuning step 0, 1, ...
    [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from anomalib_gaussft.model.torch_model import GaussFTModel

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_MAX_EPOCHS", "WARMUP_STEPS", "FineTuningMixin", "freeze_below_map_layers", "warmup_factor"]

#: Epochs of a fine-tuning fit whose trainer was given no limit: the pretrained epoch and two fine-tuning epochs;
#: forgetting detection keeps the best of them by pseudo-AUROC. Replayed on the 57 pseudo-AUROC curves recorded up to
#: 0.4.0 (``tools/stop_rule_replay.py``), a bound of 3 instead of 5 changed the kept epoch on 9 curves (no full
#: magnetic-tile run) and not the mean test AUROC of the 12 labelled ones; in the 0.5.0 benchmarks a fine-tuned fit
#: cost at most 6.9 fixed-feature fits (10.8 at 0.4.0; ``docs/studies/fine_tuning.md``, "The 0.5.0 epoch bound").
#: ``--trainer.max_epochs`` / ``Engine(max_epochs=...)`` set another.
DEFAULT_MAX_EPOCHS = 3
#: Fine-tuning steps over which the learning rate rises linearly to ``lr``. Adam's first steps move every parameter by
#: about ``lr`` whatever its gradient, which raised the loss of the next batch 4-7x at lr 1e-4; 12 steps keep it within
#: 1.1x (``docs/studies/loss_and_fit_time.md``).
WARMUP_STEPS = 12
#: What Lightning sets ``max_epochs`` to when neither it nor ``max_steps`` is given: read as "no limit given".
_LIGHTNING_DEFAULT_MAX_EPOCHS = 1000


def warmup_factor(step: int, warmup_steps: int) -> float:
    """The fraction of the learning rate at fine-tuning step ``step`` (from 0) of a linear warm-up (0: none)."""
    return min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0


def freeze_below_map_layers(model: GaussFTModel) -> list[str]:
    """Keep the backbone's levels before the shallowest map layer at their ImageNet weights; fine-tune the rest.

    The early levels hold generic edge and texture filters at the highest resolutions, where the backward pass costs
    most: on EfficientNet-Lite0 at 224 px, with the stem, ``blocks.0`` and ``blocks.1`` frozen, the backward passes and
    the rest of two fine-tuning epochs on magnetic tiles took 53.0 instead of 89.6 s (``docs/studies/fine_tuning.md``,
    "Cost per epoch").

    Args:
        model: The torch model, before its optimiser is built.

    Returns:
        Names of the frozen parameters.

    Example:
        >>> from anomalib_gaussft.model.torch_model import GaussFTModel
        >>> model = GaussFTModel("resnet18", layers=["layer2"], map_layers=["layer2", "layer3"], pretrained=False)
        >>> frozen = freeze_below_map_layers(model)
        >>> frozen[-1], all(p.requires_grad for p in model.feature_extractor.model.layer2.parameters())
        ('model.layer1.1.bn2.bias', True)
    """
    extractor = model.feature_extractor
    return extractor.freeze_before(min(model.map_layers, key=extractor.layers.index))


class FineTuningMixin:
    """Adam over the feature extractor, with a linear learning-rate warm-up and gradient-free scoring steps."""

    def setup(self, stage: str) -> None:
        """Bound a fine-tuning fit that was given no epoch limit to :data:`DEFAULT_MAX_EPOCHS` epochs.

        anomalib's ``Engine`` lets a model's ``trainer_arguments`` override the user's, so the bound is set here
        instead, and only where the trainer holds Lightning's own default (1000 epochs, no ``max_steps``): a limit
        the user gave (``--trainer.max_epochs``, ``-1`` for none) stands.
        """
        super().setup(stage)
        trainer = self._trainer
        if stage != "fit" or not self.fine_tune or trainer is None:
            return
        if trainer.fit_loop.max_epochs == _LIGHTNING_DEFAULT_MAX_EPOCHS and trainer.max_steps == -1:
            trainer.fit_loop.max_epochs = DEFAULT_MAX_EPOCHS
            logger.info(
                "GaussFT: no epoch limit was given; fine-tuning runs at most %d epochs (set --trainer.max_epochs).",
                DEFAULT_MAX_EPOCHS,
            )

    def configure_optimizers(self) -> torch.optim.Optimizer | None:
        """Adam over the backbone's trainable parameters (``None`` for fixed features)."""
        if not self.fine_tune:
            return None
        trainable = [p for p in self.model.feature_extractor.parameters() if p.requires_grad]
        return torch.optim.Adam(trainable, lr=self.lr)

    def _scoring_only(self, epoch: int) -> bool:
        """Whether ``epoch`` updates no weight: fixed features, or the pretrained epoch (0) of a fine-tuning fit."""
        return not self.fine_tune or (self.pretrained_epoch and epoch == 0)

    def _zero_loss(self) -> torch.Tensor:
        """Zero, with a (zero) gradient for every trainable parameter, as DDP's gradient reduction requires."""
        return torch.stack([p.sum() for p in self.parameters() if p.requires_grad]).sum() * 0.0

    def optimizer_step(self, epoch: int, batch_idx: int, optimizer: Any, optimizer_closure: Any = None) -> None:
        """Step the optimiser with the warm-up; in steps that only score, drop the zero gradients first.

        Scoring-only steps (fixed features, the pretrained epoch) make no update, no Adam state and no warm-up step.
        """
        if self._scoring_only(epoch):
            if optimizer_closure is not None:
                closure = optimizer_closure

                def drop_gradients() -> Any:
                    loss = closure()  # forward and backward: under DDP every rank takes part in the reduction
                    self.zero_grad(set_to_none=True)
                    return loss

                optimizer_closure = drop_gradients
        else:
            factor = warmup_factor(self.fine_tuning_steps, self.warmup_steps)
            for group in optimizer.param_groups:
                group["lr"] = self.lr * factor
            self.fine_tuning_steps += 1
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
