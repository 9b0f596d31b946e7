"""Pooling ops: max_pool2d, avg_pool2d, adaptive_avg_pool2d, their 1-d forms and global pooling.

Each 2-d op is a Function whose forward and backward call one `_C` entry point each
(csrc/cpu/pool.cpp), or on a device the `_C.cuda` one of the same name and arguments
(csrc/cuda/pool.cu). Arguments follow torch.nn.functional: kernel_size, stride (default: the
kernel), padding and dilation are ints or (h, w) pairs; padding may be at most half the kernel;
ceil_mode rounds the output size up, keeping a last window only when it starts inside the input
or its left padding. Inputs are (N, C, H, W), or (C, H, W) without a batch axis.

Max pooling saves, for the backward, the flat index ih * W + iw of each window's maximum within
its input plane (as int32; `return_indices=True` hands them out as an int64 numpy array, like
PyTorch's). Ties go to the first maximum in row-major window order and a NaN always wins, as in
PyTorch. A window can hold no input element at all (a dilated window over padding, e.g. height
2, kernel 2, dilation 3, padding 1): its output is -inf, its index -1 and it passes no gradient
(PyTorch returns an out-of-range index there).
"""
from __future__ import annotations

import operator

import numpy as np

from fastnn import _device
from fastnn.autograd import Function
from fastnn.ops._common import as_tensor
from fastnn.ops.shape import reshape

__all__ = ["max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "max_pool1d", "avg_pool1d", "global_avg_pool2d",
           "global_max_pool2d"]


def _shape_text(shape: tuple) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def _int(fn: str, name: str, value) -> int:
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{fn}: {name} must be an int or a pair of ints, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{fn}: {name} must be an int or a pair of ints, got {type(value).__name__} "
                        f"{value!r}") from None


def _pair(fn: str, name: str, value) -> tuple:
    """An int or a sequence of two ints as an (h, w) tuple (range checks are _C's)."""
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise ValueError(f"{fn}: {name} must be an int or a pair of ints (h, w), got {value!r}")
        return (_int(fn, name, value[0]), _int(fn, name, value[1]))
    v = _int(fn, name, value)
    return (v, v)


def _single(fn: str, name: str, value) -> int:
    """An int or a one-element sequence (the 1-d ops)."""
    if isinstance(value, (list, tuple)):
        if len(value) != 1:
            raise ValueError(f"{fn}: {name} must be an int, got {value!r}")
        value = value[0]
    return _int(fn, name, value)


def _batched(fn: str, input, letters: str = "H, W"):
    """(the input as a batched tensor, True when it had no batch axis and got one)."""
    x = as_tensor(input)
    rank = 3 + letters.count(",")  # (N, C, H, W): 4; (N, C, L): 3
    if x.ndim == rank:
        return x, False
    if x.ndim == rank - 1:
        return reshape(x, (1,) + x.shape), True
    hint = ""
    if x.ndim == rank - 2:
        hint = f"; add batch and channel axes: x.reshape(1, 1, {letters})"
    raise ValueError(f"{fn}: expected input of shape (N, C, {letters}) or (C, {letters}), got "
                     f"{_shape_text(x.shape)}{hint}")


def _call(fn: str, name: str, kernel, *args):
    """kernel(*args), with the _C entry point's name replaced by the public op's in errors."""
    try:
        return kernel(*args)
    except ValueError as error:
        raise ValueError(str(error).replace(name, fn)) from None


# ---------------------------------------------------------------------------------------------
# max pooling

class MaxPool2d(Function):
    cuda = True
    numpy_math = False

    @staticmethod
    def forward(ctx, x, kernel, stride, padding, dilation, ceil_mode, fn, sink):
        out, indices = _call(fn, "max_pool2d_forward", _device.kernels(x).max_pool2d_forward, _device.contiguous(x),
                             kernel, stride, padding, dilation, ceil_mode)
        ctx.save_for_backward(indices)
        ctx.input_size = tuple(x.shape[2:])
        if sink is not None:
            sink.append(indices)
        return out

    @staticmethod
    def backward(ctx, grad):
        indices, = ctx.saved_tensors
        return (_device.kernels(grad).max_pool2d_backward(_device.contiguous(grad), indices, ctx.input_size),
                None, None, None, None, None, None, None)


