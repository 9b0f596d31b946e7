"""Convolution-layer benchmark: fastnn against PyTorch CPU (oneDNN), same process, same threads.

    python bench/conv.py                      # 1 and 2 threads, every case (~1 minute)
    python bench/conv.py --threads 2 --quick  # smoke run
    python bench/conv.py --json conv.json

Each case is timed through the public Python API of both libraries, warm, median of several
samples (bench/common.py): "fwd" is the forward without a graph (fastnn.no_grad /
torch.no_grad), "fwd+bwd" the forward recording the graph plus backward() with a fixed output
gradient, the gradients reset to None before each call. The first layer of a network reads the
data, which needs no gradient: cases marked "dX no" skip the input gradient (in both
libraries), as training would. Ratio = torch time / fastnn time (> 1: fastnn is faster).

CASES is a list other benchmarks of the same family (pooling, batch norm) extend with their own
`Case`s: each builds its callables for both libraries in `setup`; the tables group cases by
`group`. Speed targets (the issue's, at 2 threads) apply to the "conv" group's fwd+bwd.
"""

import sys
from dataclasses import dataclass
from typing import Callable

import common

# The issue states its targets for this thread count: every conv shape's fwd+bwd at least
# this much faster than PyTorch.
TARGET_THREADS = 2
TARGET_RATIO = 1.5
DIRECTIONS = ("fwd", "fwd+bwd")


@dataclass
class Case:
    group: str   # the table it goes in: "conv", "pool", "norm", ...
    name: str
    shape: str   # a short description for the table
    # setup(np, fastnn, torch, rng) -> {direction: {"fastnn": fn, "torch": fn or None}}, plus
    # an optional "check": fn() that raises when fastnn and torch disagree.
    setup: Callable
    input_grad: bool = True


