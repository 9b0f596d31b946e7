"""Keras-style callbacks for Model.fit.

A callback sees the training through hooks called by fit: on_train_begin/end(logs),
on_epoch_begin/end(epoch, logs) and on_batch_begin/end(batch, logs); epochs and batches count from
0. logs is a dict of floats such as {"loss": .., "accuracy": .., "val_loss": ..}, the same dict
passed to every callback in turn, so a callback may add entries for the ones after it.

What a callback may use of the model: `model.stop_training` (set it to end fit after this epoch),
`model.state_dict()`, `model.load_state_dict(d)`, `model.save(path)` and
`model.optimizer.param_groups` (a list of dicts with "lr"). fit calls `set_params(params)` first;
when params holds "metrics", the names of the logs fit will produce, a callback monitoring a name
outside them fails at once in on_train_begin, instead of warning at the end of the first epoch.
"""
from __future__ import annotations

import copy
import csv
import inspect
import math
import os
import sys
import warnings

import numpy as np

__all__ = ["Callback", "CallbackList", "History", "EarlyStopping", "ModelCheckpoint",
           "LearningRateScheduler", "CSVLogger"]

_MAX_WORDS = ("acc", "auc", "f1", "precision", "recall")


class Callback:
    """Base class: override the hooks you need; self.model and self.params are set by fit."""

    def __init__(self):
        self.model = None
        self.params = {}

    def set_model(self, model) -> None:
        self.model = model

    def set_params(self, params) -> None:
        self.params = dict(params or {})

    def on_train_begin(self, logs=None): pass
    def on_train_end(self, logs=None): pass
    def on_epoch_begin(self, epoch, logs=None): pass
    def on_epoch_end(self, epoch, logs=None): pass
    def on_batch_begin(self, batch, logs=None): pass
    def on_batch_end(self, batch, logs=None): pass


class CallbackList:
    """Several callbacks called in order as one."""

    def __init__(self, callbacks=None, model=None, params=None):
        self.callbacks = []
        for callback in callbacks or []:
            self.append(callback)
        if model is not None:
            self.set_model(model)
        if params is not None:
            self.set_params(params)

    def append(self, callback) -> None:
        if isinstance(callback, type) and issubclass(callback, Callback):
            raise TypeError(f"callbacks: got the class {callback.__name__}; pass an instance, "
                            f"e.g. {callback.__name__}()")
        if not isinstance(callback, Callback):
            raise TypeError(f"callbacks: expected fastnn.callbacks.Callback instances, got "
                            f"{type(callback).__name__}; subclass Callback for your own")
        self.callbacks.append(callback)

    def __iter__(self):
        return iter(self.callbacks)

    def __len__(self) -> int:
        return len(self.callbacks)

    def set_model(self, model) -> None:
        for callback in self.callbacks:
            callback.set_model(model)

    def set_params(self, params) -> None:
        for callback in self.callbacks:
            callback.set_params(params)

    def _call(self, hook, *args):
        logs = args[-1] if args and args[-1] is not None else {}
        for callback in self.callbacks:
            getattr(callback, hook)(*args[:-1], logs)

    def on_train_begin(self, logs=None): self._call("on_train_begin", logs)
    def on_train_end(self, logs=None): self._call("on_train_end", logs)
    def on_epoch_begin(self, epoch, logs=None): self._call("on_epoch_begin", epoch, logs)
    def on_epoch_end(self, epoch, logs=None): self._call("on_epoch_end", epoch, logs)
    def on_batch_begin(self, batch, logs=None): self._call("on_batch_begin", batch, logs)
    def on_batch_end(self, batch, logs=None): self._call("on_batch_end", batch, logs)


# ---------------------------------------------------------------------------------------------
# helpers

