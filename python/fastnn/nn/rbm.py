"""RBM: a restricted Boltzmann machine with Bernoulli visible and hidden units, trained by
contrastive divergence (CD-k) or persistent contrastive divergence (PCD).

Shapes: V visible units, H hidden units, a batch of N rows. W is (H, V), the layout of
nn.Linear(V, H).weight, so a trained RBM initialises a Linear layer as it is (`to_linear()`).

    energy       E(v, h) = -b_v.v - b_h.h - h.W v
    free energy  F(v)    = -b_v.v - sum_j softplus((W v + b_h)_j)       p(v) is proportional to exp(-F(v))
    p(h_j = 1 | v) = sigmoid(W v + b_h)_j        p(v_i = 1 | h) = sigmoid(W^T h + b_v)_i

The log-likelihood gradient is -dF(v_data)/dtheta + E_model[dF(v)/dtheta]. CD-k estimates the
model's expectation at v_model, the end of k Gibbs steps started at the data; PCD keeps one
chain going across updates instead (Tieleman, 2008). `contrastive_divergence(v)` returns
F(v_data).mean() - F(v_model).mean() with v_model a constant, so its gradient is that estimate
and any optimizer trains the RBM: `loss.backward(); opt.step()`. The negative phase uses the
visible probabilities of the last step (mean field, less noisy than the binary samples); the
chain runs on binary samples. Everything is our GEMM (F.linear, bias fused) plus numpy
elementwise code; the samples come from `fastnn.bernoulli`, so `fastnn.manual_seed` makes a run
reproducible.
"""
from __future__ import annotations


import numpy as np

from fastnn._tensor import Tensor, no_grad
from fastnn.autograd import Function
from fastnn.nn import functional as F
from fastnn.nn import init
from fastnn.nn.layers import Linear
from fastnn.nn.module import Module, Parameter
from fastnn.ops import elementwise as _elementwise
from fastnn.ops._common import as_tensor, check_int
from fastnn.ops.random import bernoulli

__all__ = ["RBM", "free_energy"]


def _softplus_array(z: np.ndarray) -> np.ndarray:
    """log(1 + exp(z)) without overflow."""
    return np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))


class Softplus(Function):
    @staticmethod
    def forward(ctx, z):
        ctx.save_for_backward(z)
        return _softplus_array(z)

    @staticmethod
    def backward(ctx, grad):
        z, = ctx.saved_tensors
        return grad * _elementwise.stable_sigmoid(z)  # d softplus(z) / dz = sigmoid(z)


def _free_energy_from(v: Tensor, pre: Tensor, v_bias) -> Tensor:
    """F(v) given the hidden pre-activations pre = v W^T + b_h (N, H): (N,)."""
    return -(v @ v_bias) - Softplus.apply(pre).sum(axis=1)


def free_energy(v, weight, v_bias, h_bias) -> Tensor:
    """F(v) = -v.v_bias - sum_j softplus(v weight^T + h_bias)_j for each row of v (N, V): shape (N,).

    weight (H, V), v_bias (V,), h_bias (H,); differentiable in all four."""
    v, weight, v_bias, h_bias = (as_tensor(t) for t in (v, weight, v_bias, h_bias))
    if weight.ndim != 2:
        raise ValueError(f"free_energy: weight must be 2-D (n_hidden, n_visible), got shape {weight.shape}")
    H, V = weight.shape
    _check_rows("free_energy", v, V)
    if v_bias.shape != (V,):
        raise ValueError(f"free_energy: v_bias must have shape ({V},) for weight of shape {weight.shape}, "
                         f"got {v_bias.shape}")
    if h_bias.shape != (H,):
        raise ValueError(f"free_energy: h_bias must have shape ({H},) for weight of shape {weight.shape}, "
                         f"got {h_bias.shape}")
    return _free_energy_from(v, F.linear(v, weight, h_bias), v_bias)


