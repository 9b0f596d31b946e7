"""Convolutions: conv2d and conv1d (cross-correlation, PyTorch's semantics), NCHW float32.

Both are one `Function`, `Conv`: its forward is one `_C.conv2d_forward` call (im2col + our GEMM
with the bias in the GEMM epilogue, see csrc/cpu/conv.cpp) and its backward one
`_C.conv2d_backward` call that computes only the gradients wanted. conv1d runs through the same
kernel with H = 1: input (N, C, L) is viewed as (N, C, 1, L) and weight (K, C/groups, S) as
(K, C/groups, 1, S), without copies. Unbatched inputs ((C, H, W), (C, L)) get a batch axis of 1.

padding is an int, a tuple (one int per spatial dim) or 'valid' (none) / 'same' (the output as
large as the input; stride 1 only; an odd total goes one more at the bottom/right, as in
PyTorch). Only zero padding is supported.
"""
from __future__ import annotations

import operator

import numpy as np

from fastnn import _C
from fastnn.autograd import Function
from fastnn.ops._common import as_tensor

__all__ = ["conv2d", "conv1d"]


class Conv(Function):
    """x (N, C, H, W) conv weight (K, C/groups, R, S) + bias (K,). x and weight may be 1-D or
    unbatched views of those: `views` holds the 4-D shapes and the output's own shape."""

    @staticmethod
    def forward(ctx, x, weight, bias, settings, views):
        x4_shape, w4_shape, out4_shape, out_shape = views
        x4 = np.ascontiguousarray(x).reshape(x4_shape)
        w4 = np.ascontiguousarray(weight).reshape(w4_shape)
        b = None if bias is None else np.ascontiguousarray(bias)
        out = _C.conv2d_forward(x4, w4, b, *settings)
        ctx.save_for_backward(x4, w4)
        ctx.settings, ctx.views, ctx.shapes = settings, views, (x.shape, weight.shape)
        return out.reshape(out_shape)

    @staticmethod
    def backward(ctx, grad):
        x4, w4 = ctx.saved_tensors
        out4_shape = ctx.views[2]
        grad4 = np.ascontiguousarray(grad, dtype=np.float32).reshape(out4_shape)
        needs = tuple(bool(flag) for flag in ctx.needs_input_grad[:3])
        gi, gw, gb = _C.conv2d_backward(grad4, x4, w4, *ctx.settings, needs)
        x_shape, w_shape = ctx.shapes
        return (None if gi is None else gi.reshape(x_shape), None if gw is None else gw.reshape(w_shape), gb,
                None, None)


# ---------------------------------------------------------------------------------------------
# argument handling

def _shape_text(shape: tuple) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def _ints(fn: str, name: str, value, n: int, minimum: int) -> tuple:
    """An int, or a tuple/list of n ints, each >= minimum, as a tuple of n ints."""
    what = "an int" + (f" or a tuple of {n} ints" if n > 1 else "")
    items = tuple(value) if isinstance(value, (tuple, list)) else (value,) * n
    if len(items) != n:
        raise ValueError(f"{fn}: {name} must be {what}, got {value!r}")
    out = []
    for item in items:
        if isinstance(item, (bool, np.bool_)):
            raise TypeError(f"{fn}: {name} must be {what}, got {value!r}")
        try:
            out.append(operator.index(item))
        except TypeError:
            raise TypeError(f"{fn}: {name} must be {what}, got {type(value).__name__} {value!r}") from None
    if min(out) < minimum:
        rule = "positive" if minimum == 1 else "non-negative"
        raise ValueError(f"{fn}: {name} must be {rule}, got {value!r}")
    return tuple(out)


def _groups(fn: str, groups) -> int:
    return _ints(fn, "groups", groups, 1, 1)[0]


