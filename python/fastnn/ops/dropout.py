"""Inverted dropout: dropout (element-wise) and dropout2d (whole feature maps), seeded by fastnn's
generator.

The mask is drawn from fastnn's global generator (fastnn.manual_seed): 0 with probability p,
1 / (1 - p) otherwise; dropout2d draws one value per (sample, channel), broadcast over H and W.
"""
from __future__ import annotations

import numbers

import numpy as np

from fastnn._tensor import default_generator
from fastnn import _device
from fastnn.autograd import Function
from fastnn.ops._common import as_tensor

__all__ = ["dropout", "dropout2d"]


class Dropout(Function):
    """x * mask, mask broadcast against x (one value per element, or per channel). On a device
    array the mask, drawn on the host from the same generator as on the CPU, is expanded to x's
    shape and copied over (one copy per call: a dropout step cannot be graph-captured yet)."""
    cuda = True

    @staticmethod
    def forward(ctx, x, mask):
        if _device.is_device_array(x):
            mask = _device.to_device("dropout", np.ascontiguousarray(np.broadcast_to(mask, x.shape)), x.device)
            ctx.save_for_backward(mask)
            return _device.backend.binary(2, x, mask)
        ctx.save_for_backward(mask)
        return x * mask

    @staticmethod
    def backward(ctx, grad):
        mask, = ctx.saved_tensors
        if _device.is_device_array(grad):
            return _device.backend.binary(2, grad, mask), None
        return grad * mask, None


def check_probability(fn: str, p) -> float:
    """p as a float in [0, 1], else TypeError/ValueError naming fn."""
    if isinstance(p, bool) or not isinstance(p, numbers.Real):
        raise TypeError(f"{fn}: p must be a number in [0, 1], got {type(p).__name__}")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{fn}: dropout probability p must be in [0, 1], got p={p}")
    return float(p)


def _inverted_mask(shape, p: float) -> np.ndarray:
    """0 with probability p, 1 / (1 - p) otherwise, from fastnn's global generator."""
    if p == 1.0:
        return np.zeros(shape, dtype=np.float32)
    keep = default_generator().random(shape, dtype=np.float32) >= np.float32(p)
    return keep.astype(np.float32) * np.float32(1.0 / (1.0 - p))


def dropout(input, p: float = 0.5, training: bool = True):  # noqa: A002
    """Inverted dropout: zero each element with probability p and scale the others by 1/(1-p),
    with fastnn's global generator (fastnn.manual_seed); the identity when not training."""
    p = check_probability("dropout", p)
    x = as_tensor(input)
    if not training or p == 0.0:
        return x
    return Dropout.apply(x, _inverted_mask(x.shape, p))


def dropout2d(input, p: float = 0.5, training: bool = True):  # noqa: A002
    """Zero each channel of an (N, C, H, W) input (or (C, H, W) without a batch axis) with
    probability p and scale the kept ones by 1/(1-p); the identity when not training."""
    p = check_probability("dropout2d", p)
    x = as_tensor(input)
    if x.ndim not in (3, 4):
        raise ValueError(f"dropout2d: expected input of shape (N, C, H, W) or (C, H, W), got {tuple(x.shape)}")
    if not training or p == 0.0:
        return x
    return Dropout.apply(x, _inverted_mask(x.shape[:-2] + (1, 1), p))
