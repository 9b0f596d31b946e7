"""Weight initialisation, in place, with fastnn's global generator (seeded by fastnn.manual_seed).

Every function fills `tensor.data` in place and returns the tensor; the graph is not involved.
Fans follow PyTorch: for a weight of shape (out, in, *kernel), fan_in = in * prod(kernel) and
fan_out = out * prod(kernel).

- xavier_uniform_/xavier_normal_ (glorot_*): std = gain * sqrt(2 / (fan_in + fan_out))
- kaiming_uniform_/kaiming_normal_ (he_*): std = gain(nonlinearity, a) / sqrt(fan), fan = fan_in
  or fan_out by `mode`; the uniform versions draw from U(-sqrt(3) std, sqrt(3) std)
- lecun_uniform_: U(-sqrt(3 / fan_in), sqrt(3 / fan_in)); lecun_normal_: a normal truncated at two
  standard deviations and rescaled so its std is sqrt(1 / fan_in) (Keras's definitions)
- zeros_, ones_, constant_, uniform_, normal_, trunc_normal_
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from fastnn._tensor import Tensor, default_generator

__all__ = ["calculate_gain", "uniform_", "normal_", "trunc_normal_", "constant_", "zeros_", "ones_",
           "xavier_uniform_", "xavier_normal_", "glorot_uniform_", "glorot_normal_", "kaiming_uniform_",
           "kaiming_normal_", "he_uniform_", "he_normal_", "lecun_uniform_", "lecun_normal_"]

_LINEAR_LIKE = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
                "conv_transpose3d", "sigmoid", "identity")


def calculate_gain(nonlinearity: str, param=None) -> float:
    """The recommended gain for a nonlinearity (PyTorch's values): 1 for linear/conv/sigmoid,
    5/3 for tanh, sqrt(2) for relu, sqrt(2 / (1 + slope^2)) for leaky_relu (slope = param,
    default 0.01), 3/4 for selu."""
    if nonlinearity in _LINEAR_LIKE:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif isinstance(param, numbers.Real) and not isinstance(param, bool):
            slope = float(param)
        else:
            raise ValueError(f"calculate_gain: negative_slope {param!r} is not a valid number")
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}; expected one of "
                     f"{', '.join(_LINEAR_LIKE + ('tanh', 'relu', 'leaky_relu', 'selu'))}")


def _target(fn: str, tensor) -> np.ndarray:
    if not isinstance(tensor, Tensor):
        raise TypeError(f"{fn}: expected a fastnn Tensor or Parameter, got {type(tensor).__name__}")
    return tensor.data


def _fill(tensor: Tensor, values) -> Tensor:
    tensor.data[...] = values
    return tensor


def _fans(fn: str, tensor: Tensor) -> tuple:
    shape = _target(fn, tensor).shape
    if len(shape) < 2:
        raise ValueError(f"{fn}: fan in and fan out need a tensor of at least 2 dimensions "
                         f"(out_features, in_features, ...), got shape {shape}")
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def _number(fn: str, name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{fn}: {name} must be a number, got {value!r}")
    return float(value)


def uniform_(tensor: Tensor, a: float = 0.0, b: float = 1.0) -> Tensor:
    """Fill with U(a, b)."""
    data = _target("uniform_", tensor)
    a, b = _number("uniform_", "a", a), _number("uniform_", "b", b)
    if a > b:
        raise ValueError(f"uniform_: expected a <= b, got a={a}, b={b}")
    return _fill(tensor, default_generator().uniform(a, b, size=data.shape))


def normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0) -> Tensor:
    """Fill with N(mean, std^2)."""
    data = _target("normal_", tensor)
    mean, std = _number("normal_", "mean", mean), _number("normal_", "std", std)
    if std < 0:
        raise ValueError(f"normal_: std must be >= 0, got std={std}")
    return _fill(tensor, default_generator().normal(mean, std, size=data.shape))


def trunc_normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0) -> Tensor:
    """Fill with N(mean, std^2) restricted to [a, b] (out-of-range draws are drawn again)."""
    data = _target("trunc_normal_", tensor)
    mean, std = _number("trunc_normal_", "mean", mean), _number("trunc_normal_", "std", std)
    a, b = _number("trunc_normal_", "a", a), _number("trunc_normal_", "b", b)
    if std < 0 or a >= b or not a <= mean + 5 * std or not mean - 5 * std <= b:
        raise ValueError(f"trunc_normal_: need std >= 0 and a < b with [a, b] near the mean, got mean={mean}, "
                         f"std={std}, a={a}, b={b}")
    generator = default_generator()
    values = generator.normal(mean, std, size=data.shape)
    outside = (values < a) | (values > b)
    while outside.any():  # each round keeps most draws, so this ends quickly
        values[outside] = generator.normal(mean, std, size=int(outside.sum()))
        outside = (values < a) | (values > b)
    return _fill(tensor, values)


def constant_(tensor: Tensor, val: float) -> Tensor:
    _target("constant_", tensor)
    return _fill(tensor, _number("constant_", "val", val))


def zeros_(tensor: Tensor) -> Tensor:
    _target("zeros_", tensor)
    return _fill(tensor, 0.0)


def ones_(tensor: Tensor) -> Tensor:
    _target("ones_", tensor)
    return _fill(tensor, 1.0)


def xavier_uniform_(tensor: Tensor, gain: float = 1.0) -> Tensor:
    """U(-bound, bound) with bound = gain * sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio)."""
    fan_in, fan_out = _fans("xavier_uniform_", tensor)
    std = _number("xavier_uniform_", "gain", gain) * math.sqrt(2.0 / max(fan_in + fan_out, 1))
    bound = math.sqrt(3.0) * std
    return uniform_(tensor, -bound, bound)


def xavier_normal_(tensor: Tensor, gain: float = 1.0) -> Tensor:
    """N(0, std^2) with std = gain * sqrt(2 / (fan_in + fan_out))."""
    fan_in, fan_out = _fans("xavier_normal_", tensor)
    std = _number("xavier_normal_", "gain", gain) * math.sqrt(2.0 / max(fan_in + fan_out, 1))
    return normal_(tensor, 0.0, std)


def _kaiming_std(fn: str, tensor: Tensor, a, mode: str, nonlinearity: str) -> float:
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"{fn}: mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = _fans(fn, tensor)
    fan = fan_in if mode == "fan_in" else fan_out
    return calculate_gain(nonlinearity, a) / math.sqrt(max(fan, 1))


def kaiming_uniform_(tensor: Tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu") -> Tensor:
    """U(-bound, bound) with bound = gain * sqrt(3 / fan) (He et al.); `a` is the negative slope
    of the leaky_relu that follows. Linear's default is a=sqrt(5): bound = 1/sqrt(fan_in)."""
    bound = math.sqrt(3.0) * _kaiming_std("kaiming_uniform_", tensor, a, mode, nonlinearity)
    return uniform_(tensor, -bound, bound)


