"""fastnn.bernoulli and nn.RBM: sampling, free energy (values by enumeration, gradients by finite
differences), the contrastive-divergence gradient, CD-1 / PCD training on tiny problems, and bad input."""
import itertools

import numpy as np
import pytest

import fastnn
from fastnn import nn, optim
from fastnn.nn.rbm import free_energy
from helpers import check_op


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def softplus(z):
    return np.logaddexp(0.0, z)


def free_energy_ref(v, W, b_v, b_h):
    return -(v @ b_v) - softplus(v @ W.T + b_h).sum(axis=1)


def binary_states(n):
    return np.array(list(itertools.product([0.0, 1.0], repeat=n)))


def exact_log_likelihood(rbm, data):
    """Mean log p(v) over data, with the partition function summed over every visible state."""
    W, b_v, b_h = (p.data.astype(np.float64) for p in (rbm.W, rbm.b_v, rbm.b_h))
    log_z = np.logaddexp.reduce(-free_energy_ref(binary_states(rbm.n_visible), W, b_v, b_h))
    return float(np.mean(-free_energy_ref(data.astype(np.float64), W, b_v, b_h)) - log_z)


def random_rbm(n_visible, n_hidden, seed=0, scale=0.5, **kwargs):
    rbm = nn.RBM(n_visible, n_hidden, **kwargs)
    rng = np.random.default_rng(seed)
    rbm.W.data[...] = rng.normal(0, scale, rbm.W.shape)
    rbm.b_v.data[...] = rng.normal(0, scale, rbm.b_v.shape)
    rbm.b_h.data[...] = rng.normal(0, scale, rbm.b_h.shape)
    return rbm


def prototypes_data(n=200, n_visible=12, flip=0.05, seed=0):
    """Noisy copies of three binary prototypes: a tiny problem with structure to learn."""
    rng = np.random.default_rng(seed)
    protos = (rng.random((3, n_visible)) < 0.5).astype(np.float32)
    data = protos[rng.integers(0, 3, n)]
    flips = rng.random(data.shape) < flip
    return np.where(flips, 1 - data, data).astype(np.float32)


# -- bernoulli ------------------------------------------------------------------------------------

def test_bernoulli_values_shape_and_rate():
    fastnn.manual_seed(0)
    p = np.array([[0.0, 0.2, 0.5], [0.8, 1.0, 0.5]], dtype=np.float32)
    big = np.broadcast_to(p, (20000, 2, 3))
    s = fastnn.bernoulli(big)
    assert isinstance(s, fastnn.Tensor) and s.dtype == np.float32 and s.shape == big.shape
    assert not s.requires_grad
    assert set(np.unique(s.numpy())) <= {0.0, 1.0}
    np.testing.assert_allclose(s.numpy().mean(axis=0), p, atol=0.015)
    assert s.numpy()[:, 0, 0].sum() == 0 and s.numpy()[:, 1, 1].min() == 1  # p = 0 and p = 1 exactly


def test_bernoulli_reproducible_under_manual_seed_and_generators():
    p = fastnn.tensor(np.full((4, 7), 0.5))
    fastnn.manual_seed(123)
    a = fastnn.bernoulli(p).numpy()
    fastnn.manual_seed(123)
    b = fastnn.bernoulli(p).numpy()
    c = fastnn.bernoulli(p).numpy()  # the generator moved on
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(b, c)
    np.testing.assert_array_equal(fastnn.bernoulli(p, generator=5).numpy(), fastnn.bernoulli(p, generator=5).numpy())
    g1, g2 = np.random.default_rng(9), np.random.default_rng(9)
    np.testing.assert_array_equal(fastnn.bernoulli(p, generator=g1).numpy(), fastnn.bernoulli(p, generator=g2).numpy())
    # scalars and requires-grad tensors are accepted; the sample is a constant
    assert fastnn.bernoulli(1.0).item() == 1.0
    q = fastnn.tensor(np.full(3, 0.5), requires_grad=True)
    assert fastnn.bernoulli(q).grad_fn is None


