"""Shared pieces of the fastnn benchmarks: library detection, timing, one child process per
thread count, tables and JSON.

A benchmark script runs in two roles. The parent parses the options, starts one child of itself
per thread count (run_child) and prints the tables. The child measures and prints its results as
JSON on stdout. A child per thread count is needed because OpenBLAS (numpy) reads its thread
count from the environment once, when numpy is imported, and cannot be changed afterwards
without threadpoolctl.
"""

import argparse
import gc
import importlib.util
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

THREAD_ENV_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "FASTNN_NUM_THREADS")


# ---- libraries ---------------------------------------------------------------------------------

def have(module_name):
    """True when the module is installed (found without importing it: torch takes seconds)."""
    return importlib.util.find_spec(module_name) is not None


def import_torch(threads):
    """torch with its intra-op pool set to `threads`, or None when torch is not installed."""
    if not have("torch"):
        return None
    try:
        import torch
    except ImportError as e:  # a broken install: benchmark the others
        print(f"torch is installed but does not import ({e}): its columns read '-'", file=sys.stderr)
        return None
    torch.set_num_threads(threads)
    return torch


# ---- timing ------------------------------------------------------------------------------------

def _seconds_per_call(fn, number):
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - start) / number


def _calls_per_sample(fn, min_sample_s):
    """How many back-to-back calls make one timed sample last at least min_sample_s, so that
    short calls are not dominated by timer resolution and loop overhead. Returns (calls, seconds
    of one such sample)."""
    number = 1
    while True:
        t = _seconds_per_call(fn, number) * number
        if t >= min_sample_s:
            return number, t
        # Aim 20% past the target so the next try usually succeeds; at least double.
        number = max(2 * number, math.ceil(number * 1.2 * min_sample_s / max(t, 1e-9)))


def time_call(fn, repeats=7, warmup_s=0.2, min_sample_s=0.02, max_s=1.5):
    """Median seconds per call of fn(), warm.

    Warm-up runs at least two calls and at least warmup_s seconds: beyond caches, page faults and
    packing buffers, this lets the worker threads of the library timed before go to sleep
    (OpenBLAS's spin for ~0.1 s after a call and would steal a core on a small machine).
    Big calls get fewer samples (at least 3) so one measurement takes about max_s seconds.
    """
    start = time.perf_counter()
    calls = 0
    while calls < 2 or time.perf_counter() - start < warmup_s:
        fn()
        calls += 1
    number, sample_s = _calls_per_sample(fn, min_sample_s)
    rounds = max(3, min(repeats, int(max_s / sample_s)))

    gc_was_enabled = gc.isenabled()
    gc.disable()  # a collection inside a sample would be charged to the library being timed
    try:
        samples = [_seconds_per_call(fn, number) for _ in range(rounds)]
    finally:
        if gc_was_enabled:
            gc.enable()
    return statistics.median(samples)


# ---- other processes ---------------------------------------------------------------------------
# This machine is small and shared: another process's burst on one of its 2 CPUs makes a timing
# read low, a multi-threaded one by 10-100x (a thread that loses its core stalls every barrier of
# its library). So the share of CPU time other processes took is measured during each timing,
# a disturbed timing is retried once the machine is quiet again, and the share is reported.

# A timing during which other processes used more than this share of the CPUs is retried.
QUIET_SHARE = 0.1


