"""Batch normalization (csrc/cpu/norm.cpp, fastnn.ops.norm, nn.BatchNorm1d/2d) and Dropout2d,
against float64 numpy references, with PyTorch as an extra oracle. The value, gradient and running
statistics tests run on every device (the conftest `device` fixture); the ISA, thread and kernel
argument tests are about the CPU kernels."""
import json

import numpy as np
import pytest

import fastnn
import fastnn.nn.functional as F
from fastnn import _C, nn
from helpers import check_op, host
from reference import batch_norm_ref, batch_norm_train_ref, batch_stats_ref, running_stats_ref


def torch_or_skip():
    return pytest.importorskip("torch", reason="torch not installed")


SHAPES = [(2, 1), (7, 5), (64, 3), (2, 3, 1), (3, 4, 7), (1, 2, 13), (2, 3, 5, 5), (1, 4, 3, 2), (4, 2, 1, 1),
          (3, 8, 17, 11)]


def data(shape, seed, mean=0.0, scale=1.0):
    rng = np.random.default_rng(seed)
    return (mean + scale * rng.standard_normal(shape)).astype(np.float32)


def on(device, array):
    """An array as batch_norm takes it on `device`: the numpy array itself on the CPU (running
    statistics are updated in place there), a tensor holding a copy on a GPU; None as it is."""
    return array if device == "cpu" or array is None else fastnn.tensor(array, device=device)


# ---- training forward and running statistics ----------------------------------------------------

