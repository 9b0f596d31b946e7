"""Recurrent layers (LSTM, GRU, RNN, their cells) and Embedding: values and gradients against the
float64 references of tests/reference.py and against PyTorch, variable-length batches, the
denormal mode, bad inputs, and a learning test (the adding problem at length 30). The value and
gradient tests run on every device (the conftest `device` fixture); Embedding has no CUDA kernel
and must say so there; the thread, ISA, buffer-cache and denormal tests are about the CPU kernels."""
import time

import numpy as np
import pytest

import fastnn
import fastnn.nn.functional as F
from fastnn import _C, nn
from fastnn.ops import rnn as rnn_ops
from helpers import check_op, host, numerical_gradient
from reference import embedding_ref, recurrent_cell_ref, recurrent_direction_ref, recurrent_ref

CELLS = ["lstm", "gru", "rnn_tanh", "rnn_relu"]
GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}


def make_layer(cell, *args, **kwargs):
    if cell == "lstm":
        return nn.LSTM(*args, **kwargs)
    if cell == "gru":
        return nn.GRU(*args, **kwargs)
    return nn.RNN(*args, nonlinearity=cell[4:], **kwargs)


def make_cell(cell, *args, **kwargs):
    if cell == "lstm":
        return nn.LSTMCell(*args, **kwargs)
    if cell == "gru":
        return nn.GRUCell(*args, **kwargs)
    return nn.RNNCell(*args, nonlinearity=cell[4:], **kwargs)


def layer_weights(params, num_layers, directions, bias=True):
    """The reference's weight list from a {name: array} dict with PyTorch's names."""
    weights = []
    for layer in range(num_layers):
        for d in range(directions):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            b = (params["bias_ih" + sfx], params["bias_hh" + sfx]) if bias else (None, None)
            weights.append((params["weight_ih" + sfx], params["weight_hh" + sfx]) + b)
    return weights


def flat(*tensors):
    return fastnn.cat([t.reshape(-1) for t in tensors if t is not None])


def flat_ref(*arrays):
    return np.concatenate([np.ravel(a) for a in arrays if a is not None])


def check_module(module, run, reference, inputs, atol=1e-5, grad_atol=1e-4, grad_rtol=1e-3, seed=0, device="cpu"):
    """run(module, *tensors) -> Tensor against reference(params, *arrays) (float64, params a
    {name: array} dict), in value and in the gradient of every parameter and input (central
    differences of the reference in float64); the module and the tensors on `device`."""
    names = [name for name, _ in module.named_parameters()]
    params = [p.data.astype(np.float64) for _, p in module.named_parameters()]
    module.to(device)
    tensors = [fastnn.tensor(x, requires_grad=True, device=device) for x in inputs]
    values = params + [np.asarray(x, np.float64) for x in inputs]

    def ref(*vals):
        return reference(dict(zip(names, vals[:len(names)])), *vals[len(names):])

    out = run(module, *tensors)
    expected = ref(*values)
    assert out.device == tensors[0].device
    np.testing.assert_allclose(host(out), expected, atol=atol, rtol=1e-5, err_msg="forward")
    upstream = np.random.default_rng(seed).standard_normal(expected.shape)
    module.zero_grad()
    out.backward(fastnn.tensor(upstream, device=device))
    grads = [p.grad for _, p in module.named_parameters()] + [t.grad for t in tensors]
    labels = names + [f"input {j}" for j in range(len(tensors))]
    for i, (label, grad) in enumerate(zip(labels, grads)):
        assert grad is not None, f"{label} received no gradient"
        expected_grad = numerical_gradient(lambda *v: np.sum(ref(*v) * upstream), values, i)
        np.testing.assert_allclose(grad.cpu().numpy(), expected_grad, atol=grad_atol, rtol=grad_rtol,
                                   err_msg=f"gradient of {label}")


# ---- one layer-direction (the op) against the reference ---------------------------------------

@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("reverse", [False, True])
def test_layer_matches_reference_in_value_and_gradient(cell, reverse, device):
    T, B, I, H = 4, 3, 2, 3
    G = GATES[cell] * H
    lstm = cell == "lstm"
    shapes = [(T, B, I), (G, I), (G, H), (G,), (G,), (B, H)] + ([(B, H)] if lstm else [])

    def check(lengths):
        def ours(x, w_ih, w_hh, b_ih, b_hh, h0, c0=None):
            return rnn_ops.recurrent_packed(cell, x, w_ih, w_hh, b_ih, b_hh, h0, c0, lengths=lengths, reverse=reverse)

        def reference(x, w_ih, w_hh, b_ih, b_hh, h0, c0=None):
            out, h, c = recurrent_direction_ref(cell, x, (w_ih, w_hh, b_ih, b_hh), h0, c0, lengths, reverse)
            return np.concatenate([out, h[None]] + ([c[None]] if lstm else []))

        check_op(shapes, ours, reference, low=-1.0, high=1.0, device=device)

    # The device runs: forward without lengths, reverse with them, to keep the suite quick.
    for lengths in [None, [4, 1, 3]] if device == "cpu" else [[4, 1, 3] if reverse else None]:
        check(lengths)


@pytest.mark.parametrize("cell", CELLS)
def test_layer_without_bias_or_initial_state(cell, device):
    T, B, I, H = 3, 2, 4, 5
    G = GATES[cell] * H

    def reference(x, w_ih, w_hh):
        out, h, c = recurrent_direction_ref(cell, x, (w_ih, w_hh, None, None), np.zeros((B, H)),
                                            np.zeros((B, H)) if cell == "lstm" else None)
        return out

    check_op([(T, B, I), (G, I), (G, H)], lambda x, wi, wh: rnn_ops.recurrent_packed(cell, x, wi, wh)[:T], reference,
             low=-1.0, high=1.0, device=device)


