"""GPU benchmark: fastnn's CUDA kernels against PyTorch CUDA in the same process.

In the order of llm.c's dev/cuda files: the reference, our kernel, validation against the
reference, then timing. Sections:
  sgemm    fp32 and tf32 SGEMM for n = 512 ... 8192 against cuBLAS (through PyTorch), TFLOP/s and
           ratio (issue 6 targets at n >= 2048: fp32 >= 0.8x cuBLAS, tf32 >= 0.6x)
  conv     LeNet and CIFAR convolution shapes, forward + backward, against cuDNN
  lstm     one-layer LSTM forward + backward at the CPU benchmark's training shapes, against cuDNN
  adam     one Adam update of the 784-256-128-10 MLP's parameters against torch.optim.Adam
  mnist    one MNIST epoch of the MLP and of LeNet-5 (Adam, batch 64 and 256): fastnn eager,
           fastnn with the step captured as a CUDA graph (fastnn.cuda.graphed_step), PyTorch
           eager (issue 6 target: the captured step >= 3x faster than PyTorch at batch 64)
Runs only where fastnn was built with CUDA and a GPU is visible; elsewhere it says so and exits 0.
Every timing synchronizes the device around each sample: for a library called from Python the
launches are part of the cost. Record the figures in bench/RESULTS.md.

    python bench/gpu.py [--sections sgemm,conv,lstm,adam,mnist] [--data DIR] [--json FILE]
"""
import argparse
import json
import sys
import time

import numpy as np

import fastnn
from fastnn import _C, nn

TARGET_SGEMM = {"fp32": 0.8, "tf32": 0.6}  # SGEMM against cuBLAS at n >= 2048
TARGET_GRAPHED = 3.0   # captured MNIST step >= 3x faster than PyTorch eager at batch 64


def seconds(fn, sync, repeats=10):
    """Median of `repeats` timed calls after one warm-up call, synchronized."""
    fn()
    sync()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        samples.append(time.perf_counter() - start)
    return float(np.median(samples))


def fastnn_sync():
    fastnn.cuda.synchronize()


# ---- sgemm -----------------------------------------------------------------------------------

def validate_gemm():
    """Every transpose combination on odd shapes against float64 numpy: max relative error."""
    rng = np.random.default_rng(0)
    worst = 0.0
    for ta in (False, True):
        for tb in (False, True):
            M, N, K = 257, 131, 67
            a = rng.standard_normal((K, M) if ta else (M, K)).astype(np.float32)
            b = rng.standard_normal((N, K) if tb else (K, N)).astype(np.float32)
            ref = (a.T if ta else a).astype(np.float64) @ (b.T if tb else b)
            got = _C.cuda.gemm(_C.cuda.from_numpy(a), _C.cuda.from_numpy(b), trans_a=ta, trans_b=tb).numpy()
            worst = max(worst, float(np.max(np.abs(got - ref)) / np.max(np.abs(ref))))
    return worst


def bench_sgemm(torch, sizes):
    error = validate_gemm()
    print(f"sgemm: validation max relative error {error:.2e} ({'ok' if error < 1e-5 else 'FAILED'})")
    rows = []
    for precision in ("fp32", "tf32"):
        fastnn.cuda.set_allow_tf32(precision == "tf32")
        if torch is not None:
            torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
        for n in sizes:
            a = _C.cuda.from_numpy(np.random.default_rng(1).standard_normal((n, n), dtype=np.float32))
            ours = seconds(lambda: _C.cuda.gemm(a, a), fastnn_sync)
            row = {"precision": precision, "n": n, "fastnn_tflops": 2 * n ** 3 / ours / 1e12}
            if torch is not None:
                t = torch.from_dlpack(a)
                theirs = seconds(lambda: t @ t, torch.cuda.synchronize)
                row.update(cublas_tflops=2 * n ** 3 / theirs / 1e12, ratio=theirs / ours)
            rows.append(row)
            below = torch is not None and n >= 2048 and row["ratio"] < TARGET_SGEMM[precision]
            note = "" if torch is None else (f"  cuBLAS {row['cublas_tflops']:6.2f}  fastnn/cuBLAS speed "
                                             f"{row['ratio']:.2f}" + ("  (below target)" if below else ""))
            print(f"  {precision} n={n:5d}  fastnn {row['fastnn_tflops']:6.2f} TFLOP/s{note}", flush=True)
    fastnn.cuda.set_allow_tf32(False)
    return {"validation_error": error, "rows": rows}


# ---- conv --------------------------------------------------------------------------------------

CONV_CASES = [  # name, N, C, H, K, kernel, padding
    ("lenet conv1", 64, 1, 28, 6, 5, 2), ("lenet conv2", 64, 6, 14, 16, 5, 0),
    ("cifar conv1", 64, 3, 32, 32, 3, 1), ("cifar conv2", 64, 32, 16, 64, 3, 1),
    ("cifar conv3", 64, 64, 8, 128, 3, 1)]


