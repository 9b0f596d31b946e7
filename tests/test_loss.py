"""Losses: every loss and reduction against a float64 numpy reference, in value and in
finite-difference gradient (input, and target where it is differentiable); cross_entropy's
fused kernel with class weights, ignore_index, label smoothing, probability targets, extra
dimensions, large logits and thread counts; bad inputs; PyTorch as an extra oracle."""
import json
import math

import numpy as np
import pytest

import fastnn
import fastnn.nn as nn
import fastnn.nn.functional as F
from fastnn import _C
from helpers import check_op, random_inputs

REDUCTIONS = ["none", "mean", "sum"]

# ---------------------------------------------------------------------------------------------
# float64 references (PyTorch's definitions)


def reduce_ref(elements, reduction):
    if reduction == "none":
        return elements
    return elements.sum() if reduction == "sum" else elements.sum() / elements.size


def mse_ref(x, y, reduction="mean"):
    return reduce_ref((x - y) ** 2, reduction)


def l1_ref(x, y, reduction="mean"):
    return reduce_ref(np.abs(x - y), reduction)


def huber_ref(x, y, reduction="mean", delta=1.0):
    d = np.abs(x - y)
    return reduce_ref(np.where(d < delta, 0.5 * d * d, delta * (d - 0.5 * delta)), reduction)


def bce_ref(x, y, weight=None, reduction="mean"):
    with np.errstate(divide="ignore"):
        loss = -(y * np.maximum(np.log(x), -100) + (1 - y) * np.maximum(np.log(1 - x), -100))
    return reduce_ref(loss if weight is None else loss * weight, reduction)


def bce_logits_ref(x, y, weight=None, pos_weight=None, reduction="mean"):
    pw = 1.0 if pos_weight is None else pos_weight
    log_sig, log_one_minus_sig = -np.logaddexp(0, -x), -np.logaddexp(0, x)
    loss = -(pw * y * log_sig + (1 - y) * log_one_minus_sig)
    return reduce_ref(loss if weight is None else loss * weight, reduction)


def log_softmax_ref(x, axis):
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def _as_rows(x):
    return x if x.ndim == 2 else np.moveaxis(x, 1, -1).reshape(-1, x.shape[1])


def nll_ref(log_p, target, weight=None, ignore_index=-100, reduction="mean"):
    rows, t = _as_rows(log_p), target.reshape(-1)
    keep = t != ignore_index
    safe = np.where(keep, t, 0)
    w = (np.ones(rows.shape[1]) if weight is None else weight)[safe] * keep
    loss = -w * rows[np.arange(len(t)), safe]
    if reduction == "none":
        return loss.reshape(target.shape)
    return loss.sum() if reduction == "sum" else loss.sum() / w.sum()


def ce_ref(x, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    """PyTorch's cross_entropy: class indices (target of x's shape without axis 1) or probabilities."""
    C = x.shape[1]
    log_p = _as_rows(log_softmax_ref(x, 1))
    w = np.ones(C) if weight is None else weight
    if target.shape == x.shape:
        q = _as_rows(target) * (1 - label_smoothing) + label_smoothing / C
        loss = -(w * q * log_p).sum(1)
        shape, denominator = x.shape[:1] + x.shape[2:], len(loss)
    else:
        t = target.reshape(-1)
        keep = t != ignore_index
        safe = np.where(keep, t, 0)
        wt = w[safe] * keep
        nll = -wt * log_p[np.arange(len(t)), safe]
        smooth = -(w * log_p).sum(1) * keep
        loss = (1 - label_smoothing) * nll + label_smoothing / C * smooth
        shape, denominator = target.shape, wt.sum()
    if reduction == "none":
        return loss.reshape(shape)
    return loss.sum() if reduction == "sum" else loss.sum() / denominator


def _labels(shape, C, seed=0, ignore_fraction=0.0, ignore_index=-100):
    rng = np.random.default_rng(seed)
    t = rng.integers(0, C, size=shape)
    t[rng.random(shape) < ignore_fraction] = ignore_index
    return t


def _probabilities(shape, seed=0):
    p = np.random.default_rng(seed).random(shape) + 0.05
    return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# regression losses

@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(1,), (3, 17), (2, 3, 5)])
@pytest.mark.parametrize("name, fn, ref", [
    ("mse", F.mse_loss, mse_ref),
    ("l1", F.l1_loss, l1_ref),
    ("huber", F.huber_loss, huber_ref),
    ("huber-0.5", lambda x, y, reduction: F.huber_loss(x, y, reduction, delta=0.5),
     lambda x, y, reduction: huber_ref(x, y, reduction, delta=0.5)),
])
def test_regression_losses(name, fn, ref, shape, reduction):
    check_op([shape, shape], lambda x, y: fn(x, y, reduction=reduction), lambda x, y: ref(x, y, reduction))