def test_empty_sequence_and_zero_length_rows_keep_the_initial_state(device):
    rng = np.random.default_rng(1)
    B, I, H = 3, 2, 4
    w_ih = rng.standard_normal((4 * H, I)).astype(np.float32)
    w_hh = rng.standard_normal((4 * H, H)).astype(np.float32)
    h0, c0 = rng.standard_normal((2, B, H)).astype(np.float32)
    w_ih_on, w_hh_on, h0_on, c0_on = (fastnn.tensor(a, device=device) for a in (w_ih, w_hh, h0, c0))
    weights_and_states = (w_ih_on, w_hh_on, None, None, h0_on, c0_on)  # no biases
    empty = fastnn.tensor(np.zeros((0, B, I), np.float32), device=device)
    out = rnn_ops.recurrent_packed("lstm", empty, *weights_and_states)
    np.testing.assert_array_equal(out.cpu().numpy(), np.stack([h0, c0]))
    x = fastnn.tensor(rng.standard_normal((5, B, I)), device=device)
    for reverse in (False, True):
        out = rnn_ops.recurrent_packed("lstm", x, *weights_and_states, lengths=[5, 0, 2], reverse=reverse).cpu()
        np.testing.assert_array_equal(out.numpy()[:5, 1], 0.0)
        np.testing.assert_array_equal(out.numpy()[5:, 1], np.stack([h0[1], c0[1]]))


# ---- cells and stacked layers (the modules) against the reference -----------------------------

@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("with_state", [False, True])
def test_cells_match_reference(cell, with_state, device):
    fastnn.manual_seed(3)
    B, I, H = 3, 4, 5
    module = make_cell(cell, I, H)
    rng = np.random.default_rng(4)
    x = rng.uniform(-1, 1, (B, I)).astype(np.float32)
    states = [rng.uniform(-1, 1, (B, H)).astype(np.float32) for _ in range(2 if cell == "lstm" else 1)]

    def run(m, x, *s):
        if cell == "lstm":
            return flat(*m(x, tuple(s) if s else None))
        return m(x, s[0] if s else None)

    def reference(p, x, *s):
        h = s[0] if s else np.zeros((B, H))
        c = (s[1] if s else np.zeros((B, H))) if cell == "lstm" else None
        h, c = recurrent_cell_ref(cell, x, h, c, (p["weight_ih"], p["weight_hh"], p["bias_ih"], p["bias_hh"]))
        return flat_ref(h, c) if cell == "lstm" else h

    check_module(module, run, reference, [x] + (states if with_state else []), device=device)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh"])
def test_two_bidirectional_layers_with_initial_states_match_reference(cell, device):
    fastnn.manual_seed(5)
    T, B, I, H, L = 3, 2, 2, 2, 2
    module = make_layer(cell, I, H, num_layers=L, bidirectional=True)
    rng = np.random.default_rng(6)
    x = rng.uniform(-1, 1, (T, B, I)).astype(np.float32)
    states = [rng.uniform(-1, 1, (2 * L, B, H)).astype(np.float32) for _ in range(2 if cell == "lstm" else 1)]

    def run(m, x, *s):
        out, final = m(x, tuple(s) if cell == "lstm" else s[0])
        return flat(out, *(final if cell == "lstm" else (final,)))

    def reference(p, x, *s):
        out, h, c = recurrent_ref(cell, x, layer_weights(p, L, 2), s[0], s[1] if cell == "lstm" else None,
                                  num_layers=L, bidirectional=True)
        return flat_ref(out, h, c)

    check_module(module, run, reference, [x] + states, device=device)


@pytest.mark.parametrize("cell", CELLS)
def test_layer_forward_matches_reference_at_larger_sizes(cell, device):
    # Sizes that are not multiples of the vector width or of the GEMM tiles, 2 layers, lengths.
    fastnn.manual_seed(7)
    T, B, I, H = 9, 7, 13, 37
    module = make_layer(cell, I, H, num_layers=2, bidirectional=True, batch_first=True).to(device)
    rng = np.random.default_rng(8)
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    lengths = [9, 3, 1, 9, 5, 2, 8]
    out, final = module(fastnn.tensor(x, device=device), lengths=lengths)
    params = {name: p.astype(np.float64) for name, p in module.state_dict().items()}
    expected, h, c = recurrent_ref(cell, x.transpose(1, 0, 2).astype(np.float64), layer_weights(params, 2, 2),
                                   lengths=lengths, num_layers=2, bidirectional=True)
    np.testing.assert_allclose(host(out), expected.transpose(1, 0, 2), atol=2e-5)
    np.testing.assert_allclose(host(final[0] if cell == "lstm" else final), h, atol=2e-5)
    if cell == "lstm":
        np.testing.assert_allclose(host(final[1]), c, atol=2e-5)


# ---- variable-length batches --------------------------------------------------------------------

