"""GEMM benchmark: fastnn._C.gemm against numpy (OpenBLAS) and PyTorch CPU.

    python bench/gemm.py                      # 1 and 2 threads, all shapes (~1-2 minutes)
    python bench/gemm.py --quick              # smoke run: fewer sizes and repeats
    python bench/gemm.py --threads 2 --json gemm.json

Shapes (M, N, K; "NT" means op(a) = a, op(b) = b.T):
  square    n x n x n for n = 64 ... 2048
  training  the three GEMMs per layer of a 784-256-128-10 MLP at batch 64 and 256:
            forward Y = X W^T (NT), backward dX = dY W (NN), dW = dY^T X (TN)
  conv      LeNet-5 convolutions lowered to GEMM at batch 64: W (M x K) @ columns (K x N)

Every library gets the same logical operands: numpy and torch receive the transposed *views*
(a.T, b.T), so their BLAS sees the same stored layout that fastnn gets with its trans flags, and
each writes into its own preallocated output. GFLOP/s = 2*M*N*K / median seconds per call.
fastnn is called with its defaults, so its time includes the check_finite scan of the inputs.
"""

import argparse
import statistics
import sys

import common

MLP_LAYERS = [(784, 256), (256, 128), (128, 10)]  # (in_features, out_features)

# The issue states its targets for this thread count.
TARGET_THREADS = 2


def shapes(quick):
    """List of dicts: group, case, M, N, K, trans_a, trans_b."""
    squares = [64, 256, 512] if quick else [64, 128, 256, 512, 1024, 2048]
    batches = [64] if quick else [64, 256]
    out = []
    for n in squares:
        out.append(dict(group="square", case=f"n={n}", M=n, N=n, K=n, trans_a=False, trans_b=False))
    for batch in batches:
        for layer, (fan_in, fan_out) in enumerate(MLP_LAYERS, start=1):
            # forward Y = X W^T: X (batch, in), W stored (out, in)
            out.append(dict(group="training", case=f"fc{layer} fwd b{batch}",
                            M=batch, N=fan_out, K=fan_in, trans_a=False, trans_b=True))
            # backward dX = dY W: dY (batch, out), W (out, in)
            out.append(dict(group="training", case=f"fc{layer} dX b{batch}",
                            M=batch, N=fan_in, K=fan_out, trans_a=False, trans_b=False))
            # backward dW = dY^T X: dY stored (batch, out), X (batch, in)
            out.append(dict(group="training", case=f"fc{layer} dW b{batch}",
                            M=fan_out, N=fan_in, K=batch, trans_a=True, trans_b=False))
    # LeNet-5 at batch 64: conv1 1->6 channels, 5x5, 28x28 out; conv2 6->16, 5x5, 10x10 out.
    # M = output channels, N = batch * output pixels, K = input channels * kernel area.
    out.append(dict(group="conv", case="conv1 b64", M=6, N=64 * 28 * 28, K=1 * 5 * 5,
                    trans_a=False, trans_b=False))
    out.append(dict(group="conv", case="conv2 b64", M=16, N=64 * 10 * 10, K=6 * 5 * 5,
                    trans_a=False, trans_b=False))
    return out


# ---- child: measure at one thread count --------------------------------------------------------

def measure(threads, repeats, quick, skip_peak):
    # Imported here, after run_child has set the thread variables, which OpenBLAS reads at import.
    import numpy as np
    import fastnn
    from fastnn import _C

    fastnn.set_num_threads(threads)
    torch = common.import_torch(threads)

    peak = None
    if not skip_peak:
        # Max of three short runs: one run can read low when its threads do not start together.
        peak = max(_C.fma_peak_gflops(threads, seconds=0.2) for _ in range(3))

    rng = np.random.default_rng(0)
    todo = shapes(quick)
    rows = []
    for shape in todo:
        rows.append(measure_shape(shape, repeats, rng, np, _C, torch))
        common.print_progress(threads, len(rows), len(todo), "shapes")
    print(file=sys.stderr)

    return common.child_result(threads, fastnn, torch, rows, peak_gflops=peak,
                               peak_source=None if skip_peak else "measured (fma_peak_gflops, max of 3)")


def measure_shape(shape, repeats, rng, np, _C, torch):
    M, N, K = shape["M"], shape["N"], shape["K"]
    trans_a, trans_b = shape["trans_a"], shape["trans_b"]

    # Stored operands, as fastnn receives them.
    a = rng.standard_normal((K, M) if trans_a else (M, K), dtype=np.float32)
    b = rng.standard_normal((N, K) if trans_b else (K, N), dtype=np.float32)
    # Logical operands as transposed views, so OpenBLAS and torch see the same memory layout.
    a_op = a.T if trans_a else a
    b_op = b.T if trans_b else b

    c_fastnn = np.empty((M, N), dtype=np.float32)
    c_numpy = np.empty((M, N), dtype=np.float32)
    fns = {
        "fastnn": lambda: _C.gemm(a, b, c_fastnn, trans_a=trans_a, trans_b=trans_b),
        "numpy": lambda: np.matmul(a_op, b_op, out=c_numpy),
    }
    if torch is not None:
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        ta_op = ta.T if trans_a else ta
        tb_op = tb.T if trans_b else tb
        tc = torch.from_numpy(np.empty((M, N), dtype=np.float32))
        fns["torch"] = lambda: torch.matmul(ta_op, tb_op, out=tc)

    # Timing a wrong product would be worthless: check fastnn against numpy once first.
    fns["fastnn"]()
    fns["numpy"]()
    err = float(np.max(np.abs(c_fastnn - c_numpy))) / max(float(np.max(np.abs(c_numpy))), 1e-30)
    if err > 1e-4:
        raise RuntimeError(f"fastnn gemm differs from numpy for {shape['case']}: relative error {err:.2e}")

    timings = common.time_calls(fns, repeats=repeats)
    flops = 2.0 * M * N * K
    seconds, shares = common.split_timings(timings, ("fastnn", "numpy", "torch"))
    row = dict(shape)
    row["seconds"] = seconds
    row["gflops"] = {name: None if s is None else flops / s / 1e9 for name, s in seconds.items()}
    row["other_cpu_share"] = shares
    return row


