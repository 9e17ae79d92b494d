# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""``python -m anomalib_gaussft.cli``: the same as the ``anomalib-gaussft`` command."""

from anomalib_gaussft.cli import main

raise SystemExit(main())