@pytest.mark.parametrize("cell", CELLS)
def test_variable_lengths_match_each_sequence_run_alone(cell, device):
    fastnn.manual_seed(9)
    T, B, I, H = 6, 4, 3, 5
    lengths = [6, 2, 4, 1]  # unsorted
    module = make_layer(cell, I, H, num_layers=2, bidirectional=True).to(device)
    rng = np.random.default_rng(10)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    out, final = module(fastnn.tensor(x, device=device), lengths=lengths)
    h_n = final[0] if cell == "lstm" else final
    upstream = rng.standard_normal(h_n.shape).astype(np.float32)
    (h_n * fastnn.tensor(upstream, device=device)).sum().backward()
    batch_grads = {name: p.grad.cpu().numpy().copy() for name, p in module.named_parameters()}

    module.zero_grad()
    summed = {name: 0.0 for name in batch_grads}
    for b, n in enumerate(lengths):
        out_b, final_b = module(fastnn.tensor(x[:n, b:b + 1], device=device))
        np.testing.assert_allclose(host(out)[:n, b:b + 1], host(out_b), atol=1e-6)
        np.testing.assert_array_equal(host(out)[n:, b], 0.0)
        for got, alone in zip(final if cell == "lstm" else (final,), final_b if cell == "lstm" else (final_b,)):
            np.testing.assert_allclose(host(got)[:, b:b + 1], host(alone), atol=1e-6)
        h_b = final_b[0] if cell == "lstm" else final_b
        module.zero_grad()
        (h_b * fastnn.tensor(upstream[:, b:b + 1], device=device)).sum().backward()
        for name, p in module.named_parameters():
            summed[name] = summed[name] + p.grad.cpu().numpy()
    for name in batch_grads:
        np.testing.assert_allclose(batch_grads[name], summed[name], atol=1e-5, err_msg=name)


# ---- PyTorch as an extra oracle -------------------------------------------------------------------

@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch", reason="torch not installed")


def _torch_layer(torch, cell, *args, **kwargs):
    if cell == "lstm":
        return torch.nn.LSTM(*args, **kwargs)
    if cell == "gru":
        return torch.nn.GRU(*args, **kwargs)
    return torch.nn.RNN(*args, nonlinearity=cell[4:], **kwargs)


def _compare_grads(ours, theirs, atol=2e-5, rtol=1e-4):
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad.cpu().numpy(), getattr(theirs, name).grad.numpy(), atol=atol, rtol=rtol,
                                   err_msg=name)


LAYER_CONFIGS = [dict(), dict(num_layers=2, bidirectional=True), dict(batch_first=True, bias=False),
                 dict(num_layers=2, batch_first=True, bidirectional=True)]


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("config", range(len(LAYER_CONFIGS)))
def test_layers_match_pytorch(torch, cell, config):
    # The CPU only: on the devices, the float64-reference tests above cover these settings.
    kwargs = LAYER_CONFIGS[config]
    T, B, I, H = 7, 3, 5, 6
    theirs = _torch_layer(torch, cell, I, H, **kwargs)
    ours = make_layer(cell, I, H, **kwargs)
    ours.load_state_dict(theirs.state_dict())
    assert list(ours.state_dict()) == list(theirs.state_dict())
    rng = np.random.default_rng(config)
    L = kwargs.get("num_layers", 1) * (2 if kwargs.get("bidirectional") else 1)
    x = rng.standard_normal((B, T, I) if kwargs.get("batch_first") else (T, B, I)).astype(np.float32)
    states = [rng.standard_normal((L, B, H)).astype(np.float32) for _ in range(2 if cell == "lstm" else 1)]
    with_state = config % 2 == 1

    tx = torch.tensor(x, requires_grad=True)
    ts = [torch.tensor(s, requires_grad=True) for s in states]
    fx = fastnn.tensor(x, requires_grad=True)
    fs = [fastnn.tensor(s, requires_grad=True) for s in states]
    hx_t = (tuple(ts) if cell == "lstm" else ts[0]) if with_state else None
    hx_f = (tuple(fs) if cell == "lstm" else fs[0]) if with_state else None
    t_out, t_final = theirs(tx, hx_t)
    f_out, f_final = ours(fx, hx_f)
    t_final = t_final if cell == "lstm" else (t_final,)
    f_final = f_final if cell == "lstm" else (f_final,)
    np.testing.assert_allclose(f_out.detach().numpy(), t_out.detach().numpy(), atol=2e-6, rtol=1e-5)
    for f, t in zip(f_final, t_final):
        np.testing.assert_allclose(f.detach().numpy(), t.detach().numpy(), atol=2e-6, rtol=1e-5)

    up = [rng.standard_normal(t_out.shape).astype(np.float32)] + \
         [rng.standard_normal(t.shape).astype(np.float32) for t in t_final]
    sum((t * torch.tensor(u)).sum() for t, u in zip((t_out,) + tuple(t_final), up)).backward()
    sum((f * fastnn.tensor(u)).sum() for f, u in zip((f_out,) + tuple(f_final), up)).backward()
    np.testing.assert_allclose(fx.grad.numpy(), tx.grad.numpy(), atol=2e-5, rtol=1e-4)
    if with_state:
        for f, t in zip(fs, ts):
            np.testing.assert_allclose(f.grad.numpy(), t.grad.numpy(), atol=2e-5, rtol=1e-4)
    _compare_grads(ours, theirs)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("batched", [True, False])
