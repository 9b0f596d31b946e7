"""One MNIST training epoch of LeNet-5 with Adam: fastnn against PyTorch CPU.

    python bench/train_lenet.py                  # batch 64 and 256, 1 and 2 threads
    python bench/train_lenet.py --threads 2 --json train_lenet.json

The same protocol as bench/train_mlp.py (same loop, same shuffled batches of the real MNIST
training set, same thread count, one child process per thread count, median of --epochs timed
epochs after a warm-up epoch), with LeNet-5: conv 6@5x5 pad 2, max pool, conv 16@5x5, max pool,
120, 84, 10, ReLU activations. Target (issue 4): fastnn's epoch <= 0.5x PyTorch's.
"""
import common
from train_mlp import fastnn_epochs, load, run_main, time_batches, torch_epochs


def lenet(nn):
    """LeNet-5, from fastnn.nn or torch.nn."""
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))


def measure(threads, epochs):
    import numpy as np
    import fastnn
    fastnn.set_num_threads(threads)
    torch = common.import_torch(threads)
    (x, y), (x_test, y_test) = load(np)
    train, test = (x.reshape(-1, 1, 28, 28), y), (x_test.reshape(-1, 1, 28, 28), y_test)

    def runs(batch_size):
        out = {"fastnn": lambda: fastnn_epochs(np, lenet, train, test, batch_size, epochs, eval_batch=1000)}
        if torch is not None:
            out["torch"] = lambda: torch_epochs(torch, np, lenet, train, test, batch_size, epochs)
        return out

    return time_batches(threads, torch, runs)


def main():
    run_main(__file__, __doc__, measure, "train_lenet",
             "one MNIST epoch of LeNet-5, Adam (median epoch time; target fastnn/torch <= 0.50)",
             default_epochs=1, fastnn_runs={"fastnn": "fastnn/torch"})


if __name__ == "__main__":
    main()
