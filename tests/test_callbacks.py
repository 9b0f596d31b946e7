"""fastnn.callbacks, driven by a small fake model and a fit-like loop that follow the protocol
Model.fit uses (stop_training, state_dict/load_state_dict, save, optimizer.param_groups)."""
import csv
import sys

import numpy as np
import pytest

import fastnn
from fastnn import io
from fastnn.callbacks import (Callback, CallbackList, CSVLogger, EarlyStopping, History,
                              LearningRateScheduler, ModelCheckpoint)


class FakeOptimizer:
    def __init__(self, *lrs):
        self.param_groups = [{"lr": lr, "params": []} for lr in lrs]


class FakeModel:
    """Its weights are filled with the epoch number during each epoch, so a restored or saved
    state tells which epoch it came from. state_dict returns references, as real models do."""

    def __init__(self, lrs=(0.1, 0.01)):
        self.stop_training = False
        self.weights = {"w": np.zeros((2, 3), np.float32), "b": fastnn.zeros(3)}
        self.optimizer = FakeOptimizer(*lrs)
        self.saved = []

    def state_dict(self):
        return self.weights

    def load_state_dict(self, state):
        for name, value in state.items():
            target = self.weights[name]
            (target.data if isinstance(target, fastnn.Tensor) else target)[...] = value

    def train_epoch(self, epoch):
        for value in self.weights.values():
            (value.data if isinstance(value, fastnn.Tensor) else value)[...] = epoch

    def epoch_of_weights(self):
        return int(self.weights["w"][0, 0])

    def save(self, path):
        io.save(self.weights, path, metadata={"arch": "fake"})
        self.saved.append(path)


def fit(model, callbacks, epoch_logs, steps=3, params=None):
    """A fit-like driver: epoch_logs[i] are the logs of epoch i. Returns the epochs run."""
    callbacks = CallbackList(callbacks, model=model, params=params or {})
    model.stop_training = False
    callbacks.on_train_begin({})
    run = 0
    for epoch, logs in enumerate(epoch_logs):
        callbacks.on_epoch_begin(epoch, {})
        model.train_epoch(epoch)
        for batch in range(steps):
            callbacks.on_batch_begin(batch, {})
            callbacks.on_batch_end(batch, {"loss": 1.0})
        callbacks.on_epoch_end(epoch, dict(logs))
        run += 1
        if model.stop_training:
            break
    callbacks.on_train_end({})
    return run


def losses(*values, key="val_loss"):
    return [{"loss": 1.0, key: v} for v in values]


# ---------------------------------------------------------------------------------------------
# Callback and CallbackList

def test_callback_list_calls_hooks_in_order_and_shares_logs():
    calls = []

    class Recorder(Callback):
        def __init__(self, tag):
            super().__init__()
            self.tag = tag

        def on_train_begin(self, logs=None): calls.append((self.tag, "train_begin"))
        def on_epoch_begin(self, epoch, logs=None): calls.append((self.tag, "epoch_begin", epoch))
        def on_batch_end(self, batch, logs=None): calls.append((self.tag, "batch_end", batch))
        def on_train_end(self, logs=None): calls.append((self.tag, "train_end"))

        def on_epoch_end(self, epoch, logs=None):
            logs[self.tag] = epoch  # later callbacks see what earlier ones add
            calls.append((self.tag, "epoch_end", epoch, sorted(logs)))

    model = FakeModel()
    first, second = Recorder("a"), Recorder("b")
    assert fit(model, [first, second], losses(1.0), steps=1) == 1
    assert first.model is model and second.params == {}
    assert calls == [("a", "train_begin"), ("b", "train_begin"),
                     ("a", "epoch_begin", 0), ("b", "epoch_begin", 0),
                     ("a", "batch_end", 0), ("b", "batch_end", 0),
                     ("a", "epoch_end", 0, ["a", "loss", "val_loss"]),
                     ("b", "epoch_end", 0, ["a", "b", "loss", "val_loss"]),
                     ("a", "train_end"), ("b", "train_end")]


def test_base_callback_hooks_do_nothing():
    callback = Callback()
    callbacks = CallbackList([callback], model="m", params={"epochs": 2})
    assert callback.model == "m" and callback.params == {"epochs": 2}
    for hook in ("on_train_begin", "on_train_end"):
        assert getattr(callbacks, hook)() is None
    for hook in ("on_epoch_begin", "on_epoch_end", "on_batch_begin", "on_batch_end"):
        assert getattr(callbacks, hook)(0) is None
    assert len(callbacks) == 1 and list(callbacks) == [callback]