@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("affine", [True, False])
def test_training_forward_and_running_update(shape, affine, device):
    C = shape[1]
    x = data(shape, seed=sum(shape), mean=1.5, scale=2.0)
    w = data((C,), 1) if affine else None
    b = data((C,), 2) if affine else None
    rm0, rv0 = data((C,), 3), np.abs(data((C,), 4)) + 0.5
    rm, rv = on(device, rm0.copy()), on(device, rv0.copy())
    x_in = fastnn.tensor(x, device=device)
    y = F.batch_norm(x_in, rm, rv, on(device, w), on(device, b), training=True, momentum=0.3, eps=1e-3)
    assert y.device == x_in.device
    np.testing.assert_allclose(host(y), batch_norm_train_ref(x, w, b, eps=1e-3), rtol=1e-5, atol=2e-5)
    expected_mean, expected_var = running_stats_ref(rm0.astype(np.float64), rv0.astype(np.float64), x, 0.3)
    np.testing.assert_allclose(host(rm), expected_mean, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(host(rv), expected_var, rtol=1e-5, atol=1e-6)


def test_statistics_accurate_for_a_large_mean(device):
    x = data((16, 3, 9, 9), seed=5, mean=1e4, scale=1.0)
    rm, rv = on(device, np.zeros(3, np.float32)), on(device, np.ones(3, np.float32))
    y = F.batch_norm(fastnn.tensor(x, device=device), rm, rv, training=True, momentum=1.0)
    mean, var = batch_stats_ref(x)
    np.testing.assert_allclose(host(rm), mean, rtol=1e-7)
    np.testing.assert_allclose(host(rv), var * x[:, 0].size / (x[:, 0].size - 1), rtol=1e-5)
    # The float32 mean is within half an ulp (5e-4 at 1e4) of the exact one, and so is y.
    np.testing.assert_allclose(host(y), batch_norm_ref(x, mean, var), rtol=1e-3, atol=2e-3)


def test_module_running_statistics_over_several_steps(device):
    for momentum in (0.1, 0.5, None):
        bn = nn.BatchNorm2d(3, momentum=momentum).to(device)
        mean, var = np.zeros(3), np.ones(3)
        for step in range(1, 5):
            x = data((4, 3, 5, 6), seed=step, mean=step, scale=step)
            bn(fastnn.tensor(x, device=device))
            factor = 1.0 / step if momentum is None else momentum  # None: the cumulative average
            mean, var = running_stats_ref(mean, var, x, factor)
            assert int(bn.num_batches_tracked) == step
        np.testing.assert_allclose(host(bn.running_mean), mean, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(host(bn.running_var), var, rtol=1e-5, atol=1e-6)


def test_running_statistics_match_pytorch(device):
    torch = torch_or_skip()
    for momentum in (0.1, None):
        ours, theirs = nn.BatchNorm1d(5, momentum=momentum, eps=1e-3), torch.nn.BatchNorm1d(5, momentum=momentum,
                                                                                               eps=1e-3)
        ours.to(device)
        for step in range(3):
            x = data((6, 5, 4), seed=10 + step, mean=2.0, scale=3.0)
            y = ours(fastnn.tensor(x, device=device))
            t = theirs(torch.from_numpy(x))
            np.testing.assert_allclose(host(y), t.detach().numpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(host(ours.running_mean), theirs.running_mean.numpy(), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(host(ours.running_var), theirs.running_var.numpy(), rtol=1e-6, atol=1e-6)
        assert int(ours.num_batches_tracked) == int(theirs.num_batches_tracked) == 3


# ---- eval mode and train/eval semantics --------------------------------------------------------

def test_eval_uses_running_statistics_and_leaves_them(device):
    bn = nn.BatchNorm2d(4, eps=1e-2)
    bn.weight.data[...] = data((4,), 20)  # (set on the host; the training steps below do not change them)
    bn.bias.data[...] = data((4,), 21)
    bn.to(device)
    for step in range(3):
        bn(fastnn.tensor(data((5, 4, 3, 3), seed=step, mean=3.0, scale=2.0), device=device))
    state = {k: v.copy() for k, v in bn.state_dict().items()}
    bn.eval()
    x = data((2, 4, 3, 3), seed=30)
    y = bn(fastnn.tensor(x, device=device))
    expected = batch_norm_ref(x, state["running_mean"], state["running_var"], state["weight"], state["bias"], 1e-2)
    np.testing.assert_allclose(host(y), expected, rtol=1e-5, atol=1e-5)
    for key, value in bn.state_dict().items():
        assert np.array_equal(value, state[key]), key
    # Each sample is normalized on its own in eval mode: the batch does not matter.
    np.testing.assert_allclose(host(bn(fastnn.tensor(x[:1], device=device))), host(y)[:1], rtol=1e-6, atol=1e-6)
    # Back in training mode, the batch's own statistics are used again.
    bn.train()
    expected = batch_norm_train_ref(x, state["weight"], state["bias"], 1e-2)
    np.testing.assert_allclose(host(bn(fastnn.tensor(x, device=device))), expected, rtol=1e-5, atol=1e-5)


def test_without_running_statistics(device):
    bn = nn.BatchNorm1d(3, affine=False, track_running_stats=False).to(device)
    assert bn.running_mean is None and list(bn.state_dict()) == [] and bn.weight is None
    x = data((8, 3), seed=3, mean=1.0)
    bn.eval()   # no running statistics: the batch's are used in both modes
    np.testing.assert_allclose(host(bn(fastnn.tensor(x, device=device))), batch_norm_train_ref(x), rtol=1e-5,
                               atol=1e-5)
    assert bn(fastnn.tensor(x, device=device)).shape == (8, 3)


def test_eps_changes_the_result_as_the_reference(device):
    x = data((4, 2, 3), seed=9, scale=0.1)
    for eps in (1e-5, 1e-1, 0.0):
        y = F.batch_norm(fastnn.tensor(x, device=device), None, None, training=True, eps=eps)
        np.testing.assert_allclose(host(y), batch_norm_train_ref(x, eps=eps), rtol=1e-5, atol=1e-5)


# ---- gradients -------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(5, 3), (2, 1), (3, 4, 5), (2, 3, 3, 4), (1, 2, 1, 7)])
def test_training_gradients(shape, device):
    C = shape[1]
    check_op([shape, (C,), (C,)], lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
             lambda x, w, b: batch_norm_train_ref(x, w, b), atol=2e-5, rtol=1e-4, grad_atol=2e-4, grad_rtol=2e-3,
             device=device)
    check_op([shape], lambda x: F.batch_norm(x, None, None, training=True, eps=1e-2),
             lambda x: batch_norm_train_ref(x, eps=1e-2), atol=2e-5, rtol=1e-4, grad_atol=2e-4, grad_rtol=2e-3,
             device=device)


@pytest.mark.parametrize("shape", [(5, 3), (3, 3, 5), (2, 3, 3, 4)])
def test_eval_gradients(shape, device):
    C = shape[1]
    rm, rv = data((C,), 1), np.abs(data((C,), 2)) + 0.2
    running = on(device, rm), on(device, rv)
    check_op([shape, (C,), (C,)], lambda x, w, b: F.batch_norm(x, *running, w, b, training=False),
             lambda x, w, b: batch_norm_ref(x, rm.astype(np.float64), rv.astype(np.float64), w, b), atol=2e-5,
             rtol=1e-4, device=device)


def test_module_gradients_reach_parameters(device):
    bn = nn.BatchNorm2d(3).to(device)
    x = fastnn.tensor(data((4, 3, 5, 5), seed=1), requires_grad=True, device=device)
    (bn(x) * fastnn.tensor(data((4, 3, 5, 5), seed=2), device=device)).sum().backward()
    assert bn.weight.grad.shape == (3,) and bn.bias.grad.shape == (3,) and x.grad.shape == (4, 3, 5, 5)
    assert bn.weight.grad.device == bn.bias.grad.device == x.grad.device == x.device


def test_pytorch_agrees_in_train_and_eval(device):
    torch = torch_or_skip()
    tf = torch.nn.functional
    for shape in [(6, 4), (3, 4, 9), (5, 4, 7, 6)]:
        for training in (True, False):
            x, g = data(shape, seed=1, mean=0.5, scale=2.0), data(shape, seed=2)
            w, b = data((4,), 3), data((4,), 4)
            rm, rv = data((4,), 5), np.abs(data((4,), 6)) + 0.5
            tx, tw, tb = (torch.tensor(v, requires_grad=True) for v in (x, w, b))
            trm, trv = torch.tensor(rm), torch.tensor(rv)
            t_out = tf.batch_norm(tx, trm, trv, tw, tb, training, 0.2, 1e-4)
            t_out.backward(torch.from_numpy(g))
            fx, fw, fb = (fastnn.tensor(v, requires_grad=True, device=device) for v in (x, w, b))
            rm, rv = on(device, rm), on(device, rv)
            out = F.batch_norm(fx, rm, rv, fw, fb, training, 0.2, 1e-4)
            out.backward(fastnn.tensor(g, device=device))
            tol = dict(rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(host(out), t_out.detach().numpy(), **tol)
            np.testing.assert_allclose(host(fx.grad), tx.grad.numpy(), **tol)
            np.testing.assert_allclose(host(fw.grad), tw.grad.numpy(), rtol=1e-5, atol=1e-4)
            np.testing.assert_allclose(host(fb.grad), tb.grad.numpy(), rtol=1e-5, atol=1e-4)
            np.testing.assert_allclose(host(rm), trm.numpy(), **tol)
            np.testing.assert_allclose(host(rv), trv.numpy(), **tol)


# ---- state dict, repr, config ------------------------------------------------------------------

def test_pytorch_state_dict_loads_both_ways():
    torch = torch_or_skip()
    theirs = torch.nn.BatchNorm2d(6)
    theirs(torch.randn(4, 6, 3, 3) * 3 + 1)
    with torch.no_grad():
        theirs.weight.uniform_(0.5, 1.5)
        theirs.bias.uniform_(-1, 1)
    ours = nn.BatchNorm2d(6)
    ours.load_state_dict(theirs.state_dict())
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert int(ours.num_batches_tracked) == 1
    theirs.eval()
    ours.eval()
    x = data((2, 6, 4, 4), seed=3)
    np.testing.assert_allclose(ours(fastnn.tensor(x)).detach().numpy(), theirs(torch.from_numpy(x)).detach().numpy(),
                               rtol=1e-5, atol=1e-5)
    back = torch.nn.BatchNorm2d(6)
    back.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in ours.state_dict().items()})
    assert torch.equal(back.running_var, theirs.running_var)


def test_repr_and_config():
    bn = nn.BatchNorm1d(7, eps=1e-3, momentum=None, affine=False)
    assert repr(bn) == "BatchNorm1d(7, eps=0.001, momentum=None, affine=False, track_running_stats=True)"
    rebuilt = nn.BatchNorm1d(**json.loads(json.dumps(bn.get_config())))
    assert repr(rebuilt) == repr(bn)
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU())
    assert list(model.state_dict()) == ["0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean",
                                        "1.running_var", "1.num_batches_tracked"]
    assert model(fastnn.randn(5, 4)).shape == (5, 6)


# ---- every ISA build of the element loops ---------------------------------------------------------

@pytest.mark.parametrize("shape", [(37, 19), (5, 3, 29), (3, 5, 4, 7)])
def test_every_isa_matches_the_reference(isa, shape):
    C = shape[1]
    x, g = data(shape, seed=1, mean=2.0, scale=3.0), data(shape, seed=2)
    w, b = data((C,), 3), data((C,), 4)
    rm, rv = np.zeros(C, np.float32), np.ones(C, np.float32)
    y, mean, invstd = _C.batch_norm_forward(x, w, b, rm, rv, training=True, momentum=0.5, eps=1e-5)
    np.testing.assert_allclose(y, batch_norm_train_ref(x, w, b), rtol=1e-5, atol=2e-5)
    expected_mean, expected_var = running_stats_ref(np.zeros(C), np.ones(C), x, 0.5)
    np.testing.assert_allclose(rm, expected_mean, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(rv, expected_var, rtol=1e-6, atol=1e-6)
    gx, gw, gb = _C.batch_norm_backward(g, x, mean, invstd, w, training=True)
    # The exact gradients of the float64 reference, written out.
    axes = (0,) + tuple(range(2, x.ndim))
    s = (1, C) + (1,) * (x.ndim - 2)
    m64, v64 = batch_stats_ref(x)
    xhat = (x - m64.reshape(s)) / np.sqrt(v64.reshape(s) + 1e-5)
    g64 = g.astype(np.float64)
    expected_gb, expected_gw = g64.sum(axis=axes), (g64 * xhat).sum(axis=axes)
    m = x.size // C
    expected_gx = (w.reshape(s) / np.sqrt(v64.reshape(s) + 1e-5)) * (
        g64 - expected_gb.reshape(s) / m - xhat * expected_gw.reshape(s) / m)
    np.testing.assert_allclose(gb, expected_gb, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(gw, expected_gw, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(gx, expected_gx, rtol=1e-4, atol=1e-5)
    y_eval, _, invstd_eval = _C.batch_norm_forward(x, w, b, rm, rv, training=False, momentum=0.5, eps=1e-5)
    np.testing.assert_allclose(y_eval, batch_norm_ref(x, rm, rv, w, b), rtol=1e-5, atol=2e-5)
    gx_eval = _C.batch_norm_backward(g, x, rm, invstd_eval, w, training=False)[0]
    np.testing.assert_allclose(gx_eval, g64 * (w / np.sqrt(rv.astype(np.float64) + 1e-5)).reshape(s),
                               rtol=1e-5, atol=1e-6)


# ---- threads ----------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(16, 32, 24, 24), (2048, 96)])
def test_identical_on_1_and_2_threads(shape, isa):
    x, g = data(shape, seed=1, mean=1.0), data(shape, seed=2)
    C = shape[1]
    w, b = data((C,), 3), data((C,), 4)

    def run(training):
        rm, rv = np.zeros(C, np.float32), np.ones(C, np.float32)
        y, mean, invstd = _C.batch_norm_forward(x, w, b, rm, rv, training=training, momentum=0.1, eps=1e-5)
        return (y, mean, invstd, rm, rv) + _C.batch_norm_backward(g, x, mean, invstd, w, training=training)

    for training in (True, False):
        with fastnn.threads(1):
            one = run(training)
        with fastnn.threads(2):
            two = run(training)
        for a, b2 in zip(one, two):
            assert np.array_equal(a.view(np.uint32), b2.view(np.uint32))


# ---- bad inputs -------------------------------------------------------------------------------

def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match=r"BatchNorm2d: expected input of shape \(N, C, H, W\), got 3-D"):
        nn.BatchNorm2d(3)(fastnn.randn(2, 3, 4))
    with pytest.raises(ValueError, match=r"BatchNorm1d: expected input of shape \(N, C\) or \(N, C, L\)"):
        nn.BatchNorm1d(3)(fastnn.randn(2, 3, 4, 4))
    with pytest.raises(ValueError, match="expected 3 channels"):
        nn.BatchNorm1d(3)(fastnn.randn(2, 4))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        nn.BatchNorm1d(3)(fastnn.randn(1, 3))
    nn.BatchNorm1d(3).eval()(fastnn.randn(1, 3))   # fine in eval mode
    with pytest.raises(ValueError, match="running_mean and running_var must be given"):
        F.batch_norm(fastnn.randn(2, 3), None, None, training=False)
    with pytest.raises(ValueError, match=r"'running_mean' must have shape \(3,\), got shape \(4,\)"):
        F.batch_norm(fastnn.randn(2, 3), np.zeros(4, np.float32), np.ones(3, np.float32), training=True)
    with pytest.raises(ValueError, match=r"'weight' must have shape \(3,\)"):
        F.batch_norm(fastnn.randn(2, 3), None, None, fastnn.ones(2), training=True)
    with pytest.raises(ValueError, match="eps"):
        F.batch_norm(fastnn.randn(2, 3), None, None, training=True, eps=-1.0)
    with pytest.raises(ValueError, match="at least 2 dims"):
        F.batch_norm(fastnn.randn(3), None, None, training=True)
    for bad in (0, -2):
        with pytest.raises(ValueError, match="num_features"):
            nn.BatchNorm2d(bad)
    with pytest.raises(ValueError, match="momentum"):
        nn.BatchNorm2d(3, momentum=float("nan"))


def test_running_statistics_on_another_device_raise(backend):
    x = fastnn.randn(4, 3, device="cuda")
    with pytest.raises(RuntimeError, match="running_mean is on cpu but the input is on cuda:0"):
        F.batch_norm(x, np.zeros(3, np.float32), np.ones(3, np.float32), training=True)
    with pytest.raises(RuntimeError, match="running_var is on cuda:0 but the input is on cpu"):
        F.batch_norm(x.cpu(), np.zeros(3, np.float32), fastnn.ones(3, device="cuda"), training=True)


def test_kernel_level_checks():
    x = np.zeros((4, 3, 5), np.float32)
    with pytest.raises(TypeError, match="'input' must be float32"):
        _C.batch_norm_forward(x.astype(np.float64), None, None, None, None, training=True)
    with pytest.raises(ValueError, match="C-contiguous"):
        _C.batch_norm_forward(np.zeros((4, 5, 3), np.float32).transpose(0, 2, 1), None, None, None, None,
                              training=True)
    frozen = np.zeros(3, np.float32)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="'running_mean' is read-only"):
        _C.batch_norm_forward(x, None, None, frozen, np.ones(3, np.float32), training=True)
    with pytest.raises(ValueError, match="both 'running_mean' and 'running_var'"):
        _C.batch_norm_forward(x, None, None, np.zeros(3, np.float32), None, training=True)
    y, mean, invstd = _C.batch_norm_forward(x, None, None, None, None, training=True)
    with pytest.raises(ValueError, match="'grad_output' must have the shape of 'input'"):
        _C.batch_norm_backward(y[:2], x, mean, invstd, None, training=True)
    with pytest.raises(ValueError, match=r"'save_invstd' must have shape \(3,\)"):
        _C.batch_norm_backward(y, x, mean, invstd[:2], None, training=True)


# ---- Dropout2d --------------------------------------------------------------------------------

def test_dropout2d_zeroes_whole_channels_and_scales(device):
    fastnn.manual_seed(0)
    x = fastnn.tensor(data((8, 16, 5, 4), seed=1), requires_grad=True, device=device)
    y = nn.Dropout2d(0.25)(x)
    assert y.device == x.device
    ratio = host(y) / host(x)
    per_channel = ratio.reshape(8, 16, -1)
    assert np.allclose(per_channel, per_channel[:, :, :1])          # one factor per (sample, channel)
    factors = per_channel[:, :, 0]
    kept = np.isclose(factors, 1 / 0.75, rtol=1e-6)
    assert np.all(kept | (factors == 0)) and 0 < kept.sum() < kept.size
    y.backward(fastnn.ones(*y.shape, device=device))
    np.testing.assert_allclose(host(x.grad), ratio, rtol=1e-6)
    fastnn.manual_seed(0)
    np.testing.assert_array_equal(host(nn.Dropout2d(0.25)(x)), host(y))  # seeded
    if device != "cpu":  # the same draw gives the same mask on every device
        fastnn.manual_seed(0)
        np.testing.assert_array_equal(host(nn.Dropout2d(0.25)(x.cpu())), host(y))


def test_dropout2d_modes_and_edges(device):
    x = fastnn.randn(2, 3, 4, 4, device=device)
    layer = nn.Dropout2d(0.5).eval()
    assert layer(x) is x
    assert F.dropout2d(x, 0.0) is x
    assert np.array_equal(host(F.dropout2d(x, 1.0)), np.zeros((2, 3, 4, 4), np.float32))
    assert F.dropout2d(fastnn.randn(3, 4, 4, device=device), 0.5).shape == (3, 4, 4)   # (C, H, W) without a batch axis
    assert repr(nn.Dropout2d(0.2)) == "Dropout2d(p=0.2)" and nn.Dropout2d(0.2).get_config() == {"p": 0.2}
    with pytest.raises(ValueError, match="p must be in"):
        nn.Dropout2d(1.5)
    with pytest.raises(TypeError):
        F.dropout2d(x, "0.5")
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        F.dropout2d(fastnn.randn(3, 4), 0.5)