@pytest.mark.parametrize("bad", [-0.1, 1.5, np.nan, np.inf])
def test_bernoulli_rejects_non_probabilities(bad):
    with pytest.raises(ValueError, match=r"bernoulli: every probability must be in \[0, 1\]"):
        fastnn.bernoulli(np.array([0.5, bad], dtype=np.float32))


def test_bernoulli_rejects_bad_generators():
    for bad in ("seed", 1.5, True, np.random.RandomState(0)):
        with pytest.raises(TypeError, match="bernoulli: generator must be"):
            fastnn.bernoulli(np.full(3, 0.5), generator=bad)
    with pytest.raises(TypeError):
        fastnn.bernoulli(np.array(["a"]))


# -- free energy ----------------------------------------------------------------------------------

@pytest.mark.parametrize("N, V, H", [(1, 1, 1), (3, 5, 4), (7, 13, 2), (2, 3, 11)])
def test_free_energy_value_and_gradients_by_finite_differences(N, V, H):
    check_op([(N, V), (H, V), (V,), (H,)], free_energy, free_energy_ref, atol=1e-4, rtol=1e-5,
             grad_atol=2e-3, grad_rtol=2e-3)


def test_free_energy_equals_minus_log_of_the_sum_over_hidden_states():
    rbm = random_rbm(5, 4, scale=1.0)
    v = binary_states(5)
    W, b_v, b_h = (p.data.astype(np.float64) for p in (rbm.W, rbm.b_v, rbm.b_h))
    h = binary_states(4)
    minus_energy = (v @ b_v)[:, None] + (h @ b_h)[None, :] + (v @ W.T) @ h.T  # (states of v, states of h)
    expected = -np.logaddexp.reduce(minus_energy, axis=1)
    np.testing.assert_allclose(rbm.free_energy(v).detach().numpy(), expected, rtol=1e-5, atol=1e-4)


