"""Optimizers and EMA on the GPU: every optimizer and option against the CPU path from the same
start (parameters and state after several steps, parameters without a gradient skipped), more
than 64 parameters (one launch per 64), state dicts across devices, EMA, captured steps and the
bad inputs of the _C.cuda entry points.

Tests taking the `backend` fixture run against tests/fake_cuda.py (the Python side) and against
the real kernels (skipped with "no CUDA device" where there is none).
"""
import numpy as np
import pytest

import fastnn
from fastnn import _device, nn, optim

SHAPES = [(1,), (3,), (17,), (5, 13), (10, 100), (2, 2)]  # 1, 3, 17, 65, 1000 and 4 elements
STEPS = 4
LAGGING = (1, 2)  # (parameter, step) without a gradient: its step count falls behind the others'
FROZEN = 5        # the parameter that never has a gradient: unchanged, no state made
RTOL, ATOL = 1e-5, 1e-6

CASES = [
    ("Adam", {"amsgrad": True}),
    ("Adam", {"amsgrad": True, "betas": (0.5, 0.9), "weight_decay": 0.1, "maximize": True}),
    ("AdamW", {"amsgrad": True, "weight_decay": 0.5}),
    ("AdamW", {"maximize": True}),
    ("RMSprop", {}),
    ("RMSprop", {"centered": True}),
    ("RMSprop", {"momentum": 0.9}),
    ("RMSprop", {"centered": True, "momentum": 0.9, "weight_decay": 0.1}),
    ("RMSprop", {"alpha": 0.5, "maximize": True}),
    ("Adagrad", {}),
    ("Adagrad", {"lr_decay": 0.1}),
    ("Adagrad", {"weight_decay": 0.1, "initial_accumulator_value": 0.5}),
    ("Adagrad", {"eps": 1e-3, "maximize": True, "lr_decay": 0.05}),
    ("SGD", {"momentum": 0.9, "dampening": 0.3, "weight_decay": 0.1, "maximize": True}),
    ("SGD", {"momentum": 0.9, "nesterov": True}),
]
CASE_IDS = [f"{name}-{'-'.join(f'{k}={v}' for k, v in kw.items()) or 'default'}" for name, kw in CASES]

# Several parameter groups, with options that differ between them.
GROUPED = {
    "adam": lambda ps: optim.Adam([{"params": ps[:2], "amsgrad": True}, {"params": ps[2:], "weight_decay": 0.1}],
                                  lr=0.05),
    "rmsprop": lambda ps: optim.RMSprop([{"params": ps[:3], "centered": True, "lr": 0.02},
                                         {"params": ps[3:], "momentum": 0.9}], lr=0.05),
    "adagrad": lambda ps: optim.Adagrad([{"params": ps[:2], "lr_decay": 0.2},
                                         {"params": ps[2:], "weight_decay": 0.1, "initial_accumulator_value": 0.1}],
                                        lr=0.05),
}


def make_case(name, kw):
    return lambda params: getattr(optim, name)(params, lr=0.05, **kw)


def problem(shapes=SHAPES, steps=STEPS, seed=0):
    """float32 initial parameters and one gradient per parameter and step (None where skipped)."""
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [[None if (i, t) == LAGGING or i == FROZEN else rng.standard_normal(s).astype(np.float32)
              for i, s in enumerate(shapes)] for t in range(steps)]
    return params, grads


def host(x):
    return x.numpy() if _device.is_device_array(x) else x


def run(make_optimizer, params, grads, device, opt=None, tensors=None):
    """The tensors and the optimizer after one step per entry of grads, on `device`."""
    if tensors is None:
        tensors = [fastnn.tensor(p, requires_grad=True, device=device) for p in params]
    opt = opt or make_optimizer(tensors)
    for step_grads in grads:
        for t, g in zip(tensors, step_grads):
            t.grad = None if g is None else fastnn.tensor(g, device=device)
        opt.step()
    return tensors, opt


