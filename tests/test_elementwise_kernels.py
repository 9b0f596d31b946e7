"""_C.linear_epilogue_backward, _C.relu and _C.relu_backward (csrc/cpu/elementwise.cpp) against
numpy, and the output-buffer cache of the bindings (csrc/bindings/buffers.cpp)."""
import gc
import numpy as np
import pytest

import fastnn
from fastnn import _C

SIZES = [1, 3, 16, 17, 65, 300]


@pytest.mark.parametrize("M", SIZES)
@pytest.mark.parametrize("N", SIZES)
def test_mask_and_bias_gradient_match_numpy(M, N):
    rng = np.random.default_rng(M * 1000 + N)
    grad = rng.standard_normal((M, N)).astype(np.float32)
    out = np.maximum(rng.standard_normal((M, N)), 0).astype(np.float32)  # a ReLU's output: zeros included
    masked, bias = _C.linear_epilogue_backward(grad, out)
    expected = np.where(out > 0, grad, 0).astype(np.float64)
    assert np.array_equal(masked, expected.astype(np.float32))
    np.testing.assert_allclose(bias, expected.sum(axis=0), rtol=1e-5, atol=1e-5 * np.sqrt(M))

    same, bias_only = _C.linear_epilogue_backward(grad, None)
    assert same is grad
    np.testing.assert_allclose(bias_only, grad.astype(np.float64).sum(axis=0), rtol=1e-5, atol=1e-5 * np.sqrt(M))

    masked2, none = _C.linear_epilogue_backward(grad, out, bias_grad=False)
    assert none is None and np.array_equal(masked2, masked)


def test_wide_rows_and_row_strides():
    rng = np.random.default_rng(3)
    wide = rng.standard_normal((40, 700)).astype(np.float32)
    grad = wide[:, 5:605]           # rows 700 floats apart: a leading dimension above the width
    out = np.abs(rng.standard_normal((40, 600)).astype(np.float32)) * (rng.random((40, 600)) < 0.5)
    masked, bias = _C.linear_epilogue_backward(grad, out)
    np.testing.assert_array_equal(masked, np.where(out > 0, grad, 0))
    np.testing.assert_allclose(bias, np.where(out > 0, grad, 0).astype(np.float64).sum(0), rtol=1e-5, atol=1e-4)


def test_identical_on_1_and_2_threads():
    rng = np.random.default_rng(4)
    grad = rng.standard_normal((700, 1000)).astype(np.float32)
    out = rng.standard_normal((700, 1000)).astype(np.float32)
    with fastnn.threads(1):
        one = _C.linear_epilogue_backward(grad, out)
    with fastnn.threads(2):
        two = _C.linear_epilogue_backward(grad, out)
    assert np.array_equal(one[0], two[0]) and np.array_equal(one[1].view(np.uint32), two[1].view(np.uint32))


def test_zero_rows_give_zero_bias_gradient():
    masked, bias = _C.linear_epilogue_backward(np.zeros((0, 5), np.float32), np.zeros((0, 5), np.float32))
    assert masked.shape == (0, 5) and np.array_equal(bias, np.zeros(5, np.float32))


@pytest.mark.parametrize("grad,out,error,words", [
    (np.zeros((3, 4), np.float64), None, TypeError, ["grad", "float32"]),
    (np.zeros(4, np.float32), None, ValueError, ["grad", "(M, N)"]),
    (np.zeros((3, 4), np.float32), np.zeros((4, 3), np.float32), ValueError, ["out", "(3, 4)"]),
    (np.zeros((3, 4), np.float32), np.zeros((3, 4), np.int32), TypeError, ["out", "float32"]),
    (np.zeros((4, 3), np.float32).T, None, ValueError, ["grad"]),
])
def test_bad_input_raises_with_names(grad, out, error, words):
    with pytest.raises(error) as info:
        _C.linear_epilogue_backward(grad, out)
    for word in words:
        assert word in str(info.value)


