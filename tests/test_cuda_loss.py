"""softmax, log_softmax and every loss on a CUDA device against the CPU path of the same op: values
and the gradients of the input (and of the target where it is differentiable), for each reduction
and option, on random shapes with odd sizes, along every axis; extreme logits stay finite; the
device's NaN conventions where the CPU raises (labels and probabilities the host cannot check).

The tests take the `backend` fixture (conftest.py): they run against tests/fake_cuda.py and, where
a GPU is present, against the real kernels (csrc/cuda/loss.cu).
"""
import numpy as np
import pytest

import fastnn
import fastnn.nn as nn
import fastnn.nn.functional as F

rng = np.random.default_rng(11)
REDUCTIONS = ["none", "mean", "sum"]


def run_on_both(fn, arrays, requires_grad, rtol=1e-5, atol=1e-6):
    """fn on CPU tensors and on CUDA tensors of the same values: the outputs, and the gradients of
    the tensors that require grad under the same random output gradient, agree. Returns the CPU output."""
    results = []
    for device in ("cpu", "cuda"):
        tensors = [fastnn.tensor(a, device=device, requires_grad=g) for a, g in zip(arrays, requires_grad)]
        out = fn(*tensors)
        assert out.device == ("cpu" if device == "cpu" else "cuda:0")
        upstream = np.random.default_rng(5).standard_normal(out.shape).astype(np.float32)
        out.backward(fastnn.tensor(upstream, device=device))
        results.append([out.cpu().detach().numpy()] + [t.grad.cpu().numpy() for t in tensors if t.requires_grad])
    for cpu, gpu in zip(*results):
        assert gpu.shape == cpu.shape
        np.testing.assert_allclose(gpu, cpu, rtol=rtol, atol=atol)
    return results[0][0]


# -- softmax and log_softmax ---------------------------------------------------------------------------

@pytest.mark.parametrize("C", [1, 3, 10, 1000])
@pytest.mark.parametrize("function", [F.softmax, F.log_softmax], ids=["softmax", "log_softmax"])
def test_softmax_along_every_axis_matches_the_cpu(backend, function, C):
    for shape in [(C,), (5, C), (3, C, 7), (2, 3, C, 5), (C, 17, 1)]:
        x = (rng.standard_normal(shape) * 4).astype(np.float32)
        for dim in range(len(shape)):
            # the CPU's float32 sums along a strided axis are sequential: about C ulp of error
            out = run_on_both(lambda t: function(t, dim), [x], [True], atol=1e-8 * max(C, 100))
            total = np.exp(out).sum(axis=dim) if function is F.log_softmax else out.sum(axis=dim)
            np.testing.assert_allclose(total, 1.0, rtol=1e-5)


@pytest.mark.parametrize("function", [F.softmax, F.log_softmax], ids=["softmax", "log_softmax"])
def test_softmax_of_a_scalar_and_of_nothing(backend, function):
    run_on_both(lambda t: function(t, 0), [np.float32(2.5)], [True])
    for device in ("cpu", "cuda"):
        assert function(fastnn.zeros(0, 4, device=device), 1).shape == (0, 4)


@pytest.mark.parametrize("function", [F.softmax, F.log_softmax], ids=["softmax", "log_softmax"])
def test_softmax_of_extreme_logits_stays_finite(backend, function):
    x = np.array([[1e4, -1e4, 0.0, 1e4 - 1], [-1e4, -1e4, -1e4, -1e4 + 3]], np.float32)
    for dim in (0, 1):
        out = run_on_both(lambda t: function(t, dim), [x], [True])
        assert np.all(np.isfinite(out))


