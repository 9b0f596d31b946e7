"""Learning-rate schedulers: the closed-form formulas, PyTorch's schedulers as an oracle,
chaining with outside changes, warm-up, ReduceLROnPlateau, state_dict round trips, bad inputs."""
import copy
import math

import numpy as np
import pytest

from fastnn.optim import lr_scheduler as S

EPOCHS = 25
LRS = [0.1, 0.03]


class FakeOptimizer:
    """The protocol the schedulers rely on: param_groups, a list of dicts with an 'lr'."""

    def __init__(self, lrs=LRS):
        self.param_groups = [{"lr": lr, "params": []} for lr in lrs]


def run(scheduler, epochs=EPOCHS):
    """Rates at epochs 0..epochs (construction, then one step per epoch), shape (epochs+1, groups)."""
    rates = [scheduler.get_last_lr()]
    for _ in range(epochs):
        scheduler.step()
        rates.append(scheduler.get_last_lr())
    return np.array(rates)


def closed_form(formula, lrs=LRS, epochs=EPOCHS):
    return np.array([[formula(base, e) for base in lrs] for e in range(epochs + 1)])


# ---------------------------------------------------------------------------------------------
# formulas

@pytest.mark.parametrize("make, formula", [
    (lambda o: S.StepLR(o, step_size=3), lambda b, e: b * 0.1 ** (e // 3)),
    (lambda o: S.StepLR(o, step_size=1, gamma=0.5), lambda b, e: b * 0.5 ** e),
    (lambda o: S.MultiStepLR(o, [9, 2, 5, 5], gamma=0.3),
     lambda b, e: b * 0.3 ** sum(m <= e for m in [2, 5, 5, 9])),
    (lambda o: S.ExponentialLR(o, gamma=0.9), lambda b, e: b * 0.9 ** e),
    (lambda o: S.CosineAnnealingLR(o, T_max=7), lambda b, e: b * (1 + math.cos(math.pi * e / 7)) / 2),
    (lambda o: S.CosineAnnealingLR(o, T_max=10, eta_min=0.001),
     lambda b, e: 0.001 + (b - 0.001) * (1 + math.cos(math.pi * e / 10)) / 2),
    (lambda o: S.LambdaLR(o, lambda e: 0.95 ** e + 1 / (e + 1)), lambda b, e: b * (0.95 ** e + 1 / (e + 1))),
    (lambda o: S.CosineAnnealingLR(o, T_max=8, eta_min=0.002, warmup_epochs=5, warmup_start_factor=0.1),
     lambda b, e: b * (0.1 + 0.9 * e / 5) if e <= 5
     else 0.002 + (b - 0.002) * (1 + math.cos(math.pi * (e - 5) / 8)) / 2),
])
def test_rates_follow_the_closed_forms(make, formula):
    optimizer = FakeOptimizer()
    scheduler = make(optimizer)
    rates = run(scheduler)
    np.testing.assert_allclose(rates, closed_form(formula), rtol=1e-12, atol=1e-15)
    # the optimizer holds what get_last_lr reports, and the base rates were recorded
    assert [g["lr"] for g in optimizer.param_groups] == scheduler.get_last_lr()
    assert [g["initial_lr"] for g in optimizer.param_groups] == LRS == scheduler.base_lrs
    assert scheduler.last_epoch == EPOCHS


def test_cosine_warmup_reaches_the_base_rate_then_anneals_to_eta_min():
    optimizer = FakeOptimizer([1.0])
    rates = run(S.CosineAnnealingLR(optimizer, T_max=10, eta_min=0.01, warmup_epochs=4,
                                    warmup_start_factor=0.25), epochs=14)[:, 0]
    np.testing.assert_allclose(rates[:5], [0.25, 0.4375, 0.625, 0.8125, 1.0], rtol=1e-12)
    assert np.all(np.diff(rates[:5]) > 0) and np.all(np.diff(rates[4:]) < 0)
    assert rates[-1] == pytest.approx(0.01, rel=1e-12)


def test_chainable_schedulers_carry_an_outside_change_on():
    optimizer = FakeOptimizer([1.0])
    scheduler = S.StepLR(optimizer, step_size=2, gamma=0.5)
    scheduler.step()
    optimizer.param_groups[0]["lr"] = 0.3  # e.g. set by hand or by another scheduler
    scheduler.step()                       # epoch 2: one decay, from 0.3
    assert scheduler.get_last_lr() == [0.15]
    lambda_scheduler = S.LambdaLR(optimizer, lambda e: 2.0)
    assert lambda_scheduler.get_last_lr() == [2.0]  # LambdaLR always multiplies the base rate


def test_get_last_lr_is_a_copy():
    scheduler = S.ExponentialLR(FakeOptimizer(), gamma=0.5)
    scheduler.get_last_lr()[0] = 123.0
    assert scheduler.get_last_lr() == LRS


# ---------------------------------------------------------------------------------------------
# PyTorch as the oracle

def torch_or_skip():
    return pytest.importorskip("torch", reason="torch not installed")


def torch_optimizer(torch, lrs=LRS):
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in lrs]
    return torch.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(params, lrs)])


