"""Broadcasting binary ops, pow and the axis reductions (sum, mean, max) on a device.

Each test takes the `backend` fixture (conftest.py): it runs on tests/fake_cuda.py and, where a GPU
is present, on the real kernels. Results and gradients are compared with the CPU path of the same
op, and reductions with float64 numpy.
"""
import numpy as np
import pytest

import fastnn
from fastnn.nn import functional as F

rng = np.random.default_rng(11)

# (a, b) shapes: equal, a bias row, scalars (0-d and one element), both sides stretched, b
# broadcast over a and a over b, odd and prime sizes.
SHAPE_PAIRS = [((3, 1, 5), (4, 1)), ((1,), (2, 3)), ((17, 1), (1, 65)), ((), (3, 4)), ((3, 4), ()), ((), ()),
               ((2, 3, 4), (2, 3, 4)), ((5, 7), (7,)), ((7,), (5, 7)), ((2, 1, 3, 1), (1, 4, 1, 5)), ((65,), (1,)),
               ((3, 1), (3, 17)), ((1, 1, 17), (3, 1, 1)), ((2, 3, 4, 5), (3, 1, 5))]


def _on_both(fn, arrays, grad_seed=0):
    """fn's value and input gradients on the CPU and on the device, as numpy: ((out, grads) cpu, (...) device)."""
    results = []
    for device in (None, "cuda"):
        inputs = [fastnn.tensor(a, requires_grad=True, device=device) for a in arrays]
        out = fn(*inputs)
        weights = np.random.default_rng(grad_seed).standard_normal(out.shape).astype(np.float32)
        out.backward(fastnn.tensor(weights, device=device))
        results.append((out.cpu().detach().numpy(), [x.grad.cpu().numpy() for x in inputs]))
    return results


def _assert_same(cpu, device, rtol=1e-5, atol=1e-5):
    (out_cpu, grads_cpu), (out_dev, grads_dev) = cpu, device
    assert out_dev.shape == out_cpu.shape
    np.testing.assert_allclose(out_dev, out_cpu, rtol=rtol, atol=atol)
    for g_dev, g_cpu in zip(grads_dev, grads_cpu):
        assert g_dev.shape == g_cpu.shape
        np.testing.assert_allclose(g_dev, g_cpu, rtol=rtol, atol=atol)


# -- broadcasting binary ops -----------------------------------------------------------------------

@pytest.mark.parametrize("a_shape, b_shape", SHAPE_PAIRS)
@pytest.mark.parametrize("op", ["add", "sub", "mul", "div", "pow"])
def test_broadcast_binary_ops_match_the_cpu(backend, op, a_shape, b_shape):
    a = rng.standard_normal(a_shape).astype(np.float32)
    b = rng.standard_normal(b_shape).astype(np.float32)
    if op == "div":  # denominators away from 0
        b = (np.sign(b) + (b == 0)) * rng.uniform(0.5, 2.0, b_shape).astype(np.float32)
    if op == "pow":  # a positive base, where a real power exists
        a = rng.uniform(0.5, 2.0, a_shape).astype(np.float32)
    fn = {"add": lambda x, y: x + y, "sub": lambda x, y: x - y, "mul": lambda x, y: x * y,
          "div": lambda x, y: x / y, "pow": lambda x, y: x ** y}[op]
    cpu, device = _on_both(fn, [a, b])
    assert cpu[0].shape == np.broadcast_shapes(a_shape, b_shape)
    _assert_same(cpu, device)


def test_broadcast_binary_kernel_matches_numpy(backend):
    for a_shape, b_shape in SHAPE_PAIRS:
        a = rng.standard_normal(a_shape).astype(np.float32)
        b = rng.uniform(0.5, 2.0, b_shape).astype(np.float32)
        A, B = backend.from_numpy(a, 0), backend.from_numpy(b, 0)
        refs = [a + b, a - b, a * b, a / b, np.abs(a) ** b]
        for op, ref in enumerate(refs):
            got = backend.binary(op, backend.from_numpy(np.abs(a), 0) if op == 4 else A, B).numpy()
            assert got.shape == ref.shape
            np.testing.assert_allclose(got, ref, rtol=2e-6, atol=1e-7)


