"""Learning-rate schedulers with PyTorch's names, defaults and semantics.

An optimizer is anything with `param_groups`, a list of dicts that each hold an "lr". A
scheduler is built after the optimizer, and `scheduler.step()` is called once per epoch, after
that epoch's optimizer steps:

    scheduler = StepLR(optimizer, step_size=30, gamma=0.1)
    for epoch in range(100):
        train_one_epoch(...)
        scheduler.step()

`last_epoch` counts the step() calls (it is 0 right after construction, which sets the rate of
epoch 0). Construction records each group's starting rate as group["initial_lr"] (the base
rate, `base_lrs`); `get_last_lr()` gives the rates the scheduler last set; `state_dict()` /
`load_state_dict()` save and restore everything but the optimizer (and, for LambdaLR, plain
functions, which cannot be saved).

Like PyTorch's, StepLR, MultiStepLR, ExponentialLR and CosineAnnealingLR update the current
rate by a factor (a "chainable" form), so a change made to group["lr"] from outside, or by
another scheduler, carries on; without one, the rates equal the closed forms:
    StepLR              base * gamma ** (epoch // step_size)
    MultiStepLR         base * gamma ** (number of milestones <= epoch)
    ExponentialLR       base * gamma ** epoch
    CosineAnnealingLR   eta_min + (base - eta_min) * (1 + cos(pi * epoch / T_max)) / 2
    LambdaLR            base * lr_lambda(epoch)
CosineAnnealingLR takes an optional linear warm-up (a fastnn addition): for warmup_epochs
epochs the rate rises linearly from warmup_start_factor * base to base (PyTorch's LinearLR),
then the cosine runs over the following T_max epochs; this equals PyTorch's
SequentialLR([LinearLR(start_factor, total_iters=warmup_epochs), CosineAnnealingLR(T_max)],
milestones=[warmup_epochs]). ReduceLROnPlateau lowers the rate when a monitored value stops
improving; its step takes that value.
"""
from __future__ import annotations

import math
import numbers
import types
from collections import Counter

from fastnn.ops._common import check_int

__all__ = ["LRScheduler", "StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealingLR", "LambdaLR",
           "ReduceLROnPlateau"]


def _param_groups(optimizer, name: str) -> list:
    groups = getattr(optimizer, "param_groups", None)
    if not isinstance(groups, (list, tuple)) or not groups or \
            not all(isinstance(g, dict) and "lr" in g for g in groups):
        raise TypeError(f"{name}: optimizer must have param_groups, a non-empty list of dicts each with an "
                        f"'lr' key (as fastnn.optim and torch.optim optimizers do), got "
                        f"{type(optimizer).__name__}")
    return groups


