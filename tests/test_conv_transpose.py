"""Transposed convolution: _C.conv_transpose2d_forward/backward, F.conv_transpose2d/1d and
nn.ConvTranspose2d/1d against the float64 scatter reference (tests/reference.py) on random shapes
with every stride/padding/output_padding/dilation/groups setting, finite-difference gradients, the
adjoint identity with conv2d, PyTorch as an extra oracle, state dicts and bad arguments."""
import numpy as np
import pytest

import fastnn
import fastnn.nn as nn
import fastnn.nn.functional as F
from fastnn import _C
from helpers import assert_kernel_results, check_op
from reference import conv_transpose2d_reference, conv_transpose2d_reference_grads


def _random_case(rng):
    """(N, C_in, H, W, C_out, R, S, stride, padding (4 sides), output_padding, dilation, groups, bias)
    with a non-empty output: batch 1-4, channels 1-8, input sizes 1-17, kernels 1-7."""
    while True:
        groups = int(rng.choice([1, 1, 1, 2, 3, 4]))
        C = groups * int(rng.integers(1, 8 // groups + 1))
        K = groups * int(rng.integers(1, 8 // groups + 1))
        N = int(rng.integers(1, 5))
        H, W = int(rng.integers(1, 18)), int(rng.integers(1, 18))
        R, S = int(rng.integers(1, 8)), int(rng.integers(1, 8))
        stride = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        dilation = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        out_pad = tuple(int(rng.integers(0, s)) for s in stride)  # the kernel's own range: < stride
        padding = tuple(int(p) for p in rng.integers(0, 4, size=4))
        out_h = (H - 1) * stride[0] - padding[0] - padding[1] + dilation[0] * (R - 1) + out_pad[0] + 1
        out_w = (W - 1) * stride[1] - padding[2] - padding[3] + dilation[1] * (S - 1) + out_pad[1] + 1
        if out_h >= 1 and out_w >= 1:
            return N, C, H, W, K, R, S, stride, padding, out_pad, dilation, groups, bool(rng.random() < 0.8)


def _compare(case, seed, tol=2e-5):
    """Kernel forward and gradients against the float64 reference for one case."""
    N, C, H, W, K, R, S, stride, padding, out_pad, dilation, groups, bias = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W), dtype=np.float32)
    w = rng.standard_normal((C, K // groups, R, S), dtype=np.float32)
    b = rng.standard_normal(K, dtype=np.float32) if bias else None
    expected = conv_transpose2d_reference(x, w, b, stride, padding, out_pad, dilation, groups)
    out = _C.conv_transpose2d_forward(x, w, b, stride, padding, out_pad, dilation, groups)
    gy = rng.standard_normal(expected.shape, dtype=np.float32)
    gx, gw, gb = _C.conv_transpose2d_backward(gy, x, w, stride, padding, out_pad, dilation, groups,
                                              (True, True, bias))
    ex, ew, eb = conv_transpose2d_reference_grads(x, w, gy, stride, padding, out_pad, dilation, groups)
    scale = max(C // groups, K // groups) * R * S  # terms per sum: the rounding error grows with it
    assert_kernel_results((("out", out, expected), ("grad_x", gx, ex), ("grad_w", gw, ew),
                           ("grad_b", gb, eb if bias else None)), scale, case, tol)


def test_random_shapes_forward_and_gradients():
    rng = np.random.default_rng(2026)
    for i in range(60):
        _compare(_random_case(rng), seed=i)


@pytest.mark.parametrize("case", [
    # N, C, H, W, K, R, S, stride, padding, output_padding, dilation, groups, bias
    (1, 1, 1, 1, 1, 1, 1, (1, 1), 0, (0, 0), (1, 1), 1, True),          # all ones
    (3, 17, 3, 5, 1, 3, 3, (2, 2), 1, (1, 1), (1, 1), 1, True),          # odd channels, output_padding
    (2, 8, 7, 7, 16, 4, 4, (2, 2), 1, (0, 0), (1, 1), 1, True),          # the DCGAN upsampling block
    (2, 6, 5, 4, 6, 3, 3, (1, 1), 1, (0, 0), (1, 1), 6, False),          # depthwise (adjoint of depthwise)
    (2, 4, 6, 6, 8, 1, 1, (1, 1), 0, (0, 0), (1, 1), 2, True),           # 1x1 (adjoint of the pointwise path)
    (1, 65, 2, 3, 3, 2, 2, (3, 1), (0, 1, 2, 0), (2, 0), (2, 1), 1, True),  # 65 channels, per-side padding
])
def test_named_cases(case):
    _compare(case, seed=7)


def test_adjoint_of_conv2d(device):
    """<conv2d(y, w), x> == <y, conv_transpose2d(x, w)> for the same weight: the defining property.
    output_padding brings the transposed output back to the conv2d's input size exactly."""
    rng = np.random.default_rng(3)
    size = (13, 11)
    for stride, padding, dilation, groups in (((2, 1), (1, 2), (1, 2), 1), ((3, 3), (0, 0), (1, 1), 2),
                                              ((1, 1), (2, 2), (2, 2), 4)):
        w = rng.standard_normal((4, 8 // groups, 3, 3)).astype(np.float32)
        y = rng.standard_normal((2, 8) + size).astype(np.float32)
        wt, yt = fastnn.tensor(w, device=device), fastnn.tensor(y, device=device)
        conv = F.conv2d(yt, wt, None, stride, padding, dilation, groups).cpu().numpy().astype(np.float64)
        x = rng.standard_normal(conv.shape).astype(np.float32)
        out_pad = tuple((n + 2 * p - d * 2 - 1) % s for n, p, d, s in zip(size, padding, dilation, stride))
        back = F.conv_transpose2d(fastnn.tensor(x, device=device), wt, None, stride, padding, out_pad, groups,
                                  dilation).cpu().numpy().astype(np.float64)
        assert back.shape == y.shape
        lhs, rhs = float(np.sum(conv * x)), float(np.sum(y * back))
        assert abs(lhs - rhs) <= 1e-5 * float(np.sum(np.abs(conv * x))), (lhs, rhs)


def test_bitwise_equal_at_1_and_2_threads():
    rng = np.random.default_rng(11)
    x = rng.standard_normal((8, 16, 9, 9), dtype=np.float32)
    w = rng.standard_normal((16, 8, 4, 4), dtype=np.float32)
    gy = rng.standard_normal((8, 8, 18, 18), dtype=np.float32)
    results = []
    for threads in (1, 2):
        with fastnn.threads(threads):
            out = _C.conv_transpose2d_forward(x, w, None, 2, 1)
            results.append((out,) + _C.conv_transpose2d_backward(gy, x, w, 2, 1))
    for one, two in zip(*results):
        np.testing.assert_array_equal(one, two)


# ---------------------------------------------------------------------------------------------
# the autograd ops

def _ref_fn(stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    return lambda x, w, b=None: conv_transpose2d_reference(x, w, b, stride, padding, output_padding, dilation, groups)


@pytest.mark.parametrize("shapes,kwargs", [
    (((2, 2, 3, 4), (2, 3, 3, 2), (3,)), dict(stride=2, padding=1, output_padding=1)),
    (((1, 4, 3, 3), (4, 1, 2, 3), (2,)), dict(stride=(2, 1), padding=(0, 1), dilation=(1, 2), groups=2)),
    (((2, 3, 3, 3), (3, 1, 3, 3), (3,)), dict(padding=1, groups=3)),                          # depthwise
    (((2, 3, 2, 2), (3, 2, 1, 1), (2,)), dict()),                                              # 1x1
    (((1, 2, 3, 2), (2, 2, 2, 2), (2,)), dict(stride=1, dilation=3, output_padding=(2, 1))),   # op >= stride
])
def test_conv_transpose2d_finite_difference_gradients(shapes, kwargs, device):
    check_op(shapes, lambda x, w, b: F.conv_transpose2d(x, w, b, **kwargs), _ref_fn(**kwargs), atol=1e-5, rtol=1e-4,
             device=device)


def test_conv_transpose1d_finite_difference(device):
    def ref(x, w, b):
        return conv_transpose2d_reference(x[:, :, None], w[:, :, None], b, (1, 3), (0, 0, 1, 1), (0, 2), (1, 2),
                                          2)[:, :, 0]
    check_op([(2, 4, 5), (4, 3, 3), (6,)],
             lambda x, w, b: F.conv_transpose1d(x, w, b, stride=3, padding=1, output_padding=2, groups=2, dilation=2),
             ref, atol=1e-5, rtol=1e-4, device=device)


def test_unbatched_and_noncontiguous_inputs(device):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((5, 6, 3), dtype=np.float32).transpose(2, 0, 1)  # (3, 5, 6) strided
    w = rng.standard_normal((3, 4, 3, 3), dtype=np.float32)
    t = fastnn.tensor(x, requires_grad=True, device=device)
    out = F.conv_transpose2d(t, fastnn.tensor(w, device=device), stride=2)
    assert out.shape == (4, 11, 13)
    np.testing.assert_allclose(out.detach().cpu().numpy(), conv_transpose2d_reference(x[None], w, stride=2)[0],
                               atol=1e-4)
    out.sum().backward()
    assert t.grad.shape == x.shape and t.grad.device == t.device
    w1 = rng.standard_normal((5, 2, 4), dtype=np.float32)
    assert F.conv_transpose1d(fastnn.tensor(x[0], device=device), fastnn.tensor(w1, device=device)).shape == (2, 9)


# ---------------------------------------------------------------------------------------------
# layers

def test_layer_settings_init_output_size_and_config():
    layer = nn.ConvTranspose2d(4, 8, 3, stride=2, padding=1, output_padding=1, groups=2)
    assert layer.weight.shape == (4, 4, 3, 3) and layer.bias.shape == (8,)
    assert repr(layer) == ("ConvTranspose2d(4, 8, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), "
                           "output_padding=(1, 1), groups=2)")
    bound = 1 / np.sqrt(4 * 9)  # PyTorch: fan_in from weight.shape[1:] = out_channels/groups * kernel
    assert np.abs(layer.weight.detach().numpy()).max() <= bound and np.abs(layer.bias.detach().numpy()).max() <= bound
    assert np.abs(layer.weight.detach().numpy()).max() > 0.5 * bound
    assert layer(fastnn.randn(2, 4, 7, 5)).shape == (2, 8, 14, 10)
    clone = nn.ConvTranspose2d(**layer.get_config())
    assert clone.get_config() == layer.get_config()
    up = nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1)
    x = fastnn.randn(1, 3, 7, 7)
    assert up(x).shape == (1, 2, 13, 13)
    assert up(x, output_size=(14, 14)).shape == (1, 2, 14, 14)  # output_padding chosen to match
    assert up(x, output_size=(1, 2, 13, 14)).shape == (1, 2, 13, 14)
    with pytest.raises(ValueError, match=r"output_size \(15, 14\) is not reachable .* \[13, 14\]"):
        up(x, output_size=(15, 14))
    assert nn.ConvTranspose1d(4, 6, 3, stride=2)(fastnn.randn(2, 4, 10)).shape == (2, 6, 21)


def test_layer_trains_and_saves(tmp_path, device):
    model = nn.Sequential(nn.ConvTranspose2d(2, 3, 4, stride=2, padding=1), nn.Sigmoid()).to(device)
    x = fastnn.randn(4, 2, 5, 5, device=device)
    layer = model[0]
    layer(x).sum().backward()
    np.testing.assert_allclose(layer.bias.grad.cpu().numpy(), np.full(3, 4 * 10 * 10), rtol=1e-6)
    assert layer.weight.grad.shape == (2, 3, 4, 4)
    path = tmp_path / "up.fnn"
    model.save(path)
    loaded = nn.load_model(path).to(device)
    assert isinstance(loaded[0], nn.ConvTranspose2d) and loaded[0].get_config() == layer.get_config()
    np.testing.assert_array_equal(loaded(x).detach().cpu().numpy(), model(x).detach().cpu().numpy())


@pytest.mark.parametrize("args,kwargs,error,match", [
    ((4, 6, 3), dict(groups=4), ValueError, "out_channels=6 must be divisible by groups=4"),
    ((3, 6, 3), dict(groups=2), ValueError, "in_channels=3 must be divisible by groups=2"),
    ((3, 6, 3), dict(stride=2, output_padding=2), ValueError, "output_padding must be smaller than stride or dilation"),
    ((3, 6, 3), dict(padding="same"), TypeError, "padding must be an int"),
    ((3, 6, 3), dict(padding_mode="reflect"), ValueError, "only padding_mode='zeros'"),
    ((3, 6, 0), dict(), ValueError, "kernel_size must be positive"),
    ((3, 6, 3), dict(stride=0), ValueError, "stride must be positive"),
])
def test_layer_bad_arguments(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        nn.ConvTranspose2d(*args, **kwargs)


@pytest.mark.parametrize("x_shape,w_shape,kwargs,error,match", [
    ((2, 3, 4, 4), (4, 2, 3, 3), {}, ValueError, r"weight must have shape \(in_channels, out_channels/groups, "
                                                 r"\.\.\.\) with in_channels = 3"),
    ((2, 3, 4, 4), (3, 2, 3, 3), dict(groups=2), ValueError, "3 channels .* not divisible by groups=2"),
    ((2, 3, 4, 4), (3, 2, 3, 3), dict(output_padding=1), ValueError, "output_padding must be smaller than stride"),
    ((2, 3, 1, 1), (3, 2, 1, 1), dict(padding=1), ValueError, "output size would be -1x-1"),
    ((2, 3, 4, 4), (3, 2, 3, 3), dict(padding="same"), ValueError, "string padding is not defined"),
    ((3, 4, 4), (3, 2, 3), {}, ValueError, r"weight must be 4-D \(in_channels, out_channels/groups, kH, kW\)"),
    ((4, 4), (3, 2, 3, 3), {}, ValueError, r"expected input of shape \(N, C_in, H, W\)"),
])
def test_functional_bad_inputs(x_shape, w_shape, kwargs, error, match):
    with pytest.raises(error, match=match):
        F.conv_transpose2d(np.zeros(x_shape, np.float32), np.zeros(w_shape, np.float32), **kwargs)


def test_bias_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"bias must have shape \(4,\) \(out_channels\)"):
        F.conv_transpose2d(np.zeros((1, 2, 3, 3), np.float32), np.zeros((2, 2, 3, 3), np.float32),
                           np.zeros(2, np.float32), groups=2)


@pytest.mark.parametrize("call,error,match", [
    (lambda x, w: _C.conv_transpose2d_forward(x.astype(np.float64), w), TypeError, "'input' must be float32"),
    (lambda x, w: _C.conv_transpose2d_forward(x[:, :, ::2], w), ValueError, "must be C-contiguous"),
    (lambda x, w: _C.conv_transpose2d_forward(x, w[:2]), ValueError, "in_channels = 3"),
    (lambda x, w: _C.conv_transpose2d_forward(x, w, None, 2, 0, 2), ValueError,
     r"output_padding must be non-negative and smaller than the stride \(2 along H\), got 2"),
    (lambda x, w: _C.conv_transpose2d_forward(x, w, None, 2**39), ValueError, "too large"),
    (lambda x, w: _C.conv_transpose2d_forward(x, w, np.zeros(3, np.float32)), ValueError, "bias"),
    (lambda x, w: _C.conv_transpose2d_backward(np.zeros((2, 4, 6, 6), np.float32), x, w), ValueError,
     r"'grad_out' must have the output's shape \(N, C_out, H_out, W_out\) = \(2, 4, 8, 8\), got \(2, 4, 6, 6\)"),
])
def test_binding_errors(call, error, match):
    x = np.zeros((2, 3, 6, 6), np.float32)
    w = np.zeros((3, 4, 3, 3), np.float32)
    with pytest.raises(error, match=match):
        call(x, w)


def test_empty_batch(device):
    out = F.conv_transpose2d(fastnn.zeros(0, 3, 4, 4, device=device), fastnn.ones(3, 2, 3, 3, device=device),
                             fastnn.ones(2, device=device))
    assert out.shape == (0, 2, 6, 6) and out.is_cuda == (device == "cuda")
    gx, gw, gb = _C.conv_transpose2d_backward(np.zeros((0, 2, 6, 6), np.float32), np.zeros((0, 3, 4, 4), np.float32),
                                              np.ones((3, 2, 3, 3), np.float32))
    assert gx.shape == (0, 3, 4, 4) and not gw.any() and not gb.any()


# ---------------------------------------------------------------------------------------------
# PyTorch as an extra oracle

@pytest.fixture(scope="module")
def torch():
    torch = pytest.importorskip("torch", reason="torch not installed")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield torch
    torch.set_num_threads(threads)


def test_against_pytorch_random_shapes(torch, device):
    rng = np.random.default_rng(5)
    for _ in range(30 if device == "cpu" else 10):  # the device runs: a third of the shapes, to keep the suite quick
        N, C, H, W, K, R, S, stride, padding, _, dilation, groups, _ = _random_case(rng)
        padding = (padding[0], padding[2])  # torch pads symmetrically
        out_pad = tuple(int(rng.integers(0, max(s, d))) for s, d in zip(stride, dilation))  # torch's full range
        sizes = [(n - 1) * s - 2 * p + d * (k - 1) + o + 1
                 for n, s, p, d, k, o in zip((H, W), stride, padding, dilation, (R, S), out_pad)]
        if min(sizes) < 1:
            continue
        x = rng.standard_normal((N, C, H, W), dtype=np.float32)
        w = rng.standard_normal((C, K // groups, R, S), dtype=np.float32)
        b = rng.standard_normal(K, dtype=np.float32)
        tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
        ty = torch.nn.functional.conv_transpose2d(tx, tw, tb, stride, padding, out_pad, groups, dilation)
        gy = rng.standard_normal(tuple(ty.shape), dtype=np.float32)
        ty.backward(torch.tensor(gy))
        fx, fw, fb = (fastnn.tensor(a, requires_grad=True, device=device) for a in (x, w, b))
        fy = F.conv_transpose2d(fx, fw, fb, stride, padding, out_pad, groups, dilation)
        fy.backward(fastnn.tensor(gy, device=device))
        for got, want in ((fy, ty), (fx.grad, tx.grad), (fw.grad, tw.grad), (fb.grad, tb.grad)):
            want = want.detach().numpy()
            np.testing.assert_allclose(got.detach().cpu().numpy(), want,
                                       atol=1e-4 * max(1.0, float(np.abs(want).max())), rtol=1e-4)


def test_pytorch_state_dict_loads(torch, device):
    torch.manual_seed(0)
    for theirs, ours, shape in (
            (torch.nn.ConvTranspose2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 0), output_padding=(1, 0), groups=2),
             nn.ConvTranspose2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 0), output_padding=(1, 0), groups=2),
             (3, 4, 5, 6)),
            (torch.nn.ConvTranspose1d(4, 8, 3, stride=2, bias=False), nn.ConvTranspose1d(4, 8, 3, stride=2, bias=False),
             (2, 4, 11))):
        ours.to(device).load_state_dict(theirs.state_dict())
        x = np.random.default_rng(1).standard_normal(shape, dtype=np.float32)
        want = theirs(torch.tensor(x)).detach().numpy()
        np.testing.assert_allclose(ours(fastnn.tensor(x, device=device)).detach().cpu().numpy(), want, atol=1e-5,
                                   rtol=1e-5)
        assert list(ours.state_dict().keys()) == list(theirs.state_dict().keys())