def test_callback_list_rejects_non_callbacks():
    with pytest.raises(TypeError, match=r"got the class EarlyStopping; pass an instance, e.g. EarlyStopping\(\)"):
        CallbackList([EarlyStopping])
    with pytest.raises(TypeError, match="expected fastnn.callbacks.Callback instances, got function"):
        CallbackList([lambda: None])


# ---------------------------------------------------------------------------------------------
# History

def test_history_records_every_epoch():
    history = History()
    logs = [{"loss": fastnn.tensor(1.5), "accuracy": np.float32(0.5), "val_loss": 2.0},
            {"loss": 1.0, "accuracy": 0.75, "val_loss": 1.5}]
    fit(FakeModel(), [history], logs)
    assert history.epoch == [0, 1]
    assert history.history == {"loss": [1.5, 1.0], "accuracy": [0.5, 0.75], "val_loss": [2.0, 1.5]}
    assert all(type(v) is float for values in history.history.values() for v in values)


def test_history_plot_draws_train_and_val_on_the_same_axes(tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib not installed")
    history = History()
    fit(FakeModel(), [history], [{"loss": 1.0 / (e + 1), "accuracy": e / 4, "val_loss": 1.2 / (e + 1),
                                  "val_accuracy": e / 5} for e in range(4)])
    path = tmp_path / "history.png"
    figure = history.plot(path=path)
    assert path.stat().st_size > 0
    axes = figure.get_axes()
    assert [ax.get_title() for ax in axes] == ["loss", "accuracy"]
    assert [line.get_label() for line in axes[0].get_lines()] == ["loss", "val_loss"]
    np.testing.assert_allclose(axes[0].get_lines()[1].get_ydata(), [1.2, 0.6, 0.4, 0.3])
    np.testing.assert_array_equal(axes[0].get_lines()[0].get_xdata(), [1, 2, 3, 4])
    assert len(history.plot(keys="accuracy", path=tmp_path / "acc.png").get_axes()) == 1


def test_history_plot_without_matplotlib_says_how_to_install(monkeypatch):
    history = History()
    history.on_epoch_end(0, {"loss": 1.0})
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.pyplot"):
        monkeypatch.setitem(sys.modules, name, None)  # makes `import matplotlib` raise ImportError
    with pytest.raises(ImportError, match=r"pip install matplotlib \(or pip install fastnn\[plot\]\)"):
        history.plot()


def test_history_plot_bad_arguments():
    with pytest.raises(ValueError, match="the history is empty"):
        History().plot()
    history = History()
    history.on_epoch_end(0, {"loss": 1.0, "val_loss": 2.0})
    with pytest.raises(ValueError, match=r"no values recorded for \['acc'\]; recorded: \['loss'\]"):
        history.plot(keys=["acc"])
    with pytest.raises(ValueError, match="keys is empty"):
        history.plot(keys=[])


# ---------------------------------------------------------------------------------------------
# EarlyStopping

def test_early_stopping_stops_after_patience_epochs_without_improvement():
    model = FakeModel()
    stopper = EarlyStopping(patience=2)
    # best at epoch 1; epochs 2 and 3 do not improve -> stop at the end of epoch 3
    assert fit(model, [stopper], losses(1.0, 0.8, 0.9, 0.85, 0.1, 0.1)) == 4
    assert model.stop_training and stopper.stopped_epoch == 3
    assert stopper.best_epoch == 1 and stopper.best == 0.8
    assert model.epoch_of_weights() == 3  # no restoring unless asked


def test_early_stopping_restores_best_weights_at_train_end(capsys):
    model = FakeModel()
    stopper = EarlyStopping(patience=2, restore_best_weights=True, verbose=1)
    fit(model, [stopper], losses(1.0, 0.8, 0.9, 0.85, 0.1))
    assert model.epoch_of_weights() == 1
    assert float(model.weights["b"].data[0]) == 1.0  # Tensors in the state dict restored too
    out = capsys.readouterr().out
    assert "Epoch 4: early stopping" in out and "best epoch: 2." in out


def test_early_stopping_restores_best_weights_even_without_stopping():
    model = FakeModel()
    stopper = EarlyStopping(patience=10, restore_best_weights=True)
    assert fit(model, [stopper], losses(1.0, 0.5, 0.7)) == 3
    assert stopper.stopped_epoch == 0 and model.epoch_of_weights() == 1


def test_early_stopping_keeps_first_weights_when_nothing_improves():
    model = FakeModel()
    fit(model, [EarlyStopping(patience=1, restore_best_weights=True)], losses(1.0, 1.0, 1.0))
    assert model.epoch_of_weights() == 0


def test_early_stopping_patience_zero_and_min_delta():
    assert fit(FakeModel(), [EarlyStopping()], losses(1.0, 0.9, 0.95, 0.5)) == 3
    # improvements of 0.05 do not beat min_delta=0.1
    stopper = EarlyStopping(min_delta=0.1, patience=1)
    assert fit(FakeModel(), [stopper], losses(1.0, 0.95, 0.9, 0.5)) == 2
    assert stopper.best == 1.0


def test_early_stopping_max_mode_for_accuracy():
    stopper = EarlyStopping(monitor="val_accuracy", patience=1)
    assert stopper.mode == "max"
    assert fit(FakeModel(), [stopper], losses(0.5, 0.7, 0.6, 0.65, key="val_accuracy")) == 3
    assert stopper.best == 0.7 and stopper.stopped_epoch == 2


def test_early_stopping_baseline_limits_the_wait():
    # never beats the baseline: stops after `patience` epochs, although each one is a new best
    stopper = EarlyStopping(patience=3, baseline=0.1)
    assert fit(FakeModel(), [stopper], losses(0.5, 0.5, 0.5, 0.5, 0.5)) == 3
    # without a baseline the same run waits one epoch longer
    assert fit(FakeModel(), [EarlyStopping(patience=3)], losses(0.5, 0.5, 0.5, 0.5, 0.5)) == 4
    # beating the baseline restarts the wait
    assert fit(FakeModel(), [EarlyStopping(patience=1, baseline=0.6)], losses(0.5, 0.4, 0.3, 0.3)) == 4


def test_early_stopping_nan_is_no_improvement():
    stopper = EarlyStopping(patience=1)
    assert fit(FakeModel(), [stopper], losses(1.0, float("nan"), 0.5)) == 2
    assert stopper.best == 1.0


def test_early_stopping_reused_across_fits_starts_afresh():
    stopper = EarlyStopping(patience=1)
    fit(FakeModel(), [stopper], losses(0.1, 0.2))
    assert fit(FakeModel(), [stopper], losses(1.0, 0.9, 0.8)) == 3 and stopper.best == 0.8


def test_missing_monitor_warns_once_and_training_goes_on():
    stopper = EarlyStopping(monitor="val_loss", patience=0)
    with pytest.warns(RuntimeWarning, match=r"'val_loss', which is not in the logs; available: \['loss'\]") as record:
        assert fit(FakeModel(), [stopper], [{"loss": 1.0}] * 3) == 3
    assert len(record) == 1


def test_missing_monitor_known_in_advance_fails_at_train_begin():
    with pytest.raises(ValueError, match="monitor='val_loss' is not among .* pass validation_data"):
        fit(FakeModel(), [EarlyStopping()], losses(1.0), params={"metrics": ["loss", "accuracy"]})
    assert fit(FakeModel(), [EarlyStopping()], losses(1.0), params={"metrics": ["loss", "val_loss"]}) == 1


@pytest.mark.parametrize("monitor, mode", [
    ("loss", "min"), ("val_loss", "min"), ("val_mae", "min"), ("accuracy", "max"), ("val_acc", "max"),
    ("val_auc", "max"), ("f1", "max"), ("val_precision", "max"), ("Recall", "max"),
])
def test_auto_mode(monitor, mode):
    assert EarlyStopping(monitor=monitor).mode == mode
    assert ModelCheckpoint("x", monitor=monitor).mode == mode
    assert EarlyStopping(monitor=monitor, mode="min").mode == "min"


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(mode="minimum"), ValueError, "mode must be 'auto', 'min' or 'max', got 'minimum'"),
    (dict(patience=-1), ValueError, "patience must be an int >= 0"),
    (dict(patience=1.5), ValueError, "patience must be an int >= 0"),
    (dict(monitor=""), TypeError, "monitor must be a non-empty str"),
])
def test_early_stopping_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        EarlyStopping(**kwargs)


