"""Fused optimizers, EMA and gradient clipping: against float64 references of PyTorch's published
rules (tests/reference.py), against PyTorch itself when installed, at 1 and 2 threads and on the
portable kernel, plus the bad inputs of every _C entry point."""
import importlib.util
import math
import pathlib

import numpy as np
import pytest

import fastnn
from fastnn import _C, optim
from fastnn.optim.optimizer import Optimizer

from reference import (adagrad_ref, adam_ref, ema_ref, rmsprop_ref, sgd_ref, total_norm_ref)

SHAPES = [(1,), (3,), (17,), (5, 13), (10, 100)]  # 1, 3, 17, 65 and 1000 elements
STEPS = 5
SKIPPED = (1, 2)  # (parameter, step) without a gradient: skipped, as in PyTorch

CASES = [
    ("SGD", {}),
    ("SGD", {"momentum": 0.9}),
    ("SGD", {"momentum": 0.9, "dampening": 0.3}),
    ("SGD", {"momentum": 0.9, "nesterov": True}),
    ("SGD", {"weight_decay": 0.1}),
    ("SGD", {"momentum": 0.9, "nesterov": True, "weight_decay": 0.1, "maximize": True}),
    ("SGD", {"momentum": 0.5, "dampening": 0.5, "weight_decay": 0.01, "maximize": True}),
    ("Adagrad", {}),
    ("Adagrad", {"lr_decay": 0.1}),
    ("Adagrad", {"weight_decay": 0.1, "initial_accumulator_value": 0.5}),
    ("Adagrad", {"eps": 1e-3, "maximize": True}),
    ("RMSprop", {}),
    ("RMSprop", {"centered": True}),
    ("RMSprop", {"momentum": 0.9}),
    ("RMSprop", {"centered": True, "momentum": 0.9, "weight_decay": 0.1}),
    ("RMSprop", {"alpha": 0.5, "maximize": True}),
    ("Adam", {}),
    ("Adam", {"amsgrad": True}),
    ("Adam", {"weight_decay": 0.1}),
    ("Adam", {"betas": (0.5, 0.9), "amsgrad": True, "weight_decay": 0.1, "maximize": True}),
    ("AdamW", {}),
    ("AdamW", {"amsgrad": True}),
    ("AdamW", {"weight_decay": 0.5, "betas": (0.8, 0.99)}),
    ("AdamW", {"maximize": True, "amsgrad": True}),
]
CASE_IDS = [f"{name}-{'-'.join(f'{k}={v}' for k, v in kw.items()) or 'default'}" for name, kw in CASES]
LR = 0.05

REFERENCES = {"SGD": sgd_ref, "Adagrad": adagrad_ref, "RMSprop": rmsprop_ref, "Adam": adam_ref,
              "AdamW": lambda p, g, s, **kw: adam_ref(p, g, s, decoupled=True, **kw)}


def with_defaults(name, kw):
    """The reference functions' keywords: AdamW's default weight decay differs from Adam's."""
    kw = dict(kw, lr=LR)
    if name == "AdamW":
        kw.setdefault("weight_decay", 1e-2)
    return kw


def problem(shapes=SHAPES, steps=STEPS, seed=0):
    """float32 initial parameters and one gradient per parameter and step (None where skipped)."""
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [[None if (i, t) == SKIPPED else rng.standard_normal(s).astype(np.float32)
              for i, s in enumerate(shapes)] for t in range(steps)]
    return params, grads


def run_fastnn(name, kw, params, grads):
    tensors = [fastnn.tensor(p, requires_grad=True) for p in params]
    opt = getattr(optim, name)(tensors, lr=LR, **kw)
    for step_grads in grads:
        for t, g in zip(tensors, step_grads):
            t.grad = None if g is None else fastnn.tensor(g)
        opt.step()
    return [t.data for t in tensors], opt


