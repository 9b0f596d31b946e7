"""fastnn.progress: the Keras-style bar, on terminals and elsewhere, at each verbosity."""
import io

import numpy as np
import pytest

import fastnn
from fastnn import progress
from fastnn.progress import ProgressBar, format_duration


class FakeStream(io.StringIO):
    def __init__(self, tty):
        super().__init__()
        self.tty = tty
        self.flushes = 0

    def isatty(self):
        return self.tty

    def flush(self):
        self.flushes += 1


@pytest.fixture
def clock(monkeypatch):
    """A fake clock: set clock.now to the time you want."""
    class Clock:
        now = 100.0
    fake = Clock()
    monkeypatch.setattr(progress, "_now", lambda: fake.now)
    return fake


def test_non_tty_prints_one_plain_line_per_epoch(clock):
    stream = FakeStream(tty=False)
    bar = ProgressBar(938, stream=stream)
    for step in range(1, 939):
        clock.now += 0.003
        bar.update(step, {"loss": 0.5, "accuracy": 0.75})
    assert stream.getvalue() == ""                       # nothing while the epoch runs
    bar.finish({"val_loss": 0.25, "val_accuracy": 0.875})
    out = stream.getvalue()
    assert "\r" not in out and out.count("\n") == 1
    assert out == ("938/938 [==============================] - 3s 3ms/step - loss: 0.5000 - accuracy: 0.7500"
                   " - val_loss: 0.2500 - val_accuracy: 0.8750\n")


def test_running_averages_weight_batches_by_steps(clock):
    stream = FakeStream(tty=False)
    bar = ProgressBar(10, stream=stream)
    bar.update(1, {"loss": 1.0})
    bar.update(4, {"loss": 2.0})    # covers 3 steps
    bar.update(5, {"loss": fastnn.tensor(6.0), "acc": np.float32(0.5)})  # Tensors and numpy scalars
    assert bar.averages() == {"loss": pytest.approx((1 + 6 + 6) / 5), "acc": 0.5}


def test_stateful_metrics_are_shown_as_given(clock):
    bar = ProgressBar(4, stream=FakeStream(tty=False), stateful_metrics=["accuracy"])
    bar.update(1, {"loss": 1.0, "accuracy": 0.1})
    bar.update(2, {"loss": 3.0, "accuracy": 0.9})
    assert bar.averages() == {"loss": 2.0, "accuracy": 0.9}


def test_finish_values_replace_running_means(clock):
    stream = FakeStream(tty=False)
    bar = ProgressBar(2, stream=stream)
    bar.update(2, {"loss": 9.0})
    bar.finish({"loss": 0.125, "val_loss": 0.5})
    assert stream.getvalue().endswith("- loss: 0.1250 - val_loss: 0.5000\n")
    bar.finish({"loss": 1.0})  # a second finish prints nothing
    assert stream.getvalue().count("\n") == 1


def test_tty_redraws_in_place_at_most_every_interval(clock):
    stream = FakeStream(tty=True)
    bar = ProgressBar(100, stream=stream, width=10)
    clock.now += 0.5
    bar.update(1, {"loss": 0.5})                 # first draw
    for step in range(2, 50):
        clock.now += 0.01                       # 48 updates within 0.48 s: 4 more draws
        bar.update(step, {"loss": 0.5})
    out = stream.getvalue()
    assert out.startswith("\r  1/100 [>.........] - ETA: 50s - loss: 0.5000")
    assert out.count("\r") == 5 and "\n" not in out
    clock.now += 0.01
    bar.update(100, {"loss": 0.5})               # the last step is always drawn
    bar.finish()
    lines = stream.getvalue().split("\r")
    assert lines[-2].startswith("100/100 [==========] - loss: 0.5000")
    assert lines[-1] == "100/100 [==========] - 1s 10ms/step - loss: 0.5000\n"
    assert stream.flushes >= 7