def run_torch(optimizer, scheduler, epochs=EPOCHS):
    rates = [scheduler.get_last_lr()]
    for _ in range(epochs):
        optimizer.step()  # torch warns when the scheduler steps first
        scheduler.step()
        rates.append(scheduler.get_last_lr())
    return np.array(rates)


@pytest.mark.parametrize("name, ours, theirs", [
    ("StepLR", lambda o: S.StepLR(o, 4, gamma=0.5), lambda T, o: T.StepLR(o, 4, gamma=0.5)),
    ("MultiStepLR", lambda o: S.MultiStepLR(o, [3, 7, 7, 12]), lambda T, o: T.MultiStepLR(o, [3, 7, 7, 12])),
    ("ExponentialLR", lambda o: S.ExponentialLR(o, 0.87), lambda T, o: T.ExponentialLR(o, 0.87)),
    ("CosineAnnealingLR", lambda o: S.CosineAnnealingLR(o, 6, eta_min=0.004),
     lambda T, o: T.CosineAnnealingLR(o, 6, eta_min=0.004)),  # 25 epochs: past T_max, back up, down
    ("LambdaLR", lambda o: S.LambdaLR(o, [lambda e: 1 / (1 + e), lambda e: 0.9 ** e]),
     lambda T, o: T.LambdaLR(o, [lambda e: 1 / (1 + e), lambda e: 0.9 ** e])),
    ("warm-up + cosine", lambda o: S.CosineAnnealingLR(o, 9, eta_min=0.001, warmup_epochs=3),
     lambda T, o: T.SequentialLR(o, [T.LinearLR(o, 1 / 3, total_iters=3), T.CosineAnnealingLR(o, 9, 0.001)],
                                 milestones=[3])),
])
def test_matches_torch(name, ours, theirs):
    torch = torch_or_skip()
    optimizer = torch_optimizer(torch)
    expected = run_torch(optimizer, theirs(torch.optim.lr_scheduler, optimizer))
    np.testing.assert_allclose(run(ours(FakeOptimizer())), expected, rtol=1e-13, atol=0, err_msg=name)


def test_outside_change_matches_torch():
    torch = torch_or_skip()
    t_opt = torch_optimizer(torch)
    t_sched = torch.optim.lr_scheduler.CosineAnnealingLR(t_opt, 5)
    optimizer = FakeOptimizer()
    scheduler = S.CosineAnnealingLR(optimizer, 5)
    for epoch in range(12):
        if epoch == 3:
            for group in t_opt.param_groups + optimizer.param_groups:
                group["lr"] *= 0.5
        t_opt.step()
        t_sched.step()
        scheduler.step()
        np.testing.assert_allclose(scheduler.get_last_lr(), t_sched.get_last_lr(), rtol=1e-13)


PLATEAU_VALUES = [1.0, 0.9, 0.95, 0.9, 0.91, 0.92, 0.899, 0.8999, 0.95, 0.7, 0.71, 0.72, 0.73, 0.74,
                  0.75, 0.76, 0.6999, 0.77, 0.78, 0.79, 0.8]