def kaiming_normal_(tensor: Tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu") -> Tensor:
    """N(0, std^2) with std = gain / sqrt(fan) (He et al.)."""
    return normal_(tensor, 0.0, _kaiming_std("kaiming_normal_", tensor, a, mode, nonlinearity))


def lecun_uniform_(tensor: Tensor) -> Tensor:
    """U(-sqrt(3 / fan_in), sqrt(3 / fan_in)): variance 1 / fan_in (LeCun, as in Keras)."""
    fan_in, _ = _fans("lecun_uniform_", tensor)
    bound = math.sqrt(3.0 / max(fan_in, 1))
    return uniform_(tensor, -bound, bound)


# The std of a standard normal truncated to [-2, 2]: dividing by it makes the truncated draw's std
# the one asked for (Keras's VarianceScaling does the same).
_TRUNCATED_STD = 0.87962566103423978


def lecun_normal_(tensor: Tensor) -> Tensor:
    """A normal truncated at two standard deviations with std sqrt(1 / fan_in) (LeCun, as Keras)."""
    fan_in, _ = _fans("lecun_normal_", tensor)
    std = math.sqrt(1.0 / max(fan_in, 1)) / _TRUNCATED_STD
    return trunc_normal_(tensor, 0.0, std, -2 * std, 2 * std)


glorot_uniform_ = xavier_uniform_
glorot_normal_ = xavier_normal_
he_uniform_ = kaiming_uniform_
he_normal_ = kaiming_normal_


def layer_default_(weight: Tensor, bias=None) -> None:
    """PyTorch's default initialisation of Linear and convolution layers: weight by
    kaiming_uniform_(a=sqrt(5)), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and bias (or None) from
    the same range, fan_in = weight.shape[1] * prod(weight.shape[2:])."""
    kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        fan_in = weight.shape[1] * math.prod(weight.shape[2:])
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        uniform_(bias, -bound, bound)
