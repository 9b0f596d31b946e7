"""The Keras-style training loop: compile, fit, evaluate, predict and save, on any Module.

    model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
    model.compile(optimizer="adam", loss="cross_entropy", metrics=["accuracy"])
    history = model.fit(x_train, y_train, batch_size=64, epochs=5, validation_split=0.1)
    model.evaluate(x_test, y_test)            # {"loss": ..., "accuracy": ...}
    probabilities = model.predict(x_test)     # numpy array, in eval mode under no_grad

`nn.Module` inherits these methods from `TrainingMixin`, so a user's own Module subclass trains
the same way. One training step is the PyTorch loop: forward, loss, zero_grad, backward, one
fused optimizer step. Logged values are means over the samples seen (a short last batch counts
for what it holds), the loss as the loss function reduces it per batch, metrics on the batch's
outputs.
"""
from __future__ import annotations

import sys

import numpy as np

from fastnn._tensor import Tensor, no_grad

__all__ = ["TrainingMixin"]

# Names compile() accepts for the loss, beside a callable loss(output, target) -> Tensor.
_LOSS_NAMES = {
    "cross_entropy": "cross_entropy", "crossentropy": "cross_entropy",
    "sparse_categorical_crossentropy": "cross_entropy", "categorical_crossentropy": "cross_entropy",
    "nll": "nll_loss", "nll_loss": "nll_loss",
    "mse": "mse_loss", "mse_loss": "mse_loss", "mean_squared_error": "mse_loss",
    "mae": "l1_loss", "l1": "l1_loss", "l1_loss": "l1_loss", "mean_absolute_error": "l1_loss",
    "bce": "binary_cross_entropy", "binary_crossentropy": "binary_cross_entropy",
    "binary_cross_entropy": "binary_cross_entropy",
    "bce_with_logits": "binary_cross_entropy_with_logits",
    "binary_cross_entropy_with_logits": "binary_cross_entropy_with_logits",
    "huber": "huber_loss", "huber_loss": "huber_loss",
}
# The loss modules of fastnn.nn, by class name, and the functional loss each one computes.
_LOSS_MODULES = {
    "CrossEntropyLoss": "cross_entropy", "NLLLoss": "nll_loss", "MSELoss": "mse_loss", "L1Loss": "l1_loss",
    "BCELoss": "binary_cross_entropy", "BCEWithLogitsLoss": "binary_cross_entropy_with_logits",
    "HuberLoss": "huber_loss",
}
# Losses whose targets are class indices (int64), not values shaped like the output.
_INDEX_TARGET_LOSSES = {"cross_entropy", "nll_loss"}

_OPTIMIZER_NAMES = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "rmsprop": "RMSprop",
                    "adagrad": "Adagrad"}


