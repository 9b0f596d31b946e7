"""fastnn.nn: Module bookkeeping, state dicts, repr, Sequential and its Linear+ReLU fusion, every
layer in value and finite-difference gradient (input and parameters), init statistics, dropout
seeding, get_config round trips, bad inputs; PyTorch as an extra oracle when installed."""
import json
import math
from collections import OrderedDict

import numpy as np
import pytest

import fastnn
import fastnn.nn as nn
import fastnn.nn.functional as F
from fastnn.nn import init
from helpers import check_op, numerical_gradient, random_inputs
from reference import conv2d_reference

# ---------------------------------------------------------------------------------------------
# float64 references

_erfc = np.vectorize(math.erfc)


def linear_ref(x, weight, bias=None):
    out = x @ weight.T
    return out if bias is None else out + bias


def gelu_ref(x):
    return 0.5 * x * _erfc(-x / math.sqrt(2))  # erfc: no cancellation in the negative tail


def gelu_tanh_ref(x):
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def softmax_ref(x, dim):
    e = np.exp(x - x.max(axis=dim, keepdims=True))
    return e / e.sum(axis=dim, keepdims=True)


def log_softmax_ref(x, dim):
    return np.log(softmax_ref(x, dim))


def check_module(module, x_shape, reference, atol=1e-5, rtol=1e-5, seed=0, low=-2.0, high=2.0, device="cpu"):
    """module(x) against reference(x, *parameters) in float64: the value, and the gradients of x
    and of every parameter against central finite differences of sum(reference * upstream); the
    module and x on `device` (the conftest fixture)."""
    x32, = random_inputs([x_shape], low, high, seed)
    inputs64 = [x32.astype(np.float64)] + [p.data.astype(np.float64) for _, p in module.named_parameters()]
    module.to(device)
    params = [p for _, p in module.named_parameters()]
    x = fastnn.tensor(x32, requires_grad=True, device=device)
    out = module(x)
    expected = reference(*inputs64)
    assert out.shape == expected.shape and out.device == x.device
    np.testing.assert_allclose(out.detach().cpu().numpy(), expected, atol=atol, rtol=rtol, err_msg="forward")
    upstream = np.random.default_rng(seed + 1).standard_normal(expected.shape).astype(np.float32)
    out.backward(fastnn.tensor(upstream, device=device))

    def weighted(*xs):
        return np.sum(reference(*xs) * upstream)

    for i, t in enumerate([x] + params):
        np.testing.assert_allclose(t.grad.cpu().numpy(), numerical_gradient(weighted, inputs64, i), atol=1e-4, rtol=1e-3,
                                   err_msg=f"gradient of {'the input' if i == 0 else f'parameter {i - 1}'}")


# ---------------------------------------------------------------------------------------------
# layers: value and gradient

@pytest.mark.parametrize("in_features, out_features, x_shape", [
    (1, 1, (1, 1)), (17, 3, (3, 17)), (3, 17, (2, 5, 3)), (65, 1, (1, 65)), (5, 4, (5,))])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_value_and_gradients(in_features, out_features, x_shape, bias, device):
    layer = nn.Linear(in_features, out_features, bias=bias)
    check_module(layer, x_shape, lambda x, w, b=None: linear_ref(x, w, b), device=device)


