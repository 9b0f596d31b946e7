"""The CUDA backend: device names and errors, moves between host and GPU, ops, autograd, models
and optimizers on the GPU.

Tests taking the `backend` fixture (conftest.py) run twice: against tests/fake_cuda.py (numpy posing as a GPU,
so the Python side runs everywhere) and against the real kernels, which skips with "no CUDA
device" where there is none. Kernel results are compared with float64 numpy references and with
the CPU path of the same op.
"""
import importlib.util
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import fastnn
from fake_cuda import FakeCuda
from fastnn import nn
from helpers import train_steps

rng = np.random.default_rng(7)


# -- without a GPU ---------------------------------------------------------------------------------

def test_reports_match_the_build():
    assert fastnn.config()["cuda_built"] == fastnn.cuda.is_built()
    assert fastnn.cuda.is_available() == (fastnn.cuda.device_count() > 0)
    if not fastnn.cuda.is_available():
        assert fastnn.cuda.unavailable_reason()
        assert fastnn.cuda.memory_allocated() == 0


@pytest.mark.skipif(shutil.which("nvcc") is None or os.environ.get("FASTNN_CUDA", "").upper() == "OFF",
                    reason="no nvcc on PATH (or FASTNN_CUDA=OFF): this build is CPU-only by design")
def test_cuda_sources_are_built_where_nvcc_is_present():
    # So that a CUDA build break, or a CMake that stopped finding nvcc, fails CI on its machine.
    assert fastnn.cuda.is_built(), "nvcc is on PATH but fastnn was built without its CUDA kernels"


@pytest.mark.skipif(not fastnn.cuda.is_built(), reason="fastnn was built without CUDA: there is no _C.cuda to match")
def test_the_fake_backend_stands_in_for_real_entry_points_only():
    # tests/fake_cuda.py must not test the Python side against an entry point the build lacks.
    fake = {name for name in dir(FakeCuda) if not name.startswith("_") and callable(getattr(FakeCuda, name))}
    missing = sorted(name for name in fake if not hasattr(fastnn._C.cuda, name))
    assert not missing, f"FakeCuda has methods that _C.cuda lacks: {missing}"


@pytest.mark.skipif(fastnn.cuda.is_available(), reason="a CUDA device is present")
def test_asking_for_cuda_without_a_device_raises_clearly():
    t = fastnn.ones(2)
    for make in (lambda: t.to("cuda"), lambda: t.cuda(), lambda: fastnn.zeros(3, device="cuda"),
                 lambda: fastnn.randn(2, 2, device="cuda:0"), lambda: fastnn.tensor([1.0], device="cuda"),
                 lambda: nn.Linear(2, 3).to("cuda"), lambda: fastnn.cuda.synchronize()):
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            make()


@pytest.mark.parametrize("bad", ["tpu", "cuda:x", "cuda:-1", -1, "gpu"])
def test_unknown_devices_are_value_errors(bad):
    with pytest.raises(ValueError, match="device"):
        fastnn.ones(2).to(bad)


def test_cpu_moves_are_identity():
    t = fastnn.ones(2)
    assert t.to("cpu") is t and t.cpu() is t and t.device == "cpu" and not t.is_cuda
    assert fastnn.zeros(2, device="cpu").device == "cpu"


# -- moves, autograd and errors on a device ------------------------------------------------------

def test_to_device_and_back_keeps_values_and_gradients(backend):
    x = fastnn.tensor(rng.standard_normal((3, 5)), requires_grad=True)
    y = x.to("cuda")
    assert y.device == "cuda:0" and y.is_cuda and y.requires_grad and y.shape == (3, 5)
    assert y.to("cuda:0") is y
    np.testing.assert_array_equal(y.cpu().detach().numpy(), x.detach().numpy())
    (y * y).sum().backward()  # the gradient comes back to the CPU leaf through the copy
    assert x.grad.device == "cpu"
    np.testing.assert_allclose(x.grad.numpy(), 2 * x.detach().numpy(), rtol=1e-6)


def test_device_tensor_refuses_implicit_numpy_and_prints(backend):
    t = fastnn.tensor([[1.5, -2.0]], device="cuda")
    with pytest.raises(TypeError, match="cpu()"):
        t.numpy()
    with pytest.raises(TypeError):
        np.asarray(t)
    assert "device='cuda:0'" in repr(t)
    assert fastnn.tensor([3.0], device="cuda").item() == 3.0


