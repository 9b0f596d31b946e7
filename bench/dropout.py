"""Dropout benchmark: fastnn's Philox masks against numpy's and PyTorch CPU's random masks.

    python bench/dropout.py                      # 1 and 2 threads (~20 s)
    python bench/dropout.py --quick              # smoke run: fewer repeats
    python bench/dropout.py --threads 2 --json dropout.json

Cases (float32, p = 0.5):
  "mask": the inverted-dropout mask alone (1 / (1 - p) where kept, else 0): fastnn's
  `_C.dropout_mask` (Philox4x32-10, the counter-based generator shared with the GPU, AVX2 or
  AVX-512 on 8 or 16 counters at once); numpy `(rng.random(shape) >= p) * scale` with PCG64;
  torch `empty(shape).bernoulli_(1 - p) * scale`.
  "dropout fwd": a training-mode dropout on a tensor, as a model calls it: fastnn
  `F.dropout(t, p, training=True)`, numpy `x * mask`, torch `F.dropout(t, p)`.
Shapes: (256, 4096) (a wide layer at batch 256), (64, 32, 32, 32) (a CIFAR feature map), (64, 128)
(small: the fixed cost of a call). Each library runs in the same process at the same thread count
(one child process per count); the figure is the median time per call, warm; the ratios are the
other library's time / fastnn's (above 1: fastnn is faster).
"""

import sys

import common

SHAPES = [(256, 4096), (64, 32, 32, 32), (64, 128)]
PASSES = ("mask", "dropout fwd")
LIBRARIES = ("fastnn", "numpy", "torch")
P = 0.5


# ---- child: measure at one thread count --------------------------------------------------------

def make_calls(shape, np, fastnn, torch):
    """{(pass, library): no-argument callable}, after checking each library's keep rate."""
    import fastnn.nn.functional as F
    from fastnn import _C

    scale = np.float32(1.0 / (1.0 - P))
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape, dtype=np.float32)
    fx = fastnn.tensor(x)
    draws = iter(range(1 << 62))

    def numpy_mask():
        return (rng.random(shape, dtype=np.float32) >= P) * scale

    calls = {
        ("mask", "fastnn"): lambda: _C.dropout_mask(shape, P, 1234, next(draws)),
        ("mask", "numpy"): numpy_mask,
        ("dropout fwd", "fastnn"): lambda: F.dropout(fx, P, training=True),
        ("dropout fwd", "numpy"): lambda: x * numpy_mask(),
    }
    if torch is not None:
        tx = torch.from_numpy(x)
        calls[("mask", "torch")] = lambda: torch.empty(shape).bernoulli_(1.0 - P) * float(scale)
        calls[("dropout fwd", "torch")] = lambda: torch.nn.functional.dropout(tx, P)

    # Timing masks that are not masks would be worthless: values and keep rate first.
    for (pass_name, library), fn in calls.items():
        out = fn()
        out = out.numpy() if hasattr(out, "numpy") else np.asarray(out)
        kept = out != 0
        if pass_name == "mask" and not np.all(out[kept] == scale):
            raise RuntimeError(f"{library}'s mask of {shape} holds values other than 0 and {scale}")
        if abs(kept.mean() - (1.0 - P)) > 6 * np.sqrt(P * (1 - P) / out.size) + 1e-3:
            raise RuntimeError(f"{library} keeps {kept.mean():.4f} of {shape}, expected {1 - P}")
    return calls


def measure(threads, repeats):
    import numpy as np
    import fastnn

    fastnn.set_num_threads(threads)
    torch = common.import_torch(threads)
    rows = []
    for shape in SHAPES:
        calls = make_calls(shape, np, fastnn, torch)
        for pass_name in PASSES:
            fns = {lib: fn for (p, lib), fn in calls.items() if p == pass_name}
            seconds, shares = common.split_timings(common.time_calls(fns, repeats=repeats), LIBRARIES)
            rows.append({"pass": pass_name, "shape": list(shape), "seconds": seconds, "other_cpu_share": shares})
        common.print_progress(threads, len(rows) // len(PASSES), len(SHAPES))
    print(file=sys.stderr)
    return common.child_result(threads, fastnn, torch, rows)


# ---- parent: tables ----------------------------------------------------------------------------

def print_result_table(result):
    headers = ["pass", "shape", "fastnn ms", "numpy ms", "torch ms", "numpy/fastnn", "torch/fastnn"]
    rows = []
    for row in result["rows"]:
        s = row["seconds"]
        rows.append([common.mark_disturbed(row["pass"], row["other_cpu_share"].values()),
                     "x".join(map(str, row["shape"])), common.fmt_ms(s["fastnn"]), common.fmt_ms(s["numpy"]),
                     common.fmt_ms(s["torch"]), common.fmt(common.ratio(s["numpy"], s["fastnn"]), ".2f"),
                     common.fmt(common.ratio(s["torch"], s["fastnn"]), ".2f")])
    common.print_timing_table(f"dropout (p = {P}), {result['threads']} thread(s); {common.during_run(result)}",
                              headers, rows)


def main():
    common.run_benchmark(__file__, "dropout", "Dropout benchmark: fastnn vs numpy vs PyTorch CPU.",
                         lambda args: measure(args.child, args.repeats), print_result_table, numpy=True)


if __name__ == "__main__":
    main()
