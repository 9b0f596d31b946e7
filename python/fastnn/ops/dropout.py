"""Inverted dropout: dropout (element-wise) and dropout2d (whole feature maps), seeded by
fastnn.manual_seed.

The mask is 0 with probability p and 1 / (1 - p) otherwise; dropout2d draws one value per
(sample, channel), broadcast over H and W. Masks come from Philox4x32-10 (`_C.dropout_mask`,
`_C.cuda.dropout_mask`): the k-th mask after manual_seed(s) is the same on the CPU and the GPU,
and is drawn where the tensor lives (nothing crosses from the host to a device).
"""
from __future__ import annotations

import numbers

from fastnn import _C, _device
from fastnn._tensor import next_dropout_draw
from fastnn.autograd import Function
from fastnn.ops._common import as_tensor

__all__ = ["dropout", "dropout2d"]

# While a CUDA graph is captured (fastnn.cuda.graphed_step): a device int64 (1,) holding the
# draw number, read and advanced by the mask kernel itself, so each replay draws fresh masks.
graph_draw_counter = None


class Dropout(Function):
    """x * mask, the mask of `mask_shape` (x's shape, or one value per channel) broadcast over x."""
    cuda = True

    @staticmethod
    def forward(ctx, x, mask_shape, p):
        if _device.is_device_array(x):
            counter = graph_draw_counter  # when set, the draw number is the counter's, not the host's
            seed, draw = next_dropout_draw(advance=counter is None)
            mask = _device.backend.dropout_mask(list(mask_shape), p, seed, draw, counter, x.device)
            ctx.save_for_backward(mask)
            return _device.backend.binary(_device.MUL, x, mask)
        mask = _C.dropout_mask(mask_shape, p, *next_dropout_draw())
        ctx.save_for_backward(mask)
        return x * mask

    @staticmethod
    def backward(ctx, grad):
        mask, = ctx.saved_tensors
        if _device.is_device_array(grad):
            return _device.backend.binary(_device.MUL, grad, mask), None, None
        return grad * mask, None, None


def check_probability(fn: str, p) -> float:
    """p as a float in [0, 1], else TypeError/ValueError naming fn."""
    if isinstance(p, bool) or not isinstance(p, numbers.Real):
        raise TypeError(f"{fn}: p must be a number in [0, 1], got {type(p).__name__}")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{fn}: dropout probability p must be in [0, 1], got p={p}")
    return float(p)


def dropout(input, p: float = 0.5, training: bool = True):  # noqa: A002
    """Inverted dropout: zero each element with probability p and scale the others by 1/(1-p),
    seeded by fastnn.manual_seed; the identity when not training."""
    p = check_probability("dropout", p)
    x = as_tensor(input)
    if not training or p == 0.0:
        return x
    return Dropout.apply(x, tuple(x.shape), p)


def dropout2d(input, p: float = 0.5, training: bool = True):  # noqa: A002
    """Zero each channel of an (N, C, H, W) input (or (C, H, W) without a batch axis) with
    probability p and scale the kept ones by 1/(1-p); the identity when not training."""
    p = check_probability("dropout2d", p)
    x = as_tensor(input)
    if x.ndim not in (3, 4):
        raise ValueError(f"dropout2d: expected input of shape (N, C, H, W) or (C, H, W), got {tuple(x.shape)}")
    if not training or p == 0.0:
        return x
    return Dropout.apply(x, tuple(x.shape[:-2]) + (1, 1), p)