def run_reference(name, kw, params, grads):
    ref = REFERENCES[name]
    kw = with_defaults(name, kw)
    values = [p.astype(np.float64) for p in params]
    states = [{} for _ in params]
    for step_grads in grads:
        for i, g in enumerate(step_grads):
            if g is not None:
                values[i] = ref(values[i], g.astype(np.float64), states[i], **kw)
    return values


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch", reason="torch not installed")


def nn_utils():
    """fastnn.nn.utils, or the file itself while fastnn.nn is not importable."""
    try:
        from fastnn.nn import utils
        return utils
    except ImportError:
        path = pathlib.Path(fastnn.__file__).parent / "nn" / "utils.py"
        spec = importlib.util.spec_from_file_location("fastnn_nn_utils", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module


# ---- update rules ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name,kw", CASES, ids=CASE_IDS)
def test_matches_reference(name, kw):
    params, grads = problem()
    got, _ = run_fastnn(name, kw, params, grads)
    want = run_reference(name, kw, params, grads)
    for i, (g, w) in enumerate(zip(got, want)):
        assert g.dtype == np.float32 and g.shape == SHAPES[i]
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5, err_msg=f"parameter {i}")
    skipped_param = SKIPPED[0]
    assert not np.array_equal(got[skipped_param], params[skipped_param])


@pytest.mark.parametrize("name,kw", CASES, ids=CASE_IDS)
def test_matches_torch(name, kw, torch):
    params, grads = problem()
    got, opt = run_fastnn(name, kw, params, grads)
    tparams = [torch.tensor(p, requires_grad=True) for p in params]
    topt = getattr(torch.optim, name)(tparams, lr=LR, foreach=False, **kw)
    for step_grads in grads:
        for t, g in zip(tparams, step_grads):
            t.grad = None if g is None else torch.tensor(g)
        topt.step()
    for i, (g, t) in enumerate(zip(got, tparams)):
        np.testing.assert_allclose(g, t.detach().numpy(), rtol=2e-6, atol=2e-6, err_msg=f"parameter {i}")
    # the same state, under the same names
    for i, t in enumerate(tparams):
        tstate, state = topt.state[t], opt.state[opt.param_groups[0]["params"][i]]
        for key, value in tstate.items():
            if key == "step":
                assert state[key] == int(value)
            elif value is not None:
                want = value.numpy()
                np.testing.assert_allclose(state[key], want, rtol=1e-5, atol=1e-6 * (1 + np.abs(want).max()),
                                           err_msg=key)


@pytest.mark.parametrize("name,kw", [CASES[5], CASES[10], CASES[14], CASES[19], CASES[23]],
                         ids=[CASE_IDS[i] for i in (5, 10, 14, 19, 23)])
def test_same_result_at_1_and_2_threads(name, kw):
    # big enough for two threads, with the cut falling inside the big tensor at an odd place
    shapes = SHAPES + [(200003,), (7,)]
    params, grads = problem(shapes, steps=3, seed=1)
    with fastnn.threads(1):
        one, _ = run_fastnn(name, kw, params, grads)
    with fastnn.threads(2):
        two, _ = run_fastnn(name, kw, params, grads)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)


LOWER_ISAS = [isa for isa in ("ref", "avx2") if isa in _C.config()["isa_supported"] and isa != _C.best_isa()]


@pytest.mark.parametrize("isa", LOWER_ISAS)
@pytest.mark.parametrize("name,kw", CASES, ids=CASE_IDS)
def test_lower_isa_kernels_match(name, kw, isa):
    params, grads = problem()
    best, _ = run_fastnn(name, kw, params, grads)
    previous = _C.get_isa()
    _C.set_isa(isa)
    try:
        portable, _ = run_fastnn(name, kw, params, grads)
    finally:
        _C.set_isa(previous)
    for a, b in zip(best, portable):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_param_groups_use_their_own_hyper_parameters():
    params, grads = problem(steps=2)
    a = [fastnn.tensor(p, requires_grad=True) for p in params]
    opt = optim.SGD([{"params": a[:2]}, {"params": a[2:], "lr": 0.5, "momentum": 0.9}], lr=0.1)
    assert opt.param_groups[0]["lr"] == 0.1 and opt.param_groups[0]["momentum"] == 0.0
    assert opt.param_groups[1]["lr"] == 0.5
    want = [p.astype(np.float64) for p in params]
    states = [{} for _ in params]
    for step_grads in grads:
        for i, (t, g) in enumerate(zip(a, step_grads)):
            t.grad = None if g is None else fastnn.tensor(g)
            if g is not None:
                kw = {"lr": 0.1} if i < 2 else {"lr": 0.5, "momentum": 0.9}
                want[i] = sgd_ref(want[i], g.astype(np.float64), states[i], **kw)
        opt.step()
    for t, w in zip(a, want):
        np.testing.assert_allclose(t.data, w, rtol=1e-5, atol=1e-6)