def _max_pool(fn, x, kernel, stride, padding, dilation, ceil_mode, return_indices):
    sink = [] if return_indices else None
    out = MaxPool2d.apply(x, kernel, stride, padding, dilation, bool(ceil_mode), fn, sink)
    if not return_indices:
        return out, None
    # a numpy array on either device (a device's indices are copied back), as the docstring says
    indices = sink[0].numpy() if _device.is_device_array(sink[0]) else sink[0]
    return out, indices.astype(np.int64, copy=False)  # the CPU kernel's are int32


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False,  # noqa: A002
               return_indices: bool = False):
    """Max over each kernel_size window of an (N, C, H, W) or (C, H, W) input; with
    return_indices also the flat index (ih * W + iw, int64 numpy array) of each maximum."""
    fn = "max_pool2d"
    kernel = _pair(fn, "kernel_size", kernel_size)
    stride = kernel if stride is None else _pair(fn, "stride", stride)
    padding, dilation = _pair(fn, "padding", padding), _pair(fn, "dilation", dilation)
    x, unbatched = _batched(fn, input)
    out, indices = _max_pool(fn, x, kernel, stride, padding, dilation, ceil_mode, return_indices)
    if unbatched:
        out = reshape(out, out.shape[1:])
        indices = None if indices is None else indices[0]
    return (out, indices) if return_indices else out


def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False,  # noqa: A002
               return_indices: bool = False):
    """Max pooling along the last axis of an (N, C, L) or (C, L) input (2-d pooling of height 1)."""
    fn = "max_pool1d"
    k = _single(fn, "kernel_size", kernel_size)
    s = k if stride is None else _single(fn, "stride", stride)
    p, d = _single(fn, "padding", padding), _single(fn, "dilation", dilation)
    x3, unbatched = _batched(fn, input, "L")
    x = reshape(x3, x3.shape[:2] + (1,) + x3.shape[2:])
    out, indices = _max_pool(fn, x, (1, k), (1, s), (0, p), (1, d), ceil_mode, return_indices)
    shape = out.shape[:2] + out.shape[3:]
    out = reshape(out, shape[1:] if unbatched else shape)
    if return_indices:
        indices = indices.reshape(shape)
        return out, (indices[0] if unbatched else indices)
    return out


def global_max_pool2d(input):  # noqa: A002
    """Max over each whole plane: (N, C, H, W) -> (N, C, 1, 1) (max_pool2d with the kernel (H, W))."""
    x = as_tensor(input)
    if x.ndim not in (3, 4):
        _batched("global_max_pool2d", x)
    return max_pool2d(x, x.shape[-2:])


# ---------------------------------------------------------------------------------------------
# average pooling

class AvgPool2d(Function):
    cuda = True
    numpy_math = False

    @staticmethod
    def forward(ctx, x, kernel, stride, padding, ceil_mode, count_include_pad, divisor, fn):
        out = _call(fn, "avg_pool2d_forward", _device.kernels(x).avg_pool2d_forward, _device.contiguous(x), kernel,
                    stride, padding, ceil_mode, count_include_pad, divisor)
        ctx.args = (tuple(x.shape[2:]), kernel, stride, padding, ceil_mode, count_include_pad, divisor)
        return out

    @staticmethod
    def backward(ctx, grad):
        return (_device.kernels(grad).avg_pool2d_backward(_device.contiguous(grad), *ctx.args),
                None, None, None, None, None, None, None)