@pytest.mark.parametrize("kwargs", [
    {},
    {"patience": 0},
    {"patience": 2, "factor": 0.5, "cooldown": 2},
    {"mode": "max", "patience": 1, "factor": 0.5},
    {"patience": 1, "threshold": 0.05, "threshold_mode": "abs", "min_lr": 0.02},
    {"mode": "max", "patience": 0, "threshold": 0.01, "threshold_mode": "abs", "min_lr": [0.05, 0.001]},
    {"patience": 1, "factor": 0.5, "eps": 0.02},
])
def test_plateau_matches_torch(kwargs):
    torch = torch_or_skip()
    t_opt = torch_optimizer(torch)
    t_sched = torch.optim.lr_scheduler.ReduceLROnPlateau(t_opt, **kwargs)
    optimizer = FakeOptimizer()
    scheduler = S.ReduceLROnPlateau(optimizer, **kwargs)
    for value in PLATEAU_VALUES:
        t_opt.step()
        t_sched.step(value)
        scheduler.step(value)
        assert scheduler.get_last_lr() == pytest.approx(t_sched.get_last_lr(), rel=1e-15)
        assert (scheduler.best, scheduler.num_bad_epochs, scheduler.cooldown_counter) == \
            (t_sched.best, t_sched.num_bad_epochs, t_sched.cooldown_counter)


# ---------------------------------------------------------------------------------------------
# ReduceLROnPlateau by hand

def test_plateau_reduces_after_patience_bad_epochs_and_respects_cooldown_and_min_lr():
    optimizer = FakeOptimizer([1.0])
    scheduler = S.ReduceLROnPlateau(optimizer, patience=2, factor=0.5, cooldown=1, min_lr=0.2)
    lrs = []
    for value in [5, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4]:
        scheduler.step(value)
        lrs.append(optimizer.param_groups[0]["lr"])
    # best 4 at epoch 2; bad epochs 3, 4, 5 -> reduce at 5; cooldown swallows epoch 6; bad 7, 8, 9 ->
    # reduce at 9; bad 11, 12 ... (the rate stops at min_lr)
    assert lrs == [1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.25]
    for _ in range(10):
        scheduler.step(4)
    assert optimizer.param_groups[0]["lr"] == 0.2
    assert "initial_lr" not in optimizer.param_groups[0]  # as in PyTorch, this one records no base


def test_plateau_accepts_tensors_and_arrays():
    import fastnn
    scheduler = S.ReduceLROnPlateau(FakeOptimizer(), patience=0)
    scheduler.step(fastnn.tensor(1.0))
    scheduler.step(np.array([2.0]))
    assert scheduler.get_last_lr() == pytest.approx([0.01, 0.003])
    with pytest.raises(TypeError, match="metrics must be a number"):
        scheduler.step("loss")


# ---------------------------------------------------------------------------------------------
# state_dict

class Halving:
    """A callable object: its attributes survive state_dict, unlike a lambda."""

    def __init__(self):
        self.rate = 0.5

    def __call__(self, epoch):
        return self.rate ** epoch


@pytest.mark.parametrize("make", [
    lambda o: S.StepLR(o, 3, gamma=0.5),
    lambda o: S.MultiStepLR(o, [2, 4, 8]),
    lambda o: S.ExponentialLR(o, 0.8),
    lambda o: S.CosineAnnealingLR(o, 6, eta_min=0.001, warmup_epochs=2),
    lambda o: S.LambdaLR(o, Halving()),
])
def test_state_dict_round_trip_resumes_the_schedule(make):
    optimizer = FakeOptimizer()
    scheduler = make(optimizer)
    for _ in range(5):
        scheduler.step()
    state = copy.deepcopy(scheduler.state_dict())
    assert "optimizer" not in state and state["last_epoch"] == 5
    saved_groups = copy.deepcopy(optimizer.param_groups)

    # as in PyTorch: build the scheduler, then restore the optimizer's groups and the state
    resumed_optimizer = FakeOptimizer([9.0, 9.0])
    resumed = make(resumed_optimizer)
    resumed_optimizer.param_groups[:] = saved_groups
    resumed.load_state_dict(state)
    assert resumed.last_epoch == 5 and resumed.get_last_lr() == scheduler.get_last_lr()
    np.testing.assert_array_equal(run(resumed, 6), run(scheduler, 6))