def test_cells_match_pytorch(torch, cell, batched, device):
    B, I, H = 4, 3, 7
    classes = {"lstm": torch.nn.LSTMCell, "gru": torch.nn.GRUCell}
    theirs = classes[cell](I, H) if cell in classes else torch.nn.RNNCell(I, H, nonlinearity=cell[4:])
    ours = make_cell(cell, I, H)
    ours.load_state_dict(theirs.state_dict())
    ours.to(device)
    rng = np.random.default_rng(11)
    shape = (B, I) if batched else (I,)
    x = rng.standard_normal(shape).astype(np.float32)
    states = [rng.standard_normal(shape[:-1] + (H,)).astype(np.float32) for _ in range(2 if cell == "lstm" else 1)]
    tx, fx = torch.tensor(x, requires_grad=True), fastnn.tensor(x, requires_grad=True, device=device)
    t_out = theirs(tx, tuple(torch.tensor(s) for s in states) if cell == "lstm" else torch.tensor(states[0]))
    f_states = [fastnn.tensor(s, device=device) for s in states]
    f_out = ours(fx, tuple(f_states) if cell == "lstm" else f_states[0])
    t_out = t_out if cell == "lstm" else (t_out,)
    f_out = f_out if cell == "lstm" else (f_out,)
    for f, t in zip(f_out, t_out):
        assert f.shape == tuple(t.shape)
        np.testing.assert_allclose(host(f), t.detach().numpy(), atol=2e-6, rtol=1e-5)
    sum(t.sum() * (k + 1) for k, t in enumerate(t_out)).backward()
    sum(f.sum() * (k + 1) for k, f in enumerate(f_out)).backward()
    np.testing.assert_allclose(fx.grad.cpu().numpy(), tx.grad.numpy(), atol=2e-5, rtol=1e-4)
    _compare_grads(ours, theirs)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_lengths_match_pytorch_packed_sequences(torch, cell, device):
    T, B, I, H = 6, 4, 3, 5
    lengths = [3, 6, 1, 4]
    theirs = _torch_layer(torch, cell, I, H, num_layers=2, bidirectional=True)
    ours = make_layer(cell, I, H, num_layers=2, bidirectional=True)
    ours.load_state_dict(theirs.state_dict())
    ours.to(device)
    x = np.random.default_rng(12).standard_normal((T, B, I)).astype(np.float32)
    utils = torch.nn.utils.rnn
    packed = utils.pack_padded_sequence(torch.tensor(x), torch.tensor(lengths), enforce_sorted=False)
    t_packed, t_final = theirs(packed)
    t_out, _ = utils.pad_packed_sequence(t_packed, total_length=T)
    f_out, f_final = ours(fastnn.tensor(x, device=device), lengths=lengths)
    np.testing.assert_allclose(host(f_out), t_out.detach().numpy(), atol=2e-6)
    for f, t in zip(f_final if cell == "lstm" else (f_final,), t_final if cell == "lstm" else (t_final,)):
        np.testing.assert_allclose(host(f), t.detach().numpy(), atol=2e-6)
    (t_out.sum() + (t_final[0] if cell == "lstm" else t_final).sum()).backward()
    (f_out.sum() + (f_final[0] if cell == "lstm" else f_final).sum()).backward()
    _compare_grads(ours, theirs)


