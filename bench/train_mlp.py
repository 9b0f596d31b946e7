"""One MNIST training epoch of a 784-256-128-10 MLP with Adam: fastnn against PyTorch CPU.

    python bench/train_mlp.py                  # batch 64 and 256, 1 and 2 threads
    python bench/train_mlp.py --threads 2 --epochs 2 --json train_mlp.json

Both libraries run the same explicit loop (forward, cross-entropy, zero_grad, backward, Adam
step) over the same shuffled batches of the real MNIST training set, with the same thread count,
in one child process per thread count. The figure is the median epoch time over --epochs epochs
(the first, warm-up epoch is not counted); fastnn's Keras-style fit() is timed too. The test
accuracy after the timed epochs is printed as a check that both trained.
"""
import argparse
import os
import statistics
import sys
import time

import common

BATCHES = (64, 256)


def data_dir():
    here = os.path.dirname(os.path.abspath(__file__))
    fallback = os.path.normpath(os.path.join(here, "..", "..", "shared", "data"))
    return os.environ.get("FASTNN_DATA") or (fallback if os.path.isdir(fallback) else None)


def load(np):
    from fastnn.datasets import load_mnist
    (x_train, y_train), (x_test, y_test) = load_mnist(data_dir())
    x_train = x_train.reshape(len(x_train), -1).astype(np.float32) / 255.0
    x_test = x_test.reshape(len(x_test), -1).astype(np.float32) / 255.0
    mean, std = x_train.mean(), x_train.std()
    return ((x_train - mean) / std, y_train.astype(np.int64)), ((x_test - mean) / std, y_test.astype(np.int64))


def batches(np, n, batch_size, epoch):
    order = np.random.default_rng(epoch).permutation(n)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def mlp(nn):
    """The 784-256-128-10 MLP, from fastnn.nn or torch.nn."""
    return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))


# ---- fastnn --------------------------------------------------------------------------------------

def fastnn_epochs(np, make_model, train, test, batch_size, epochs, eval_batch=None):
    """Epoch times (after a warm-up epoch) and test accuracy of make_model(fastnn.nn) trained by
    the explicit loop; the test set is classified eval_batch images at a time (all at once: None)."""
    import fastnn
    from fastnn import nn, optim
    fastnn.manual_seed(0)
    model = make_model(nn)
    opt = optim.Adam(model.parameters(), lr=1e-3)
    x, y = train
    times = []
    for epoch in range(epochs + 1):
        index_batches = batches(np, len(x), batch_size, epoch)
        start = time.perf_counter()
        for index in index_batches:
            loss = nn.functional.cross_entropy(model(fastnn.Tensor(x[index])), fastnn.Tensor(y[index]))
            opt.zero_grad()
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - start)
    model.eval()
    step = eval_batch or len(test[0])
    with fastnn.no_grad():
        predicted = np.concatenate([model(fastnn.Tensor(test[0][i:i + step])).numpy().argmax(axis=1)
                                    for i in range(0, len(test[0]), step)])
    return times[1:], float(np.mean(predicted == test[1]))


def fastnn_fit_epochs(np, train, test, batch_size, epochs):
    import fastnn
    from fastnn import nn
    fastnn.manual_seed(0)
    model = mlp(nn)
    model.compile(optimizer="adam", loss="cross_entropy", lr=1e-3)
    times = []
    for _ in range(epochs + 1):
        start = time.perf_counter()
        model.fit(*train, batch_size=batch_size, epochs=1, verbose=0, seed=0)
        times.append(time.perf_counter() - start)
    accuracy = float(np.mean(model.predict(test[0], batch_size=1000).argmax(axis=1) == test[1]))
    return times[1:], accuracy


# ---- PyTorch -------------------------------------------------------------------------------------