def timed_row(case, ours, theirs=None, got=None, expected=None):
    """One comparison: fastnn's time for ours(); with PyTorch, its time for theirs(), the ratio,
    and the largest difference between the two outputs got and expected. Printed and returned."""
    row = {"case": case, "fastnn_ms": 1e3 * seconds(ours, fastnn_sync)}
    if theirs is not None:
        import torch
        row["max_abs_error"] = float(np.max(np.abs(got - expected)))
        row["torch_ms"] = 1e3 * seconds(theirs, torch.cuda.synchronize)
        row["ratio"] = row["torch_ms"] / row["fastnn_ms"]
    print(f"  {case} f+b fastnn {row['fastnn_ms']:.3f} ms" + ("" if theirs is None else
          f"  torch {row['torch_ms']:.3f} ms  torch/fastnn {row['ratio']:.2f}  max |diff| {row['max_abs_error']:.1e}"),
          flush=True)
    return row


def bench_conv(torch):
    rows = []
    rng = np.random.default_rng(2)
    for name, N, C, H, K, R, pad in CONV_CASES:
        x = rng.standard_normal((N, C, H, H)).astype(np.float32)
        w = (rng.standard_normal((K, C, R, R)) * 0.1).astype(np.float32)
        xf = fastnn.tensor(x, device="cuda", requires_grad=True)
        wf = fastnn.tensor(w, device="cuda", requires_grad=True)

        def ours():
            nn.functional.conv2d(xf, wf, padding=pad).sum().backward()
        theirs = got = expected = None
        if torch is not None:
            xt = torch.tensor(x, device="cuda", requires_grad=True)
            wt = torch.tensor(w, device="cuda", requires_grad=True)
            expected = torch.nn.functional.conv2d(xt, wt, padding=pad).detach().cpu().numpy()
            got = nn.functional.conv2d(xf, wf, padding=pad).cpu().detach().numpy()

            def torch_fb():
                torch.nn.functional.conv2d(xt, wt, padding=pad).sum().backward()
            theirs = torch_fb
        rows.append(timed_row(name, ours, theirs, got, expected))
    return rows


# ---- lstm --------------------------------------------------------------------------------------

def bench_lstm(torch):
    rows = []
    for T, B, I, H in ((50, 32, 128, 256), (100, 64, 64, 128)):
        x = np.random.default_rng(3).standard_normal((T, B, I)).astype(np.float32)
        fastnn.manual_seed(0)
        lstm = nn.LSTM(I, H).to("cuda")
        xf = fastnn.tensor(x, device="cuda")

        def ours():
            lstm.zero_grad()
            lstm(xf)[0].sum().backward()
        theirs = got = expected = None
        if torch is not None:
            tlstm = torch.nn.LSTM(I, H).cuda()
            with torch.no_grad():
                for name, p in tlstm.named_parameters():
                    p.copy_(torch.from_dlpack(getattr(lstm, name).detach()))
            xt = torch.from_numpy(x).cuda()
            with fastnn.no_grad():
                got = lstm(xf)[0].cpu().numpy()
            expected = tlstm(xt)[0].detach().cpu().numpy()

            def torch_fb():
                tlstm.zero_grad()
                tlstm(xt)[0].sum().backward()
            theirs = torch_fb
        rows.append(timed_row((T, B, I, H), ours, theirs, got, expected))
    return rows


# ---- adam --------------------------------------------------------------------------------------

def mlp(lib):
    return lib.Sequential(lib.Linear(784, 256), lib.ReLU(), lib.Linear(256, 128), lib.ReLU(), lib.Linear(128, 10))


def lenet(lib):
    return lib.Sequential(lib.Conv2d(1, 6, 5, padding=2), lib.ReLU(), lib.MaxPool2d(2), lib.Conv2d(6, 16, 5),
                          lib.ReLU(), lib.MaxPool2d(2), lib.Flatten(), lib.Linear(400, 120), lib.ReLU(),
                          lib.Linear(120, 84), lib.ReLU(), lib.Linear(84, 10))


def bench_adam(torch):
    model = mlp(nn).to("cuda")
    for p in model.parameters():
        p.grad = fastnn.ones(*p.shape, device="cuda")
    opt = fastnn.optim.Adam(model.parameters(), lr=1e-3)
    row = {"fastnn_us": 1e6 * seconds(opt.step, fastnn_sync, repeats=50)}
    if torch is not None:
        tmodel = mlp(torch.nn).cuda()
        for p in tmodel.parameters():
            p.grad = torch.ones_like(p)
        topt = torch.optim.Adam(tmodel.parameters(), lr=1e-3)
        row["torch_us"] = 1e6 * seconds(topt.step, torch.cuda.synchronize, repeats=50)
        row["ratio"] = row["torch_us"] / row["fastnn_us"]
    print(f"adam: MLP update fastnn {row['fastnn_us']:.1f} us" + ("" if torch is None else
          f", torch {row['torch_us']:.1f} us, torch/fastnn {row['ratio']:.2f}"))
    return row


