"""_C.linear_epilogue_backward (csrc/cpu/elementwise.cpp) against numpy in float64."""
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
