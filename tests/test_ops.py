"""Every op against its float64 numpy reference, in value and in finite-difference gradient,
on shapes with sizes 1, 3 and 17 and broadcasting; then every class of bad input. The tests
taking the `device` fixture (conftest.py) run on the CPU and on CUDA (the numpy stand-in, and the
real kernels where there is a GPU)."""
import itertools

import numpy as np
import pytest

import fastnn
from helpers import check_op, random_inputs
from reference import (cat_ref, flatten_ref, matmul_ref, max_ref, mean_ref, relu_ref, sigmoid_ref,
                       stack_ref, sum_ref, tanh_ref, transpose_ref)

# ---------------------------------------------------------------------------------------------
# elementwise

UNARY_SHAPES = [(), (1,), (3,), (17,), (3, 17), (2, 3, 5)]
BROADCAST_PAIRS = [((3,), (3,)), ((1,), (17,)), ((3, 17), (17,)), ((3, 1), (1, 17)), ((2, 3, 1), (3, 17)),
                   ((), (3,)), ((17, 3), ())]


@pytest.mark.parametrize("shape", UNARY_SHAPES)
@pytest.mark.parametrize("name, fastnn_fn, reference_fn, low", [
    ("neg", lambda x: -x, np.negative, -2.0),
    ("exp", fastnn.exp, np.exp, -2.0),
    ("log", fastnn.log, np.log, 0.2),
    ("sqrt", fastnn.sqrt, np.sqrt, 0.2),
    ("relu", fastnn.relu, relu_ref, -2.0),
    ("sigmoid", fastnn.sigmoid, sigmoid_ref, -2.0),
    ("tanh", fastnn.tanh, tanh_ref, -2.0),
    ("clone", lambda x: x.clone(), np.copy, -2.0),
])
def test_unary(shape, name, fastnn_fn, reference_fn, low, device):
    check_op([shape], fastnn_fn, reference_fn, low=low, device=device)


@pytest.mark.parametrize("shapes", BROADCAST_PAIRS)
@pytest.mark.parametrize("name, fastnn_fn, reference_fn, low", [
    ("add", lambda a, b: a + b, np.add, [-2.0, -2.0]),
    ("sub", lambda a, b: a - b, np.subtract, [-2.0, -2.0]),
    ("mul", lambda a, b: a * b, np.multiply, [-2.0, -2.0]),
    ("div", lambda a, b: a / b, np.divide, [-2.0, 0.5]),
    ("pow", lambda a, b: a ** b, np.power, [0.5, -2.0]),
])
def test_binary_broadcasting(shapes, name, fastnn_fn, reference_fn, low, device):
    check_op(shapes, fastnn_fn, reference_fn, low=low, device=device)


@pytest.mark.parametrize("name, fastnn_fn, reference_fn, low", [
    ("x**2", lambda x: x ** 2, lambda x: x ** 2, -2.0),
    ("x**3", lambda x: fastnn.pow(x, 3), lambda x: x ** 3, -2.0),
    ("x**0.5", lambda x: x ** 0.5, np.sqrt, 0.2),
    ("x**-1.5", lambda x: x.pow(-1.5), lambda x: x ** -1.5, 0.5),
    ("2**x", lambda x: 2.0 ** x, lambda x: 2.0 ** x, -2.0),
    ("0.5**x", lambda x: fastnn.pow(0.5, x), lambda x: 0.5 ** x, -2.0),
    ("x+1", lambda x: x + 1, lambda x: x + 1, -2.0),
    ("1-x", lambda x: 1 - x, lambda x: 1 - x, -2.0),
    ("3*x", lambda x: 3 * x, lambda x: 3 * x, -2.0),
    ("1/x", lambda x: 1 / x, lambda x: 1 / x, 0.5),
    ("array-x", lambda x: np.arange(17.0) - x, lambda x: np.arange(17.0) - x, -2.0),
    ("x*array", lambda x: x * np.arange(17.0), lambda x: x * np.arange(17.0), -2.0),
])
def test_scalar_and_array_operands(name, fastnn_fn, reference_fn, low, device):
    if device != "cpu" and "array" in name:  # a numpy array is a CPU tensor: it does not meet a device one
        with pytest.raises(RuntimeError, match="same device"):
            check_op([(3, 17)], fastnn_fn, reference_fn, low=low, device=device)
        return
    check_op([(3, 17)], fastnn_fn, reference_fn, low=low, device=device)