def test_tensors_on_different_devices_do_not_meet(backend):
    a, b = fastnn.ones(2, 3), fastnn.ones(2, 3, device="cuda")
    with pytest.raises(RuntimeError, match="same device.*cpu.*cuda:0|same device.*cuda:0.*cpu"):
        a + b
    with pytest.raises(RuntimeError, match="same device"):
        nn.functional.linear(b, fastnn.ones(4, 3))


def test_op_without_cuda_kernel_names_itself(backend):
    x = fastnn.ones(2, device="cuda")
    with pytest.raises(NotImplementedError, match="Stack has no CUDA kernel"):
        fastnn.stack([x, x])


def test_scalars_follow_the_tensor(backend):
    x = fastnn.tensor([1.0, -2.0, 3.0], device="cuda")
    np.testing.assert_allclose((x * 2.0 + 1.0).cpu().numpy(), [3.0, -3.0, 7.0])


# -- kernels against references -----------------------------------------------------------------

@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
def test_gemm_matches_float64(backend, trans_a, trans_b):
    for M, N, K in [(1, 1, 1), (3, 17, 65), (64, 256, 784), (130, 129, 7), (257, 3, 300), (5, 600, 1)]:
        a = rng.standard_normal((K, M) if trans_a else (M, K)).astype(np.float32)
        b = rng.standard_normal((N, K) if trans_b else (K, N)).astype(np.float32)
        bias = rng.standard_normal(N).astype(np.float32)
        ref = (a.T if trans_a else a).astype(np.float64) @ (b.T if trans_b else b)
        A, B = backend.from_numpy(a, 0), backend.from_numpy(b, 0)
        got = backend.gemm(A, B, trans_a=trans_a, trans_b=trans_b).numpy()
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * np.sqrt(K))
        fused = backend.gemm(A, B, trans_a=trans_a, trans_b=trans_b, bias=backend.from_numpy(bias, 0),
                             relu=True).numpy()
        np.testing.assert_allclose(fused, np.maximum(ref + bias, 0), rtol=1e-4, atol=1e-4 * np.sqrt(K))


def test_tf32_products_are_opt_in_and_close(backend):
    assert not fastnn.cuda.get_allow_tf32()
    a = rng.standard_normal((130, 67)).astype(np.float32)
    b = rng.standard_normal((67, 45)).astype(np.float32)
    previous = fastnn.cuda.set_allow_tf32(True)
    try:
        assert previous is False and fastnn.cuda.get_allow_tf32()
        got = (fastnn.tensor(a, device="cuda") @ fastnn.tensor(b, device="cuda")).cpu().numpy()
    finally:
        fastnn.cuda.set_allow_tf32(previous)
    ref = a.astype(np.float64) @ b
    assert np.max(np.abs(got - ref)) <= 2e-3 * np.sqrt(67) * np.max(np.abs(ref))  # TF32: 10-bit mantissas


def test_elementwise_and_reductions_match_numpy(backend):
    for shape in [(1,), (3, 17), (65, 129)]:
        a = rng.standard_normal(shape).astype(np.float32)
        b = rng.standard_normal(shape).astype(np.float32)
        row = rng.standard_normal(shape[-1:]).astype(np.float32)
        A, B, R = (backend.from_numpy(v, 0) for v in (a, b, row))
        for op, ref in enumerate([a + b, a - b, a * b, a / b]):
            np.testing.assert_allclose(backend.binary(op, A, B).numpy(), ref, rtol=1e-6)
        np.testing.assert_allclose(backend.binary(0, A, R).numpy(), a + row, rtol=1e-6)
        np.testing.assert_allclose(backend.relu_forward(A).numpy(), np.maximum(a, 0))
        np.testing.assert_allclose(backend.relu_backward(B, backend.relu_forward(A)).numpy(), np.where(a > 0, b, 0))
        np.testing.assert_allclose(backend.sum_all(A, 0.5).numpy(), 0.5 * a.sum(dtype=np.float64), rtol=1e-5,
                                   atol=1e-5)
        m = a.reshape(-1, shape[-1])
        np.testing.assert_allclose(backend.column_sums(backend.from_numpy(m, 0)).numpy(),
                                   m.sum(0, dtype=np.float64), rtol=1e-5, atol=1e-5)


