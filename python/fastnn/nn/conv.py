"""Convolution layers: Conv1d, Conv2d, ConvTranspose1d and ConvTranspose2d, with PyTorch's
arguments, defaults and weight layout.

weight is (out_channels, in_channels // groups, *kernel_size) (transposed: (in_channels,
out_channels // groups, *kernel_size)) and bias (out_channels,), so a
PyTorch state dict of the same layer loads as it is. The default initialisation is PyTorch's:
weight ~ kaiming_uniform(a=sqrt(5)), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with
fan_in = in_channels // groups * prod(kernel_size), and bias from the same range. Settings are
stored as tuples (PyTorch's `Conv2d(1, 6, 5).kernel_size == (5, 5)`); get_config() returns them
(lists in JSON: the constructors take lists too). Only padding_mode='zeros' is supported.
"""
from __future__ import annotations

import numbers
import operator

import numpy as np

from fastnn.nn import functional as F
from fastnn.nn import init
from fastnn.nn.module import Module, Parameter
from fastnn.ops.conv import transposed_output_size


def _tuple(fn: str, name: str, value, n: int, minimum: int) -> tuple:
    """An int or n ints, each >= minimum, as a tuple of n ints."""
    items = tuple(value) if isinstance(value, (tuple, list)) else (value,) * n
    what = f"an int or a tuple of {n} ints" if n > 1 else "an int or a tuple of one int"
    if len(items) != n:
        raise ValueError(f"{fn}: {name} must be {what}, got {value!r}")
    out = []
    for item in items:
        if isinstance(item, (bool, np.bool_)) or not isinstance(item, (numbers.Integral, np.integer)):
            raise TypeError(f"{fn}: {name} must be {what}, got {value!r}")
        out.append(operator.index(item))
    if min(out) < minimum:
        raise ValueError(f"{fn}: {name} must be {'positive' if minimum == 1 else 'non-negative'}, got {value!r}")
    return tuple(out)