def test_changing_lr_between_steps_takes_effect():
    p = fastnn.tensor(np.ones(4, np.float32), requires_grad=True)
    opt = optim.SGD([p], lr=0.1)
    p.grad = fastnn.tensor(np.ones(4, np.float32))
    opt.step()
    opt.param_groups[0]["lr"] = 0.01  # what a scheduler does
    opt.step()
    np.testing.assert_allclose(p.data, 1 - 0.1 - 0.01, rtol=1e-6)


def test_step_runs_closure_and_returns_its_loss():
    p = fastnn.tensor(np.ones(3, np.float32), requires_grad=True)
    opt = optim.Adam([p], lr=0.1)
    calls = []

    def closure():
        calls.append(1)
        p.grad = fastnn.tensor(np.ones(3, np.float32))
        return 42.0
    assert opt.step(closure) == 42.0 and calls == [1]
    assert opt.state[p]["step"] == 1


def test_step_without_gradients_changes_nothing():
    p = fastnn.tensor(np.ones(3, np.float32), requires_grad=True)
    opt = optim.Adam([p])
    assert opt.step() is None
    np.testing.assert_array_equal(p.data, 1.0)
    assert len(opt.state) == 0


def test_grad_may_be_a_plain_array():
    p = fastnn.tensor(np.ones(3, np.float32), requires_grad=True)
    p.grad = np.ones(3, np.float32)
    optim.SGD([p], lr=0.5).step()
    np.testing.assert_allclose(p.data, 0.5)


def test_zero_grad():
    a = fastnn.tensor(np.ones(3, np.float32), requires_grad=True)
    b = fastnn.tensor(np.ones(2, np.float32), requires_grad=True)
    opt = optim.SGD([a, b], lr=0.1)
    a.grad = fastnn.tensor(np.ones(3, np.float32))
    opt.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(a.grad.data, 0.0)
    assert b.grad is None
    opt.zero_grad()
    assert a.grad is None


def test_trains_a_tiny_model():
    # the loss of a quadratic bowl falls under every optimizer
    rng = np.random.default_rng(3)
    target = rng.standard_normal(10).astype(np.float32)
    for name, kw in [("SGD", {"lr": 0.1, "momentum": 0.9}), ("Adagrad", {"lr": 0.5}), ("RMSprop", {"lr": 0.05}),
                     ("Adam", {"lr": 0.1}), ("AdamW", {"lr": 0.1})]:
        w = fastnn.zeros(10, requires_grad=True)
        opt = getattr(optim, name)([w], **kw)
        for _ in range(60):
            opt.zero_grad()
            loss = ((w - fastnn.tensor(target)) ** 2).sum()
            loss.backward()
            opt.step()
        assert float(((w.data - target) ** 2).sum()) < 0.05 * float((target ** 2).sum()), name


# ---- state dicts ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name,kw", [CASES[1], CASES[9], CASES[14], CASES[19], CASES[21]],
                         ids=[CASE_IDS[i] for i in (1, 9, 14, 19, 21)])