def test_cross_entropy_matches_the_cpu(backend):
    for N, C in [(1, 1), (3, 10), (64, 10), (17, 1000)]:
        logits = rng.standard_normal((N, C)).astype(np.float32) * 3
        labels = rng.integers(0, C, N)
        x_cpu = fastnn.tensor(logits, requires_grad=True)
        x_gpu = fastnn.tensor(logits, device="cuda", requires_grad=True)
        loss_cpu = nn.functional.cross_entropy(x_cpu, labels)
        loss_gpu = nn.functional.cross_entropy(x_gpu, labels)
        np.testing.assert_allclose(loss_gpu.item(), loss_cpu.item(), rtol=1e-5)
        loss_cpu.backward()
        loss_gpu.backward()
        np.testing.assert_allclose(x_gpu.grad.cpu().numpy(), x_cpu.grad.numpy(), rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match=r"outside \[0, 10\)"):
        nn.functional.cross_entropy(fastnn.zeros(2, 10, device="cuda"), [0, 10])


# -- models and optimizers --------------------------------------------------------------------------

@pytest.mark.parametrize("make_optimizer", [
    lambda p: fastnn.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3),
    lambda p: fastnn.optim.SGD(p, lr=0.05),
    lambda p: fastnn.optim.Adam(p, lr=1e-2, weight_decay=1e-3),
    lambda p: fastnn.optim.AdamW(p, lr=1e-2)], ids=["sgd-nesterov", "sgd", "adam", "adamw"])
def test_mlp_training_on_the_device_matches_the_cpu(backend, make_optimizer):
    def mlp():
        fastnn.manual_seed(3)
        return nn.Sequential(nn.Linear(20, 17), nn.ReLU(), nn.Linear(17, 10))
    cpu_model, gpu_model = mlp(), mlp().to("cuda")
    assert all(p.device == "cuda:0" for p in gpu_model.parameters())
    cpu_opt, gpu_opt = make_optimizer(cpu_model.parameters()), make_optimizer(gpu_model.parameters())
    for _ in range(3):
        x = rng.standard_normal((33, 20)).astype(np.float32)
        y = rng.integers(0, 10, 33)
        losses = []
        for model, opt, device in ((cpu_model, cpu_opt, "cpu"), (gpu_model, gpu_opt, "cuda")):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(fastnn.tensor(x, device=device)), y)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        np.testing.assert_allclose(losses[1], losses[0], rtol=1e-4)
    for p_cpu, p_gpu in zip(cpu_model.parameters(), gpu_model.cpu().parameters()):
        assert p_gpu.device == "cpu"
        np.testing.assert_allclose(p_gpu.detach().numpy(), p_cpu.detach().numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("case", [
    dict(N=2, C=3, H=9, W=8, K=4, R=3, S=3, stride=1, padding=1, dilation=1, groups=1),
    dict(N=3, C=4, H=17, W=5, K=6, R=5, S=2, stride=(2, 1), padding=(2, 0), dilation=1, groups=2),
    dict(N=1, C=6, H=11, W=11, K=6, R=3, S=3, stride=2, padding=0, dilation=2, groups=6),
    dict(N=5, C=1, H=28, W=28, K=6, R=5, S=5, stride=1, padding=2, dilation=1, groups=1)])
def test_conv2d_matches_the_cpu(backend, case):
    c = dict(case)
    x = rng.standard_normal((c.pop("N"), c.pop("C"), c.pop("H"), c.pop("W"))).astype(np.float32)
    K, R, S, groups = c.pop("K"), c.pop("R"), c.pop("S"), c["groups"]
    w = rng.standard_normal((K, x.shape[1] // groups, R, S)).astype(np.float32)
    b = rng.standard_normal(K).astype(np.float32)
    results = []
    for device in ("cpu", "cuda"):
        xt, wt, bt = (fastnn.tensor(v, device=device, requires_grad=True) for v in (x, w, b))
        out = nn.functional.conv2d(xt, wt, bt, **c)
        (out * out).sum().backward()
        results.append([out.cpu().detach().numpy()] + [t.grad.cpu().numpy() for t in (xt, wt, bt)])
    for cpu, gpu in zip(*results):
        np.testing.assert_allclose(gpu, cpu, rtol=1e-4, atol=1e-4)


def test_max_pool2d_matches_the_cpu(backend):
    for shape, kernel, stride, padding, ceil_mode in [((2, 3, 8, 8), 2, 2, 0, False), ((1, 2, 7, 9), 3, 2, 1, True),
                                                      ((3, 1, 5, 5), (2, 3), 1, 0, False)]:
        x = rng.standard_normal(shape).astype(np.float32)
        results = []
        for device in ("cpu", "cuda"):
            xt = fastnn.tensor(x, device=device, requires_grad=True)
            out = nn.functional.max_pool2d(xt, kernel, stride, padding, ceil_mode=ceil_mode)
            (out * out).sum().backward()
            results.append((out.cpu().detach().numpy(), xt.grad.cpu().numpy()))
        np.testing.assert_allclose(results[1][0], results[0][0])
        np.testing.assert_allclose(results[1][1], results[0][1], rtol=1e-6)


def test_lenet_step_on_the_device_matches_the_cpu(backend):
    def lenet():
        fastnn.manual_seed(5)
        return nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
                             nn.MaxPool2d(2), nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 10))
    x = rng.standard_normal((8, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 8)
    losses, weights = [], []
    for device in ("cpu", "cuda"):
        model = lenet().to(device)
        losses.append(train_steps(model, fastnn.optim.Adam(model.parameters(), lr=1e-3), x, y, device, 2)[-1])
        weights.append(model[0].weight.cpu().detach().numpy())
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-4)
    np.testing.assert_allclose(weights[1], weights[0], rtol=1e-4, atol=1e-6)


def test_cifar_style_cnn_on_the_device_matches_the_cpu(backend):
    # conv + batch norm + ReLU + max pooling + global average pooling, trained and then evaluated
    def cnn():
        fastnn.manual_seed(6)
        return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                             nn.Flatten(), nn.Linear(16, 10))
    x = rng.standard_normal((6, 3, 12, 12)).astype(np.float32)
    y = rng.integers(0, 10, 6)
    results = []
    for device in ("cpu", "cuda"):
        model = cnn().to(device)
        loss = train_steps(model, fastnn.optim.SGD(model.parameters(), lr=0.05, momentum=0.9), x, y, device, 2)[-1]
        model.eval()
        with fastnn.no_grad():
            logits = model(fastnn.tensor(x, device=device)).cpu().numpy()
        results.append((loss, logits, model[1].running_var.cpu().numpy(), model[0].weight.cpu().detach().numpy()))
    for cpu, gpu in zip(*results):
        np.testing.assert_allclose(gpu, cpu, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cell, bidirectional, batch_first", [("LSTM", False, False), ("GRU", False, False),
                                                              ("RNN", False, False), ("LSTM", True, True),
                                                              ("GRU", True, False)])