def _divisor(fn: str, divisor_override) -> int:
    if divisor_override is None:
        return 0
    d = _int(fn, "divisor_override", divisor_override)
    if d <= 0:
        raise ValueError(f"{fn}: divisor_override must be a positive int or None, got {d}")
    return d


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode: bool = False,  # noqa: A002
               count_include_pad: bool = True, divisor_override=None):
    """Mean over each kernel_size window of an (N, C, H, W) or (C, H, W) input. The divisor is
    PyTorch's: divisor_override if given, else the window's size clipped to the padded input
    (count_include_pad=True) or to the input itself (False)."""
    fn = "avg_pool2d"
    kernel = _pair(fn, "kernel_size", kernel_size)
    stride = kernel if stride is None else _pair(fn, "stride", stride)
    padding = _pair(fn, "padding", padding)
    divisor = _divisor(fn, divisor_override)
    x, unbatched = _batched(fn, input)
    out = AvgPool2d.apply(x, kernel, stride, padding, bool(ceil_mode), bool(count_include_pad), divisor, fn)
    return reshape(out, out.shape[1:]) if unbatched else out


def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode: bool = False,  # noqa: A002
               count_include_pad: bool = True):
    """Average pooling along the last axis of an (N, C, L) or (C, L) input."""
    fn = "avg_pool1d"
    k = _single(fn, "kernel_size", kernel_size)
    s = k if stride is None else _single(fn, "stride", stride)
    p = _single(fn, "padding", padding)
    x3, unbatched = _batched(fn, input, "L")
    x = reshape(x3, x3.shape[:2] + (1,) + x3.shape[2:])
    out = AvgPool2d.apply(x, (1, k), (1, s), (0, p), bool(ceil_mode), bool(count_include_pad), 0, fn)
    shape = out.shape[:2] + out.shape[3:]
    return reshape(out, shape[1:] if unbatched else shape)


# ---------------------------------------------------------------------------------------------
# adaptive average pooling

class AdaptiveAvgPool2d(Function):
    """On a device, output size 1 x 1 takes the global average kernel (a block-wide sum per plane,
    where the adaptive kernel's one thread per output would sum a whole plane alone)."""
    cuda = True
    numpy_math = False

    @staticmethod
    def forward(ctx, x, output_size, fn):
        ctx.input_size = tuple(x.shape[2:])
        ctx.global_average = _device.is_device_array(x) and tuple(output_size) == (1, 1)
        if ctx.global_average:
            return _device.backend.global_avg_pool_forward(x)
        return _call(fn, "adaptive_avg_pool2d_forward", _device.kernels(x).adaptive_avg_pool2d_forward,
                     _device.contiguous(x), output_size)

    @staticmethod
    def backward(ctx, grad):
        if ctx.global_average:
            return _device.backend.global_avg_pool_backward(grad, ctx.input_size), None, None
        return _device.kernels(grad).adaptive_avg_pool2d_backward(_device.contiguous(grad), ctx.input_size), None, None


def adaptive_avg_pool2d(input, output_size):  # noqa: A002
    """Average pooling to a fixed output size (int, or (h, w) where None keeps the input's size):
    output (i, j) averages rows floor(i H / OH) to ceil((i + 1) H / OH) - 1, columns likewise."""
    fn = "adaptive_avg_pool2d"
    x, unbatched = _batched(fn, input)
    items = output_size if isinstance(output_size, (list, tuple)) else (output_size, output_size)
    if len(items) != 2:
        raise ValueError(f"{fn}: output_size must be an int or a pair (h, w), got {output_size!r}")
    size = tuple(x.shape[2 + i] if v is None else _int(fn, "output_size", v) for i, v in enumerate(items))
    out = AdaptiveAvgPool2d.apply(x, size, fn)
    return reshape(out, out.shape[1:]) if unbatched else out


def global_avg_pool2d(input, flatten: bool = False):  # noqa: A002
    """Mean over each whole plane: (N, C, H, W) -> (N, C, 1, 1), or (N, C) with flatten=True;
    the same as adaptive_avg_pool2d(input, 1)."""
    out = adaptive_avg_pool2d(input, 1)
    if flatten:
        out = reshape(out, out.shape[:-2])
    return out