def test_pow_of_zero_base_has_finite_exponent_gradient():
    base = fastnn.tensor([0.0, 0.0, 2.0])
    exponent = fastnn.tensor([2.0, 0.0, 3.0], requires_grad=True)
    (base ** exponent).sum().backward()
    np.testing.assert_allclose(exponent.grad.numpy(), [0.0, 0.0, 8.0 * np.log(2.0)], rtol=1e-6)


def test_ieee_edge_values_without_warnings():
    x = fastnn.tensor([0.0, -1.0, 4.0], requires_grad=True)
    y = fastnn.log(x)
    np.testing.assert_allclose(y.detach().numpy()[[0, 2]], [-np.inf, np.log(4.0)], rtol=1e-6)
    assert np.isnan(y.detach().numpy()[1])
    y.sum().backward()  # 1/0 = inf, no warning
    assert np.isinf(x.grad.numpy()[0])
    assert np.isinf((fastnn.tensor([1.0]) / 0).item())


def test_sigmoid_is_stable_for_large_inputs():
    x = fastnn.tensor([-1000.0, -100.0, 0.0, 100.0, 1000.0], requires_grad=True)
    y = fastnn.sigmoid(x)
    np.testing.assert_allclose(y.detach().numpy(), [0.0, sigmoid_ref(-100.0), 0.5, 1.0, 1.0], atol=1e-30)
    y.sum().backward()
    assert np.all(np.isfinite(x.grad.numpy()))
    assert x.grad.numpy()[2] == pytest.approx(0.25)


def test_relu_gradient_at_zero_is_zero():
    x = fastnn.tensor([-1.0, 0.0, 2.0], requires_grad=True)
    fastnn.relu(x).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 0.0, 1.0])


# ---------------------------------------------------------------------------------------------
# reductions

REDUCE_CASES = [((17,), None), ((17,), 0), ((3, 17), None), ((3, 17), 1), ((3, 17), -2),
                ((2, 3, 5), (0, 2)), ((2, 3, 5), (-1,)), ((1, 3, 1), 0), ((), None)]


@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("shape, axis", REDUCE_CASES)
@pytest.mark.parametrize("name, fastnn_fn, reference_fn", [
    ("sum", fastnn.sum, sum_ref), ("mean", fastnn.mean, mean_ref), ("max", fastnn.max, max_ref)])
def test_reductions(shape, axis, keepdim, name, fastnn_fn, reference_fn, device):
    check_op([shape], lambda x: fastnn_fn(x, axis, keepdim), lambda x: reference_fn(x, axis, keepdim), device=device)


def test_reduction_methods_take_dim_alias():
    x = fastnn.tensor(np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(x.sum(dim=1).numpy(), [3.0, 12.0])
    np.testing.assert_array_equal(x.mean(dim=0, keepdim=True).numpy(), [[1.5, 2.5, 3.5]])
    np.testing.assert_array_equal(x.max(dim=-1).numpy(), [2.0, 5.0])
    with pytest.raises(TypeError, match="axis or dim"):
        x.sum(axis=0, dim=1)


def test_max_splits_gradient_evenly_among_ties():
    x = fastnn.tensor([[1.0, 3.0, 3.0, 2.0], [5.0, 5.0, 5.0, 5.0]], requires_grad=True)
    x.max(axis=1).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [[0, 0.5, 0.5, 0], [0.25, 0.25, 0.25, 0.25]])


def test_sum_of_empty_is_zero_with_empty_gradient():
    x = fastnn.zeros(0, 3, requires_grad=True)
    s = x.sum()
    assert s.item() == 0.0
    s.backward()
    assert x.grad.shape == (0, 3)
    assert x.sum(axis=1).shape == (0,)


@pytest.mark.parametrize("fn", [fastnn.mean, fastnn.max])
def test_mean_and_max_over_empty_axis_raise(fn):
    with pytest.raises(ValueError, match=r"empty axis: input of shape \(0, 3\)"):
        fn(fastnn.zeros(0, 3), 0)
    assert fn(fastnn.zeros(0, 3), 1).shape == (0,)  # reducing a non-empty axis is fine


# ---------------------------------------------------------------------------------------------
# shape ops

@pytest.mark.parametrize("shape, new_shape", [
    ((3, 17), (17, 3)), ((3, 17), (-1,)), ((2, 3, 5), (6, -1)), ((1,), ()), ((), (1, 1)), ((17,), (1, 17, 1))])
