"""Threads, ISA, run-time checks and the output-buffer cache: the process-wide settings of fastnn.

The thread count lives in the compiled module as one atomic number read at the
start of each kernel, so it can change at any time, from any Python thread.
"""
from __future__ import annotations

import contextlib
import operator

from fastnn import _C

_check_finite = True


def set_num_threads(n: int) -> None:
    """Use `n` threads in the kernels from now on (1 <= n <= 1024)."""
    try:
        n = operator.index(n)
    except TypeError:
        raise TypeError(f"set_num_threads: n must be an int, got {type(n).__name__}") from None
    _C.set_num_threads(n)


def get_num_threads() -> int:
    """The number of threads the kernels use."""
    return _C.get_num_threads()


@contextlib.contextmanager
def threads(n: int):
    """`with fastnn.threads(n):` runs the block's kernels on `n` threads, then restores the count."""
    previous = get_num_threads()
    set_num_threads(n)
    try:
        yield
    finally:
        _C.set_num_threads(previous)


def set_check_finite(enabled: bool) -> bool:
    """Turn the NaN/infinity checks of the kernels on or off; returns the previous setting.

    With the checks on (the default), a NaN or infinity in a kernel's input raises
    ValueError naming the argument. The check costs nothing on the fast path: the
    kernels notice a non-finite output while it is in registers, and only then are
    the inputs scanned.
    """
    global _check_finite
    previous, _check_finite = _check_finite, bool(enabled)
    return previous


def get_check_finite() -> bool:
    return _check_finite


def set_buffer_cache_limit(nbytes: int) -> int:
    """Keep at most `nbytes` of freed kernel-output buffers for reuse (default 1 GiB; 0 turns the
    cache off); returns the previous limit.

    Large kernel outputs (activations, gradients) are recycled by exact size when numpy frees
    them, because memory fresh from the OS costs a page fault per 4 KiB: without the cache a
    training step spends much of its time faulting in the same buffers again.
    """
    try:
        nbytes = operator.index(nbytes)
    except TypeError:
        raise TypeError(f"set_buffer_cache_limit: nbytes must be an int, got {type(nbytes).__name__}") from None
    return _C.set_buffer_cache_limit(nbytes)


def empty_cache() -> int:
    """Free the cached output buffers (as torch.cuda.empty_cache does for its cache); returns the
    bytes freed."""
    return _C.empty_buffer_cache()


def config() -> dict:
    """What this build and process use: version, ISA, OpenMP, threads, CUDA, checks, buffer cache."""
    info = dict(_C.config())
    info["check_finite"] = _check_finite
    info["buffer_cache_limit"] = _C.buffer_cache_limit()
    info["buffer_cache_bytes"] = _C.buffer_cache_bytes()
    return info
