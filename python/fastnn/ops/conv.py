"""Convolutions: conv2d and conv1d (cross-correlation, PyTorch's semantics), NCHW float32, and
the transposed convolutions conv_transpose2d and conv_transpose1d.

Both are one `Function`, `Conv`: its forward is one `_C.conv2d_forward` call (im2col + our GEMM
with the bias in the GEMM epilogue, see csrc/cpu/conv.cpp) and its backward one
`_C.conv2d_backward` call that computes only the gradients wanted. conv1d runs through the same
kernel with H = 1: input (N, C, L) is viewed as (N, C, 1, L) and weight (K, C/groups, S) as
(K, C/groups, 1, S), without copies. Unbatched inputs ((C, H, W), (C, L)) get a batch axis of 1.

padding is an int, a tuple (one int per spatial dim) or 'valid' (none) / 'same' (the output as
large as the input; stride 1 only; an odd total goes one more at the bottom/right, as in
PyTorch). Only zero padding is supported.

The transposed convolutions (the same `Conv` with transposed=True) are the adjoint of a conv2d (one
`_C.conv_transpose2d_forward` call, which is that conv2d's input gradient plus the bias), with
PyTorch's weight layout (in_channels, out_channels/groups, kH, kW) and output size
(size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1.

On a device every form runs on `_C.cuda`'s entry points of the same names (csrc/cuda/conv.cu),
the transposed ones built from the conv2d kernels as on the CPU.
"""
from __future__ import annotations

import operator

import numpy as np

from fastnn import _C, _device
from fastnn._config import get_check_finite
from fastnn.autograd import Function
from fastnn.ops._common import as_tensor

__all__ = ["conv2d", "conv2d_relu", "conv1d", "conv_transpose2d", "conv_transpose1d"]


class Conv(Function):
    """x (N, C, H, W) conv weight (K, C/groups, R, S) + bias (K,), or with transposed the
    transposed convolution: x (N, C_in, H, W), weight (C_in, C_out/groups, R, S), bias (C_out,).
    x and weight may be 1-D or unbatched views of those: `views` holds the 4-D shapes and the
    output's own shape. A transposed convolution's output_padding may reach the dilation, as in
    PyTorch (see _cpu_output_padding for the CPU kernel). relu (convolutions only): a ReLU applied
    in the kernel's epilogue, its mask taken from the output in backward (conv2d_relu)."""

    cuda = True
    numpy_math = False

    @staticmethod
    def forward(ctx, x, weight, bias, settings, views, transposed=False, relu=False):
        x4_shape, w4_shape, out4_shape, out_shape = views
        ctx.settings, ctx.views, ctx.transposed = settings, views, transposed
        ctx.shapes = (x.shape, weight.shape)
        if _device.is_device_array(x):
            x4, w4 = x.reshape(list(x4_shape)), weight.reshape(list(w4_shape))
            if transposed:
                out = _device.backend.conv_transpose2d_forward(x4, w4, bias, *settings)
            else:
                out = _device.backend.conv2d_forward(x4, w4, bias, *settings)
            if relu:
                out = _device.backend.relu_forward(out)
            ctx.save_for_backward(x4, w4, out if relu else None)
            return out.reshape(list(out_shape))
        x4 = np.ascontiguousarray(x).reshape(x4_shape)
        extra_rows = (0, 0)
        if transposed:
            ctx.settings, extra_rows = _cpu_output_padding(settings)
        if any(extra_rows):
            x4 = np.pad(x4, ((0, 0), (0, 0), (0, extra_rows[0]), (0, extra_rows[1])))
        w4 = np.ascontiguousarray(weight).reshape(w4_shape)
        b = None if bias is None else np.ascontiguousarray(bias)
        if transposed:
            out = _C.conv_transpose2d_forward(x4, w4, b, *ctx.settings, check_finite=get_check_finite())
        else:
            out = _C.conv2d_forward(x4, w4, b, *settings, relu=relu, check_finite=get_check_finite())
        ctx.save_for_backward(x4, w4, out if relu else None)
        return out.reshape(out_shape)

    @staticmethod
    def backward(ctx, grad):
        x4, w4, out4 = ctx.saved_tensors
        needs = tuple(bool(flag) for flag in ctx.needs_input_grad[:3])
        if _device.is_device_array(grad):
            grad4 = grad.reshape(list(ctx.views[2]))
            if out4 is not None:  # the fused ReLU: the gradient passes where the output is positive
                grad4 = _device.backend.relu_backward(grad4, out4)
            kernel = _device.backend.conv_transpose2d_backward if ctx.transposed else _device.backend.conv2d_backward
            gi, gw, gb = kernel(grad4, x4, w4, *ctx.settings, needs)
        else:
            grad4 = np.ascontiguousarray(grad, dtype=np.float32).reshape(ctx.views[2])
            if out4 is not None:
                grad4 = _C.relu_backward(grad4, out4)
            kernel = _C.conv_transpose2d_backward if ctx.transposed else _C.conv2d_backward
            gi, gw, gb = kernel(grad4, x4, w4, *ctx.settings, needs)
        x_shape, w_shape = ctx.shapes
        if gi is not None and gi.shape != ctx.views[0]:  # drop the extra rows/columns
            H, W = ctx.views[0][2:]
            gi = gi[:, :, :H, :W]
        grads = (None if gi is None else gi.reshape(x_shape), None if gw is None else gw.reshape(w_shape), gb)
        return grads + (None,) * (len(ctx.needs_input_grad) - 3)  # settings, views, transposed, relu