# ---- parent: tables and summary ----------------------------------------------------------------

def shape_label(row):
    layout = ("T" if row["trans_a"] else "N") + ("T" if row["trans_b"] else "N")
    return f"{row['M']}x{row['N']}x{row['K']} {layout}"


def print_group_table(result, group):
    peak = result["peak_gflops"]
    headers = ["case", "M x N x K op", "fastnn GF/s", "numpy GF/s", "torch GF/s",
               "fastnn/numpy", "fastnn/torch", "% peak"]
    rows = []
    for row in result["rows"]:
        if row["group"] != group:
            continue
        g = row["gflops"]
        rows.append([
            common.mark_disturbed(row["case"], row["other_cpu_share"].values()), shape_label(row),
            common.fmt(g["fastnn"]), common.fmt(g["numpy"]), common.fmt(g["torch"]),
            common.fmt(common.ratio(g["fastnn"], g["numpy"]), ".2f"),
            common.fmt(common.ratio(g["fastnn"], g["torch"]), ".2f"),
            common.fmt(None if peak is None else 100.0 * g["fastnn"] / peak, ".0f"),
        ])
    title = (f"{group} shapes, {result['threads']} thread(s), peak {common.fmt(peak)} GFLOP/s, "
             f"{common.during_run(result)}")
    common.print_timing_table(title, headers, rows)


def summary_values(result):
    """The four figures the issue sets targets for, or None where the rows were not run."""
    rows = result["rows"]

    def numpy_ratios(select):
        return [common.ratio(r["gflops"]["fastnn"], r["gflops"]["numpy"]) for r in rows if select(r)]

    training = numpy_ratios(lambda r: r["group"] == "training")
    conv_small_m = numpy_ratios(lambda r: r["group"] == "conv" and r["M"] <= 16)
    big_squares = numpy_ratios(lambda r: r["group"] == "square" and r["M"] >= 512)
    n2048 = [r for r in rows if r["group"] == "square" and r["M"] == 2048]
    peak = result["peak_gflops"]
    return {
        "median_ratio_training": statistics.median(training) if training else None,
        "median_ratio_conv_m_le_16": statistics.median(conv_small_m) if conv_small_m else None,
        "min_ratio_squares_ge_512": min(big_squares) if big_squares else None,
        "pct_peak_n2048": 100.0 * n2048[0]["gflops"]["fastnn"] / peak if n2048 and peak else None,
    }


# (key, label, target, format)
TARGETS = [
    ("median_ratio_training", "median fastnn/numpy, training shapes", 1.3, ".2f"),
    ("median_ratio_conv_m_le_16", "median fastnn/numpy, conv shapes M<=16", 2.0, ".2f"),
    ("min_ratio_squares_ge_512", "min fastnn/numpy, squares n>=512", 0.95, ".2f"),
    ("pct_peak_n2048", "fastnn % of peak, n=2048", 85.0, ".0f"),
]


def parse_args():
    p = common.benchmark_parser("GEMM benchmark: fastnn vs numpy (OpenBLAS) vs PyTorch CPU.",
                                "fewer sizes and repeats (smoke run)")
    p.add_argument("--peak-gflops", type=float, metavar="X",
                   help="skip measuring the FMA peak: X is the whole machine's peak at the largest "
                        "thread count given; smaller counts get X * threads / max(threads)")
    p.add_argument("--skip-peak", action="store_true", help=argparse.SUPPRESS)
    return common.parse_benchmark_args(p)


def main():
    args = parse_args()
    if args.child is not None:
        common.print_child_result(measure(args.child, args.repeats, args.quick, args.skip_peak))
        return

    skip_peak = args.peak_gflops is not None
    info, results = common.run_children(__file__, args, ["--skip-peak"] if skip_peak else [])
    if skip_peak:
        counts = args.thread_counts
        for result in results:
            threads = result["threads"]
            result["peak_gflops"] = args.peak_gflops * threads / max(counts)
            result["peak_source"] = f"--peak-gflops {args.peak_gflops} scaled by {threads}/{max(counts)}"

    common.print_header(info, numpy=True, gemm_tile=True)
    for r in results:
        print(f"peak at {r['threads']} thread(s): {common.fmt(r['peak_gflops'])} GFLOP/s ({r['peak_source']})")

    for result in results:
        for group in ("square", "training", "conv"):
            print_group_table(result, group)
    summary = common.print_summary(results, summary_values, TARGETS, TARGET_THREADS)

    common.write_results_json(args, "gemm", info, results, targets=common.targets_json(TARGETS, TARGET_THREADS),
                              summary=summary, peak_gflops=args.peak_gflops)


if __name__ == "__main__":
    main()
