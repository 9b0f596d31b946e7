"""Reductions over axis=None (all), an int or a tuple of ints, with keepdim: sum, mean, max.

Backward broadcasts the output gradient back over the reduced axes. max splits its gradient
evenly among the elements that tie for the maximum (like torch.amax); mean and max over an
empty axis raise ValueError, where numpy would warn or fail with a generic message.

On a device the input is viewed as (outer, R, inner) with the reduced axes in R
(_device.reduction_view: a permuted copy when they are not adjacent) for _C.cuda.reduce_sum,
reduce_max and reduce_max_backward; sums accumulate in double there, and the gradients of sum
and mean spread back with _C.cuda.expand.
"""
from __future__ import annotations

import math

import numpy as np

from fastnn import _device
from fastnn.autograd import Function
from fastnn.ops._common import as_tensor, normalize_axes, resolve_dim_alias


def _expand(grad: np.ndarray, axes: tuple, keepdim: bool, shape: tuple) -> np.ndarray:
    """The output gradient as a read-only view broadcast over the input's shape."""
    if not keepdim:
        grad = np.expand_dims(grad, axes)
    return np.broadcast_to(grad, shape)


def _reduced_shape(shape: tuple, axes: tuple, keepdim: bool) -> list:
    return [1 if d in axes else n for d, n in enumerate(shape) if keepdim or d not in axes]


def _cuda_expand(grad, axes: tuple, shape: tuple, scale: float = 1.0):
    """A device output gradient spread back over the input's shape, times scale."""
    grad = grad.reshape(_reduced_shape(shape, axes, keepdim=True))
    return _device.backend.expand(grad if scale == 1.0 else _device.scaled(grad, scale), list(shape))


class Sum(Function):
    cuda = True

    @staticmethod
    def forward(ctx, a, axes, keepdim):
        ctx.a_shape, ctx.axes, ctx.keepdim = a.shape, axes, keepdim
        if _device.is_device_array(a):
            return _device.sum_axes(a, axes).reshape(_reduced_shape(a.shape, axes, keepdim))
        return np.sum(a, axis=axes, keepdims=keepdim)

    @staticmethod
    def backward(ctx, grad):
        if _device.is_device_array(grad):
            return _cuda_expand(grad, ctx.axes, ctx.a_shape), None, None
        return _expand(grad, ctx.axes, ctx.keepdim, ctx.a_shape), None, None


class Mean(Function):
    cuda = True

    @staticmethod
    def forward(ctx, a, axes, keepdim):
        ctx.a_shape, ctx.axes, ctx.keepdim = a.shape, axes, keepdim
        ctx.count = math.prod(a.shape[i] for i in axes)
        if _device.is_device_array(a):
            return _device.sum_axes(a, axes, 1.0 / ctx.count).reshape(_reduced_shape(a.shape, axes, keepdim))
        return np.sum(a, axis=axes, keepdims=keepdim) / np.float32(ctx.count)

    @staticmethod
    def backward(ctx, grad):
        if _device.is_device_array(grad):
            return _cuda_expand(grad, ctx.axes, ctx.a_shape, 1.0 / ctx.count), None, None
        return _expand(grad / np.float32(ctx.count), ctx.axes, ctx.keepdim, ctx.a_shape), None, None


class Max(Function):
    cuda = True

    @staticmethod
    def forward(ctx, a, axes, keepdim):
        if _device.is_device_array(a):  # the ties are counted over R, the whole reduced set
            view, ctx.restore = _device.reduction_view(a, axes)
            out = _device.backend.reduce_max(view)
            ctx.save_for_backward(view, out)
            return out.reshape(_reduced_shape(a.shape, axes, keepdim))
        out = np.amax(a, axis=axes, keepdims=True)
        ctx.save_for_backward(a, out)
        ctx.axes, ctx.keepdim = axes, keepdim
        return out if keepdim else np.squeeze(out, axis=axes)

    @staticmethod
    def backward(ctx, grad):
        a, out = ctx.saved_tensors
        if _device.is_device_array(grad):
            return ctx.restore(_device.backend.reduce_max_backward(grad.reshape(list(out.shape)), a, out)), None, None
        is_max = a == out
        ties = np.sum(is_max, axis=ctx.axes, keepdims=True, dtype=np.float32)
        grad = grad if ctx.keepdim else np.expand_dims(grad, ctx.axes)
        return np.where(is_max, grad / ties, np.float32(0)), None, None


def _reduce(fn: str, function: type, x, axis, keepdim, dim, empty_ok: bool):
    x = as_tensor(x)
    axes = normalize_axes(fn, resolve_dim_alias(fn, axis, dim), x.ndim)
    if not empty_ok and any(x.shape[i] == 0 for i in axes):
        raise ValueError(f"{fn}: cannot reduce over an empty axis: input of shape {x.shape}, "
                         f"axis={axis if dim is None else dim!r} has size 0")
    return function.apply(x, axes, bool(keepdim))


def sum(x, axis=None, keepdim=False, *, dim=None):  # noqa: A001 (torch's name)
    """Sum over axis (None: all axes); keepdim keeps the reduced axes with size 1."""
    return _reduce("sum", Sum, x, axis, keepdim, dim, empty_ok=True)


def mean(x, axis=None, keepdim=False, *, dim=None):
    return _reduce("mean", Mean, x, axis, keepdim, dim, empty_ok=False)


def max(x, axis=None, keepdim=False, *, dim=None):  # noqa: A001 (torch's name)
    """The maximum over axis (values only, like torch.amax); ties share the gradient evenly."""
    return _reduce("max", Max, x, axis, keepdim, dim, empty_ok=False)
