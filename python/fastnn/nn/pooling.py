"""Pooling layers: MaxPool1d/2d, AvgPool1d/2d, AdaptiveAvgPool2d, GlobalAvgPool2d, GlobalMaxPool2d.

Arguments, defaults and output sizes are PyTorch's (stride defaults to the kernel size). Each
layer calls its op in fastnn.nn.functional, prints its settings in extra_repr() and returns its
constructor arguments from get_config() (pairs become lists in JSON; the constructors take
lists as well as tuples).
"""
from __future__ import annotations

from fastnn.nn import functional as F
from fastnn.nn.module import Module
from fastnn.ops import pool as _pool


def _setting(fn: str, name: str, value, size: int = 2):
    """An int stays an int; a list or tuple becomes a tuple of `size` ints (checked)."""
    if isinstance(value, (list, tuple)):
        if size == 1:
            return (_pool._single(fn, name, value),)
        return _pool._pair(fn, name, value)
    return _pool._int(fn, name, value)


class _MaxPoolNd(Module):
    _size = 2

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices: bool = False,
                 ceil_mode: bool = False):
        super().__init__()
        fn = type(self).__name__
        self.kernel_size = _setting(fn, "kernel_size", kernel_size, self._size)
        self.stride = self.kernel_size if stride is None else _setting(fn, "stride", stride, self._size)
        self.padding = _setting(fn, "padding", padding, self._size)
        self.dilation = _setting(fn, "dilation", dilation, self._size)
        self.return_indices = bool(return_indices)
        self.ceil_mode = bool(ceil_mode)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")

    def get_config(self) -> dict:
        return {"kernel_size": self.kernel_size, "stride": self.stride, "padding": self.padding,
                "dilation": self.dilation, "return_indices": self.return_indices, "ceil_mode": self.ceil_mode}


class MaxPool2d(_MaxPoolNd):
    """Max over kernel_size windows of an (N, C, H, W) or (C, H, W) input; with return_indices,
    forward returns (output, indices) (int64 numpy array of flat indices ih * W + iw)."""

    def forward(self, x):
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode,
                            self.return_indices)


class MaxPool1d(_MaxPoolNd):
    """Max over windows along the last axis of an (N, C, L) or (C, L) input."""
    _size = 1

    def forward(self, x):
        return F.max_pool1d(x, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode,
                            self.return_indices)


class AvgPool2d(Module):
    """Mean over kernel_size windows of an (N, C, H, W) or (C, H, W) input, with PyTorch's divisor
    (count_include_pad, divisor_override)."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False, count_include_pad: bool = True,
                 divisor_override=None):
        super().__init__()
        fn = type(self).__name__
        self.kernel_size = _setting(fn, "kernel_size", kernel_size)
        self.stride = self.kernel_size if stride is None else _setting(fn, "stride", stride)
        self.padding = _setting(fn, "padding", padding)
        self.ceil_mode = bool(ceil_mode)
        self.count_include_pad = bool(count_include_pad)
        self.divisor_override = None if divisor_override is None else _pool._divisor(fn, divisor_override)

    def forward(self, x):
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad,
                            self.divisor_override)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"

    def get_config(self) -> dict:
        return {"kernel_size": self.kernel_size, "stride": self.stride, "padding": self.padding,
                "ceil_mode": self.ceil_mode, "count_include_pad": self.count_include_pad,
                "divisor_override": self.divisor_override}


class AvgPool1d(Module):
    """Mean over windows along the last axis of an (N, C, L) or (C, L) input."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False, count_include_pad: bool = True):
        super().__init__()
        fn = type(self).__name__
        self.kernel_size = _setting(fn, "kernel_size", kernel_size, 1)
        self.stride = self.kernel_size if stride is None else _setting(fn, "stride", stride, 1)
        self.padding = _setting(fn, "padding", padding, 1)
        self.ceil_mode = bool(ceil_mode)
        self.count_include_pad = bool(count_include_pad)

    def forward(self, x):
        return F.avg_pool1d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"

    def get_config(self) -> dict:
        return {"kernel_size": self.kernel_size, "stride": self.stride, "padding": self.padding,
                "ceil_mode": self.ceil_mode, "count_include_pad": self.count_include_pad}


class AdaptiveAvgPool2d(Module):
    """Average pooling to output_size (int, or (h, w) where None keeps the input's size)."""

    def __init__(self, output_size):
        super().__init__()
        if isinstance(output_size, (list, tuple)):
            if len(output_size) != 2:
                raise ValueError(f"AdaptiveAvgPool2d: output_size must be an int or a pair (h, w), got "
                                 f"{output_size!r}")
            output_size = tuple(None if v is None else _pool._int("AdaptiveAvgPool2d", "output_size", v)
                                for v in output_size)
        else:
            output_size = _pool._int("AdaptiveAvgPool2d", "output_size", output_size)
        for v in output_size if isinstance(output_size, tuple) else (output_size,):
            if v is not None and v < 1:
                raise ValueError(f"AdaptiveAvgPool2d: output_size must be >= 1, got {output_size!r}")
        self.output_size = output_size

    def forward(self, x):
        return F.adaptive_avg_pool2d(x, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"

    def get_config(self) -> dict:
        return {"output_size": self.output_size}


class _GlobalPool2d(Module):
    def __init__(self, flatten: bool = False):
        super().__init__()
        self.flatten = bool(flatten)

    def extra_repr(self) -> str:
        return f"flatten={self.flatten}"

    def get_config(self) -> dict:
        return {"flatten": self.flatten}

    def _finish(self, out):
        return out.reshape(out.shape[:-2]) if self.flatten else out


class GlobalAvgPool2d(_GlobalPool2d):
    """Mean over each whole plane: (N, C, H, W) -> (N, C, 1, 1), as AdaptiveAvgPool2d(1); with
    flatten=True -> (N, C), ready for a Linear layer."""

    def forward(self, x):
        return F.global_avg_pool2d(x, self.flatten)


class GlobalMaxPool2d(_GlobalPool2d):
    """Max over each whole plane: (N, C, H, W) -> (N, C, 1, 1), or (N, C) with flatten=True."""

    def forward(self, x):
        return self._finish(F.global_max_pool2d(x))
