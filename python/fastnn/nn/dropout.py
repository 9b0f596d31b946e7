"""Dropout2d: channel-wise dropout for convolutional feature maps (Dropout itself is in layers.py)."""
from __future__ import annotations

import numbers

from fastnn.nn import functional as F
from fastnn.nn.module import Module


class Dropout2d(Module):
    """In training mode, zero each channel of an (N, C, H, W) or (C, H, W) input with probability
    p (the whole H x W map) and scale the kept channels by 1/(1-p), drawn from fastnn's generator
    (fastnn.manual_seed); the identity in eval mode."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, numbers.Real):
            raise TypeError(f"Dropout2d: p must be a number in [0, 1], got {type(p).__name__}")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout2d: dropout probability p must be in [0, 1], got p={p}")
        self.p = float(p)

    def forward(self, x):
        return F.dropout2d(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"

    def get_config(self) -> dict:
        return {"p": self.p}