@pytest.mark.parametrize("module, reference, shape", [
    (nn.ReLU(), lambda x: np.maximum(x, 0), (3, 17)),
    (nn.LeakyReLU(), lambda x: np.where(x > 0, x, 0.01 * x), (17,)),
    (nn.LeakyReLU(0.2), lambda x: np.where(x > 0, x, 0.2 * x), (1, 3, 5)),
    (nn.Sigmoid(), lambda x: 1 / (1 + np.exp(-x)), (3, 17)),
    (nn.Tanh(), np.tanh, (17, 3)),
    (nn.GELU(), gelu_ref, (3, 17)),
    (nn.GELU(approximate="tanh"), gelu_tanh_ref, (3, 17)),
    (nn.Softmax(dim=1), lambda x: softmax_ref(x, 1), (3, 17)),
    (nn.Softmax(dim=0), lambda x: softmax_ref(x, 0), (3, 5)),
    (nn.Softmax(dim=-1), lambda x: softmax_ref(x, -1), (1, 1)),
    (nn.LogSoftmax(dim=1), lambda x: log_softmax_ref(x, 1), (3, 17)),
    (nn.LogSoftmax(dim=-1), lambda x: log_softmax_ref(x, -1), (2, 3, 5)),
    (nn.Flatten(), lambda x: x.reshape(x.shape[0], -1), (3, 2, 5)),
    (nn.Flatten(0, 1), lambda x: x.reshape(-1, x.shape[-1]), (3, 2, 5)),
    (nn.Unflatten(1, (2, 3, 1)), lambda x: x.reshape(x.shape[0], 2, 3, 1, x.shape[-1]), (3, 6, 5)),
    (nn.Unflatten(-1, (5, 1)), lambda x: x.reshape(x.shape + (1,)), (1, 5)),
    (nn.Identity(), lambda x: x, (3, 17)),
    (nn.Dropout(0.3).eval(), lambda x: x, (3, 17)),
], ids=lambda v: repr(v) if isinstance(v, nn.Module) else "")
def test_layer_value_and_gradient(module, reference, shape, device):
    check_module(module, shape, reference, device=device)


def test_unflatten_bad_arguments_name_the_shapes():
    with pytest.raises(ValueError, match=r"dim 1 of the input \(shape \(2, 10\)\) has size 10, expected 12"):
        nn.Unflatten(1, (3, 4))(fastnn.randn(2, 10))
    with pytest.raises(ValueError, match="dim=2 is out of range for an input of shape"):
        nn.Unflatten(2, (3, 4))(fastnn.randn(2, 12))
    with pytest.raises(ValueError, match="unflattened_size must be a non-empty tuple of positive ints"):
        nn.Unflatten(1, (3, 0))
    with pytest.raises(TypeError, match="dim must be an int"):
        nn.Unflatten(1.0, (3, 4))


def test_gelu_is_accurate_in_the_tails(device):
    x = np.array([-12.0, -8.0, -5.0, -1e-3, 0.0, 1e-3, 5.0, 8.0], np.float32)
    out = nn.GELU()(fastnn.tensor(x, device=device)).cpu().numpy()
    np.testing.assert_allclose(out, gelu_ref(x.astype(np.float64)), rtol=1e-6, atol=1e-30)


def test_softmax_is_stable_for_large_inputs():
    x = fastnn.tensor([[1e4, 0.0, -1e4], [5e3, 5e3, 0.0]])
    np.testing.assert_allclose(F.softmax(x, 1).numpy(), [[1, 0, 0], [0.5, 0.5, 0]], atol=1e-7)
    np.testing.assert_allclose(F.log_softmax(x, 1).numpy(), [[0, -1e4, -2e4], [-math.log(2), -math.log(2), -5e3 - math.log(2)]],
                               rtol=1e-6)


def test_dropout_gradient_follows_its_mask():
    fastnn.manual_seed(3)
    x = fastnn.tensor(random_inputs([(17, 65)], low=0.5, high=2.0)[0], requires_grad=True)
    out = nn.Dropout(0.25)(x)
    upstream = np.random.default_rng(1).standard_normal((17, 65)).astype(np.float32)
    out.backward(upstream)
    scale = out.detach().numpy() / x.detach().numpy()  # 0 or 1 / (1 - p) per element
    kept = scale != 0
    assert 0.6 < kept.mean() < 0.9
    np.testing.assert_allclose(scale[kept], 1 / 0.75, rtol=1e-6)
    np.testing.assert_allclose(x.grad.numpy(), upstream * scale, rtol=1e-6)


