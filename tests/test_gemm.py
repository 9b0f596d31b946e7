"""The GEMM kernel against a float64 numpy reference, on every ISA this CPU runs."""
import numpy as np
import pytest

import fastnn
from fastnn import _C

ISAS = fastnn.config()["isa_supported"]
SPECIAL_SIZES = [1, 2, 3, 5, 7, 8, 13, 16, 17, 31, 33, 64, 65, 127, 144, 145, 257, 511, 600]


def gemm_reference(a, b, trans_a, trans_b, alpha, beta, c0, bias=None, row_bias=None, relu=False):
    """alpha * op(a) @ op(b) + beta * c0 (+ biases, ReLU) in float64, and the scale of its
    terms (|alpha| |op(a)| @ |op(b)| + |beta c0|), against which float32 error is measured."""
    A = a.astype(np.float64).T if trans_a else a.astype(np.float64)
    B = b.astype(np.float64).T if trans_b else b.astype(np.float64)
    exact = alpha * (A @ B) + beta * c0.astype(np.float64)
    scale = abs(alpha) * (np.abs(A) @ np.abs(B)) + abs(beta) * np.abs(c0)
    if bias is not None:
        exact += bias
        scale += np.abs(bias)
    if row_bias is not None:
        exact += row_bias[:, None]
        scale += np.abs(row_bias)[:, None]
    if relu:
        exact = np.maximum(exact, 0.0)
    return exact, scale


def padded(rng, rows, cols, pad):
    """A (rows, cols) float32 view whose row stride is cols + pad: a leading dimension
    larger than the width."""
    wide = rng.standard_normal((rows, cols + pad)).astype(np.float32)
    return wide[:, :cols]


def random_case(rng):
    def size():
        return int(rng.choice(SPECIAL_SIZES)) if rng.random() < 0.5 else int(rng.integers(1, 601))

    M, N, K = size(), size(), size()
    trans_a, trans_b = bool(rng.integers(2)), bool(rng.integers(2))
    pads = rng.integers(0, 9, size=3) * (rng.random(3) < 0.3)
    a = padded(rng, K if trans_a else M, M if trans_a else K, pads[0])
    b = padded(rng, N if trans_b else K, K if trans_b else N, pads[1])
    c = padded(rng, M, N, pads[2])
    alpha = float(rng.choice([1.0, -1.0, 0.5, 2.3]))
    beta = float(rng.choice([0.0, 0.0, 1.0, -0.7]))
    bias = rng.standard_normal(N).astype(np.float32) if rng.random() < 0.25 else None
    row_bias = rng.standard_normal(M).astype(np.float32) if rng.random() < 0.15 else None
    relu = bool(rng.random() < 0.25)
    return a, b, c, dict(trans_a=trans_a, trans_b=trans_b, alpha=alpha, beta=beta, bias=bias,
                         row_bias=row_bias, relu=relu)


def test_gemm_random_shapes_match_float64_reference(isa):
    rng = np.random.default_rng(20261123)
    worst = 0.0
    for _ in range(200):
        a, b, c, kw = random_case(rng)
        c0 = c.copy()
        exact, scale = gemm_reference(a, b, kw["trans_a"], kw["trans_b"], kw["alpha"], kw["beta"], c0,
                                      kw["bias"], kw["row_bias"], kw["relu"])
        out = _C.gemm(a, b, c, **kw)
        assert out is c
        err = np.max(np.abs(out - exact) / (scale + 1e-30))
        worst = max(worst, err)
        assert err < 1e-5, (isa, a.shape, b.shape, kw["trans_a"], kw["trans_b"], err)
    assert worst > 0.0  # the comparison really ran on float32 results