def test_regression_loss_on_an_odd_large_shape():
    check_op([(17, 65), (17, 65)], F.mse_loss, mse_ref)


def test_regression_loss_shapes_must_match():
    with pytest.raises(ValueError, match=r"target shape \(3,\) differs from input shape \(3, 1\)"):
        F.mse_loss(fastnn.zeros(3, 1), fastnn.zeros(3))
    with pytest.raises(ValueError, match="reduction must be 'none', 'mean' or 'sum', got 'avg'"):
        F.l1_loss(fastnn.zeros(3), fastnn.zeros(3), reduction="avg")
    with pytest.raises(ValueError, match="delta must be a positive number"):
        F.huber_loss(fastnn.zeros(3), fastnn.zeros(3), delta=0)
    assert math.isnan(F.mse_loss(fastnn.zeros(0), fastnn.zeros(0)).item())  # mean of nothing, as torch


# ---------------------------------------------------------------------------------------------
# binary losses

@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape, weighted", [((1,), False), ((3, 17), False), ((3, 17), True), ((2, 3, 5), True)])
def test_binary_cross_entropy(shape, weighted, reduction):
    weight = np.random.default_rng(9).uniform(0.5, 2, shape[-1:]) if weighted else None
    check_op([shape, shape], lambda x, y: F.binary_cross_entropy(x, y, weight, reduction),
             lambda x, y: bce_ref(x, y, weight, reduction), low=[0.05, 0.0], high=[0.95, 1.0])


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape, weighted, pos_weighted", [
    ((1,), False, False), ((3, 17), False, False), ((3, 17), True, True), ((2, 3, 5), False, True)])
def test_binary_cross_entropy_with_logits(shape, weighted, pos_weighted, reduction):
    rng = np.random.default_rng(9)
    weight = rng.uniform(0.5, 2, shape) if weighted else None
    pos_weight = rng.uniform(0.5, 3, shape[-1:]) if pos_weighted else None
    check_op([shape, shape],
             lambda x, y: F.binary_cross_entropy_with_logits(x, y, weight, reduction, pos_weight),
             lambda x, y: bce_logits_ref(x, y, weight, pos_weight, reduction), low=[-4.0, 0.0], high=[4.0, 1.0])


def test_binary_cross_entropy_clamps_the_log_at_minus_100():
    x = fastnn.tensor([0.0, 1.0, 0.5, 1.0], requires_grad=True)
    y = fastnn.tensor([1.0, 0.0, 1.0, 1.0])
    loss = F.binary_cross_entropy(x, y, reduction="none")
    np.testing.assert_allclose(loss.detach().numpy(), [100, 100, math.log(2), 0], rtol=1e-6)
    loss.sum().backward()
    assert np.isfinite(x.grad.numpy()).all()  # divided by max(x (1 - x), 1e-12)
    with pytest.raises(ValueError, match=r"probability in \[0, 1\], found 1.5.*with_logits"):
        F.binary_cross_entropy(fastnn.tensor([0.5, 1.5]), fastnn.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"weight of shape \(4,\) cannot be broadcast"):
        F.binary_cross_entropy(fastnn.tensor([0.5, 0.5]), fastnn.tensor([0.0, 1.0]), weight=np.ones(4))


def test_binary_cross_entropy_with_logits_is_stable_for_large_logits():
    x = fastnn.tensor([1e4, 1e4, -1e4, -1e4, 60.0, -60.0], requires_grad=True)
    y = fastnn.tensor([1.0, 0.0, 1.0, 0.0, 1.0, 1.0])
    loss = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    np.testing.assert_allclose(loss.detach().numpy(), [0, 1e4, 1e4, 0, 0, 60], rtol=1e-6, atol=1e-20)
    loss.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [0, 1, -1, 0, 0, -1], atol=1e-20)


# ---------------------------------------------------------------------------------------------
# cross_entropy: the fused kernel

