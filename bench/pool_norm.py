"""Pooling and batch-norm benchmark: fastnn against PyTorch CPU, forward and forward+backward.

    python bench/pool_norm.py                      # 1 and 2 threads (~1 minute)
    python bench/pool_norm.py --quick              # smoke run: fewer repeats
    python bench/pool_norm.py --threads 2 --json pool_norm.json

Cases (NCHW float32):
  max pool 2x2 and avg pool 2x2 (stride 2) on (64, 6, 28, 28) (LeNet) and (64, 32, 32, 32)
  max pool 3x3 stride 2 on (64, 64, 16, 16)
  batch norm 2d in training mode (batch statistics, running-statistics update) on
  (64, 32, 32, 32) and (64, 128, 8, 8)

Both libraries are called the way a model calls them: fastnn through fastnn.nn.functional /
nn.BatchNorm2d on Tensors (the Python layer and autograd included), PyTorch through
torch.nn.functional / torch.nn.BatchNorm2d. "fwd" is one forward on an input that does not
require grad; "fwd+bwd" is a forward on an input that requires grad, then the backward of a
fixed upstream gradient (the input's and, for batch norm, the weight's and bias's gradients).
Each library runs in the same process at the same thread count (one child process per count);
the figure is the median time per call, warm; the ratio is torch time / fastnn time (above 1:
fastnn is faster).
"""

import sys

import common

CASES = [
    # (name, op, shape, settings)
    ("max 2x2", "max_pool", (64, 6, 28, 28), dict(kernel_size=2, stride=2)),
    ("avg 2x2", "avg_pool", (64, 6, 28, 28), dict(kernel_size=2, stride=2)),
    ("max 2x2", "max_pool", (64, 32, 32, 32), dict(kernel_size=2, stride=2)),
    ("avg 2x2", "avg_pool", (64, 32, 32, 32), dict(kernel_size=2, stride=2)),
    ("max 3x3 s2", "max_pool", (64, 64, 16, 16), dict(kernel_size=3, stride=2)),
    ("batchnorm2d train", "batch_norm", (64, 32, 32, 32), {}),
    ("batchnorm2d train", "batch_norm", (64, 128, 8, 8), {}),
]
PASSES = ("fwd", "fwd+bwd")


# ---- child: measure at one thread count --------------------------------------------------------

def make_calls(op, shape, settings, np, fastnn, torch, rng):
    """{(pass, library): no-argument callable}, after checking that both libraries agree."""
    import fastnn.nn.functional as F
    from fastnn import nn

    x = rng.standard_normal(shape, dtype=np.float32)
    fx, fx_grad = fastnn.tensor(x), fastnn.tensor(x, requires_grad=True)
    if op == "batch_norm":
        layer = nn.BatchNorm2d(shape[1])
        f_forward = layer
    elif op == "max_pool":
        f_forward = lambda t: F.max_pool2d(t, **settings)  # noqa: E731
    else:
        f_forward = lambda t: F.avg_pool2d(t, **settings)  # noqa: E731
    g = rng.standard_normal(f_forward(fx).shape, dtype=np.float32)

    def f_backward():
        fx_grad.grad = None
        f_forward(fx_grad).backward(g)

    calls = {("fwd", "fastnn"): lambda: f_forward(fx), ("fwd+bwd", "fastnn"): f_backward}
    if torch is None:
        return calls

    tx, tx_grad, tg = torch.from_numpy(x), torch.from_numpy(x.copy()).requires_grad_(), torch.from_numpy(g)
    tf = torch.nn.functional
    if op == "batch_norm":
        t_forward = torch.nn.BatchNorm2d(shape[1])
    elif op == "max_pool":
        t_forward = lambda t: tf.max_pool2d(t, **settings)  # noqa: E731
    else:
        t_forward = lambda t: tf.avg_pool2d(t, **settings)  # noqa: E731

    def t_backward():
        tx_grad.grad = None
        t_forward(tx_grad).backward(tg)

    # Timing different results would be worthless: forward and gradient must agree first.
    f_backward()
    t_backward()
    out_error = float(np.max(np.abs(f_forward(fx).detach().numpy() - t_forward(tx).detach().numpy())))
    grad_error = float(np.max(np.abs(fx_grad.grad.numpy() - tx_grad.grad.numpy())))
    if out_error > 1e-4 or grad_error > 1e-4:
        raise RuntimeError(f"fastnn and torch differ for {op} {shape}: output {out_error:.2e}, "
                           f"gradient {grad_error:.2e}")
    calls[("fwd", "torch")] = lambda: t_forward(tx)
    calls[("fwd+bwd", "torch")] = t_backward
    return calls


def measure(threads, repeats):
    import numpy as np
    import fastnn

    fastnn.set_num_threads(threads)
    torch = common.import_torch(threads)
    rng = np.random.default_rng(0)
    rows = []
    for name, op, shape, settings in CASES:
        calls = make_calls(op, shape, settings, np, fastnn, torch, rng)
        for pass_name in PASSES:
            fns = {lib: fn for (p, lib), fn in calls.items() if p == pass_name}
            seconds, shares = common.split_timings(common.time_calls(fns, repeats=repeats))
            rows.append({"case": name, "op": op, "shape": list(shape), "pass": pass_name,
                         "seconds": seconds, "other_cpu_share": shares})
        common.print_progress(threads, len(rows) // len(PASSES), len(CASES))
    print(file=sys.stderr)
    return common.child_result(threads, fastnn, torch, rows)


# ---- parent: tables ----------------------------------------------------------------------------

def print_result_table(result):
    headers = ["case", "shape", "pass", "fastnn ms", "torch ms", "torch/fastnn"]
    rows = []
    for row in result["rows"]:
        s = row["seconds"]
        rows.append([common.mark_disturbed(row["case"], row["other_cpu_share"].values()),
                     "x".join(map(str, row["shape"])), row["pass"],
                     common.fmt_ms(s["fastnn"]), common.fmt_ms(s["torch"]),
                     common.fmt(common.ratio(s["torch"], s["fastnn"]), ".2f")])
    common.print_timing_table(f"pooling and batch norm, {result['threads']} thread(s); {common.during_run(result)}",
                              headers, rows)


def main():
    common.run_benchmark(__file__, "pool_norm", "Pooling and batch-norm benchmark: fastnn vs PyTorch CPU.",
                         lambda args: measure(args.child, args.repeats), print_result_table)


if __name__ == "__main__":
    main()
