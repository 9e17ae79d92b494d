# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""How the whitening matrices are saved: their lower triangle only, the per-position ones in float16.

Every whitening matrix GaussFT keeps is the inverse of a lower Cholesky factor, so it is lower triangular: its upper
triangle is zero and need not be written. :class:`LowerTriangularStorage` packs the lower triangle of the buffers a
module names when ``state_dict`` is taken (a checkpoint, ``torch.save(model.state_dict())``) and unpacks it when one
is loaded; in memory, where scoring reads them, the buffers stay full float32 matrices, so scoring and the exported
graphs are unchanged. The packing in float32 is exact. The per-position Gaussians (196 matrices at 224 px with
EfficientNet-Lite0, 18 MB in full) are also stored in float16, each matrix scaled by its largest entry: the entries
round to 2^-11 of that largest entry, and the distances change by about 1e-4 relatively
(``tests/test_triangular_storage.py``; the AUROCs are in ``docs/studies/model_size.md``). A module that stores a
buffer in float16 holds it rounded with :func:`round_to_storage` from the fit on, so a model loaded from its state dict
scores exactly like the model that saved it.

Example:
    >>> matrices = torch.linalg.inv(torch.linalg.cholesky(torch.eye(3) + 0.5))
    >>> values, scales = pack_lower(matrices)
    >>> values.shape, scales is None, torch.equal(unpack_lower(values, scales, dim=3), matrices)
    (torch.Size([6]), True, True)
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

__all__ = ["LowerTriangularStorage", "pack_lower", "round_to_storage", "unpack_lower"]

#: Suffix of the state-dict entry that holds the per-matrix scales of a buffer stored in float16.
SCALE_SUFFIX = "_scale"


def _lower_indices(dim: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    return tuple(torch.tril_indices(dim, dim, device=device))  # type: ignore[return-value]


def pack_lower(matrices: torch.Tensor, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The lower triangles of ``(..., p, p)`` matrices, row by row: ``(..., p (p + 1) / 2)`` values.

    Args:
        matrices: Lower-triangular matrices (the upper triangle is dropped unread).
        dtype: Storage type: ``torch.float32`` (exact, no scales) or ``torch.float16`` (each matrix divided by its
            largest absolute entry, which is returned as a float32 scale, so no entry overflows).

    Returns:
        ``(values, scales)``: the packed values and, for float16, the ``(...)`` scales (``None`` for float32).

    Raises:
        ValueError: If ``dtype`` is neither float32 nor float16.

    Example:
        >>> values, scales = pack_lower(torch.tensor([[2.0, 0.0], [1.0, 4.0]]), torch.float16)
        >>> values.tolist(), scales.tolist()
        ([0.5, 0.25, 1.0], 4.0)
    """
    rows, columns = _lower_indices(matrices.shape[-1], matrices.device)
    values = matrices[..., rows, columns]
    if dtype == torch.float32:
        return values.float(), None
    if dtype != torch.float16:
        msg = f"Whitening matrices are stored in float32 or float16, not {dtype}."
        raise ValueError(msg)
    scales = values.abs().amax(dim=-1).float()
    safe = torch.where(scales > 0, scales, torch.ones_like(scales))
    return (values / safe.unsqueeze(-1)).to(torch.float16), scales


def unpack_lower(values: torch.Tensor, scales: torch.Tensor | None, dim: int) -> torch.Tensor:
    """The full float32 ``(..., p, p)`` matrices from :func:`pack_lower`'s output (zeros above the diagonal).

    Raises:
        ValueError: If the number of values is not ``p (p + 1) / 2``.

    Example:
        >>> unpack_lower(torch.tensor([0.5, 0.25, 1.0]), torch.tensor(4.0), dim=2).tolist()
        [[2.0, 0.0], [1.0, 4.0]]
    """
    if values.shape[-1] != dim * (dim + 1) // 2:
        msg = f"{values.shape[-1]} packed values do not fill the lower triangle of a {dim} x {dim} matrix."
        raise ValueError(msg)
    values = values.float()
    if scales is not None:
        values = values * scales.float().unsqueeze(-1)
    matrices = values.new_zeros((*values.shape[:-1], dim, dim))
    rows, columns = _lower_indices(dim, values.device)
    matrices[..., rows, columns] = values
    return matrices


def round_to_storage(matrices: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Lower-triangular ``(..., p, p)`` float32 matrices as they come back from storage in ``dtype``.

    Rounding is idempotent: matrices rounded once pack and unpack to themselves, bit for bit.

    Example:
        >>> matrices = torch.linalg.inv(torch.linalg.cholesky(torch.eye(3) + 0.3 * torch.rand(3, 3).tril(-1) + 0.5))
        >>> rounded = round_to_storage(matrices, torch.float16)
        >>> torch.equal(rounded, matrices), torch.equal(round_to_storage(rounded, torch.float16), rounded)
        (False, True)
    """
    return unpack_lower(*pack_lower(matrices, dtype), dim=matrices.shape[-1])


class LowerTriangularStorage:
    """Mixin for an ``nn.Module`` whose ``state_dict`` stores some lower-triangular buffers packed.

    The module lists them in :attr:`triangular_buffers` (buffer name -> storage dtype) and has a ``dim`` attribute
    (the matrices are ``(..., dim, dim)``). Put the mixin before ``nn.Module`` in the bases. A state dict with the
    full matrices (``(..., dim, dim)``) loads as well.

    Example:
        >>> class Whitened(LowerTriangularStorage, torch.nn.Module):
        ...     triangular_buffers = {"whitening": torch.float16}
        ...
        ...     def __init__(self) -> None:
        ...         super().__init__()
        ...         self.dim = 2
        ...         self.register_buffer("whitening", torch.tensor([[2.0, 0.0], [1.0, 4.0]]))
        >>> state = Whitened().state_dict()
        >>> sorted(state), state["whitening"].dtype
        (['whitening', 'whitening_scale'], torch.float16)
        >>> restored = Whitened()
        >>> restored.whitening.zero_()  # doctest: +ELLIPSIS
        tensor(...)
        >>> restored.load_state_dict(state)
        <All keys matched successfully>
        >>> restored.whitening.tolist()
        [[2.0, 0.0], [1.0, 4.0]]
    """

    triangular_buffers: ClassVar[dict[str, torch.dtype]] = {}
    dim: int

    def _save_to_state_dict(self, destination: dict[str, Any], prefix: str, keep_vars: bool) -> None:
        super()._save_to_state_dict(destination, prefix, keep_vars)  # type: ignore[misc]
        for name, dtype in self.triangular_buffers.items():
            key = prefix + name
            if key in destination:
                values, scales = pack_lower(destination[key].detach(), dtype)
                destination[key] = values
                if scales is not None:
                    destination[key + SCALE_SUFFIX] = scales

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        local = {key: value for key, value in state_dict.items() if key.startswith(prefix)}
        for name in self.triangular_buffers:
            key = prefix + name
            scales = local.pop(key + SCALE_SUFFIX, None)
            saved = local.get(key)
            if isinstance(saved, torch.Tensor) and saved.ndim == getattr(self, name).ndim - 1:
                local[key] = unpack_lower(saved, scales, self.dim)
        super()._load_from_state_dict(local, prefix, *args, **kwargs)  # type: ignore[misc]
