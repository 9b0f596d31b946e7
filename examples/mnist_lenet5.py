"""LeNet-5 on MNIST, the Keras way: conv 6@5x5 (pad 2), pool, conv 16@5x5, pool, 120, 84, 10.

    python examples/mnist_lenet5.py                  # 8 epochs, batch 64, Adam with cosine decay
    python examples/mnist_lenet5.py --epochs 3 --threads 1

Finds MNIST in --data, $FASTNN_DATA, ../shared/data or ~/.cache/fastnn (see fastnn.datasets).
Prints a progress bar per epoch, the time of each epoch and the test accuracy (>= 99%).
"""
import numpy as np

import fastnn
from fastnn import nn, optim
from fastnn.datasets import load_mnist
from _common import EpochTimer, example_parser, fastnn_info, setup


def lenet5():
    return nn.Sequential(
        nn.Conv2d(1, 6, kernel_size=5, padding=2), nn.ReLU(), nn.MaxPool2d(2),    # 6 x 14 x 14
        nn.Conv2d(6, 16, kernel_size=5), nn.ReLU(), nn.MaxPool2d(2),              # 16 x 5 x 5
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120), nn.ReLU(),
        nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, 10),
    )


def load_data(path):
    """Images as float32 (N, 1, 28, 28), centred and scaled with the training set's statistics."""
    (x_train, y_train), (x_test, y_test) = load_mnist(path)
    x_train = x_train[:, None].astype(np.float32) / 255.0
    x_test = x_test[:, None].astype(np.float32) / 255.0
    mean, std = x_train.mean(), x_train.std()
    return ((x_train - mean) / std, y_train.astype(np.int64)), ((x_test - mean) / std, y_test.astype(np.int64))


def main():
    p = example_parser(__doc__.splitlines()[0], epochs=8, batch_size=64, lr=2e-3)
    p.add_argument("--verbose", type=int, default=1, choices=[0, 1, 2])
    args = p.parse_args()

    data = setup(args)
    train, test = load_data(data)
    model = lenet5()
    print(model)
    print(f"{fastnn_info()}, {len(train[0])} training and {len(test[0])} test images")

    optimizer = optim.Adam(model.parameters(), lr=args.lr)
    model.compile(optimizer=optimizer, loss="cross_entropy", metrics=["accuracy"])
    timer = EpochTimer()
    # The rate follows a cosine from lr down to 0 over the run: the last epochs settle the weights.
    schedule = optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    model.fit(*train, batch_size=args.batch_size, epochs=args.epochs, validation_data=test, seed=args.seed,
              callbacks=[timer, fastnn.callbacks.LearningRateScheduler(schedule)], verbose=args.verbose)
    accuracy = model.evaluate(*test, batch_size=1000)["accuracy"]
    print(f"time per epoch: {', '.join(f'{s:.2f} s' for s in timer.seconds)}; "
          f"training time {sum(timer.seconds):.2f} s")
    print(f"test accuracy: {accuracy:.4f}")


if __name__ == "__main__":
    main()