class TrainingMixin:
    """compile / fit / evaluate / predict / save for nn.Module."""

    # ---- compile -------------------------------------------------------------------------------

    def compile(self, optimizer="adam", loss="cross_entropy", metrics=None, **optimizer_options):
        """Choose the optimizer, the loss and the metrics that fit() and evaluate() use.

        optimizer: an optimizer built on this model's parameters, or a name ("adam", "adamw",
            "sgd", "rmsprop", "adagrad") built here with `optimizer_options` (e.g. lr=1e-3).
        loss: a name ("cross_entropy", "mse", "bce_with_logits", ...) or a callable
            loss(output, target) -> scalar Tensor.
        metrics: names ("accuracy", "top5_accuracy") or callables metric(output, target) -> float,
            where output and target are numpy arrays.
        """
        if metrics is None:
            metrics = []
        elif isinstance(metrics, str) or callable(metrics):
            metrics = [metrics]  # one metric given alone, not a list of its characters
        optimizer = _make_optimizer(self, optimizer, optimizer_options)
        loss_name, loss_fn = _make_loss(loss)
        metric_fns = [_make_metric(m, loss_name) for m in metrics]
        names = [name for name, _ in metric_fns]
        repeated = sorted({name for name in names if names.count(name) > 1 or name == "loss"})
        if repeated:
            raise ValueError(f"compile: metrics must have distinct names other than 'loss', got {names}; "
                             f"name a function metric with def or set its __name__")
        # Plain attributes, not registered children: a loss given as a Module (CrossEntropyLoss())
        # is not a layer of the model (Sequential would run it in forward, save it, list it).
        for name, value in (("optimizer", optimizer), ("loss_name", loss_name), ("loss_fn", loss_fn),
                            ("metric_fns", metric_fns)):
            object.__setattr__(self, name, value)
        self.stop_training = False
        return self

    def _check_compiled(self, who: str) -> None:
        if getattr(self, "loss_fn", None) is None:
            raise RuntimeError(f"{who}: call model.compile(optimizer=..., loss=...) first")

    # ---- fit -----------------------------------------------------------------------------------

    def fit(self, x, y=None, batch_size=32, epochs=1, validation_data=None, validation_split=0.0,
            shuffle=True, callbacks=None, verbose=1, seed=None, initial_epoch=0):
        """Train for `epochs` passes over (x, y) and return a History.

        x, y: arrays (or Tensors) with the samples along the first axis; or x a DataLoader
            yielding (inputs, targets) batches, with y None.
        validation_data: (x_val, y_val), evaluated after each epoch ("val_" logs);
            validation_split: the last fraction of (x, y) held out instead (before shuffling,
            as Keras does).
        shuffle: a new permutation each epoch, from `seed` when given.
        verbose: 0 silent, 1 progress bar, 2 one line per epoch.
        """
        from fastnn.callbacks import CallbackList, History
        from fastnn.progress import ProgressBar

        self._check_compiled("fit")
        _check_positive_int("batch_size", batch_size)
        _check_positive_int("epochs", epochs, allow_zero=True)
        if verbose not in (0, 1, 2):
            raise ValueError(f"fit: verbose must be 0, 1 or 2, got {verbose!r}")

        if _is_loader(x):
            if y is not None:
                raise ValueError("fit: when x is a DataLoader, y must be None (the loader yields targets)")
            if validation_split:
                raise ValueError("fit: validation_split needs arrays; pass validation_data with a DataLoader")
            train_loader = x
        else:
            x, y = _as_arrays("fit", x, y)
            if (isinstance(validation_split, bool) or not isinstance(validation_split, (int, float, np.number))
                    or not 0.0 <= validation_split < 1.0):
                raise ValueError(f"fit: validation_split must be a number in [0, 1), got {validation_split!r}")
            if validation_split:
                if validation_data is not None:
                    raise ValueError("fit: give validation_data or validation_split, not both")
                n_val = int(round(len(x) * validation_split))
                if n_val == 0 or n_val == len(x):
                    raise ValueError(f"fit: validation_split={validation_split} of {len(x)} samples "
                                     f"leaves {n_val} for validation and {len(x) - n_val} for training")
                validation_data = (x[-n_val:], y[-n_val:])
                x, y = x[:-n_val], y[:-n_val]
            train_loader = _ArrayBatches(x, y, batch_size, shuffle, seed)
        if validation_data is not None and not _is_loader(validation_data):
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise ValueError("fit: validation_data must be a pair (x_val, y_val) or a DataLoader")
            # checked now, not after the first epoch of training
            validation_data = _as_arrays("fit: validation_data", *validation_data)

        history = History()
        log_names = ["loss"] + [name for name, _ in self.metric_fns]
        if validation_data is not None:
            log_names += ["val_" + name for name in log_names]
        callback_list = CallbackList(callbacks, model=self,
                                     params={"epochs": epochs, "steps": len(train_loader), "verbose": verbose,
                                             "batch_size": batch_size, "metrics": log_names})
        callback_list.append(history)
        self.history = history
        self.stop_training = False

        callback_list.on_train_begin()
        for epoch in range(initial_epoch, epochs):
            if self.stop_training:
                break
            if verbose:
                print(f"Epoch {epoch + 1}/{epochs}", file=sys.stdout, flush=True)
            callback_list.on_epoch_begin(epoch)
            bar = ProgressBar(len(train_loader), verbose=verbose)
            logs = self._train_epoch(train_loader, callback_list, bar)
            if validation_data is not None:
                val_logs = self.evaluate(*_pair(validation_data), batch_size=batch_size, verbose=0,
                                         return_dict=True)
                logs.update({"val_" + k: v for k, v in val_logs.items()})
            bar.finish(logs)
            callback_list.on_epoch_end(epoch, logs)
        callback_list.on_train_end()
        return history

    def _device(self) -> str:
        """Where the model's parameters are: batches go there, outputs come back for the metrics."""
        first = next(iter(self.parameters()), None)
        return "cpu" if first is None else first.device

    def _train_epoch(self, loader, callback_list, bar) -> dict:
        self.train()
        device = self._device()
        totals, seen = {}, 0
        for step, (xb, yb) in enumerate(loader):
            callback_list.on_batch_begin(step)
            inputs, targets = _input_tensor(xb, device), _target_array(yb, self.loss_name)
            output = self(inputs)
            loss = self.loss_fn(output, _target_tensor(targets, device, self.loss_name))
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()

            n = len(targets)
            batch_logs = {"loss": float(loss.item())}
            out = output.detach()._host()
            for name, fn in self.metric_fns:
                batch_logs[name] = float(fn(out, targets))
            for k, v in batch_logs.items():
                totals[k] = totals.get(k, 0.0) + v * n
            seen += n
            bar.update(step + 1, batch_logs)
            callback_list.on_batch_end(step, batch_logs)
            if self.stop_training:
                break
        return {k: v / max(seen, 1) for k, v in totals.items()}

    # ---- evaluate / predict --------------------------------------------------------------------

    def evaluate(self, x, y=None, batch_size=32, verbose=0, return_dict=True):
        """Loss and metrics over (x, y) in eval mode under no_grad: a dict {"loss": ..., name: ...}
        (or, with return_dict=False, the list of values in that order)."""
        self._check_compiled("evaluate")
        _check_positive_int("batch_size", batch_size)
        if _is_loader(x) and y is not None:
            raise ValueError("evaluate: when x is a DataLoader, y must be None (the loader yields targets)")
        loader = x if _is_loader(x) else _ArrayBatches(*_as_arrays("evaluate", x, y), batch_size, False, None)
        was_training = self.training
        self.eval()
        device = self._device()
        totals, seen = {}, 0
        try:
            with no_grad():
                for xb, yb in loader:
                    targets = _target_array(yb, self.loss_name)
                    output = self(_input_tensor(xb, device))
                    loss = self.loss_fn(output, _target_tensor(targets, device, self.loss_name))
                    n = len(targets)
                    values = {"loss": float(loss.item())}
                    out = output._host()
                    for name, fn in self.metric_fns:
                        values[name] = float(fn(out, targets))
                    for k, v in values.items():
                        totals[k] = totals.get(k, 0.0) + v * n
                    seen += n
        finally:
            self.train(was_training)
        if seen == 0:
            raise ValueError("evaluate: no samples (x is empty)")
        logs = {k: v / seen for k, v in totals.items()}
        if verbose:
            print(" - ".join(f"{k}: {v:.4f}" for k, v in logs.items()), flush=True)
        return logs if return_dict else list(logs.values())

    def predict(self, x, batch_size=32, verbose=0):
        """The model's outputs for x as one numpy array, computed in batches in eval mode under
        no_grad (the model's mode is restored afterwards)."""
        _check_positive_int("batch_size", batch_size)
        if _is_loader(x):
            batches = (xb[0] if isinstance(xb, (tuple, list)) else xb for xb in x)
        else:
            x = _as_array("predict", "x", x)
            batches = (x[i:i + batch_size] for i in range(0, len(x), batch_size))
        was_training = self.training
        self.eval()
        device = self._device()
        outputs = []
        try:
            with no_grad():
                for xb in batches:
                    outputs.append(np.array(self(_input_tensor(xb, device))._host(), copy=True))
        finally:
            self.train(was_training)
        if not outputs:
            raise ValueError("predict: no samples (x is empty)")
        return np.concatenate(outputs, axis=0)

    # ---- save ----------------------------------------------------------------------------------

    def save(self, path, metadata=None):
        """Weights and, for a Sequential of built-in layers, the architecture as JSON, in one
        safetensors file: fastnn.nn.load_model(path) rebuilds it without this class."""
        from fastnn.io import save_model
        save_model(self, path, metadata=metadata)


