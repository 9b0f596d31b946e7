"""GPU benchmark: fastnn's CUDA kernels against PyTorch CUDA (cuBLAS) in the same process.

In the order of llm.c's dev/cuda files: the reference (float64 numpy on a small case, then
PyTorch on the GPU), our kernel, validation against the reference, then timing with the
achieved TFLOP/s. Runs only where fastnn was built with CUDA and a GPU is visible; elsewhere it
says so and exits 0. Timings synchronize the device around each sample (CUDA events would
exclude the launch from the host; for a library called from Python the launch is part of the
cost).

    python bench/gpu.py [--sizes 512,1024,2048,4096,8192] [--json FILE]
"""
import argparse
import json
import sys
import time

import numpy as np

import fastnn
from fastnn import _C

TARGET_FP32 = 0.8  # issue 6: fp32 SGEMM >= 0.8x cuBLAS at n >= 2048


def seconds(fn, sync, repeats=10):
    fn()
    sync()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        samples.append(time.perf_counter() - start)
    return float(np.median(samples))


def validate_gemm():
    """Every transpose combination on odd shapes against float64 numpy."""
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


def bench_gemm(sizes, torch):
    rows = []
    sync = lambda: _C.cuda.synchronize(0)  # noqa: E731
    for n in sizes:
        a = _C.cuda.from_numpy(np.random.default_rng(1).standard_normal((n, n), dtype=np.float32))
        ours = seconds(lambda: _C.cuda.gemm(a, a), sync)
        row = {"n": n, "fastnn_tflops": 2 * n ** 3 / ours / 1e12}
        if torch is not None:
            t = torch.from_dlpack(a)
            torch.backends.cuda.matmul.allow_tf32 = False
            theirs = seconds(lambda: t @ t, torch.cuda.synchronize)
            row["cublas_tflops"] = 2 * n ** 3 / theirs / 1e12
            row["ratio"] = theirs / ours
        rows.append(row)
        print(f"  n={n:5d}  fastnn {row['fastnn_tflops']:6.2f} TFLOP/s"
              + (f"  cuBLAS {row['cublas_tflops']:6.2f} TFLOP/s  fastnn/cuBLAS speed {row['ratio']:.2f}"
                 f"{'' if n < 2048 or row['ratio'] >= TARGET_FP32 else '  (below the 0.8 target)'}"
                 if torch is not None else ""), flush=True)
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="512,1024,2048,4096,8192")
    p.add_argument("--json", metavar="FILE")
    args = p.parse_args()
    if not fastnn.cuda.is_available():
        print(f"bench/gpu.py: no CUDA device ({fastnn.cuda.unavailable_reason()}); nothing to measure")
        return 0
    try:
        import torch
        torch = torch if torch.cuda.is_available() else None
    except ImportError:
        torch = None
    print(f"fastnn {fastnn.__version__}, {fastnn.cuda.device_count()} CUDA device(s)"
          + ("" if torch else "; PyTorch CUDA not available: no cuBLAS column"))
    error = validate_gemm()
    print(f"SGEMM fp32 validation: max relative error {error:.2e} ({'ok' if error < 1e-5 else 'FAILED'})")
    rows = bench_gemm([int(s) for s in args.sizes.split(",")], torch)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"sgemm_fp32": rows, "validation_error": error}, f, indent=1)
    return 0 if error < 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main())