@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("ignore", [False, True])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_cross_entropy_options(reduction, weighted, ignore, label_smoothing):
    N, C = 7, 5
    weight = np.random.default_rng(3).uniform(0.2, 2, C).astype(np.float32) if weighted else None
    target = _labels((N,), C, ignore_fraction=0.3 if ignore else 0.0)
    options = dict(reduction=reduction, label_smoothing=label_smoothing)
    check_op([(N, C)], lambda x: F.cross_entropy(x, target, weight, **options),
             lambda x: ce_ref(x, target, None if weight is None else weight.astype(np.float64), **options))


@pytest.mark.parametrize("shape", [(1, 1), (1, 3), (3, 17), (17, 65)])
def test_cross_entropy_shapes(shape):
    target = _labels(shape[:1], shape[1], seed=1)
    check_op([shape], lambda x: F.cross_entropy(x, target), lambda x: ce_ref(x, target), low=-4.0, high=4.0)


def test_cross_entropy_ignore_index_other_than_default():
    target = np.array([0, 3, 2, 3, 1])
    check_op([(5, 4)], lambda x: F.cross_entropy(x, target, ignore_index=3, reduction="sum"),
             lambda x: ce_ref(x, target, ignore_index=3, reduction="sum"))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted, label_smoothing", [(False, 0.0), (True, 0.3)])
def test_cross_entropy_probability_targets(reduction, weighted, label_smoothing):
    weight = np.random.default_rng(3).uniform(0.2, 2, 5).astype(np.float32) if weighted else None
    options = dict(reduction=reduction, label_smoothing=label_smoothing)
    # both the logits and the probabilities get their gradient checked
    check_op([(7, 5), (7, 5)], lambda x, q: F.cross_entropy(x, q, weight, **options),
             lambda x, q: ce_ref(x, q, None if weight is None else weight.astype(np.float64), **options),
             low=[-2.0, 0.0], high=[2.0, 1.0])


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_extra_dimensions(reduction):
    target = _labels((2, 4, 3), 3, seed=2, ignore_fraction=0.2)
    check_op([(2, 3, 4, 3)], lambda x: F.cross_entropy(x, target, reduction=reduction, label_smoothing=0.1),
             lambda x: ce_ref(x, target, reduction=reduction, label_smoothing=0.1))
    probabilities = _probabilities((2, 3, 5), seed=4)
    check_op([(2, 3, 5)], lambda x: F.cross_entropy(x, probabilities, reduction=reduction),
             lambda x: ce_ref(x, probabilities.astype(np.float64), reduction=reduction))


def test_cross_entropy_unbatched_input():
    check_op([(5,)], lambda x: F.cross_entropy(x, 3), lambda x: ce_ref(x[None], np.array([3])))
    check_op([(5,)], lambda x: F.cross_entropy(x, np.int64(1), reduction="none"),
             lambda x: ce_ref(x[None], np.array([1]), reduction="none")[0])


def test_cross_entropy_is_stable_for_large_logits():
    x = fastnn.tensor([[1e4, 0.0, -1e4], [-1e4, -1e4, 1e4], [3e4, 3e4, -3e4]], requires_grad=True)
    loss = F.cross_entropy(x, np.array([1, 2, 0]), reduction="none")
    np.testing.assert_allclose(loss.detach().numpy(), [1e4, 0, math.log(2)], rtol=1e-6)
    loss.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [[1, -1, 0], [0, 0, 0], [-0.5, 0.5, 0]], atol=1e-7)


def test_cross_entropy_all_ignored_is_nan_with_zero_gradient_like_pytorch():
    x = fastnn.zeros(2, 3, requires_grad=True)
    loss = F.cross_entropy(x, np.array([-100, -100]), label_smoothing=0.1)
    assert math.isnan(loss.item())
    loss.backward()
    np.testing.assert_array_equal(x.grad.numpy(), 0)
    assert F.cross_entropy(fastnn.zeros(2, 3), np.array([-100, -100]), reduction="sum").item() == 0


def test_cross_entropy_is_independent_of_the_thread_count():
    x32, = random_inputs([(4099, 67)], low=-8, high=8)
    target = _labels((4099,), 67, ignore_fraction=0.1)
    weight = np.random.default_rng(1).uniform(0.5, 2, 67).astype(np.float32)
    results = []
    for n in (1, 2, 3):
        with fastnn.threads(n):
            x = fastnn.tensor(x32, requires_grad=True)
            loss = F.cross_entropy(x, target, weight=weight, label_smoothing=0.1)
            loss.backward()
            results.append((loss.item(), x.grad.numpy()))
    for loss, grad in results[1:]:
        assert loss == results[0][0]
        np.testing.assert_array_equal(grad, results[0][1])
    np.testing.assert_allclose(results[0][0], ce_ref(x32.astype(np.float64), target, weight.astype(np.float64),
                                                     label_smoothing=0.1), rtol=1e-5)