# ---------------------------------------------------------------------------------------------
# ModelCheckpoint

def test_checkpoint_save_best_only_writes_only_on_improvement(tmp_path, capsys):
    model = FakeModel()
    pattern = str(tmp_path / "ckpt" / "e{epoch:02d}-{val_loss:.2f}.safetensors")
    checkpoint = ModelCheckpoint(pattern, save_best_only=True, verbose=1)
    fit(model, [checkpoint], losses(1.0, 0.8, 0.9, 0.7, 0.75))
    files = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    assert files == ["e01-1.00.safetensors", "e02-0.80.safetensors", "e04-0.70.safetensors"]
    saved = io.load(tmp_path / "ckpt" / "e04-0.70.safetensors")
    np.testing.assert_array_equal(saved["w"], np.full((2, 3), 3, np.float32))
    np.testing.assert_array_equal(saved["b"], np.full(3, 3, np.float32))
    out = capsys.readouterr().out
    assert "Epoch 4: val_loss improved from 0.80000 to 0.70000, saving model to" in out
    assert "Epoch 5: val_loss did not improve from 0.70000" in out


def test_checkpoint_fixed_path_holds_the_best_epoch(tmp_path):
    path = tmp_path / "best.safetensors"
    checkpoint = ModelCheckpoint(path, monitor="val_accuracy", save_best_only=True)
    fit(FakeModel(), [checkpoint], losses(0.5, 0.9, 0.7, 0.8, key="val_accuracy"))
    assert io.load(path)["w"][0, 0] == 1 and checkpoint.best == 0.9