def others_cpu_seconds():
    """CPU-seconds used so far by every process on the machine except this one and its finished
    children (Linux /proc/stat, including time the hypervisor stole; 0 elsewhere)."""
    try:
        with open("/proc/stat") as f:
            user, nice, system, idle, iowait, irq, softirq, steal = map(int, f.readline().split()[1:9])
    except (OSError, ValueError):
        return 0.0
    machine = (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return machine - time.process_time() - children.ru_utime - children.ru_stime


def others_share(fn, *args, **kwargs):
    """(fn's result, share of the machine's CPU time that other processes used while it ran)."""
    others0, wall0 = others_cpu_seconds(), time.perf_counter()
    result = fn(*args, **kwargs)
    others1, wall1 = others_cpu_seconds(), time.perf_counter()
    return result, max(0.0, (others1 - others0) / ((wall1 - wall0) * os.cpu_count()))


def wait_until_quiet(max_share, max_wait_s):
    """Sleep in 0.25 s steps until other processes use at most max_share of the CPUs."""
    deadline = time.perf_counter() + max_wait_s
    while time.perf_counter() < deadline:
        _, share = others_share(time.sleep, 0.25)
        if share <= max_share:
            return


def time_quietly(fn, tries=3, max_share=QUIET_SHARE, max_wait_s=5.0, **options):
    """time_call(fn), retried (at most `tries` in all, each retry after waiting up to max_wait_s
    for quiet) while other processes took more than max_share of the CPUs during it. Returns
    (seconds, share) of the least disturbed try."""
    best = None
    for attempt in range(tries):
        if attempt > 0:
            wait_until_quiet(max_share, max_wait_s)
        seconds, share = others_share(time_call, fn, **options)
        if best is None or share < best[1]:
            best = (seconds, share)
        if share <= max_share:
            break
    return best


def time_calls(fns, **options):
    """For each function of the dict `fns` (name -> no-argument callable): (median seconds per
    call, share of the CPUs other processes used while it was timed), one library after the
    other. Not interleaved call by call: each library's thread pool would then compete with the
    still-spinning pool of the one called just before."""
    return {name: time_quietly(fn, **options) for name, fn in fns.items()}


def split_timings(timings, names=("fastnn", "torch")):
    """time_calls' {name: (seconds, share)} as two dicts over `names`, ({name: seconds},
    {name: share}), None for a name that was not timed (library not installed)."""
    seconds = {name: timings.get(name, (None, None))[0] for name in names}
    shares = {name: timings.get(name, (None, None))[1] for name in names}
    return seconds, shares


# ---- one child process per thread count --------------------------------------------------------

def parse_threads(text):
    """'1,2' -> [1, 2]"""
    counts = [int(part) for part in text.split(",") if part.strip()]
    if not counts or min(counts) < 1:
        raise ValueError(f"--threads expects positive integers separated by commas, got {text!r}")
    return counts


def run_child(script, threads, args):
    """Run `python script --child THREADS *args` with every thread-count variable set to THREADS
    and return the JSON object the child prints on stdout, with "other_cpu_share" added (the
    share of the CPUs other processes used meanwhile). The child's stderr passes through."""
    env = dict(os.environ)
    for var in THREAD_ENV_VARS:
        env[var] = str(threads)
    cmd = [sys.executable, os.path.abspath(script), "--child", str(threads), *args]
    proc, share = others_share(subprocess.run, cmd, env=env, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child for {threads} thread(s) failed with exit code {proc.returncode}")
    result = json.loads(proc.stdout)
    result["other_cpu_share"] = share
    return result


def run_children(script, args, extra_child_args=()):
    """The parent's measurements: (machine_info(), [run_child(script, threads, ...) for each of
    args.thread_counts]). Each child gets --repeats, --quick when given, and extra_child_args;
    info["torch"] is the torch version the children imported."""
    child_args = ["--repeats", str(args.repeats)] + (["--quick"] if args.quick else []) + list(extra_child_args)
    info = machine_info()
    results = [run_child(script, threads, child_args) for threads in args.thread_counts]
    info["torch"] = results[0]["torch_version"]
    return info, results


def child_result(threads, fastnn, torch, rows, **extra):
    """What a child reports: the thread counts and versions of fastnn and torch (None where torch
    is not installed), the `extra` figures in the order given, then the rows."""
    return {
        "threads": threads,
        "fastnn_num_threads": fastnn.get_num_threads(),
        "fastnn_config": fastnn.config(),
        "torch_version": torch.__version__ if torch else None,
        "torch_num_threads": torch.get_num_threads() if torch else None,
        **extra,
        "rows": rows,
    }


def print_child_result(result):
    """The child's only output on stdout: its result, as JSON, for run_child."""
    json.dump(result, sys.stdout)


def print_progress(threads, done, total, unit="cases"):
    """Overwrite the child's progress line on stderr (stdout carries the JSON; the tables only
    come at the end). The child ends the line with print(file=sys.stderr) when done."""
    print(f"\r{threads} thread(s): {done}/{total} {unit} measured", end="", file=sys.stderr, flush=True)


# ---- machine information -----------------------------------------------------------------------

def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info():
    """What the figures depend on, for the JSON file. The torch version comes from the children,
    which import it (the parent does not: it takes seconds)."""
    import numpy
    import fastnn
    return {
        "cpu_model": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "fastnn_config": fastnn.config(),
    }


def print_header(info, numpy=False, gemm_tile=False):
    """The lines above the tables: the CPU, fastnn's build (with its GEMM tile when gemm_tile),
    numpy's version when `numpy`, and torch's."""
    cfg = info["fastnn_config"]
    tile = f" tile={cfg['gemm_tile']}" if gemm_tile else ""
    numpy_version = f"numpy {info['numpy']}; " if numpy else ""
    print()
    print(f"CPU: {info['cpu_model']} ({info['logical_cpus']} logical CPUs)")
    print(f"fastnn {cfg['version']} isa={cfg['isa']}{tile} openmp={cfg['openmp']}; {numpy_version}"
          f"torch {info['torch'] or 'not installed'}")


# ---- output ------------------------------------------------------------------------------------

def fmt(value, spec=".1f"):
    """Format a number, or '-' for a missing one (library not installed, size not run)."""
    return "-" if value is None else format(value, spec)


def fmt_ms(seconds):
    """Seconds as milliseconds with 3 decimals, or '-'."""
    return fmt(None if seconds is None else 1e3 * seconds, ".3f")


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def mark_disturbed(label, shares):
    """label, with " *" appended when one of the shares (None: not timed) of the CPUs that other
    processes used while the row was timed exceeds QUIET_SHARE (see print_timing_table)."""
    disturbed = any(share is not None and share > QUIET_SHARE for share in shares)
    return label + (" *" if disturbed else "")


def during_run(result):
    """The end of a table title: how much of the CPUs other processes used during a child's run
    (which includes its waits for quiet; the rows' own shares, after retries, decide the marks)."""
    return f"other processes used {100 * result['other_cpu_share']:.0f}% of the CPUs during the run"


def print_table(title, headers, rows):
    """Print rows (lists of strings) under headers; the first column left-aligned, the rest
    right-aligned (they hold numbers)."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]

    def line(cells):
        parts = [str(cells[0]).ljust(widths[0])]
        parts += [str(cell).rjust(width) for cell, width in zip(cells[1:], widths[1:])]
        return "  ".join(parts).rstrip()

    print()
    print(title)
    print(line(headers))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(line(row))


def print_timing_table(title, headers, rows):
    """print_table, then the footnote for the rows that mark_disturbed marked with " *"."""
    print_table(title, headers, rows)
    if any(str(row[0]).endswith(" *") for row in rows):
        print(f"* other processes used more than {100 * QUIET_SHARE:.0f}% of the CPUs while this row "
              "was timed, even after retries: its figures may read low")


def write_json(path, data):
    with open(path, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")


def write_results_json(args, benchmark, info, results, targets=None, summary=None, **options):
    """With --json FILE: write the benchmark's name, its options (threads, quick, repeats, then
    `options`), the machine, the targets and summary when given, and the children's results to
    FILE, and say so. Without --json: nothing."""
    if not args.json:
        return
    data = {
        "benchmark": benchmark,
        "options": {"threads": args.thread_counts, "quick": args.quick, "repeats": args.repeats, **options},
        "machine": info,
    }
    if targets is not None:
        data["targets"] = targets
    if summary is not None:
        data["summary"] = {str(key): value for key, value in summary.items()}  # thread counts as JSON keys
    data["results"] = results
    write_json(args.json, data)
    print(f"\nwrote {args.json}")


# ---- command line --------------------------------------------------------------------------------

def benchmark_parser(description, quick_help="fewer repeats (smoke run)"):
    """The options every benchmark script takes: --threads, --json, --quick, --repeats, and the
    internal --child (the role of a child process measuring at one thread count). A script adds
    its own options to the parser, then calls parse_benchmark_args."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--threads", default="1,2", help="thread counts, comma-separated (default 1,2); each runs in "
                   "its own process with OPENBLAS/OMP/MKL/FASTNN_NUM_THREADS set")
    p.add_argument("--json", metavar="FILE", help="write machine info and every figure to FILE")
    p.add_argument("--quick", action="store_true", help=quick_help)
    p.add_argument("--repeats", type=int, help="timed samples per measurement (default 7, 3 with --quick; "
                   "calls long enough to take >1.5 s get fewer, never below 3)")
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    return p


