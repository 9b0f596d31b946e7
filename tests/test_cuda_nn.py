"""Average pooling, adaptive average pooling and the transposed convolutions on a device, against
the CPU path of the same ops: outputs and every gradient, on odd sizes and 1 x 1 planes.

Each test takes the `backend` fixture (conftest.py): it runs against tests/fake_cuda.py (the Python
dispatch, everywhere) and against the real kernels (skipped with "no CUDA device" without a GPU).
The GPU sums windows in another order than the CPU (and gathers the backward instead of
scattering it), so results agree to float32 rounding, not bit for bit.
"""
import itertools

import numpy as np
import pytest

import fastnn
from fastnn import nn
from fastnn.nn import functional as F
from helpers import train_steps

rng = np.random.default_rng(11)


def run_on_both(make_inputs, op):
    """[cpu, device] lists of (output, gradients of the inputs) for op(*tensors), each input made
    from the same numpy array on each device; the loss weights each output element differently so
    that every gradient path is exercised."""
    arrays = make_inputs()
    results = []
    for device in ("cpu", "cuda"):
        tensors = [fastnn.tensor(a, device=device, requires_grad=True) for a in arrays]
        out = op(*tensors)
        weights = fastnn.tensor(np.linspace(-1.0, 2.0, int(np.prod(out.shape)), dtype=np.float32).reshape(out.shape),
                                device=device)
        (out * weights).sum().backward()
        assert out.device == ("cpu" if device == "cpu" else "cuda:0")
        results.append([out.cpu().detach().numpy()] + [t.grad.cpu().numpy() for t in tensors])
    return results


def assert_same(results, rtol=1e-5, atol=1e-6):
    cpu, gpu = results
    for c, g in zip(cpu, gpu):
        assert g.shape == c.shape
        np.testing.assert_allclose(g, c, rtol=rtol, atol=atol)


# -- average pooling ------------------------------------------------------------------------------

AVG_CASES = [(k, s, p, ceil, include)
             for k, s, p, ceil, include in itertools.product((1, 2, 3), (1, 2, 3), (0, 1), (False, True), (False, True))
             if p <= k // 2]


@pytest.mark.parametrize("shape", [(2, 3, 7, 9), (1, 2, 5, 5), (3, 1, 4, 6)])
def test_avg_pool2d_matches_the_cpu_over_the_options(backend, shape):
    for kernel, stride, padding, ceil_mode, count_include_pad in AVG_CASES:
        results = run_on_both(lambda: [rng.standard_normal(shape).astype(np.float32)],
                              lambda x: F.avg_pool2d(x, kernel, stride, padding, ceil_mode, count_include_pad))
        assert_same(results)


@pytest.mark.parametrize("kernel, stride, padding, divisor_override", [
    ((2, 3), (1, 2), (1, 1), None), ((3, 1), (2, 1), (1, 0), 5), (3, 2, 1, 1), (2, 1, 0, 7)])
def test_avg_pool2d_rectangular_windows_and_divisor_override(backend, kernel, stride, padding, divisor_override):
    for ceil_mode, count_include_pad in itertools.product((False, True), (False, True)):
        results = run_on_both(lambda: [rng.standard_normal((2, 3, 17, 8)).astype(np.float32)],
                              lambda x: F.avg_pool2d(x, kernel, stride, padding, ceil_mode, count_include_pad,
                                                     divisor_override))
        assert_same(results)


def test_avg_pool2d_on_one_by_one_planes_and_unbatched_inputs(backend):
    assert_same(run_on_both(lambda: [rng.standard_normal((4, 3, 1, 1)).astype(np.float32)],
                            lambda x: F.avg_pool2d(x, 1)))
    assert_same(run_on_both(lambda: [rng.standard_normal((2, 1, 1)).astype(np.float32)],
                            lambda x: F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)))
    assert_same(run_on_both(lambda: [rng.standard_normal((3, 65, 1)).astype(np.float32)],
                            lambda x: F.avg_pool2d(x, (3, 1), (2, 1), (1, 0), ceil_mode=True)))


def test_avg_pool2d_matches_a_float64_reference(backend):
    # The divisors by hand: 3x3 windows, stride 2, padding 1 over 5x5, count_include_pad=False.
    x = rng.standard_normal((1, 1, 5, 5))
    out = F.avg_pool2d(fastnn.tensor(x, device="cuda"), 3, 2, 1, count_include_pad=False).cpu().numpy()
    ref = np.array([[x[0, 0, max(0, 2 * i - 1):2 * i + 2, max(0, 2 * j - 1):2 * j + 2].mean() for j in range(3)]
                    for i in range(3)])
    np.testing.assert_allclose(out[0, 0], ref, rtol=1e-5, atol=1e-6)