def test_dropout_is_seeded_inverted_and_off_in_eval():
    layer = nn.Dropout(0.4)
    x = fastnn.ones(200, 300)
    fastnn.manual_seed(7)
    first = layer(x).numpy()
    fastnn.manual_seed(7)
    np.testing.assert_array_equal(layer(x).numpy(), first)
    assert not np.array_equal(layer(x).numpy(), first)  # the generator moved on
    assert set(np.unique(first)) == {0.0, np.float32(1 / 0.6)}
    assert abs((first == 0).mean() - 0.4) < 0.01
    assert abs(first.mean() - 1.0) < 0.02  # inverted: the expectation is kept
    layer.eval()
    assert layer(x) is x or np.array_equal(layer(x).numpy(), x.numpy())
    np.testing.assert_array_equal(nn.Dropout(0.0)(x).numpy(), x.numpy())
    np.testing.assert_array_equal(nn.Dropout(1.0)(x).numpy(), np.zeros((200, 300), np.float32))
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\], got p=1.5"):
        nn.Dropout(1.5)
    with pytest.raises(ValueError, match="p=-0.1"):
        F.dropout(x, -0.1)


# ---------------------------------------------------------------------------------------------
# Sequential and the fused Linear + ReLU

def _mlp(seed=0):
    fastnn.manual_seed(seed)
    return nn.Sequential(nn.Linear(17, 65), nn.ReLU(), nn.Linear(65, 3), nn.ReLU(), nn.Linear(3, 1))


def _run_unfused(model, x):
    for module in model:  # each module on its own: no fusion
        x = module(x)
    return x


@pytest.mark.parametrize("batch", [1, 3, 17])
def test_fused_linear_relu_matches_unfused_values_and_gradients(batch):
    model = _mlp()
    x32, = random_inputs([(batch, 17)])
    upstream = np.random.default_rng(5).standard_normal((batch, 1)).astype(np.float32)
    results = []
    for run in (model, lambda x: _run_unfused(model, x)):
        model.zero_grad()
        x = fastnn.tensor(x32, requires_grad=True)
        out = run(x)
        out.backward(upstream)
        results.append((out.detach().numpy(), x.grad.numpy(), [p.grad.numpy() for p in model.parameters()]))
    (fused, fused_x, fused_p), (plain, plain_x, plain_p) = results
    np.testing.assert_array_equal(fused, plain)  # same GEMM, same epilogue order: bit for bit
    np.testing.assert_allclose(fused_x, plain_x, rtol=1e-6, atol=1e-7)
    for a, b in zip(fused_p, plain_p):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_sequential_fuses_linear_relu_into_one_node_and_keeps_its_modules():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
    out = model(fastnn.randn(2, 4))
    assert out.grad_fn.name() == "LinearBackward"  # one node: GEMM + bias + ReLU
    assert [type(m).__name__ for m in model] == ["Linear", "ReLU"]
    assert model[0](fastnn.randn(2, 4)).grad_fn.name() == "LinearBackward"
    assert (out.detach().numpy() >= 0).all()

    class MyReLU(nn.ReLU):  # a subclass may do something else: it is not fused
        def forward(self, x):
            return x * 2

    model = nn.Sequential(nn.Linear(4, 3), MyReLU())
    x = fastnn.randn(2, 4)
    np.testing.assert_allclose(model(x).detach().numpy(), 2 * model[0](x).detach().numpy())