def test_softmax_layers_in_a_model_on_the_device(backend):
    x = rng.standard_normal((6, 5)).astype(np.float32)
    for layer in (nn.Softmax(dim=1), nn.LogSoftmax(dim=-1), nn.Softmax(dim=0)):
        fastnn.manual_seed(3)
        cpu_model = nn.Sequential(nn.Linear(5, 4), layer)
        fastnn.manual_seed(3)
        gpu_model = nn.Sequential(nn.Linear(5, 4), layer).to("cuda")
        cpu_out, gpu_out = cpu_model(fastnn.tensor(x)), gpu_model(fastnn.tensor(x, device="cuda"))
        np.testing.assert_allclose(gpu_out.cpu().detach().numpy(), cpu_out.detach().numpy(), rtol=1e-5, atol=1e-6)
        (cpu_out * cpu_out).sum().backward()
        (gpu_out * gpu_out).sum().backward()
        np.testing.assert_allclose(gpu_model[0].weight.grad.cpu().numpy(), cpu_model[0].weight.grad.numpy(),
                                   rtol=1e-4, atol=1e-6)


# -- regression losses ---------------------------------------------------------------------------------

SHAPES = [(1,), (3, 17), (2, 5, 3), (65,)]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("loss", [F.mse_loss, F.l1_loss, lambda x, y, reduction: F.huber_loss(x, y, reduction),
                                  lambda x, y, reduction: F.huber_loss(x, y, reduction, delta=0.3)],
                         ids=["mse", "l1", "huber", "huber-0.3"])
def test_regression_losses_match_the_cpu(backend, loss, reduction):
    for shape in SHAPES:
        x = rng.standard_normal(shape).astype(np.float32)
        y = rng.standard_normal(shape).astype(np.float32)
        y.reshape(-1)[::3] = x.reshape(-1)[::3]  # ties: l1's gradient is 0 there
        run_on_both(lambda a, b: loss(a, b, reduction=reduction), [x, y], [True, True])
        run_on_both(lambda a, b: loss(a, b, reduction=reduction), [x, y], [False, True])


def test_mean_of_nothing_is_nan_on_both(backend):
    for device in ("cpu", "cuda"):
        empty = fastnn.zeros(0, 3, device=device)
        assert np.isnan(F.l1_loss(empty, empty).item())
        assert F.mse_loss(empty, empty, reduction="sum").item() == 0


# -- binary cross-entropy --------------------------------------------------------------------------------

# weights in every shape the CPU takes: none, per class, full, per row (spelled out for the device), one value
WEIGHTS = [None, (5,), (7, 5), (7, 1), (1,), (1, 5)]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weight_shape", WEIGHTS, ids=str)
def test_binary_cross_entropy_matches_the_cpu(backend, reduction, weight_shape):
    x = (1 / (1 + np.exp(-3 * rng.standard_normal((7, 5))))).astype(np.float32)
    x[0, :3] = [0.0, 1.0, 1e-30]  # the logs clamped at -100, the gradient's denominator at 1e-12
    y = rng.random((7, 5)).astype(np.float32)
    y[1] = np.round(y[1])
    w = None if weight_shape is None else rng.random(weight_shape).astype(np.float32) + 0.5
    out = run_on_both(lambda a, b: F.binary_cross_entropy(a, b, weight=w, reduction=reduction), [x, y],
                      [True, True], rtol=1e-5, atol=1e-5)
    assert np.all(np.isfinite(out))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weight_shape", WEIGHTS, ids=str)
@pytest.mark.parametrize("pos_weight", [False, True], ids=["", "pos_weight"])
def test_binary_cross_entropy_with_logits_matches_the_cpu(backend, reduction, weight_shape, pos_weight):
    x = (rng.standard_normal((7, 5)) * 5).astype(np.float32)
    x[0, :4] = [1e4, -1e4, 80.0, -80.0]  # extreme logits stay finite
    y = rng.random((7, 5)).astype(np.float32)
    y[1] = np.round(y[1])
    w = None if weight_shape is None else rng.random(weight_shape).astype(np.float32) + 0.5
    pw = rng.random(5).astype(np.float32) * 3 if pos_weight else None
    out = run_on_both(lambda a, b: F.binary_cross_entropy_with_logits(a, b, weight=w, reduction=reduction,
                                                                      pos_weight=pw),
                      [x, y], [True, True], rtol=1e-5, atol=1e-5)
    assert np.all(np.isfinite(out))


