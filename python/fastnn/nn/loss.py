"""Loss modules: each holds its settings and calls its function in fastnn.nn.functional.

`loss_fn(input, target)`; `reduction` is 'none', 'mean' (the default) or 'sum'.
"""
from __future__ import annotations

import inspect

import numpy as np

from fastnn._tensor import Tensor
from fastnn.nn import functional as F
from fastnn.nn.module import Module


def _config_value(value):
    """A JSON-able form of a loss setting (class weights become lists)."""
    if isinstance(value, Tensor):
        value = value.data
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


class _Loss(Module):
    _settings = ("reduction",)

    def __init__(self, reduction: str = "mean"):
        super().__init__()
        self.reduction = F._check_reduction(type(self).__name__, reduction)

    def extra_repr(self) -> str:
        """The settings that differ from their defaults (arrays by their shape)."""
        defaults = inspect.signature(type(self).__init__).parameters
        shown = []
        for name in self._settings:
            value = getattr(self, name)
            default = defaults[name].default if name in defaults else None
            if value is None or (not isinstance(value, (Tensor, np.ndarray, list)) and value == default):
                continue
            if isinstance(value, (Tensor, np.ndarray, list)):
                shown.append(f"{name}=<array of shape {np.shape(_config_value(value))}>")
            else:
                shown.append(f"{name}={value!r}")
        return ", ".join(shown)

    def get_config(self) -> dict:
        return {name: _config_value(getattr(self, name)) for name in self._settings}


class MSELoss(_Loss):
    """(input - target)^2."""

    def forward(self, input, target):  # noqa: A002
        return F.mse_loss(input, target, reduction=self.reduction)


class L1Loss(_Loss):
    """|input - target|."""

    def forward(self, input, target):  # noqa: A002
        return F.l1_loss(input, target, reduction=self.reduction)


class HuberLoss(_Loss):
    """Quadratic within delta of the target, linear beyond."""
    _settings = ("reduction", "delta")

    def __init__(self, reduction: str = "mean", delta: float = 1.0):
        super().__init__(reduction)
        if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not delta > 0:
            raise ValueError(f"HuberLoss: delta must be a positive number, got delta={delta!r}")
        self.delta = float(delta)

    def forward(self, input, target):  # noqa: A002
        return F.huber_loss(input, target, reduction=self.reduction, delta=self.delta)


class BCELoss(_Loss):
    """Binary cross-entropy of probabilities (after a sigmoid); optional element weights."""
    _settings = ("weight", "reduction")

    def __init__(self, weight=None, reduction: str = "mean"):
        super().__init__(reduction)
        self.weight = weight

    def forward(self, input, target):  # noqa: A002
        return F.binary_cross_entropy(input, target, weight=self.weight, reduction=self.reduction)


class BCEWithLogitsLoss(_Loss):
    """Sigmoid + binary cross-entropy in one stable expression; pos_weight weighs positives."""
    _settings = ("weight", "reduction", "pos_weight")

    def __init__(self, weight=None, reduction: str = "mean", pos_weight=None):
        super().__init__(reduction)
        self.weight, self.pos_weight = weight, pos_weight

    def forward(self, input, target):  # noqa: A002
        return F.binary_cross_entropy_with_logits(input, target, weight=self.weight, reduction=self.reduction,
                                                  pos_weight=self.pos_weight)


class CrossEntropyLoss(_Loss):
    """Log-softmax + NLL of logits (one fused kernel): class indices or probabilities as target,
    class weights, ignore_index, label_smoothing."""
    _settings = ("weight", "ignore_index", "reduction", "label_smoothing")

    def __init__(self, weight=None, ignore_index: int = -100, reduction: str = "mean", label_smoothing: float = 0.0):
        super().__init__(reduction)
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"CrossEntropyLoss: label_smoothing must be in [0, 1], got {label_smoothing!r}")
        self.weight, self.ignore_index, self.label_smoothing = weight, ignore_index, float(label_smoothing)

    def forward(self, input, target):  # noqa: A002
        return F.cross_entropy(input, target, weight=self.weight, ignore_index=self.ignore_index,
                               reduction=self.reduction, label_smoothing=self.label_smoothing)


class NLLLoss(_Loss):
    """Negative log-likelihood of log-probabilities (after LogSoftmax) at class indices."""
    _settings = ("weight", "ignore_index", "reduction")

    def __init__(self, weight=None, ignore_index: int = -100, reduction: str = "mean"):
        super().__init__(reduction)
        self.weight, self.ignore_index = weight, ignore_index

    def forward(self, input, target):  # noqa: A002
        return F.nll_loss(input, target, weight=self.weight, ignore_index=self.ignore_index,
                          reduction=self.reduction)