def test_reshape(shape, new_shape):
    check_op([shape], lambda x: x.reshape(new_shape), lambda x: x.reshape(new_shape))


def test_reshape_and_view_take_varargs():
    x = fastnn.zeros(2, 3)
    assert x.reshape(3, 2).shape == (3, 2)
    assert x.view(-1).shape == (6,)
    assert fastnn.reshape(x, 6).shape == (6,)


@pytest.mark.parametrize("shape, dim0, dim1", [((3, 17), 0, 1), ((2, 3, 5), 0, -1), ((2, 3, 5), 1, 1)])
def test_transpose(shape, dim0, dim1, device):
    check_op([shape], lambda x: x.transpose(dim0, dim1), lambda x: transpose_ref(x, dim0, dim1), device=device)


def test_T_property():
    check_op([(3, 17)], lambda x: x.T, lambda x: x.T)


@pytest.mark.parametrize("shape, dims", [((2, 3, 5), (2, 0, 1)), ((3, 17), (1, 0)), ((2, 3, 5, 1), (3, 1, 0, 2))])
def test_permute(shape, dims, device):
    check_op([shape], lambda x: x.permute(*dims), lambda x: np.transpose(x, dims), device=device)
    check_op([shape], lambda x: fastnn.permute(x, dims), lambda x: np.transpose(x, dims), device=device)


@pytest.mark.parametrize("shape, start, end", [((2, 3, 5), 0, -1), ((2, 3, 5), 1, 2), ((2, 3, 5), 0, 0), ((), 0, -1)])
def test_flatten(shape, start, end, device):
    check_op([shape], lambda x: x.flatten(start, end), lambda x: flatten_ref(x, start, end), device=device)


BASIC_INDICES = [1, -1, slice(1, 3), (slice(None), 2), (Ellipsis, 0), (None, 1), (slice(None, None, -1), slice(0, 4, 2)),
                 (slice(2, 0, -1), None, slice(-1, -5, -3)), (Ellipsis, slice(1, 2), None), (0, -1), (slice(5, 7),)]
ARRAY_INDICES = [np.array([0, 2, 0, 0]), (np.array([1, 0]), np.array([4, 4])), [2, 2], np.array([True, False, True])]


@pytest.mark.parametrize("index", BASIC_INDICES + ARRAY_INDICES)
def test_getitem(index):
    check_op([(3, 5)], lambda x: x[index], lambda x: x[index])


@pytest.mark.parametrize("index", BASIC_INDICES + [(slice(None), slice(1, 4), 2, slice(None, None, 2))])
def test_basic_getitem_on_every_device(index, device):
    shape = (3, 5) if len(index if isinstance(index, tuple) else (index,)) < 4 else (2, 5, 3, 7)
    check_op([shape], lambda x: x[index], lambda x: x[index], device=device)


def test_array_indices_on_a_device_raise_not_implemented(backend):
    x = fastnn.zeros(3, 5, device="cuda")
    with pytest.raises(NotImplementedError, match="array indices have no CUDA path"):
        x[np.array([0, 2])]
    with pytest.raises(IndexError):
        x[:, 5]


def test_getitem_repeated_indices_accumulate():
    x = fastnn.tensor([1.0, 2.0, 3.0], requires_grad=True)
    x[np.array([0, 0, 2, 0])].sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 0.0, 1.0])


@pytest.mark.parametrize("shapes, axis", [
    ([(3,), (17,)], 0), ([(2, 3), (2, 1), (2, 17)], 1), ([(1, 3), (3, 3)], 0), ([(2, 3, 5), (2, 3, 1)], -1)])
def test_cat(shapes, axis, device):
    check_op(shapes, lambda *xs: fastnn.cat(xs, axis=axis), lambda *xs: cat_ref(*xs, axis=axis), device=device)
    check_op(shapes, lambda *xs: fastnn.concatenate(list(xs), axis), lambda *xs: cat_ref(*xs, axis=axis),
             device=device)


@pytest.mark.parametrize("shapes, axis", [([(3,), (3,)], 0), ([(2, 3)] * 3, 1), ([(2, 3)] * 2, -1), ([()] * 4, 0)])
def test_stack(shapes, axis):
    check_op(shapes, lambda *xs: fastnn.stack(xs, axis=axis), lambda *xs: stack_ref(*xs, axis=axis))