def conv_case(name, N, C, K, R, H, padding=0, stride=1, groups=1, input_grad=True):
    """A Conv2d(C, K, R, stride, padding, groups) layer on (N, C, H, H) inputs."""
    shape = f"N={N} {C}->{K} {R}x{R} s{stride} p{padding}" + (f" g{groups}" if groups > 1 else "") + f" on {H}x{H}"

    def setup(np, fastnn, torch, rng):
        import fastnn.nn.functional as F
        x = rng.standard_normal((N, C, H, H), dtype=np.float32)
        w = rng.standard_normal((K, C // groups, R, R), dtype=np.float32) * np.float32((C // groups * R * R) ** -0.5)
        b = rng.standard_normal(K, dtype=np.float32)
        P = (H + 2 * padding - R) // stride + 1
        gy = rng.standard_normal((N, K, P, P), dtype=np.float32)

        fx = fastnn.tensor(x)
        fw, fb = fastnn.tensor(w, requires_grad=True), fastnn.tensor(b, requires_grad=True)
        fx_grad = fastnn.tensor(x, requires_grad=input_grad)
        fastnn_leaves = (fx_grad, fw, fb)

        def fastnn_fwd():
            with fastnn.no_grad():
                return F.conv2d(fx, fw, fb, stride, padding, 1, groups)

        def fastnn_fwd_bwd():
            for t in fastnn_leaves:
                t.grad = None
            F.conv2d(fx_grad, fw, fb, stride, padding, 1, groups).backward(gy)

        fns = {"fwd": {"fastnn": fastnn_fwd, "torch": None}, "fwd+bwd": {"fastnn": fastnn_fwd_bwd, "torch": None}}
        if torch is not None:
            tx = torch.from_numpy(x)
            tw, tb = torch.tensor(w, requires_grad=True), torch.tensor(b, requires_grad=True)
            tx_grad = torch.tensor(x, requires_grad=input_grad)
            tgy = torch.from_numpy(gy)
            torch_leaves = (tx_grad, tw, tb)
            conv = torch.nn.functional.conv2d

            def torch_fwd():
                with torch.no_grad():
                    return conv(tx, tw, tb, stride, padding, 1, groups)

            def torch_fwd_bwd():
                for t in torch_leaves:
                    t.grad = None
                conv(tx_grad, tw, tb, stride, padding, 1, groups).backward(tgy)

            fns["fwd"]["torch"], fns["fwd+bwd"]["torch"] = torch_fwd, torch_fwd_bwd

            def check():  # timing a wrong result would be worthless
                ours, theirs = fastnn_fwd().numpy(), torch_fwd().numpy()
                err = float(np.max(np.abs(ours - theirs))) / max(float(np.max(np.abs(theirs))), 1e-30)
                fastnn_fwd_bwd()
                torch_fwd_bwd()
                pairs = [(fw.grad.numpy(), tw.grad.numpy()), (fb.grad.numpy(), tb.grad.numpy())]
                if input_grad:
                    pairs.append((fx_grad.grad.numpy(), tx_grad.grad.numpy()))
                for a, t in pairs:
                    err = max(err, float(np.max(np.abs(a - t))) / max(float(np.max(np.abs(t))), 1e-30))
                if err > 1e-4:
                    raise RuntimeError(f"fastnn conv2d differs from torch for {name}: relative error {err:.2e}")
            fns["check"] = check
        return fns

    return Case("conv", name, shape, setup, input_grad)


CASES = [
    # LeNet-5 at batch 64; conv1 reads the images: no input gradient.
    conv_case("lenet conv1", 64, 1, 6, 5, 28, padding=2, input_grad=False),
    conv_case("lenet conv2", 64, 6, 16, 5, 14),
    # A small CIFAR VGG at batch 64; conv1 reads the images.
    conv_case("cifar conv1", 64, 3, 32, 3, 32, padding=1, input_grad=False),
    conv_case("cifar conv2", 64, 32, 64, 3, 16, padding=1),
    conv_case("cifar conv3", 64, 64, 128, 3, 8),
    conv_case("cifar 1x1", 64, 64, 128, 1, 16),
    conv_case("cifar depthwise", 64, 64, 64, 3, 16, padding=1, groups=64),
]


# ---- child: measure at one thread count --------------------------------------------------------

def measure(threads, repeats, quick, only):
    import numpy as np
    import fastnn

    fastnn.set_num_threads(threads)
    torch = common.import_torch(threads)
    todo = [c for c in CASES if not only or any(o in c.name for o in only)]
    rows = []
    for i, case in enumerate(todo):
        rng = np.random.default_rng(i)
        fns = case.setup(np, fastnn, torch, rng)
        if "check" in fns:
            fns["check"]()
        row = {"group": case.group, "name": case.name, "shape": case.shape, "input_grad": case.input_grad,
               "seconds": {}, "other_cpu_share": {}}
        for direction in DIRECTIONS:
            libs = {lib: fn for lib, fn in fns[direction].items() if fn is not None}
            timings = common.time_calls(libs, repeats=repeats, max_s=0.6 if quick else 1.5)
            row["seconds"][direction], row["other_cpu_share"][direction] = common.split_timings(timings)
        rows.append(row)
        common.print_progress(threads, len(rows), len(todo))
    print(file=sys.stderr)
    return common.child_result(threads, fastnn, torch, rows)


# ---- parent: tables and summary ----------------------------------------------------------------

def print_tables(result):
    groups = []
    for row in result["rows"]:
        if row["group"] not in groups:
            groups.append(row["group"])
    for group in groups:
        headers = ["case", "shape", "dX", "fwd fastnn ms", "fwd torch ms", "fwd ratio",
                   "f+b fastnn ms", "f+b torch ms", "f+b ratio"]
        rows = []
        for row in result["rows"]:
            if row["group"] != group:
                continue
            shares = [v for d in row["other_cpu_share"].values() for v in d.values()]
            cells = [common.mark_disturbed(row["name"], shares), row["shape"], "yes" if row["input_grad"] else "no"]
            for direction in DIRECTIONS:
                t = row["seconds"][direction]
                cells += [common.fmt_ms(t["fastnn"]), common.fmt_ms(t["torch"]),
                          common.fmt(common.ratio(t["torch"], t["fastnn"]), ".2f")]
            rows.append(cells)
        title = f"{group}, {result['threads']} thread(s); ratio = torch time / fastnn time; {common.during_run(result)}"
        common.print_timing_table(title, headers, rows)


def summary(results):
    """The fwd+bwd ratio of every conv case at the target thread count, against the target."""
    at_target = [r for r in results if r["threads"] == TARGET_THREADS]
    if not at_target:
        print(f"\nno run at {TARGET_THREADS} threads: the targets were not checked")
        return {}
    out, rows = {}, []
    for row in at_target[0]["rows"]:
        if row["group"] != "conv":
            continue
        s = row["seconds"]["fwd+bwd"]
        value = common.ratio(s["torch"], s["fastnn"])
        out[row["name"]] = value
        verdict = "not run" if value is None else ("met" if value >= TARGET_RATIO else "NOT met")
        rows.append([row["name"], f">= {TARGET_RATIO:.2f}", common.fmt(value, ".2f"), verdict])
    common.print_table(f"targets: conv fwd+bwd, torch time / fastnn time at {TARGET_THREADS} threads",
                       ["case", "target", "ratio", ""], rows)
    return out


def parse_args():
    p = common.benchmark_parser("Convolution benchmark: fastnn vs PyTorch CPU.",
                                "fewer repeats, shorter samples (smoke run)")
    p.add_argument("--only", action="append", metavar="TEXT", help="only the cases whose name contains TEXT "
                   "(repeatable)")
    return common.parse_benchmark_args(p)


def main():
    args = parse_args()
    if args.child is not None:
        common.print_child_result(measure(args.child, args.repeats, args.quick, args.only))
        return

    only_args = [arg for text in args.only or [] for arg in ("--only", text)]
    info, results = common.run_children(__file__, args, only_args)
    common.print_header(info)
    for result in results:
        print_tables(result)
    figures = summary(results)
    common.write_results_json(args, "conv", info, results,
                              targets={"fwd+bwd torch/fastnn": {"at_threads": TARGET_THREADS, "min": TARGET_RATIO}},
                              summary=figures)


if __name__ == "__main__":
    main()