@pytest.mark.parametrize("in_channels, size, padding", [(1, 28, 2), (3, 9, 0), (6, 14, 1)])  # direct and im2col paths
def test_sequential_fuses_conv2d_relu_with_unfused_values_and_gradients(in_channels, size, padding):
    fastnn.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(in_channels, 5, 3, padding=padding), nn.ReLU(), nn.Flatten(),
                          nn.Linear(5 * (size + 2 * padding - 2) ** 2, 2))
    x32, = random_inputs([(3, in_channels, size, size)])
    results = []
    for run in (model, lambda x: _run_unfused(model, x)):
        model.zero_grad()
        x = fastnn.tensor(x32, requires_grad=True)
        out = run(x)
        out.sum().backward()
        results.append((out.detach().numpy(), x.grad.numpy(), [p.grad.numpy() for p in model.parameters()]))
    (fused, fused_x, fused_p), (plain, plain_x, plain_p) = results
    np.testing.assert_allclose(fused, plain, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(fused_x, plain_x, rtol=1e-5, atol=1e-6)
    for a, b in zip(fused_p, plain_p):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    conv_out = nn.Sequential(model[0], model[1])(fastnn.tensor(x32))
    assert conv_out.grad_fn is None or conv_out.grad_fn.name() == "ConvBackward"
    assert (conv_out.detach().numpy() >= 0).all()


def test_conv2d_relu_matches_relu_of_conv2d():
    check_op([(2, 3, 7, 6), (4, 3, 3, 2), (4,)],
             lambda x, w, b: nn.functional.conv2d_relu(x, w, b, stride=(2, 1), padding=1),
             lambda x, w, b: np.maximum(conv2d_reference(x, w, b, stride=(2, 1), padding=1), 0),
             atol=1e-4, rtol=1e-4)


def test_fused_gradient_at_zero_output_is_zero_like_relu():
    layer = nn.Linear(2, 2)
    with fastnn.no_grad():
        layer.weight.data[...] = [[1.0, 0.0], [0.0, 1.0]]
        layer.bias.data[...] = 0.0
    model = nn.Sequential(layer, nn.ReLU())
    x = fastnn.tensor([[0.0, 2.0]], requires_grad=True)
    model(x).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[0.0, 1.0]])  # relu'(0) = 0, as in PyTorch


def test_sequential_container_protocol():
    a, b, c = nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)
    model = nn.Sequential(a, b)
    assert len(model) == 2 and model[0] is a and model[-1] is b and list(model) == [a, b]
    model.append(c)
    assert len(model) == 3 and model[2] is c
    head = model[:2]
    assert isinstance(head, nn.Sequential) and list(head) == [a, b]
    assert list(model[1:].state_dict()) == ["2.weight", "2.bias"]  # names kept, like PyTorch
    model.insert(0, nn.Identity())
    assert [type(m).__name__ for m in model] == ["Identity", "Linear", "ReLU", "Linear"]
    del model[0]
    assert list(model) == [a, b, c] and list(dict(model.named_children())) == ["0", "1", "2"]
    model[1] = nn.Tanh()
    assert isinstance(model[1], nn.Tanh)
    named = nn.Sequential(OrderedDict(fc=nn.Linear(2, 2), act=nn.ReLU()))
    assert list(named.state_dict()) == ["fc.weight", "fc.bias"] and named.fc is named[0]
    assert named(fastnn.randn(3, 2)).shape == (3, 2)
    with pytest.raises(IndexError, match="index 3 is out of range for 3 modules"):
        model[3]
    with pytest.raises(TypeError, match="instantiate the class"):
        nn.Sequential(nn.ReLU)
    with pytest.raises(TypeError, match="item 1 must be a fastnn.nn.Module"):
        nn.Sequential(nn.ReLU(), "relu")


# ---------------------------------------------------------------------------------------------
# Module bookkeeping

class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 3)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(3, 2, bias=False)
        self.scale = nn.Parameter(fastnn.ones(2))
        self.register_buffer("steps", np.zeros((), np.int64))
        self.note = "plain attribute"

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x))) * self.scale


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = Block()
        self.head = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))
        self.tied = self.block.fc1  # the same module twice: its parameters are listed once

    def forward(self, x):
        return self.head(self.block(x))