def test_state_dict_round_trip(name, kw):
    params, grads = problem(steps=5)
    first = [fastnn.tensor(p, requires_grad=True) for p in params]
    opt = getattr(optim, name)(first, lr=LR, **kw)

    def run(tensors, o, step_grads):
        for t, g in zip(tensors, step_grads):
            t.grad = None if g is None else fastnn.tensor(g)
        o.step()

    for step_grads in grads[:3]:
        run(first, opt, step_grads)
    saved = opt.state_dict()
    assert sorted(saved["state"]) == list(range(len(params)))
    assert saved["param_groups"][0]["params"] == list(range(len(params)))

    second = [fastnn.tensor(t.data.copy(), requires_grad=True) for t in first]
    opt2 = getattr(optim, name)(second, lr=1.0)  # the loaded groups bring back lr
    opt2.load_state_dict(saved)
    assert opt2.param_groups[0]["lr"] == LR
    for step_grads in grads[3:]:
        run(first, opt, step_grads)
        run(second, opt2, step_grads)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a.data, b.data)
    # loading copied the buffers
    for key, value in opt2.state[second[0]].items():
        if isinstance(value, np.ndarray):
            assert not np.shares_memory(value, opt.state[first[0]][key])


def test_load_state_dict_errors():
    a = fastnn.tensor(np.ones(3, np.float32), requires_grad=True)
    opt = optim.Adam([a])
    a.grad = fastnn.tensor(np.ones(3, np.float32))
    opt.step()
    saved = opt.state_dict()
    b = fastnn.tensor(np.ones(4, np.float32), requires_grad=True)
    with pytest.raises(ValueError, match="has shape \\(3,\\), expected \\(4,\\)"):
        optim.Adam([b]).load_state_dict(saved)
    with pytest.raises(ValueError, match="doesn't match the size"):
        optim.Adam([a, b]).load_state_dict(saved)
    with pytest.raises(ValueError, match="different number of parameter groups"):
        optim.Adam([{"params": [a]}, {"params": [b]}]).load_state_dict(saved)
    with pytest.raises(ValueError, match="'state' and 'param_groups'"):
        optim.Adam([a]).load_state_dict({"state": {}})


# ---- construction errors --------------------------------------------------------------------------

def test_constructor_errors():
    p = fastnn.tensor(np.ones(3, np.float32), requires_grad=True)
    q = fastnn.tensor(np.ones(3, np.float32), requires_grad=True)
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([])
    with pytest.raises(TypeError, match="iterable of Tensors"):
        optim.SGD(p)
    with pytest.raises(TypeError, match="ordered collections"):
        optim.SGD({p})
    with pytest.raises(TypeError, match="params\\[1\\] is ndarray"):
        optim.SGD([p, np.ones(3)])
    with pytest.raises(ValueError, match="more than once"):
        optim.SGD([p, p])
    with pytest.raises(ValueError, match="more than one parameter group"):
        optim.SGD([{"params": [p]}, {"params": [p, q]}])
    with pytest.raises(ValueError, match="non-leaf"):
        optim.SGD([p * 2])
    with pytest.raises(ValueError, match="Invalid learning rate: -1"):
        optim.Adam([p], lr=-1)
    with pytest.raises(ValueError, match="Invalid beta parameter at index 1: 1.0"):
        optim.Adam([p], betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="Nesterov momentum requires"):
        optim.SGD([p], nesterov=True)
    with pytest.raises(ValueError, match="Invalid alpha value"):
        optim.RMSprop([p], alpha=-0.1)
    with pytest.raises(ValueError, match="Invalid lr_decay value"):
        optim.Adagrad([p], lr_decay=-0.1)
    with pytest.raises(TypeError, match="must be a dict"):
        optim.SGD([p]).add_param_group([q])
    opt = optim.SGD([p], lr=0.1)
    opt.add_param_group({"params": q, "lr": 0.2})
    assert opt.param_groups[1]["params"] == [q] and opt.param_groups[1]["momentum"] == 0.0
    assert "Parameter Group 1" in repr(opt) and "lr: 0.2" in repr(opt)
    assert isinstance(opt, Optimizer)


# ---- bad inputs of the _C entry points -----------------------------------------------------------

def f32(*shape):
    return np.zeros(shape, np.float32)