def test_binary_shapes_that_do_not_broadcast_raise(backend):
    A, B = backend.from_numpy(np.ones((3, 4), np.float32), 0), backend.from_numpy(np.ones(5, np.float32), 0)
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(5,\)"):
        backend.binary(0, A, B)
    with pytest.raises(ValueError, match="broadcast"):
        backend.expand(A, [3, 5])
    with pytest.raises(ValueError, match=r"\(3, 4\) and \(5,\)"):
        fastnn.ones(3, 4, device="cuda") * fastnn.ones(5, device="cuda")


def test_expand_matches_numpy(backend):
    for x_shape, shape in [((), (3, 4)), ((1,), (5,)), ((3, 1), (2, 3, 17)), ((1, 4, 1), (3, 4, 5)), ((2, 3), (2, 3))]:
        x = rng.standard_normal(x_shape).astype(np.float32)
        got = backend.expand(backend.from_numpy(x, 0), list(shape)).numpy()
        np.testing.assert_array_equal(got, np.broadcast_to(x, shape))


# -- pow -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("exponent", [2.0, 0.5, -1.0, 3])
def test_pow_with_a_scalar_exponent_matches_the_cpu(backend, exponent):
    x = rng.uniform(0.2, 3.0, (3, 17)).astype(np.float32)
    _assert_same(*_on_both(lambda t: t ** exponent, [x]))
    _assert_same(*_on_both(lambda t: exponent ** t if exponent > 0 else 2.0 ** t, [x]))


def test_pow_special_values_match_the_cpu(backend):
    # 0**0 = 1, 0**2 = 0, 0**-1 = inf; d/dexponent at base 0 is 0 for exponent >= 0 (as the CPU's Pow)
    base = np.array([0.0, 0.0, 0.0, 2.0, 1.0, 4.0], np.float32)
    exponent = np.array([0.0, 2.0, -1.0, 3.0, 0.0, 0.5], np.float32)
    cpu, device = _on_both(lambda x, y: x ** y, [base, exponent])
    np.testing.assert_array_equal(device[0], [1.0, 0.0, np.inf, 8.0, 1.0, 2.0])
    _assert_same(cpu, device)  # NaN where the CPU has NaN (0 * 0**-1 at 0**0's base)
    grad_exponent = device[1][1]
    assert np.isfinite(grad_exponent[[0, 1, 3, 4, 5]]).all() and grad_exponent[0] == 0 and grad_exponent[1] == 0


# -- leaky_relu and gelu (cuda.unary ops 6 to 8) ---------------------------------------------------

ACTIVATIONS = {"leaky_relu": lambda t: F.leaky_relu(t), "leaky_relu(-0.5)": lambda t: F.leaky_relu(t, -0.5),
               "leaky_relu(0)": lambda t: F.leaky_relu(t, 0.0), "gelu": F.gelu,
               "gelu(tanh)": lambda t: F.gelu(t, "tanh")}
SPECIAL_VALUES = np.array([0.0, -0.0, 1e-30, -1e-30, 1e20, -1e20, 40.0, -40.0, np.inf, -np.inf, np.nan], np.float32)


