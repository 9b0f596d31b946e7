"""Shape ops: reshape (view), transpose, permute, flatten, indexing, cat/concatenate, stack.

Forward returns a numpy view where numpy can (reshape of contiguous data, transpose, permute,
basic indexing), so these ops cost no copy; backward moves the gradient back the inverse way.
"""
from __future__ import annotations

import math

import numpy as np

from fastnn._tensor import Tensor, parse_shape
from fastnn import _device
from fastnn.autograd import Function
from fastnn.ops._common import as_tensor, normalize_axis



class ToDevice(Function):
    """A copy on another device (index None: the host); the gradient is copied back."""
    cuda = True

    @staticmethod
    def forward(ctx, x, index):
        ctx.source = None if not _device.is_device_array(x) else x.device
        return _device.to_device("to", x, index)

    @staticmethod
    def backward(ctx, grad):
        return _device.to_device("to", grad, ctx.source), None

class Reshape(Function):
    cuda = True  # a device array reshapes as a view too
    numpy_math = False

    @staticmethod
    def forward(ctx, a, shape):
        ctx.a_shape = a.shape
        return a.reshape(shape)

    @staticmethod
    def backward(ctx, grad):
        return grad.reshape(ctx.a_shape), None


def reshape(x, shape):
    """x with a new shape of the same size; one dimension may be -1 (inferred)."""
    x = as_tensor(x)
    shape = parse_shape("reshape", (shape,) if isinstance(shape, (int, np.integer)) else shape,
                        allow_infer=True)
    known = math.prod(d for d in shape if d != -1)
    if -1 in shape:
        if known == 0 or x.data.size % known:
            raise ValueError(f"reshape: cannot reshape input of shape {x.shape} ({x.data.size} elements) "
                             f"into shape {shape}: the -1 dimension cannot be inferred")
        shape = tuple(x.data.size // known if d == -1 else d for d in shape)
    elif known != x.data.size:
        raise ValueError(f"reshape: cannot reshape input of shape {x.shape} ({x.data.size} elements) "
                         f"into shape {shape} ({known} elements)")
    return Reshape.apply(x, shape)


class Permute(Function):
    cuda = True  # on a device array, a copy (numpy's is a view)
    numpy_math = False

    @staticmethod
    def forward(ctx, a, dims):
        ctx.dims = dims
        return _device.transpose(a, dims)

    @staticmethod
    def backward(ctx, grad):
        return _device.transpose(grad, np.argsort(ctx.dims)), None


def permute(x, dims):
    """x with its axes reordered: output axis i is input axis dims[i]."""
    x = as_tensor(x)
    try:
        given = tuple(dims)
    except TypeError:
        raise TypeError(f"permute: dims must be a sequence of ints, got {dims!r}") from None
    normalized = tuple(normalize_axis("permute", d, x.ndim, name="dim") for d in given)
    if sorted(normalized) != list(range(x.ndim)):
        raise ValueError(f"permute: dims={given} is not a permutation of the {x.ndim} axes of an input "
                         f"of shape {x.shape}")
    return Permute.apply(x, normalized)


def transpose(x, dim0, dim1):
    """x with axes dim0 and dim1 swapped."""
    x = as_tensor(x)
    dims = list(range(x.ndim))
    i = normalize_axis("transpose", dim0, x.ndim, name="dim0")
    j = normalize_axis("transpose", dim1, x.ndim, name="dim1")
    dims[i], dims[j] = dims[j], dims[i]
    return Permute.apply(x, tuple(dims))


def flatten(x, start_dim=0, end_dim=-1):
    """x with axes start_dim..end_dim merged into one (a 0-d input becomes shape (1,))."""
    x = as_tensor(x)
    if x.ndim == 0:
        return reshape(x, (1,))
    start = normalize_axis("flatten", start_dim, x.ndim, name="start_dim")
    end = normalize_axis("flatten", end_dim, x.ndim, name="end_dim")
    if start > end:
        raise ValueError(f"flatten: start_dim={start_dim} comes after end_dim={end_dim} "
                         f"for an input of shape {x.shape}")
    merged = math.prod(x.shape[start:end + 1])
    return reshape(x, x.shape[:start] + (merged,) + x.shape[end + 1:])


# -- indexing ---------------------------------------------------------------------------------

def _is_advanced(index: tuple) -> bool:
    return any(isinstance(i, (list, np.ndarray)) for i in index)


def _first_axis_rows(index: tuple, n: int):
    """(start, stop, keep_axis) when index picks rows of the first axis only (an int, or a slice
    with step 1, then full slices or Ellipsis), else None: the indexing a device array can do as
    a view, without a copy."""
    if not index or any(not (i is Ellipsis or i == slice(None)) for i in index[1:]):
        return None
    first = index[0]
    if isinstance(first, slice):
        start, stop, step = first.indices(n)
        return (start, max(start, stop), True) if step == 1 else None
    if isinstance(first, (int, np.integer)) and not isinstance(first, bool) and -n <= first < n:
        row = int(first) % n
        return row, row + 1, False
    return None


def _basic_view(shape: tuple, index: tuple):
    """(offset, shape, strides), all in elements, of x[index] for a C-contiguous x of `shape` and a
    basic index (ints, slices of any step, None, Ellipsis): numpy works them out on a stand-in
    array whose byte strides are x's element strides (it is never read)."""
    strides = [0] * len(shape)
    step = 1
    for d in range(len(shape) - 1, -1, -1):
        strides[d] = step
        step *= shape[d]
    probe = np.lib.stride_tricks.as_strided(np.zeros(1, np.uint8), shape=shape, strides=strides)
    if not any(i is Ellipsis for i in index):
        index = index + (Ellipsis,)  # an index of all ints then gives a 0-d view, not a scalar
    view = probe[index]
    offset = view.__array_interface__["data"][0] - probe.__array_interface__["data"][0]
    return offset, view.shape, view.strides


class GetItem(Function):
    cuda = True  # basic indexing on a device array (rows of the first axis as a view; else a copy)

    @staticmethod
    def forward(ctx, a, index):
        ctx.a_shape, ctx.index = a.shape, index
        if _device.is_device_array(a):
            if _is_advanced(index):
                raise NotImplementedError(f"indexing a CUDA tensor with {index!r}: integer and boolean array "
                                          f"indices have no CUDA path yet (ints, slices, None and ... have)")
            ctx.rows = _first_axis_rows(index, a.shape[0]) if a.ndim else None
            if ctx.rows is not None:
                start, stop, keep = ctx.rows
                view = a.narrow(start, stop)
                return view if keep else view.reshape(list(a.shape[1:]))
            ctx.view = _basic_view(tuple(a.shape), index)
            offset, shape, strides = ctx.view
            return _device.backend.gather_strided(a, offset, list(shape), list(strides))
        return a[index]

    @staticmethod
    def backward(ctx, grad):
        if _device.is_device_array(grad):
            grad_a = _device.full(ctx.a_shape, 0.0, grad.device)
            if ctx.rows is not None:
                start, stop, _ = ctx.rows
                _device.backend.copy_(grad_a.narrow(start, stop), grad.reshape([stop - start] + list(ctx.a_shape[1:])))
            else:
                offset, _, strides = ctx.view
                _device.backend.scatter_strided(grad_a, _device.contiguous(grad), offset, list(strides))
            return grad_a, None
        grad_a = np.zeros(ctx.a_shape, dtype=np.float32)
        if _is_advanced(ctx.index):
            np.add.at(grad_a, ctx.index, grad)  # an index array may name an element twice
        else:
            grad_a[ctx.index] = grad  # basic indexing reaches each element at most once
        return grad_a, None


def getitem(x, index):
    """x[index] for ints, slices, None, Ellipsis, integer or boolean arrays (numpy's rules)."""
    x = as_tensor(x)
    items = index if isinstance(index, tuple) else (index,)
    items = tuple(i.data if isinstance(i, Tensor) else i for i in items)
    return GetItem.apply(x, items)


# -- joining ----------------------------------------------------------------------------------

class Cat(Function):
    cuda = True
    numpy_math = False

    @staticmethod
    def forward(ctx, axis, *arrays):
        ctx.axis = axis
        ctx.sizes = [a.shape[axis] for a in arrays]
        ctx.split_points = np.cumsum(ctx.sizes)[:-1]
        if _device.is_device_array(arrays[0]):
            return _device.backend.cat(list(arrays), axis)
        return np.concatenate(arrays, axis=axis)

    @staticmethod
    def backward(ctx, grad):
        if _device.is_device_array(grad):
            return (None, *_device.backend.split(grad, [int(n) for n in ctx.sizes], ctx.axis))
        return (None, *np.split(grad, ctx.split_points, axis=ctx.axis))


def _tensor_list(fn: str, tensors) -> list:
    if isinstance(tensors, (Tensor, np.ndarray)) or not hasattr(tensors, "__iter__"):
        raise TypeError(f"{fn}: expected a sequence of tensors, got {type(tensors).__name__}")
    tensors = [as_tensor(t) for t in tensors]
    if not tensors:
        raise ValueError(f"{fn}: expected a non-empty sequence of tensors")
    return tensors


def cat(tensors, axis=0):
    """Join tensors along an existing axis; their other dimensions must match."""
    tensors = _tensor_list("cat", tensors)
    first = tensors[0].shape
    if len(first) == 0:
        raise ValueError("cat: zero-dimensional tensors cannot be concatenated; use stack")
    axis = normalize_axis("cat", axis, len(first))
    expected = first[:axis] + ("*",) + first[axis + 1:]
    for k, t in enumerate(tensors[1:], start=1):
        if t.ndim != len(first) or t.shape[:axis] + t.shape[axis + 1:] != first[:axis] + first[axis + 1:]:
            raise ValueError(f"cat: tensor {k} has shape {t.shape}, but tensor 0 has shape {first}; "
                             f"expected shape ({', '.join(map(str, expected))}) to join along axis {axis}")
    return Cat.apply(axis, *tensors)


concatenate = cat


class Stack(Function):
    @staticmethod
    def forward(ctx, axis, *arrays):
        ctx.axis = axis
        return np.stack(arrays, axis=axis)

    @staticmethod
    def backward(ctx, grad):
        return (None, *np.moveaxis(grad, ctx.axis, 0))


def stack(tensors, axis=0):
    """Join tensors of one shape along a new axis."""
    tensors = _tensor_list("stack", tensors)
    first = tensors[0].shape
    axis = normalize_axis("stack", axis, len(first) + 1, of="the stacked result")
    for k, t in enumerate(tensors[1:], start=1):
        if t.shape != first:
            raise ValueError(f"stack: tensor {k} has shape {t.shape}, expected {first} like tensor 0")
    return Stack.apply(axis, *tensors)