def _real(value, name: str, fn: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise TypeError(f"{fn}: {name} must be a finite real number, got {value!r}")
    return float(value)


def _scalar(metrics) -> float:
    """A monitored value as a float: a number, or a one-element Tensor or array."""
    if hasattr(metrics, "item") and callable(metrics.item):  # Tensor, numpy and torch scalars/arrays
        try:
            return float(metrics.item())
        except (TypeError, ValueError, RuntimeError):
            pass
    elif isinstance(metrics, numbers.Real):
        return float(metrics)
    raise TypeError(f"ReduceLROnPlateau.step: metrics must be a number (or a one-element Tensor or array), "
                    f"got {type(metrics).__name__} {metrics!r}")


class LRScheduler:
    """Base class: subclasses define `_compute(initial)` returning the new rate of each group
    for epoch `self.last_epoch` (initial is True for the step made by the constructor)."""

    def __init__(self, optimizer, last_epoch: int = -1):
        name = type(self).__name__
        groups = _param_groups(optimizer, name)
        last_epoch = check_int(name, "last_epoch", last_epoch, -1)
        if last_epoch == -1:
            for group in groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            for i, group in enumerate(groups):
                if "initial_lr" not in group:
                    raise KeyError(f"{name}: param_groups[{i}] has no 'initial_lr', needed to resume with "
                                   f"last_epoch={last_epoch}; build the scheduler with last_epoch=-1 and "
                                   f"load its state_dict instead")
        self.optimizer = optimizer
        self.base_lrs = [group["initial_lr"] for group in groups]
        self.last_epoch = last_epoch
        self._step_count = 0
        self._advance(initial=True)

    def _compute(self, initial: bool) -> list:
        raise NotImplementedError

    def _advance(self, initial: bool = False) -> None:
        self._step_count += 1
        self.last_epoch += 1
        values = self._compute(initial)
        for group, lr in zip(self.optimizer.param_groups, values):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def step(self) -> None:
        """Advance one epoch and set each group's rate (call once per epoch, after training it)."""
        self._advance()

    def get_last_lr(self) -> list:
        """The rates set by the last step (or by construction), one per param group."""
        return list(self._last_lr)

    def _current(self) -> list:
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        """Everything but the optimizer; restore with load_state_dict on a new scheduler."""
        return {key: value for key, value in self.__dict__.items() if key != "optimizer"}

    def load_state_dict(self, state_dict: dict) -> None:
        self.__dict__.update(state_dict)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(last_epoch={self.last_epoch}, last_lr={self._last_lr})"


class StepLR(LRScheduler):
    """Multiply the rate by gamma every step_size epochs: base * gamma ** (epoch // step_size)."""

    def __init__(self, optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1):
        self.step_size = check_int("StepLR", "step_size", step_size, 1)
        self.gamma = _real(gamma, "gamma", "StepLR")
        super().__init__(optimizer, last_epoch)

    def _compute(self, initial):
        if self.last_epoch == 0 or self.last_epoch % self.step_size:
            return self._current()
        return [lr * self.gamma for lr in self._current()]


class MultiStepLR(LRScheduler):
    """Multiply the rate by gamma at each epoch in milestones (by gamma ** k for a milestone
    listed k times): base * gamma ** (number of milestones <= epoch)."""

    def __init__(self, optimizer, milestones, gamma: float = 0.1, last_epoch: int = -1):
        try:
            listed = list(milestones)
        except TypeError:
            raise TypeError(f"MultiStepLR: milestones must be a list of ints, got {milestones!r}") from None
        self.milestones = Counter(check_int("MultiStepLR", "milestones", m, 0) for m in listed)
        self.gamma = _real(gamma, "gamma", "MultiStepLR")
        super().__init__(optimizer, last_epoch)

    def _compute(self, initial):
        count = self.milestones.get(self.last_epoch, 0)
        if not count:
            return self._current()
        return [lr * self.gamma ** count for lr in self._current()]


class ExponentialLR(LRScheduler):
    """Multiply the rate by gamma every epoch: base * gamma ** epoch."""

    def __init__(self, optimizer, gamma: float, last_epoch: int = -1):
        self.gamma = _real(gamma, "gamma", "ExponentialLR")
        super().__init__(optimizer, last_epoch)

    def _compute(self, initial):
        if initial:
            return self._current()
        return [lr * self.gamma for lr in self._current()]


class CosineAnnealingLR(LRScheduler):
    """Cosine annealing from the base rate to eta_min over T_max epochs (then back up, as the
    cosine continues, exactly like PyTorch's), after an optional linear warm-up.

    warmup_epochs: epochs of linear warm-up before the cosine (default 0: none); the rate goes
    from warmup_start_factor * base at epoch 0 to base at epoch warmup_epochs, where the cosine
    starts: epoch warmup_epochs + t has eta_min + (base - eta_min) * (1 + cos(pi t / T_max)) / 2.
    """

    def __init__(self, optimizer, T_max: int, eta_min: float = 0.0, last_epoch: int = -1,
                 warmup_epochs: int = 0, warmup_start_factor: float = 1.0 / 3):
        self.T_max = check_int("CosineAnnealingLR", "T_max", T_max, 1)
        self.eta_min = _real(eta_min, "eta_min", "CosineAnnealingLR")
        self.warmup_epochs = check_int("CosineAnnealingLR", "warmup_epochs", warmup_epochs, 0)
        factor = _real(warmup_start_factor, "warmup_start_factor", "CosineAnnealingLR")
        if not 0.0 < factor <= 1.0:
            raise ValueError(f"CosineAnnealingLR: warmup_start_factor must be in (0, 1], got {factor}")
        self.warmup_start_factor = factor
        super().__init__(optimizer, last_epoch)

    def _compute(self, initial):
        epoch, warmup, current = self.last_epoch, self.warmup_epochs, self._current()
        if warmup and epoch <= warmup:
            # LinearLR: from start_factor * base at epoch 0 to base at epoch `warmup`, by ratios of
            # consecutive factors, so that changes made from outside carry on.
            f = self.warmup_start_factor
            if epoch == 0:
                return [lr * f for lr in current]
            if initial:
                return current
            return [lr * (1.0 + (1.0 - f) / (warmup * f + (epoch - 1) * (1.0 - f))) for lr in current]
        t = epoch - warmup
        if initial or t == 0:
            return current
        T, eta_min = self.T_max, self.eta_min
        if (t - 1 - T) % (2 * T) == 0:
            # leaving the minimum, where the ratio below would divide by zero: add the first step up
            return [lr + (base - eta_min) * (1 - math.cos(math.pi / T)) / 2
                    for lr, base in zip(current, self.base_lrs)]
        ratio = (1 + math.cos(math.pi * t / T)) / (1 + math.cos(math.pi * (t - 1) / T))
        return [ratio * (lr - eta_min) + eta_min for lr in current]


class LambdaLR(LRScheduler):
    """Rate = base * lr_lambda(epoch); lr_lambda is one function or one per param group.

    state_dict keeps the attributes of callable objects but not plain functions or lambdas,
    which stay those given to the constructor."""

    def __init__(self, optimizer, lr_lambda, last_epoch: int = -1):
        groups = _param_groups(optimizer, "LambdaLR")
        if isinstance(lr_lambda, (list, tuple)):
            if len(lr_lambda) != len(groups):
                raise ValueError(f"LambdaLR: expected one lr_lambda per param group ({len(groups)}), got "
                                 f"{len(lr_lambda)}")
            self.lr_lambdas = list(lr_lambda)
        else:
            self.lr_lambdas = [lr_lambda] * len(groups)
        for fn in self.lr_lambdas:
            if not callable(fn):
                raise TypeError(f"LambdaLR: lr_lambda must be callable (epoch -> factor), got {fn!r}")
        super().__init__(optimizer, last_epoch)

    def _compute(self, initial):
        return [base * fn(self.last_epoch) for fn, base in zip(self.lr_lambdas, self.base_lrs)]

    def state_dict(self) -> dict:
        state = {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "lr_lambdas")}
        state["lr_lambdas"] = [None if isinstance(fn, types.FunctionType) else dict(fn.__dict__)
                               for fn in self.lr_lambdas]
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        state = dict(state_dict)
        lambdas = state.pop("lr_lambdas", [None] * len(self.lr_lambdas))
        self.__dict__.update(state)
        for fn, saved in zip(self.lr_lambdas, lambdas):
            if saved is not None:
                fn.__dict__.update(saved)


