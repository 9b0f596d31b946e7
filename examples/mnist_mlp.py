"""MNIST with a 784-256-128-10 MLP and Adam, the Keras way (compile / fit / evaluate).

    python examples/mnist_mlp.py                 # 8 epochs, batch 128, Adam 2e-3 with cosine decay
    python examples/mnist_mlp.py --epochs 3 --batch-size 64 --style torch
    python examples/mnist_mlp.py --ema 0.999       # also evaluate an exponential moving average

Finds MNIST in --data, $FASTNN_DATA, ../shared/data or ~/.cache/fastnn (see fastnn.datasets).
Prints the time of each epoch and the test accuracy (>= 98%).
"""
import time

import numpy as np

import fastnn
from fastnn import nn, optim
from fastnn.datasets import load_mnist
from _common import EpochTimer, example_parser, fastnn_info, setup


def build_model():
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 256), nn.ReLU(),
        nn.Linear(256, 128), nn.ReLU(),
        nn.Linear(128, 10),
    )


def load_data(path):
    (x_train, y_train), (x_test, y_test) = load_mnist(path)
    # Scale to [0, 1] and centre with the training set's statistics.
    x_train = x_train.astype(np.float32) / 255.0
    x_test = x_test.astype(np.float32) / 255.0
    mean, std = x_train.mean(), x_train.std()
    return ((x_train - mean) / std, y_train.astype(np.int64)), ((x_test - mean) / std, y_test.astype(np.int64))


def train_keras_style(model, train, test, args, ema):
    optimizer = optim.Adam(model.parameters(), lr=args.lr)
    model.compile(optimizer=optimizer, loss="cross_entropy", metrics=["accuracy"])
    timer = EpochTimer()
    # The rate follows a cosine from lr down to 0 over the run: the last epochs settle the weights.
    schedule = optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    callbacks = [timer, fastnn.callbacks.LearningRateScheduler(schedule)]
    if ema is not None:
        callbacks.append(EMAUpdate(ema))
    model.fit(*train, batch_size=args.batch_size, epochs=args.epochs, validation_data=test,
              seed=args.seed, callbacks=callbacks, verbose=args.verbose)
    return model.evaluate(*test, batch_size=1000)["accuracy"], timer.seconds


def train_torch_style(model, train, test, args, ema):
    """The same training as an explicit loop: DataLoader, forward, loss, backward, step."""
    loss_fn = nn.CrossEntropyLoss()
    optimizer = optim.Adam(model.parameters(), lr=args.lr)
    schedule = optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    loader = fastnn.data.DataLoader(fastnn.data.TensorDataset(*train), batch_size=args.batch_size,
                                    shuffle=True, seed=args.seed)
    seconds = []
    for epoch in range(args.epochs):
        model.train()
        start = time.perf_counter()
        for x, y in loader:
            loss = loss_fn(model(fastnn.tensor(x)), fastnn.tensor(y))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if ema is not None:
                ema.update()
        seconds.append(time.perf_counter() - start)
        schedule.step()
        accuracy = evaluate(model, test)
        print(f"epoch {epoch + 1}/{args.epochs}: {seconds[-1]:.2f} s, last batch loss {loss.item():.4f}, "
              f"test accuracy {accuracy:.4f}", flush=True)
    return evaluate(model, test), seconds


def evaluate(model, test):
    x, y = test
    model.eval()
    with fastnn.no_grad():
        predicted = np.concatenate([model(fastnn.tensor(x[i:i + 1000])).numpy().argmax(axis=1)
                                    for i in range(0, len(x), 1000)])
    return float(np.mean(predicted == y))


class EMAUpdate(fastnn.callbacks.Callback):
    """Updates an exponential moving average of the weights after every optimizer step."""

    def __init__(self, ema):
        super().__init__()
        self.ema = ema

    def on_batch_end(self, batch, logs=None):
        self.ema.update()


def main():
    p = example_parser(__doc__.splitlines()[0], epochs=8, batch_size=128, lr=2e-3)
    p.add_argument("--style", choices=["keras", "torch"], default="keras")
    p.add_argument("--verbose", type=int, default=1)
    p.add_argument("--ema", type=float, default=None, metavar="DECAY",
                   help="keep an exponential moving average of the weights (e.g. 0.999) and report its test accuracy")
    args = p.parse_args()

    data = setup(args)
    train, test = load_data(data)
    model = build_model()
    print(model)
    print(f"{fastnn_info()}, {len(train[0])} training and {len(test[0])} test images")

    if args.ema is not None and not 0.0 < args.ema < 1.0:
        p.error(f"--ema expects a decay in (0, 1), got {args.ema}")
    ema = optim.EMA(model, decay=args.ema) if args.ema is not None else None
    train_fn = train_keras_style if args.style == "keras" else train_torch_style
    accuracy, seconds = train_fn(model, train, test, args, ema)
    print(f"time per epoch: {', '.join(f'{s:.2f} s' for s in seconds)}; "
          f"training time {sum(seconds):.2f} s")
    print(f"test accuracy: {accuracy:.4f}")
    if ema is not None:
        with ema.average_parameters():  # the averaged weights in, the raw ones back afterwards
            print(f"test accuracy with the EMA weights (decay {args.ema}): {evaluate(model, test):.4f}")


if __name__ == "__main__":
    main()
