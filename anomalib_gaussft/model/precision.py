# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""The Gaussian arithmetic in float32 whatever the autocast state (``--trainer.precision 16-mixed`` / ``bf16-mixed``).

Example:
    >>> import torch
    >>> ones = torch.ones(1, 3)
    >>> with torch.autocast("cpu", dtype=torch.bfloat16):
    ...     (ones @ ones.T).dtype, in_float32(torch.matmul)(ones, ones.T).dtype
    (torch.bfloat16, torch.float32)
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import torch

__all__ = ["in_float32"]

_Function = TypeVar("_Function", bound=Callable[..., Any])


def in_float32(function: _Function) -> _Function:
    """Run ``function`` in float32 under mixed precision: autocast off, its floating tensor arguments in float32.

    Under ``--trainer.precision 16-mixed`` or ``bf16-mixed`` the backbone runs in half precision, but the Gaussian
    arithmetic must not: the mixture's ``W x - W m`` form and the sums of squares of whitened vectors cancel and
    round away at 8 to 11 bits of mantissa. Outside autocast (and while ``torch.export`` traces, where autocast is
    off) the function runs as it is, so exported graphs are unchanged.

    Example:
        >>> @in_float32
        ... def squared(x: torch.Tensor) -> torch.Tensor:
        ...     return x @ x.T
        >>> with torch.autocast("cpu", dtype=torch.bfloat16):
        ...     squared(torch.ones(1, 3)).dtype
        torch.float32
    """

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        tensors = [argument for argument in args if isinstance(argument, torch.Tensor)]
        device_type = tensors[0].device.type if tensors else "cpu"
        if not torch.is_autocast_enabled(device_type):
            return function(*args, **kwargs)
        args = tuple(
            argument.float() if isinstance(argument, torch.Tensor) and argument.is_floating_point() else argument
            for argument in args
        )
        with torch.autocast(device_type, enabled=False):
            return function(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