def _count(fn: str, name: str, value, minimum: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        raise TypeError(f"{fn}: {name} must be an int, got {value!r}")
    value = operator.index(value)
    if value < minimum:
        raise ValueError(f"{fn}: {name} must be {'positive' if minimum == 1 else 'non-negative'}, got {value}")
    return value


class _ConvNd(Module):
    """The settings, parameters and initialisation that convolutions and transposed convolutions
    share; weight (out_channels, in_channels // groups, *kernel_size), transposed (in_channels,
    out_channels // groups, *kernel_size)."""
    _n = 2  # spatial dimensions
    _transposed = False

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, padding_mode: str = "zeros"):
        super().__init__()
        self._set_common(in_channels, out_channels, kernel_size, stride, dilation, groups, padding_mode)
        fn = type(self).__name__
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(f"{fn}: padding must be an int, a tuple of ints, 'valid' or 'same', got {padding!r}")
            if padding == "same" and any(s != 1 for s in self.stride):
                raise ValueError(f"{fn}: padding='same' is not supported for strided convolutions "
                                 f"(stride={self.stride})")
            self.padding = padding
        else:
            self.padding = _tuple(fn, "padding", padding, self._n, 0)
        self._make_parameters(bias)

    def _set_common(self, in_channels, out_channels, kernel_size, stride, dilation, groups, padding_mode) -> None:
        fn, n = type(self).__name__, self._n
        self.in_channels = _count(fn, "in_channels", in_channels, 1)
        self.out_channels = _count(fn, "out_channels", out_channels, 1)
        self.kernel_size = _tuple(fn, "kernel_size", kernel_size, n, 1)
        self.stride = _tuple(fn, "stride", stride, n, 1)
        self.dilation = _tuple(fn, "dilation", dilation, n, 1)
        self.groups = _count(fn, "groups", groups, 1)
        if padding_mode != "zeros":
            raise ValueError(f"{fn}: only padding_mode='zeros' is supported, got {padding_mode!r}; pad the input "
                             f"yourself for other modes")
        self.padding_mode = padding_mode
        if self.in_channels % self.groups:
            raise ValueError(f"{fn}: in_channels={self.in_channels} must be divisible by groups={self.groups}")
        if self.out_channels % self.groups:
            raise ValueError(f"{fn}: out_channels={self.out_channels} must be divisible by groups={self.groups}")

    def _make_parameters(self, bias: bool) -> None:
        first, second = ((self.in_channels, self.out_channels) if self._transposed
                         else (self.out_channels, self.in_channels))
        self.weight = Parameter(np.empty((first, second // self.groups) + self.kernel_size, dtype=np.float32))
        if bias:
            self.bias = Parameter(np.empty((self.out_channels,), dtype=np.float32))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.layer_default_(self.weight, self.bias)  # fan_in from weight.shape[1:], transposed layout too

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if isinstance(self.padding, str) or self.padding != (0,) * self._n:
            s += f", padding={self.padding}"
        if getattr(self, "output_padding", (0,) * self._n) != (0,) * self._n:
            s += f", output_padding={self.output_padding}"
        if self.dilation != (1,) * self._n:
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s

    def get_config(self) -> dict:
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": self.kernel_size, "stride": self.stride, "padding": self.padding,
                "dilation": self.dilation, "groups": self.groups, "bias": self.bias is not None,
                "padding_mode": self.padding_mode}


class Conv2d(_ConvNd):
    """2-D convolution of (N, C, H, W) or (C, H, W) inputs: weight (out_channels,
    in_channels // groups, kH, kW), bias (out_channels,). Output size per dim:
    (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1."""
    _n = 2

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class Conv1d(_ConvNd):
    """1-D convolution of (N, C, L) or (C, L) inputs: weight (out_channels, in_channels // groups, kL),
    bias (out_channels,); runs through the 2-D kernel with H = 1."""
    _n = 1

    def forward(self, x):
        return F.conv1d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class _ConvTransposeNd(_ConvNd):
    """Transposed convolution ("deconvolution"): the gradient of a convolution with respect to its
    input, used to upsample (decoders, generators). weight (in_channels, out_channels // groups,
    *kernel_size) as in PyTorch; default initialisation as PyTorch's (fan_in from weight.shape[1:])."""
    _transposed = True

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, output_padding=0,
                 groups: int = 1, bias: bool = True, dilation=1, padding_mode: str = "zeros"):
        Module.__init__(self)
        self._set_common(in_channels, out_channels, kernel_size, stride, dilation, groups, padding_mode)
        fn, n = type(self).__name__, self._n
        self.padding = _tuple(fn, "padding", padding, n, 0)
        self.output_padding = _tuple(fn, "output_padding", output_padding, n, 0)
        for o, s, d in zip(self.output_padding, self.stride, self.dilation):
            if o >= max(s, d):
                raise ValueError(f"{fn}: output_padding must be smaller than stride or dilation, got "
                                 f"output_padding={self.output_padding}, stride={self.stride}, "
                                 f"dilation={self.dilation}")
        self._make_parameters(bias)

    def _output_padding(self, x, output_size) -> tuple:
        """output_padding, or the one that gives output_size (the last n dims of it)."""
        if output_size is None:
            return self.output_padding
        fn, n = type(self).__name__, self._n
        wanted = tuple(output_size)[-n:]
        if len(wanted) != n:
            raise ValueError(f"{fn}: output_size must give the {n} spatial sizes, got {output_size!r}")
        size = tuple(x.shape[-n:])
        smallest = transposed_output_size(size, self.kernel_size, self.stride, self.padding, (0,) * n,
                                          self.dilation)
        extra = tuple(int(w) - s for w, s in zip(wanted, smallest))
        for e, s, d, w, lo in zip(extra, self.stride, self.dilation, wanted, smallest):
            if not 0 <= e < max(s, d):
                raise ValueError(f"{fn}: output_size {tuple(wanted)} is not reachable from input size {size}: each "
                                 f"size must lie in [{lo}, {lo + max(s, d) - 1}] here, got {w}")
        return extra

    def get_config(self) -> dict:
        return {**super().get_config(), "output_padding": self.output_padding}


class ConvTranspose2d(_ConvTransposeNd):
    """Transposed 2-D convolution of (N, C, H, W) or (C, H, W) inputs: weight (in_channels,
    out_channels // groups, kH, kW), bias (out_channels,). Output size per dim:
    (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1;
    forward(x, output_size=...) picks the output_padding that gives that size."""
    _n = 2

    def forward(self, x, output_size=None):
        return F.conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding,
                                  self._output_padding(x, output_size), self.groups, self.dilation)


class ConvTranspose1d(_ConvTransposeNd):
    """Transposed 1-D convolution of (N, C, L) or (C, L) inputs: weight (in_channels,
    out_channels // groups, kL); runs through the 2-D kernel with H = 1."""
    _n = 1

    def forward(self, x, output_size=None):
        return F.conv_transpose1d(x, self.weight, self.bias, self.stride, self.padding,
                                  self._output_padding(x, output_size), self.groups, self.dilation)