def test_c_step_bad_inputs():
    p, g, m, v = [f32(3), f32(2, 2)], [f32(3), f32(2, 2)], [f32(3), f32(2, 2)], [f32(3), f32(2, 2)]
    kw = dict(lr=0.1, step=1)
    with pytest.raises(TypeError, match="argument 'params' must be a list"):
        _C.adam_step(p[0], g, m, v, [], **kw)
    with pytest.raises(TypeError, match="'grads\\[1\\]' must be a numpy.ndarray, got list"):
        _C.adam_step(p, [g[0], [1.0]], m, v, [], **kw)
    with pytest.raises(TypeError, match="'exp_avgs\\[0\\]' must be float32, got float64"):
        _C.adam_step(p, g, [np.zeros(3), m[1]], v, [], **kw)
    with pytest.raises(ValueError, match="'exp_avg_sqs\\[1\\]' must have the shape of params\\[1\\], "
                                         "\\(2, 2\\), got \\(4,\\)"):
        _C.adam_step(p, g, m, [v[0], f32(4)], [], **kw)
    with pytest.raises(ValueError, match="'grads' must hold 2 arrays"):
        _C.adam_step(p, g[:1], m, v, [], **kw)
    with pytest.raises(ValueError, match="'max_exp_avg_sqs' must hold 2 arrays.*amsgrad"):
        _C.adam_step(p, g, m, v, [], amsgrad=True, **kw)
    with pytest.raises(ValueError, match="'params\\[1\\]' of shape \\(2, 2\\) must be C-contiguous"):
        _C.adam_step([p[0], np.zeros((2, 2), np.float32, order="F")[:, :]], g, m, v, [], **kw)
    readonly = f32(3)
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="'params\\[0\\]' is read-only"):
        _C.adam_step([readonly, p[1]], g, m, v, [], **kw)
    with pytest.raises(ValueError, match="'exp_avgs\\[0\\]' shares memory with 'params\\[0\\]'"):
        _C.adam_step(p, g, [p[0], m[1]], v, [], **kw)
    big = f32(6)
    with pytest.raises(ValueError, match="shares memory"):  # a state overlapping another parameter
        _C.adam_step([big[:3], p[1]], g, [big[2:5], m[1]], v, [], **kw)
    with pytest.raises(ValueError, match="'step' counts steps from 1"):
        _C.adam_step(p, g, m, v, [], lr=0.1, step=0)
    with pytest.raises(TypeError, match="'step' must be an int, got float"):
        _C.adam_step(p, g, m, v, [], lr=0.1, step=1.5)
    with pytest.raises(ValueError, match="list of 2 ints"):
        _C.adam_step(p, g, m, v, [], lr=0.1, step=[1])
    with pytest.raises(ValueError, match="nesterov needs momentum > 0"):
        _C.sgd_step(p, g, m, lr=0.1, momentum=0.0, nesterov=True)
    with pytest.raises(ValueError, match="'momentum_buffers' must hold 2 arrays.*momentum != 0"):
        _C.sgd_step(p, g, [], lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="'new_buffers' must hold 2 bools"):
        _C.sgd_step(p, g, m, lr=0.1, momentum=0.9, new_buffers=[True])
    with pytest.raises(ValueError, match="'state_sums\\[0\\]' must have the shape"):
        _C.adagrad_step(p, g, [f32(1), m[1]], lr=0.1, step=1)
    with pytest.raises(ValueError, match="'grad_avgs' must hold 2 arrays.*centered"):
        _C.rmsprop_step(p, g, m, [], [], lr=0.1, centered=True)
    with pytest.raises(ValueError, match="'momentum_buffers' must hold 2 arrays.*momentum > 0"):
        _C.rmsprop_step(p, g, m, [], [], lr=0.1, momentum=0.5)
    # the optimizer reports the _C error naming the argument
    t = fastnn.tensor(np.ones(3, np.float32), requires_grad=True)
    t.grad = fastnn.tensor(np.ones(4, np.float32))
    with pytest.raises(ValueError, match="'grads\\[0\\]' must have the shape of params\\[0\\], \\(3,\\), got \\(4,\\)"):
        optim.Adam([t]).step()