def test_binary_cross_entropy_of_a_non_probability_is_nan_on_the_device(backend):
    x = fastnn.tensor([0.5, 1.5], device="cuda", requires_grad=True)
    loss = F.binary_cross_entropy(x, fastnn.tensor([1.0, 0.0], device="cuda"), reduction="none")
    values = loss.cpu().detach().numpy()
    assert np.isfinite(values[0]) and np.isnan(values[1])
    loss.sum().backward()
    grad = x.grad.cpu().numpy()
    assert np.isfinite(grad[0]) and np.isnan(grad[1])
    with pytest.raises(ValueError, match=r"probability in \[0, 1\], found 1.5"):  # the CPU checks
        F.binary_cross_entropy(fastnn.tensor([0.5, 1.5]), fastnn.tensor([1.0, 0.0]))


# -- cross_entropy and nll_loss ---------------------------------------------------------------------------

CLASS_SHAPES = [(10,), (1, 1), (3, 10), (17, 1000), (4, 3, 5), (2, 7, 3, 3)]


def labels_for(shape, ignore_index=None):
    """Random class indices for input `shape`, a few of them ignore_index."""
    C = shape[0] if len(shape) == 1 else shape[1]
    labels = rng.integers(0, C, () if len(shape) == 1 else (shape[0],) + shape[2:])
    if ignore_index is not None and labels.ndim:
        labels.reshape(-1)[::4] = ignore_index
    return labels


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("options", [{}, {"weight": True}, {"ignore_index": -100}, {"ignore_index": 2},
                                     {"label_smoothing": 0.1},
                                     {"weight": True, "ignore_index": 1, "label_smoothing": 0.2}],
                         ids=["plain", "weight", "ignore", "ignore-2", "smoothing", "all"])
def test_cross_entropy_with_class_indices_matches_the_cpu(backend, reduction, options):
    for shape in CLASS_SHAPES:
        C = shape[0] if len(shape) == 1 else shape[1]
        x = (rng.standard_normal(shape) * 3).astype(np.float32)
        ignore_index = options.get("ignore_index", -100)
        labels = labels_for(shape, options.get("ignore_index"))
        w = rng.random(C).astype(np.float32) + 0.5 if options.get("weight") else None
        kwargs = dict(weight=w, ignore_index=ignore_index, reduction=reduction,
                      label_smoothing=options.get("label_smoothing", 0.0))
        run_on_both(lambda a: F.cross_entropy(a, labels, **kwargs), [x], [True])
        # labels held on the device as float32 (as fastnn.cuda.graphed_step keeps them)
        for device in ("cpu", "cuda"):
            loss = F.cross_entropy(fastnn.tensor(x, device=device), fastnn.tensor(labels, device=device), **kwargs)
            np.testing.assert_allclose(loss.cpu().numpy(), F.cross_entropy(fastnn.tensor(x), labels, **kwargs).numpy(),
                                       rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("options", [{}, {"weight": True, "label_smoothing": 0.3}], ids=["plain", "weight-smoothing"])
def test_cross_entropy_with_probabilities_matches_the_cpu(backend, reduction, options):
    for shape in CLASS_SHAPES:
        C = shape[0] if len(shape) == 1 else shape[1]
        x = (rng.standard_normal(shape) * 3).astype(np.float32)
        q = rng.random(shape).astype(np.float32)
        q /= q.sum(axis=0 if len(shape) == 1 else 1, keepdims=True)
        w = rng.random(C).astype(np.float32) + 0.5 if options.get("weight") else None
        run_on_both(lambda a, b: F.cross_entropy(a, b, weight=w, reduction=reduction,
                                                 label_smoothing=options.get("label_smoothing", 0.0)),
                    [x, q], [True, True])


def test_cross_entropy_of_extreme_logits_stays_finite(backend):
    x = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4], [-1e4, -1e4, -1e4]], np.float32)
    # row 0: lse - x_1 = 2e4; with w_1 = 2 and smoothing: 0.9 * 2 * 2e4 + 0.1 / 3 * (0 + 2 * 2e4 + 0.5 * 1e4)
    for options, first in (({}, 2e4), ({"label_smoothing": 0.1, "weight": np.array([1.0, 2.0, 0.5], np.float32)},
                                       37500.0)):
        out = run_on_both(lambda a: F.cross_entropy(a, [1, 0, 2], reduction="none", **options), [x], [True])
        assert np.all(np.isfinite(out))
        np.testing.assert_allclose(out[0], first, rtol=1e-6)


