"""A Keras-style progress bar for one epoch.

    37/938 [>.............................] - ETA: 12s - loss: 0.2345 - accuracy: 0.9312
   938/938 [==============================] - 3s 3ms/step - loss: 0.1021 - accuracy: 0.9702 - val_loss: 0.0988

update(step, values) takes the values of the batch just done; the bar shows their running means
over the epoch, each batch weighted by the steps it covers (names listed in stateful_metrics are
shown as given: the caller already averages them). finish(values) prints the epoch's last line,
with its time and time per step; the values given there are shown as they are (the epoch's final
logs, validation included), the running means filling in the names they lack.

verbose=1 on a terminal (or in Jupyter): the line is redrawn in place with '\\r', at most once per
`interval` seconds. verbose=1 elsewhere (a log file, a pipe, CI): nothing until finish, which
prints the final bar line once. verbose=2: one line per epoch without the bar. verbose=0: silent.
"""
from __future__ import annotations

import math
import operator
import sys
import time

from fastnn.ops._common import check_int

__all__ = ["ProgressBar", "format_duration"]

_now = time.monotonic  # tests replace it with a fake clock


def format_duration(seconds: float) -> str:
    """'7s', '1:05', '2:03:09': the ETA format."""
    seconds = max(0, int(round(seconds)))
    if seconds >= 3600:
        return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
    if seconds >= 60:
        return f"{seconds // 60}:{seconds % 60:02d}"
    return f"{seconds}s"


def _format_per_step(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.0f}s/step"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.0f}ms/step"
    return f"{seconds * 1e6:.0f}us/step"


def _format_value(value) -> str:
    if isinstance(value, str):
        return value
    if value == 0 or 1e-3 <= abs(value) < 1e5 or not math.isfinite(value):
        return f"{value:.4f}"
    return f"{value:.4e}"


def _to_float(name, value) -> float:
    try:
        return float(value)  # Python and numpy numbers, 1-element arrays and Tensors
    except (TypeError, ValueError):
        raise TypeError(f"ProgressBar: value of {name!r} must be a number, got {type(value).__name__}") from None


def _is_dynamic(stream) -> bool:
    """Whether '\\r' redraws the line: a terminal, or a Jupyter kernel's output."""
    isatty = getattr(stream, "isatty", None)
    try:
        if isatty is not None and isatty():
            return True
    except (ValueError, OSError):  # a closed or detached stream
        return False
    return "ipykernel" in sys.modules and stream in (sys.stdout, sys.stderr)


class ProgressBar:
    """Progress of one epoch of total_steps batches (None when unknown). stream defaults to
    sys.stdout at construction time; interval is the least time between two redraws."""

    def __init__(self, total_steps, verbose: int = 1, stream=None, width: int = 30,
                 stateful_metrics=(), interval: float = 0.1):
        if total_steps is not None:
            try:
                total_steps = operator.index(total_steps)
            except TypeError:
                raise TypeError(f"ProgressBar: total_steps must be an int or None, "
                                f"got {type(total_steps).__name__}") from None
            if total_steps < 0:
                raise ValueError(f"ProgressBar: total_steps must be >= 0, got {total_steps}")
        if verbose not in (0, 1, 2) or isinstance(verbose, bool):
            raise ValueError(f"ProgressBar: verbose must be 0 (silent), 1 (bar) or 2 (one line per epoch), "
                             f"got {verbose!r}")
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ValueError(f"ProgressBar: width must be a positive int, got {width!r}")
        self.total_steps = total_steps
        self.verbose = verbose
        self.stream = sys.stdout if stream is None else stream
        self.width = width
        self.stateful_metrics = set(stateful_metrics)
        self.interval = float(interval)
        self.dynamic = verbose == 1 and _is_dynamic(self.stream)
        self.step = 0
        self.finished = False
        self._sums = {}       # name -> [weighted sum, weight]; insertion order is display order
        self._start = _now()
        self._last_draw = None
        self._drawn_width = 0

    # -- state ----------------------------------------------------------------------------------
    def averages(self) -> dict:
        """The running value of each name seen so far."""
        return {name: total / weight for name, (total, weight) in self._sums.items()}

    def update(self, step: int, values=None) -> None:
        """Record that `step` batches of the epoch are done; values holds the last batch's values."""
        step = check_int("ProgressBar.update", "step", step, 0)
        weight = max(step - self.step, 1)
        for name, value in (values or {}).items():
            value = _to_float(name, value)
            if name in self.stateful_metrics:
                self._sums[name] = [value, 1]
            else:
                total = self._sums.setdefault(name, [0.0, 0])
                total[0] += value * weight
                total[1] += weight
        self.step = step
        if not self.dynamic or self.finished:
            return
        now = _now()
        at_end = self.total_steps is not None and step >= self.total_steps
        if self._last_draw is not None and now - self._last_draw < self.interval and not at_end:
            return
        self._last_draw = now
        self._write("\r" + self._pad(self._live_line(now)))

    def finish(self, values=None) -> None:
        """Print the epoch's final line (once): the bar, the epoch time, the time per step, and
        the values (values given here as they are, the running means for the other names)."""
        if self.finished:
            return
        self.finished = True
        if self.verbose == 0:
            return
        elapsed = _now() - self._start
        shown = self.averages()
        for name, value in (values or {}).items():
            shown[name] = value if isinstance(value, str) else _to_float(name, value)
        steps = self.step
        with_bar = self.verbose == 1 and self.total_steps is not None
        parts = [self._counter(steps) + (" " + self._bar(steps) if with_bar else "")]
        timing = format_duration(elapsed)
        if steps:
            timing += " " + _format_per_step(elapsed / steps)
        parts.append(timing)
        line = " - ".join(parts + [f"{name}: {_format_value(v)}" for name, v in shown.items()])
        self._write(("\r" + self._pad(line) if self.dynamic and self._last_draw is not None else line) + "\n")

    # -- drawing --------------------------------------------------------------------------------
    def _counter(self, step: int) -> str:
        if self.total_steps is None:
            return f"{step}/Unknown"
        digits = len(str(self.total_steps))
        return f"{step:>{digits}}/{self.total_steps}"

    def _bar(self, step: int) -> str:
        if not self.total_steps or step >= self.total_steps:
            return "[" + "=" * self.width + "]"
        done = self.width * step // self.total_steps
        filled = "=" * (done - 1) + ">" if done else (">" if step else "")
        return "[" + filled + "." * (self.width - len(filled)) + "]"

    def _live_line(self, now: float) -> str:
        if self.total_steps is None:
            parts = [self._counter(self.step), format_duration(now - self._start)]
        else:
            parts = [self._counter(self.step) + " " + self._bar(self.step)]
            if self.step < self.total_steps:
                per_step = (now - self._start) / self.step if self.step else 0.0
                parts.append("ETA: " + format_duration(per_step * (self.total_steps - self.step)))
        parts += [f"{name}: {_format_value(v)}" for name, v in self.averages().items()]
        return " - ".join(parts)

    def _pad(self, line: str) -> str:
        # spaces over what remains of a longer previous line
        padded = line + " " * max(self._drawn_width - len(line), 0)
        self._drawn_width = len(line)
        return padded

    def _write(self, text: str) -> None:
        self.stream.write(text)
        flush = getattr(self.stream, "flush", None)
        if flush is not None:
            flush()
