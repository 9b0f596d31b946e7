"""Embedding guarantees: thread control at any time, fork, the GIL, ISA and thread env vars."""
import os
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import fastnn
from fastnn import _C


def run_python(code, env_extra=None, timeout=120):
    env = dict(os.environ)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_set_and_get_num_threads():
    previous = fastnn.get_num_threads()
    try:
        fastnn.set_num_threads(1)
        assert fastnn.get_num_threads() == 1
        fastnn.set_num_threads(3)
        assert fastnn.get_num_threads() == 3
        assert fastnn.config()["num_threads"] == 3
    finally:
        fastnn.set_num_threads(previous)


def test_threads_context_restores_even_on_error():
    previous = fastnn.get_num_threads()
    with pytest.raises(RuntimeError):
        with fastnn.threads(1):
            assert fastnn.get_num_threads() == 1
            raise RuntimeError("inside")
    assert fastnn.get_num_threads() == previous


@pytest.mark.parametrize("bad,error", [(0, ValueError), (-2, ValueError), (10**6, ValueError),
                                       (1.5, TypeError), ("2", TypeError)])
def test_set_num_threads_rejects_bad_values(bad, error):
    with pytest.raises(error, match="set_num_threads"):
        fastnn.set_num_threads(bad)


def test_default_thread_count_is_the_affinity_mask():
    result = run_python("import fastnn; print(fastnn.get_num_threads())",
                        {"FASTNN_NUM_THREADS": "", "OMP_NUM_THREADS": ""})
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) == len(os.sched_getaffinity(0))


@pytest.mark.parametrize("var", ["FASTNN_NUM_THREADS", "OMP_NUM_THREADS"])
def test_thread_count_from_environment(var):
    env = {"FASTNN_NUM_THREADS": "", "OMP_NUM_THREADS": "", var: "3"}
    result = run_python("import fastnn; print(fastnn.get_num_threads())", env)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) == 3


@pytest.mark.parametrize("isa", fastnn.config()["isa_supported"])
def test_isa_forced_by_environment(isa):
    code = """
        import numpy as np, fastnn
        from fastnn import _C
        rng = np.random.default_rng(0)
        a = rng.standard_normal((70, 33)).astype(np.float32)
        b = rng.standard_normal((33, 41)).astype(np.float32)
        err = np.abs(_C.gemm(a, b) - a.astype(np.float64) @ b).max()
        print(fastnn.config()["isa"], err)
    """
    result = run_python(code, {"FASTNN_ISA": isa})
    assert result.returncode == 0, result.stderr
    name, err = result.stdout.split()
    assert name == isa and float(err) < 1e-4


def test_unknown_isa_request_is_refused():
    with pytest.raises(ValueError, match="unknown ISA"):
        _C.set_isa("sse9")


def test_forked_child_computes_correctly_and_does_not_hang():
    code = """
        import os, numpy as np, fastnn
        from fastnn import _C
        a = np.random.default_rng(0).standard_normal((400, 300)).astype(np.float32)
        expected = a.astype(np.float64) @ a.T
        with fastnn.threads(2):
            _C.gemm(a, a, trans_b=True)          # the parent has started its OpenMP pool
        pid = os.fork()
        if pid == 0:
            ok = np.allclose(_C.gemm(a, a, trans_b=True), expected, rtol=1e-4, atol=1e-3)
            fastnn.set_num_threads(2)            # more threads in the child: a fresh pool
            ok &= np.allclose(_C.gemm(a, a, trans_b=True), expected, rtol=1e-4, atol=1e-3)
            os._exit(0 if ok else 3)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status))
    """
    result = run_python(code, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0"


def test_gemm_releases_the_gil():
    """Another Python thread keeps running while a long GEMM runs."""
    a = np.random.default_rng(0).standard_normal((1200, 1200)).astype(np.float32)
    started, finished = threading.Event(), threading.Event()

    def worker():
        started.set()
        for _ in range(3):
            _C.gemm(a, a)
        finished.set()

    thread = threading.Thread(target=worker)
    thread.start()
    started.wait()
    time.sleep(0.005)
    python_steps = 0
    while not finished.is_set():
        python_steps += 1  # runs only if the GEMM thread let go of the GIL
    thread.join()
    assert python_steps > 1000


def test_two_python_threads_run_gemms_concurrently_and_correctly():
    rng = np.random.default_rng(3)
    mats = [rng.standard_normal((300, 300)).astype(np.float32) for _ in range(2)]
    results = [None, None]

    def worker(i):
        for _ in range(5):
            results[i] = _C.gemm(mats[i], mats[i])

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(2):
        np.testing.assert_allclose(results[i], mats[i].astype(np.float64) @ mats[i], rtol=1e-4, atol=1e-3)


def test_config_reports_the_build():
    info = fastnn.config()
    for key in ("version", "isa", "isa_supported", "openmp", "num_threads", "cuda_built"):
        assert key in info
    assert info["isa"] in info["isa_supported"]
    assert info["version"] == fastnn.__version__