def _cpu_output_padding(settings: tuple) -> tuple:
    """(settings, extra rows) for the CPU kernel, the adjoint of a conv2d, which needs
    output_padding < stride: the same output comes from the input with output_padding // stride
    zero rows (columns) after it and output_padding % stride. (The CUDA kernel takes it whole.)"""
    stride, padding, output_padding, dilation, groups = settings
    extra = tuple(o // s_ for o, s_ in zip(output_padding, stride))
    remainder = tuple(o % s_ for o, s_ in zip(output_padding, stride))
    return (stride, padding, remainder, dilation, groups), extra


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


def _operands(fn: str, n: int, input, weight, bias, channels: str, weight_dims: str):  # noqa: A002
    """input, weight and bias as tensors, the input (N, channels, *spatial) or unbatched and the
    weight (weight_dims, *kernel) of rank n + 2; errors name the expected layouts."""
    x, w = as_tensor(input), as_tensor(weight)
    if x.ndim not in (n + 1, n + 2):
        spatial = "H, W" if n == 2 else "L"
        raise ValueError(f"{fn}: expected input of shape (N, {channels}, {spatial}) or ({channels}, {spatial}), "
                         f"got {_shape_text(x.shape)}")
    if w.ndim != n + 2:
        kernel_text = "kH, kW" if n == 2 else "kL"
        raise ValueError(f"{fn}: weight must be {n + 2}-D ({weight_dims}, {kernel_text}), got shape "
                         f"{_shape_text(w.shape)}")
    return x, w, None if bias is None else as_tensor(bias)


# The checked settings and view shapes of the convolutions seen so far, by shapes and settings:
# a layer calls conv2d with the same ones at every step, and checking them costs several times
# what a small convolution's kernel does (a LeNet layer at batch 64: ~40 us against ~30 us).
_PLANS: dict = {}


def _convolution(fn: str, n: int, input, weight, bias, stride, padding, dilation, groups,  # noqa: A002
                 relu: bool = False):
    """Checks the arguments of an n-d convolution (n = 1 or 2) and applies Conv."""
    x, w, b = _operands(fn, n, input, weight, bias, "C", "out_channels, in_channels/groups")
    b_shape = None if b is None else b.shape
    try:
        # repr tells 1 from True, (1, 1) from [1, 1] and 1 from numpy.int64(1), which compare equal
        key = (fn, n, x.shape, w.shape, b_shape, repr((stride, padding, dilation, groups)))
        plan = _PLANS.get(key)
    except TypeError:  # an unhashable shape: checked every time
        key, plan = None, None
    if plan is None:
        plan = _plan(fn, n, x.shape, w.shape, b_shape, stride, padding, dilation, groups)
        if key is not None:
            if len(_PLANS) >= 1024:
                _PLANS.clear()
            _PLANS[key] = plan
    return Conv.apply(x, w, b, *plan, False, relu)


def _plan(fn: str, n: int, x_shape: tuple, w_shape: tuple, b_shape, stride, padding, dilation, groups):
    """(settings, views) for Conv, after every check of the shapes and settings."""
    spatial = "(H, W)" if n == 2 else "(L,)"
    stride = _ints(fn, "stride", stride, n, 1)
    dilation = _ints(fn, "dilation", dilation, n, 1)
    groups = _groups(fn, groups)
    kernel = w_shape[2:]
    sides = _padding(fn, padding, n, kernel, stride, dilation)

    unbatched = len(x_shape) == n + 1
    N = 1 if unbatched else x_shape[0]
    C, size = x_shape[-n - 1], x_shape[-n:]
    K = w_shape[0]
    if C % groups:
        raise ValueError(f"{fn}: the input's {C} channels (input shape {_shape_text(x_shape)}) are not divisible "
                         f"by groups={groups}")
    if K % groups:
        raise ValueError(f"{fn}: the weight's {K} output channels (weight shape {_shape_text(w_shape)}) are not "
                         f"divisible by groups={groups}")
    if w_shape[1] * groups != C:
        expected = (K, C // groups) + tuple(kernel)
        raise ValueError(f"{fn}: weight must have shape (out_channels, in_channels/groups, ...) = "
                         f"{_shape_text(expected)} for an input with {C} channels and groups={groups}, got "
                         f"{_shape_text(w_shape)}")
    if min(kernel) < 1:
        raise ValueError(f"{fn}: the kernel must not be empty, got weight of shape {_shape_text(w_shape)}")
    padded = tuple(s + sides[2 * i] + sides[2 * i + 1] for i, s in enumerate(size))
    extent = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))
    if any(p < e for p, e in zip(padded, extent)):
        dil = dilation[0] if len(set(dilation)) == 1 else dilation
        raise ValueError(f"{fn}: kernel {'x'.join(map(str, kernel))} with dilation {dil} needs a padded input of "
                         f"at least {'x'.join(map(str, extent))}, got {'x'.join(map(str, padded))} (input "
                         f"{spatial} = {'x'.join(map(str, size))}, padding={padding!r}); "
                         f"pad the input or use a smaller kernel")
    if b_shape is not None and b_shape != (K,):
        raise ValueError(f"{fn}: bias must have shape ({K},) for weight of shape {_shape_text(w_shape)}, got "
                         f"{_shape_text(b_shape)}")

    out_size = tuple((p - e) // s + 1 for p, e, s in zip(padded, extent, stride))
    if n == 1:
        x4_shape, w4_shape = (N, C, 1) + size, (K, w_shape[1], 1) + tuple(kernel)
        out4_shape = (N, K, 1) + out_size
        settings = ((1,) + stride, (0, 0) + sides, (1,) + dilation, groups)
    else:
        x4_shape, w4_shape, out4_shape = (N, C) + size, tuple(w_shape), (N, K) + out_size
        settings = (stride, sides, dilation, groups)
    out_shape = ((K,) if unbatched else (N, K)) + out_size
    return settings, (x4_shape, w4_shape, out4_shape, out_shape)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):  # noqa: A002 (torch's names)
    """2-D convolution of input (N, C, H, W) or (C, H, W) with weight (out_channels, C/groups, kH, kW)
    and bias (out_channels,); stride, dilation: int or (h, w); padding: int, (h, w), 'valid' or
    'same'. Output (N, out_channels, H_out, W_out)."""
    return _convolution("conv2d", 2, input, weight, bias, stride, padding, dilation, groups)


