# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""The stop rule of forgetting detection, written once: the callback and the forgetting study both use it.

After every validation epoch the pseudo-AUROC goes to :meth:`StopRule.update`:

* a score more than ``min_delta`` above the best so far is an improvement: it resets the count;
* any other score (lower, equal, or higher by at most ``min_delta``) counts one more epoch without improvement,
  whether the curve falls (forgetting) or stays flat (fine-tuning no longer helps);
* a score at least as high as the best so far becomes the best (so the latest epoch wins ties);
* once the count reaches ``patience`` training should stop; the best epoch is the one to restore.

The best epoch is therefore always the latest epoch with the highest score seen so far. The rule depends on the
scores alone, so :func:`select_epoch` applied to a recorded curve gives exactly the epoch the callback restores.

Example:
    >>> rule = StopRule(patience=2)
    >>> [rule.update(score, epoch) for epoch, score in enumerate([0.8, 0.9, 0.85, 0.84])]
    [False, False, False, True]
    >>> rule.best_epoch, rule.best_score, rule.stopped_epoch
    (1, 0.9, 3)
    >>> select_epoch([0.8, 0.9, 0.85, 0.84], patience=2)
    (1, 3)
    >>> select_epoch([0.9, 0.9, 0.9, 0.9], patience=2)  # a plateau stops too; the latest of the ties is kept
    (2, 2)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["DEFAULT_PATIENCE", "StopRule", "select_epoch"]

#: Epochs without improvement before stopping. Replayed on 36 recorded pseudo-AUROC curves, a third epoch of patience
#: kept the same epoch on the three magnetic-tile benchmark runs, and on the 12 demo curves with test labels kept epochs
#: 0.0004 higher in test image AUROC on average, for one more fine-tuning epoch per fit
#: (``docs/studies/fine_tuning.md``, "Cost per epoch").
DEFAULT_PATIENCE = 2


class StopRule:
    """Early stopping on a score that should rise: track the best epoch and count the epochs without improvement.

    Args:
        patience: Number of epochs the score may go without improving on its best by more than ``min_delta``.
        min_delta: Smallest rise over the best score that counts as an improvement.

    Attributes:
        best_score: Highest score so far (``-inf`` before the first update).
        best_epoch: Latest epoch with ``best_score``, or ``None`` before the first update.
        wait: Consecutive epochs without improvement, up to the last update.
        stopped_epoch: Epoch of the last update that returned ``True``, or ``None``.

    Raises:
        ValueError: If ``patience`` is below 1.

    Example:
        The state goes into a checkpoint and back; the restored rule decides as if never interrupted:

        >>> rule = StopRule(patience=1)
        >>> rule.update(0.9, epoch=0)
        False
        >>> resumed = StopRule(patience=1)
        >>> resumed.load_state_dict(rule.state_dict())
        >>> resumed.update(0.8, epoch=1), resumed.best_epoch
        (True, 0)
    """

    def __init__(self, patience: int = DEFAULT_PATIENCE, min_delta: float = 0.0) -> None:
        if patience < 1:
            msg = f"patience must be at least 1, got {patience}."
            raise ValueError(msg)
        self.patience = patience
        self.min_delta = min_delta
        self.best_score = float("-inf")
        self.best_epoch: int | None = None
        self.wait = 0
        self.stopped_epoch: int | None = None

    def update(self, score: float, epoch: int) -> bool:
        """Record the score of ``epoch`` and say whether training should stop now.

        Args:
            score: The epoch's score (higher is better).
            epoch: The epoch's index; it becomes :attr:`best_epoch` if ``score`` is the best so far.

        Returns:
            ``True`` once the score has gone ``patience`` epochs without rising more than ``min_delta`` above the best.
        """
        improved = score > self.best_score + self.min_delta
        if score >= self.best_score:
            self.best_score, self.best_epoch = score, epoch
        self.wait = 0 if improved else self.wait + 1
        stop = self.wait >= self.patience
        if stop:
            self.stopped_epoch = epoch
        return stop

    def state_dict(self) -> dict[str, Any]:
        """The rule's state (not its settings): ``best_score``, ``best_epoch``, ``wait``, ``stopped_epoch``."""
        return {
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "wait": self.wait,
            "stopped_epoch": self.stopped_epoch,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the state saved by :meth:`state_dict` (other keys are ignored)."""
        self.best_score = float(state_dict["best_score"])
        self.best_epoch = state_dict["best_epoch"]
        self.wait = int(state_dict["wait"])
        self.stopped_epoch = state_dict["stopped_epoch"]


def select_epoch(
    scores: Sequence[float], patience: int = DEFAULT_PATIENCE, min_delta: float = 0.0
) -> tuple[int, int | None]:
    """Apply the stop rule to a recorded curve, as the callback would have during training.

    Args:
        scores: Score per epoch, in order from epoch 0.
        patience: See :class:`StopRule`.
        min_delta: See :class:`StopRule`.

    Returns:
        ``(best_epoch, stopped_epoch)``: the epoch the callback restores, and the epoch at which it stops training
        (``None`` when training would have run to the end of the curve).

    Raises:
        ValueError: If ``scores`` holds no comparable score (it is empty or all NaN).

    Example:
        >>> select_epoch([0.8, 0.9, 0.85, 0.84, 0.83, 0.95], patience=3)
        (1, 4)
        >>> select_epoch([0.8, 0.9, 0.92, 0.95], patience=1)
        (3, None)
    """
    rule = StopRule(patience, min_delta)
    stopped: int | None = None
    for epoch, score in enumerate(scores):
        if rule.update(score, epoch):
            stopped = epoch
            break
    if rule.best_epoch is None:
        msg = f"select_epoch needs at least one score that is not NaN, got {list(scores)!r}."
        raise ValueError(msg)
    return rule.best_epoch, stopped