def test_c_clip_ema_copy_bad_inputs():
    with pytest.raises(ValueError, match="norm_type must be > 0"):
        _C.clip_grad_norm([f32(3)], max_norm=1.0, norm_type=0.0)
    with pytest.raises(TypeError, match="'grads\\[0\\]' must be float32"):
        _C.clip_grad_norm([np.zeros(3)], max_norm=1.0)
    a = f32(4)
    with pytest.raises(ValueError, match="'grads\\[1\\]' shares memory with 'grads\\[0\\]'"):
        _C.clip_grad_norm([a, a], max_norm=1.0)
    with pytest.raises(ValueError, match="clip_value must be a number"):
        _C.clip_grad_value([f32(3)], clip_value=float("nan"))
    with pytest.raises(ValueError, match="decay must be in \\[0, 1\\]"):
        _C.ema_update([f32(3)], [f32(3)], decay=1.5)
    with pytest.raises(ValueError, match="'params\\[0\\]' must have the shape of shadows\\[0\\]"):
        _C.ema_update([f32(3)], [f32(2)], decay=0.5)
    with pytest.raises(ValueError, match="'src' must hold 1 arrays"):
        _C.copy_buffers([f32(3)], [])
    with pytest.raises(ValueError, match="'src\\[0\\]' shares memory with 'dst\\[0\\]'"):
        _C.copy_buffers([a], [a])
    ro = f32(3)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="'dst\\[0\\]' is read-only"):
        _C.copy_buffers([ro], [f32(3)])


def test_c_empty_lists_and_empty_arrays():
    _C.adam_step([], [], [], [], [], lr=0.1, step=1)
    _C.sgd_step([f32(0)], [f32(0)], [], lr=0.1)
    assert _C.clip_grad_norm([], max_norm=1.0) == 0.0
    assert _C.clip_grad_norm([f32(0), f32(2, 0)], max_norm=1.0) == 0.0


# ---- EMA ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("warmup", [False, True])
def test_ema_math(warmup):
    params, grads = problem(steps=4)
    tensors = [fastnn.tensor(p, requires_grad=True) for p in params]
    ema = optim.EMA(tensors, decay=0.9, warmup=warmup)
    shadow = [p.astype(np.float64) for p in params]
    rng = np.random.default_rng(5)
    for n in range(4):
        for t in tensors:
            t.data[...] = rng.standard_normal(t.shape).astype(np.float32)
        decay = min(0.9, (1 + n) / (10 + n)) if warmup else 0.9
        assert ema.current_decay() == pytest.approx(decay)
        ema.update()
        shadow = [ema_ref(s, t.data.astype(np.float64), decay) for s, t in zip(shadow, tensors)]
    assert ema.num_updates == 4
    for got, want in zip(ema.shadow, shadow):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_ema_warmup_values():
    ema = optim.EMA([fastnn.zeros(2)], decay=0.999)
    values = []
    for _ in range(3):
        values.append(ema.current_decay())
        ema.update()
    assert values == pytest.approx([0.1, 2 / 11, 3 / 12])
    ema.num_updates = 10 ** 6
    assert ema.current_decay() == 0.999


class _Model:
    def __init__(self, params):
        self._params = params

    def parameters(self):
        return iter(self._params)


def test_ema_swaps_weights_in_and_back():
    a, b = fastnn.tensor(np.ones(5, np.float32)), fastnn.tensor(np.full((2, 3), 2.0, np.float32))
    ema = optim.EMA(_Model([a, b]), decay=0.5, warmup=False)
    a.data[...] = 3.0
    b.data[...] = 4.0
    ema.update()  # shadows: 2 and 3
    with ema.average_parameters():
        np.testing.assert_array_equal(a.data, 2.0)
        np.testing.assert_array_equal(b.data, 3.0)
    np.testing.assert_array_equal(a.data, 3.0)
    np.testing.assert_array_equal(b.data, 4.0)
    with pytest.raises(RuntimeError, match="inside"):
        with ema.average_parameters():
            raise RuntimeError("inside")
    np.testing.assert_array_equal(a.data, 3.0)  # restored despite the exception
    target = [fastnn.zeros(5), fastnn.zeros(2, 3)]
    ema.copy_to(target)
    np.testing.assert_array_equal(target[1].data, 3.0)