def test_avg_pool1d_on_the_device(backend):
    for kernel, stride, padding, ceil_mode in [(3, 2, 1, True), (2, 1, 0, False), (1, 3, 0, True)]:
        assert_same(run_on_both(lambda: [rng.standard_normal((2, 3, 17)).astype(np.float32)],
                                lambda x: F.avg_pool1d(x, kernel, stride, padding, ceil_mode)))


def test_avg_pool2d_backward_is_deterministic(backend):
    x = fastnn.tensor(rng.standard_normal((2, 4, 13, 11)).astype(np.float32), device="cuda", requires_grad=True)
    grads = []
    for _ in range(2):
        x.grad = None
        (F.avg_pool2d(x, 3, 1, 1) * 1.7).sum().backward()
        grads.append(x.grad.cpu().numpy())
    np.testing.assert_array_equal(grads[0], grads[1])


def test_avg_pool2d_device_errors_name_the_op(backend):
    x = fastnn.ones(1, 1, 2, 2, device="cuda")
    with pytest.raises(ValueError, match="avg_pool2d"):
        F.avg_pool2d(x, 3, 1, 2)  # padding above half the kernel


# -- adaptive average pooling ---------------------------------------------------------------------

@pytest.mark.parametrize("in_size, out_size", [
    ((7, 9), (3, 3)),    # windows of uneven length that overlap
    ((5, 5), (5, 5)),    # identity
    ((4, 6), (2, 3)),    # output sizes dividing the input
    ((4, 3), (7, 5)),    # larger than the input: windows repeat input elements
    ((1, 1), (3, 2)),
    ((17, 1), (4, 1)),
    ((6, 8), (1, 1)),    # global average (its own kernel)
    ((6, 8), (1, 3))])
def test_adaptive_avg_pool2d_matches_the_cpu(backend, in_size, out_size):
    results = run_on_both(lambda: [rng.standard_normal((2, 3) + in_size).astype(np.float32)],
                          lambda x: F.adaptive_avg_pool2d(x, out_size))
    assert results[0][0].shape == (2, 3) + out_size
    assert_same(results)


def test_adaptive_avg_pool2d_keeps_an_axis_given_as_none_and_takes_unbatched_inputs(backend):
    assert_same(run_on_both(lambda: [rng.standard_normal((2, 3, 7, 5)).astype(np.float32)],
                            lambda x: F.adaptive_avg_pool2d(x, (None, 2))))
    assert_same(run_on_both(lambda: [rng.standard_normal((3, 7, 5)).astype(np.float32)],
                            lambda x: F.adaptive_avg_pool2d(x, 4)))


