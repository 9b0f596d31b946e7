"""Recurrent-layer benchmark: fastnn's nn.LSTM / nn.GRU against torch.nn.LSTM / GRU on the CPU.

    python bench/rnn.py                       # 1 and 2 threads, every case (~2-4 minutes)
    python bench/rnn.py --quick               # smoke run: fewer repeats
    python bench/rnn.py --threads 2 --json rnn.json

Cases, each for LSTM and GRU with 1 and 2 layers (unidirectional, with biases, time-major):
  train-a   T=50,  B=32, I=128, H=256   forward, and forward + backward
  train-b   T=100, B=64, I=64,  H=128   forward, and forward + backward
  latency   T=20,  B=1,  I=32,  H=64    forward only (inference)

Both libraries get the same weights (the torch module's state dict is loaded into fastnn's) and
the same input, and are checked to agree before timing. "forward" runs without gradient
tracking (torch.no_grad / fastnn.no_grad), as inference does; "forward + backward" is one
training step without the optimizer: zero the gradients, forward, backward of output.sum()
(the input does not require grad, as a batch of data does not). Times are medians of warm
calls from the Python API (the Python layer included), one child process per thread count.
ratio = torch time / fastnn time: above 1, fastnn is faster. torch runs nn.LSTM through oneDNN's
fused RNN primitive (aten::mkldnn_rnn_layer) and nn.GRU as separate ATen ops per step, so the
summary gives the training target per cell.
"""

import sys

import common

# The issue states its targets for this thread count.
TARGET_THREADS = 2

SHAPES = [  # name, T, B, I, H, modes
    ("train-a", 50, 32, 128, 256, ("fwd", "fwd+bwd")),
    ("train-b", 100, 64, 64, 128, ("fwd", "fwd+bwd")),
    ("latency", 20, 1, 32, 64, ("fwd",)),
]


def cases():
    out = []
    for shape, T, B, I, H, modes in SHAPES:
        for cell in ("LSTM", "GRU"):
            for layers in (1, 2):
                for mode in modes:
                    out.append(dict(shape=shape, cell=cell, layers=layers, mode=mode, T=T, B=B, I=I, H=H))
    return out


def measure(threads, repeats):
    # Imported here, after run_child has set the thread variables.
    import numpy as np
    import fastnn
    from fastnn import nn

    fastnn.set_num_threads(threads)
    torch = common.import_torch(threads)
    rows = []
    todo = cases()
    for case in todo:
        rows.append(measure_case(case, repeats, np, fastnn, nn, torch))
        common.print_progress(threads, len(rows), len(todo))
    print(file=sys.stderr)
    return common.child_result(threads, fastnn, torch, rows)


def measure_case(case, repeats, np, fastnn, nn, torch):
    T, B, I, H, layers = case["T"], case["B"], case["I"], case["H"], case["layers"]
    x = np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)
    ours = getattr(nn, case["cell"])(I, H, num_layers=layers)
    xf = fastnn.from_numpy(x)
    fns = {}
    if torch is not None:
        torch.manual_seed(0)
        theirs = getattr(torch.nn, case["cell"])(I, H, num_layers=layers)
        ours.load_state_dict(theirs.state_dict())
        xt = torch.from_numpy(x)
        with torch.no_grad():
            expected = theirs(xt)[0].numpy()
        with fastnn.no_grad():
            got = ours(xf)[0].numpy()
        err = float(np.max(np.abs(got - expected)))
        if err > 1e-4:
            raise RuntimeError(f"fastnn and torch disagree on {label(case)}: max abs difference {err:.2e}")

    if case["mode"] == "fwd":
        def fastnn_fn():
            with fastnn.no_grad():
                ours(xf)

        def torch_fn():
            with torch.no_grad():
                theirs(xt)
    else:
        def fastnn_fn():
            ours.zero_grad()
            out, _ = ours(xf)
            out.sum().backward()

        def torch_fn():
            theirs.zero_grad()
            out, _ = theirs(xt)
            out.sum().backward()
    fns["fastnn"] = fastnn_fn
    if torch is not None:
        fns["torch"] = torch_fn

    timings = common.time_calls(fns, repeats=repeats)
    row = dict(case)
    row["seconds"], row["other_cpu_share"] = common.split_timings(timings)
    row["ratio"] = common.ratio(row["seconds"]["torch"], row["seconds"]["fastnn"])
    return row


# ---- parent: tables and summary ----------------------------------------------------------------

def label(row):
    return f"{row['cell']} {row['layers']}L {row['shape']} {row['mode']}"


def print_result_table(result):
    headers = ["case", "T, B, I, H", "fastnn ms", "torch ms", "torch/fastnn"]
    rows = []
    for row in result["rows"]:
        seconds = row["seconds"]
        rows.append([
            common.mark_disturbed(label(row), row["other_cpu_share"].values()),
            f"{row['T']}, {row['B']}, {row['I']}, {row['H']}",
            common.fmt_ms(seconds["fastnn"]), common.fmt_ms(seconds["torch"]), common.fmt(row["ratio"], ".2f"),
        ])
    common.print_timing_table(f"{result['threads']} thread(s); {common.during_run(result)}", headers, rows)


def summary_values(result):
    rows = result["rows"]

    def ratios(select):
        return [r["ratio"] for r in rows if select(r) and r["ratio"] is not None]

    values = {}
    for cell in ("LSTM", "GRU"):
        train = ratios(lambda r: r["cell"] == cell and r["shape"] != "latency" and r["mode"] == "fwd+bwd")
        values[f"min_ratio_train_fwd_bwd_{cell.lower()}"] = min(train) if train else None
    latency = ratios(lambda r: r["shape"] == "latency")
    values["min_ratio_latency_fwd"] = min(latency) if latency else None
    return values


# (key, label, target). The training target is one figure for both cells; it is shown per
# cell because torch runs them differently: nn.LSTM through oneDNN's fused RNN primitive
# (aten::mkldnn_rnn_layer), nn.GRU as separate ATen ops per step.
TARGETS = [
    ("min_ratio_train_fwd_bwd_lstm", "min torch/fastnn, LSTM fwd+bwd, training shapes", 2.0, ".2f"),
    ("min_ratio_train_fwd_bwd_gru", "min torch/fastnn, GRU fwd+bwd, training shapes", 2.0, ".2f"),
    ("min_ratio_latency_fwd", "min torch/fastnn, forward at the latency shape", 1.0, ".2f"),
]


def main():
    common.run_benchmark(__file__, "rnn", "Recurrent-layer benchmark: fastnn vs PyTorch CPU (LSTM, GRU).",
                         lambda args: measure(args.child, args.repeats), print_result_table,
                         summary_values=summary_values, targets=TARGETS, target_threads=TARGET_THREADS)


if __name__ == "__main__":
    main()
