# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""Pretrained backbone weights that load offline: local files, the bundled packages, the Hugging Face hub cache."""

from anomalib_gaussft.weights.sources import (
    BUNDLED_WEIGHTS,
    PretrainedWeightsNotFoundError,
    add_arguments,
    bundled_weights_available,
    bundled_weights_path,
    convert_efficientnet_pytorch_state_dict,
    hub_repo_id,
    import_weights_to_hub_cache,
    load_pretrained_weights,
    main,
    read_state_dict,
    run,
)

__all__ = [
    "BUNDLED_WEIGHTS",
    "PretrainedWeightsNotFoundError",
    "add_arguments",
    "bundled_weights_available",
    "bundled_weights_path",
    "convert_efficientnet_pytorch_state_dict",
    "hub_repo_id",
    "import_weights_to_hub_cache",
    "load_pretrained_weights",
    "main",
    "read_state_dict",
    "run",
]