def torch_epochs(torch, np, make_model, train, test, batch_size, epochs):
    """Epoch times (after a warm-up epoch) and test accuracy of make_model(torch.nn), same loop."""
    torch.manual_seed(0)
    model = make_model(torch.nn)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)  # PyTorch's default (foreach) variant
    x, y = torch.from_numpy(train[0]), torch.from_numpy(train[1])
    loss_fn = torch.nn.CrossEntropyLoss()
    times = []
    for epoch in range(epochs + 1):
        index_batches = [torch.from_numpy(i) for i in batches(np, len(x), batch_size, epoch)]
        start = time.perf_counter()
        for index in index_batches:
            loss = loss_fn(model(x[index]), y[index])
            opt.zero_grad()
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - start)
    with torch.no_grad():
        predicted = model(torch.from_numpy(test[0])).argmax(dim=1).numpy()
    return times[1:], float(np.mean(predicted == test[1]))


# ---- child / parent (train_lenet.py uses these too) ---------------------------------------------

def time_batches(threads, torch, runs):
    """The child's result: for each batch size of BATCHES, the median epoch time and the test
    accuracy of each run of runs(batch_size), {name: fn() -> (epoch times, accuracy)}."""
    rows = []
    for batch_size in BATCHES:
        row = {"batch_size": batch_size, "seconds": {}, "accuracy": {}}
        for name, run in runs(batch_size).items():
            times, accuracy = run()
            row["seconds"][name] = statistics.median(times)
            row["accuracy"][name] = accuracy
            print(f"\r{threads} thread(s), batch {batch_size}: {name} done", end="", file=sys.stderr, flush=True)
        rows.append(row)
    print(file=sys.stderr)
    return {"threads": threads, "torch_version": torch.__version__ if torch else None, "rows": rows}


def measure(threads, epochs):
    import numpy as np
    import fastnn
    fastnn.set_num_threads(threads)
    torch = common.import_torch(threads)
    train, test = load(np)

    def runs(batch_size):
        out = {"fastnn": lambda: fastnn_epochs(np, mlp, train, test, batch_size, epochs),
               "fastnn fit": lambda: fastnn_fit_epochs(np, train, test, batch_size, epochs)}
        if torch is not None:
            out["torch"] = lambda: torch_epochs(torch, np, mlp, train, test, batch_size, epochs)
        return out

    return time_batches(threads, torch, runs)


def run_main(script, doc, measure_child, benchmark, title, default_epochs, fastnn_runs):
    """main() of a training benchmark: the options, one child per thread count running
    measure_child(threads, epochs), the table and the JSON file. fastnn_runs: the fastnn runs of the
    child's rows, each with the header of its ratio to torch's time."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--threads", default="1,2")
    p.add_argument("--epochs", type=int, default=default_epochs,
                   help=f"timed epochs after one warm-up epoch (default {default_epochs})")
    p.add_argument("--json", metavar="FILE")
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child is not None:
        common.print_child_result(measure_child(args.child, args.epochs))
        return

    results = [common.run_child(script, t, ["--epochs", str(args.epochs)])
               for t in common.parse_threads(args.threads)]
    print(f"\nCPU: {common.cpu_model()}; torch {results[0]['torch_version'] or 'not installed'}")
    headers = (["threads", "batch"] + [f"{name} s" for name in fastnn_runs] + ["torch s"] + list(fastnn_runs.values())
               + ["acc fastnn", "acc torch"])
    table = []
    for result in results:
        for row in result["rows"]:
            s, a = row["seconds"], row["accuracy"]
            table.append([str(result["threads"]), str(row["batch_size"])]
                         + [common.fmt(s[name], ".3f") for name in fastnn_runs] + [common.fmt(s.get("torch"), ".3f")]
                         + [common.fmt(common.ratio(s[name], s.get("torch")), ".2f") for name in fastnn_runs]
                         + [common.fmt(a["fastnn"], ".4f"), common.fmt(a.get("torch"), ".4f")])
    common.print_table(title, headers, table)
    if args.json:
        common.write_json(args.json, {"benchmark": benchmark, "machine": common.machine_info(), "results": results})
        print(f"\nwrote {args.json}")


def main():
    run_main(__file__, __doc__, measure, "train_mlp",
             "one MNIST epoch, 784-256-128-10 MLP, Adam (median epoch time; target fastnn/torch <= 0.70)",
             default_epochs=2, fastnn_runs={"fastnn": "fastnn/torch", "fastnn fit": "fit/torch"})


if __name__ == "__main__":
    main()