def _check_rows(fn: str, x: Tensor, width: int, what: str = "v", name: str = "n_visible") -> None:
    if x.ndim != 2 or x.shape[1] != width:
        hint = ""
        if x.ndim > 2 and int(np.prod(x.shape[1:])) == width:
            hint = "; flatten it first (x.reshape(len(x), -1))"
        elif x.ndim == 1 and x.shape[0] == width:
            hint = "; add a batch axis (x.reshape(1, -1))"
        raise ValueError(f"{fn}: expected {what} of shape (N, {width}) for {name}={width}, "
                         f"got {x.shape}{hint}")


def _check_probabilities(fn: str, x: Tensor, what: str = "v") -> None:
    data = x.data
    if data.size and not (data.min() >= 0 and data.max() <= 1):  # NaN fails both comparisons
        outside = ~((data >= 0) & (data <= 1))
        bad = data[outside].reshape(-1)[0]
        raise ValueError(f"{fn}: {what} must hold values in [0, 1] (binary units or their probabilities), "
                         f"found {bad}; scale the data to [0, 1] first (e.g. pixels / 255)")


class RBM(Module):
    """A Bernoulli-Bernoulli restricted Boltzmann machine.

    RBM(n_visible, n_hidden, k=1, persistent=False): parameters W (n_hidden, n_visible),
    initialised N(0, 0.01^2) as Hinton's practical guide suggests, b_v (n_visible,) and
    b_h (n_hidden,), zero. k: Gibbs steps per update; persistent: PCD-k instead of CD-k (the
    chain, `persistent_chain`, starts from a binary sample of the first batch and keeps its size).

    Training, with any optimizer:

        loss = rbm.contrastive_divergence(v)     # v (N, n_visible), values in [0, 1]
        opt.zero_grad(); loss.backward(); opt.step()

    forward(v) is p(h = 1 | v), so a trained RBM is a feature layer (and `to_linear()` gives the
    equivalent nn.Linear for a Linear + Sigmoid stack to fine-tune).
    """

    def __init__(self, n_visible: int, n_hidden: int, k: int = 1, persistent: bool = False):
        super().__init__()
        self.n_visible = check_int("RBM", "n_visible", n_visible, 1)
        self.n_hidden = check_int("RBM", "n_hidden", n_hidden, 1)
        self.k = check_int("RBM", "k", k, 1)
        if not isinstance(persistent, (bool, np.bool_)):
            raise TypeError(f"RBM: persistent must be a bool, got {type(persistent).__name__} {persistent!r}")
        self.persistent = bool(persistent)
        self.W = Parameter(np.empty((self.n_hidden, self.n_visible), dtype=np.float32))
        self.b_v = Parameter(np.zeros((self.n_visible,), dtype=np.float32))
        self.b_h = Parameter(np.zeros((self.n_hidden,), dtype=np.float32))
        self.register_buffer("persistent_chain", None, persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.normal_(self.W, 0.0, 0.01)
        init.zeros_(self.b_v)
        init.zeros_(self.b_h)
        self.reset_chain()

    def reset_chain(self) -> None:
        """Forget the persistent chain; the next PCD update starts it again from its batch."""
        self.persistent_chain = None

    # -- the two conditionals -----------------------------------------------------------------
    def _visible(self, fn: str, v) -> Tensor:
        v = as_tensor(v)
        _check_rows(fn, v, self.n_visible)
        return v

    def sample_h(self, v):
        """(p(h = 1 | v), a binary sample of h), each (N, n_hidden); the probabilities are
        differentiable when grad mode is on, the sample is a constant."""
        v = self._visible("sample_h", v)
        probs = F.sigmoid(F.linear(v, self.W, self.b_h))
        return probs, bernoulli(probs.data)

    def sample_v(self, h):
        """(p(v = 1 | h), a binary sample of v), each (N, n_visible)."""
        h = as_tensor(h)
        _check_rows("sample_v", h, self.n_hidden, what="h", name="n_hidden")
        probs = F.sigmoid(F.linear(h, self.W.T, self.b_v))
        return probs, bernoulli(probs.data)

    def forward(self, v):
        return F.sigmoid(F.linear(self._visible("RBM", v), self.W, self.b_h))

    # -- Gibbs sampling -------------------------------------------------------------------------
    @no_grad()
    def _run_chain(self, h_probs: np.ndarray, steps: int):
        """`steps` rounds of h ~ p(h | .), v ~ p(v | h), starting from the hidden probabilities."""
        for step in range(steps):
            h = bernoulli(h_probs)
            v_probs = F.sigmoid(F.linear(h, self.W.T, self.b_v)).data
            v = bernoulli(v_probs).data
            if step + 1 < steps:
                h_probs = F.sigmoid(F.linear(Tensor(v), self.W, self.b_h)).data
        return v_probs, v

    def gibbs(self, v, steps: int = 1):
        """Run `steps` Gibbs steps v -> h -> v from v (N, n_visible); returns (p(v | h), v sample)
        of the last step, constants of shape (N, n_visible)."""
        v = self._visible("gibbs", v)
        steps = check_int("gibbs", "steps", steps, 1)
        with no_grad():
            h_probs = F.sigmoid(F.linear(v, self.W, self.b_h)).data
        v_probs, v_sample = self._run_chain(h_probs, steps)
        return Tensor(v_probs), Tensor(v_sample)

    # -- energies and training ----------------------------------------------------------------
    def free_energy(self, v) -> Tensor:
        """F(v) for each row of v (N, n_visible): shape (N,), differentiable (autograd)."""
        v = self._visible("free_energy", v)
        return _free_energy_from(v, F.linear(v, self.W, self.b_h), self.b_v)

    def contrastive_divergence(self, v) -> Tensor:
        """The CD-k (or PCD-k) loss of the batch v (N, n_visible), values in [0, 1]:
        F(v).mean() - F(v_model).mean(), v_model held constant. Its gradient is the CD estimate
        of minus the log-likelihood gradient; its value is not the log-likelihood (watch
        `reconstruction_error` instead). Advances the persistent chain when persistent."""
        v = self._visible("contrastive_divergence", v)
        _check_probabilities("contrastive_divergence", v)
        pre = F.linear(v, self.W, self.b_h)        # positive phase, shared with the free energy
        if self.persistent:
            chain = self.persistent_chain
            if chain is None or chain.shape[1] != self.n_visible:
                chain = bernoulli(v.data).data
            with no_grad():
                h_probs = F.sigmoid(F.linear(Tensor(chain), self.W, self.b_h)).data
        else:
            h_probs = _elementwise.stable_sigmoid(pre.data)
        v_model, v_sample = self._run_chain(h_probs, self.k)
        if self.persistent:
            self.persistent_chain = v_sample
        positive = _free_energy_from(v, pre, self.b_v).mean()
        negative = self.free_energy(Tensor(v_model)).mean()
        return positive - negative

    @no_grad()
    def reconstruction_error(self, v) -> float:
        """Mean squared error between v and its mean-field reconstruction p(v | h = p(h | v)),
        per element; deterministic."""
        v = self._visible("reconstruction_error", v)
        _check_probabilities("reconstruction_error", v)
        h = F.sigmoid(F.linear(v, self.W, self.b_h))
        r = F.sigmoid(F.linear(h, self.W.T, self.b_v))
        return float(np.mean(np.square(r.data - v.data, dtype=np.float64)))

    # -- conversions --------------------------------------------------------------------------
    def to_linear(self) -> Linear:
        """An nn.Linear(n_visible, n_hidden) holding copies of W and b_h: with a Sigmoid after it,
        it computes p(h = 1 | v), the start of a fine-tuned network."""
        layer = Linear(self.n_visible, self.n_hidden)
        layer.weight.data[...] = self.W.data
        layer.bias.data[...] = self.b_h.data
        return layer

    def extra_repr(self) -> str:
        return (f"n_visible={self.n_visible}, n_hidden={self.n_hidden}, k={self.k}, "
                f"persistent={self.persistent}")

    def get_config(self) -> dict:
        return {"n_visible": self.n_visible, "n_hidden": self.n_hidden, "k": self.k, "persistent": self.persistent}