def test_registration_and_traversal():
    net = Net()
    names = [name for name, _ in net.named_parameters()]
    assert names == ["block.scale", "block.fc1.weight", "block.fc1.bias", "block.fc2.weight",
                     "head.0.weight", "head.0.bias"]
    assert len(list(net.parameters())) == 6
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in net.parameters())
    assert [name for name, _ in net.named_children()] == ["block", "head", "tied"]
    assert list(net.children())[0] is net.block
    assert [name for name, _ in net.named_modules()] == ["", "block", "block.fc1", "block.act", "block.fc2",
                                                         "head", "head.0", "head.1"]
    assert len(list(net.modules())) == 8
    assert net.block.note == "plain attribute" and "note" not in dict(net.block.named_parameters())
    assert [name for name, _ in net.named_buffers()] == ["block.steps"]
    assert net.block.fc2.bias is None

    with pytest.raises(TypeError, match=r"cannot assign Tensor as parameter 'scale'.*nn.Parameter\(value\)"):
        net.block.scale = fastnn.ones(2)
    net.block.scale = None
    assert "block.scale" not in dict(net.named_parameters())
    del net.block.act
    assert "act" not in dict(net.block.named_children())
    with pytest.raises(AttributeError, match="'Block' object has no attribute 'missing'"):
        net.block.missing

    class Forgetful(nn.Module):
        def __init__(self):
            self.fc = nn.Linear(1, 1)

    with pytest.raises(AttributeError, match=r"call super\(\).__init__\(\) first"):
        Forgetful()


def test_call_runs_forward_and_train_eval_recurse():
    net = Net()
    out = net(fastnn.randn(5, 4))
    assert out.shape == (5, 2)
    assert net.training and all(m.training for m in net.modules())
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    x = fastnn.randn(5, 4)
    np.testing.assert_array_equal(net(x).detach().numpy(), net(x).detach().numpy())  # dropout off
    net.train()
    assert all(m.training for m in net.modules())
    with pytest.raises(NotImplementedError, match="must define forward"):
        nn.Module()(x)