# ---- batches -----------------------------------------------------------------------------------

class _ArrayBatches:
    """(x, y) batches of arrays: a fresh permutation per pass when shuffling (the permutation
    gathers each batch with one fancy index, no per-sample Python)."""

    def __init__(self, x, y, batch_size, shuffle, seed):
        self.x, self.y, self.batch_size, self.shuffle = x, y, batch_size, shuffle
        self.rng = _shuffle_rng(seed) if shuffle else None

    def __len__(self):
        return (len(self.x) + self.batch_size - 1) // self.batch_size

    def __iter__(self):
        n = len(self.x)
        order = self.rng.permutation(n) if self.shuffle else None
        for start in range(0, n, self.batch_size):
            if order is None:
                yield self.x[start:start + self.batch_size], self.y[start:start + self.batch_size]
            else:
                index = order[start:start + self.batch_size]
                yield self.x[index], self.y[index]


def _shuffle_rng(seed):
    if seed is not None:
        return np.random.default_rng(seed)
    from fastnn._tensor import default_generator
    # Drawn from fastnn's global generator, so fastnn.manual_seed makes fit reproducible.
    return np.random.default_rng(int(default_generator().integers(2**63)))


def _is_loader(x) -> bool:
    return hasattr(x, "__iter__") and hasattr(x, "__len__") and not isinstance(x, (np.ndarray, Tensor, list, tuple))


