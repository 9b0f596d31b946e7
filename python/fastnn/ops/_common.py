"""Argument handling shared by the ops and layers: operands to tensors, axes to non-negative ints,
checked int arguments."""
from __future__ import annotations

import operator

import numpy as np

from fastnn._tensor import Tensor


def as_tensor(x) -> Tensor:
    """Tensors pass through; Python numbers and arrays become constants (float32, no grad)."""
    if isinstance(x, Tensor):
        return x
    return Tensor(as_array(x))


def as_array(x) -> np.ndarray:
    if isinstance(x, Tensor):
        return x.data
    array = np.asarray(x)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"expected a Tensor, a real number or a numeric array, got {type(x).__name__}"
                        f" of dtype {array.dtype}")
    with np.errstate(over="ignore"):  # numbers beyond float32 become +-inf, as in torch
        return array.astype(np.float32, copy=False)


def check_int(fn: str, name: str, value, minimum=None) -> int:
    """value as an int (bools and floats refused), at least minimum when given; errors name fn
    and the argument."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{fn}: {name} must be an int, got {value!r}")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{fn}: {name} must be an int, got {type(value).__name__} {value!r}") from None
    if minimum is not None and value < minimum:
        raise ValueError(f"{fn}: {name} must be >= {minimum}, got {value}")
    return value


def normalize_axis(fn: str, axis, ndim: int, name: str = "axis", of: str = "an input") -> int:
    """axis in [-ndim, ndim) as an int in [0, ndim); anything else raises naming it and ndim."""
    if isinstance(axis, (bool, np.bool_)):
        raise TypeError(f"{fn}: {name} must be an int, got {axis!r}")
    try:
        axis = operator.index(axis)
    except TypeError:
        raise TypeError(f"{fn}: {name} must be an int, got {type(axis).__name__} {axis!r}") from None
    if not -ndim <= axis < ndim:
        bounds = f"[{-ndim}, {ndim - 1}]" if ndim else "none: the input is 0-d"
        raise ValueError(f"{fn}: {name}={axis} is out of range for {of} with ndim={ndim} "
                         f"(valid: {bounds})")
    return axis % ndim


def normalize_axes(fn: str, axis, ndim: int) -> tuple:
    """None (all axes), an int or a sequence of ints, as a sorted tuple of distinct axes."""
    if axis is None:
        return tuple(range(ndim))
    items = axis if isinstance(axis, (tuple, list)) else (axis,)
    axes = tuple(sorted(normalize_axis(fn, a, ndim) for a in items))
    if len(set(axes)) != len(axes):
        raise ValueError(f"{fn}: axis={axis!r} repeats an axis")
    return axes


def resolve_dim_alias(fn: str, axis, dim):
    """Accept PyTorch's dim= as another name for axis=."""
    if dim is None:
        return axis
    if axis is not None:
        raise TypeError(f"{fn}: pass axis or dim, not both (got axis={axis!r}, dim={dim!r})")
    return dim