def test_checkpoint_every_epoch_and_whole_model(tmp_path):
    model = FakeModel()
    fit(model, [ModelCheckpoint(tmp_path / "m{epoch}.safetensors", save_weights_only=False)],
        losses(1.0, 2.0, 3.0))
    assert model.saved == [str(tmp_path / f"m{e}.safetensors") for e in (1, 2, 3)]
    assert io.load_metadata(tmp_path / "m2.safetensors") == {"arch": "fake"}
    assert io.load(tmp_path / "m2.safetensors")["w"][0, 0] == 1


def test_checkpoint_missing_monitor_warns_and_saves_nothing(tmp_path):
    checkpoint = ModelCheckpoint(tmp_path / "c.safetensors", save_best_only=True)
    with pytest.warns(RuntimeWarning, match="ModelCheckpoint is conditioned on 'val_loss'"):
        fit(FakeModel(), [checkpoint], [{"loss": 1.0}] * 2)
    assert list(tmp_path.iterdir()) == []


def test_checkpoint_unknown_format_field(tmp_path):
    checkpoint = ModelCheckpoint(tmp_path / "{val_acc:.2f}.safetensors")
    with pytest.raises(ValueError,
                       match=r"names 'val_acc', which is not in the logs \(available: epoch, loss, val_loss\)"):
        fit(FakeModel(), [checkpoint], losses(1.0))


# ---------------------------------------------------------------------------------------------
# LearningRateScheduler

def test_scheduler_function_sets_every_group_before_each_epoch(capsys):
    model = FakeModel(lrs=(0.1, 0.01))
    seen = []

    class Watch(Callback):
        def on_epoch_begin(self, epoch, logs=None):
            seen.append([g["lr"] for g in self.model.optimizer.param_groups])

    history = History()
    scheduler = LearningRateScheduler(lambda epoch, lr: lr if epoch == 0 else lr * 0.5, verbose=1)
    fit(model, [scheduler, Watch(), history], losses(1.0, 1.0, 1.0))
    assert seen == [[0.1, 0.01], [0.05, 0.005], [0.025, 0.0025]]
    assert history.history["lr"] == [0.1, 0.05, 0.025]
    assert "Epoch 2: LearningRateScheduler setting learning rate to 0.05." in capsys.readouterr().out


def test_scheduler_one_argument_schedule():
    model = FakeModel(lrs=(1.0,))
    fit(model, [LearningRateScheduler(lambda epoch: 0.1 / (epoch + 1))], losses(1.0, 1.0))
    assert model.optimizer.param_groups[0]["lr"] == pytest.approx(0.05)


class FakeStepLR:
    """Like lr_scheduler.StepLR(step_size=1): multiplies every lr by gamma at each step()."""

    def __init__(self, optimizer, gamma):
        self.optimizer, self.gamma, self.steps = optimizer, gamma, 0

    def step(self):
        self.steps += 1
        for group in self.optimizer.param_groups:
            group["lr"] *= self.gamma


class FakePlateau:
    def __init__(self, optimizer):
        self.optimizer, self.seen = optimizer, []

    def step(self, metrics):
        self.seen.append(metrics)