@pytest.mark.parametrize("M,N,K", [(3, 4100, 5), (300, 9, 700), (1, 1, 1), (145, 33, 257), (6, 50176 // 8, 25),
                                   (6, 3200, 130), (16, 3100, 170), (8, 500, 200), (4, 1001, 200),
                                   (64, 10, 128), (500, 16, 300), (100, 7, 600), (500, 3100, 50),
                                   (490, 2100, 530)])
@pytest.mark.parametrize("trans", ["NN", "NT", "TN", "TT"])
def test_gemm_block_edges(isa, M, N, K, trans):
    """Shapes that cross every blocking boundary (N > NC, K > KC, M > MC, edge tiles),
    and small M or N that take the other register tiles (4 x 24, 12 x 8, 8 x 48, 6 x 64, 24 x 16).
    490 x 2100 x 530 takes the general tile across all three at once: a tall C (each thread its
    own band of rows, run row strip by row strip), two N panels, two K blocks, a 10-row edge."""
    rng = np.random.default_rng(M * 7 + N * 3 + K)
    ta, tb = trans[0] == "T", trans[1] == "T"
    a = rng.standard_normal((K, M) if ta else (M, K)).astype(np.float32)
    b = rng.standard_normal((N, K) if tb else (K, N)).astype(np.float32)
    exact, scale = gemm_reference(a, b, ta, tb, 1.0, 0.0, np.zeros((M, N), np.float32))
    out = _C.gemm(a, b, trans_a=ta, trans_b=tb)
    assert np.max(np.abs(out - exact) / (scale + 1e-30)) < 1e-5


def test_gemm_isa_levels_agree_closely():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((67, 129)).astype(np.float32)
    b = rng.standard_normal((129, 45)).astype(np.float32)
    previous = _C.get_isa()
    try:
        results = []
        for level in ISAS:
            _C.set_isa(level)
            results.append(_C.gemm(a, b))
    finally:
        _C.set_isa(previous)
    for r in results[1:]:
        np.testing.assert_allclose(r, results[0], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("shape", [(600, 500, 300, False, False), (64, 784, 256, False, True),
                                   (256, 784, 64, True, False), (6, 50176, 25, False, False),
                                   (16, 6400, 150, False, False), (490, 2100, 530, False, False)])
def test_gemm_bitwise_identical_on_1_and_2_threads(shape):
    M, N, K, ta, tb = shape
    rng = np.random.default_rng(5)
    a = rng.standard_normal((K, M) if ta else (M, K)).astype(np.float32)
    b = rng.standard_normal((N, K) if tb else (K, N)).astype(np.float32)
    with fastnn.threads(1):
        one = _C.gemm(a, b, trans_a=ta, trans_b=tb)
    with fastnn.threads(2):
        two = _C.gemm(a, b, trans_a=ta, trans_b=tb)
    assert np.array_equal(one.view(np.uint32), two.view(np.uint32))


def test_gemm_zero_sizes_follow_the_mathematics():
    a = np.ones((3, 0), np.float32)
    b = np.ones((0, 4), np.float32)
    assert np.array_equal(_C.gemm(a, b), np.zeros((3, 4), np.float32))  # K = 0: an empty sum
    c = np.full((3, 4), 2.0, np.float32)
    _C.gemm(a, b, c, beta=0.5, bias=np.arange(4, dtype=np.float32))
    assert np.array_equal(c, 1.0 + np.arange(4, dtype=np.float32)[None, :].repeat(3, 0))
    assert _C.gemm(np.ones((0, 5), np.float32), np.ones((5, 4), np.float32)).shape == (0, 4)
    assert _C.gemm(np.ones((2, 5), np.float32), np.ones((5, 0), np.float32)).shape == (2, 0)


def test_gemm_alpha_zero_does_not_read_a_or_b():
    a = np.full((4, 5), np.nan, np.float32)
    b = np.ones((5, 6), np.float32)
    c = np.ones((4, 6), np.float32)
    _C.gemm(a, b, c, alpha=0.0, beta=3.0)
    assert np.array_equal(c, np.full((4, 6), 3.0, np.float32))


def test_gemm_nan_beta_zero_ignores_garbage_in_out():
    out = np.full((5, 7), np.nan, np.float32)
    a = np.ones((5, 3), np.float32)
    b = np.ones((3, 7), np.float32)
    _C.gemm(a, b, out)
    assert np.array_equal(out, np.full((5, 7), 3.0, np.float32))


# ---- bad input: every class gives a Python exception naming the argument -----------------

A = np.ones((4, 3), np.float32)
B = np.ones((3, 5), np.float32)


@pytest.mark.parametrize("a,b,kwargs,error,words", [
    (A.astype(np.float64), B, {}, TypeError, ["'a'", "float32", "float64"]),
    (A, B.astype(np.int32), {}, TypeError, ["'b'", "float32"]),
    (np.ones(3, np.float32), B, {}, ValueError, ["'a'", "2-D", "(3,)"]),
    (A, np.ones((3, 5, 1), np.float32), {}, ValueError, ["'b'", "(K, N)", "(3, 5, 1)"]),
    (A, np.ones((4, 5), np.float32), {}, ValueError, ["inner dimensions", "(3, N)", "(4, 5)"]),
    (A, B, {"trans_b": True}, ValueError, ["inner dimensions", "(N, 3)"]),
    (np.ones((4, 6), np.float32)[:, ::2], B, {}, ValueError, ["'a'", "contiguous", "ascontiguousarray"]),
    (A, B, {"out": np.ones((4, 4), np.float32)}, ValueError, ["'out'", "(4, 5)", "(4, 4)"]),
    (A, B, {"out": np.ones((4, 5), np.float64)}, TypeError, ["'out'", "float32"]),
    (A, B, {"beta": 1.0}, ValueError, ["beta", "'out'"]),
    (A, B, {"bias": np.ones(4, np.float32)}, ValueError, ["'bias'", "(5,)", "(4,)"]),
    (A, B, {"row_bias": np.ones(5, np.float32)}, ValueError, ["'row_bias'", "(4,)", "(5,)"]),
    (A, B, {"alpha": float("nan")}, ValueError, ["alpha"]),
])
def test_gemm_bad_input_raises_with_names(a, b, kwargs, error, words):
    with pytest.raises(error) as info:
        _C.gemm(a, b, **kwargs)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_gemm_rejects_read_only_and_overlapping_outputs():
    out = np.ones((4, 5), np.float32)
    out.setflags(write=False)
    with pytest.raises(ValueError, match="'out' is read-only"):
        _C.gemm(A, B, out)
    square = np.ones((4, 4), np.float32)
    with pytest.raises(ValueError, match="'out' overlaps 'a'"):
        _C.gemm(square, np.ones((4, 4), np.float32), square)
    with pytest.raises(ValueError, match="'out' overlaps 'b'"):
        _C.gemm(np.ones((4, 4), np.float32), square, square[:, :])


@pytest.mark.parametrize("where", ["a", "b", "out", "bias"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_gemm_non_finite_input_is_named(where, bad):
    a, b, out = A.copy(), B.copy(), np.ones((4, 5), np.float32)
    bias = np.ones(5, np.float32)
    target = {"a": a, "b": b, "out": out, "bias": bias}[where]
    target.flat[target.size // 2] = bad
    with pytest.raises(ValueError) as info:
        _C.gemm(a, b, out, beta=1.0, bias=bias)
    message = str(info.value)
    assert f"'{where}'" in message and ("NaN" if np.isnan(bad) else "infinity") in message


def test_gemm_finite_check_can_be_turned_off():
    a = A.copy()
    a[1, 2] = np.nan
    out = _C.gemm(a, B, check_finite=False)
    assert np.isnan(out[1]).all() and np.isfinite(np.delete(out, 1, axis=0)).all()


def test_gemm_overflow_of_finite_inputs_is_not_an_input_error():
    a = np.full((2, 2), 3e38, np.float32)
    out = _C.gemm(a, a)
    assert np.isinf(out).all()


def test_gemm_refuses_non_array_inputs():
    with pytest.raises(TypeError, match="numpy.ndarray"):
        _C.gemm([[1.0, 2.0]], [[1.0], [2.0]])  # never silently converted


def test_kernels_flush_denormals_and_restore_the_callers_mode():
    """Kernels run with flush-to-zero and denormals-are-zero (csrc/common/denormals.h): a subnormal
    result becomes 0 and a subnormal input counts as 0, on every thread; the caller's own float
    mode (numpy's gradual underflow) is back afterwards."""
    tiny = np.float32(1e-40)  # subnormal in float32
    assert tiny != 0
    for threads in (1, 2):
        with fastnn.threads(threads):
            a = np.full((64, 64), 1e-20, np.float32)
            assert not _C.gemm(a, a).any()  # 64 * 1e-40: subnormal, flushed
            b = np.full((64, 64), tiny, np.float32)
            assert not _C.gemm(b, np.full((64, 64), 1e10, np.float32)).any()  # subnormal inputs read as 0
    assert np.float32(1e-38) * np.float32(0.01) != 0  # numpy still underflows gradually
    assert np.multiply(np.float32(1e-20), np.float32(1e-20)) == np.float32(1e-40)