# ---------------------------------------------------------------------------------------------
# matmul

SIZES = [1, 3, 17]


@pytest.mark.parametrize("m, k, n", list(itertools.product(SIZES, SIZES, SIZES)))
def test_matmul_2d(m, k, n, device):
    check_op([(m, k), (k, n)], fastnn.matmul, matmul_ref, atol=1e-5, rtol=1e-4, device=device)


@pytest.mark.parametrize("a_shape, b_shape", [
    ((3,), (3,)), ((17,), (17, 3)), ((3, 17), (17,)), ((3,), (2, 3, 5)), ((2, 5, 3), (3,)),  # 1-D
    ((2, 3, 17), (17, 5)), ((2, 1, 3, 4), (4, 1)),                                        # N-D @ 2-D
    ((2, 3, 4), (2, 4, 5)), ((2, 1, 3, 4), (5, 4, 3)), ((3, 4), (2, 4, 5)), ((1, 3, 4), (2, 4, 1)),  # batched
])
def test_matmul_nd_and_broadcast(a_shape, b_shape):
    check_op([a_shape, b_shape], lambda a, b: a @ b, matmul_ref, atol=1e-5, rtol=1e-4)


def _views(rng):
    """(name, float32 array view) with the layouts gemm must handle: transposed, sliced, strided."""
    wide = rng.standard_normal((40, 50)).astype(np.float32)
    return [
        ("c-contiguous", wide[:17, :19].copy()),
        ("transposed (F-contiguous)", np.ascontiguousarray(wide[:19, :17]).T),
        ("slice of a wider array", wide[3:20, 5:24]),
        ("every other row", wide[::2, :19][:17]),
        ("every other column", wide[:17, ::2][:, :19]),
        ("reversed rows", wide[16::-1, :19]),
    ]


