"""Pooling (csrc/cpu/pool.cpp, fastnn.ops.pool, nn.pooling) against float64 numpy references,
with PyTorch as an extra oracle."""
import itertools
import json

import numpy as np
import pytest

import fastnn
import fastnn.nn.functional as F
from fastnn import _C, nn
from helpers import check_op, host, numerical_gradient
from reference import (adaptive_avg_pool2d_ref, avg_pool2d_matrix_ref, avg_pool2d_ref, max_pool2d_backward_ref,
                       max_pool2d_ref, pool_output_size_ref)


def torch_or_skip():
    return pytest.importorskip("torch", reason="torch not installed")


def tie_free(shape, seed):
    """Distinct values 0.01 apart in random order: no ties, and a finite-difference step cannot
    change which element is a window's maximum."""
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    return ((rng.permutation(n) - n / 2) * 0.01).astype(np.float32).reshape(shape)


def random_configs(count, seed, max_kernel=7, dilation=True):
    """(shape, kernel, stride, padding, dilation, ceil_mode) with a non-empty output: batch 1-4,
    channels 1-8, sizes 1-17, kernels 1-7, strides 1-4, any padding <= kernel // 2."""
    rng = np.random.default_rng(seed)
    configs = []
    while len(configs) < count:
        shape = (int(rng.integers(1, 5)), int(rng.integers(1, 9)), int(rng.integers(1, 18)), int(rng.integers(1, 18)))
        k = tuple(int(v) for v in rng.integers(1, max_kernel + 1, 2))
        s = tuple(int(v) for v in rng.integers(1, 5, 2))
        p = tuple(int(rng.integers(0, kk // 2 + 1)) for kk in k)
        d = tuple(int(v) for v in rng.integers(1, 4, 2)) if dilation else (1, 1)
        ceil = bool(rng.integers(0, 2))
        if all(pool_output_size_ref(n, kk, ss, pp, dd, ceil) >= 1 for n, kk, ss, pp, dd in zip(shape[2:], k, s, p, d)):
            configs.append((shape, k, s, p, d, ceil))
    return configs


def max_pool_and_indices(t, *args):
    """F.max_pool2d(t, *args, return_indices=True), the indices a numpy int64 array on any device."""
    out, indices = F.max_pool2d(t, *args, return_indices=True)
    assert isinstance(indices, np.ndarray) and indices.dtype == np.int64 and indices.shape == out.shape
    return out, indices


def every_setting(max_kernel=4, max_stride=3, max_dilation=3):
    """Every (kernel, stride, padding, dilation, ceil_mode) up to the bounds, one value per axis."""
    for k, s, d, ceil in itertools.product(range(1, max_kernel + 1), range(1, max_stride + 1),
                                           range(1, max_dilation + 1), (False, True)):
        for p in range(k // 2 + 1):
            yield k, s, p, d, ceil


# ---- output sizes -------------------------------------------------------------------------------

@pytest.mark.parametrize("H,k,s,p,d,ceil,expected", [
    (28, 2, 2, 0, 1, False, 14), (5, 2, 2, 0, 1, False, 2), (5, 2, 2, 0, 1, True, 3),
    (16, 3, 2, 0, 1, False, 7), (16, 3, 2, 0, 1, True, 8), (16, 3, 2, 1, 1, False, 8),
    (5, 3, 3, 1, 1, True, 2),   # ceil would give 3, but the last window would start in the right padding
    (7, 3, 1, 0, 3, False, 1), (1, 1, 5, 0, 1, True, 1),
])
def test_output_size_follows_pytorch(H, k, s, p, d, ceil, expected, device):
    assert pool_output_size_ref(H, k, s, p, d, ceil) == expected
    out = F.max_pool2d(fastnn.zeros(1, 1, H, H, device=device), k, s, p, d, ceil_mode=ceil)
    assert out.shape == (1, 1, expected, expected)
    if d == 1:
        assert F.avg_pool2d(fastnn.zeros(1, 1, H, H, device=device), k, s, p, ceil_mode=ceil).shape == \
            (1, 1, expected, expected)


# ---- max pooling ------------------------------------------------------------------------------

@pytest.mark.parametrize("H,W", [(1, 1), (5, 7), (8, 3)])
def test_max_pool_every_setting(H, W, device):
    x = tie_free((2, 3, H, W), seed=H * 31 + W)
    upstream_rng = np.random.default_rng(0)
    tested = 0
    for k, s, p, d, ceil in every_setting():
        if min(pool_output_size_ref(n, k, s, p, d, ceil) for n in (H, W)) < 1:
            continue
        setting = f"kernel={k} stride={s} padding={p} dilation={d} ceil_mode={ceil}"
        t = fastnn.tensor(x, requires_grad=True, device=device)
        out, indices = max_pool_and_indices(t, k, s, p, d, ceil)
        expected, expected_idx = max_pool2d_ref(x, (k, k), (s, s), (p, p), (d, d), ceil)
        np.testing.assert_array_equal(host(out), expected, err_msg=setting)
        np.testing.assert_array_equal(indices, expected_idx, err_msg=setting)
        g = upstream_rng.standard_normal(out.shape).astype(np.float32)
        out.backward(fastnn.tensor(g, device=device))
        np.testing.assert_allclose(host(t.grad), max_pool2d_backward_ref(g, expected_idx, x.shape),
                                   rtol=1e-6, atol=1e-6, err_msg=setting)
        tested += 1
    assert tested > 20


def test_max_pool_random_shapes(device):
    upstream_rng = np.random.default_rng(1)
    count = 60 if device == "cpu" else 20  # the device runs: a third of the shapes, to keep the suite quick
    for i, (shape, k, s, p, d, ceil) in enumerate(random_configs(60, seed=2)[:count]):
        setting = f"shape={shape} kernel={k} stride={s} padding={p} dilation={d} ceil_mode={ceil}"
        x = tie_free(shape, seed=i)
        t = fastnn.tensor(x, requires_grad=True, device=device)
        out, indices = max_pool_and_indices(t, k, s, p, d, ceil)
        expected, expected_idx = max_pool2d_ref(x, k, s, p, d, ceil)
        np.testing.assert_array_equal(host(out), expected, err_msg=setting)
        np.testing.assert_array_equal(indices, expected_idx, err_msg=setting)
        g = upstream_rng.standard_normal(out.shape).astype(np.float32)
        out.backward(fastnn.tensor(g, device=device))
        np.testing.assert_allclose(host(t.grad), max_pool2d_backward_ref(g, expected_idx, shape),
                                   rtol=1e-6, atol=1e-6, err_msg=setting)


def test_fixed_window_paths():
    """2x2 and 3x3 windows with stride 1, 2 (and 3 for the average backward) have compiled paths
    for the outputs inside the plane; widths 9-17 give output rows with every tail n % 4 and
    padding, ceil_mode and row dilation give border outputs on the other paths."""
    rng = np.random.default_rng(12)
    for k, s, p, d, ceil in itertools.product((2, 3), (1, 2, 3), (0, 1), ((1, 1), (2, 1)), (False, True)):
        for H, W in [(9, 9), (11, 12), (16, 13), (17, 17), (10, 15)]:
            shape = (2, 2, H, W)
            if min(pool_output_size_ref(n, k, s, p, dd, ceil) for n, dd in zip((H, W), d)) < 1:
                continue
            setting = f"shape={shape} kernel={k} stride={s} padding={p} dilation={d} ceil_mode={ceil}"
            x = tie_free(shape, seed=H * W + k)
            t = fastnn.tensor(x, requires_grad=True)
            out, idx = F.max_pool2d(t, k, s, p, d, ceil, return_indices=True)
            expected, expected_idx = max_pool2d_ref(x, (k, k), (s, s), (p, p), d, ceil)
            np.testing.assert_array_equal(out.detach().numpy(), expected, err_msg=setting)
            np.testing.assert_array_equal(idx, expected_idx, err_msg=setting)
            g = rng.standard_normal(out.shape)
            out.backward(g.astype(np.float32))
            np.testing.assert_allclose(t.grad.numpy(), max_pool2d_backward_ref(g, expected_idx, shape),
                                       rtol=1e-6, atol=1e-6, err_msg=setting)
            if d != (1, 1):
                continue
            t.grad = None
            out = F.avg_pool2d(t, k, s, p, ceil)
            np.testing.assert_allclose(out.detach().numpy(), avg_pool2d_ref(x, (k, k), (s, s), (p, p), ceil),
                                       rtol=1e-6, atol=1e-6, err_msg=setting)
            g = rng.standard_normal(out.shape)
            out.backward(g.astype(np.float32))
            A, _, _ = avg_pool2d_matrix_ref(H, W, (k, k), (s, s), (p, p), ceil)
            np.testing.assert_allclose(t.grad.numpy(), (g.reshape(2, 2, -1) @ A).reshape(shape), rtol=1e-6,
                                       atol=1e-6, err_msg=setting)


def test_wide_rows_of_the_3x3_stride_2_path():
    """Output rows longer than the 3x3 stride-2 path's chunk (256 outputs) go in several passes."""
    x = tie_free((1, 2, 5, 1203), seed=5)
    t = fastnn.tensor(x, requires_grad=True)
    out, idx = F.max_pool2d(t, 3, 2, return_indices=True)
    expected, expected_idx = max_pool2d_ref(x, (3, 3), (2, 2), (0, 0), (1, 1), False)
    np.testing.assert_array_equal(out.detach().numpy(), expected)
    np.testing.assert_array_equal(idx, expected_idx)
    g = np.random.default_rng(6).standard_normal(out.shape)
    out.backward(g.astype(np.float32))
    np.testing.assert_allclose(t.grad.numpy(), max_pool2d_backward_ref(g, expected_idx, x.shape), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("shape,k,s,p,d,ceil", [
    ((2, 3, 6, 5), 2, 2, 0, 1, False),
    ((1, 2, 7, 7), 3, 2, 1, 1, True),
    ((2, 1, 8, 6), (3, 2), (1, 2), (1, 0), (2, 1), False),
    ((1, 3, 5, 9), (1, 4), (3, 2), (0, 2), (1, 2), True),
])
def test_max_pool_gradient_finite_differences(shape, k, s, p, d, ceil, device):
    pair = lambda v: v if isinstance(v, tuple) else (v, v)  # noqa: E731
    x = tie_free(shape, seed=7)
    t = fastnn.tensor(x, requires_grad=True, device=device)
    out = F.max_pool2d(t, k, s, p, d, ceil)
    g = np.random.default_rng(3).standard_normal(out.shape)
    out.backward(fastnn.tensor(g.astype(np.float32), device=device))

    def loss(x64):
        return np.sum(max_pool2d_ref(x64, pair(k), pair(s), pair(p), pair(d), ceil)[0] * g)

    np.testing.assert_allclose(host(t.grad), numerical_gradient(loss, [x], 0), rtol=1e-4, atol=1e-5)


def test_max_pool_nan_and_infinity_as_pytorch(device):
    torch = torch_or_skip()
    x = np.array([[[[1.0, np.nan, 3.0, 2.0], [np.nan, 0.0, -np.inf, -np.inf],
                    [5.0, 5.0, -np.inf, -np.inf], [4.0, 5.0, -np.inf, -np.inf]]]], np.float32)
    out, idx = max_pool_and_indices(fastnn.tensor(x, device=device), 2)
    t_out, t_idx = torch.nn.functional.max_pool2d(torch.from_numpy(x), 2, return_indices=True)
    np.testing.assert_array_equal(host(out), t_out.numpy())   # NaN wins; -inf windows stay -inf
    np.testing.assert_array_equal(idx, t_idx.numpy())     # last NaN; first of the ties; first of -infs


def test_max_pool_window_without_input_elements(device):
    # Height 2, kernel 2, dilation 3, padding 1: rows -1 and 2, neither inside the input.
    t = fastnn.tensor(np.arange(4, dtype=np.float32).reshape(1, 1, 2, 2), requires_grad=True, device=device)
    out, idx = max_pool_and_indices(t, 2, 1, 1, 3)
    assert out.shape == (1, 1, 1, 1) and host(out)[0, 0, 0, 0] == -np.inf and idx[0, 0, 0, 0] == -1
    out.sum().backward()
    assert np.array_equal(host(t.grad), np.zeros((1, 1, 2, 2), np.float32))


# ---- average pooling --------------------------------------------------------------------------

@pytest.mark.parametrize("count_include_pad", [True, False])
def test_avg_pool_every_setting(count_include_pad, device):
    rng = np.random.default_rng(5)
    for H, W in [(1, 1), (5, 7), (8, 3)]:
        x = rng.standard_normal((2, 3, H, W)).astype(np.float32)
        for k, s, p, _, ceil in every_setting(max_dilation=1):
            if min(pool_output_size_ref(n, k, s, p, 1, ceil) for n in (H, W)) < 1:
                continue
            setting = f"H={H} W={W} kernel={k} stride={s} padding={p} ceil_mode={ceil}"
            t = fastnn.tensor(x, requires_grad=True, device=device)
            out = F.avg_pool2d(t, k, s, p, ceil, count_include_pad)
            expected = avg_pool2d_ref(x, (k, k), (s, s), (p, p), ceil, count_include_pad)
            np.testing.assert_allclose(host(out), expected, rtol=1e-6, atol=1e-6, err_msg=setting)


def test_avg_pool_random_shapes_and_gradients(device):
    rng = np.random.default_rng(6)
    count = 60 if device == "cpu" else 20  # the device runs: a third of the shapes, to keep the suite quick
    for shape, k, s, p, _, ceil in random_configs(60, seed=8, dilation=False)[:count]:
        for count_include_pad, divisor in [(True, None), (False, None), (True, 3)]:
            setting = f"shape={shape} kernel={k} stride={s} padding={p} ceil_mode={ceil} " \
                      f"count_include_pad={count_include_pad} divisor_override={divisor}"
            x = rng.standard_normal(shape).astype(np.float32)
            t = fastnn.tensor(x, requires_grad=True, device=device)
            out = F.avg_pool2d(t, k, s, p, ceil, count_include_pad, divisor)
            expected = avg_pool2d_ref(x, k, s, p, ceil, count_include_pad, divisor)
            np.testing.assert_allclose(host(out), expected, rtol=1e-5, atol=1e-6, err_msg=setting)
            # The op is linear: its exact gradient is the reference's transposed map applied to g.
            g = rng.standard_normal(out.shape)
            out.backward(fastnn.tensor(g.astype(np.float32), device=device))
            A, _, _ = avg_pool2d_matrix_ref(shape[2], shape[3], k, s, p, ceil, count_include_pad, divisor)
            expected = (g.reshape(shape[0], shape[1], -1) @ A).reshape(shape)
            np.testing.assert_allclose(host(t.grad), expected, rtol=1e-5, atol=1e-5, err_msg=setting)


@pytest.mark.parametrize("shape,k,s,p,ceil,cip,divisor", [
    ((2, 3, 6, 5), 2, 2, 0, False, True, None),
    ((1, 2, 7, 7), 3, 2, 1, True, True, None),
    ((2, 2, 7, 6), (3, 2), (2, 1), (1, 1), True, False, None),
    ((1, 3, 5, 9), (1, 4), (3, 2), (0, 2), False, True, 5),
])
def test_avg_pool_gradient_finite_differences(shape, k, s, p, ceil, cip, divisor, device):
    pair = lambda v: v if isinstance(v, tuple) else (v, v)  # noqa: E731
    check_op([shape], lambda x: F.avg_pool2d(x, k, s, p, ceil, cip, divisor),
             lambda x: avg_pool2d_ref(x, pair(k), pair(s), pair(p), ceil, cip, divisor), device=device)


# ---- adaptive and global pooling ----------------------------------------------------------------

@pytest.mark.parametrize("shape,size", [
    ((2, 3, 7, 5), (1, 1)), ((2, 3, 7, 5), (3, 2)), ((1, 2, 7, 5), (7, 5)), ((1, 2, 4, 3), (9, 7)),
    ((3, 1, 17, 13), (5, 4)), ((1, 4, 1, 1), (2, 3)), ((2, 2, 6, 6), (4, 4)),
])
def test_adaptive_avg_pool(shape, size, device):
    check_op([shape], lambda x: F.adaptive_avg_pool2d(x, size), lambda x: adaptive_avg_pool2d_ref(x, size),
             device=device)


def test_adaptive_avg_pool_sizes_as_int_and_none(device):
    x = fastnn.randn(2, 3, 9, 6, device=device)
    assert F.adaptive_avg_pool2d(x, 4).shape == (2, 3, 4, 4)
    out = F.adaptive_avg_pool2d(x, (None, 2))
    assert out.shape == (2, 3, 9, 2)
    np.testing.assert_allclose(host(out), adaptive_avg_pool2d_ref(host(x), (9, 2)), rtol=1e-6, atol=1e-6)


def test_global_pooling(device):
    x = fastnn.randn(3, 4, 7, 5, device=device)
    mean = host(x).astype(np.float64).mean(axis=(2, 3), keepdims=True)
    np.testing.assert_allclose(host(nn.GlobalAvgPool2d()(x)), mean, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(host(nn.AdaptiveAvgPool2d(1)(x)), mean, rtol=1e-6, atol=1e-6)
    assert nn.GlobalAvgPool2d(flatten=True)(x).shape == (3, 4)
    np.testing.assert_array_equal(host(nn.GlobalMaxPool2d()(x)), host(x).max(axis=(2, 3), keepdims=True))
    assert nn.GlobalMaxPool2d(flatten=True)(x).shape == (3, 4)
    check_op([(2, 3, 5, 4)], lambda t: F.global_avg_pool2d(t, flatten=True),
             lambda t: t.mean(axis=(2, 3)), device=device)


# ---- 1-d, unbatched, layers ---------------------------------------------------------------------

def test_unbatched_and_1d_inputs(device):
    x = fastnn.randn(3, 9, 8, device=device)   # (C, H, W)
    np.testing.assert_array_equal(host(F.max_pool2d(x, 2)), host(F.max_pool2d(x.reshape(1, 3, 9, 8), 2))[0])
    out, idx = max_pool_and_indices(x, 3)
    assert out.shape == (3, 3, 2) and idx.shape == (3, 3, 2)
    seq = tie_free((2, 3, 11), seed=4)
    out1, idx1 = F.max_pool1d(fastnn.tensor(seq, device=device), 3, 2, 1, return_indices=True)
    ref, ref_idx = max_pool2d_ref(seq[:, :, None, :], (1, 3), (1, 2), (0, 1))
    np.testing.assert_array_equal(host(out1), ref[:, :, 0])
    np.testing.assert_array_equal(idx1, ref_idx[:, :, 0])
    check_op([(2, 3, 11)], lambda t: F.avg_pool1d(t, 4, 3, 2, True, False),
             lambda t: avg_pool2d_ref(t[:, :, None, :], (1, 4), (1, 3), (0, 2), True, False)[:, :, 0], device=device)
    assert F.avg_pool1d(fastnn.randn(3, 10, device=device), 2).shape == (3, 5)


def test_layers_repr_config_and_sequential():
    layers = [nn.MaxPool2d(2), nn.MaxPool2d((3, 2), stride=1, padding=(1, 0), dilation=2, ceil_mode=True),
              nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False, divisor_override=4),
              nn.AdaptiveAvgPool2d((2, None)), nn.GlobalAvgPool2d(flatten=True), nn.GlobalMaxPool2d(),
              nn.MaxPool1d(3, 2), nn.AvgPool1d(2)]
    for layer in layers:
        config = json.loads(json.dumps(layer.get_config()))
        assert repr(type(layer)(**config)) == repr(layer)
    assert repr(layers[0]) == "MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)"
    assert repr(layers[2]) == "AvgPool2d(kernel_size=3, stride=2, padding=1)"
    model = nn.Sequential(nn.MaxPool2d(2), nn.AvgPool2d(2), nn.Flatten())
    assert model(fastnn.randn(2, 3, 8, 8)).shape == (2, 12)
    out, idx = nn.MaxPool2d(2, return_indices=True)(fastnn.randn(1, 1, 4, 4))
    assert out.shape == (1, 1, 2, 2) and idx.dtype == np.int64


def test_pytorch_agrees(device):
    torch = torch_or_skip()
    tf = torch.nn.functional
    rng = np.random.default_rng(9)
    count = 25 if device == "cpu" else 8  # the device runs: a third of the shapes, to keep the suite quick
    for shape, k, s, p, d, ceil in random_configs(25, seed=10)[:count]:
        x = rng.standard_normal(shape).astype(np.float32)
        g = rng.standard_normal  # upstream gradients, drawn per op below
        t = fastnn.tensor(x, requires_grad=True, device=device)
        tt = torch.tensor(x, requires_grad=True)
        out, idx = max_pool_and_indices(t, k, s, p, d, ceil)
        t_out, t_idx = tf.max_pool2d(tt, k, s, p, d, ceil, return_indices=True)
        np.testing.assert_array_equal(host(out), t_out.detach().numpy())
        if idx is not None:
            np.testing.assert_array_equal(idx, t_idx.numpy())
        up = g(out.shape).astype(np.float32)
        out.backward(fastnn.tensor(up, device=device))
        t_out.backward(torch.from_numpy(up))
        np.testing.assert_allclose(host(t.grad), tt.grad.numpy(), rtol=1e-6, atol=1e-6)
        for cip in (True, False):
            t.grad, tt.grad = None, None
            out = F.avg_pool2d(t, k, s, p, ceil, cip)
            t_out = tf.avg_pool2d(tt, k, s, p, ceil, cip)
            np.testing.assert_allclose(host(out), t_out.detach().numpy(), rtol=1e-6, atol=1e-6)
            up = g(out.shape).astype(np.float32)
            out.backward(fastnn.tensor(up, device=device))
            t_out.backward(torch.from_numpy(up))
            np.testing.assert_allclose(host(t.grad), tt.grad.numpy(), rtol=1e-6, atol=1e-6)
        size = (int(rng.integers(1, 9)), int(rng.integers(1, 9)))
        np.testing.assert_allclose(host(F.adaptive_avg_pool2d(t, size)),
                                   tf.adaptive_avg_pool2d(tt, size).detach().numpy(), rtol=1e-6, atol=1e-6)


# ---- threads ----------------------------------------------------------------------------------

def test_identical_on_1_and_2_threads():
    rng = np.random.default_rng(11)
    x = rng.standard_normal((8, 32, 33, 31)).astype(np.float32)
    cases = {
        "max": lambda: _C.max_pool2d_forward(x, (3, 3), (2, 2), (1, 1), (1, 1), True),
        "avg": lambda: (_C.avg_pool2d_forward(x, (3, 2), (2, 1), (1, 1), True, False, 0),),
        "adaptive": lambda: (_C.adaptive_avg_pool2d_forward(x, (5, 7)),),
    }
    for name, run in cases.items():
        with fastnn.threads(1):
            one = run()
        with fastnn.threads(2):
            two = run()
        for a, b in zip(one, two):
            assert np.array_equal(a, b), name
    out, idx = _C.max_pool2d_forward(x, (3, 3), (2, 2), (1, 1), (1, 1), True)
    g = rng.standard_normal(out.shape).astype(np.float32)
    backwards = [
        lambda: _C.max_pool2d_backward(g, idx, (33, 31)),
        lambda: _C.avg_pool2d_backward(g, (33, 31), (3, 3), (2, 2), (1, 1), True, True, 0),
        lambda: _C.adaptive_avg_pool2d_backward(g, (33, 31)),
    ]
    for run in backwards:
        with fastnn.threads(1):
            one = run()
        with fastnn.threads(2):
            two = run()
        assert np.array_equal(one, two)


# ---- bad inputs -------------------------------------------------------------------------------

@pytest.mark.parametrize("call,error,words", [
    (lambda x: F.max_pool2d(x, 7), ValueError, ["empty", "(5, 5)", "kernel_size"]),       # kernel > padded input
    (lambda x: F.avg_pool2d(x, (6, 2)), ValueError, ["empty", "(6, 2)"]),
    (lambda x: F.max_pool2d(x, 2, padding=2), ValueError, ["padding", "half", "(2, 2)"]),
    (lambda x: F.avg_pool2d(x, 3, padding=(0, 2)), ValueError, ["padding", "(0, 2)", "(1, 1)"]),
    (lambda x: F.max_pool2d(x, 0), ValueError, ["kernel_size", ">= 1"]),
    (lambda x: F.max_pool2d(x, 2, stride=0), ValueError, ["stride"]),
    (lambda x: F.max_pool2d(x, 2, dilation=0), ValueError, ["dilation"]),
    (lambda x: F.max_pool2d(x, 2, padding=-1), ValueError, ["padding"]),
    (lambda x: F.max_pool2d(x, 2.5), TypeError, ["kernel_size"]),
    (lambda x: F.max_pool2d(x, True), TypeError, ["kernel_size"]),
    (lambda x: F.max_pool2d(x, (2, 2, 2)), ValueError, ["kernel_size", "pair"]),
    (lambda x: F.avg_pool2d(x, 2, divisor_override=0), ValueError, ["divisor_override"]),
    (lambda x: F.max_pool2d(x.reshape(2, 75), 2), ValueError, ["(N, C, H, W)", "(2, 75)"]),
    (lambda x: F.max_pool2d(x.reshape(2, 3, 5, 5, 1), 2), ValueError, ["(N, C, H, W)"]),
    (lambda x: F.max_pool1d(x, 2), ValueError, ["(N, C, L)"]),
    (lambda x: F.adaptive_avg_pool2d(x, 0), ValueError, ["output_size"]),
    (lambda x: F.adaptive_avg_pool2d(x, (1, 2, 3)), ValueError, ["output_size"]),
    (lambda x: F.max_pool2d(fastnn.zeros(2, 3, 0, 5, device=x.device), 1), ValueError, ["height and width"]),
])
def test_bad_arguments_raise_clear_errors(call, error, words, device):
    x = fastnn.randn(2, 3, 5, 5, device=device)
    with pytest.raises(error) as info:
        call(x)
    for word in words:
        assert word in str(info.value), str(info.value)
    assert "_forward" not in str(info.value)


def test_kernel_level_checks():
    x = np.zeros((2, 3, 5, 5), np.float32)
    with pytest.raises(TypeError, match="'input' must be float32"):
        _C.max_pool2d_forward(x.astype(np.float64), (2, 2), (2, 2), (0, 0), (1, 1))
    with pytest.raises(ValueError, match="C-contiguous"):
        _C.avg_pool2d_forward(np.zeros((2, 3, 5, 10), np.float32)[..., ::2], (2, 2), (2, 2), (0, 0))
    with pytest.raises(ValueError, match=r"must be 4-D \(N, C, H, W\), got shape \(3, 5, 5\)"):
        _C.adaptive_avg_pool2d_forward(x[0], (1, 1))
    out, idx = _C.max_pool2d_forward(x, (2, 2), (2, 2), (0, 0), (1, 1))
    with pytest.raises(ValueError, match="'indices' must have the shape of 'grad_output'"):
        _C.max_pool2d_backward(out, idx[:1], (5, 5))
    with pytest.raises(TypeError, match="int32"):
        _C.max_pool2d_backward(out, idx.astype(np.int64), (5, 5))
    with pytest.raises(ValueError, match=r"outside \[0, H \* W\)"):
        _C.max_pool2d_backward(out, idx + 100, (5, 5))
    with pytest.raises(ValueError, match=r"'grad_output' must have shape \(2, 3, 2, 2\)"):
        _C.avg_pool2d_backward(np.zeros((2, 3, 3, 3), np.float32), (5, 5), (2, 2), (2, 2), (0, 0))
    assert _C.max_pool2d_forward(np.zeros((0, 3, 5, 5), np.float32), (2, 2), (2, 2), (0, 0), (1, 1))[0].shape == \
        (0, 3, 2, 2)