def _scalar(value):
    """A log value as a float when it is a number (Tensors and numpy scalars included)."""
    if isinstance(value, str):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def _resolve_mode(who: str, mode: str, monitor: str) -> str:
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"{who}: mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode == "auto":
        name = monitor.lower()
        return "max" if any(word in name for word in _MAX_WORDS) else "min"
    return mode


def _copy_state(state: dict) -> dict:
    """A copy of a state dict that later training steps cannot change (arrays copied)."""
    from fastnn._tensor import Tensor
    copied = {}
    for name, value in state.items():
        if isinstance(value, Tensor):
            copied[name] = np.array(value.data, copy=True)
        elif isinstance(value, np.ndarray):
            copied[name] = value.copy()
        else:
            copied[name] = copy.deepcopy(value)
    return copied


class _Monitoring(Callback):
    """Shared by the callbacks that watch one log value: its direction and the missing-key checks."""

    def __init__(self, who: str, monitor: str, mode: str):
        super().__init__()
        if not isinstance(monitor, str) or not monitor:
            raise TypeError(f"{who}: monitor must be a non-empty str naming a log value, got {monitor!r}")
        self.monitor = monitor
        self.mode = _resolve_mode(who, mode, monitor)
        self._who = who
        self._warned = False

    def _check_monitor_known(self) -> None:
        self._warned = False
        names = self.params.get("metrics")
        if names is not None and self.monitor not in names:
            raise ValueError(f"{self._who}: monitor={self.monitor!r} is not among the values training "
                             f"will log: {sorted(names)}"
                             + ("; pass validation_data or validation_split to get val_ values"
                                if self.monitor.startswith("val_") else ""))

    def _current(self, logs):
        value = (logs or {}).get(self.monitor)
        if value is None:
            if not self._warned:
                self._warned = True
                warnings.warn(f"{self._who} is conditioned on {self.monitor!r}, which is not in the logs; "
                              f"available: {sorted(logs or {})}", RuntimeWarning, stacklevel=3)
            return None
        return _scalar(value)

    def _better(self, value: float, reference: float, min_delta: float = 0.0) -> bool:
        if self.mode == "min":
            return value + min_delta < reference
        return value - min_delta > reference


# ---------------------------------------------------------------------------------------------
# History

class History(Callback):
    """Records the logs of every epoch: `history` maps each name to its list of values, `epoch`
    lists the epoch numbers (from 0). fit returns it. Fitting the same model again with the same
    History appends to it."""

    def __init__(self):
        super().__init__()
        self.history = {}
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for name, value in (logs or {}).items():
            self.history.setdefault(name, []).append(_scalar(value))

    def plot(self, keys=None, path=None):
        """Draw one panel per quantity (loss, each metric), the training curve and its val_ twin on
        the same axes, against the epoch number. keys picks quantities by their training name
        ("loss", "accuracy"); by default all of them. Saves the figure to path when given, and
        returns the matplotlib Figure (show it with matplotlib.pyplot.show())."""
        if not self.history:
            raise ValueError("History.plot: nothing to plot, the history is empty (fit the model first)")
        bases = []
        for name in self.history:
            base = name[4:] if name.startswith("val_") else name
            if base not in bases:
                bases.append(base)
        if keys is None:
            keys = bases
        else:
            keys = [keys] if isinstance(keys, str) else list(keys)
            unknown = [k for k in keys if k not in bases]
            if unknown:
                raise ValueError(f"History.plot: no values recorded for {unknown}; recorded: {bases}")
        if not keys:
            raise ValueError("History.plot: keys is empty; nothing to plot")
        try:
            from matplotlib.figure import Figure
            from matplotlib.ticker import MaxNLocator
        except ImportError:
            raise ImportError("History.plot needs matplotlib, which is not installed: "
                              "pip install matplotlib (or pip install fastnn[plot])") from None
        if path is None:
            import matplotlib.pyplot as plt  # a figure the user can show
            figure = plt.figure(figsize=(5 * len(keys), 3.5))
        else:
            figure = Figure(figsize=(5 * len(keys), 3.5))  # no GUI backend needed to save
        axes = figure.subplots(1, len(keys), squeeze=False)[0]
        for ax, key in zip(axes, keys):
            for name in (key, "val_" + key):
                values = self.history.get(name)
                if values:
                    epochs = ([e + 1 for e in self.epoch] if len(values) == len(self.epoch)
                              else list(range(1, len(values) + 1)))
                    ax.plot(epochs, values, marker="o", markersize=3, label=name)
            ax.set_title(key)
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(True, alpha=0.3)
            ax.legend()
        figure.tight_layout()
        if path is not None:
            figure.savefig(os.fspath(path))
        return figure


