"""Dropout2d: channel-wise dropout for convolutional feature maps (Dropout itself is in layers.py)."""
from __future__ import annotations

from fastnn.nn import functional as F
from fastnn.nn.module import Module
from fastnn.ops.dropout import check_probability


class Dropout2d(Module):
    """In training mode, zero each channel of an (N, C, H, W) or (C, H, W) input with probability
    p (the whole H x W map) and scale the kept channels by 1/(1-p), drawn from fastnn's generator
    (fastnn.manual_seed); the identity in eval mode."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        self.p = check_probability("Dropout2d", p)

    def forward(self, x):
        return F.dropout2d(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"

    def get_config(self) -> dict:
        return {"p": self.p}