def test_embedding_matches_pytorch(torch):
    theirs = torch.nn.Embedding(10, 4, padding_idx=2, max_norm=1.5)
    ours = nn.Embedding(10, 4, padding_idx=2, max_norm=1.5)
    ours.load_state_dict(theirs.state_dict())
    idx = np.array([[1, 2, 3, 1], [9, 1, 0, 2]])
    t_out, f_out = theirs(torch.tensor(idx)), ours(idx)
    np.testing.assert_allclose(f_out.detach().numpy(), t_out.detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(ours.weight.data, theirs.weight.detach().numpy(), rtol=1e-6)  # renormalized alike
    up = np.random.default_rng(0).standard_normal(f_out.shape).astype(np.float32)
    (t_out * torch.tensor(up)).sum().backward()
    (f_out * fastnn.tensor(up)).sum().backward()
    np.testing.assert_allclose(ours.weight.grad.numpy(), theirs.weight.grad.numpy(), rtol=1e-6, atol=1e-7)


# ---- layers: shapes, modes, settings ---------------------------------------------------------------

def test_batch_first_and_unbatched_inputs_give_the_same_numbers(device):
    fastnn.manual_seed(13)
    T, B, I, H = 5, 3, 4, 6
    a = nn.GRU(I, H, num_layers=2, bidirectional=True)
    b = nn.GRU(I, H, num_layers=2, bidirectional=True, batch_first=True)
    b.load_state_dict(a.state_dict())
    a.to(device)
    b.to(device)
    x = np.random.default_rng(14).standard_normal((T, B, I)).astype(np.float32)
    out_a, h_a = a(fastnn.tensor(x, device=device))
    out_b, h_b = b(fastnn.tensor(x.transpose(1, 0, 2), device=device))
    assert out_a.shape == (T, B, 2 * H) and out_b.shape == (B, T, 2 * H) and h_b.shape == (4, B, H)
    np.testing.assert_array_equal(host(out_a), host(out_b).transpose(1, 0, 2))
    np.testing.assert_array_equal(host(h_a), host(h_b))
    out_u, h_u = a(fastnn.tensor(x[:, 1], device=device))
    assert out_u.shape == (T, 2 * H) and h_u.shape == (4, H)
    np.testing.assert_allclose(host(out_u), host(out_a)[:, 1], atol=1e-6)
    np.testing.assert_allclose(host(h_u), host(h_a)[:, 1], atol=1e-6)


def test_state_dict_names_init_config_and_repr():
    fastnn.manual_seed(15)
    lstm = nn.LSTM(3, 8, num_layers=2, bidirectional=True, dropout=0.25)
    expected = [f"{kind}_{part}_l{layer}{sfx}" for layer in range(2) for sfx in ("", "_reverse")
                for kind, part in (("weight", "ih"), ("weight", "hh"), ("bias", "ih"), ("bias", "hh"))]
    assert list(lstm.state_dict()) == expected
    assert lstm.weight_ih_l0.shape == (32, 3) and lstm.weight_ih_l1_reverse.shape == (32, 16)
    bound = 1 / np.sqrt(8)
    for _, p in lstm.named_parameters():
        assert np.all(np.abs(p.data) <= bound) and p.data.std() > bound / 3
    assert repr(lstm) == "LSTM(3, 8, num_layers=2, dropout=0.25, bidirectional=True)"
    assert repr(nn.RNN(2, 3, nonlinearity="relu", bias=False)) == "RNN(2, 3, nonlinearity='relu', bias=False)"
    assert repr(nn.GRUCell(2, 3)) == "GRUCell(2, 3)"
    assert repr(nn.Embedding(5, 2, padding_idx=0)) == "Embedding(5, 2, padding_idx=0)"
    for layer in (lstm, nn.GRU(2, 3, batch_first=True), nn.RNN(2, 3, nonlinearity="relu"), nn.LSTMCell(2, 3),
                  nn.RNNCell(2, 3, nonlinearity="relu", bias=False), nn.Embedding(5, 2, padding_idx=1, max_norm=2.0)):
        rebuilt = type(layer)(**layer.get_config())
        assert rebuilt.get_config() == layer.get_config()
        assert [p.shape for p in rebuilt.parameters()] == [p.shape for p in layer.parameters()]
    assert nn.RNN(2, 3).bias_hh_l0.shape == (3,) and nn.GRU(2, 3, bias=False).bias is False


def test_dropout_between_layers_is_seeded_and_only_in_training(device):
    fastnn.manual_seed(16)
    T, B, I, H = 4, 3, 2, 5
    net = nn.LSTM(I, H, num_layers=2, dropout=0.5)
    plain = nn.LSTM(I, H, num_layers=2)
    plain.load_state_dict(net.state_dict())
    net.to(device)
    plain.to(device)
    x = fastnn.tensor(np.random.default_rng(17).standard_normal((T, B, I)), device=device)
    fastnn.manual_seed(1)
    first = host(net(x)[0])
    fastnn.manual_seed(1)
    np.testing.assert_array_equal(host(net(x)[0]), first)
    assert not np.allclose(first, host(plain(x)[0]))
    net.eval()
    np.testing.assert_array_equal(host(net(x)[0]), host(plain(x)[0]))
    with pytest.warns(UserWarning, match="num_layers=1"):
        nn.GRU(2, 3, dropout=0.2)


def test_results_do_not_depend_on_thread_count_and_match_the_portable_build():
    fastnn.manual_seed(18)
    T, B, I, H = 12, 40, 24, 96  # big enough for the fused passes and the GEMMs to use threads
    net = nn.LSTM(I, H, num_layers=2, bidirectional=True)
    x = np.random.default_rng(19).standard_normal((T, B, I)).astype(np.float32)

    def run():
        net.zero_grad()
        xt = fastnn.tensor(x, requires_grad=True)
        out, (h, c) = net(xt, lengths=np.r_[np.full(B - 3, T), [1, 5, 7]])
        (out.sum() + h.sum() + (c * c).sum()).backward()
        return [out.detach().numpy(), h.detach().numpy(), xt.grad.numpy()] + [p.grad.numpy() for p in net.parameters()]

    with fastnn.threads(1):
        one = run()
    with fastnn.threads(2):
        two = run()
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)
    best = _C.get_isa()
    try:
        _C.set_isa("ref")
        portable = run()
    finally:
        _C.set_isa(best)
    for a, b in zip(one, portable):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def random_direction(rng, cell, T, B, I, H, scale):
    """Weights (uniform in +-scale), input, initial states and an output gradient for one direction."""
    G = GATES[cell] * H
    w = [rng.uniform(-scale, scale, shape).astype(np.float32) for shape in ((G, I), (G, H), (G,), (G,))]
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    h0, c0 = rng.standard_normal((2, B, H)).astype(np.float32)
    dy = rng.standard_normal((T, B, H)).astype(np.float32)
    return x, w, h0, (c0 if cell == "lstm" else None), dy


def direction_results(cell, x, w, h0, c0, dy, lengths=None, reverse=False):
    """The outputs, final states and the gradient of every input of one recurrent direction."""
    leaves = [fastnn.tensor(a, requires_grad=True) for a in [x, *w, h0] + ([c0] if c0 is not None else [])]
    out, h, c = rnn_ops.recurrent(cell, *leaves[:6], leaves[6] if c0 is not None else None,
                                  lengths=lengths, reverse=reverse)
    loss = (out * fastnn.tensor(dy)).sum() + (h * h).sum() + ((c * c).sum() if c is not None else 0.0)
    loss.backward()
    return [out.detach().numpy(), h.detach().numpy()] + [t.grad.numpy() for t in leaves]


@pytest.mark.parametrize("cell", CELLS)
def test_rows_split_between_threads_give_the_one_thread_results(cell):
    # Two threads split the batch rows evenly, so their row tiles end in short tiles of any height
    # (13 rows: 7 and 6; 25: 12 + 1 and 12; 62: 12 + 12 + 7 on each side); 5 rows and H = 256 share
    # the units instead; H = 32 is one block of units, so only the rows can be split. The work is
    # sized so the step team has two threads. Every element must be the same FMA chain as on one
    # thread, in the forward and in every gradient.
    rng = np.random.default_rng(31)
    gated = GATES[cell] > 1
    H = 160 if gated else 320
    for T, B, I, hidden in ((3, 13, 8, H), (2, 25, 8, H), (2, 62, 5, H), (2, 5, 8, 256 if gated else 512),
                            (2, 256 if gated else 1024, 4, 32)):
        problem = random_direction(rng, cell, T, B, I, hidden, 0.2)
        for reverse in (False, True):
            with fastnn.threads(1):
                one = direction_results(cell, *problem, reverse=reverse)
            with fastnn.threads(2):
                two = direction_results(cell, *problem, reverse=reverse)
            for a, b in zip(one, two):
                np.testing.assert_array_equal(a, b, err_msg=f"T={T} B={B} H={hidden} reverse={reverse}")