def test_zero_grad():
    net = Net()
    net(fastnn.randn(3, 4)).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad(set_to_none=False)
    assert all(not p.grad.numpy().any() for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_parameter_shares_memory_and_has_a_readable_repr():
    array = np.zeros(3, np.float32)
    p = nn.Parameter(array)
    array[0] = 5
    assert p.data[0] == 5 and p.requires_grad and isinstance(p, fastnn.Tensor)
    assert repr(p).startswith("Parameter containing:\ntensor([5., 0., 0.], requires_grad=True)")
    t = fastnn.ones(2)
    assert nn.Parameter(t).data is t.data
    assert not nn.Parameter(t, requires_grad=False).requires_grad
    assert type(p * 2) is fastnn.Tensor


# ---------------------------------------------------------------------------------------------
# state dict

def test_state_dict_keys_copies_and_round_trip():
    net = Net()
    state = net.state_dict()
    assert list(state) == ["block.scale", "block.steps", "block.fc1.weight", "block.fc1.bias",
                           "block.fc2.weight", "head.0.weight", "head.0.bias"]
    assert all(isinstance(v, np.ndarray) for v in state.values())
    assert state["block.fc1.weight"].shape == (3, 4) and state["block.steps"].dtype == np.int64
    state["block.fc1.weight"][...] = 7  # a copy: the model is unchanged
    assert not (net.block.fc1.weight.data == 7).any()

    other = Net()
    weight_before = other.block.fc1.weight
    result = other.load_state_dict(state)
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert other.block.fc1.weight is weight_before  # loaded in place
    np.testing.assert_array_equal(other.block.fc1.weight.data, 7)
    np.testing.assert_array_equal(other.head[0].bias.data, net.head[0].bias.data)


def test_load_state_dict_strictness_and_clear_errors():
    net = Net()
    state = net.state_dict()
    before = {k: v.copy() for k, v in state.items()}

    bad = dict(state)
    bad["head.0.weight"] = np.zeros((3, 2), np.float32)
    bad["block.fc1.bias"] = np.ones(3, np.float32)  # valid, but the load must be all or nothing
    with pytest.raises(ValueError, match=r"size mismatch for 'head.0.weight': expected shape \(2, 2\).*got \(3, 2\)"):
        net.load_state_dict(bad)
    with pytest.raises(RuntimeError):  # PyTorch users catch RuntimeError
        net.load_state_dict(bad, strict=False)  # shapes are checked even when not strict
    for key, value in net.state_dict().items():
        np.testing.assert_array_equal(value, before[key])

    missing = {k: v for k, v in state.items() if k != "block.fc2.weight"}
    with pytest.raises(ValueError, match=r"missing key\(s\): 'block.fc2.weight'"):
        net.load_state_dict(missing)
    extra = dict(state, **{"head.1.weight": np.zeros(2)})
    with pytest.raises(ValueError, match=r"unexpected key\(s\): 'head.1.weight'"):
        net.load_state_dict(extra)
    result = net.load_state_dict({**missing, "head.1.weight": np.zeros(2)}, strict=False)
    assert result.missing_keys == ["block.fc2.weight"] and result.unexpected_keys == ["head.1.weight"]
    with pytest.raises(TypeError, match="mapping"):
        net.load_state_dict([1, 2])
    with pytest.raises(TypeError, match="'block.scale' must hold numbers"):
        net.load_state_dict(dict(state, **{"block.scale": np.array(["a", "b"])}))


# ---------------------------------------------------------------------------------------------
# repr, extra_repr and get_config

def test_nested_repr_like_pytorch():
    assert repr(Net()) == (
        "Net(\n"
        "  (block): Block(\n"
        "    (fc1): Linear(in_features=4, out_features=3, bias=True)\n"
        "    (act): ReLU()\n"
        "    (fc2): Linear(in_features=3, out_features=2, bias=False)\n"
        "  )\n"
        "  (head): Sequential(\n"
        "    (0): Linear(in_features=2, out_features=2, bias=True)\n"
        "    (1): Dropout(p=0.5)\n"
        "  )\n"
        "  (tied): Linear(in_features=4, out_features=3, bias=True)\n"
        ")")


@pytest.mark.parametrize("layer, text", [
    (nn.Linear(3, 2), "Linear(in_features=3, out_features=2, bias=True)"),
    (nn.ReLU(), "ReLU()"), (nn.Sigmoid(), "Sigmoid()"), (nn.Tanh(), "Tanh()"), (nn.Identity(), "Identity()"),
    (nn.LeakyReLU(0.2), "LeakyReLU(negative_slope=0.2)"), (nn.GELU("tanh"), "GELU(approximate='tanh')"),
    (nn.Softmax(1), "Softmax(dim=1)"), (nn.LogSoftmax(-1), "LogSoftmax(dim=-1)"),
    (nn.Dropout(0.1), "Dropout(p=0.1)"), (nn.Flatten(), "Flatten(start_dim=1, end_dim=-1)"),
    (nn.Unflatten(1, (32, 7, 7)), "Unflatten(dim=1, unflattened_size=(32, 7, 7))"),
])
def test_layer_repr_and_config_round_trip(layer, text):
    assert repr(layer) == text
    config = json.loads(json.dumps(layer.get_config()))
    rebuilt = type(layer).from_config(config)
    assert repr(rebuilt) == text and rebuilt.get_config() == layer.get_config()


def test_sequential_config_round_trip_through_json():
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 5), nn.ReLU(), nn.Dropout(0.2), nn.Linear(5, 3, bias=False),
                          nn.LogSoftmax(1))
    config = json.loads(json.dumps(model.get_config()))
    assert config["layers"][1] == {"class_name": "Linear", "config": {"in_features": 12, "out_features": 5, "bias": True}}
    rebuilt = nn.Sequential.from_config(config)
    assert repr(rebuilt) == repr(model)
    rebuilt.load_state_dict(model.state_dict())
    x = fastnn.randn(2, 3, 4)
    model.eval(), rebuilt.eval()
    np.testing.assert_array_equal(rebuilt(x).detach().numpy(), model(x).detach().numpy())
    with pytest.raises(ValueError, match="unknown class_name 'Mystery'.*custom_objects"):
        nn.Sequential.from_config({"layers": [{"class_name": "Mystery", "config": {}}]})
    with pytest.raises(NotImplementedError, match="Block does not define get_config"):
        nn.Sequential(Block()).get_config()


# ---------------------------------------------------------------------------------------------
# init

def _param(*shape):
    return nn.Parameter(np.zeros(shape, np.float32))


