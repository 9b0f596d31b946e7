"""One MNIST training epoch of LeNet-5 with Adam: fastnn against PyTorch CPU.

    python bench/train_lenet.py                  # batch 64 and 256, 1 and 2 threads
    python bench/train_lenet.py --threads 2 --json train_lenet.json

The same protocol as bench/train_mlp.py (same loop, same shuffled batches of the real MNIST
training set, same thread count, one child process per thread count, median of --epochs timed
epochs after a warm-up epoch), with LeNet-5: conv 6@5x5 pad 2, max pool, conv 16@5x5, max pool,
120, 84, 10, ReLU activations. Target (issue 4): fastnn's epoch <= 0.5x PyTorch's.
"""
import argparse
import json
import statistics
import sys
import time

import common
from train_mlp import batches, load

BATCHES = (64, 256)


def fastnn_lenet():
    from fastnn import nn
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))


def torch_lenet(torch):
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))


def fastnn_epochs(np, train, test, batch_size, epochs):
    import fastnn
    from fastnn import nn, optim
    fastnn.manual_seed(0)
    model = fastnn_lenet()
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
    with fastnn.no_grad():
        predicted = np.concatenate([model(fastnn.Tensor(test[0][i:i + 1000])).numpy().argmax(axis=1)
                                    for i in range(0, len(test[0]), 1000)])
    return times[1:], float(np.mean(predicted == test[1]))


def torch_epochs(torch, np, train, test, batch_size, epochs):
    torch.manual_seed(0)
    model = torch_lenet(torch)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
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


def measure(threads, epochs):
    import numpy as np
    import fastnn
    fastnn.set_num_threads(threads)
    torch = common.import_torch(threads)
    (x, y), (x_test, y_test) = load(np)
    train, test = (x.reshape(-1, 1, 28, 28), y), (x_test.reshape(-1, 1, 28, 28), y_test)
    rows = []
    for batch_size in BATCHES:
        row = {"batch_size": batch_size, "seconds": {}, "accuracy": {}}
        runs = {"fastnn": lambda: fastnn_epochs(np, train, test, batch_size, epochs)}
        if torch is not None:
            runs["torch"] = lambda: torch_epochs(torch, np, train, test, batch_size, epochs)
        for name, run in runs.items():
            times, accuracy = run()
            row["seconds"][name] = statistics.median(times)
            row["accuracy"][name] = accuracy
            print(f"\r{threads} thread(s), batch {batch_size}: {name} done", end="", file=sys.stderr, flush=True)
        rows.append(row)
    print(file=sys.stderr)
    return {"threads": threads, "torch_version": torch.__version__ if torch else None, "rows": rows}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", default="1,2")
    p.add_argument("--epochs", type=int, default=1, help="timed epochs after one warm-up epoch (default 1)")
    p.add_argument("--json", metavar="FILE")
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child is not None:
        json.dump(measure(args.child, args.epochs), sys.stdout)
        return

    results = [common.run_child(__file__, t, ["--epochs", str(args.epochs)])
               for t in common.parse_threads(args.threads)]
    print(f"\nCPU: {common.cpu_model()}; torch {results[0]['torch_version'] or 'not installed'}")
    headers = ["threads", "batch", "fastnn s", "torch s", "fastnn/torch", "acc fastnn", "acc torch"]
    table = []
    for result in results:
        for row in result["rows"]:
            s, a = row["seconds"], row["accuracy"]
            table.append([str(result["threads"]), str(row["batch_size"]), common.fmt(s["fastnn"], ".3f"),
                          common.fmt(s.get("torch"), ".3f"),
                          common.fmt(common.ratio(s["fastnn"], s.get("torch")), ".2f"),
                          common.fmt(a["fastnn"], ".4f"), common.fmt(a.get("torch"), ".4f")])
    common.print_table("one MNIST epoch of LeNet-5, Adam (median epoch time; target fastnn/torch <= 0.50)",
                       headers, table)
    if args.json:
        common.write_json(args.json, {"benchmark": "train_lenet", "machine": common.machine_info(),
                                      "results": results})
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