@pytest.mark.parametrize("isa", ["best", "avx2", "ref"])
def test_every_isa_and_small_batches_match_reference(isa):
    # Batches of 1 and 2 rows take the row-by-row product, 5 rows the micro-kernel's tiles.
    best = _C.get_isa()
    if isa != "best" and isa not in fastnn.config()["isa_supported"]:
        pytest.skip(reason=f"this CPU cannot run {isa}")
    rng = np.random.default_rng(23)
    T, I, H = 5, 3, 20
    try:
        if isa != "best":
            _C.set_isa(isa)
        for cell in CELLS:
            G = GATES[cell] * H
            w = [rng.uniform(-0.5, 0.5, shape).astype(np.float32) for shape in ((G, I), (G, H), (G,), (G,))]
            for B in (1, 2, 5):
                x = rng.standard_normal((T, B, I)).astype(np.float32)
                h0, c0 = rng.standard_normal((2, B, H)).astype(np.float32)
                c0 = c0 if cell == "lstm" else None
                for reverse in (False, True):
                    out, h, c = rnn_ops.recurrent(cell, x, *w, h0, c0, reverse=reverse)
                    ref = recurrent_direction_ref(cell, x.astype(np.float64), [a.astype(np.float64) for a in w],
                                                  h0, c0, reverse=reverse)
                    np.testing.assert_allclose(out.numpy(), ref[0], atol=2e-6)
                    np.testing.assert_allclose(h.numpy()[0], ref[1], atol=2e-6)
                    if cell == "lstm":
                        np.testing.assert_allclose(c.numpy()[0], ref[2], atol=2e-6)
    finally:
        _C.set_isa(best)


@pytest.mark.parametrize("isa", ["avx2", "ref"])
def test_backward_on_every_isa_matches_the_best(isa):
    # The backward's per-ISA pieces (the fused passes, the packing of dA into the step product's
    # tiles, the bias sums) against the best ISA's, whose gradients the finite-difference checks
    # above prove: hidden sizes that cut the vectors and the tiles, batches of one row to several
    # row tiles, both directions, variable lengths.
    best = _C.get_isa()
    if isa not in fastnn.config()["isa_supported"]:
        pytest.skip(reason=f"this CPU cannot run {isa}")
    rng = np.random.default_rng(29)
    for T, B, I, H in ((4, 1, 3, 20), (3, 5, 7, 37), (3, 13, 5, 17), (2, 40, 8, 65)):
        for cell in CELLS:
            problem = random_direction(rng, cell, T, B, I, H, 0.4)
            lengths = rng.integers(0, T + 1, B) if B > 2 else None
            for reverse in (False, True):
                expected = direction_results(cell, *problem, lengths=lengths, reverse=reverse)
                try:
                    _C.set_isa(isa)
                    got = direction_results(cell, *problem, lengths=lengths, reverse=reverse)
                finally:
                    _C.set_isa(best)
                for g, e in zip(got, expected):
                    np.testing.assert_allclose(g, e, rtol=1e-4, atol=2e-5)


def test_recycled_output_buffers_are_not_shared():
    # Large outputs come from a cache of freed buffers: a live result must never be handed out again.
    rng = np.random.default_rng(26)
    T, B, I, H = 40, 32, 16, 64  # buffers of several hundred KiB
    w = [rng.standard_normal(shape).astype(np.float32) * 0.1 for shape in ((4 * H, I), (4 * H, H))]
    xs = [rng.standard_normal((T, B, I)).astype(np.float32) for _ in range(3)]
    first = _C.rnn_forward("lstm", xs[0], *w)
    kept = [a.copy() for a in first if a is not None]
    for _ in range(2):
        second = _C.rnn_forward("lstm", xs[1], *w)
        del second
    for a, b in zip([a for a in first if a is not None], kept):
        np.testing.assert_array_equal(a, b)
    del first
    again = _C.rnn_forward("lstm", xs[0], *w)
    for a, b in zip([a for a in again if a is not None], kept):
        np.testing.assert_array_equal(a, b)


def test_graph_and_no_grad_paths_agree(device):
    fastnn.manual_seed(24)
    net = nn.GRU(3, 4, num_layers=2, bidirectional=True).to(device)
    x = fastnn.tensor(np.random.default_rng(25).standard_normal((6, 2, 3)), device=device)
    out, h = net(x)
    assert out.requires_grad and h.requires_grad
    with fastnn.no_grad():
        out2, h2 = net(x)
    assert not out2.requires_grad and not h2.requires_grad
    assert out2.device == h2.device == x.device
    np.testing.assert_array_equal(host(out), out2.cpu().numpy())
    np.testing.assert_array_equal(host(h), h2.cpu().numpy())


def _subnormal_arithmetic_works() -> bool:
    tiny = np.array([1e-38], np.float32)
    return bool((tiny * np.float32(1e-3))[0] != 0.0)  # 1e-41 is subnormal: zero under flush-to-zero


def test_denormal_mode_is_restored_after_the_kernels():
    assert _subnormal_arithmetic_works()
    rng = np.random.default_rng(20)
    T, B, I, H = 40, 8, 4, 16
    for cell in CELLS:
        G = GATES[cell] * H
        # Tiny weights and states: the recurrence decays into the subnormal range.
        w_ih = (rng.standard_normal((G, I)) * 1e-20).astype(np.float32)
        w_hh = (rng.standard_normal((G, H)) * 1e-3).astype(np.float32)
        h0 = np.full((B, H), 1e-37, np.float32)
        x = fastnn.tensor((rng.standard_normal((T, B, I)) * 1e-20).astype(np.float32), requires_grad=True)
        out = rnn_ops.recurrent_packed(cell, x, w_ih, w_hh, None, None, h0, h0 if cell == "lstm" else None)
        assert np.all(np.isfinite(out.detach().numpy()))
        (out * 1e-30).sum().backward()
        assert _subnormal_arithmetic_works()


