# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""The state dict stores the whitening matrices' lower triangles (the per-position ones in float16)."""

from __future__ import annotations

import pytest
import torch

from anomalib_gaussft.model.positional_gaussians import PositionalGaussianEstimator, PositionalGaussians
from anomalib_gaussft.model.torch_model import GaussFTModel
from anomalib_gaussft.model.triangular_storage import pack_lower, round_to_storage, unpack_lower
from tests.conftest import TINY_MODEL_KWARGS


def _lower(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).tril()


def test_float32_packing_is_exact_and_keeps_leading_dimensions() -> None:
    matrices = _lower(5, 3, 7, 7)
    values, scales = pack_lower(matrices)
    assert values.shape == (5, 3, 28)
    assert scales is None
    assert torch.equal(unpack_lower(values, scales, dim=7), matrices)


@pytest.mark.parametrize("magnitude", [1e-6, 1.0, 1e6])
def test_float16_packing_rounds_each_entry_to_2_to_the_minus_11_of_its_matrixs_largest(magnitude: float) -> None:
    """Whitening entries far outside float16's range (6e-5 to 65504) neither overflow nor vanish."""
    matrices = _lower(4, 9, 9) * magnitude
    values, scales = pack_lower(matrices, torch.float16)
    assert values.dtype == torch.float16
    restored = unpack_lower(values, scales, dim=9)
    largest = matrices.abs().amax(dim=(-2, -1), keepdim=True)
    assert ((restored - matrices).abs() <= largest * 2.0**-11).all()
    assert torch.equal(restored.triu(1), torch.zeros_like(restored))
    assert torch.equal(unpack_lower(*pack_lower(torch.zeros(2, 3, 3), torch.float16), dim=3), torch.zeros(2, 3, 3))


def test_packing_refuses_other_types_and_sizes() -> None:
    with pytest.raises(ValueError, match=r"float32 or float16, not torch\.bfloat16"):
        pack_lower(torch.eye(3), torch.bfloat16)
    with pytest.raises(ValueError, match="5 packed values do not fill the lower triangle of a 3 x 3 matrix"):
        unpack_lower(torch.zeros(5), None, dim=3)


def test_per_position_distances_move_by_about_1e_4_and_a_saved_state_loads_them_exactly() -> None:
    """The fitted module holds its whitenings rounded as stored: a loaded module scores exactly like it."""
    features = torch.randn(40, 16, 4, 5, generator=torch.Generator().manual_seed(1)) * torch.logspace(-2, 2, 16).view(
        1, 16, 1, 1
    )
    estimator = PositionalGaussianEstimator(dim=16)
    estimator.update(features)
    fit = estimator.fit()
    fitted = PositionalGaussians(dim=16)
    fitted.load_fits(fit, estimator.grid)
    unrounded = PositionalGaussians(dim=16)
    unrounded.means, unrounded.whitenings = fit.mean.float(), fit.whitening.float()
    assert round_to_storage(fit.whitening.float(), torch.float16).equal(fitted.whitenings)
    state = fitted.state_dict()
    assert state["whitenings"].dtype == torch.float16
    assert state["whitenings"].shape == (20, 136)
    loaded = PositionalGaussians(dim=16)
    loaded.load_state_dict(state)
    queries = torch.randn(8, 16, 4, 5, generator=torch.Generator().manual_seed(2)) * 3
    assert torch.equal(loaded.distance_map(queries), fitted.distance_map(queries))
    relative = (fitted.distance_map(queries) / unrounded.distance_map(queries) - 1).abs()
    assert 0 < relative.max() < 2e-3
    assert relative.median() < 5e-4


def test_a_fitted_models_state_dict_is_half_its_whitenings_and_loads_back() -> None:
    torch.manual_seed(0)
    model = GaussFTModel(**{key: value for key, value in TINY_MODEL_KWARGS.items() if key != "image_size"}).eval()
    estimators = model.new_estimators("cpu")
    model.accumulate(torch.rand(12, 3, 64, 64, generator=torch.Generator().manual_seed(3)), estimators)
    model.load_fits(estimators)
    state = model.state_dict()
    in_memory = dict(model.named_buffers())
    for key in ("gaussians.0.whitening", "local_mixture.whitenings", "positional_gaussians.whitenings"):
        dim = in_memory[key].shape[-1]
        assert state[key].shape == (*in_memory[key].shape[:-2], dim * (dim + 1) // 2), key
    assert state["positional_gaussians.whitenings"].dtype == torch.float16

    loaded = GaussFTModel(**{key: value for key, value in TINY_MODEL_KWARGS.items() if key != "image_size"}).eval()
    loaded.load_state_dict(state)
    for key, value in loaded.named_buffers():
        # the float32 triangles are exact; the float16 ones were held rounded as stored since the fit
        assert torch.equal(value, in_memory[key]), key

    full = GaussFTModel(**{key: value for key, value in TINY_MODEL_KWARGS.items() if key != "image_size"}).eval()
    unpacked = {**dict(model.named_parameters()), **in_memory}
    full.load_state_dict({key: unpacked[key] for key in state if key in unpacked})  # full matrices load as well
    assert torch.equal(full.positional_gaussians.whitenings, model.positional_gaussians.whitenings)