def _padding(fn: str, padding, n: int, kernel: tuple, stride: tuple, dilation: tuple) -> tuple:
    """Per-side padding ((before, after) for each spatial dim, flattened)."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0,) * (2 * n)
        if padding == "same":
            if any(s != 1 for s in stride):
                raise ValueError(f"{fn}: padding='same' is not supported for strided convolutions "
                                 f"(stride={stride if n > 1 else stride[0]}); give the padding as numbers")
            sides = []
            for k, d in zip(kernel, dilation):
                total = d * (k - 1)
                sides += [total // 2, total - total // 2]
            return tuple(sides)
        raise ValueError(f"{fn}: padding must be an int, a tuple of {n} ints, 'valid' or 'same', got {padding!r}")
    sides = []
    for p in _ints(fn, "padding", padding, n, 0):
        sides += [p, p]
    return tuple(sides)


def _convolution(fn: str, n: int, input, weight, bias, stride, padding, dilation, groups):  # noqa: A002
    """Checks the arguments of an n-d convolution (n = 1 or 2) and applies Conv."""
    x, w = as_tensor(input), as_tensor(weight)
    b = None if bias is None else as_tensor(bias)
    spatial = "(H, W)" if n == 2 else "(L,)"
    in_text = "(N, C, H, W) or (C, H, W)" if n == 2 else "(N, C, L) or (C, L)"
    if x.ndim not in (n + 1, n + 2):
        raise ValueError(f"{fn}: expected input of shape {in_text}, got {_shape_text(x.shape)}")
    if w.ndim != n + 2:
        kernel_text = "kH, kW" if n == 2 else "kL"
        raise ValueError(f"{fn}: weight must be {n + 2}-D (out_channels, in_channels/groups, {kernel_text}), "
                         f"got shape {_shape_text(w.shape)}")
    stride = _ints(fn, "stride", stride, n, 1)
    dilation = _ints(fn, "dilation", dilation, n, 1)
    groups = _groups(fn, groups)
    kernel = w.shape[2:]
    sides = _padding(fn, padding, n, kernel, stride, dilation)

    unbatched = x.ndim == n + 1
    N = 1 if unbatched else x.shape[0]
    C, size = x.shape[-n - 1], x.shape[-n:]
    K = w.shape[0]
    if C % groups:
        raise ValueError(f"{fn}: the input's {C} channels (input shape {_shape_text(x.shape)}) are not divisible "
                         f"by groups={groups}")
    if K % groups:
        raise ValueError(f"{fn}: the weight's {K} output channels (weight shape {_shape_text(w.shape)}) are not "
                         f"divisible by groups={groups}")
    if w.shape[1] * groups != C:
        expected = (K, C // groups) + tuple(kernel)
        raise ValueError(f"{fn}: weight must have shape (out_channels, in_channels/groups, ...) = "
                         f"{_shape_text(expected)} for an input with {C} channels and groups={groups}, got "
                         f"{_shape_text(w.shape)}")
    if min(kernel) < 1:
        raise ValueError(f"{fn}: the kernel must not be empty, got weight of shape {_shape_text(w.shape)}")
    padded = tuple(s + sides[2 * i] + sides[2 * i + 1] for i, s in enumerate(size))
    extent = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))
    if any(p < e for p, e in zip(padded, extent)):
        dil = dilation[0] if len(set(dilation)) == 1 else dilation
        raise ValueError(f"{fn}: kernel {'x'.join(map(str, kernel))} with dilation {dil} needs a padded input of "
                         f"at least {'x'.join(map(str, extent))}, got {'x'.join(map(str, padded))} (input "
                         f"{spatial} = {'x'.join(map(str, size))}, padding={padding!r}); "
                         f"pad the input or use a smaller kernel")
    if b is not None and b.shape != (K,):
        raise ValueError(f"{fn}: bias must have shape ({K},) for weight of shape {_shape_text(w.shape)}, got "
                         f"{_shape_text(b.shape)}")

    out_size = tuple((p - e) // s + 1 for p, e, s in zip(padded, extent, stride))
    if n == 1:
        x4_shape, w4_shape = (N, C, 1) + size, (K, w.shape[1], 1) + tuple(kernel)
        out4_shape = (N, K, 1) + out_size
        settings = ((1,) + stride, (0, 0) + sides, (1,) + dilation, groups)
    else:
        x4_shape, w4_shape, out4_shape = (N, C) + size, tuple(w.shape), (N, K) + out_size
        settings = (stride, sides, dilation, groups)
    out_shape = ((K,) if unbatched else (N, K)) + out_size
    return Conv.apply(x, w, b, settings, (x4_shape, w4_shape, out4_shape, out_shape))


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):  # noqa: A002 (torch's names)
    """2-D convolution of input (N, C, H, W) or (C, H, W) with weight (out_channels, C/groups, kH, kW)
    and bias (out_channels,); stride, dilation: int or (h, w); padding: int, (h, w), 'valid' or
    'same'. Output (N, out_channels, H_out, W_out)."""
    return _convolution("conv2d", 2, input, weight, bias, stride, padding, dilation, groups)


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):  # noqa: A002
    """1-D convolution of input (N, C, L) or (C, L) with weight (out_channels, C/groups, kL) and
    bias (out_channels,), through the 2-D kernel with H = 1; padding: int, 'valid' or 'same'."""
    return _convolution("conv1d", 1, input, weight, bias, stride, padding, dilation, groups)