def _pair(data):
    return (data, None) if _is_loader(data) else tuple(data)


def _as_array(who, name, value):
    if isinstance(value, Tensor):
        value = value.numpy()
    value = np.asarray(value)
    if value.ndim == 0:
        raise ValueError(f"{who}: {name} must have the samples along its first axis, got a scalar")
    return value


def _as_arrays(who, x, y):
    if y is None:
        raise ValueError(f"{who}: y (the targets) is required when x is an array")
    x, y = _as_array(who, "x", x), _as_array(who, "y", y)
    if len(x) != len(y):
        raise ValueError(f"{who}: x and y must hold the same number of samples, got x of shape "
                         f"{x.shape} and y of shape {y.shape}")
    if len(x) == 0:
        raise ValueError(f"{who}: x is empty (shape {x.shape})")
    return x, y


def _input_tensor(xb, device: str = "cpu") -> Tensor:
    if not isinstance(xb, Tensor):
        xb = np.asarray(xb)
        if xb.dtype != np.float32:
            xb = xb.astype(np.float32)
        xb = Tensor(np.ascontiguousarray(xb))
    return xb if device == "cpu" else xb.to(device)


# Losses whose class-index targets stay on the host, where the op checks them before copying
# (on the device a bad index could only become a NaN).
_INDEX_TARGET_LOSSES = ("cross_entropy", "nll_loss")


def _target_tensor(targets, device: str, loss_name: str) -> Tensor:
    t = targets if isinstance(targets, Tensor) else Tensor(targets)
    return t if device == "cpu" or loss_name in _INDEX_TARGET_LOSSES else t.to(device)


def _target_array(yb, loss_name):
    if isinstance(yb, Tensor):
        yb = yb.numpy()
    yb = np.asarray(yb)
    if loss_name in _INDEX_TARGET_LOSSES and yb.dtype.kind in "iub":
        return yb.astype(np.int64, copy=False)
    if yb.dtype.kind in "iub" or yb.dtype == np.float64:
        return yb.astype(np.float32)
    return yb