def test_tty_line_shows_eta_and_bar_progress(clock):
    stream = FakeStream(tty=True)
    bar = ProgressBar(938, stream=stream)
    clock.now += 3.7
    bar.update(37, {"loss": 0.2345, "accuracy": 0.9312})
    assert stream.getvalue() == ("\r 37/938 [>.............................] - ETA: 1:30 - loss: 0.2345 "
                                 "- accuracy: 0.9312")
    clock.now += 50
    bar.update(469, {"loss": 0.2345, "accuracy": 0.9312})
    assert stream.getvalue().split("\r")[-1].startswith("469/938 [==============>...............] - ETA: 54s")


def test_tty_pads_over_a_longer_previous_line(clock):
    stream = FakeStream(tty=True)
    bar = ProgressBar(1000, stream=stream, interval=0)
    clock.now += 5
    bar.update(1, {"loss": 1.0})                 # ETA: 1:23:15
    bar.update(999, {"loss": 1.0})               # ETA: 0s, a shorter line
    first, second = stream.getvalue().split("\r")[1:]
    assert "ETA: 1:23:15" in first and "ETA: 0s" in second
    assert len(second) == len(first) and second.endswith("   ")


def test_unknown_total_shows_count_and_time_without_bar(clock):
    stream = FakeStream(tty=True)
    bar = ProgressBar(None, stream=stream, interval=0)
    clock.now += 2
    bar.update(7, {"loss": 1.0})
    bar.finish()
    assert stream.getvalue() == ("\r7/Unknown - 2s - loss: 1.0000"
                                 "\r7/Unknown - 2s 286ms/step - loss: 1.0000\n")


def test_verbose_2_prints_one_line_without_bar_even_on_a_tty(clock):
    stream = FakeStream(tty=True)
    bar = ProgressBar(50, verbose=2, stream=stream)
    for step in range(1, 51):
        clock.now += 0.0005
        bar.update(step, {"loss": 0.01})
    assert stream.getvalue() == ""
    bar.finish({"val_loss": 0.00002})
    assert stream.getvalue() == "50/50 - 0s 500us/step - loss: 0.0100 - val_loss: 2.0000e-05\n"


def test_verbose_0_is_silent(clock):
    stream = FakeStream(tty=True)
    bar = ProgressBar(5, verbose=0, stream=stream)
    for step in range(1, 6):
        clock.now += 1
        bar.update(step, {"loss": 1.0})
    bar.finish({"val_loss": 1.0})
    assert stream.getvalue() == "" and bar.averages() == {"loss": 1.0}


def test_default_stream_is_stdout_at_construction(capsys, clock):
    bar = ProgressBar(1)
    bar.update(1, {"loss": 2.0})
    bar.finish()
    assert capsys.readouterr().out == "1/1 [==============================] - 0s - loss: 2.0000\n" \
        .replace(" - 0s -", " - 0s 0us/step -")


@pytest.mark.parametrize("seconds, text", [(0, "0s"), (7.4, "7s"), (59.6, "1:00"), (65, "1:05"),
                                           (3600 * 2 + 189, "2:03:09"), (-1, "0s")])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(total_steps=-1), ValueError, "total_steps must be >= 0"),
    (dict(total_steps=2.5), TypeError, "total_steps must be an int"),
    (dict(total_steps=5, verbose=3), ValueError, "verbose must be 0"),
    (dict(total_steps=5, verbose=True), ValueError, "verbose must be 0"),
    (dict(total_steps=5, width=0), ValueError, "width must be a positive int"),
])
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        ProgressBar(**kwargs)


def test_bad_updates():
    bar = ProgressBar(5, stream=FakeStream(tty=False))
    with pytest.raises(ValueError, match="step must be >= 0"):
        bar.update(-1)
    with pytest.raises(TypeError, match="step must be an int"):
        bar.update(1.5)
    with pytest.raises(TypeError, match="value of 'loss' must be a number"):
        bar.update(1, {"loss": "low"})