def test_linear_default_init_follows_pytorch_bounds():
    fastnn.manual_seed(0)
    layer = nn.Linear(400, 300)
    bound = 1 / math.sqrt(400)
    for p in (layer.weight, layer.bias):
        assert np.abs(p.data).max() <= bound
        assert np.abs(p.data).max() > 0.97 * bound  # fills the range
    assert abs(layer.weight.data.std() - bound / math.sqrt(3)) < 0.01 * bound
    fastnn.manual_seed(0)
    np.testing.assert_array_equal(nn.Linear(400, 300).weight.data, layer.weight.data)  # seeded


@pytest.mark.parametrize("fill, shape, expected_std, bound", [
    (lambda t: init.xavier_uniform_(t), (300, 200), math.sqrt(2 / 500), math.sqrt(6 / 500)),
    (lambda t: init.glorot_normal_(t, gain=2.0), (300, 200), 2 * math.sqrt(2 / 500), None),
    (lambda t: init.kaiming_uniform_(t, nonlinearity="relu"), (300, 200), math.sqrt(2 / 200), math.sqrt(6 / 200)),
    (lambda t: init.he_normal_(t, mode="fan_out", nonlinearity="relu"), (300, 200), math.sqrt(2 / 300), None),
    (lambda t: init.kaiming_normal_(t, a=0.2), (300, 200), math.sqrt(2 / 1.04 / 200), None),
    (lambda t: init.kaiming_uniform_(t, a=math.sqrt(5)), (100, 20, 3, 3), 1 / math.sqrt(180) / math.sqrt(3),
     1 / math.sqrt(180)),
    (lambda t: init.lecun_uniform_(t), (300, 200), math.sqrt(1 / 200), math.sqrt(3 / 200)),
    (lambda t: init.lecun_normal_(t), (300, 200), math.sqrt(1 / 200), 2 * math.sqrt(1 / 200) / 0.8796256610342398),
    (lambda t: init.normal_(t, 1.0, 0.5), (300, 200), 0.5, None),
    (lambda t: init.uniform_(t, -3, 1), (300, 200), 4 / math.sqrt(12), None),
])
def test_init_statistics(fill, shape, expected_std, bound):
    fastnn.manual_seed(1)
    t = _param(*shape)
    assert fill(t) is t
    data = t.data.astype(np.float64)
    assert abs(data.std() - expected_std) < 0.02 * expected_std
    if bound is not None:
        assert np.abs(data).max() <= bound * (1 + 1e-6)
    fastnn.manual_seed(1)
    np.testing.assert_array_equal(fill(_param(*shape)).data, t.data)


def test_init_constants_gains_and_bad_inputs():
    t = _param(3, 4)
    assert (init.ones_(t).data == 1).all() and (init.zeros_(t).data == 0).all()
    assert (init.constant_(t, 2.5).data == 2.5).all()
    assert init.calculate_gain("relu") == math.sqrt(2) and init.calculate_gain("tanh") == 5 / 3
    assert init.calculate_gain("linear") == init.calculate_gain("conv2d") == init.calculate_gain("sigmoid") == 1
    assert init.calculate_gain("leaky_relu") == math.sqrt(2 / (1 + 0.01 ** 2))
    assert init.calculate_gain("leaky_relu", 0.2) == math.sqrt(2 / 1.04)
    assert init.calculate_gain("selu") == 0.75
    with pytest.raises(ValueError, match="unsupported nonlinearity 'swish'"):
        init.calculate_gain("swish")
    with pytest.raises(ValueError, match="at least 2 dimensions.*got shape \\(5,\\)"):
        init.xavier_uniform_(_param(5))
    with pytest.raises(ValueError, match="mode must be 'fan_in' or 'fan_out'"):
        init.kaiming_uniform_(t, mode="fan_avg")
    with pytest.raises(TypeError, match="expected a fastnn Tensor"):
        init.zeros_(np.zeros(3))


# ---------------------------------------------------------------------------------------------
# bad inputs

