# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""GaussFT's post-processor: order-preserving normalisation and an optional false-alarm-rate threshold.

anomalib's :class:`~anomalib.post_processing.PostProcessor` maps a raw score ``s`` to
``clamp((s - t) / (max - min) + 0.5, 0, 1)`` with the threshold ``t`` and the range ``[min, max]`` of the validation
scores. Every score outside ``t +- (max - min) / 2`` becomes a tie at 0 or 1, so the AUROC anomalib reports can be far
from the ranking the model produced, and a systematic shift of the scores (another input distribution, lower
arithmetic precision at deployment) can send every image to the same value. GaussFT keeps the order instead:

``z = 2 (s - t) / (max - min)``, ``normalised = 1 - 0.5 / (1 + log(1 + z))`` above the threshold and
``0.5 / (1 + log(1 - z))`` below it

is strictly increasing, lies in ``(0, 1)``, sends the threshold to 0.5 and has the same slope at the threshold as
anomalib's map (so scores near the threshold read the same). Its tails approach 0 and 1 only like
``1 / log |z|``, so float32 keeps scores 1% apart distinct even a million validation ranges away (a
``1 / |z|`` tail such as a sigmoid's or ``z / (1 + |z|)`` would round them to the same value near 1). Labels
(``normalised > 1 - sensitivity``) and masks are unchanged at the default sensitivity. Anomaly maps get the same
map with the pixel threshold and range. The exported graphs carry it, because :meth:`PostProcessor.forward` calls
:meth:`_normalize`.

With ``target_fpr`` the image threshold is not the F1-optimal one (which needs anomalous validation images) but the
split-conformal quantile of the validation set's *normal* scores: with ``n`` held-out normal scores, the
``ceil((n + 1)(1 - target_fpr))``-th smallest. If the held-out normals and future normal images are exchangeable
(drawn from the same distribution, not used to fit the model), the probability that a new normal image is flagged
is at most ``target_fpr`` (Vovk et al. 2005; Angelopoulos and Bates 2021, "A Gentle Introduction to Conformal
Prediction", section 1): a guarantee in expectation over the draw of the held-out set. It needs
``n >= 1 / target_fpr - 1`` normal validation images.

Example:
    >>> import torch
    >>> post = GaussFTPostProcessor()
    >>> scores = torch.tensor([-50.0, 0.0, 1.0, 2.0, 3.0, 1e4])
    >>> normalised = post._normalize(scores, torch.tensor(0.0), torch.tensor(2.0), torch.tensor(1.0))
    >>> bool((normalised.diff() > 0).all()), float(normalised[2])
    (True, 0.5)
    >>> conformal_threshold(torch.arange(19.0), target_fpr=0.1)  # the 18th smallest of 19: ceil(20 * 0.9)
    tensor(17.)
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
from anomalib.data import Batch
from anomalib.post_processing import PostProcessor
from lightning.pytorch import Callback, LightningModule, Trainer
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from anomalib_gaussft.model.fitting import eval_mode

logger = logging.getLogger(__name__)

__all__ = ["GaussFTPostProcessor", "conformal_threshold", "order_preserving_normalize", "refit_on_validation"]

#: anomalib ``val_split_mode`` values whose validation images are also test images: a threshold set on them is
#: chosen on the data it is evaluated on.
_VALIDATION_IS_TEST = frozenset({"same_as_test", "from_test"})


def order_preserving_normalize(
    preds: torch.Tensor, norm_min: torch.Tensor, norm_max: torch.Tensor, threshold: torch.Tensor
) -> torch.Tensor:
    """Map raw scores strictly monotonically into ``(0, 1)``, the threshold to 0.5 (see the module docstring).

    Written without data-dependent branches, so that it exports to ONNX and OpenVINO. Degenerate ranges and missing
    statistics behave as in anomalib: a zero range gives 0, 0.5 or 1 by the side of the threshold; a missing range
    (NaN min or max, e.g. before validation) returns the raw scores; a missing threshold is the range's middle.

    Args:
        preds: Raw scores or maps, any shape.
        norm_min: Minimum of the validation scores.
        norm_max: Maximum of the validation scores.
        threshold: Raw threshold (sent to 0.5).

    Returns:
        Normalised values, same shape as ``preds``.

    Example:
        >>> order_preserving_normalize(torch.tensor([0.0, 5.0, 10.0]), torch.tensor(0.0), torch.tensor(10.0),
        ...                            torch.tensor(5.0))
        tensor([0.2953, 0.5000, 0.7047])
    """
    threshold = torch.where(torch.isnan(threshold), (norm_max + norm_min) / 2, threshold)
    value_range = norm_max - norm_min
    zero_range = value_range == 0
    safe_range = torch.where(zero_range, torch.ones_like(value_range), value_range)
    z = 2 * (preds - threshold) / safe_range
    tail = 0.5 / (1 + torch.log1p(z.abs()))  # distance of the value from 0 (below) or 1 (above the threshold)
    normalized = torch.where(z >= 0, 1 - tail, tail)
    degenerate = torch.where(preds > threshold, 1.0, torch.where(preds < threshold, 0.0, 0.5))
    normalized = torch.where(zero_range, degenerate, normalized)
    has_range = ~torch.isnan(norm_min) & ~torch.isnan(norm_max)
    return torch.where(has_range, normalized, preds)


def conformal_threshold(normal_scores: torch.Tensor, target_fpr: float) -> torch.Tensor:
    """Split-conformal threshold: the ``ceil((n + 1)(1 - target_fpr))``-th smallest of ``n`` held-out normal scores.

    A new normal score exchangeable with the held-out ones exceeds it with probability at most ``target_fpr``.

    Args:
        normal_scores: Scores of held-out normal images (any shape, flattened).
        target_fpr: The false-positive rate to stay under, in ``(0, 1)``.

    Returns:
        The threshold as a scalar tensor (label an image anomalous when its score is greater).

    Raises:
        ValueError: If ``target_fpr`` is outside ``(0, 1)`` or there are too few scores for it.

    Example:
        >>> conformal_threshold(torch.tensor([3.0, 1.0, 2.0, 5.0, 4.0]), target_fpr=0.2)
        tensor(5.)
    """
    if not 0 < target_fpr < 1:
        msg = f"target_fpr must be in (0, 1), got {target_fpr} (setting `target_fpr`)."
        raise ValueError(msg)
    scores = normal_scores.detach().flatten().sort().values
    n = scores.numel()
    rank = math.ceil((n + 1) * (1 - target_fpr) - 1e-9)  # the tolerance keeps 20 * 0.9 at 18, not 19
    if rank > n:
        needed = math.ceil(1 / target_fpr - 1)
        msg = (
            f"target_fpr={target_fpr} needs at least {needed} normal validation images, but the validation set has "
            f"{n}. Use a validation split with more normal images (e.g. `val_split_mode=synthetic` with a larger "
            "`val_split_ratio`) or a larger `target_fpr`."
        )
        raise ValueError(msg)
    return scores[rank - 1]


class _NormalScores(Metric):
    """The image scores of the normal validation images, gathered over DDP ranks."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("scores", default=[], dist_reduce_fx="cat")
        self.scores: list[torch.Tensor]

    def update(self, scores: torch.Tensor, labels: torch.Tensor) -> None:
        self.scores.append(scores.detach().flatten()[labels.flatten() == 0].float())

    def compute(self) -> torch.Tensor:
        return dim_zero_cat(self.scores) if self.scores else torch.zeros(0)


class GaussFTPostProcessor(PostProcessor):
    """anomalib's post-processor with order-preserving normalisation and an optional conformal FPR threshold.

    Args:
        target_fpr: If set, the image threshold is the split-conformal quantile of the normal validation scores that
            bounds the false-positive rate on normal images by ``target_fpr`` (see the module docstring); ``None``
            keeps anomalib's F1-adaptive threshold.
        **kwargs: Arguments of :class:`~anomalib.post_processing.PostProcessor` (sensitivities, switches).

    Example:
        >>> GaussFTPostProcessor(target_fpr=0.05).target_fpr
        0.05
    """

    def __init__(self, target_fpr: float | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if target_fpr is not None and not 0 < target_fpr < 1:
            msg = f"target_fpr must be in (0, 1) or None, got {target_fpr} (setting `target_fpr`)."
            raise ValueError(msg)
        self.target_fpr = target_fpr
        self._normal_scores = _NormalScores()

    @property
    def _checkpoint_config_keys(self) -> tuple[str, ...]:
        return (*super()._checkpoint_config_keys, "target_fpr")

    @staticmethod
    def _normalize(
        preds: torch.Tensor | None, norm_min: torch.Tensor, norm_max: torch.Tensor, threshold: torch.Tensor
    ) -> torch.Tensor | None:
        """Order-preserving normalisation (:func:`order_preserving_normalize`) instead of anomalib's clamp."""
        if preds is None:
            return preds
        return order_preserving_normalize(preds, norm_min, norm_max, threshold)

    def on_validation_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Batch, *args: Any, **kwargs: Any
    ) -> None:
        """Update anomalib's statistics; with ``target_fpr`` also keep the scores of the normal images."""
        super().on_validation_batch_end(trainer, pl_module, outputs, *args, **kwargs)
        if self.target_fpr is None or outputs.pred_score is None or outputs.gt_label is None:
            return
        self._normal_scores.update(outputs.pred_score, outputs.gt_label)

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Fit anomalib's thresholds and range; with ``target_fpr`` replace the image threshold by the conformal one."""
        super().on_validation_epoch_end(trainer, pl_module)
        if self.target_fpr is None or trainer.sanity_checking:
            return
        scores = self._normal_scores.compute() if self._normal_scores.update_called else torch.zeros(0)
        self._normal_scores.reset()
        mode = str(getattr(getattr(getattr(trainer, "datamodule", None), "val_split_mode", None), "value", ""))
        if mode in _VALIDATION_IS_TEST:
            logger.warning(
                "target_fpr: the validation set (val_split_mode=%s) holds test images, so the false-positive "
                "guarantee is not for unseen images. Use val_split_mode=synthetic or from_train.",
                mode,
            )
        self._image_threshold.copy_(conformal_threshold(scores, self.target_fpr))


@torch.no_grad()
def refit_on_validation(trainer: Trainer, pl_module: LightningModule) -> bool:
    """Fit the post-processor's thresholds and ranges again on the validation set, for the model as it is now.

    Lightning fits them in the validation epoch; a model changed after its last validation (GaussFT re-fitted on
    more normal images when training ends) needs them again. Each batch of the trainer's validation dataloaders
    (this rank's share under DDP) goes through the pre-processor, ``validation_step`` and the post-processor's
    validation hooks, as in Lightning's loop; nothing is logged and no other callback runs.

    Args:
        trainer: The trainer that fitted ``pl_module`` (its validation dataloaders are used).
        pl_module: An anomalib module with a ``post_processor`` callback.

    Returns:
        Whether the statistics were fitted (``False`` without a post-processor or validation dataloaders).

    Example:
        >>> from types import SimpleNamespace
        >>> from anomalib_gaussft import GaussFT
        >>> module = GaussFT(backbone="resnet18", pretrained=False, image_size=(32, 32), forgetting_detection=False)
        >>> refit_on_validation(SimpleNamespace(val_dataloaders=None), module)  # nothing to fit on
        False
    """
    post_processor = getattr(pl_module, "post_processor", None)
    loaders = trainer.val_dataloaders
    if not isinstance(post_processor, PostProcessor) or loaders is None:
        return False
    pre_processor = getattr(pl_module, "pre_processor", None)
    with eval_mode(pl_module):
        for loader_index, loader in enumerate(loaders if isinstance(loaders, list | tuple) else [loaders]):
            for batch_index, batch in enumerate(loader):
                batch = trainer.strategy.batch_to_device(batch, dataloader_idx=loader_index)
                if isinstance(pre_processor, Callback):
                    pre_processor.on_validation_batch_start(trainer, pl_module, batch, batch_index)
                outputs = pl_module.validation_step(batch, batch_index)
                post_processor.on_validation_batch_end(trainer, pl_module, outputs, batch, batch_index)
        post_processor.on_validation_epoch_end(trainer, pl_module)
    return True