def test_ema_state_dict_and_errors():
    a = fastnn.tensor(np.ones(4, np.float32))
    ema = optim.EMA([a], decay=0.9)
    a.data[...] = 5.0
    ema.update()
    saved = ema.state_dict()
    other = optim.EMA([fastnn.zeros(4)], decay=0.5, warmup=False)
    other.load_state_dict(saved)
    assert other.decay == 0.9 and other.warmup and other.num_updates == 1
    np.testing.assert_array_equal(other.shadow[0], ema.shadow[0])
    assert not np.shares_memory(other.shadow[0], ema.shadow[0])
    with pytest.raises(ValueError, match="shadow\\[0\\] has shape \\(4,\\), expected \\(3,\\)"):
        optim.EMA([fastnn.zeros(3)]).load_state_dict(saved)
    with pytest.raises(ValueError, match="decay must be in \\[0, 1\\]"):
        optim.EMA([a], decay=2.0)
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.EMA([])
    with pytest.raises(TypeError, match="params\\[0\\] is list"):
        optim.EMA([[1.0]])


def test_ema_same_at_1_and_2_threads():
    rng = np.random.default_rng(2)
    params = [rng.standard_normal(n).astype(np.float32) for n in (3, 300001, 5)]
    results = []
    for threads in (1, 2):
        tensors = [fastnn.tensor(p * 0.5) for p in params]
        ema = optim.EMA(tensors, decay=0.99)
        for t, p in zip(tensors, params):
            t.data[...] = p
        with fastnn.threads(threads):
            ema.update()
        results.append(ema.shadow)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


# ---- gradient clipping ----------------------------------------------------------------------------

def grad_tensors(shapes=SHAPES, scale=1.0, seed=4):
    rng = np.random.default_rng(seed)
    out = []
    for s in shapes:
        t = fastnn.tensor(rng.standard_normal(s).astype(np.float32), requires_grad=True)
        t.grad = fastnn.tensor((scale * rng.standard_normal(s)).astype(np.float32))
        out.append(t)
    return out


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf])
def test_clip_grad_norm_matches_numpy(norm_type):
    utils = nn_utils()
    params = grad_tensors()
    params.append(fastnn.tensor(np.ones(3, np.float32), requires_grad=True))  # no grad: skipped
    before = [p.grad.data.astype(np.float64) for p in params[:-1]]
    total = total_norm_ref(before, norm_type)
    max_norm = 0.25 * total
    norm = utils.clip_grad_norm_(params, max_norm, norm_type=norm_type)
    assert isinstance(norm, fastnn.Tensor)
    assert float(norm) == pytest.approx(total, rel=1e-6)
    coef = max_norm / (total + 1e-6)
    for p, b in zip(params, before):
        np.testing.assert_allclose(p.grad.data, b * coef, rtol=1e-6, atol=1e-7)
    assert params[-1].grad is None


def test_clip_grad_norm_below_max_leaves_grads():
    utils = nn_utils()
    params = grad_tensors()
    before = [p.grad.data.copy() for p in params]
    norm = float(utils.clip_grad_norm_(params, 1e6))
    assert norm == pytest.approx(total_norm_ref(before), rel=1e-6)
    for p, b in zip(params, before):
        np.testing.assert_array_equal(p.grad.data, b)
    assert float(utils.clip_grad_norm_([fastnn.zeros(3, requires_grad=True)], 1.0)) == 0.0  # no grads