def conv2d_relu(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):  # noqa: A002
    """relu(conv2d(...)) with the ReLU applied in the convolution's epilogue (no separate pass);
    nn.Sequential uses it for a Conv2d followed by a ReLU."""
    return _convolution("conv2d", 2, input, weight, bias, stride, padding, dilation, groups, relu=True)


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):  # noqa: A002
    """1-D convolution of input (N, C, L) or (C, L) with weight (out_channels, C/groups, kL) and
    bias (out_channels,), through the 2-D kernel with H = 1; padding: int, 'valid' or 'same'."""
    return _convolution("conv1d", 1, input, weight, bias, stride, padding, dilation, groups)


def transposed_output_size(size, kernel, stride, padding, output_padding, dilation) -> tuple:
    """The output size of a transposed convolution, per spatial dim (all arguments tuples)."""
    return tuple((n - 1) * s - 2 * p + d * (k - 1) + o + 1
                 for n, k, s, p, o, d in zip(size, kernel, stride, padding, output_padding, dilation))


def _transposed(fn: str, n: int, input, weight, bias, stride, padding, output_padding, groups,  # noqa: A002
                dilation):
    """Checks the arguments of an n-d transposed convolution (n = 1 or 2) and applies Conv (transposed)."""
    x, w, b = _operands(fn, n, input, weight, bias, "C_in", "in_channels, out_channels/groups")
    if isinstance(padding, str):
        raise ValueError(f"{fn}: padding must be an int or a tuple of {n} ints (string padding is not defined "
                         f"for transposed convolutions), got {padding!r}")
    stride = _ints(fn, "stride", stride, n, 1)
    dilation = _ints(fn, "dilation", dilation, n, 1)
    pad = _ints(fn, "padding", padding, n, 0)
    out_pad = _ints(fn, "output_padding", output_padding, n, 0)
    groups = _groups(fn, groups)
    kernel = tuple(w.shape[2:])

    unbatched = x.ndim == n + 1
    N = 1 if unbatched else x.shape[0]
    C_in, size = x.shape[-n - 1], tuple(x.shape[-n:])
    if w.shape[0] != C_in:
        raise ValueError(f"{fn}: weight must have shape (in_channels, out_channels/groups, ...) with in_channels = "
                         f"{C_in} (input shape {_shape_text(x.shape)}), got {_shape_text(w.shape)}")
    if C_in % groups:
        raise ValueError(f"{fn}: the input's {C_in} channels (input shape {_shape_text(x.shape)}) are not divisible "
                         f"by groups={groups}")
    if min(kernel) < 1:
        raise ValueError(f"{fn}: the kernel must not be empty, got weight of shape {_shape_text(w.shape)}")
    for o, s_, d in zip(out_pad, stride, dilation):
        if o >= max(s_, d):
            raise ValueError(f"{fn}: output_padding must be smaller than stride or dilation, got "
                             f"output_padding={output_padding!r} with stride={stride} and dilation={dilation}")
    C_out = w.shape[1] * groups
    if b is not None and b.shape != (C_out,):
        raise ValueError(f"{fn}: bias must have shape ({C_out},) (out_channels) for weight of shape "
                         f"{_shape_text(w.shape)} and groups={groups}, got {_shape_text(b.shape)}")
    out_size = transposed_output_size(size, kernel, stride, pad, out_pad, dilation)
    if min(size) > 0 and min(out_size) < 1:
        raise ValueError(f"{fn}: the output size would be {'x'.join(map(str, out_size))} for input size "
                         f"{'x'.join(map(str, size))}, kernel {'x'.join(map(str, kernel))} and padding={padding!r}; "
                         f"reduce the padding")
    if n == 1:
        x4_shape, w4_shape = (N, C_in, 1) + size, (C_in, w.shape[1], 1) + kernel
        out4_shape = (N, C_out, 1) + out_size
        settings = ((1,) + stride, (0, 0, pad[0], pad[0]), (0,) + out_pad, (1,) + dilation, groups)
    else:
        x4_shape, w4_shape, out4_shape = (N, C_in) + size, tuple(w.shape), (N, C_out) + out_size
        settings = (stride, (pad[0], pad[0], pad[1], pad[1]), out_pad, dilation, groups)
    out_shape = ((C_out,) if unbatched else (N, C_out)) + out_size
    return Conv.apply(x, w, b, settings, (x4_shape, w4_shape, out4_shape, out_shape), True)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,  # noqa: A002
                     dilation=1):
    """Transposed 2-D convolution (the gradient of conv2d with respect to its input, "deconvolution")
    of input (N, C_in, H, W) or (C_in, H, W) with weight (C_in, out_channels/groups, kH, kW) and bias
    (out_channels,). stride, padding, output_padding, dilation: int or (h, w); PyTorch's argument
    order (groups before dilation). Output size per dim:
    (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1."""
    return _transposed("conv_transpose2d", 2, input, weight, bias, stride, padding, output_padding, groups, dilation)


def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,  # noqa: A002
                     dilation=1):
    """Transposed 1-D convolution of input (N, C_in, L) or (C_in, L) with weight
    (C_in, out_channels/groups, kL), through the 2-D kernel with H = 1."""
    return _transposed("conv_transpose1d", 1, input, weight, bias, stride, padding, output_padding, groups, dilation)
