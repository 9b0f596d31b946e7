"""One-step-ahead forecasting of a time series with an LSTM, against an MLP on the same window and
the naive forecast (tomorrow = today), trained the Keras way (compile / fit / evaluate).

    python examples/sequence_regression.py              # sunspots if statsmodels is installed, else generated
    python examples/sequence_regression.py --series generated --epochs 30 --window 48

Series: the yearly sunspot numbers 1700-2008 that statsmodels ships (--series sunspots), or a
generated one (--series generated, the fallback): 3000 steps of a cycle whose period drifts
between 9 and 14 steps and whose amplitude wanders, plus noise -- like the sunspot cycle, its
next value depends on where in the current cycle the series is, which a window must reveal.

Each sample is a window of --window past values (scaled by the training part's mean and standard
deviation) and the target is the next value. The first 80% of the series trains (the last tenth
of it validates), the rest tests, in time order. The LSTM (1 -> 32 units, its last hidden state
into a Linear) reads the window step by step; the MLP (window -> 64 -> 64 -> 1) sees it at once.
Prints each model's test RMSE in the series' own units and against the naive forecast.
"""
import argparse
import time

import numpy as np

import fastnn
from fastnn import nn, optim


def sunspots():
    """The yearly sunspot numbers that statsmodels ships, or None when it is not installed."""
    try:
        from statsmodels.datasets import sunspots as data  # noqa: PLC0415 (optional dependency)
    except ImportError:
        return None
    return np.asarray(data.load_pandas().data["SUNACTIVITY"], dtype=np.float64)


def generated(n=3000, seed=0):
    """A noisy cycle with a drifting period (9-14 steps) and a wandering amplitude."""
    rng = np.random.default_rng(seed)
    period = 11.5 + 2.5 * np.sin(np.arange(n) / 170.0)
    phase = np.cumsum(2 * np.pi / period)
    amplitude = 60 + np.cumsum(rng.normal(0, 2.0, n)).clip(-40, 40)
    return np.maximum(amplitude * (1 + np.sin(phase)) + rng.normal(0, 6.0, n), 0.0)


def make_windows(series, window):
    """(samples, window) inputs and (samples, 1) next values."""
    index = np.arange(len(series) - window)[:, None] + np.arange(window)[None, :]
    return series[index].astype(np.float32), series[window:, None].astype(np.float32)


class LSTMForecaster(nn.Module):
    def __init__(self, hidden=32):
        super().__init__()
        self.lstm = nn.LSTM(1, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x):
        """x (B, window) -> (B, 1): the window is read one value per step."""
        _, (h, _) = self.lstm(x.reshape(x.shape[0], x.shape[1], 1))
        return self.head(h[0])

    def get_config(self):
        return {"hidden": self.lstm.hidden_size}


def mlp(window):
    return nn.Sequential(nn.Linear(window, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--series", choices=["sunspots", "generated"], default=None,
                   help="default: sunspots when statsmodels is installed, else generated")
    p.add_argument("--window", type=int, default=24)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    series = sunspots() if args.series in (None, "sunspots") else None
    if series is None:
        if args.series == "sunspots":
            raise SystemExit("--series sunspots needs statsmodels (pip install statsmodels)")
        name, series = "generated cycle", generated(seed=args.seed)
    else:
        name = "yearly sunspot numbers 1700-2008 (statsmodels)"
    split = int(len(series) * 0.8)
    mean, std = series[:split].mean(), series[:split].std()
    x, y = make_windows((series - mean) / std, args.window)
    n_train = split - args.window  # windows whose target lies in the training part
    x_train, y_train, x_test, y_test = x[:n_train], y[:n_train], x[n_train:], y[n_train:]
    print(f"{name}: {len(series)} values; {len(x_train)} training windows of {args.window}, {len(x_test)} test")

    naive = np.sqrt(np.mean((x_test[:, -1:] - y_test) ** 2)) * std
    results = {"naive (last value)": naive}
    for label, model in (("LSTM", LSTMForecaster()), ("MLP", mlp(args.window))):
        fastnn.manual_seed(args.seed)
        model.compile(optimizer=optim.Adam(model.parameters(), lr=args.lr), loss="mse")
        start = time.perf_counter()
        model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs, validation_split=0.1,
                  seed=args.seed, verbose=0)
        seconds = time.perf_counter() - start
        results[label] = np.sqrt(model.evaluate(x_test, y_test, batch_size=256)["loss"]) * std
        print(f"{label}: {seconds:.1f} s for {args.epochs} epochs, final validation loss "
              f"{model.history.history['val_loss'][-1]:.4f}")

    print(f"\ntest RMSE, one step ahead (series units; the series' std is {std:.1f}):")
    for label, rmse in results.items():
        print(f"  {label:20s} {rmse:8.2f}   ({rmse / naive:.2f} x naive)")


if __name__ == "__main__":
    main()