@pytest.mark.parametrize("a_layout", range(6))
@pytest.mark.parametrize("b_layout", [0, 1, 4])
def test_matmul_on_views_matches_float64(a_layout, b_layout):
    rng = np.random.default_rng(7)
    a_name, a = _views(rng)[a_layout]
    b_name, b = _views(rng)[b_layout]
    b = b.T  # (19, 17)
    a_t = fastnn.from_numpy(a).requires_grad_()
    b_t = fastnn.from_numpy(b).requires_grad_()
    out = a_t @ b_t
    np.testing.assert_allclose(out.detach().numpy(), matmul_ref(a, b), atol=1e-4, rtol=1e-4,
                               err_msg=f"{a_name} @ {b_name}")
    upstream = rng.standard_normal(out.shape).astype(np.float32)
    out.backward(upstream)
    np.testing.assert_allclose(a_t.grad.numpy(), matmul_ref(upstream, b.T), atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(b_t.grad.numpy(), matmul_ref(a.T, upstream), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("a_shape, b_shape", [((65, 129), (129, 33)), ((4, 31, 64), (64, 127)),
                                              ((3, 17, 33), (1, 33, 65))])
def test_matmul_larger_shapes_match_float64(a_shape, b_shape):
    a, b = random_inputs([a_shape, b_shape], seed=3)
    out = fastnn.from_numpy(a) @ fastnn.from_numpy(b)
    expected = matmul_ref(a, b)
    scale = matmul_ref(np.abs(a), np.abs(b))  # float32 error grows with the sum of |terms|
    assert np.all(np.abs(out.numpy() - expected) <= 1e-6 * scale + 1e-6)


@pytest.mark.parametrize("a_shape, b_shape, out_shape", [
    ((0, 3), (3, 4), (0, 4)), ((3, 0), (0, 4), (3, 4)), ((2, 3), (3, 0), (2, 0)),
    ((0, 2, 3), (3, 4), (0, 2, 4)), ((0, 2, 3), (1, 3, 4), (0, 2, 4)), ((0,), (0,), ())])
def test_matmul_zero_size_follows_numpy(a_shape, b_shape, out_shape):
    a = fastnn.zeros(a_shape, requires_grad=True)
    b = fastnn.ones(b_shape, requires_grad=True)
    out = a @ b
    assert out.shape == out_shape
    np.testing.assert_array_equal(out.detach().numpy(), np.zeros(out_shape))  # an empty sum is 0
    out.sum().backward()
    assert a.grad.shape == a_shape and b.grad.shape == b_shape
    np.testing.assert_array_equal(b.grad.numpy(), np.zeros(b_shape))


def test_matmul_with_numpy_operand_and_reflected():
    a = np.arange(6.0).reshape(2, 3)
    b = fastnn.ones(3, 2)
    np.testing.assert_allclose((a @ b).numpy(), a @ np.ones((3, 2)))
    np.testing.assert_allclose((b @ a).numpy(), np.ones((3, 2)) @ a)


# ---------------------------------------------------------------------------------------------
# bad inputs

def test_matmul_shape_mismatch_names_shapes():
    with pytest.raises(ValueError, match=r"shapes \(3, 4\) and \(5, 6\) cannot be multiplied: "
                                         r"expected other of shape \(4, \.\.\.\)"):
        fastnn.zeros(3, 4) @ fastnn.zeros(5, 6)
    with pytest.raises(ValueError, match=r"expected other of shape \(4,\)"):
        fastnn.zeros(3, 4) @ fastnn.zeros(5)
    with pytest.raises(ValueError, match=r"expected other of shape \(\.\.\., 4, N\)"):
        fastnn.zeros(3, 4) @ fastnn.zeros(2, 5, 6)
    with pytest.raises(ValueError, match=r"batch dimensions \(2,\) and \(3,\)"):
        fastnn.zeros(2, 3, 4) @ fastnn.zeros(3, 4, 5)
    with pytest.raises(ValueError, match="at least 1-D"):
        fastnn.matmul(fastnn.tensor(2.0), fastnn.zeros(3))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("which", ["input", "other"])
def test_matmul_rejects_nan_and_inf(bad, which):
    a, b = np.ones((3, 4), np.float32), np.ones((4, 5), np.float32)
    (a if which == "input" else b)[1, 2] = bad
    with pytest.raises(ValueError, match=r"matmul of input \(3, 4\) and other \(4, 5\).*(NaN|infinity)"):
        fastnn.from_numpy(a) @ fastnn.from_numpy(b)


def test_matmul_nan_passes_when_check_is_off():
    a = np.ones((3, 4), np.float32)
    a[0, 0] = np.nan
    previous = fastnn.set_check_finite(False)
    try:
        out = (fastnn.from_numpy(a) @ fastnn.ones(4, 2)).numpy()
    finally:
        fastnn.set_check_finite(previous)
    assert np.isnan(out[0]).all() and np.isfinite(out[1:]).all()


def test_from_numpy_rejects_other_dtypes():
    for dtype in [np.float64, np.float16, np.int32, np.bool_]:
        with pytest.raises(TypeError, match=r"astype\(numpy.float32\).*fastnn.tensor"):
            fastnn.from_numpy(np.zeros(3, dtype=dtype))
    with pytest.raises(TypeError, match="numpy.ndarray"):
        fastnn.from_numpy([1.0, 2.0])


def test_float64_operands_become_float32_constants():
    out = fastnn.ones(2) + np.array([0.5, 1.5])
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out.numpy(), [1.5, 2.5])


def test_broadcast_mismatch_names_shapes():
    with pytest.raises(ValueError, match=r"add: shapes \(2, 3\) and \(4,\) cannot be broadcast"):
        fastnn.zeros(2, 3) + fastnn.zeros(4)
    with pytest.raises(ValueError, match=r"mul: shapes \(2, 3\) and \(2,\)"):
        fastnn.zeros(2, 3) * np.zeros(2)


def test_non_numeric_operand_is_a_type_error():
    with pytest.raises(TypeError, match="numeric"):
        fastnn.zeros(2) + "a"


@pytest.mark.parametrize("call, match", [
    (lambda x: x.reshape(4, 4), r"input of shape \(3, 5\) \(15 elements\) into shape \(4, 4\) \(16 elements\)"),
    (lambda x: x.reshape(-1, 4), r"input of shape \(3, 5\).*the -1 dimension cannot be inferred"),
    (lambda x: x.reshape(-1, -1), "only one dimension can be -1"),
    (lambda x: x.reshape(3, -2), "non-negative"),
    (lambda x: x.sum(axis=2), r"axis=2 is out of range for an input with ndim=2"),
    (lambda x: x.max(axis=(0, -2)), "repeats an axis"),
    (lambda x: x.mean(axis=-3), r"axis=-3 is out of range for an input with ndim=2"),
    (lambda x: x.transpose(0, 2), r"dim1=2 is out of range for an input with ndim=2"),
    (lambda x: x.permute(0, 0), r"dims=\(0, 0\) is not a permutation"),
    (lambda x: x.permute(0), r"dims=\(0,\) is not a permutation"),
    (lambda x: x.flatten(1, 0), "start_dim=1 comes after end_dim=0"),
    (lambda x: fastnn.cat([x, fastnn.zeros(3, 4)], axis=0), r"tensor 1 has shape \(3, 4\).*\(\*, 5\)"),
    (lambda x: fastnn.cat([x, fastnn.zeros(3)], axis=1), r"tensor 1 has shape \(3,\)"),
    (lambda x: fastnn.cat([], axis=0), "non-empty"),
    (lambda x: fastnn.stack([x, fastnn.zeros(5, 3)]), r"tensor 1 has shape \(5, 3\), expected \(3, 5\)"),
    (lambda x: fastnn.stack([x], axis=3), r"axis=3 is out of range for the stacked result with ndim=3"),
])
def test_shape_errors_name_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call(fastnn.zeros(3, 5))


def test_type_errors_for_non_integer_axes():
    with pytest.raises(TypeError, match="axis must be an int"):
        fastnn.zeros(3).sum(axis=0.5)
    with pytest.raises(TypeError, match="sequence of tensors"):
        fastnn.cat(fastnn.zeros(3))


@pytest.mark.parametrize("factory", [fastnn.zeros, fastnn.ones, fastnn.randn, fastnn.rand])
@pytest.mark.parametrize("shape, match", [
    ((2 ** 30, 2 ** 30), r"shape=\(1073741824, 1073741824\) asks for 1152921504606846976 elements"),
    ((2 ** 62, 2 ** 62, 2 ** 62), "more than the limit"),
    ((3, -1), r"non-negative ints, got shape=\(3, -1\)"),
    ((2.5,), r"shape must contain ints, got float in shape=\(2.5,\)"),
    (("3",), "shape must contain ints"),
    ((True, 2), "shape must contain ints"),
])
def test_absurd_shapes_raise_value_error(factory, shape, match):
    with pytest.raises(ValueError, match=match):
        factory(*shape)
    with pytest.raises(ValueError, match=match):
        factory(shape)


def test_index_out_of_range_is_an_index_error():
    with pytest.raises(IndexError):
        fastnn.zeros(3)[5]


def test_non_contiguous_views_work_everywhere():
    base = np.arange(60, dtype=np.float32).reshape(3, 4, 5)
    view = base[:, ::2, ::-1].transpose(2, 0, 1)
    x = fastnn.from_numpy(view).requires_grad_()
    y = (x * 2).sum(axis=1) @ fastnn.ones(2, 3)
    y.sum().backward()
    np.testing.assert_allclose(y.detach().numpy(), (view * 2).sum(axis=1) @ np.ones((2, 3)))
    np.testing.assert_allclose(x.grad.numpy(), np.full(view.shape, 6.0))


@pytest.mark.parametrize("a_shape, b_shape, forward_calls, backward_calls", [
    ((5, 3), (3, 4), 1, 2),
    ((2, 6, 5, 3), (3, 4), 1, 2),        # leading dims fold into M: still one GEMM per product
    ((2, 5, 3), (2, 3, 4), 2, 4),        # one GEMM per batch element
    ((1, 5, 3), (3, 3, 4), 3, 6),
])
def test_matmul_runs_on_our_gemm_only(monkeypatch, a_shape, b_shape, forward_calls, backward_calls):
    from fastnn import _C
    from fastnn.ops import linalg

    calls = []

    class CountingC:
        @staticmethod
        def gemm(*args, **kwargs):
            calls.append(args[0].shape)
            return _C.gemm(*args, **kwargs)

    def forbidden(*args, **kwargs):
        raise AssertionError("matmul must not fall back to numpy's matrix products")

    monkeypatch.setattr(linalg, "_C", CountingC)
    for name in ("matmul", "dot", "einsum", "tensordot", "inner"):
        monkeypatch.setattr(np, name, forbidden)
    a = fastnn.ones(a_shape, requires_grad=True)
    b = fastnn.ones(b_shape, requires_grad=True)
    out = a @ b
    assert len(calls) == forward_calls
    out.backward(np.ones(out.shape, np.float32))
    assert len(calls) == forward_calls + backward_calls