# ---------------------------------------------------------------------------------------------
# EarlyStopping

class EarlyStopping(_Monitoring):
    """Stop training when `monitor` has not improved for `patience` epochs (Keras semantics).

    An improvement beats the best value so far by more than min_delta. mode 'auto' maximizes names
    containing acc, auc, f1, precision or recall, and minimizes the rest. With a baseline, the
    patience count restarts only on epochs that also beat the baseline, so training stops after
    `patience` epochs unless the baseline is beaten. With restore_best_weights, the weights of the
    best epoch are put back at the end of training (those of the first epoch when none improved).
    After training, stopped_epoch is the epoch at which it stopped (0 when it did not) and
    best_epoch the best one.
    """

    def __init__(self, monitor="val_loss", min_delta=0, patience=0, mode="auto",
                 restore_best_weights=False, baseline=None, verbose=0):
        super().__init__("EarlyStopping", monitor, mode)
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise ValueError(f"EarlyStopping: patience must be an int >= 0, got {patience!r}")
        self.min_delta = abs(float(min_delta))
        self.patience = patience
        self.restore_best_weights = bool(restore_best_weights)
        self.baseline = None if baseline is None else float(baseline)
        self.verbose = verbose
        self._reset()

    def _reset(self):
        self.wait = 0
        self.stopped_epoch = 0
        self.best_epoch = 0
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_weights = None

    def on_train_begin(self, logs=None):
        self._reset()
        self._check_monitor_known()

    def on_epoch_end(self, epoch, logs=None):
        current = self._current(logs)
        if current is None:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = _copy_state(self.model.state_dict())  # fallback if nothing improves
        self.wait += 1
        if self._better(current, self.best, self.min_delta):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights:
                self.best_weights = _copy_state(self.model.state_dict())
            if self.baseline is None or self._better(current, self.baseline, self.min_delta):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose > 0:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping", file=sys.stdout)
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                print(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.",
                      file=sys.stdout)
            self.model.load_state_dict(self.best_weights)


# ---------------------------------------------------------------------------------------------
# ModelCheckpoint

