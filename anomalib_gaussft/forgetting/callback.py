# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""Forgetting detection: the paper's validation scheme with pseudo-anomalies, as a Lightning callback.

Fine-tuning on normal images only drifts towards catastrophic forgetting: the features collapse towards the
Gaussian's mean and lose what separates anomalies. Rippel et al. (2021) detect the onset with pseudo-anomalies made
by augmentations used for vicinal risk minimisation (Mixup, CutMix, CutPaste, ...). This callback:

1. at ``setup("fit")`` holds out a fraction of the normal training images (fixed by ``seed``) and makes the
   pseudo-anomalies from them once, so that every epoch scores the same images. Training runs on a copy of the
   datamodule's training set without them; the user's own set is put back, unchanged, when fitting ends (or fails);
2. after every validation epoch (the model's Gaussian is already re-estimated then) scores the held-out normals and
   the pseudo-anomalies with the model in eval mode and logs the rank-based AUROC overall (``val_pseudo_AUROC``)
   and per augmentation (``val_pseudo_AUROC_<name>``);
3. when the AUROC has not risen more than ``min_delta`` above its best for ``patience`` epochs (it falls: forgetting;
   or it stays flat: fine-tuning no longer helps), stops training, and at
   the end of training restores the full state of the best epoch (backbone weights, Gaussian buffers,
   post-processor thresholds) before the last checkpoint is written;
4. then gives the images it held out of the training set back: a module with ``refit_with_held_out(images)``
   (:class:`~anomalib_gaussft.GaussFT`) fits its final Gaussians on them too, so detecting forgetting costs the
   final model no training images.

The stop decision is :class:`~anomalib_gaussft.forgetting.stop_rule.StopRule`'s; under DDP every rank takes it on
rank 0's pseudo-AUROC (broadcast), so all ranks stop and restore together. The state that a resumed run needs (curves,
the rule's state and, unless the checkpoint's own weights are the best epoch's, the best epoch's full state) goes
into checkpoints with :meth:`state_dict`; the held-out images and pseudo-anomalies are made again from ``seed`` at
``setup``. A pickled copy (anomalib's Torch export pickles the module, and with it this callback) holds the settings
and the curves only: no image, no copy of the weights.

It works with any anomalib model whose eval-mode ``model`` returns an ``InferenceBatch`` with ``pred_score``.

Example:
    >>> from anomalib_gaussft.forgetting import ForgettingDetection
    >>> callback = ForgettingDetection(augmentations=["cutpaste", "mixup"], patience=2)
    >>> list(callback.augmentations), callback.stop_rule.patience, callback.best_epoch is None
    (['cutpaste', 'mixup'], 2, True)

    From the command line: ``--model.forgetting_detection false`` removes it from GaussFT; with another model add
    it with ``--trainer.callbacks anomalib_gaussft.forgetting.ForgettingDetection``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.trainer.states import TrainerFn

from anomalib_gaussft.evaluation import rank_auroc, score_images
from anomalib_gaussft.forgetting.holdout import choose_holdout
from anomalib_gaussft.forgetting.pseudo_anomalies import PSEUDO_ANOMALIES, build_pseudo_anomalies
from anomalib_gaussft.forgetting.stop_rule import DEFAULT_PATIENCE, StopRule

logger = logging.getLogger(__name__)

__all__ = ["ForgettingDetection"]


class ForgettingDetection(Callback):
    """Detect the onset of catastrophic forgetting with pseudo-anomalies; stop and restore the best epoch.

    Args:
        augmentations: Names of the pseudo-anomaly generators (see
            :data:`~anomalib_gaussft.forgetting.pseudo_anomalies.PSEUDO_ANOMALIES`).
        holdout_fraction: Fraction of the normal training images held out for validation.
        min_holdout: Minimum number of held-out images (the fraction is raised to reach it).
        max_holdout: Maximum number of held-out images.
        use_validation_normals: Take the held-out normals from the normal images of anomalib's validation set first,
            when that set is already kept out of training and holds no test image (``val_split_mode`` ``from_train``,
            ``synthetic`` or ``from_dir``), and hold out only the rest from the training set. So fewer training
            images are lost to the Gaussians. Never from test images (``same_as_test``, ``from_test``).
        patience: Number of validation epochs the AUROC may go without improving on its best before stopping.
        min_delta: Smallest rise over the best AUROC that counts as an improvement.
        restore_best: Restore the best epoch's state when training ends (by this callback or otherwise).
        return_held_out: When training ends, pass the images held out of the training set to the module's
            ``refit_with_held_out(images)``, if it has one, so its final fit uses every training image.
        seed: Seed of the hold-out split and of the pseudo-anomalies.
        batch_size: Batch size for scoring.

    Attributes:
        history: Overall pseudo-AUROC of every validation epoch, in order.
        per_augmentation_history: Pseudo-AUROC of every validation epoch for each augmentation alone.
        stop_rule: The stop rule fed with ``history``; ``best_score``, ``best_epoch`` (the latest one among ties),
            ``wait`` and ``stopped_epoch`` (the epoch at which forgetting was detected, or ``None``) read it.
        holdout_paths: Normal image files the pseudo-AUROC is computed on (validation normals, then training images
            held out of the training set).
        removed_from_training: Those of ``holdout_paths`` that the training loop does not see (left out of its copy of
            the training set; the datamodule's own set keeps them).
    """

    monitor = "val_pseudo_AUROC"

    def __init__(
        self,
        augmentations: Sequence[str] = tuple(PSEUDO_ANOMALIES),
        holdout_fraction: float = 0.1,
        min_holdout: int = 8,
        max_holdout: int = 32,
        use_validation_normals: bool = True,
        patience: int = DEFAULT_PATIENCE,
        min_delta: float = 0.0,
        restore_best: bool = True,
        return_held_out: bool = True,
        seed: int = 0,
        batch_size: int = 16,
    ) -> None:
        super().__init__()
        if not 0 < holdout_fraction < 1:
            msg = f"holdout_fraction must be in (0, 1), got {holdout_fraction}."
            raise ValueError(msg)
        self.stop_rule = StopRule(patience, min_delta)
        self.augmentation_names = list(augmentations)
        self.augmentations = build_pseudo_anomalies(self.augmentation_names)
        self.holdout_fraction = holdout_fraction
        self.min_holdout = min_holdout
        self.max_holdout = max_holdout
        self.use_validation_normals = use_validation_normals
        self.restore_best = restore_best
        self.return_held_out = return_held_out
        self.seed = seed
        self.batch_size = batch_size

        # Saved in checkpoints (see state_dict): the curves, the stop rule and the best epoch's full state.
        self.history: list[float] = []
        self.per_augmentation_history: dict[str, list[float]] = {name: [] for name in self.augmentations}
        self._best_state: dict[str, torch.Tensor] | None = None
        self._last_epoch: int | None = None  # epoch of the last score in `history`
        # Whether the module's own state is now the best epoch's (then checkpoints need no second copy of it).
        self._module_is_best = False
        self._best_from_module = False  # resumed from such a checkpoint: take the best state from the module
        # Made again at setup("fit") from the data and `seed`.
        self._normal: torch.Tensor | None = None
        self._pseudo: dict[str, torch.Tensor] = {}
        self.holdout_paths: list[str] = []
        self.removed_from_training: list[str] = []
        self._user_train_data: Any = None  # the datamodule's own training set, put back when fitting ends
        self.enabled = True
        self._finished = False

    def __getstate__(self) -> dict[str, Any]:
        """The settings, curves and stop rule's state: no image, no training file and no copy of the weights.

        anomalib's ``to_torch`` pickles the whole module, and with it a callback passed as ``forgetting_detection``.
        What is left out is made again at ``setup`` from the data, or restored from a checkpoint (:meth:`state_dict`).
        """
        state = dict(self.__dict__)
        state.update(_normal=None, _best_state=None, _user_train_data=None, _pseudo={}, holdout_paths=[])
        state.update(removed_from_training=[], _module_is_best=False, _best_from_module=False)
        return state

    @property
    def patience(self) -> int:
        """See :class:`~anomalib_gaussft.forgetting.stop_rule.StopRule`."""
        return self.stop_rule.patience

    @property
    def min_delta(self) -> float:
        """See :class:`~anomalib_gaussft.forgetting.stop_rule.StopRule`."""
        return self.stop_rule.min_delta

    @property
    def best_score(self) -> float:
        """Best overall pseudo-AUROC so far (``-inf`` before the first epoch)."""
        return self.stop_rule.best_score

    @property
    def best_epoch(self) -> int | None:
        """Epoch of :attr:`best_score`, the latest one among ties; the epoch restored at the end."""
        return self.stop_rule.best_epoch

    @property
    def stopped_epoch(self) -> int | None:
        """Epoch at which forgetting was detected, or ``None``."""
        return self.stop_rule.stopped_epoch

    @property
    def wait(self) -> int:
        """Consecutive epochs the pseudo-AUROC has not improved on its best by more than ``min_delta``."""
        return self.stop_rule.wait

    # ------------------------------------------------------------------ data
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Hold out normal training images and make the pseudo-anomalies (once, at the start of fitting)."""
        if stage != "fit" or self._normal is not None:
            return
        dataset = getattr(getattr(trainer, "datamodule", None), "train_data", None)
        if dataset is None or not hasattr(dataset, "subsample"):
            logger.warning("ForgettingDetection needs an anomalib datamodule with `train_data`; it is disabled.")
            self.enabled = False
            return
        n_total = len(dataset)
        n_holdout = min(max(round(self.holdout_fraction * n_total), self.min_holdout), self.max_holdout)
        size = tuple(pl_module.input_size) if getattr(pl_module, "input_size", None) else None
        holdout = choose_holdout(trainer.datamodule, n_holdout, self.seed, self.use_validation_normals, size)
        if holdout is None:
            logger.warning(
                "ForgettingDetection is disabled: %d training images are too few to hold %d out for validation.",
                n_total,
                n_holdout,
            )
            self.enabled = False
            return
        self._normal = holdout.images
        self.removed_from_training = holdout.removed_paths
        self.holdout_paths = holdout.validation_paths + holdout.removed_paths
        if holdout.removed_paths:  # train on a copy without them; the user's set is put back when fitting ends
            self._user_train_data = dataset
            trainer.datamodule.train_data = dataset.subsample(holdout.keep, inplace=False)
        self._make_pseudo_anomalies()
        counts = (len(holdout.validation_paths), len(holdout.removed_paths), n_total, ", ".join(self._pseudo))
        logger.info(
            "ForgettingDetection: %d validation and %d of %d training images held out; pseudo-anomalies: %s.", *counts
        )

    def _make_pseudo_anomalies(self) -> None:
        """Make every pseudo-anomaly from the held-out normals, each augmentation with its own fixed seed."""
        for index, (name, augmentation) in enumerate(self.augmentations.items()):
            generator = torch.Generator().manual_seed(self.seed * 1000 + index + 1)
            self._pseudo[name], _ = augmentation(self._normal, generator)

    def holdout_scores(self, pl_module: LightningModule) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Image scores of the held-out normals and of each augmentation's pseudo-anomalies, model as it is now.

        Returns:
            ``(normal_scores, {name: pseudo_scores})``; the pseudo-anomalies of every augmentation are made from the
            held-out normals in their order.

        Raises:
            RuntimeError: If called before ``setup("fit")`` made the validation images.
        """
        if self._normal is None:
            msg = "ForgettingDetection scored before setup('fit') made the validation images."
            raise RuntimeError(msg)
        normal_scores = score_images(pl_module, self._normal, self.batch_size)
        pseudo_scores = {
            name: score_images(pl_module, images, self.batch_size) for name, images in self._pseudo.items()
        }
        return normal_scores, pseudo_scores

    def evaluate(self, pl_module: LightningModule) -> dict[str, float]:
        """Pseudo-AUROC overall and per augmentation for the model as it is now.

        Returns:
            ``{"val_pseudo_AUROC": ..., "val_pseudo_AUROC_<name>": ...}``.
        """
        normal_scores, pseudo_scores = self.holdout_scores(pl_module)
        metrics = {self.monitor: rank_auroc(normal_scores, torch.cat(list(pseudo_scores.values())))}
        for name, scores in pseudo_scores.items():
            metrics[f"{self.monitor}_{name}"] = rank_auroc(normal_scores, scores)
        return metrics

    # ------------------------------------------------------------------ hooks
    def _fitting(self, trainer: Trainer) -> bool:
        """Whether this is a validation run of fitting (not the sanity check, not ``validate``) to act on."""
        return (
            self.enabled
            and self._normal is not None
            and not trainer.sanity_checking
            and trainer.state.fn == TrainerFn.FITTING
        )

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Score the pseudo-anomalies with the re-estimated model and log the AUROCs."""
        if not self._fitting(trainer):
            return
        # One decision for all ranks: rank 0's numbers (kernels may round differently on every device).
        metrics = trainer.strategy.broadcast(self.evaluate(pl_module), src=0)
        for name, value in metrics.items():
            pl_module.log(name, value, prog_bar=name == self.monitor, logger=True)
        self.history.append(metrics[self.monitor])
        for name, values in self.per_augmentation_history.items():
            values.append(metrics[f"{self.monitor}_{name}"])
        self._last_epoch = trainer.current_epoch

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Decide once the epoch's metrics and thresholds are final: keep the best state, stop on forgetting."""
        epoch = trainer.current_epoch
        if not self._fitting(trainer) or self._last_epoch != epoch:  # no new score this epoch
            return
        stop = self.stop_rule.update(self.history[-1], epoch)
        if self.best_epoch == epoch:
            self._best_state = {key: value.detach().cpu().clone() for key, value in pl_module.state_dict().items()}
        self._module_is_best = self.best_epoch == epoch
        if stop:
            trainer.should_stop = True
            logger.info(
                "ForgettingDetection: pseudo-AUROC %.4f; no improvement on the best %.4f (epoch %d) for %d epochs: "
                "stopping at epoch %d.",
                self.history[-1],
                self.best_score,
                self.best_epoch,
                self.wait,
                epoch,
            )
        last_epoch = trainer.max_epochs is not None and trainer.max_epochs > 0 and epoch + 1 >= trainer.max_epochs
        if stop or last_epoch or trainer.should_stop:
            self._finish(pl_module)

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Resumed from a checkpoint whose own weights are the best epoch's: keep a copy of them as the best state."""
        del trainer
        if self._best_from_module:
            self._best_state = {key: value.detach().cpu().clone() for key, value in pl_module.state_dict().items()}
            self._best_from_module = False
            self._module_is_best = True

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        """From the first step after a validation on, the module's weights may no longer be the best epoch's."""
        del trainer, pl_module, batch, batch_idx
        self._module_is_best = False

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Put the datamodule's own training set back (with every image) when fitting ends."""
        del pl_module
        if stage == "fit":
            self._give_back_training_set(trainer)

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        """Put the datamodule's own training set back when fitting fails or is interrupted."""
        del pl_module, exception
        self._give_back_training_set(trainer)

    def _give_back_training_set(self, trainer: Trainer) -> None:
        if self._user_train_data is not None:
            trainer.datamodule.train_data = self._user_train_data
            self._user_train_data = None

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Finish (restore, give the held-out images back) if training ended without a final decision."""
        del trainer
        if self.enabled:
            self._finish(pl_module)

    def _finish(self, pl_module: LightningModule) -> None:
        """Once per fit: restore the best epoch's state, then give the module the images held out of training."""
        if self._finished:
            return
        self._finished = True
        if self.restore_best:
            self._restore(pl_module)
            self._module_is_best = self._best_state is not None
        n_removed = len(self.removed_from_training)
        refit = getattr(pl_module, "refit_with_held_out", None)
        if self.return_held_out and n_removed and callable(refit) and self._normal is not None:
            refit(self._normal[-n_removed:])
            logger.info("ForgettingDetection: the final fit includes the %d held-out training images.", n_removed)

    def _restore(self, pl_module: LightningModule) -> None:
        """Load the best epoch's state into ``pl_module``, unless the model is already in it."""
        if self._best_state is None:
            return
        if self.best_epoch == self._last_epoch:
            logger.info("ForgettingDetection: the last epoch (%s) is the best; nothing to restore.", self.best_epoch)
            return
        pl_module.load_state_dict(self._best_state)
        logger.info(
            "ForgettingDetection: restored epoch %d (val_pseudo_AUROC %.4f).",
            self.best_epoch,
            self.best_score,
        )

    # ------------------------------------------------------------------ resume
    def state_dict(self) -> dict[str, Any]:
        """Callback state for checkpoints: the curves, the stop rule's state and what restores the best epoch.

        A checkpoint written while the module holds the best epoch's state (after that epoch's validation, before
        the next training step: Lightning's per-epoch checkpoints) stores no second copy of it: ``best_state`` is
        ``None`` and ``best_state_is_module`` says that the checkpoint's own weights are the best epoch's. Any other
        checkpoint (a later, worse epoch; one written mid-epoch, whose weights were already trained further) stores
        the best epoch's full state, so that a resumed run can still go back to it.
        """
        return {
            "history": list(self.history),
            "per_augmentation_history": {name: list(values) for name, values in self.per_augmentation_history.items()},
            **self.stop_rule.state_dict(),
            "last_epoch": self._last_epoch,
            "best_state": None if self._module_is_best else self._best_state,
            "best_state_is_module": self._module_is_best,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the callback state from a checkpoint."""
        self.history = list(state_dict["history"])
        self.per_augmentation_history.update(state_dict.get("per_augmentation_history", {}))
        self.stop_rule.load_state_dict(state_dict)
        self._last_epoch = state_dict["last_epoch"]
        self._best_state = state_dict.get("best_state")
        self._best_from_module = bool(state_dict.get("best_state_is_module", False))  # taken at on_fit_start
        if self._best_state is None and self.best_epoch is not None and not self._best_from_module:
            logger.warning(
                "ForgettingDetection: the checkpoint holds no state of the best epoch (%d; written before it was "
                "always saved): that epoch can no longer be restored, only a better later one.",
                self.best_epoch,
            )