def test_cross_entropy_with_every_row_ignored_is_nan_on_both(backend):
    for device in ("cpu", "cuda"):
        x = fastnn.zeros(2, 3, device=device, requires_grad=True)
        loss = F.cross_entropy(x, [-100, -100])
        assert np.isnan(loss.item())
        loss.backward()
        assert not np.any(x.grad.cpu().numpy())


def test_cross_entropy_labels_that_are_no_class_give_nan_on_the_device(backend):
    x = fastnn.zeros(3, 4, device="cuda", requires_grad=True)
    loss = F.cross_entropy(x, fastnn.tensor([1.0, 4.0, 2.5], device="cuda"), reduction="none")
    values = loss.cpu().detach().numpy()
    assert np.isfinite(values[0]) and np.isnan(values[1]) and np.isnan(values[2])
    loss.sum().backward()
    assert np.all(np.isfinite(x.grad.cpu().numpy()[0])) and np.all(np.isnan(x.grad.cpu().numpy()[1:]))
    with pytest.raises(ValueError, match=r"target\[1\] = 4 is out of range for 4 classes"):  # host labels: checked
        F.cross_entropy(x, [1, 4, 2])


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("options", [{}, {"weight": True}, {"ignore_index": 0}, {"weight": True, "ignore_index": -100}],
                         ids=["plain", "weight", "ignore", "weight-ignore"])
def test_nll_loss_matches_the_cpu(backend, reduction, options):
    for shape in CLASS_SHAPES:
        C = shape[0] if len(shape) == 1 else shape[1]
        x = (rng.standard_normal(shape) * 3).astype(np.float32)
        labels = labels_for(shape, options.get("ignore_index"))
        w = rng.random(C).astype(np.float32) + 0.5 if options.get("weight") else None
        kwargs = dict(weight=w, ignore_index=options.get("ignore_index", -100), reduction=reduction)
        dim = 0 if len(shape) == 1 else 1
        run_on_both(lambda a: F.nll_loss(F.log_softmax(a, dim), labels, **kwargs), [x], [True])
        run_on_both(lambda a: F.nll_loss(a, labels, **kwargs), [x], [True])  # any input, not only log-probabilities


def test_loss_modules_on_a_model_on_the_device(backend):
    x = rng.standard_normal((8, 6)).astype(np.float32)
    labels = rng.integers(0, 4, 8)
    w = np.array([1.0, 2.0, 0.5, 1.5], np.float32)
    cases = [(nn.CrossEntropyLoss(weight=w, label_smoothing=0.1, ignore_index=3), labels),
             (nn.NLLLoss(weight=w, reduction="sum"), labels),
             (nn.BCEWithLogitsLoss(pos_weight=w), (labels[:, None] == np.arange(4)).astype(np.float32)),
             (nn.HuberLoss(delta=0.5), rng.standard_normal((8, 4)).astype(np.float32)),
             (nn.L1Loss(reduction="sum"), rng.standard_normal((8, 4)).astype(np.float32))]
    for loss_fn, target in cases:
        results = []
        for device in ("cpu", "cuda"):
            fastnn.manual_seed(2)
            layers = [nn.Linear(6, 4)] + ([nn.LogSoftmax(dim=1)] if isinstance(loss_fn, nn.NLLLoss) else [])
            model = nn.Sequential(*layers).to(device)
            t = target if target.dtype == np.int64 else fastnn.tensor(target, device=device)
            loss = loss_fn(model(fastnn.tensor(x, device=device)), t)
            loss.backward()
            results.append((loss.item(), model[0].weight.grad.cpu().numpy()))
        np.testing.assert_allclose(results[1][0], results[0][0], rtol=1e-5)
        np.testing.assert_allclose(results[1][1], results[0][1], rtol=1e-4, atol=1e-6)