# ---- MNIST epochs ------------------------------------------------------------------------------

def fastnn_epoch(make_model, x, y, batch, mode):
    """Seconds for one epoch (after one warm-up epoch) of make_model(nn) with Adam; mode 'eager' or
    'graphed' (the step captured once, replayed per batch)."""
    fastnn.manual_seed(0)
    model = make_model(nn).to("cuda")
    opt = fastnn.optim.Adam(model.parameters(), lr=1e-3)
    n = len(x) // batch * batch  # whole batches: a captured step has one shape
    if mode == "graphed":
        step = fastnn.cuda.graphed_step(model, nn.functional.cross_entropy, opt, x[:batch], y[:batch])
    else:
        def step(xb, yb):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(fastnn.tensor(xb, device="cuda")), yb)
            loss.backward()
            opt.step()
            return loss
    times = []
    for _ in range(2):
        fastnn_sync()
        start = time.perf_counter()
        for i in range(0, n, batch):
            loss = step(x[i:i + batch], y[i:i + batch])
        fastnn_sync()
        times.append(time.perf_counter() - start)
    return times[-1], float(loss.item())


def torch_epoch(torch, make_model, x, y, batch):
    torch.manual_seed(0)
    model = make_model(torch.nn).cuda()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    n = len(x) // batch * batch
    times = []
    for _ in range(2):
        torch.cuda.synchronize()
        start = time.perf_counter()
        for i in range(0, n, batch):
            xb = torch.from_numpy(x[i:i + batch]).cuda()
            yb = torch.from_numpy(y[i:i + batch]).cuda()
            loss = torch.nn.functional.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times[-1], float(loss.item())


def bench_mnist(torch, data):
    (x, y), _ = fastnn.datasets.load_mnist(data, download=False)
    x = (x.astype(np.float32) / 255.0).reshape(-1, 1, 28, 28)
    y = y.astype(np.int64)
    rows = []
    for name, make, flat in (("MLP 784-256-128-10", mlp, True), ("LeNet-5", lenet, False)):
        xs = x.reshape(len(x), -1) if flat else x
        for batch in (64, 256):
            row = {"model": name, "batch": batch}
            for mode in ("eager", "graphed"):
                row[f"fastnn_{mode}_s"], row[f"fastnn_{mode}_loss"] = fastnn_epoch(make, xs, y, batch, mode)
            if torch is not None:
                row["torch_s"], row["torch_loss"] = torch_epoch(torch, make, xs, y, batch)
                row["ratio_graphed"] = row["torch_s"] / row["fastnn_graphed_s"]
            rows.append(row)
            print(f"  {name:20s} batch {batch:3d}: fastnn eager {row['fastnn_eager_s']:.3f} s, graphed "
                  f"{row['fastnn_graphed_s']:.3f} s" + ("" if torch is None else
                  f", torch eager {row['torch_s']:.3f} s, torch/graphed {row['ratio_graphed']:.2f}"), flush=True)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sections", default="sgemm,conv,lstm,adam,mnist")
    p.add_argument("--sizes", default="512,1024,2048,4096,8192")
    p.add_argument("--data", help="directory of the MNIST IDX files (default: as fastnn.datasets.load_mnist)")
    p.add_argument("--json", metavar="FILE")
    args = p.parse_args(argv)
    if not fastnn.cuda.is_available():
        print(f"bench/gpu.py: no CUDA device ({fastnn.cuda.unavailable_reason()}); nothing to measure")
        return 0
    try:
        import torch
        torch = torch if torch.cuda.is_available() else None
    except ImportError:
        torch = None
    print(f"fastnn {fastnn.__version__}, {fastnn.cuda.device_count()} CUDA device(s)"
          + ("" if torch else "; PyTorch CUDA not available: no comparison columns"))
    sections = args.sections.split(",")
    results = {}
    if "sgemm" in sections:
        results["sgemm"] = bench_sgemm(torch, [int(s) for s in args.sizes.split(",")])
    if "conv" in sections:
        print("conv (N=64), forward + backward:")
        results["conv"] = bench_conv(torch)
    if "lstm" in sections:
        print("lstm, forward + backward:")
        results["lstm"] = bench_lstm(torch)
    if "adam" in sections:
        results["adam"] = bench_adam(torch)
    if "mnist" in sections:
        print("one MNIST epoch, Adam:")
        results["mnist"] = bench_mnist(torch, args.data)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
