# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""Speed and memory measurements: the one copy the benchmark and the studies in ``tools/`` use.

* :func:`measure_throughput`: images/s of a forward function on one batch, after warm-up calls, without autograd.
* :func:`reset_peak_rss`, :func:`peak_rss_mb`, :func:`current_rss_mb`: the kernel's peak resident set size
  (Linux ``VmHWM``, reset through ``/proc/self/clear_refs``) and the current one (``VmRSS``); elsewhere
  ``resource.getrusage`` (the process's lifetime peak).
* :func:`limit_heap_fragmentation`: make glibc return large freed blocks to the system (opt-in: it slows every
  model); :func:`release_free_memory`: return what is free now.

Example:
    >>> import torch
    >>> release_free_memory()  # free heap pages that earlier work left resident would be reused without a fault
    >>> _ = reset_peak_rss()
    >>> before = current_rss_mb()
    >>> # 64 MiB: above glibc's largest dynamic mmap threshold (32 MiB)
    >>> block = torch.ones(64 * 2**20, dtype=torch.uint8).add_(1)
    >>> round(peak_rss_mb() - before) >= 64
    True
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import io
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "THROUGHPUT_BATCH",
    "Throughput",
    "current_rss_mb",
    "limit_heap_fragmentation",
    "measure_throughput",
    "peak_rss_mb",
    "release_free_memory",
    "reset_peak_rss",
    "state_dict_megabytes",
]

#: Batch size of the benchmark's throughput measurements.
THROUGHPUT_BATCH = 16
_M_MMAP_THRESHOLD = -3  # glibc mallopt parameter
_MMAP_THRESHOLD_BYTES = 1 << 20


@dataclass
class Throughput:
    """Images per second of one forward function.

    Attributes:
        images_per_second: Throughput.
        runs: Timed batches.
        seconds: Timed wall time.
    """

    images_per_second: float
    runs: int
    seconds: float


def measure_throughput(
    forward: Callable[[Any], object],
    images: Any,
    min_seconds: float = 3.0,
    min_runs: int = 3,
    warmup: int = 1,
) -> Throughput:
    """Time ``forward(images)`` under ``torch.no_grad`` after ``warmup`` untimed calls.

    Args:
        forward: The function to time, e.g. an eval-mode module or an ONNX Runtime / OpenVINO session call.
        images: The input batch (a tensor or an array; its first dimension is the batch).
        min_seconds: Keep timing until this much wall time has passed ...
        min_runs: ... and at least this many batches ran.
        warmup: Untimed calls before timing.

    Returns:
        The measured :class:`Throughput`.

    Example:
        >>> import torch
        >>> result = measure_throughput(torch.nn.Identity(), torch.zeros(4, 3, 8, 8), min_seconds=0.0, min_runs=2)
        >>> result.runs, result.images_per_second > 0
        (2, True)
    """
    import torch

    with torch.no_grad():
        for _ in range(warmup):
            forward(images)
        runs = 0
        start = time.perf_counter()
        elapsed = 0.0
        while runs < min_runs or elapsed < min_seconds:
            forward(images)
            runs += 1
            elapsed = time.perf_counter() - start
    return Throughput(images_per_second=runs * images.shape[0] / elapsed, runs=runs, seconds=elapsed)


def _read_status_kb(key: str) -> float | None:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(f"{key}:"):
                    return float(line.split()[1])
    except OSError:
        return None
    return None


def _lifetime_peak_kb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 if sys.platform == "darwin" else 1)


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (``VmHWM``) of this process to the current RSS.

    Returns:
        Whether it was reset (Linux only); :func:`peak_rss_mb` then reports the peak since this call.

    Example:
        >>> if reset_peak_rss():  # Linux: the peak starts again from the current RSS
        ...     assert peak_rss_mb() - current_rss_mb() < 8
    """
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        return False
    return _read_status_kb("VmHWM") is not None


def peak_rss_mb() -> float:
    """Peak resident memory in MB: ``VmHWM`` (since :func:`reset_peak_rss`) or ``ru_maxrss`` (process lifetime).

    Example:
        >>> peak_rss_mb() > 0
        True
    """
    peak_kb = _read_status_kb("VmHWM")
    return (peak_kb if peak_kb is not None else _lifetime_peak_kb()) / 1024


def current_rss_mb() -> float:
    """Current resident memory in MB (``VmRSS``; where unavailable, the lifetime peak: an upper bound).

    Example:
        >>> 0 < current_rss_mb() <= peak_rss_mb()
        True
    """
    rss_kb = _read_status_kb("VmRSS")
    return (rss_kb if rss_kb is not None else _lifetime_peak_kb()) / 1024


def limit_heap_fragmentation() -> None:
    """Serve allocations of 1 MiB and more with ``mmap`` (glibc), so that freed tensors go back to the system.

    Opt-in (``anomalib-gaussft benchmark --limit-heap``): an earlier version of this benchmark saw PatchCore's
    coreset selection grow the glibc heap by about one ``N x d`` temporary per selected point, to over 20 GB. Under
    glibc's default settings it did not reproduce (PatchCore on brick at 224 px: peak RSS 2.5 GB); with a fixed
    mmap threshold above the 39 MB temporaries (64 MiB) it did (22.5 GB, killed by the OOM killer). The
    limit has a price: every freed large tensor goes back to the kernel and the next one is faulted in afresh, which
    on this machine doubled GaussFT's fit (brick: 62 -> 132 s) and halved every model's throughput. Equivalent to
    ``MALLOC_MMAP_THRESHOLD_=1048576``; it cannot be undone in the same process; a no-op outside glibc.

    Example:
        >>> limit_heap_fragmentation()  # idempotent; nothing to see but the peak RSS of later runs
    """
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)


def release_free_memory() -> None:
    """Collect garbage and return the free heap memory to the system (glibc ``malloc_trim``; elsewhere only the former).

    Freed memory that the allocator keeps stays resident, and a later allocation that reuses it does not raise the
    RSS: after earlier work in the same process a measured peak could miss growth entirely. Call this before
    :func:`reset_peak_rss` so that the peak counts every page the measured code touches.

    Example:
        >>> release_free_memory()  # before reset_peak_rss(); tools/memory_benchmark.py and its test measure the effect
    """
    gc.collect()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)


def state_dict_megabytes(module: Any) -> float:
    """Size of a ``torch.nn.Module``'s serialised state dict in MB (10^6 bytes).

    The weights and fitted statistics that a deployed model loads (anomalib's training checkpoints add the optimiser
    state and the hyperparameters).

    Example:
        >>> import torch
        >>> round(state_dict_megabytes(torch.nn.Linear(1000, 1000)), 1)  # 1,001,000 float32 values
        4.0
    """
    import torch

    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    return buffer.tell() / 1e6