def test_clip_grad_norm_nonfinite():
    utils = nn_utils()
    params = grad_tensors()
    params[2].grad.data[4] = np.nan
    before = [p.grad.data.copy() for p in params]
    with pytest.raises(RuntimeError, match="non-finite"):
        utils.clip_grad_norm_(params, 1.0, error_if_nonfinite=True)
    for p, b in zip(params, before):
        np.testing.assert_array_equal(p.grad.data, b)  # unchanged
    assert math.isnan(float(utils.clip_grad_norm_(params, 1.0)))
    assert np.isnan(params[0].grad.data).all()  # scaled by NaN, as torch does
    inf_params = grad_tensors()
    inf_params[1].grad.data[0] = np.inf
    assert float(utils.clip_grad_norm_(inf_params, 1.0, norm_type=math.inf)) == math.inf


def test_clip_grad_norm_matches_torch(torch):
    utils = nn_utils()
    for norm_type in (2.0, math.inf):
        params = grad_tensors(scale=3.0)
        tparams = [torch.tensor(p.data, requires_grad=True) for p in params]
        for t, p in zip(tparams, params):
            t.grad = torch.tensor(p.grad.data)
        norm = utils.clip_grad_norm_(params, 2.0, norm_type=norm_type)
        tnorm = torch.nn.utils.clip_grad_norm_(tparams, 2.0, norm_type=norm_type)
        assert float(norm) == pytest.approx(float(tnorm), rel=1e-5)
        for p, t in zip(params, tparams):
            np.testing.assert_allclose(p.grad.data, t.grad.numpy(), rtol=1e-5, atol=1e-7)
        utils.clip_grad_value_(params, 0.05)
        torch.nn.utils.clip_grad_value_(tparams, 0.05)
        for p, t in zip(params, tparams):
            np.testing.assert_array_equal(p.grad.data, t.grad.numpy())


def test_clip_grad_value_matches_numpy():
    utils = nn_utils()
    params = grad_tensors()
    params[0].grad.data[0] = np.nan
    before = [p.grad.data.copy() for p in params]
    assert utils.clip_grad_value_(params, 0.5) is None
    for p, b in zip(params, before):
        np.testing.assert_array_equal(p.grad.data, np.clip(b, -0.5, 0.5))  # NaN stays NaN
    single = grad_tensors(shapes=[(7,)])[0]
    utils.clip_grad_value_(single, 0.0)  # a single Tensor is accepted
    np.testing.assert_array_equal(single.grad.data, 0.0)


def test_clip_same_at_1_and_2_threads():
    utils = nn_utils()
    shapes = [(3,), (300007,), (65,), (50000,)]
    norms, grads = [], []
    for threads in (1, 2):
        params = grad_tensors(shapes, seed=7)
        with fastnn.threads(threads):
            norms.append(float(utils.clip_grad_norm_(params, 1.0)))
        grads.append([p.grad.data for p in params])
    assert norms[0] == norms[1]
    for a, b in zip(*grads):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("isa", LOWER_ISAS + [_C.best_isa()])
def test_clip_and_ema_kernels_on_every_isa(isa):
    rng = np.random.default_rng(8)
    arrays = [rng.standard_normal(n).astype(np.float32) for n in (1, 15, 16, 17, 1000, 40000)]
    previous = _C.get_isa()
    _C.set_isa(isa)
    try:
        for norm_type in (1.0, 2.0, 2.5, math.inf):
            got = _C.clip_grad_norm([a.copy() for a in arrays], max_norm=1e30, norm_type=norm_type)
            assert got == pytest.approx(total_norm_ref(arrays, norm_type), rel=1e-12)
        clipped = [a.copy() for a in arrays]
        _C.clip_grad_value(clipped, clip_value=0.3)
        shadows = [a[::-1].copy() for a in arrays]
        _C.ema_update(shadows, arrays, decay=0.75)
    finally:
        _C.set_isa(previous)
    for c, s, a in zip(clipped, shadows, arrays):
        np.testing.assert_array_equal(c, np.clip(a, -0.3, 0.3))
        np.testing.assert_allclose(s, ema_ref(a[::-1].astype(np.float64), a, 0.75), rtol=1e-6, atol=1e-7)
