"""dropout2d: channel-wise inverted dropout (whole feature maps), seeded by fastnn's generator.

The mask has one value per (sample, channel), drawn from fastnn's global generator
(fastnn.manual_seed): 0 with probability p, 1 / (1 - p) otherwise, broadcast over H and W.
"""
from __future__ import annotations

import numbers

import numpy as np

from fastnn._tensor import default_generator
from fastnn.autograd import Function
from fastnn.ops._common import as_tensor

__all__ = ["dropout2d"]


class Dropout2d(Function):
    @staticmethod
    def forward(ctx, x, mask):
        ctx.save_for_backward(mask)
        return x * mask

    @staticmethod
    def backward(ctx, grad):
        mask, = ctx.saved_tensors
        return grad * mask, None


def dropout2d(input, p: float = 0.5, training: bool = True):  # noqa: A002
    """Zero each channel of an (N, C, H, W) input (or (C, H, W) without a batch axis) with
    probability p and scale the kept ones by 1/(1-p); the identity when not training."""
    if isinstance(p, bool) or not isinstance(p, numbers.Real):
        raise TypeError(f"dropout2d: p must be a number in [0, 1], got {type(p).__name__}")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout2d: dropout probability p must be in [0, 1], got p={p}")
    x = as_tensor(input)
    if x.ndim not in (3, 4):
        raise ValueError(f"dropout2d: expected input of shape (N, C, H, W) or (C, H, W), got {tuple(x.shape)}")
    if not training or p == 0.0:
        return x
    shape = x.shape[:-2] + (1, 1)
    if p == 1.0:
        mask = np.zeros(shape, dtype=np.float32)
    else:
        keep = default_generator().random(shape, dtype=np.float32) >= np.float32(p)
        mask = keep.astype(np.float32) * np.float32(1.0 / (1.0 - p))
    return Dropout2d.apply(x, mask)
