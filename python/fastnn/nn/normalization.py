"""Batch normalization layers: BatchNorm1d ((N, C) or (N, C, L)) and BatchNorm2d ((N, C, H, W)).

Parameters and buffers carry PyTorch's names and shapes, so a PyTorch state dict loads: weight
(gamma, ones) and bias (beta, zeros) of shape (C,) when affine; running_mean (zeros),
running_var (ones) and num_batches_tracked (an int64 0-d numpy array) when
track_running_stats. As in PyTorch, training mode normalizes with the batch's statistics and
updates the running ones (momentum=None: a cumulative average over the batches seen, via
num_batches_tracked); evaluation mode uses the running statistics, unless there are none
(track_running_stats=False), in which case the batch's statistics are used in both modes.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from fastnn._tensor import Tensor
from fastnn.nn import functional as F
from fastnn.nn.module import Module, Parameter
from fastnn.ops._common import check_int


def _shape_text(shape: tuple) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


class _BatchNorm(Module):
    _ranks = ()        # accepted input ranks
    _letters = ""      # their shapes, for errors

    def __init__(self, num_features: int, eps: float = 1e-5, momentum=0.1, affine: bool = True,
                 track_running_stats: bool = True):
        super().__init__()
        fn = type(self).__name__
        num_features = check_int(fn, "num_features", num_features, 1)
        if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not (math.isfinite(eps) and eps >= 0):
            raise ValueError(f"{fn}: eps must be a finite number >= 0, got {eps!r}")
        if momentum is not None and (isinstance(momentum, bool) or not isinstance(momentum, numbers.Real)
                                     or not (math.isfinite(momentum) and momentum >= 0)):
            raise ValueError(f"{fn}: momentum must be a finite number >= 0 or None (cumulative average), "
                             f"got {momentum!r}")
        self.num_features = num_features
        self.eps = float(eps)
        self.momentum = None if momentum is None else float(momentum)
        self.affine = bool(affine)
        self.track_running_stats = bool(track_running_stats)
        if self.affine:
            self.weight = Parameter(np.ones(num_features, dtype=np.float32))
            self.bias = Parameter(np.zeros(num_features, dtype=np.float32))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if self.track_running_stats:
            self.register_buffer("running_mean", Tensor(np.zeros(num_features, dtype=np.float32)))
            self.register_buffer("running_var", Tensor(np.ones(num_features, dtype=np.float32)))
            self.register_buffer("num_batches_tracked", np.zeros((), dtype=np.int64))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self) -> None:
        """Running mean 0, running variance 1, no batch tracked (in place)."""
        if self.track_running_stats:
            self.running_mean.data[...] = 0
            self.running_var.data[...] = 1
            self.num_batches_tracked[...] = 0

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        if self.affine:
            self.weight.data[...] = 1
            self.bias.data[...] = 0

    def _check_input(self, x) -> None:
        fn = type(self).__name__
        shape = tuple(x.shape)
        if len(shape) not in self._ranks:
            raise ValueError(f"{fn}: expected input of shape {self._letters}, got {len(shape)}-D input of shape "
                             f"{_shape_text(shape)}")
        if shape[1] != self.num_features:
            raise ValueError(f"{fn}: expected {self.num_features} channels (dim 1) as num_features, got input of "
                             f"shape {_shape_text(shape)} with {shape[1]}")

    def forward(self, x):
        x = x if isinstance(x, Tensor) else Tensor(x)
        self._check_input(x)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked += 1
            if self.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked)
        batch_stats = self.training or self.running_mean is None
        # The running statistics are updated in training mode only when tracked; evaluation
        # mode reads them (when present).
        use_running = not self.training or self.track_running_stats
        return F.batch_norm(x, self.running_mean if use_running else None, self.running_var if use_running else None,
                            self.weight, self.bias, batch_stats, factor, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")

    def get_config(self) -> dict:
        return {"num_features": self.num_features, "eps": self.eps, "momentum": self.momentum,
                "affine": self.affine, "track_running_stats": self.track_running_stats}


class BatchNorm1d(_BatchNorm):
    """Batch normalization of (N, C) or (N, C, L) inputs over N (and L), per channel C."""
    _ranks = (2, 3)
    _letters = "(N, C) or (N, C, L)"


class BatchNorm2d(_BatchNorm):
    """Batch normalization of (N, C, H, W) inputs over N, H and W, per channel C."""
    _ranks = (4,)
    _letters = "(N, C, H, W)"
