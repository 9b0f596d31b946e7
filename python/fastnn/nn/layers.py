"""Layers: Linear, the activations, Dropout, Flatten, Identity.

Each layer calls its op in fastnn.nn.functional, prints its settings in `extra_repr()` (as
PyTorch does) and returns its constructor arguments from `get_config()` (JSON-able), so that
`type(layer)(**layer.get_config())` builds the same layer with fresh weights.
"""
from __future__ import annotations

import math
import numbers
import operator

import numpy as np

from fastnn.nn import functional as F
from fastnn.nn import init
from fastnn.nn.module import Module, Parameter
from fastnn.ops import shape as _shape
from fastnn.ops._common import check_int
from fastnn.ops.dropout import check_probability


class Linear(Module):
    """y = x @ weight.T + bias, with weight (out_features, in_features) and bias (out_features,)
    as in PyTorch, and PyTorch's default initialisation: weight ~ kaiming_uniform(a=sqrt(5)),
    i.e. U(-1/sqrt(in_features), 1/sqrt(in_features)), and bias from the same range.
    The forward is one GEMM with the bias added in its epilogue."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.in_features = check_int("Linear", "in_features", in_features, 0)
        self.out_features = check_int("Linear", "out_features", out_features, 0)
        self.weight = Parameter(np.empty((self.out_features, self.in_features), dtype=np.float32))
        if bias:
            self.bias = Parameter(np.empty((self.out_features,), dtype=np.float32))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.layer_default_(self.weight, self.bias)

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"

    def get_config(self) -> dict:
        return {"in_features": self.in_features, "out_features": self.out_features, "bias": self.bias is not None}


class _Stateless(Module):
    """A layer without weights or settings."""

    def get_config(self) -> dict:
        return {}


class Identity(_Stateless):
    """Returns its input (arguments given to the constructor are ignored, as in PyTorch)."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, x):
        return x


class ReLU(_Stateless):
    """max(x, 0). Inside a Sequential, a ReLU right after a Linear is fused into its GEMM."""

    def forward(self, x):
        return F.relu(x)


class Sigmoid(_Stateless):
    def forward(self, x):
        return F.sigmoid(x)


class Tanh(_Stateless):
    def forward(self, x):
        return F.tanh(x)


class LeakyReLU(Module):
    """x for x > 0, negative_slope * x otherwise."""

    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        if isinstance(negative_slope, bool) or not isinstance(negative_slope, numbers.Real):
            raise TypeError(f"LeakyReLU: negative_slope must be a number, got {negative_slope!r}")
        self.negative_slope = float(negative_slope)

    def forward(self, x):
        return F.leaky_relu(x, self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"

    def get_config(self) -> dict:
        return {"negative_slope": self.negative_slope}


class GELU(Module):
    """x * Phi(x); approximate='tanh' uses the tanh formula."""

    def __init__(self, approximate: str = "none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, x):
        return F.gelu(x, self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"

    def get_config(self) -> dict:
        return {"approximate": self.approximate}


class _AlongDim(Module):
    """Softmax and LogSoftmax: `dim` is required (PyTorch's implicit choice is deprecated there)."""

    def __init__(self, dim: int):
        super().__init__()
        if isinstance(dim, bool):
            raise TypeError(f"{type(self).__name__}: dim must be an int, got {dim!r}")
        try:
            self.dim = operator.index(dim)
        except TypeError:
            raise TypeError(f"{type(self).__name__}: dim must be an int (the class axis, usually 1 or -1), "
                            f"got {dim!r}") from None

    def extra_repr(self) -> str:
        return f"dim={self.dim}"

    def get_config(self) -> dict:
        return {"dim": self.dim}


class Softmax(_AlongDim):
    def forward(self, x):
        return F.softmax(x, self.dim)


class LogSoftmax(_AlongDim):
    def forward(self, x):
        return F.log_softmax(x, self.dim)


class Dropout(Module):
    """Inverted dropout in training mode (zero with probability p, scale the rest by 1/(1-p)),
    drawn from fastnn's generator (fastnn.manual_seed); the identity in eval mode."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        self.p = check_probability("Dropout", p)

    def forward(self, x):
        return F.dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"

    def get_config(self) -> dict:
        return {"p": self.p}


class Flatten(Module):
    """Merge dims start_dim..end_dim into one: (N, C, H, W) -> (N, C*H*W) by default."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        for name, value in (("start_dim", start_dim), ("end_dim", end_dim)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise TypeError(f"Flatten: {name} must be an int, got {value!r}")
        self.start_dim, self.end_dim = int(start_dim), int(end_dim)

    def forward(self, x):
        return _shape.flatten(x, self.start_dim, self.end_dim)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"

    def get_config(self) -> dict:
        return {"start_dim": self.start_dim, "end_dim": self.end_dim}


class Unflatten(Module):
    """Split dim into unflattened_size, the inverse of Flatten: Unflatten(1, (32, 7, 7)) maps
    (N, 1568) to (N, 32, 7, 7)."""

    def __init__(self, dim: int, unflattened_size):
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, numbers.Integral):
            raise TypeError(f"Unflatten: dim must be an int, got {dim!r}")
        sizes = tuple(unflattened_size) if isinstance(unflattened_size, (tuple, list)) else None
        if not sizes or any(isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1 for n in sizes):
            raise ValueError(f"Unflatten: unflattened_size must be a non-empty tuple of positive ints, got "
                             f"{unflattened_size!r}")
        self.dim, self.unflattened_size = int(dim), tuple(int(n) for n in sizes)

    def forward(self, x):
        shape = tuple(x.shape)
        dim = self.dim + len(shape) if self.dim < 0 else self.dim
        if not 0 <= dim < len(shape):
            raise ValueError(f"Unflatten: dim={self.dim} is out of range for an input of shape {shape}")
        if shape[dim] != math.prod(self.unflattened_size):
            raise ValueError(f"Unflatten: dim {self.dim} of the input (shape {shape}) has size {shape[dim]}, "
                             f"expected {math.prod(self.unflattened_size)} = prod{self.unflattened_size}")
        return _shape.reshape(x, shape[:dim] + self.unflattened_size + shape[dim + 1:])

    def extra_repr(self) -> str:
        return f"dim={self.dim}, unflattened_size={self.unflattened_size}"

    def get_config(self) -> dict:
        return {"dim": self.dim, "unflattened_size": self.unflattened_size}
