# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""Demo data: an MVTec-layout dataset made from scikit-image's CC0 images, with synthetic defects and exact masks."""
