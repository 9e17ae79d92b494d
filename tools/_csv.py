# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""The one CSV writer of the studies' row dictionaries."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["write_rows"]


def write_rows(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """Write ``rows`` to ``path`` (overwriting it), with the first row's keys as the header.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "rows.csv"
        >>> write_rows(path, [{"category": "brick", "auroc": 0.99}, {"category": "cat", "auroc": 0.98}])
        >>> path.read_text().splitlines()
        ['category,auroc', 'brick,0.99', 'cat,0.98']
    """
    if not rows:
        msg = f"No rows to write to {path}."
        raise ValueError(msg)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
