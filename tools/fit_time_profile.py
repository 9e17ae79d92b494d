# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""Where GaussFT's fit time goes: wall time of each stage of ``Engine.fit`` on one MVTec-layout category.

``anomalib-gaussft benchmark`` reports one fit time per model. This script splits GaussFT's into the stages that
make it up, by timing the methods that run them (wrapped for the duration of the run, then restored):

* ``fit_training_set``: the no-grad pass that fits every Gaussian (once before fine-tuning, then after every epoch),
  which contains ``k-means + mixture fit`` (the local mixture);
* ``training_step``: the forward pass and loss of each fine-tuning batch (the backward pass and the optimiser step
  run in Lightning's loop after it, and fall into ``rest``);
* ``ForgettingDetection.evaluate``: scoring the held-out normals and their pseudo-anomalies after every epoch;
* ``validation_step``: anomalib's validation (thresholds and normalisation).

The data split is the benchmark's (``val_split_mode="synthetic"``, 20 %), the model GaussFT at its defaults.
``docs/studies/loss_and_fit_time.md`` shows the numbers.

Example:
    .. code-block:: bash

        python -m tools.fit_time_profile --root datasets/demo_large --category brick --epochs 3 --threads 1
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = ["main", "profile_fit", "timed_methods"]


@contextlib.contextmanager
def timed_methods(targets: Sequence[tuple[Any, str, str]]) -> Iterator[tuple[Counter, Counter]]:
    """Wrap ``owner.name`` for every ``(owner, name, label)`` to add its wall time (and calls) under ``label``.

    Args:
        targets: Objects (classes or modules), attribute names and labels.

    Yields:
        ``(seconds, calls)`` per label; the original attributes are restored on exit.

    Example:
        >>> import math
        >>> with timed_methods([(math, "sqrt", "sqrt")]) as (seconds, calls):
        ...     _ = math.sqrt(4.0), math.sqrt(9.0)
        >>> calls["sqrt"], math.sqrt.__name__
        (2, 'sqrt')
    """
    seconds: Counter = Counter()
    calls: Counter = Counter()
    originals = [(owner, name, getattr(owner, name)) for owner, name, _ in targets]

    def wrap(function: Callable, label: str) -> Callable:
        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                seconds[label] += time.perf_counter() - start
                calls[label] += 1

        return timed

    try:
        for (owner, name, function), (_, _, label) in zip(originals, targets, strict=True):
            setattr(owner, name, wrap(function, label))
        yield seconds, calls
    finally:
        for owner, name, function in originals:
            setattr(owner, name, function)


def profile_fit(root: Path, category: str, epochs: int, **model_kwargs: Any) -> dict[str, Any]:
    """Fit GaussFT on ``root/category`` with the benchmark's data split and time its stages.

    Args:
        root: MVTec-layout dataset root.
        category: Category folder.
        epochs: ``max_epochs`` of the fit.
        **model_kwargs: Arguments of :class:`~anomalib_gaussft.GaussFT` (its defaults otherwise).

    Returns:
        ``{"total": s, "epochs": n, "stages": {label: (seconds, calls)}}``, with ``rest`` for the untimed remainder.
    """
    from anomalib.data import MVTecAD
    from anomalib.engine import Engine
    from lightning.pytorch.trainer.states import TrainerFn

    import anomalib_gaussft.model.lightning_model as lightning_model
    from anomalib_gaussft import GaussFT
    from anomalib_gaussft.forgetting import ForgettingDetection
    from anomalib_gaussft.model.local_sample import LocalVectorSample

    datamodule = MVTecAD(
        root=root, category=category, train_batch_size=16, eval_batch_size=16, num_workers=0,
        val_split_mode="synthetic", val_split_ratio=0.2, seed=0,
    )  # fmt: skip
    datamodule.setup(TrainerFn.FITTING)
    model = GaussFT(**model_kwargs)
    engine = Engine(
        accelerator="cpu", devices=1, max_epochs=epochs, logger=False, enable_model_summary=False,
        enable_progress_bar=False, default_root_dir=Path("results") / "fit_time_profile",
    )  # fmt: skip
    targets = [
        (lightning_model, "fit_training_set", "fit_training_set"),
        (LocalVectorSample, "fit", "  k-means + mixture fit"),
        (lightning_model.GaussFT, "training_step", "training_step"),
        (ForgettingDetection, "evaluate", "ForgettingDetection.evaluate"),
        (lightning_model.GaussFT, "validation_step", "validation_step"),
    ]
    with timed_methods(targets) as (seconds, calls):
        start = time.perf_counter()
        engine.fit(model, datamodule=datamodule)
        total = time.perf_counter() - start
    top_level = sum(value for label, value in seconds.items() if not label.startswith(" "))
    stages = {label: (seconds[label], calls[label]) for _, _, label in targets}
    stages["rest (backward, optimiser, Lightning)"] = (total - top_level, 0)
    return {"total": total, "epochs": int(engine.trainer.current_epoch), "stages": stages}


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: print the stages as a Markdown table.

    Args:
        argv: Arguments without the program name; ``None`` reads ``sys.argv``.

    Returns:
        The exit status (0).
    """
    parser = argparse.ArgumentParser(prog="python -m tools.fit_time_profile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, required=True, help="MVTec-layout dataset root")
    parser.add_argument("--category", required=True)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--backbone", default="tf_efficientnet_lite0")
    parser.add_argument("--image-size", type=int, default=None, help="default: the backbone's pretrained size")
    parser.add_argument("--random-weights", action="store_true", help="randomly initialised backbone (smoke tests)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    kwargs: dict[str, Any] = {"backbone": args.backbone, "pretrained": not args.random_weights}
    if args.image_size is not None:
        kwargs["image_size"] = args.image_size
    result = profile_fit(args.root, args.category, args.epochs, **kwargs)
    print(f"{args.category}: fit {result['total']:.1f} s for {result['epochs']} epochs ({args.threads} thread(s))\n")
    print("| stage | s | share | calls |\n|---|---:|---:|---:|")
    for label, (seconds, calls) in result["stages"].items():
        name = label.strip() if not label.startswith(" ") else f"... {label.strip()}"
        print(f"| {name} | {seconds:.1f} | {100 * seconds / result['total']:.0f} % | {calls or ''} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
