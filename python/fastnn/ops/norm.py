"""Batch normalization: batch_norm, one Function over `_C.batch_norm_forward/backward`
(csrc/cpu/norm.cpp).

Training mode normalizes each channel of an (N, C, *) input with the batch's mean and biased
variance (accumulated in double) and, when running statistics are given, updates them in place
with PyTorch's rule: r = (1 - momentum) r + momentum * stat, the variance unbiased
(times M / (M - 1), M = values per channel). Evaluation mode uses the running statistics. The
backward is one C++ pass per channel giving the input, weight and bias gradients; in evaluation
mode the statistics are constants (the gradient is weight * invstd * grad).
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from fastnn import _device
from fastnn._tensor import Tensor
from fastnn.autograd import Function
from fastnn.ops._common import as_tensor

__all__ = ["batch_norm"]


class BatchNorm(Function):
    cuda = True
    numpy_math = False

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, training, momentum, eps):
        x = _device.contiguous(x)
        try:
            y, mean, invstd = _device.kernels(x).batch_norm_forward(x, weight, bias, running_mean, running_var,
                                                                    training=training, momentum=momentum, eps=eps)
        except ValueError as error:
            raise ValueError(str(error).replace("batch_norm_forward", "batch_norm")) from None
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.training = training
        return y

    @staticmethod
    def backward(ctx, grad):
        x, weight, mean, invstd = ctx.saved_tensors
        grad_x, grad_w, grad_b = _device.kernels(grad).batch_norm_backward(_device.contiguous(grad), x, mean, invstd,
                                                                           weight, training=ctx.training)
        needs = ctx.needs_input_grad
        return (grad_x if needs[0] else None, grad_w if needs[1] else None, grad_b if needs[2] else None,
                None, None, None, None, None)


def _channel_array(name: str, value):
    """None, or the float32 (C,) array of a Tensor/array (running statistics are used in place)."""
    if value is None:
        return None
    array = value.data if isinstance(value, Tensor) else value
    if not isinstance(array, np.ndarray) and not _device.is_device_array(array):
        raise TypeError(f"batch_norm: {name} must be a Tensor, a float32 numpy array or None, "
                        f"got {type(value).__name__}")
    return array


def _number(name: str, value, low: float) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < low:
        raise ValueError(f"batch_norm: {name} must be a finite number >= {low}, got {value!r}")
    return float(value)


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training: bool = False,  # noqa: A002
               momentum: float = 0.1, eps: float = 1e-5):
    """Normalize each channel (axis 1) of an (N, C, *) input; see the module docstring.
    running_mean/running_var (C,) are updated in place when training; weight/bias (C,) are the
    affine gamma and beta (None: 1 and 0)."""
    x = as_tensor(input)
    if x.ndim < 2:
        raise ValueError(f"batch_norm: expected input of shape (N, C, *) with at least 2 dims, got shape "
                         f"{tuple(x.shape)}")
    w = None if weight is None else as_tensor(weight)
    b = None if bias is None else as_tensor(bias)
    rm = _channel_array("running_mean", running_mean)
    rv = _channel_array("running_var", running_var)
    for name, array in (("running_mean", rm), ("running_var", rv)):
        if array is not None and _device.name_of(array) != x.device:  # the kernels update them in place
            raise RuntimeError(f"batch_norm: {name} is on {_device.name_of(array)} but the input is on {x.device}; "
                               f"move them to one device with .to(device)")
    momentum = _number("momentum", momentum, 0.0)
    eps = _number("eps", eps, 0.0)
    if not training and (rm is None or rv is None):
        raise ValueError("batch_norm: running_mean and running_var must be given in evaluation mode "
                         "(training=False); pass training=True to normalize with the batch's statistics")
    return BatchNorm.apply(x, w, b, rm, rv, bool(training), momentum, eps)