def test_free_energy_method_gradients_reach_the_parameters():
    rbm = random_rbm(6, 3)
    v = np.random.default_rng(1).random((4, 6)).astype(np.float32)
    rbm.free_energy(v).sum().backward()
    W, b_v, b_h = (p.data.astype(np.float64) for p in (rbm.W, rbm.b_v, rbm.b_h))
    p_h = sigmoid(v @ W.T + b_h)
    np.testing.assert_allclose(rbm.W.grad.numpy(), -(p_h.T @ v), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(rbm.b_v.grad.numpy(), -v.sum(axis=0), rtol=1e-5)
    np.testing.assert_allclose(rbm.b_h.grad.numpy(), -p_h.sum(axis=0), rtol=1e-4, atol=1e-6)


def test_free_energy_is_finite_for_large_pre_activations():
    rbm = nn.RBM(3, 2)
    rbm.W.data[...] = 200.0
    rbm.b_h.data[...] = -300.0
    f = rbm.free_energy(np.array([[1, 1, 1], [0, 0, 0]], dtype=np.float32)).detach().numpy()
    np.testing.assert_allclose(f, [-2 * 300.0, 0.0], atol=1e-3)


# -- conditionals and Gibbs sampling ----------------------------------------------------------------

def test_sample_h_and_sample_v_probabilities_and_samples():
    rbm = random_rbm(8, 5)
    v = (np.random.default_rng(2).random((6, 8)) < 0.5).astype(np.float32)
    W, b_v, b_h = (p.data.astype(np.float64) for p in (rbm.W, rbm.b_v, rbm.b_h))
    p_h, h = rbm.sample_h(v)
    assert p_h.shape == h.shape == (6, 5)
    np.testing.assert_allclose(p_h.detach().numpy(), sigmoid(v @ W.T + b_h), rtol=1e-5, atol=1e-6)
    assert set(np.unique(h.numpy())) <= {0.0, 1.0} and not h.requires_grad
    p_v, v2 = rbm.sample_v(h)
    assert p_v.shape == v2.shape == (6, 8)
    np.testing.assert_allclose(p_v.detach().numpy(), sigmoid(h.numpy() @ W + b_v), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rbm(v).detach().numpy(), p_h.detach().numpy())
    assert p_h.requires_grad  # differentiable probabilities in grad mode


def test_sampling_is_reproducible_under_manual_seed():
    rbm = random_rbm(10, 6)
    v = (np.random.default_rng(3).random((5, 10)) < 0.5).astype(np.float32)

    def run():
        _, h = rbm.sample_h(v)
        _, v1 = rbm.sample_v(h)
        p, s = rbm.gibbs(v, steps=3)
        return h.numpy(), v1.numpy(), p.numpy(), s.numpy()

    fastnn.manual_seed(7)
    first = run()
    fastnn.manual_seed(7)
    second = run()
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    fastnn.manual_seed(8)
    assert not all(np.array_equal(a, b) for a, b in zip(first, run()))


def test_gibbs_chain_samples_the_model_distribution():
    """Long-run visible frequencies of a Gibbs chain match p(v) computed by enumeration."""
    rbm = random_rbm(3, 2, scale=1.0)
    fastnn.manual_seed(0)
    chains = np.zeros((4000, 3), dtype=np.float32)
    _, v = rbm.gibbs(chains, steps=30)
    W, b_v, b_h = (p.data.astype(np.float64) for p in (rbm.W, rbm.b_v, rbm.b_h))
    states = binary_states(3)
    p = np.exp(-free_energy_ref(states, W, b_v, b_h))
    p /= p.sum()
    codes = v.numpy() @ np.array([4, 2, 1])
    observed = np.bincount(codes.astype(int), minlength=8) / len(codes)
    np.testing.assert_allclose(observed, p, atol=0.03)


# -- contrastive divergence ----------------------------------------------------------------------

@pytest.mark.parametrize("k", [1, 3])
def test_contrastive_divergence_gradient_is_the_cd_k_estimate(k):
    rbm = random_rbm(7, 4, k=k)
    v = np.random.default_rng(4).random((5, 7)).astype(np.float32)
    fastnn.manual_seed(11)
    loss = rbm.contrastive_divergence(v)
    loss.backward()

    # Replay the chain with the same seed: h ~ p(h | v), then k rounds of v ~ p(v | h), h ~ p(h | v).
    W, b_v, b_h = (p.data.astype(np.float64) for p in (rbm.W, rbm.b_v, rbm.b_h))
    fastnn.manual_seed(11)
    h_prob = sigmoid(v @ W.T + b_h)
    for step in range(k):
        h = fastnn.bernoulli(h_prob.astype(np.float32)).numpy()
        v_prob = sigmoid(h @ W + b_v).astype(np.float32)
        v_sample = fastnn.bernoulli(v_prob).numpy()
        if step + 1 < k:
            h_prob = sigmoid(v_sample @ W.T + b_h)
    v_model = v_prob.astype(np.float64)
    ph_data, ph_model = sigmoid(v @ W.T + b_h), sigmoid(v_model @ W.T + b_h)
    n = len(v)
    np.testing.assert_allclose(rbm.W.grad.numpy(), -(ph_data.T @ v - ph_model.T @ v_model) / n, atol=1e-5)
    np.testing.assert_allclose(rbm.b_v.grad.numpy(), -(v.mean(0) - v_model.mean(0)), atol=1e-5)
    np.testing.assert_allclose(rbm.b_h.grad.numpy(), -(ph_data.mean(0) - ph_model.mean(0)), atol=1e-5)
    expected = free_energy_ref(v, W, b_v, b_h).mean() - free_energy_ref(v_model, W, b_v, b_h).mean()
    assert loss.item() == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("persistent, lr", [(False, 0.1), (True, 0.05)])
def test_cd1_training_lowers_reconstruction_error_and_free_energy_gap(persistent, lr):
    fastnn.manual_seed(0)
    data = prototypes_data()
    noise = (np.random.default_rng(1).random(data.shape) < 0.5).astype(np.float32)
    rbm = nn.RBM(12, 8, k=1, persistent=persistent)
    opt = optim.SGD(rbm.parameters(), lr=lr, momentum=0.5)

    def gap():  # F(data) - F(noise): negative once the data are more probable than noise
        return (rbm.free_energy(data).mean() - rbm.free_energy(noise).mean()).item()

    error0, gap0, ll0 = rbm.reconstruction_error(data), gap(), exact_log_likelihood(rbm, data)
    for epoch in range(30):
        for i in range(0, len(data), 20):
            loss = rbm.contrastive_divergence(data[i:i + 20])
            opt.zero_grad()
            loss.backward()
            opt.step()
    error1, gap1, ll1 = rbm.reconstruction_error(data), gap(), exact_log_likelihood(rbm, data)
    assert error1 < 0.5 * error0, (error0, error1)
    assert gap1 < gap0 - 2.0, (gap0, gap1)
    assert ll1 > ll0 + 2.0, (ll0, ll1)  # the exact log-likelihood per example rises (from 12 log 1/2)
    if persistent:
        chain = rbm.persistent_chain
        assert chain.shape == (20, 12) and set(np.unique(chain)) <= {0.0, 1.0}


def test_training_is_deterministic_under_manual_seed():
    data = prototypes_data(n=60)

    def train():
        fastnn.manual_seed(3)
        rbm = nn.RBM(12, 5, k=2)
        opt = optim.SGD(rbm.parameters(), lr=0.1)
        for i in range(0, 60, 10):
            loss = rbm.contrastive_divergence(data[i:i + 10])
            opt.zero_grad()
            loss.backward()
            opt.step()
        return rbm.W.data.copy()

    np.testing.assert_array_equal(train(), train())


def test_persistent_chain_keeps_its_size_is_not_saved_and_resets():
    fastnn.manual_seed(0)
    rbm = nn.RBM(6, 3, persistent=True)
    assert rbm.persistent_chain is None
    rbm.contrastive_divergence(np.full((4, 6), 0.5, dtype=np.float32))
    assert rbm.persistent_chain.shape == (4, 6)
    rbm.contrastive_divergence(np.full((9, 6), 0.5, dtype=np.float32))
    assert rbm.persistent_chain.shape == (4, 6)  # the fantasy particles are independent of the batch
    assert set(rbm.state_dict()) == {"W", "b_v", "b_h"}
    rbm.reset_chain()
    assert rbm.persistent_chain is None
    plain = nn.RBM(6, 3)
    plain.contrastive_divergence(np.full((4, 6), 0.5, dtype=np.float32))
    assert plain.persistent_chain is None


# -- layout, conversions, configuration ----------------------------------------------------------

def test_parameters_layout_init_and_to_linear():
    fastnn.manual_seed(0)
    rbm = nn.RBM(20, 7, k=2, persistent=True)
    assert [name for name, _ in rbm.named_parameters()] == ["W", "b_v", "b_h"]
    assert rbm.W.shape == (7, 20) and rbm.b_v.shape == (20,) and rbm.b_h.shape == (7,)
    assert 0.005 < rbm.W.data.std() < 0.02 and not rbm.b_v.data.any() and not rbm.b_h.data.any()
    assert repr(rbm) == "RBM(n_visible=20, n_hidden=7, k=2, persistent=True)"
    assert nn.RBM(**rbm.get_config()).get_config() == rbm.get_config()
    rbm.b_h.data[...] = 0.3
    layer = rbm.to_linear()
    v = np.random.default_rng(0).random((3, 20)).astype(np.float32)
    np.testing.assert_allclose(fastnn.sigmoid(layer(v)).detach().numpy(), rbm(v).detach().numpy(), rtol=1e-6)
    layer.weight.data[...] = 0  # a copy, not a view
    assert rbm.W.data.any()


def test_save_and_load_model_round_trip(tmp_path):
    rbm = random_rbm(5, 3, k=2)
    path = tmp_path / "rbm.safetensors"
    rbm.save(str(path))
    same = nn.load_model(str(path))
    assert isinstance(same, nn.RBM) and same.k == 2
    np.testing.assert_array_equal(same.W.data, rbm.W.data)


# -- bad input ------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, error, pattern", [
    (dict(n_visible=0, n_hidden=3), ValueError, "RBM: n_visible must be >= 1, got 0"),
    (dict(n_visible=4, n_hidden=-1), ValueError, "RBM: n_hidden must be >= 1"),
    (dict(n_visible=4, n_hidden=3, k=0), ValueError, "RBM: k must be >= 1, got 0"),
    (dict(n_visible=4.0, n_hidden=3), TypeError, "RBM: n_visible must be an int"),
    (dict(n_visible=4, n_hidden=3, k=True), TypeError, "RBM: k must be an int"),
    (dict(n_visible=4, n_hidden=3, persistent="yes"), TypeError, "RBM: persistent must be a bool"),
])
def test_bad_constructor_arguments(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        nn.RBM(**kwargs)


def test_bad_shapes_raise_with_the_expected_shape():
    rbm = nn.RBM(6, 3)
    good = np.full((2, 6), 0.5, dtype=np.float32)
    for method in ("free_energy", "sample_h", "contrastive_divergence", "reconstruction_error", "gibbs"):
        with pytest.raises(ValueError, match=rf"{method}: expected v of shape \(N, 6\) for n_visible=6, got \(2, 5\)"):
            getattr(rbm, method)(good[:, :5])
    with pytest.raises(ValueError, match=r"add a batch axis"):
        rbm.sample_h(good[0])
    with pytest.raises(ValueError, match=r"flatten it first"):
        rbm.free_energy(good.reshape(2, 2, 3))
    with pytest.raises(ValueError, match=r"RBM: expected v of shape \(N, 6\)"):
        rbm(good[:, :4])
    with pytest.raises(ValueError, match=r"sample_v: expected h of shape \(N, 3\) for n_hidden=3, got \(2, 6\)"):
        rbm.sample_v(good)
    with pytest.raises(ValueError, match=r"gibbs: steps must be >= 1, got 0"):
        rbm.gibbs(good, steps=0)


def test_data_outside_zero_one_is_rejected():
    rbm = nn.RBM(3, 2)
    for bad in (np.array([[0.5, 2.0, 0.0]]), np.array([[np.nan, 0.5, 0.5]]), np.array([[-1.0, 0.0, 0.0]])):
        with pytest.raises(ValueError, match=r"contrastive_divergence: v must hold values in \[0, 1\]"):
            rbm.contrastive_divergence(bad.astype(np.float32))
        with pytest.raises(ValueError, match=r"reconstruction_error: v must hold values in \[0, 1\]"):
            rbm.reconstruction_error(bad.astype(np.float32))


def test_free_energy_function_checks_parameter_shapes():
    v, W = np.zeros((2, 4), np.float32), np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match=r"free_energy: v_bias must have shape \(4,\)"):
        free_energy(v, W, np.zeros(3, np.float32), np.zeros(3, np.float32))
    with pytest.raises(ValueError, match=r"free_energy: h_bias must have shape \(3,\)"):
        free_energy(v, W, np.zeros(4, np.float32), np.zeros(4, np.float32))
    with pytest.raises(ValueError, match=r"free_energy: weight must be 2-D"):
        free_energy(v, np.zeros(4, np.float32), np.zeros(4, np.float32), np.zeros(3, np.float32))
