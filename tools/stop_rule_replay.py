# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

r"""Replay forgetting detection's stop rule on recorded pseudo-AUROC curves, for other patiences and epoch bounds.

The callback's decision depends on its pseudo-AUROC curve alone (:func:`~anomalib_gaussft.forgetting.select_epoch`),
so a recorded curve says which epoch another ``patience`` and another epoch bound would have kept and how many epochs
the fit would have run, without training again. Curves come from

* the checkpoints of ``anomalib-gaussft benchmark`` runs (``--runs``: every ``model.ckpt`` under the folders holds
  the callback's ``history``), written to ``--curves-out`` as a CSV, or
* curve CSVs with ``epoch`` and ``val_pseudo_AUROC`` columns (``--curves``: ``tools/forgetting_study.py``'s, which
  also hold the test image AUROC of every epoch, and the ``--curves-out`` files).

A curve that stopped early is replayed as far as it goes: a rule that would have run longer is marked ``cut``.

Example:
    .. code-block:: bash

        python -m tools.stop_rule_replay --curves docs/images/forgetting_curves_0.3.0.csv \
            docs/images/forgetting_curves_defaults_2seeds.csv --rules 3:8 2:8 2:5
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from anomalib_gaussft.forgetting.stop_rule import select_epoch
from tools._csv import write_rows

__all__ = ["Curve", "curves_from_checkpoints", "curves_from_csv", "main", "replay"]

Curve = dict[str, object]  # {"run": str, "scores": list[float], "test": list[float] | None}


def curves_from_checkpoints(folders: Sequence[Path]) -> list[Curve]:
    """The pseudo-AUROC curve of every GaussFT checkpoint (``v0``, the run's own) under ``folders``."""
    import torch

    curves = []
    for folder in folders:
        for path in sorted(folder.rglob("v0/weights/lightning/model.ckpt")):
            checkpoint = torch.load(path, map_location="cpu", weights_only=False)
            for name, state in checkpoint.get("callbacks", {}).items():
                if "ForgettingDetection" in name and state.get("history"):
                    parts = path.relative_to(folder).parents[5].parts  # [seed_k/]runs/GaussFT/<category>/GaussFT
                    run = "/".join([folder.name, *(part for part in parts if part not in {"runs", "GaussFT"})])
                    curves.append({"run": run, "scores": list(state["history"]), "test": None})
    return curves


def curves_from_csv(path: Path) -> list[Curve]:
    """Curves of a CSV with ``epoch`` and ``val_pseudo_AUROC`` (grouped by ``run``, or ``seed`` and ``category``)."""
    rows: dict[str, list[dict]] = defaultdict(list)
    with path.open() as handle:
        for row in csv.DictReader(handle):
            key = row.get("run") or f"{path.stem}/seed_{row.get('seed', '0')}/{row.get('category', '')}"
            rows[key].append(row)
    curves = []
    for run, entries in rows.items():
        entries.sort(key=lambda row: int(row["epoch"]))
        test = [float(row["test_image_AUROC"]) for row in entries] if "test_image_AUROC" in entries[0] else None
        curves.append({"run": run, "scores": [float(row["val_pseudo_AUROC"]) for row in entries], "test": test})
    return curves


def replay(curve: Curve, patience: int, max_epochs: int) -> dict[str, object]:
    """The epoch kept and the epochs run under ``patience`` and at most ``max_epochs`` epochs (pretrained included).

    Example:
        >>> replay({"run": "r", "scores": [0.80, 0.85, 0.84, 0.83, 0.90], "test": None}, patience=2, max_epochs=8)
        {'kept': 1, 'epochs': 4, 'cut': False, 'test_auroc': None}
        >>> replay({"run": "r", "scores": [0.80, 0.85, 0.84], "test": None}, patience=3, max_epochs=8)["cut"]
        True
    """
    scores = list(curve["scores"])[:max_epochs]
    kept, stopped = select_epoch(scores, patience)
    epochs = stopped + 1 if stopped is not None else len(scores)
    cut = stopped is None and len(scores) < max_epochs  # the recorded curve ended before this rule would have
    test = curve["test"]
    return {"kept": kept, "epochs": epochs, "cut": cut, "test_auroc": test[kept] if test else None}


def main(argv: Sequence[str] | None = None) -> int:
    """Print, per curve, the kept epoch, epochs run and (where recorded) test AUROC of every rule."""
    parser = argparse.ArgumentParser(prog="python -m tools.stop_rule_replay", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="*", type=Path, default=[], help="benchmark output folders")
    parser.add_argument("--curves", nargs="*", type=Path, default=[], help="curve CSVs")
    parser.add_argument("--curves-out", type=Path, default=None, help="write the curves read from --runs here")
    parser.add_argument("--rules", nargs="+", default=["3:8", "2:8", "2:5"], help="PATIENCE:MAX_EPOCHS pairs")
    args = parser.parse_args(argv)
    rules = [tuple(int(part) for part in rule.split(":")) for rule in args.rules]
    from_runs = curves_from_checkpoints(args.runs)
    if args.curves_out is not None:
        rows = [
            {"run": curve["run"], "epoch": epoch, "val_pseudo_AUROC": score}
            for curve in from_runs
            for epoch, score in enumerate(curve["scores"])
        ]
        write_rows(args.curves_out, rows)
    curves = from_runs + [curve for path in args.curves for curve in curves_from_csv(path)]
    if not curves:
        parser.error("no curve found: give --runs folders with GaussFT checkpoints or --curves CSVs")
    header = " | ".join(f"patience {p}, {m} epochs: kept / run (test)" for p, m in rules)
    print(f"| curve | {header} |\n|---|" + "---|" * len(rules))
    changed = 0
    per_rule: list[list[dict]] = [[] for _ in rules]
    for curve in curves:
        results = [replay(curve, p, m) for p, m in rules]
        for collected, result in zip(per_rule, results, strict=True):
            collected.append(result)
        cells = [
            f"{r['kept']} / {r['epochs']}{' cut' if r['cut'] else ''}"
            + (f" ({r['test_auroc']:.4f})" if r["test_auroc"] is not None else "")
            for r in results
        ]
        changed += len({r["kept"] for r in results}) > 1
        print(f"| {curve['run']} | " + " | ".join(cells) + " |")
    print(f"\n{len(curves)} curves; the kept epoch differs between the rules on {changed}.")
    for (patience, max_epochs), results in zip(rules, per_rule, strict=True):
        tested = [r["test_auroc"] for r in results if r["test_auroc"] is not None]
        mean_test = f", mean test image AUROC {sum(tested) / len(tested):.4f} over {len(tested)}" if tested else ""
        print(f"patience {patience}, {max_epochs} epochs: {sum(r['epochs'] for r in results)} epochs run{mean_test}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