def test_layer_bad_arguments():
    with pytest.raises(TypeError, match="in_features must be an int"):
        nn.Linear(3.5, 2)
    with pytest.raises(ValueError, match="out_features must be >= 0, got -1"):
        nn.Linear(3, -1)
    with pytest.raises(ValueError, match="approximate must be 'none' or 'tanh'"):
        nn.GELU("fast")
    with pytest.raises(TypeError, match="dim must be an int"):
        nn.Softmax(None)
    with pytest.raises(TypeError, match="negative_slope must be a number"):
        nn.LeakyReLU("0.1")
    with pytest.raises(ValueError, match="dim=2 is out of range"):
        nn.LogSoftmax(2)(fastnn.randn(2, 3))


def test_linear_bad_inputs_name_the_shapes():
    layer = nn.Linear(784, 10)
    with pytest.raises(ValueError, match=r"expected input of shape \(\.\.\., 784\).*got \(2, 28, 28\); flatten it"):
        layer(fastnn.randn(2, 28, 28))
    with pytest.raises(ValueError, match=r"expected input of shape \(\.\.\., 784\).*got \(2, 10\)"):
        layer(fastnn.randn(2, 10))
    with pytest.raises(ValueError, match=r"bias must have shape \(3,\)"):
        F.linear(fastnn.randn(2, 4), fastnn.randn(3, 4), fastnn.randn(4))
    x = np.ones((2, 784), np.float32)
    x[1, 5] = np.nan
    with pytest.raises(ValueError, match="linear: .*the input.*NaN"):
        layer(fastnn.tensor(x))


def test_linear_reads_transposed_and_empty_inputs():
    layer = nn.Linear(5, 3)
    x = np.asfortranarray(np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32))
    expected = linear_ref(x.astype(np.float64), layer.weight.data.astype(np.float64), layer.bias.data)
    np.testing.assert_allclose(layer(fastnn.from_numpy(x)).detach().numpy(), expected, rtol=1e-5, atol=1e-6)
    assert layer(fastnn.zeros(0, 5)).shape == (0, 3)


# ---------------------------------------------------------------------------------------------
# PyTorch as an extra oracle

@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch", reason="torch not installed")


def test_pytorch_state_dict_loads_and_gives_the_same_outputs_and_gradients(torch):
    torch.manual_seed(0)
    reference = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 17), torch.nn.ReLU(),
                                    torch.nn.Linear(17, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 17), nn.ReLU(), nn.Linear(17, 5), nn.Tanh(), nn.Linear(5, 3))
    model.load_state_dict(reference.state_dict())
    assert list(model.state_dict()) == list(reference.state_dict())
    x, = random_inputs([(3, 3, 4)])
    target = np.array([0, 2, 1])
    out = model(fastnn.tensor(x))
    torch_out = reference(torch.from_numpy(x))
    np.testing.assert_allclose(out.detach().numpy(), torch_out.detach().numpy(), rtol=1e-5, atol=1e-6)
    F.cross_entropy(out, target).backward()
    torch.nn.functional.cross_entropy(torch_out, torch.from_numpy(target)).backward()
    for p, q in zip(model.parameters(), reference.parameters()):
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-4, atol=1e-6)


def test_activations_match_pytorch(torch):
    x, = random_inputs([(3, 17)], low=-6.0, high=6.0)
    pairs = [(nn.GELU(), torch.nn.GELU()), (nn.GELU("tanh"), torch.nn.GELU("tanh")),
             (nn.LeakyReLU(0.1), torch.nn.LeakyReLU(0.1)), (nn.Softmax(1), torch.nn.Softmax(1)),
             (nn.LogSoftmax(0), torch.nn.LogSoftmax(0)), (nn.Sigmoid(), torch.nn.Sigmoid())]
    for ours, theirs in pairs:
        np.testing.assert_allclose(ours(fastnn.tensor(x)).numpy(), theirs(torch.from_numpy(x)).numpy(),
                                   rtol=1e-5, atol=1e-6, err_msg=repr(ours))
