# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""``python -m anomalib_gaussft.benchmark``: the same as ``anomalib-gaussft benchmark``."""

from anomalib_gaussft.benchmark.command import main

raise SystemExit(main())