def _check_positive_int(name, value, allow_zero=False):
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < (0 if allow_zero else 1):
        raise ValueError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} integer, got {value!r}")


# ---- what compile() resolves ----------------------------------------------------------------------

def _make_optimizer(model, optimizer, options):
    from fastnn import optim
    if isinstance(optimizer, str):
        name = _OPTIMIZER_NAMES.get(optimizer.lower())
        if name is None:
            raise ValueError(f"compile: unknown optimizer {optimizer!r}; expected one of "
                             f"{sorted(_OPTIMIZER_NAMES)} or an optimizer object")
        if name == "SGD":
            options.setdefault("lr", 0.01)
        return getattr(optim, name)(model.parameters(), **options)
    if options:
        raise ValueError(f"compile: options {sorted(options)} apply only when the optimizer is given by name")
    if not hasattr(optimizer, "step") or not hasattr(optimizer, "zero_grad"):
        raise TypeError(f"compile: optimizer must be a name or an optimizer, got {type(optimizer).__name__}")
    return optimizer


def _make_loss(loss):
    from fastnn.nn import functional as F
    if isinstance(loss, str):
        name = _LOSS_NAMES.get(loss.lower())
        if name is None:
            raise ValueError(f"compile: unknown loss {loss!r}; expected one of {sorted(_LOSS_NAMES)} or a callable")
        return name, getattr(F, name)
    if not callable(loss):
        raise TypeError(f"compile: loss must be a name or a callable, got {type(loss).__name__}")
    if getattr(loss, "reduction", None) == "none":
        raise ValueError("compile: the loss has reduction='none', which gives one value per sample; fit needs "
                         "a scalar: use reduction='mean' (or 'sum')")
    # A loss module (CrossEntropyLoss()) or a function of fastnn.nn.functional behaves like the
    # loss of that name: index targets for cross_entropy/nll_loss, the logit threshold of accuracy
    # for the *_with_logits loss.
    class_name = type(loss).__name__
    if class_name in _LOSS_MODULES:
        return _LOSS_MODULES[class_name], loss
    function_name = getattr(loss, "__name__", None)
    if function_name in _LOSS_NAMES.values() and getattr(F, function_name, None) is loss:
        return function_name, loss
    return class_name, loss


def _make_metric(metric, loss_name):
    if callable(metric):
        return getattr(metric, "__name__", type(metric).__name__), metric
    if not isinstance(metric, str):
        raise TypeError(f"compile: a metric must be a name or a callable, got {type(metric).__name__}")
    key = metric.lower()
    if key in ("accuracy", "acc"):
        logits = loss_name in ("binary_cross_entropy_with_logits",)
        return "accuracy", lambda out, target: _accuracy(out, target, logits)
    if key.startswith("top") and key.endswith("_accuracy") and key[3:-9].isdigit():
        k = int(key[3:-9])
        return key, lambda out, target: _top_k_accuracy(out, target, k)
    raise ValueError(f"compile: unknown metric {metric!r}; expected 'accuracy', 'topK_accuracy' or a callable")


def _accuracy(out, target, logits):
    if out.ndim >= 2 and out.shape[1] > 1:  # class scores: argmax against indices or one-hot rows
        predicted = out.argmax(axis=1)
        truth = target.argmax(axis=1) if target.ndim == out.ndim else target
        return float(np.mean(predicted == truth))
    predicted = out.reshape(len(out), -1)[:, 0] > (0.0 if logits else 0.5)
    return float(np.mean(predicted == (np.asarray(target).reshape(len(out), -1)[:, 0] > 0.5)))


def _top_k_accuracy(out, target, k):
    top = np.argpartition(-out, min(k, out.shape[1]) - 1, axis=1)[:, :k]
    return float(np.mean(np.any(top == np.asarray(target).reshape(-1, 1), axis=1)))