class ReduceLROnPlateau:
    """Multiply the rate by `factor` when the monitored value has not improved for more than
    `patience` epochs: `scheduler.step(val_loss)` once per epoch.

    mode: 'min' (lower is better) or 'max'. An epoch improves when the value beats the best so
    far by more than threshold: relatively (best * (1 - threshold) in min mode, best * (1 +
    threshold) in max mode) with threshold_mode='rel', or by an absolute margin with 'abs'.
    After a reduction, `cooldown` epochs pass before bad epochs count again. No rate goes below
    min_lr (one value, or one per param group), and a reduction smaller than eps is skipped.
    """

    def __init__(self, optimizer, mode: str = "min", factor: float = 0.1, patience: int = 10,
                 threshold: float = 1e-4, threshold_mode: str = "rel", cooldown: int = 0, min_lr=0,
                 eps: float = 1e-8):
        name = "ReduceLROnPlateau"
        groups = _param_groups(optimizer, name)
        factor = _real(factor, "factor", name)
        if not factor < 1.0:
            raise ValueError(f"{name}: factor must be < 1.0 (new_lr = lr * factor), got {factor}")
        if isinstance(min_lr, (list, tuple)):
            if len(min_lr) != len(groups):
                raise ValueError(f"{name}: expected one min_lr per param group ({len(groups)}), got {len(min_lr)}")
            self.min_lrs = [_real(m, "min_lr", name) for m in min_lr]
            self.default_min_lr = None
        else:
            self.default_min_lr = _real(min_lr, "min_lr", name)
            self.min_lrs = [self.default_min_lr] * len(groups)
        self.optimizer = optimizer
        self.factor = factor
        self.patience = check_int(name, "patience", patience, 0)
        self.cooldown = check_int(name, "cooldown", cooldown, 0)
        self.eps = _real(eps, "eps", name)
        self._set_mode(mode, _real(threshold, "threshold", name), threshold_mode)
        self.last_epoch = 0
        self._last_lr = [group["lr"] for group in groups]
        self.best = self.mode_worse
        self.num_bad_epochs = 0
        self.cooldown_counter = 0

    def _set_mode(self, mode, threshold, threshold_mode) -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"ReduceLROnPlateau: mode must be 'min' or 'max', got {mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"ReduceLROnPlateau: threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}")
        self.mode, self.threshold, self.threshold_mode = mode, threshold, threshold_mode
        self.mode_worse = math.inf if mode == "min" else -math.inf

    def _is_better(self, value: float) -> bool:
        best, th = self.best, self.threshold
        if self.mode == "min":
            return value < (best * (1.0 - th) if self.threshold_mode == "rel" else best - th)
        return value > (best * (1.0 + th) if self.threshold_mode == "rel" else best + th)

    @property
    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def step(self, metrics) -> None:
        """Record this epoch's monitored value (a number, or a one-element Tensor/array)."""
        value = _scalar(metrics)
        self.last_epoch += 1
        if self._is_better(value):
            self.best = value
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.in_cooldown:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0  # bad epochs during the cooldown do not count
        if self.num_bad_epochs > self.patience:
            self._reduce()
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def _reduce(self) -> None:
        groups = self.optimizer.param_groups
        if len(groups) != len(self.min_lrs):
            if self.default_min_lr is None:
                raise RuntimeError(f"ReduceLROnPlateau: the optimizer now has {len(groups)} param groups but "
                                   f"min_lr lists {len(self.min_lrs)}; update scheduler.min_lrs")
            self.min_lrs = [self.default_min_lr] * len(groups)
        for group, min_lr in zip(groups, self.min_lrs):
            old = float(group["lr"])
            new = max(old * self.factor, min_lr)
            if old - new > self.eps:
                group["lr"] = new

    def get_last_lr(self) -> list:
        return list(self._last_lr)

    def state_dict(self) -> dict:
        return {key: value for key, value in self.__dict__.items() if key != "optimizer"}

    def load_state_dict(self, state_dict: dict) -> None:
        self.__dict__.update(state_dict)
        self._set_mode(self.mode, self.threshold, self.threshold_mode)

    def __repr__(self) -> str:
        return (f"ReduceLROnPlateau(mode={self.mode!r}, factor={self.factor}, patience={self.patience}, "
                f"best={self.best}, last_lr={self._last_lr})")