def test_cross_entropy_accepts_labels_as_float_tensors_and_lists():
    x = fastnn.tensor(random_inputs([(3, 4)])[0])
    expected = F.cross_entropy(x, np.array([0, 3, 1])).item()
    assert F.cross_entropy(x, fastnn.tensor([0, 3, 1])).item() == expected
    assert F.cross_entropy(x, [0, 3, 1]).item() == expected
    assert F.cross_entropy(x, np.array([0, 3, 1], np.int32)).item() == expected


def test_cross_entropy_bad_inputs():
    x = fastnn.zeros(3, 4)
    with pytest.raises(ValueError, match=r"target\[1\] = 4 is out of range for 4 classes"):
        F.cross_entropy(x, np.array([0, 4, 1]))
    with pytest.raises(ValueError, match=r"target\[2\] = -1 is out of range"):
        F.cross_entropy(x, np.array([0, 1, -1]))
    with pytest.raises(ValueError, match=r"target shape \(4,\) fits input shape \(3, 4\) neither as class indices, "
                                         r"shape \(3,\)"):
        F.cross_entropy(x, np.array([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="must be whole numbers"):
        F.cross_entropy(x, np.array([0.0, 1.5, 2.0]))
    with pytest.raises(TypeError, match="must be integers, got dtype bool"):
        F.cross_entropy(x, np.array([True, False, True]))
    with pytest.raises(ValueError, match=r"weight must have one value per class, shape \(4,\), got \(3,\)"):
        F.cross_entropy(x, np.array([0, 1, 2]), weight=np.ones(3))
    with pytest.raises(ValueError, match=r"label_smoothing must be a number in \[0, 1\], got 1.5"):
        F.cross_entropy(x, np.array([0, 1, 2]), label_smoothing=1.5)
    with pytest.raises(ValueError, match="reduction must be"):
        F.cross_entropy(x, np.array([0, 1, 2]), reduction="batchmean")
    with pytest.raises(ValueError, match="must have a class axis"):
        F.cross_entropy(fastnn.tensor(1.0), np.array(0))


def test_cross_entropy_binding_checks_its_arguments():
    x = np.zeros((3, 4), np.float32)
    t = np.array([0, 1, 2])
    with pytest.raises(TypeError, match="'logits' must be float32, got float64"):
        _C.cross_entropy_forward(x.astype(np.float64), t)
    with pytest.raises(ValueError, match=r"'logits' must be 2-D of shape \(N, C\), got shape \(3, 4, 1\)"):
        _C.cross_entropy_forward(x[..., None], t)
    with pytest.raises(TypeError, match="class indices\\) must be int64, got int32"):
        _C.cross_entropy_forward(x, t.astype(np.int32))
    with pytest.raises(ValueError, match=r"must have shape \(3,\) for logits of shape \(3, 4\), got \(2,\)"):
        _C.cross_entropy_forward(x, t[:2])
    with pytest.raises(TypeError, match=r"read as class probabilities of shape \(3, 4\), got shape \(3,\)"):
        _C.cross_entropy_forward(x, t.astype(np.float32))
    with pytest.raises(ValueError, match=r"probabilities\) must have shape \(3, 4\) like 'logits', got \(3, 5\)"):
        _C.cross_entropy_forward(x, np.zeros((3, 5), np.float32))
    with pytest.raises(ValueError, match=r"'weight' must have shape \(4,\), got shape \(3,\)"):
        _C.cross_entropy_forward(x, t, weight=np.ones(3, np.float32))
    with pytest.raises(ValueError, match="at least one class"):
        _C.cross_entropy_forward(np.zeros((3, 0), np.float32), t)
    with pytest.raises(ValueError, match="reduction must be 'none', 'mean' or 'sum', got 'max'"):
        _C.cross_entropy_forward(x, t, reduction="max")
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\]"):
        _C.cross_entropy_forward(x, t, label_smoothing=-0.1)
    loss, lse = _C.cross_entropy_forward(x, t)
    assert loss.shape == () and lse.dtype == np.float64 and lse.shape == (3,)
    with pytest.raises(ValueError, match=r"'lse' must be the contiguous float64 array of shape \(3,\)"):
        _C.cross_entropy_backward(np.ones(1, np.float32), x, t, lse.astype(np.float32))
    with pytest.raises(ValueError, match=r"'grad_loss' must have shape \(3,\)"):
        _C.cross_entropy_backward(np.ones(1, np.float32), x, t, lse, reduction="none")
    grad = _C.cross_entropy_backward(np.ones(1, np.float32), x, t, lse)
    assert grad.shape == (3, 4) and grad.dtype == np.float32


# ---------------------------------------------------------------------------------------------
# nll_loss

@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted, ignore", [(False, False), (True, True)])
def test_nll_loss(reduction, weighted, ignore):
    weight = np.random.default_rng(3).uniform(0.2, 2, 5).astype(np.float32) if weighted else None
    target = _labels((7,), 5, ignore_fraction=0.3 if ignore else 0.0)
    check_op([(7, 5)], lambda x: F.nll_loss(x, target, weight, reduction=reduction),
             lambda x: nll_ref(x, target, None if weight is None else weight.astype(np.float64), reduction=reduction))


def test_nll_loss_extra_dimensions_and_unbatched():
    target = _labels((2, 3), 4, ignore_fraction=0.2)
    check_op([(2, 4, 3)], lambda x: F.nll_loss(x, target, reduction="none"),
             lambda x: nll_ref(x, target, reduction="none"))
    check_op([(4,)], lambda x: F.nll_loss(x, 2), lambda x: -x[2])


def test_log_softmax_then_nll_equals_cross_entropy():
    x = fastnn.tensor(random_inputs([(6, 5)])[0])
    target = _labels((6,), 5, ignore_fraction=0.3)
    weight = np.linspace(0.5, 2, 5).astype(np.float32)
    np.testing.assert_allclose(F.nll_loss(F.log_softmax(x, 1), target, weight).item(),
                               F.cross_entropy(x, target, weight).item(), rtol=1e-6)


def test_nll_loss_bad_inputs():
    with pytest.raises(ValueError, match=r"target\[1\] = 5 is out of range for 5 classes"):
        F.nll_loss(fastnn.zeros(2, 5), np.array([0, 5]))
    with pytest.raises(ValueError, match="for class probabilities use cross_entropy"):
        F.nll_loss(fastnn.zeros(2, 5), np.zeros((2, 5)))


# ---------------------------------------------------------------------------------------------
# loss modules

@pytest.mark.parametrize("module, functional, args", [
    (nn.MSELoss(reduction="sum"), lambda x, y: F.mse_loss(x, y, reduction="sum"), "regression"),
    (nn.L1Loss(), F.l1_loss, "regression"),
    (nn.HuberLoss(delta=0.5), lambda x, y: F.huber_loss(x, y, delta=0.5), "regression"),
    (nn.BCELoss(weight=np.full(4, 2.0)), lambda x, y: F.binary_cross_entropy(x, y, np.full(4, 2.0)), "binary"),
    (nn.BCEWithLogitsLoss(pos_weight=np.full(4, 3.0)),
     lambda x, y: F.binary_cross_entropy_with_logits(x, y, pos_weight=np.full(4, 3.0)), "binary"),
    (nn.CrossEntropyLoss(label_smoothing=0.1, ignore_index=1),
     lambda x, t: F.cross_entropy(x, t, ignore_index=1, label_smoothing=0.1), "classes"),
    (nn.NLLLoss(weight=np.arange(1.0, 5.0)), lambda x, t: F.nll_loss(x, t, np.arange(1.0, 5.0)), "classes"),
], ids=lambda v: type(v).__name__ if isinstance(v, nn.Module) else "")
def test_loss_modules_call_their_function(module, functional, args):
    x = fastnn.tensor(random_inputs([(3, 4)], low=0.1, high=0.9)[0])
    y = np.array([0, 1, 3]) if args == "classes" else random_inputs([(3, 4)], low=0.0, high=1.0, seed=2)[0]
    assert module(x, y).item() == functional(x, y).item()
    config = json.loads(json.dumps(module.get_config()))
    assert repr(type(module).from_config(config)) == repr(module)


def test_loss_module_repr_shows_what_differs_from_the_defaults():
    assert repr(nn.MSELoss()) == "MSELoss()"
    assert repr(nn.CrossEntropyLoss(reduction="sum", label_smoothing=0.1)) == \
        "CrossEntropyLoss(reduction='sum', label_smoothing=0.1)"
    assert repr(nn.BCELoss(weight=np.ones(3))) == "BCELoss(weight=<array of shape (3,)>)"
    with pytest.raises(ValueError, match="MSELoss: reduction must be"):
        nn.MSELoss(reduction="avg")


# ---------------------------------------------------------------------------------------------
# PyTorch as an extra oracle: values and input gradients

@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch", reason="torch not installed")


def _compare_with_torch(torch, ours, theirs, inputs, rtol=1e-5, atol=1e-6):
    """ours(*fastnn tensors) and theirs(*torch tensors) on the same float32 inputs."""
    mine = [fastnn.tensor(a, requires_grad=True) for a in inputs]
    refs = [torch.tensor(a, requires_grad=True) for a in inputs]
    out, ref = ours(*mine), theirs(*refs)
    np.testing.assert_allclose(out.detach().numpy(), ref.detach().numpy(), rtol=rtol, atol=atol)
    upstream = np.random.default_rng(0).standard_normal(ref.shape).astype(np.float32)
    out.backward(upstream)
    ref.backward(torch.from_numpy(upstream))
    for a, b in zip(mine, refs):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=rtol, atol=atol)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_losses_match_pytorch(torch, reduction):
    tf = torch.nn.functional
    x, y = random_inputs([(3, 17), (3, 17)], low=[-3.0, 0.0], high=[3.0, 1.0])
    p = 1 / (1 + np.exp(-x))
    w = np.random.default_rng(1).uniform(0.5, 2, 17).astype(np.float32)
    r = dict(reduction=reduction)
    _compare_with_torch(torch, lambda a, b: F.mse_loss(a, b, **r), lambda a, b: tf.mse_loss(a, b, **r), [x, y])
    _compare_with_torch(torch, lambda a, b: F.l1_loss(a, b, **r), lambda a, b: tf.l1_loss(a, b, **r), [x, y])
    _compare_with_torch(torch, lambda a, b: F.huber_loss(a, b, delta=0.7, **r),
                        lambda a, b: tf.huber_loss(a, b, delta=0.7, **r), [x, y])
    _compare_with_torch(torch, lambda a, b: F.binary_cross_entropy(a, b, w, **r),
                        lambda a, b: tf.binary_cross_entropy(a, b, torch.from_numpy(w), **r), [p, y])
    _compare_with_torch(torch, lambda a, b: F.binary_cross_entropy_with_logits(a, b, **r, pos_weight=w),
                        lambda a, b: tf.binary_cross_entropy_with_logits(a, b, **r, pos_weight=torch.from_numpy(w)),
                        [x * 10, y])


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_and_nll_match_pytorch(torch, reduction):
    tf = torch.nn.functional
    x, = random_inputs([(17, 5)], low=-5.0, high=5.0)
    w = np.random.default_rng(1).uniform(0.2, 2, 5).astype(np.float32)
    t = _labels((17,), 5, ignore_fraction=0.2, ignore_index=2)
    tt, tw = torch.from_numpy(t), torch.from_numpy(w)
    r = dict(reduction=reduction)
    _compare_with_torch(torch, lambda a: F.cross_entropy(a, t, w, ignore_index=2, label_smoothing=0.15, **r),
                        lambda a: tf.cross_entropy(a, tt, tw, ignore_index=2, label_smoothing=0.15, **r), [x])
    q = _probabilities((17, 5))
    _compare_with_torch(torch, lambda a, b: F.cross_entropy(a, b, w, label_smoothing=0.2, **r),
                        lambda a, b: tf.cross_entropy(a, b, tw, label_smoothing=0.2, **r), [x, q])
    _compare_with_torch(torch, lambda a: F.nll_loss(a, t, w, ignore_index=2, **r),
                        lambda a: tf.nll_loss(a, tt, tw, ignore_index=2, **r), [x])
    x4, = random_inputs([(2, 3, 4, 5)])
    t4 = _labels((2, 4, 5), 3, ignore_fraction=0.2)
    _compare_with_torch(torch, lambda a: F.cross_entropy(a, t4, label_smoothing=0.1, **r),
                        lambda a: tf.cross_entropy(a, torch.from_numpy(t4), label_smoothing=0.1, **r), [x4])