# ---- ReLU ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(), (1,), (3, 17), (65, 1, 3), (2, 6, 28, 28), (300_001,)])
def test_relu_forward_and_backward_match_numpy(shape):
    rng = np.random.default_rng(len(shape))
    x = rng.standard_normal(shape).astype(np.float32)
    x.reshape(-1)[::7] = 0.0  # exact zeros: the gradient is 0 there, as in PyTorch
    out = _C.relu(np.ascontiguousarray(x)).reshape(shape)
    assert out.dtype == np.float32 and out.shape == x.shape
    assert np.array_equal(out, np.maximum(x, 0))
    grad = rng.standard_normal(shape).astype(np.float32)
    assert np.array_equal(_C.relu_backward(np.ascontiguousarray(grad), np.ascontiguousarray(out)).reshape(shape),
                          np.where(x > 0, grad, 0))


def test_relu_keeps_nan_and_is_identical_on_1_and_2_threads():
    x = np.array([np.nan, -np.inf, np.inf, -1.0, -0.0, 0.0, 2.0], np.float32)
    out = _C.relu(x)
    assert np.isnan(out[0]) and list(out[1:]) == [0.0, np.inf, 0.0, 0.0, 0.0, 2.0]
    assert np.array_equal(_C.relu_backward(np.ones(7, np.float32), out), [0, 0, 1, 0, 0, 0, 1])
    big = np.random.default_rng(1).standard_normal(1 << 20).astype(np.float32)
    with fastnn.threads(1):
        one = _C.relu(big), _C.relu_backward(big, big)
    with fastnn.threads(2):
        two = _C.relu(big), _C.relu_backward(big, big)
    assert all(np.array_equal(a, b) for a, b in zip(one, two))


@pytest.mark.parametrize("call,error,words", [
    (lambda: _C.relu(np.zeros(3)), TypeError, "relu: argument 'x' must be float32, got float64"),
    (lambda: _C.relu(np.zeros((4, 4), np.float32)[:, ::2]), ValueError, "'x' of shape (4, 2) must be C-contiguous"),
    (lambda: _C.relu_backward(np.zeros((2, 3), np.float32), np.zeros((3, 2), np.float32)), ValueError,
     "'out' (the ReLU's output) must have the shape of 'grad', (2, 3), got (3, 2)"),
])
def test_relu_bad_input_raises_with_names(call, error, words):
    with pytest.raises(error) as info:
        call()
    assert words in str(info.value)


# ---- the output-buffer cache --------------------------------------------------------------------

@pytest.fixture
def fresh_cache():
    previous = fastnn.set_buffer_cache_limit(1 << 30)
    fastnn.empty_cache()
    yield
    fastnn.set_buffer_cache_limit(previous)


def test_large_outputs_are_recycled_by_size(fresh_cache):
    x = np.ones(1 << 20, np.float32)  # 4 MiB: above the 128 KiB floor
    first = _C.relu(x)
    address = first.ctypes.data
    del first
    gc.collect()
    assert fastnn.config()["buffer_cache_bytes"] == 4 << 20
    second = _C.relu(-x)  # same size: the same buffer, and a correct result in it
    assert second.ctypes.data == address and not second.any()
    assert fastnn.config()["buffer_cache_bytes"] == 0
    assert second.ctypes.data % 64 == 0
    del second
    assert fastnn.empty_cache() == 4 << 20 and fastnn.config()["buffer_cache_bytes"] == 0


def test_small_outputs_and_a_zero_limit_bypass_the_cache(fresh_cache):
    small = _C.relu(np.ones(1000, np.float32))
    del small
    assert fastnn.config()["buffer_cache_bytes"] == 0
    fastnn.set_buffer_cache_limit(0)
    big = _C.relu(np.ones(1 << 20, np.float32))
    del big
    assert fastnn.config()["buffer_cache_bytes"] == 0 and fastnn.config()["buffer_cache_limit"] == 0


def test_cache_limit_bounds_what_is_kept(fresh_cache):
    fastnn.set_buffer_cache_limit(6 << 20)
    arrays = [_C.relu(np.ones(1 << 20, np.float32)) for _ in range(3)]  # 3 x 4 MiB
    del arrays
    assert fastnn.config()["buffer_cache_bytes"] == 4 << 20  # one fits under 6 MiB, the others are freed
    assert fastnn.set_buffer_cache_limit(0) == 6 << 20
    assert fastnn.config()["buffer_cache_bytes"] == 0
    with pytest.raises(ValueError, match="bytes must be >= 0"):
        fastnn.set_buffer_cache_limit(-1)
    with pytest.raises(TypeError, match="nbytes must be an int"):
        fastnn.set_buffer_cache_limit(1.5)