def assert_same_state(cpu_opt, dev_opt):
    """The same parameters and state (the device's buffers on the device), group by group."""
    for cpu_group, dev_group in zip(cpu_opt.param_groups, dev_opt.param_groups):
        for i, (p_cpu, p_dev) in enumerate(zip(cpu_group["params"], dev_group["params"])):
            assert p_dev.is_cuda
            np.testing.assert_allclose(host(p_dev.data), p_cpu.data, rtol=RTOL, atol=ATOL, err_msg=f"param {i}")
            cpu_state, dev_state = cpu_opt.state.get(p_cpu, {}), dev_opt.state.get(p_dev, {})
            assert sorted(dev_state) == sorted(cpu_state)
            for key, value in cpu_state.items():
                if isinstance(value, np.ndarray):
                    assert _device.is_device_array(dev_state[key]), key
                    np.testing.assert_allclose(host(dev_state[key]), value, rtol=RTOL, atol=ATOL,
                                               err_msg=f"param {i} state {key}")
                else:
                    assert dev_state[key] == value, key


# ---- every optimizer and option against the CPU ---------------------------------------------------

@pytest.mark.parametrize("name,kw", CASES, ids=CASE_IDS)
def test_steps_on_the_device_match_the_cpu(backend, name, kw):
    params, grads = problem()
    cpu, cpu_opt = run(make_case(name, kw), params, grads, "cpu")
    dev, dev_opt = run(make_case(name, kw), params, grads, "cuda")
    assert_same_state(cpu_opt, dev_opt)
    np.testing.assert_array_equal(host(dev[FROZEN].data), params[FROZEN])  # skipped throughout
    assert not np.allclose(host(dev[0].data), params[0])


@pytest.mark.parametrize("make_optimizer", GROUPED.values(), ids=GROUPED.keys())
def test_parameter_groups_on_the_device_match_the_cpu(backend, make_optimizer):
    params, grads = problem(seed=1)
    _, cpu_opt = run(make_optimizer, params, grads, "cpu")
    _, dev_opt = run(make_optimizer, params, grads, "cuda")
    assert len(dev_opt.param_groups) == 2
    assert_same_state(cpu_opt, dev_opt)


@pytest.mark.parametrize("name,kw", [
    ("Adam", {"amsgrad": True}), ("AdamW", {}), ("RMSprop", {"centered": True, "momentum": 0.9}),
    ("Adagrad", {"lr_decay": 0.1}), ("SGD", {"momentum": 0.9})], ids=["adam", "adamw", "rmsprop", "adagrad", "sgd"])
def test_more_than_64_parameters_take_one_call_per_step(backend, monkeypatch, name, kw):
    # 130 parameters: three launches of up to 64 slots inside the one call; each slot's own size
    shapes = [[(1,), (3,), (17,), (2, 33)][i % 4] for i in range(130)]
    params, grads = problem(shapes, steps=3, seed=2)
    entry = {"Adam": "adam_step", "AdamW": "adam_step", "RMSprop": "rmsprop_step", "Adagrad": "adagrad_step",
             "SGD": "sgd_step"}[name]
    calls = []
    kernel = getattr(backend, entry)
    monkeypatch.setattr(backend, entry, lambda *args, **kwargs: calls.append(len(args[0])) or kernel(*args, **kwargs))
    _, cpu_opt = run(make_case(name, kw), params, grads, "cpu")
    _, dev_opt = run(make_case(name, kw), params, grads, "cuda")
    assert_same_state(cpu_opt, dev_opt)
    # one call per step, with every parameter that has a gradient (the lagging one misses the last)
    assert calls == [sum(g is not None for g in step_grads) for step_grads in grads] and min(calls) > 64


def test_adam_amsgrad_keeps_the_running_maximum(backend):
    p = fastnn.tensor(np.ones(5, np.float32), requires_grad=True, device="cuda")
    opt = optim.Adam([p], lr=0.01, amsgrad=True)
    for scale in (10.0, 0.1):  # the second gradient is smaller: the maximum holds the first's moment
        p.grad = fastnn.tensor(np.full(5, scale, np.float32), device="cuda")
        opt.step()
    state = opt.state[p]
    vmax, v = host(state["max_exp_avg_sq"]), host(state["exp_avg_sq"])
    np.testing.assert_allclose(vmax, 0.001 * 100.0, rtol=1e-6)
    assert np.all(vmax > v)


def test_adam_with_and_without_amsgrad_in_one_optimizer(backend):
    params, grads = problem(seed=3)
    make = lambda ps: optim.Adam([{"params": ps[::2], "amsgrad": True}, {"params": ps[1::2]}], lr=0.05)  # noqa: E731
    _, cpu_opt = run(make, params, grads, "cpu")
    _, dev_opt = run(make, params, grads, "cuda")
    assert "max_exp_avg_sq" not in dev_opt.state[dev_opt.param_groups[1]["params"][0]]
    assert_same_state(cpu_opt, dev_opt)