# ---- Embedding ------------------------------------------------------------------------------------

def test_embedding_lookup_and_gradient_with_repeated_indices_and_padding(device):
    fastnn.manual_seed(21)
    emb = nn.Embedding(6, 3, padding_idx=4)
    np.testing.assert_array_equal(emb.weight.data[4], 0.0)
    weight = emb.weight.data.copy()
    emb.to(device)
    idx = np.array([[0, 4, 2, 0], [5, 2, 0, 4]])
    out = emb(idx)
    assert out.shape == (2, 4, 3) and out.device == emb.weight.device
    np.testing.assert_array_equal(out.detach().cpu().numpy(), embedding_ref(weight, idx))
    up = np.random.default_rng(22).standard_normal(out.shape).astype(np.float32)
    out.backward(fastnn.tensor(up, device=device))
    expected = np.zeros((6, 3))
    for position in np.ndindex(idx.shape):
        if idx[position] != 4:
            expected[idx[position]] += up[position]
    np.testing.assert_allclose(emb.weight.grad.cpu().numpy(), expected, rtol=1e-6)
    # Whole-valued floats (a fastnn Tensor of token ids, on the layer's device too) are accepted;
    # negative padding_idx counts from the end.
    np.testing.assert_array_equal(emb(fastnn.tensor([1.0, 3.0], device=device)).detach().cpu().numpy(), weight[[1, 3]])
    assert nn.Embedding(6, 3, padding_idx=-1).padding_idx == 5


@pytest.mark.parametrize("V, D, index_shape", [(1, 1, (1,)), (3, 17, (5, 3)), (17, 65, (2, 3, 4)), (65, 3, ()),
                                               (5, 2, (0, 3)), (4, 7, (65,))])
@pytest.mark.parametrize("padding_idx", [None, 0, -1])
def test_embedding_matches_the_cpu_bit_for_bit(device, V, D, index_shape, padding_idx):
    # The device backward sums each row's positions in the CPU's np.add.at order: the same bits.
    rng_e = np.random.default_rng(V * 100 + D)
    weight = rng_e.standard_normal((V, D)).astype(np.float32)
    idx = rng_e.integers(0, V, index_shape)
    up = rng_e.standard_normal(index_shape + (D,)).astype(np.float32)
    results = []
    for on in ("cpu", device):
        w = fastnn.tensor(weight, device=on, requires_grad=True)
        out = F.embedding(idx, w, padding_idx=padding_idx)
        out.backward(fastnn.tensor(up, device=on))
        results.append((out.detach().cpu().numpy(), w.grad.cpu().numpy()))
    (out_cpu, grad_cpu), (out_dev, grad_dev) = results
    assert out_dev.shape == index_shape + (D,) and grad_dev.shape == (V, D)
    np.testing.assert_array_equal(out_dev, out_cpu)
    np.testing.assert_array_equal(grad_dev, grad_cpu)
    expected = np.zeros((V, D))
    np.add.at(expected, idx.reshape(-1), up.reshape(-1, D).astype(np.float64))
    if padding_idx is not None:
        expected[padding_idx] = 0.0
    np.testing.assert_allclose(grad_dev, expected, rtol=1e-5, atol=1e-5)


def test_embedding_max_norm_and_pretrained(device):
    weight = np.array([[3.0, 4.0], [0.3, 0.4], [6.0, 8.0]], np.float32)
    emb = nn.Embedding.from_pretrained(weight, max_norm=1.0)
    if device != "cpu":  # max_norm has no CUDA kernel: the documented error, before any row is renormalized
        emb.to(device)
        with pytest.raises(NotImplementedError, match="embedding: max_norm has no CUDA kernel"):
            emb(np.array([0, 1]))
        np.testing.assert_array_equal(emb.weight.cpu().numpy(), weight)
        emb.max_norm = None  # without it, the device lookup works
        np.testing.assert_array_equal(emb(np.array([2, 1])).cpu().numpy(), weight[[2, 1]])
        return
    assert not emb.weight.requires_grad
    out = emb(np.array([0, 1]))
    np.testing.assert_allclose(out.detach().numpy(), [[0.6, 0.8], [0.3, 0.4]], rtol=1e-5)
    np.testing.assert_allclose(emb.weight.data[2], [6.0, 8.0])  # not looked up: unchanged
    assert nn.Embedding.from_pretrained(weight, freeze=False).weight.requires_grad


def test_embedding_rejects_bad_indices():
    emb = nn.Embedding(10, 2)
    with pytest.raises(ValueError, match=r"index 10 at position \(1,\) is out of range for 10 embeddings"):
        emb(np.array([3, 10]))
    with pytest.raises(ValueError, match="index -1"):
        emb([[0, -1]])
    with pytest.raises(TypeError, match="must be integers, got 1.5"):
        emb(np.array([1.0, 1.5]))
    with pytest.raises(TypeError, match="must be integers, got dtype bool"):
        emb(np.array([True, False]))
    with pytest.raises(TypeError, match="must be integers"):
        emb(np.array(["a"]))
    with pytest.raises(ValueError, match="padding_idx"):
        nn.Embedding(10, 2, padding_idx=10)
    with pytest.raises(ValueError, match="max_norm"):
        nn.Embedding(10, 2, max_norm=-1.0)


# ---- bad arguments ---------------------------------------------------------------------------------