def test_adaptive_avg_pool2d_matches_a_float64_reference(backend):
    x = rng.standard_normal((1, 2, 7, 5))
    out = F.adaptive_avg_pool2d(fastnn.tensor(x, device="cuda"), (3, 2)).cpu().numpy()
    rows = [(i * 7 // 3, -(-(i + 1) * 7 // 3)) for i in range(3)]
    cols = [(j * 5 // 2, -(-(j + 1) * 5 // 2)) for j in range(2)]
    ref = np.array([[[x[0, c, r0:r1, c0:c1].mean() for c0, c1 in cols] for r0, r1 in rows] for c in range(2)])
    np.testing.assert_allclose(out[0], ref, rtol=1e-5, atol=1e-6)


# -- transposed convolutions ----------------------------------------------------------------------

CONV_T2D = [
    dict(N=2, C_in=3, C_out=4, H=5, W=7, k=3, stride=1, padding=0, output_padding=0, groups=1, dilation=1),
    dict(N=3, C_in=4, C_out=6, H=4, W=3, k=(3, 2), stride=(2, 3), padding=(1, 0), output_padding=(1, 2), groups=2,
         dilation=1),
    dict(N=1, C_in=6, C_out=6, H=7, W=9, k=3, stride=2, padding=1, output_padding=1, groups=6, dilation=2),
    dict(N=2, C_in=2, C_out=3, H=1, W=1, k=1, stride=1, padding=0, output_padding=0, groups=1, dilation=1),
    # output_padding reaching past the stride (allowed up to the dilation)
    dict(N=2, C_in=3, C_out=2, H=6, W=5, k=(2, 3), stride=1, padding=(0, 1), output_padding=(2, 1), groups=1,
         dilation=(3, 2)),
    dict(N=1, C_in=5, C_out=5, H=17, W=3, k=4, stride=3, padding=2, output_padding=(2, 0), groups=5, dilation=1)]


def transposed_inputs(c, n, bias=True):
    spatial = (c["H"], c["W"]) if n == 2 else (c["W"],)
    kernel = c["k"] if isinstance(c["k"], tuple) else (c["k"],) * n
    arrays = [rng.standard_normal((c["N"], c["C_in"]) + spatial).astype(np.float32),
              rng.standard_normal((c["C_in"], c["C_out"] // c["groups"]) + kernel[-n:]).astype(np.float32)]
    if bias:
        arrays.append(rng.standard_normal(c["C_out"]).astype(np.float32))
    return arrays


def settings(c, n):
    return {k: (v[-1] if n == 1 and isinstance(v, tuple) else v)
            for k, v in c.items() if k in ("stride", "padding", "output_padding", "groups", "dilation")}


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("case", CONV_T2D)
def test_conv_transpose2d_matches_the_cpu(backend, case, bias):
    op = lambda x, w, b=None: F.conv_transpose2d(x, w, b, **settings(case, 2))  # noqa: E731
    results = run_on_both(lambda: transposed_inputs(case, 2, bias), op)
    assert len(results[0]) == (4 if bias else 3)
    assert_same(results, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("case", CONV_T2D)
def test_conv_transpose1d_matches_the_cpu(backend, case, bias):
    op = lambda x, w, b=None: F.conv_transpose1d(x, w, b, **settings(case, 1))  # noqa: E731
    results = run_on_both(lambda: transposed_inputs(case, 1, bias), op)
    assert_same(results, rtol=1e-4, atol=1e-4)


def test_conv_transpose2d_matches_a_float64_reference(backend):
    # out[n, o, i*s + r - p, j*s + q - p] += x[n, c, i, j] w[c, o, r, q], stride 2, padding 1, output_padding 1
    x, w, b = rng.standard_normal((2, 3, 4, 5)), rng.standard_normal((3, 2, 3, 3)), rng.standard_normal(2)
    full = np.zeros((2, 2, (4 - 1) * 2 + 3 + 1, (5 - 1) * 2 + 3 + 1))
    for i, j, r, q in itertools.product(range(4), range(5), range(3), range(3)):
        full[:, :, 2 * i + r, 2 * j + q] += np.einsum("nc,co->no", x[:, :, i, j], w[:, :, r, q])
    ref = full[:, :, 1:-1, 1:-1] + b[None, :, None, None]  # padding 1 off both ends
    out = F.conv_transpose2d(*(fastnn.tensor(a, device="cuda") for a in (x, w, b)), stride=2, padding=1,
                             output_padding=1).cpu().numpy()
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


def test_conv_transpose_unbatched_and_only_some_gradients(backend):
    x, w = rng.standard_normal((3, 6, 5)).astype(np.float32), rng.standard_normal((3, 2, 2, 2)).astype(np.float32)
    results = []
    for device in ("cpu", "cuda"):
        xt = fastnn.tensor(x, device=device)  # no gradient wanted for the input
        wt = fastnn.tensor(w, device=device, requires_grad=True)
        out = F.conv_transpose2d(xt, wt, stride=2)
        (out * out).sum().backward()
        assert xt.grad is None
        results.append((out.cpu().detach().numpy(), wt.grad.cpu().numpy()))
    assert_same(results, rtol=1e-4, atol=1e-4)


def test_conv_transpose_layers_with_output_size_on_the_device(backend):
    x = rng.standard_normal((2, 4, 5, 6)).astype(np.float32)
    results = []
    for device in ("cpu", "cuda"):
        fastnn.manual_seed(2)
        layer = nn.ConvTranspose2d(4, 3, 3, stride=2, padding=1).to(device)
        layer1d = nn.ConvTranspose1d(3, 2, 4, stride=3, dilation=2).to(device)
        y = layer(fastnn.tensor(x, device=device), output_size=(10, 12))  # output_padding (1, 1)
        z = layer1d(y.reshape(2, 3, 120), output_size=(366,))  # output_padding 2
        (z * z).sum().backward()
        results.append([z.cpu().detach().numpy(), layer.weight.grad.cpu().numpy(), layer.bias.grad.cpu().numpy(),
                        layer1d.weight.grad.cpu().numpy()])
    assert results[0][0].shape == (2, 2, 366)
    assert_same(results, rtol=1e-4, atol=1e-3)


# -- a small model trained on the device ----------------------------------------------------------

def test_decoder_model_training_on_the_device_matches_the_cpu(backend):
    def model():
        fastnn.manual_seed(9)
        return nn.Sequential(nn.ConvTranspose2d(3, 8, 3, stride=2, padding=1, output_padding=1), nn.ReLU(),
                             nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False),
                             nn.Conv2d(8, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d((3, 2)),
                             nn.Flatten(), nn.Linear(36, 5))
    x = rng.standard_normal((4, 3, 7, 5)).astype(np.float32)
    y = rng.integers(0, 5, 4)
    results = []
    for device in ("cpu", "cuda"):
        net = model().to(device)
        losses = train_steps(net, fastnn.optim.SGD(net.parameters(), lr=0.1, momentum=0.9), x, y, device, 3)
        results.append([np.array(losses)] + [p.cpu().detach().numpy() for p in net.parameters()])
    assert results[0][0][-1] < results[0][0][0]  # it learns
    assert_same(results, rtol=1e-4, atol=1e-5)


# -- embedding: cuda.embedding_forward / embedding_backward ---------------------------------------

@pytest.mark.parametrize("V, D, index_shape", [(1, 1, (1,)), (17, 65, (3, 5)), (3, 17, (2, 3, 4)), (5, 3, ())])
def test_embedding_kernels_match_numpy(backend, V, D, index_shape):
    weight = rng.standard_normal((V, D)).astype(np.float32)
    idx = rng.integers(0, V, index_shape + (2,))[..., ::2].reshape(index_shape)  # strided: the binding copies it
    w = backend.from_numpy(weight, 0)
    np.testing.assert_array_equal(backend.embedding_forward(w, idx).numpy(), weight[idx])
    up = rng.standard_normal(index_shape + (D,)).astype(np.float32)
    for padding_idx in (None, V - 1):
        expected = np.zeros((V, D), np.float32)
        np.add.at(expected, idx.reshape(-1), up.reshape(-1, D))  # float32, position order: the kernel's sums
        if padding_idx is not None:
            expected[padding_idx] = 0.0
        grad = backend.embedding_backward(backend.from_numpy(up, 0), idx, V, padding_idx=padding_idx).numpy()
        np.testing.assert_array_equal(grad, expected)


def test_embedding_backward_is_deterministic_over_many_repeats(backend):
    idx = rng.integers(0, 3, 20000)  # each row summed over thousands of positions
    up = backend.from_numpy(rng.standard_normal((20000, 65)).astype(np.float32), 0)
    first = backend.embedding_backward(up, idx, 4).numpy()
    np.testing.assert_array_equal(backend.embedding_backward(up, idx, 4).numpy(), first)
    expected = np.zeros((4, 65))
    np.add.at(expected, idx, up.numpy().astype(np.float64))
    np.testing.assert_allclose(first, expected, rtol=1e-4, atol=1e-3)
    np.testing.assert_array_equal(first[3], 0.0)  # never looked up


def test_embedding_kernels_reject_bad_arguments(backend):
    w = backend.from_numpy(np.zeros((5, 3), np.float32), 0)
    g = backend.from_numpy(np.zeros((2, 3), np.float32), 0)
    ok = np.array([0, 4], np.int64)
    with pytest.raises(ValueError, match=r"cuda.embedding_forward: argument 'indices' holds 5 at flat position 1, "
                                         r"out of range for 5 embeddings: expected 0 <= index < 5"):
        backend.embedding_forward(w, np.array([[0, 5]]))
    with pytest.raises(ValueError, match="cuda.embedding_backward: argument 'indices' holds -1 at flat position 0"):
        backend.embedding_backward(g, np.array([-1, 0]), 5)
    with pytest.raises(TypeError, match="argument 'indices' must be int64, got int32"):
        backend.embedding_forward(w, ok.astype(np.int32))
    with pytest.raises(TypeError, match="argument 'indices' must be int64, got float32"):
        backend.embedding_backward(g, ok.astype(np.float32), 5)
    with pytest.raises(TypeError, match=r"argument 'indices' must be a host \(numpy\) int64 array, got a CUDA array"):
        backend.embedding_forward(w, backend.from_numpy(ok, 0))
    with pytest.raises(TypeError, match="argument 'indices' must be a numpy int64 array, got list"):
        backend.embedding_forward(w, [0, 1])
    with pytest.raises(TypeError, match="argument 'weight' must be float32, got int64"):
        backend.embedding_forward(backend.from_numpy(np.zeros((5, 3), np.int64), 0), ok)
    with pytest.raises(ValueError, match="argument 'weight' must be 2-D"):
        backend.embedding_forward(backend.from_numpy(np.zeros(5, np.float32), 0), ok)
    with pytest.raises(TypeError, match="argument 'grad_out' must be float32, got int64"):
        backend.embedding_backward(backend.from_numpy(np.zeros((2, 3), np.int64), 0), ok, 5)
    with pytest.raises(ValueError, match=r"argument 'grad_out' must have the shape of 'indices' \(3,\)"):
        backend.embedding_backward(g, np.array([0, 1, 2]), 5)
    with pytest.raises(ValueError, match=r"argument 'padding_idx' must be in \[0, 5\) or None, got 5"):
        backend.embedding_backward(g, ok, 5, padding_idx=5)