def test_lambda_state_dict_keeps_callable_objects_not_functions():
    halving = Halving()
    scheduler = S.LambdaLR(FakeOptimizer(), [halving, lambda e: 1.0])
    halving.rate = 0.25
    state = scheduler.state_dict()
    assert state["lr_lambdas"] == [{"rate": 0.25}, None]
    other = Halving()
    fresh = S.LambdaLR(FakeOptimizer(), [other, lambda e: 1.0])
    fresh.load_state_dict(state)
    assert other.rate == 0.25 and state["lr_lambdas"] == [{"rate": 0.25}, None]


def test_plateau_state_dict_round_trip():
    optimizer = FakeOptimizer()
    scheduler = S.ReduceLROnPlateau(optimizer, mode="max", patience=1)
    for value in [0.1, 0.2, 0.2, 0.2]:
        scheduler.step(value)
    state = copy.deepcopy(scheduler.state_dict())
    resumed = S.ReduceLROnPlateau(FakeOptimizer(), patience=5)
    resumed.load_state_dict(state)
    assert (resumed.mode, resumed.patience, resumed.best, resumed.mode_worse) == ("max", 1, 0.2, -math.inf)


def test_resuming_with_last_epoch():
    optimizer = FakeOptimizer()
    scheduler = S.ExponentialLR(optimizer, 0.5)
    for _ in range(3):
        scheduler.step()
    resumed = S.ExponentialLR(optimizer, 0.5, last_epoch=scheduler.last_epoch)
    assert resumed.last_epoch == 4 and resumed.base_lrs == LRS
    assert resumed.get_last_lr() == scheduler.get_last_lr()  # as in PyTorch: the constructor keeps the rate
    with pytest.raises(KeyError, match="initial_lr"):
        S.StepLR(FakeOptimizer(), 2, last_epoch=3)


# ---------------------------------------------------------------------------------------------
# bad inputs

@pytest.mark.parametrize("make, error, match", [
    (lambda: S.StepLR(object(), 2), TypeError, "param_groups"),
    (lambda: S.StepLR(type("O", (), {"param_groups": [{"momentum": 0.9}]})(), 2), TypeError, "'lr'"),
    (lambda: S.StepLR(FakeOptimizer(), 0), ValueError, "step_size must be >= 1"),
    (lambda: S.StepLR(FakeOptimizer(), 2.5), TypeError, "step_size must be an int"),
    (lambda: S.StepLR(FakeOptimizer(), 2, gamma="0.1"), TypeError, "gamma"),
    (lambda: S.MultiStepLR(FakeOptimizer(), 5), TypeError, "milestones"),
    (lambda: S.MultiStepLR(FakeOptimizer(), [-1, 3]), ValueError, "milestones must be >= 0"),
    (lambda: S.ExponentialLR(FakeOptimizer(), gamma=math.nan), TypeError, "gamma"),
    (lambda: S.CosineAnnealingLR(FakeOptimizer(), 0), ValueError, "T_max must be >= 1"),
    (lambda: S.CosineAnnealingLR(FakeOptimizer(), 5, warmup_epochs=-1), ValueError, "warmup_epochs"),
    (lambda: S.CosineAnnealingLR(FakeOptimizer(), 5, warmup_epochs=2, warmup_start_factor=0.0), ValueError,
     r"warmup_start_factor must be in \(0, 1\]"),
    (lambda: S.LambdaLR(FakeOptimizer(), [lambda e: 1.0]), ValueError, "one lr_lambda per param group"),
    (lambda: S.LambdaLR(FakeOptimizer(), 0.5), TypeError, "callable"),
    (lambda: S.ReduceLROnPlateau(FakeOptimizer(), factor=1.0), ValueError, "factor must be < 1.0"),
    (lambda: S.ReduceLROnPlateau(FakeOptimizer(), mode="avg"), ValueError, "mode must be 'min' or 'max'"),
    (lambda: S.ReduceLROnPlateau(FakeOptimizer(), threshold_mode="pct"), ValueError, "threshold_mode"),
    (lambda: S.ReduceLROnPlateau(FakeOptimizer(), min_lr=[0.1]), ValueError, "one min_lr per param group"),
    (lambda: S.ReduceLROnPlateau(FakeOptimizer(), patience=-1), ValueError, "patience must be >= 0"),
])
def test_bad_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()