def test_layers_reject_bad_arguments():
    with pytest.raises(ValueError, match="hidden_size must be at least 1"):
        nn.LSTM(3, 0)
    with pytest.raises(ValueError, match="nonlinearity must be 'tanh' or 'relu'"):
        nn.RNN(3, 4, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="dropout must be a number in"):
        nn.GRU(3, 4, num_layers=2, dropout=1.5)
    with pytest.raises(TypeError, match="bidirectional must be a bool"):
        nn.GRU(3, 4, bidirectional="yes")
    lstm, gru = nn.LSTM(3, 4, num_layers=2), nn.GRU(3, 4)
    x = np.zeros((5, 2, 3), np.float32)
    with pytest.raises(ValueError, match=r"shape \(T, B, input_size\).*input_size=3, got \(5, 2, 4\)"):
        lstm(np.zeros((5, 2, 4), np.float32))
    with pytest.raises(ValueError, match=r"h0 must have shape \(2, 2, 4\)"):
        lstm(x, (np.zeros((1, 2, 4)), np.zeros((2, 2, 4))))
    with pytest.raises(TypeError, match=r"hx must be a tuple \(h0, c0\)"):
        lstm(x, np.zeros((2, 2, 4)))
    with pytest.raises(TypeError, match="hx must be one tensor"):
        gru(x, (np.zeros((1, 2, 4)), np.zeros((1, 2, 4))))
    with pytest.raises(ValueError, match=r"lengths\[1\] = 6 is out of range"):
        gru(x, lengths=[5, 6])
    with pytest.raises(ValueError, match=r"lengths must have shape \(2,\)"):
        gru(x, lengths=[5, 4, 3])
    with pytest.raises(TypeError, match="lengths must hold integers"):
        gru(x, lengths=[2.5, 3])
    with pytest.raises(ValueError, match=r"expected input of shape \(batch, 3\)"):
        nn.LSTMCell(3, 4)(np.zeros((2, 5), np.float32))
    with pytest.raises(ValueError, match=r"h must have shape \(2, 4\)"):
        nn.GRUCell(3, 4)(np.zeros((2, 3), np.float32), np.zeros((3, 4), np.float32))


def test_kernel_bindings_reject_bad_arrays():
    x = np.zeros((2, 3, 4), np.float32)
    w_ih, w_hh = np.zeros((20, 4), np.float32), np.zeros((20, 5), np.float32)
    with pytest.raises(TypeError, match="argument 'x' must be float32"):
        _C.rnn_forward("lstm", x.astype(np.float64), w_ih, w_hh)
    with pytest.raises(ValueError, match=r"argument 'w_ih' must have shape \(20, 4\)"):
        _C.rnn_forward("lstm", x, w_ih[:, :3].copy(), w_hh)
    with pytest.raises(ValueError, match=r"argument 'w_hh' must have shape \(3 \* H, H\)"):
        _C.rnn_forward("gru", x, w_ih, w_hh)
    with pytest.raises(ValueError, match="cell must be"):
        _C.rnn_forward("lstmx", x, w_ih, w_hh)
    with pytest.raises(ValueError, match="must be C-contiguous"):
        _C.rnn_forward("lstm", np.zeros((3, 2, 4), np.float32).transpose(1, 0, 2), w_ih, w_hh)
    with pytest.raises(ValueError, match="'c0' is for the LSTM only"):
        _C.rnn_forward("rnn_tanh", x, w_ih[:5], w_hh[:5], c0=np.zeros((3, 5), np.float32))
    with pytest.raises(TypeError, match="'lengths' must be int64"):
        _C.rnn_forward("lstm", x, w_ih, w_hh, lengths=np.array([1, 2, 2], np.int32))
    with pytest.raises(ValueError, match=r"lengths\[0\] = 3 is out of range"):
        _C.rnn_forward("lstm", x, w_ih, w_hh, lengths=np.array([3, 2, 2]))


# ---- learning ----------------------------------------------------------------------------------

def _adding_problem(rng, T, B):
    """Inputs (T, B, 2): a value in [0, 1) and a marker that is 1 at one step of each half; the
    target is the sum of the two marked values (predicting its mean gives an MSE of 1/6)."""
    values = rng.uniform(0, 1, (T, B)).astype(np.float32)
    markers = np.zeros((T, B), np.float32)
    markers[rng.integers(0, T // 2, B), np.arange(B)] = 1
    markers[rng.integers(T // 2, T, B), np.arange(B)] = 1
    return np.stack([values, markers], axis=-1), (values * markers).sum(axis=0)[:, None]


def test_lstm_learns_the_adding_problem_at_length_30():
    fastnn.manual_seed(0)
    rng = np.random.default_rng(0)
    T = 30
    lstm, head = nn.LSTM(2, 32), nn.Linear(32, 1)
    optimizer = fastnn.optim.Adam(list(lstm.parameters()) + list(head.parameters()), lr=1e-2)
    x_test, y_test = _adding_problem(np.random.default_rng(1), T, 512)

    def predict(x):
        _, (h, _) = lstm(x)
        return head(h[0])

    start = time.perf_counter()
    # One thread: the model is tiny, and the test must not hinge on a busy machine's scheduling.
    with fastnn.threads(1):
        for step in range(1500):
            x, y = _adding_problem(rng, T, 64)
            loss = F.mse_loss(predict(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if step % 100 == 99:
                with fastnn.no_grad():
                    error = F.mse_loss(predict(x_test), y_test).item()
                if error < 0.01:
                    break
    seconds = time.perf_counter() - start
    # A model without memory cannot beat 1/6; the LSTM must get 16x below it.
    assert error < 0.01, f"test MSE {error:.4f} after {step + 1} steps ({seconds:.1f} s)"