def parse_benchmark_args(p):
    """Parse, adding args.thread_counts (a list) and the default for args.repeats."""
    args = p.parse_args()
    try:
        args.thread_counts = parse_threads(args.threads)
    except ValueError as e:
        p.error(str(e))
    if args.repeats is None:
        args.repeats = 3 if args.quick else 7
    return args


def print_target_summary(values, targets, target_threads):
    """The summary table of a benchmark: one row per (key, label, target, format) in targets, a
    column per thread count of values ({threads: {key: figure}}), and whether the figure at
    target_threads meets the target (figures are "higher is better")."""
    headers = ["figure", f"target @{target_threads} thr"] + [f"{t} thr" for t in values] + [f"@{target_threads} thr"]
    rows = []
    for key, label, target, spec in targets:
        row = [label, ">= " + format(target, spec)] + [fmt(v.get(key), spec) for v in values.values()]
        at_target = values.get(target_threads, {}).get(key)
        row.append("not run" if at_target is None else ("met" if at_target >= target else "NOT met"))
        rows.append(row)
    print_table(f"summary (targets from the issue apply at {target_threads} threads)", headers, rows)


def print_summary(results, summary_values, targets, target_threads):
    """print_target_summary of summary_values(result) for each child's result; returns those
    figures, {threads: {key: figure}}."""
    values = {r["threads"]: summary_values(r) for r in results}
    print_target_summary(values, targets, target_threads)
    return values


def targets_json(targets, target_threads):
    """The targets of print_target_summary, for the JSON file: {key: {"at_threads", "min"}}."""
    return {key: {"at_threads": target_threads, "min": target} for key, _, target, _ in targets}


def run_benchmark(script, name, description, measure_child, print_table, quick_help="fewer repeats (smoke run)",
                  numpy=False, summary_values=None, targets=None, target_threads=None):
    """The main of a benchmark with only the common options: as a child, print
    measure_child(args); as the parent, run one child per thread count, print the header, each
    result's table (print_table) and, given targets, their summary, and write the JSON file."""
    args = parse_benchmark_args(benchmark_parser(description, quick_help))
    if args.child is not None:
        print_child_result(measure_child(args))
        return
    info, results = run_children(script, args)
    print_header(info, numpy=numpy)
    for result in results:
        print_table(result)
    if targets is None:
        write_results_json(args, name, info, results)
        return
    summary = print_summary(results, summary_values, targets, target_threads)
    write_results_json(args, name, info, results, targets=targets_json(targets, target_threads), summary=summary)