@pytest.mark.parametrize("shape", [(1,), (3,), (17, 65), (2, 3, 17)])
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activations_match_the_cpu(backend, name, shape):
    # leaky_relu is float32 arithmetic on both sides: the same bits. The gelus compute in double on
    # both, the CPU with an erfc accurate to 1.2e-7: agreement to about one float32 rounding.
    x = (rng.standard_normal(shape) * 3).astype(np.float32)
    cpu, device = _on_both(ACTIVATIONS[name], [x], grad_seed=len(shape))
    if name.startswith("leaky"):
        np.testing.assert_array_equal(device[0], cpu[0])
        np.testing.assert_array_equal(device[1][0], cpu[1][0])
    else:
        _assert_same(cpu, device, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activations_special_values_match_the_cpu(backend, name):
    cpu, device = _on_both(ACTIVATIONS[name], [SPECIAL_VALUES])
    _assert_same(cpu, device, rtol=1e-6, atol=1e-30)  # NaN where the CPU has NaN, infinities alike


# -- reductions ------------------------------------------------------------------------------------

REDUCTION_CASES = [((3, 17, 65), None), ((3, 17, 65), 0), ((3, 17, 65), 1), ((3, 17, 65), 2), ((3, 17, 65), (0, 2)),
                   ((3, 17, 65), (0, 1)), ((3, 17, 65), (1, 2)), ((3, 17, 65), (-1,)), ((1, 5, 1, 7), 1),
                   ((1, 5, 1, 7), (0, 2)), ((4, 1, 6, 3), (0, 2)), ((4, 1, 6, 3), (1, 3)), ((2, 3, 5, 7), (0, 2)),
                   ((2, 3, 5, 7), (1, 3)), ((2, 3, 5, 7), (0, 1, 3)), ((65,), 0), ((), None), ((1, 1), (0, 1))]


@pytest.mark.parametrize("shape, axis", REDUCTION_CASES)
@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("name", ["sum", "mean", "max"])
def test_reductions_match_float64_and_the_cpu(backend, name, shape, axis, keepdim):
    x = rng.standard_normal(shape).astype(np.float32)
    fn = getattr(fastnn, name)
    cpu, device = _on_both(lambda t: fn(t, axis=axis, keepdim=keepdim), [x])
    ref = getattr(np, {"sum": "sum", "mean": "mean", "max": "amax"}[name])(
        x.astype(np.float64), axis=axis, keepdims=keepdim)
    assert device[0].shape == np.shape(ref)
    np.testing.assert_allclose(device[0], ref, rtol=1e-5, atol=1e-5)
    _assert_same(cpu, device)


@pytest.mark.parametrize("shape, axis", [((100000,), 0), ((3, 100000), 1), ((100000, 3), 0), ((7, 100000, 2), 1),
                                         ((1000, 1000), None), ((1000, 1000), 1)])
def test_sums_over_long_axes_match_float64(backend, shape, axis):
    x = rng.uniform(0.0, 1.0, shape).astype(np.float32)
    t = fastnn.tensor(x, device="cuda")
    ref = x.sum(axis=axis, dtype=np.float64)
    np.testing.assert_allclose(fastnn.sum(t, axis=axis).cpu().numpy(), ref, rtol=1e-5)
    np.testing.assert_allclose(fastnn.mean(t, axis=axis).cpu().numpy(), ref / x.size * np.size(ref), rtol=1e-5)
    np.testing.assert_array_equal(fastnn.max(t, axis=axis).cpu().numpy(), x.max(axis=axis))


def test_reduction_kernels_match_float64(backend):
    for outer, R, inner in [(1, 1, 1), (3, 1, 5), (1, 17, 1), (65, 3, 1), (2, 300, 1), (5, 65, 17), (1, 1000, 2)]:
        x = rng.standard_normal((outer, R, inner)).astype(np.float32)
        X = backend.from_numpy(x, 0)
        np.testing.assert_allclose(backend.reduce_sum(X, 0.5).numpy(), 0.5 * x.sum(1, dtype=np.float64),
                                   rtol=1e-6, atol=1e-6)
        out = backend.reduce_max(X)
        np.testing.assert_array_equal(out.numpy(), x.max(1))
        dy = rng.standard_normal((outer, inner)).astype(np.float32)
        dx = backend.reduce_max_backward(backend.from_numpy(dy, 0), X, out).numpy()
        np.testing.assert_array_equal(dx, np.where(x == x.max(1, keepdims=True), dy[:, None, :], 0))
    with pytest.raises(ValueError, match="empty"):
        backend.reduce_max(backend.from_numpy(np.ones((2, 0, 3), np.float32), 0))


@pytest.mark.parametrize("axis", [1, (0, 2), None])
def test_max_splits_its_gradient_among_ties(backend, axis):
    x = np.array([[[1, 3], [3, 0], [2, 3]], [[3, 3], [1, 2], [0, 3]]], np.float32)  # ties within and across axes
    cpu, device = _on_both(lambda t: fastnn.max(t, axis=axis), [x])
    _assert_same(cpu, device, rtol=1e-6, atol=0)
    out, (grad,) = device
    weights = np.random.default_rng(0).standard_normal(np.shape(out)).astype(np.float32)
    ties = (x == np.amax(x, axis=axis, keepdims=True)).sum(axis=axis, keepdims=True)
    upstream = weights if axis is None else np.expand_dims(weights, axis)
    np.testing.assert_allclose(grad, np.where(x == np.amax(x, axis=axis, keepdims=True), upstream / ties, 0),
                               rtol=1e-6)


@pytest.mark.parametrize("outer, R, inner", [(1, 50000, 1), (3, 7000, 1), (2, 5000, 3), (1, 70000, 2)])
def test_max_backward_over_long_axes_splits_among_ties(backend, outer, R, inner):
    # Long R over few outputs: the kernels cut R into pieces (partials, then their reduction).
    x = rng.integers(0, 50, (outer, R, inner)).astype(np.float32)  # many tied maxima
    X = backend.from_numpy(x, 0)
    out = backend.reduce_max(X)
    np.testing.assert_array_equal(out.numpy(), x.max(1))
    dy = rng.standard_normal((outer, inner)).astype(np.float32)
    dx = backend.reduce_max_backward(backend.from_numpy(dy, 0), X, out).numpy()
    at_max = x == x.max(1, keepdims=True)
    np.testing.assert_array_equal(dx, np.where(at_max, dy[:, None, :] / at_max.sum(1, keepdims=True).astype(np.float32),
                                               0))


def test_max_propagates_nan_as_the_cpu(backend):
    x = np.array([[1.0, np.nan, 3.0], [4.0, 5.0, 6.0]], np.float32)
    cpu, device = _on_both(lambda t: fastnn.max(t, axis=1), [x])
    np.testing.assert_array_equal(device[0], [np.nan, 6.0])
    _assert_same(cpu, device)


def test_sum_over_an_empty_axis_is_zero(backend):
    t = fastnn.zeros(0, 3, device="cuda")
    np.testing.assert_array_equal(fastnn.sum(t, axis=0).cpu().numpy(), np.zeros(3))
    assert fastnn.sum(t, axis=1).shape == (0,)
    assert fastnn.sum(t).item() == 0.0


def test_strided_views_are_checked_against_the_array(backend):
    x = backend.from_numpy(np.arange(15, dtype=np.float32), 0)
    np.testing.assert_array_equal(backend.gather_strided(x, 14, [3, 2], [-5, -2]).numpy(), [[14, 12], [9, 7], [4, 2]])
    for offset, shape, strides in [(15, [1], [1]), (2, [2, 2], [-5, 1]), (0, [4], [5]), (0, [3, 3], [7, 1])]:
        with pytest.raises(ValueError, match="reaches outside"):
            backend.gather_strided(x, offset, shape, strides)
    dst = backend.from_numpy(np.zeros(15, np.float32), 0)
    backend.scatter_strided(dst, backend.from_numpy(np.ones((2, 2), np.float32), 0), 1, [5, 2])
    np.testing.assert_array_equal(np.flatnonzero(dst.numpy()), [1, 3, 6, 8])
    with pytest.raises(ValueError, match="reaches outside"):
        backend.scatter_strided(dst, backend.from_numpy(np.ones(4, np.float32), 0), 12, [1])