# ---- state dicts ------------------------------------------------------------------------------------

STATEFUL = [("Adam", {"amsgrad": True}), ("RMSprop", {"centered": True, "momentum": 0.9}),
            ("Adagrad", {"lr_decay": 0.1, "initial_accumulator_value": 0.2}), ("SGD", {"momentum": 0.9})]
STATEFUL_IDS = [name for name, _ in STATEFUL]


@pytest.mark.parametrize("name,kw", STATEFUL, ids=STATEFUL_IDS)
def test_optimizer_state_dict_round_trip_on_the_device(backend, name, kw):
    params, grads = problem(steps=5, seed=4)
    first, rest = grads[:2], grads[2:]
    whole, whole_opt = run(make_case(name, kw), params, grads, "cuda")  # uninterrupted

    tensors, opt = run(make_case(name, kw), params, first, "cuda")
    saved = opt.state_dict()
    resumed = [fastnn.tensor(t.cpu().detach().numpy(), requires_grad=True, device="cuda") for t in tensors]
    fresh = make_case(name, kw)(resumed)
    fresh.load_state_dict(saved)
    for p, p_old in zip(resumed, tensors):
        for key, value in fresh.state[p].items():
            if key != "step":
                assert _device.is_device_array(value), key
                assert value is not opt.state[p_old][key]  # a copy
    run(None, params, rest, "cuda", opt=fresh, tensors=resumed)
    for p, p_whole in zip(resumed, whole):
        np.testing.assert_allclose(host(p.data), host(p_whole.data), rtol=RTOL, atol=ATOL)
    for key, value in whole_opt.state[whole[0]].items():
        np.testing.assert_allclose(host(fresh.state[resumed[0]][key]), host(value), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name,kw", STATEFUL, ids=STATEFUL_IDS)
def test_optimizer_state_moves_between_cpu_and_device(backend, name, kw):
    params, grads = problem(steps=4, seed=5)
    cpu_whole, _ = run(make_case(name, kw), params, grads, "cpu")
    for source, target in (("cpu", "cuda"), ("cuda", "cpu")):
        tensors, opt = run(make_case(name, kw), params, grads[:2], source)
        resumed = [fastnn.tensor(host(t.data), requires_grad=True, device=target) for t in tensors]
        fresh = make_case(name, kw)(resumed)
        fresh.load_state_dict(opt.state_dict())
        buffers = [v for p in resumed for k, v in fresh.state[p].items() if k != "step"]
        assert buffers and all(_device.is_device_array(b) == (target == "cuda") for b in buffers)
        run(None, params, grads[2:], target, opt=fresh, tensors=resumed)
        for p, p_whole in zip(resumed, cpu_whole):
            np.testing.assert_allclose(host(p.data), p_whole.data, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("cpu_steps", [0, 2])
@pytest.mark.parametrize("name,kw", STATEFUL, ids=STATEFUL_IDS)
def test_optimizer_state_follows_a_model_moved_after_the_optimizer_was_built(backend, name, kw, cpu_steps):
    # PyTorch asks for the model to be moved first; here the state follows at the next step
    # (Adagrad's accumulators exist from the start, the others' after cpu_steps > 0).
    rng = np.random.default_rng(7)
    grads = [[rng.standard_normal(s).astype(np.float32) for s in ((3, 5), (3,))] for _ in range(4)]
    fastnn.manual_seed(0)
    reference, moved = nn.Linear(5, 3), nn.Linear(5, 3)
    moved.load_state_dict(reference.state_dict())
    reference_opt = make_case(name, kw)(list(reference.parameters()))
    moved_opt = make_case(name, kw)(list(moved.parameters()))
    for t, step_grads in enumerate(grads):
        if t == cpu_steps:
            moved.to("cuda")
        for model, opt in ((reference, reference_opt), (moved, moved_opt)):
            device = next(model.parameters()).device
            for p, g in zip(model.parameters(), step_grads):
                p.grad = fastnn.tensor(g, device=device)
            opt.step()
    assert_same_state(reference_opt, moved_opt)


# ---- EMA ------------------------------------------------------------------------------------------

def ema_pair(decay=0.9, warmup=True, seed=6):
    """The same parameters on the CPU and the device, an EMA of each, and a function that sets
    both to new random values."""
    rng = np.random.default_rng(seed)
    values = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    cpu = [fastnn.tensor(v, requires_grad=True) for v in values]
    dev = [fastnn.tensor(v, requires_grad=True, device="cuda") for v in values]

    def move():
        for c, d in zip(cpu, dev):
            new = rng.standard_normal(c.shape).astype(np.float32)
            c.data[...] = new
            _device.backend.copy_(d.data, new)
    return cpu, dev, optim.EMA(cpu, decay=decay, warmup=warmup), optim.EMA(dev, decay=decay, warmup=warmup), move


@pytest.mark.parametrize("warmup", [True, False])
def test_ema_on_the_device_matches_the_cpu(backend, warmup):
    cpu, dev, ema_cpu, ema_dev, move = ema_pair(warmup=warmup)
    assert all(_device.is_device_array(s) for s in ema_dev.shadow)
    for _ in range(4):
        move()
        ema_cpu.update()
        ema_dev.update()
    for s_dev, s_cpu in zip(ema_dev.shadow, ema_cpu.shadow):
        np.testing.assert_allclose(host(s_dev), s_cpu, rtol=RTOL, atol=ATOL)
    assert not np.allclose(host(ema_dev.shadow[0]), host(dev[0].data))

    trained = [host(p.data) for p in dev]
    with ema_dev.average_parameters():
        for p, s in zip(dev, ema_cpu.shadow):
            np.testing.assert_allclose(host(p.data), s, rtol=RTOL, atol=ATOL)
    for p, before in zip(dev, trained):  # restored exactly
        np.testing.assert_array_equal(host(p.data), before)
    with pytest.raises(RuntimeError, match="inside"):
        with ema_dev.average_parameters():
            raise RuntimeError("inside")
    for p, before in zip(dev, trained):
        np.testing.assert_array_equal(host(p.data), before)

    targets = [fastnn.zeros(*s, device="cuda") for s in SHAPES]
    ema_dev.copy_to(targets)
    for t, s in zip(targets, ema_cpu.shadow):
        np.testing.assert_allclose(host(t.data), s, rtol=RTOL, atol=ATOL)


def test_ema_of_more_than_64_parameters_on_the_device(backend):
    rng = np.random.default_rng(7)
    values = [rng.standard_normal(s).astype(np.float32) for s in [(1,), (3,), (17,), (2, 33)] * 33]
    cpu = [fastnn.tensor(v) for v in values]
    dev = [fastnn.tensor(v, device="cuda") for v in values]
    ema_cpu, ema_dev = optim.EMA(cpu, decay=0.5), optim.EMA(dev, decay=0.5)
    for c, d in zip(cpu, dev):
        new = rng.standard_normal(c.shape).astype(np.float32)
        c.data[...] = new
        _device.backend.copy_(d.data, new)
    ema_cpu.update()
    ema_dev.update()
    for s_dev, s_cpu in zip(ema_dev.shadow, ema_cpu.shadow):
        np.testing.assert_allclose(host(s_dev), s_cpu, rtol=RTOL, atol=ATOL)
    ema_dev.copy_to()
    for p, s in zip(dev, ema_cpu.shadow):
        np.testing.assert_allclose(host(p.data), s, rtol=RTOL, atol=ATOL)


def test_ema_state_dict_on_the_device_saves_and_loads(backend, tmp_path):
    _, dev, ema_cpu, ema_dev, move = ema_pair(decay=0.8)
    for _ in range(3):
        move()
        ema_cpu.update()
        ema_dev.update()
    state = ema_dev.state_dict()
    assert all(isinstance(s, np.ndarray) for s in state["shadow"])  # host copies, as on the CPU
    for s_dev, s_cpu in zip(state["shadow"], ema_cpu.state_dict()["shadow"]):
        np.testing.assert_allclose(s_dev, s_cpu, rtol=RTOL, atol=ATOL)
    fastnn.save({f"shadow.{i}": s for i, s in enumerate(state["shadow"])}, tmp_path / "ema.safetensors")
    loaded = fastnn.load(tmp_path / "ema.safetensors")

    fresh = optim.EMA(dev, decay=0.5, warmup=False)
    fresh.load_state_dict(dict(state, shadow=[loaded[f"shadow.{i}"] for i in range(len(SHAPES))]))
    assert (fresh.decay, fresh.warmup, fresh.num_updates) == (0.8, True, 3)
    assert all(_device.is_device_array(s) for s in fresh.shadow)
    from_tensors = optim.EMA(dev)  # device Tensors load too
    from_tensors.load_state_dict(dict(state, shadow=[fastnn.tensor(s, device="cuda") for s in state["shadow"]]))
    move()
    for ema in (ema_dev, fresh, from_tensors):
        ema.update()
    for a, b, c in zip(ema_dev.shadow, fresh.shadow, from_tensors.shadow):
        np.testing.assert_array_equal(host(b), host(a))
        np.testing.assert_array_equal(host(c), host(a))
    with pytest.raises(ValueError, match=r"shadow\[0\] has shape"):
        fresh.load_state_dict(dict(state, shadow=[np.zeros(2, np.float32)] + state["shadow"][1:]))


# ---- captured steps ---------------------------------------------------------------------------------

def squared_error(out, target):
    diff = out - target
    return (diff * diff).mean()


@pytest.mark.parametrize("make_optimizer", [
    lambda p: optim.Adam(p, lr=1e-2, amsgrad=True),
    lambda p: optim.RMSprop(p, lr=1e-2, centered=True, momentum=0.9),
    lambda p: optim.Adagrad(p, lr=1e-2, initial_accumulator_value=0.1)], ids=["adam-amsgrad", "rmsprop", "adagrad"])
def test_graphed_step_matches_eager_steps(backend, make_optimizer):
    def mlp():
        fastnn.manual_seed(4)
        return nn.Sequential(nn.Linear(20, 17), nn.ReLU(), nn.Linear(17, 10)).to("cuda")
    rng = np.random.default_rng(8)
    eager_model, graph_model = mlp(), mlp()
    eager_opt, graph_opt = make_optimizer(eager_model.parameters()), make_optimizer(graph_model.parameters())
    batches = [(rng.standard_normal((16, 20)).astype(np.float32), rng.standard_normal((16, 10)).astype(np.float32))
               for _ in range(4)]
    step = fastnn.cuda.graphed_step(graph_model, squared_error, graph_opt, *batches[0])
    for x, y in batches:
        eager_opt.zero_grad()
        loss = squared_error(eager_model(fastnn.tensor(x, device="cuda")), fastnn.tensor(y, device="cuda"))
        loss.backward()
        eager_opt.step()
        np.testing.assert_allclose(step(x, y).item(), loss.item(), rtol=1e-5)
    for p_e, p_g in zip(eager_model.parameters(), graph_model.parameters()):
        np.testing.assert_allclose(p_g.cpu().detach().numpy(), p_e.cpu().detach().numpy(), rtol=1e-4, atol=1e-6)


def test_graphed_adagrad_with_lr_decay_raises(backend):
    model = nn.Linear(4, 3).to("cuda")
    with pytest.raises(NotImplementedError, match="lr_decay"):
        fastnn.cuda.graphed_step(model, squared_error, optim.Adagrad(model.parameters(), lr_decay=0.1),
                                 np.zeros((2, 4), np.float32), np.zeros((2, 3), np.float32))


# ---- bad inputs -------------------------------------------------------------------------------------

def test_entry_points_reject_mismatched_lists(backend):
    a, b = (fastnn.zeros(3, device="cuda").data for _ in range(2))
    other = fastnn.zeros(4, device="cuda").data
    with pytest.raises(ValueError, match="rmsprop_step.*grad_avgs"):
        backend.rmsprop_step([a], [b], [a.copy()], [], [], lr=0.1, centered=True)
    with pytest.raises(ValueError, match="adagrad_step.*step"):
        backend.adagrad_step([a], [b], [a.copy()], lr=0.1, lr_decay=0.0, weight_decay=0.0, eps=1e-10, step=0,
                             maximize=False)
    with pytest.raises(ValueError, match="ema_update.*decay"):
        backend.ema_update([a], [b], decay=1.5)
    with pytest.raises(ValueError, match="ema_update"):
        backend.ema_update([a], [other], decay=0.5)
    with pytest.raises(ValueError, match="copy_buffers"):
        backend.copy_buffers([a, b], [other])