class ModelCheckpoint(_Monitoring):
    """Save the model at the end of each epoch, or only when `monitor` improves (save_best_only).

    filepath may hold format fields filled from the epoch (counted from 1, as displayed) and the
    logs: "ckpt/epoch{epoch:02d}-{val_loss:.4f}.safetensors". Its directory is created when
    missing. save_weights_only=True writes model.state_dict() with fastnn.io.save (safetensors);
    False calls model.save(path), which stores the architecture too.
    """

    def __init__(self, filepath, monitor="val_loss", save_best_only=False, mode="auto",
                 save_weights_only=True, verbose=0):
        super().__init__("ModelCheckpoint", monitor, mode)
        self.filepath = os.fspath(filepath)
        self.save_best_only = bool(save_best_only)
        self.save_weights_only = bool(save_weights_only)
        self.verbose = verbose
        self.best = math.inf if self.mode == "min" else -math.inf
        self.last_saved = None

    def on_train_begin(self, logs=None):
        if self.save_best_only:
            self._check_monitor_known()

    def _path(self, epoch, logs) -> str:
        try:
            fields = {name: _scalar(value) for name, value in logs.items()}
            fields["epoch"] = epoch + 1
            return self.filepath.format(**fields)
        except KeyError as error:
            raise ValueError(f"ModelCheckpoint: filepath {self.filepath!r} names {error.args[0]!r}, which "
                             f"is not in the logs (available: epoch, {', '.join(sorted(logs))})") from None
        except (ValueError, IndexError) as error:
            raise ValueError(f"ModelCheckpoint: cannot format filepath {self.filepath!r}: {error}") from None

    def _save(self, path) -> None:
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        if self.save_weights_only:
            from fastnn import io
            io.save(self.model.state_dict(), path)
        else:
            self.model.save(path)
        self.last_saved = path

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if not self.save_best_only:
            path = self._path(epoch, logs)
            if self.verbose > 0:
                print(f"Epoch {epoch + 1}: saving model to {path}", file=sys.stdout)
            self._save(path)
            return
        current = self._current(logs)
        if current is None:
            return
        if self._better(current, self.best):
            path = self._path(epoch, logs)
            if self.verbose > 0:
                print(f"Epoch {epoch + 1}: {self.monitor} improved from {self.best:.5f} to {current:.5f}, "
                      f"saving model to {path}", file=sys.stdout)
            self.best = current
            self._save(path)
        elif self.verbose > 0:
            print(f"Epoch {epoch + 1}: {self.monitor} did not improve from {self.best:.5f}", file=sys.stdout)


# ---------------------------------------------------------------------------------------------
# LearningRateScheduler

class LearningRateScheduler(Callback):
    """Set the learning rate before each epoch.

    schedule is either a function schedule(epoch, lr) -> new lr (epoch from 0; a one-argument
    schedule(epoch) also works), called for each of model.optimizer.param_groups with that group's
    lr, or a fastnn.optim.lr_scheduler object, whose step() is called at the end of each epoch (a
    scheduler whose step needs a value, like ReduceLROnPlateau, gets logs[monitor]). Either way the
    lr of the first group is added to the epoch's logs as "lr".
    """

    def __init__(self, schedule, verbose=0, monitor="val_loss"):
        super().__init__()
        step = getattr(schedule, "step", None)
        self._is_scheduler = callable(step) and not inspect.isroutine(schedule)
        if not self._is_scheduler and not callable(schedule):
            raise TypeError(f"LearningRateScheduler: schedule must be a function (epoch, lr) -> lr or an "
                            f"lr_scheduler object with step(), got {type(schedule).__name__}")
        self.schedule = schedule
        self.verbose = verbose
        self.monitor = monitor
        self._step_wants_value = self._is_scheduler and _required_positional(step) >= 1
        self._two_arguments = not self._is_scheduler and _positional_capacity(schedule) >= 2
        self._warned = False

    def _groups(self):
        optimizer = getattr(self.model, "optimizer", None)
        groups = getattr(optimizer, "param_groups", None)
        if not groups:
            raise ValueError("LearningRateScheduler: the model has no optimizer with param_groups; "
                             "compile the model with an optimizer first")
        return groups

    def on_train_begin(self, logs=None):
        self._warned = False
        self._groups()  # fails early, with the fix, when there is no optimizer
        own = getattr(self.schedule, "optimizer", None)
        if self._is_scheduler and own is not None and own is not self.model.optimizer:
            raise ValueError("LearningRateScheduler: the lr_scheduler was built for another optimizer "
                             "than the model's; build it on model.optimizer")

    def on_epoch_begin(self, epoch, logs=None):
        if self._is_scheduler:
            return
        for index, group in enumerate(self._groups()):
            lr = float(group["lr"])
            new = self.schedule(epoch, lr) if self._two_arguments else self.schedule(epoch)
            try:
                new = float(new)
            except (TypeError, ValueError):
                raise ValueError(f"LearningRateScheduler: schedule({epoch}, {lr}) must return a number, "
                                 f"got {new!r}") from None
            if not math.isfinite(new) or new < 0:
                raise ValueError(f"LearningRateScheduler: schedule({epoch}, {lr}) returned {new}; a learning "
                                 f"rate must be finite and >= 0")
            group["lr"] = new
            if self.verbose > 0 and index == 0:
                print(f"Epoch {epoch + 1}: LearningRateScheduler setting learning rate to {new}.",
                      file=sys.stdout)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["lr"] = float(self._groups()[0]["lr"])  # the rate this epoch trained with
        if not self._is_scheduler:
            return
        if self._step_wants_value:
            value = (logs or {}).get(self.monitor)
            if value is None:
                if not self._warned:
                    self._warned = True
                    warnings.warn(f"LearningRateScheduler: the scheduler's step needs {self.monitor!r}, which "
                                  f"is not in the logs (available: {sorted(logs or {})}); pass monitor=...",
                                  RuntimeWarning, stacklevel=2)
                return
            self.schedule.step(_scalar(value))
        else:
            self.schedule.step()
        if self.verbose > 0:
            print(f"Epoch {epoch + 1}: learning rate is now {self._groups()[0]['lr']}.", file=sys.stdout)