def test_recurrent_layers_on_the_device_match_the_cpu(backend, cell, bidirectional, batch_first):
    T, B, I, H = 7, 5, 4, 6
    x = rng.standard_normal((B, T, I) if batch_first else (T, B, I)).astype(np.float32)
    lengths = np.array([7, 3, 5, 1, 7])
    results, layers = [], []
    for device in ("cpu", "cuda"):
        fastnn.manual_seed(8)
        layer = getattr(nn, cell)(I, H, num_layers=2, bidirectional=bidirectional, batch_first=batch_first,
                                  dropout=0.3).to(device)
        xt = fastnn.tensor(x, device=device, requires_grad=True)
        out, state = layer(xt, lengths=lengths)
        h = state[0] if cell == "LSTM" else state
        (out.sum() + (h * h).sum()).backward()
        results.append([out.cpu().detach().numpy(), h.cpu().detach().numpy(), xt.grad.cpu().numpy()]
                       + [p.grad.cpu().numpy() for p in layer.parameters()])
        layers.append(layer)
    for cpu, gpu in zip(*results):
        np.testing.assert_allclose(gpu, cpu, rtol=1e-4, atol=1e-5)
    outs = []
    for layer, device in zip(layers, ("cpu", "cuda")):  # inference runs the kernel without a graph node
        with fastnn.no_grad():
            outs.append(layer.eval()(fastnn.tensor(x, device=device), lengths=lengths)[0].cpu().numpy())
    np.testing.assert_allclose(outs[1], outs[0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("op", ["neg", "exp", "log", "sqrt", "sigmoid", "tanh", "div", "clone"])
def test_elementwise_ops_on_the_device_match_the_cpu(backend, op):
    a = rng.uniform(0.5, 2.0, (3, 17)).astype(np.float32)
    b = rng.uniform(0.5, 2.0, (17,)).astype(np.float32)
    results = []
    for device in ("cpu", "cuda"):
        at, bt = fastnn.tensor(a, device=device, requires_grad=True), fastnn.tensor(b, device=device, requires_grad=True)
        out = at / bt if op == "div" else getattr(fastnn.ops.elementwise, op)(at)
        (out * out).sum().backward()
        results.append([out.cpu().detach().numpy(), at.grad.cpu().numpy()]
                       + ([bt.grad.cpu().numpy()] if op == "div" else []))
    for cpu, gpu in zip(*results):
        np.testing.assert_allclose(gpu, cpu, rtol=1e-5, atol=1e-6)


def test_fit_evaluate_predict_with_the_model_on_the_device(backend):
    x = rng.standard_normal((96, 12)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + 2 * (x[:, 1] > 0)
    histories, predictions = [], []
    for device in ("cpu", "cuda"):
        fastnn.manual_seed(9)
        model = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 4)).to(device)
        model.compile(optimizer=fastnn.optim.Adam(model.parameters(), lr=1e-2), loss="cross_entropy",
                      metrics=["accuracy"])
        histories.append(model.fit(x, y, batch_size=32, epochs=3, shuffle=False, verbose=0).history)
        histories[-1]["eval"] = model.evaluate(x, y)
        predictions.append(model.predict(x))
    for key in ("loss", "accuracy"):
        np.testing.assert_allclose(histories[1][key], histories[0][key], rtol=1e-4)
    np.testing.assert_allclose(histories[1]["eval"]["loss"], histories[0]["eval"]["loss"], rtol=1e-4)
    assert isinstance(predictions[1], np.ndarray)
    np.testing.assert_allclose(predictions[1], predictions[0], rtol=1e-4, atol=1e-5)
    state = model.state_dict()  # host copies of device memory; loading writes into it in place
    assert all(isinstance(v, np.ndarray) for v in state.values())
    weight = model[0].weight
    model.load_state_dict({k: np.zeros_like(v) for k, v in state.items()})
    assert model[0].weight is weight and weight.device == "cuda:0" and not np.any(weight.cpu().detach().numpy())


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_loss_on_the_device_matches_the_cpu(backend, reduction):
    a, b = rng.standard_normal((2, 5, 3)).astype(np.float32)
    results = []
    for device in ("cpu", "cuda"):
        x, y = fastnn.tensor(a, device=device, requires_grad=True), fastnn.tensor(b, device=device, requires_grad=True)
        loss = nn.functional.mse_loss(x, y, reduction=reduction)
        (loss.sum() if reduction == "none" else loss).backward()
        results.append([loss.cpu().detach().numpy(), x.grad.cpu().numpy(), y.grad.cpu().numpy()])
    for cpu, gpu in zip(*results):
        np.testing.assert_allclose(gpu, cpu, rtol=1e-5, atol=1e-6)


def test_zero_grad_keeps_gradients_on_the_device(backend):
    model = nn.Linear(3, 2).to("cuda")
    opt = fastnn.optim.SGD(model.parameters(), lr=0.1)
    model(fastnn.ones(4, 3, device="cuda")).sum().backward()
    opt.zero_grad(set_to_none=False)
    assert model.weight.grad.device == "cuda:0" and not np.any(model.weight.grad.cpu().numpy())
    model.zero_grad(set_to_none=False)
    assert model.bias.grad.device == "cuda:0" and not np.any(model.bias.grad.cpu().numpy())


@pytest.mark.parametrize("make_optimizer", [
    lambda p: fastnn.optim.Adam(p, lr=1e-2),
    lambda p: fastnn.optim.AdamW(p, lr=1e-2, weight_decay=0.1),
    lambda p: fastnn.optim.SGD(p, lr=0.1, momentum=0.9)], ids=["adam", "adamw", "sgd-momentum"])
def test_graphed_step_matches_eager_steps(backend, make_optimizer):
    def mlp():
        fastnn.manual_seed(4)
        return nn.Sequential(nn.Linear(20, 17), nn.ReLU(), nn.Linear(17, 10)).to("cuda")
    eager_model, graph_model = mlp(), mlp()
    eager_opt, graph_opt = make_optimizer(eager_model.parameters()), make_optimizer(graph_model.parameters())
    batches = [(rng.standard_normal((16, 20)).astype(np.float32), rng.integers(0, 10, 16)) for _ in range(4)]
    step = fastnn.cuda.graphed_step(graph_model, nn.functional.cross_entropy, graph_opt, *batches[0])
    for p_e, p_g in zip(eager_model.parameters(), graph_model.parameters()):  # the warm-up was undone
        np.testing.assert_array_equal(p_g.cpu().detach().numpy(), p_e.cpu().detach().numpy())
    for x, y in batches:
        eager_opt.zero_grad()
        loss = nn.functional.cross_entropy(eager_model(fastnn.tensor(x, device="cuda")), y)
        loss.backward()
        eager_opt.step()
        graph_loss = step(x, y)
        np.testing.assert_allclose(graph_loss.item(), loss.item(), rtol=1e-5)
    for p_e, p_g in zip(eager_model.parameters(), graph_model.parameters()):
        np.testing.assert_allclose(p_g.cpu().detach().numpy(), p_e.cpu().detach().numpy(), rtol=1e-4, atol=1e-6)


def test_graphed_step_needs_the_model_on_the_device(backend):
    model = nn.Linear(3, 2)
    with pytest.raises(ValueError, match="model.to"):
        fastnn.cuda.graphed_step(model, nn.functional.cross_entropy, fastnn.optim.SGD(model.parameters(), lr=0.1),
                                 np.zeros((2, 3), np.float32), [0, 1])


def test_gpu_benchmark_epochs_agree_between_eager_and_graphed(backend):
    # bench/gpu.py's epoch loops on a small batch set (timing-only figures come from real MNIST there)
    spec = importlib.util.spec_from_file_location("bench_gpu", Path(__file__).parents[1] / "bench" / "gpu.py")
    gpu = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu)
    x = rng.random((128, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, 128)
    for make, xs in ((gpu.mlp, x.reshape(128, -1)), (gpu.lenet, x)):
        _, eager_loss = gpu.fastnn_epoch(make, xs, y, 32, "eager")
        _, graphed_loss = gpu.fastnn_epoch(make, xs, y, 32, "graphed")
        assert np.isfinite(eager_loss)
        np.testing.assert_allclose(graphed_loss, eager_loss, rtol=1e-4)
    assert [row["case"] for row in gpu.bench_lstm(None)] == [(50, 32, 128, 256), (100, 64, 64, 128)]


def test_optimizer_without_cuda_kernel_raises(backend):
    class SignDescent(fastnn.optim.Optimizer):  # a user's optimizer, written for numpy arrays only
        def __init__(self, params, lr=0.1):
            super().__init__(params, dict(lr=lr))

        def _update_group(self, group):
            for p, g, _ in self._with_grads(group):
                p.data -= group["lr"] * np.sign(g)

    model = nn.Linear(3, 2).to("cuda")
    model(fastnn.ones(4, 3, device="cuda")).sum().backward()
    before = model.weight.cpu().detach().numpy()
    with pytest.raises(NotImplementedError, match="SignDescent has no CUDA kernel .*cuda = True"):
        SignDescent(model.parameters()).step()
    np.testing.assert_array_equal(model.weight.cpu().detach().numpy(), before)
    cpu_model = nn.Linear(3, 2)  # on the CPU it runs
    cpu_model(fastnn.ones(4, 3)).sum().backward()
    cpu_before = cpu_model.weight.detach().numpy().copy()
    SignDescent(cpu_model.parameters()).step()
    expected = cpu_before - 0.1 * np.sign(cpu_model.weight.grad.numpy())
    np.testing.assert_allclose(cpu_model.weight.detach().numpy(), expected)


@pytest.mark.cuda
def test_dlpack_exchange_with_torch_cuda():
    torch = pytest.importorskip("torch", reason="torch not installed")
    if not fastnn.cuda.is_available() or not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    t = torch.arange(6, dtype=torch.float32, device="cuda").reshape(2, 3)
    f = fastnn.from_dlpack(t)
    assert f.device == "cuda:0"
    np.testing.assert_array_equal(f.cpu().numpy(), t.cpu().numpy())
    back = torch.from_dlpack(f.detach() * 2.0)
    np.testing.assert_array_equal(back.cpu().numpy(), 2 * t.cpu().numpy())
