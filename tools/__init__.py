# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""Studies and measurements of GaussFT; not part of the wheel. Run each from the repository root with ``python -m``."""