def _parameters(function):
    try:
        return list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):  # some builtins have no signature
        return None


def _required_positional(function) -> int:
    """How many positional arguments function requires (0 when it cannot be told)."""
    parameters = _parameters(function) or []
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
               for p in parameters)


def _positional_capacity(function) -> float:
    """How many positional arguments function accepts (2 when it cannot be told)."""
    parameters = _parameters(function)
    if parameters is None:
        return 2
    if any(p.kind is p.VAR_POSITIONAL for p in parameters):
        return math.inf
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in parameters)


# ---------------------------------------------------------------------------------------------
# CSVLogger

class CSVLogger(Callback):
    """Write one CSV row per epoch: the epoch (from 0) and every log value, in columns sorted by
    name. With append=True rows are added to an existing file under its header (a value the
    header lacks is an error; a column the logs lack is written as NA). The file is flushed after
    each row and closed at the end of training."""

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        if not isinstance(separator, str) or len(separator) != 1:
            raise ValueError(f"CSVLogger: separator must be one character, got {separator!r}")
        self.filename = os.fspath(filename)
        self.separator = separator
        self.append = bool(append)
        self.keys = None
        self._file = None
        self._writer = None

    def on_train_begin(self, logs=None):
        self.keys = None
        existing = None
        if self.append and os.path.exists(self.filename):
            with open(self.filename, newline="") as file:
                existing = next(csv.reader(file, delimiter=self.separator), None)
        self._file = open(self.filename, "a" if self.append else "w", newline="")
        self._writer = None
        if existing:
            self.keys = existing[1:] if existing[0] == "epoch" else existing
            self._writer = csv.DictWriter(self._file, ["epoch"] + self.keys, delimiter=self.separator,
                                          restval="NA")

    def on_epoch_end(self, epoch, logs=None):
        if self._file is None:
            raise RuntimeError("CSVLogger: on_epoch_end called before on_train_begin")
        logs = logs or {}
        if self._writer is None:
            self.keys = sorted(logs)
            self._writer = csv.DictWriter(self._file, ["epoch"] + self.keys, delimiter=self.separator,
                                          restval="NA")
            self._writer.writeheader()
        extra = sorted(set(logs) - set(self.keys))
        if extra:
            self.on_train_end()  # the error ends training: do not leave the file open
            raise ValueError(f"CSVLogger: {self.filename!r} has the columns {self.keys}, the logs add {extra}; "
                             f"log to a new file or use append=False")
        row = {"epoch": epoch}
        for name, value in logs.items():
            row[name] = _scalar(value)
        self._writer.writerow(row)
        self._file.flush()

    def on_train_end(self, logs=None):
        if self._file is not None:
            self._file.close()
        self._file = None
        self._writer = None