def test_scheduler_object_steps_at_epoch_end():
    model = FakeModel(lrs=(0.1, 0.2))
    step_lr = FakeStepLR(model.optimizer, gamma=0.1)
    history = History()
    fit(model, [LearningRateScheduler(step_lr), history], losses(1.0, 1.0, 1.0))
    assert step_lr.steps == 3
    assert [g["lr"] for g in model.optimizer.param_groups] == pytest.approx([1e-4, 2e-4])
    assert history.history["lr"] == pytest.approx([0.1, 0.01, 0.001])  # the rate each epoch used


def test_scheduler_object_that_needs_a_value_gets_the_monitored_one():
    model = FakeModel()
    plateau = FakePlateau(model.optimizer)
    fit(model, [LearningRateScheduler(plateau)], losses(0.5, 0.25))
    assert plateau.seen == [0.5, 0.25]
    plateau = FakePlateau(model.optimizer)
    with pytest.warns(RuntimeWarning, match="needs 'val_loss'"):
        fit(model, [LearningRateScheduler(plateau)], [{"loss": 1.0}] * 2)
    assert plateau.seen == []


@pytest.mark.parametrize("schedule, match", [
    (lambda epoch, lr: "fast", "must return a number, got 'fast'"),
    (lambda epoch, lr: -0.1, "returned -0.1; a learning rate must be finite and >= 0"),
    (lambda epoch, lr: float("nan"), "must be finite"),
])
def test_scheduler_bad_schedule_output(schedule, match):
    with pytest.raises(ValueError, match=match):
        fit(FakeModel(), [LearningRateScheduler(schedule)], losses(1.0))


def test_scheduler_bad_setups():
    with pytest.raises(TypeError, match="schedule must be a function"):
        LearningRateScheduler(0.1)
    model = FakeModel()
    model.optimizer = None
    with pytest.raises(ValueError, match="compile the model with an optimizer first"):
        fit(model, [LearningRateScheduler(lambda e, lr: lr)], losses(1.0))
    model = FakeModel()
    other = FakeStepLR(FakeOptimizer(0.1), 0.5)
    with pytest.raises(ValueError, match="built for another optimizer"):
        fit(model, [LearningRateScheduler(other)], losses(1.0))


# ---------------------------------------------------------------------------------------------
# CSVLogger

def read_rows(path, separator=","):
    with open(path, newline="") as file:
        return list(csv.reader(file, delimiter=separator))


def test_csv_logger_writes_header_and_one_row_per_epoch(tmp_path):
    path = tmp_path / "log.csv"
    logs = [{"val_loss": 0.5, "loss": fastnn.tensor(0.25), "accuracy": np.float64(0.125)},
            {"val_loss": 0.375, "loss": 0.1, "accuracy": 0.2}]
    fit(FakeModel(), [CSVLogger(path)], logs)
    assert read_rows(path) == [["epoch", "accuracy", "loss", "val_loss"],
                               ["0", "0.125", "0.25", "0.5"],
                               ["1", "0.2", "0.1", "0.375"]]


def test_csv_logger_append_and_separator(tmp_path):
    path = tmp_path / "log.csv"
    fit(FakeModel(), [CSVLogger(path, separator=";")], losses(0.5))
    fit(FakeModel(), [CSVLogger(path, separator=";", append=True)], [{"loss": 2.0}])  # val_loss missing
    assert read_rows(path, ";") == [["epoch", "loss", "val_loss"], ["0", "1.0", "0.5"], ["0", "2.0", "NA"]]
    fit(FakeModel(), [CSVLogger(path, separator=";")], losses(0.25))  # append=False starts over
    assert read_rows(path, ";") == [["epoch", "loss", "val_loss"], ["0", "1.0", "0.25"]]


def test_csv_logger_rows_are_on_disk_during_training(tmp_path):
    path = tmp_path / "log.csv"
    logger = CSVLogger(path)
    logger.on_train_begin()
    logger.on_epoch_end(0, {"loss": 1.0})
    assert read_rows(path) == [["epoch", "loss"], ["0", "1.0"]]
    logger.on_train_end()


def test_csv_logger_errors(tmp_path):
    with pytest.raises(ValueError, match="separator must be one character"):
        CSVLogger(tmp_path / "x.csv", separator=", ")
    with pytest.raises(RuntimeError, match="before on_train_begin"):
        CSVLogger(tmp_path / "x.csv").on_epoch_end(0, {"loss": 1.0})
    path = tmp_path / "log.csv"
    fit(FakeModel(), [CSVLogger(path)], [{"loss": 1.0}])
    with pytest.raises(ValueError, match=r"has the columns \['loss'\], the logs add \['val_loss'\]"):
        fit(FakeModel(), [CSVLogger(path, append=True)], losses(1.0))
