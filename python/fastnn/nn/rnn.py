"""Recurrent layers: LSTM, GRU, RNN (whole sequences, stacked, optionally bidirectional), their
one-step cells LSTMCell, GRUCell, RNNCell, and Embedding.

Names, arguments, shapes, weight names and layouts, and the default initialisation are PyTorch's,
so a PyTorch state dict of the same architecture loads and gives the same outputs:
`weight_ih_l{k}` (G, I), `weight_hh_l{k}` (G, H), `bias_ih_l{k}`, `bias_hh_l{k}` (G,), with the
suffix `_reverse` for the backward direction; G = 4H (LSTM, gates i f g o), 3H (GRU, r z n), H (RNN);
every parameter starts uniform in (-1/sqrt(H), 1/sqrt(H)). The cells use the same kernel with T = 1.

Each layer-direction runs as one fused C++ call per pass (fastnn.ops.rnn.recurrent): the input
projection of all steps as one GEMM, one GEMM and one fused pointwise pass per step.

Variable-length batches: `forward(input, hx, lengths=...)` with one length per sequence (any
order): a sequence's state stops changing after its length, its outputs there are zero, the
backward direction starts at each sequence's own last step, and the final states are those at each
sequence's own end -- what PyTorch gives for a packed sequence.
"""
from __future__ import annotations

import math
import numbers
import warnings

import numpy as np

from fastnn._tensor import Tensor
from fastnn.nn import functional as F
from fastnn.nn import init
from fastnn.nn.module import Module, Parameter
from fastnn.ops import rnn as _rnn
from fastnn.ops._common import as_tensor, check_int
from fastnn.ops.shape import cat

__all__ = ["RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell", "Embedding"]


def _shape_text(shape: tuple) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def _flag(fn: str, name: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{fn}: {name} must be a bool, got {value!r}")
    return bool(value)


def _positive(fn: str, name: str, value) -> int:
    value = check_int(fn, name, value, 0)
    if value < 1:
        raise ValueError(f"{fn}: {name} must be at least 1, got {value}")
    return value


def _nonlinearity(fn: str, value) -> str:
    if value not in ("tanh", "relu"):
        raise ValueError(f"{fn}: nonlinearity must be 'tanh' or 'relu', got {value!r}")
    return value


def _reset_uniform(module: Module, hidden_size: int) -> None:
    bound = 1.0 / math.sqrt(hidden_size)
    for param in module.parameters():
        init.uniform_(param, -bound, bound)


def _state(fn: str, name: str, value, shape: tuple, meaning: str) -> Tensor:
    t = as_tensor(value)
    if t.shape != shape:
        raise ValueError(f"{fn}: {name} must have shape {_shape_text(shape)} ({meaning}), got {_shape_text(t.shape)}")
    return t


def _join(states: list) -> Tensor:
    """Per layer-direction final states, each (1, B, H), as one (L * D, B, H) tensor."""
    return states[0] if len(states) == 1 else cat(states, axis=0)


class _RNNBase(Module):
    """The stacked, optionally bidirectional recurrent layer; see LSTM, GRU and RNN."""

    _cell = "lstm"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False):
        super().__init__()
        fn = type(self).__name__
        self.input_size = check_int(fn, "input_size", input_size, 0)
        self.hidden_size = _positive(fn, "hidden_size", hidden_size)
        self.num_layers = _positive(fn, "num_layers", num_layers)
        self.bias = _flag(fn, "bias", bias)
        self.batch_first = _flag(fn, "batch_first", batch_first)
        self.bidirectional = _flag(fn, "bidirectional", bidirectional)
        if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) or not 0.0 <= dropout <= 1.0:
            raise ValueError(f"{fn}: dropout must be a number in [0, 1] (the probability of zeroing an element "
                             f"between layers), got {dropout!r}")
        self.dropout = float(dropout)
        if self.dropout > 0 and self.num_layers == 1:
            warnings.warn(f"{fn}: dropout is applied between stacked layers, so dropout={self.dropout} does "
                          f"nothing with num_layers=1", UserWarning, stacklevel=3)
        gates = _rnn.GATES[self._cell] * self.hidden_size
        directions = 2 if self.bidirectional else 1
        for layer in range(self.num_layers):
            layer_input = self.input_size if layer == 0 else self.hidden_size * directions
            for direction in range(directions):
                suffix = f"_l{layer}" + ("_reverse" if direction else "")
                setattr(self, "weight_ih" + suffix, Parameter(np.empty((gates, layer_input), np.float32)))
                setattr(self, "weight_hh" + suffix, Parameter(np.empty((gates, self.hidden_size), np.float32)))
                if self.bias:
                    setattr(self, "bias_ih" + suffix, Parameter(np.empty((gates,), np.float32)))
                    setattr(self, "bias_hh" + suffix, Parameter(np.empty((gates,), np.float32)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Every weight and bias uniform in (-1/sqrt(hidden_size), 1/sqrt(hidden_size)), as PyTorch."""
        _reset_uniform(self, self.hidden_size)

    def _weights(self, layer: int, direction: int) -> tuple:
        suffix = f"_l{layer}" + ("_reverse" if direction else "")
        biases = (getattr(self, "bias_ih" + suffix), getattr(self, "bias_hh" + suffix)) if self.bias else (None, None)
        return (getattr(self, "weight_ih" + suffix), getattr(self, "weight_hh" + suffix)) + biases

    def _initial_states(self, hx, batch: int, batched: bool) -> tuple:
        """(h0, c0) as (L*D, B, H) tensors or None."""
        fn = type(self).__name__
        if hx is None:
            return None, None
        layers = self.num_layers * (2 if self.bidirectional else 1)
        shape = (layers, batch, self.hidden_size) if batched else (layers, self.hidden_size)
        meaning = ("num_layers * num_directions, batch, hidden_size" if batched
                   else "num_layers * num_directions, hidden_size: the input is unbatched")
        if self._cell == "lstm":
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError(f"{fn}: hx must be a tuple (h0, c0) of two tensors, got {type(hx).__name__}")
            states = [_state(fn, name, value, shape, meaning) for name, value in zip(("h0", "c0"), hx)]
        else:
            if isinstance(hx, (tuple, list)):
                raise TypeError(f"{fn}: hx must be one tensor h0 (the LSTM takes a tuple), got a {type(hx).__name__}")
            states = [_state(fn, "hx", hx, shape, meaning), None]
        if not batched:
            states = [None if s is None else s.reshape(layers, 1, self.hidden_size) for s in states]
        return tuple(states)

    def forward(self, input, hx=None, lengths=None):  # noqa: A002 (PyTorch's argument name)
        """input (T, B, input_size), (B, T, input_size) with batch_first, or unbatched (T, input_size);
        hx: h0 (or (h0, c0) for the LSTM) of shape (num_layers * num_directions, B, hidden_size), zeros
        when None; lengths: one length per sequence (0 <= length <= T), or None for full lengths.
        Returns (output, h_n) -- (output, (h_n, c_n)) for the LSTM -- with output (T, B, D * hidden_size)
        (batch first with batch_first) and h_n, c_n shaped like h0."""
        fn = type(self).__name__
        x = as_tensor(input)
        order = "(B, T, input_size)" if self.batch_first else "(T, B, input_size)"
        if x.ndim not in (2, 3) or x.shape[-1] != self.input_size:
            raise ValueError(f"{fn}: expected input of shape {order} or unbatched (T, input_size) with "
                             f"input_size={self.input_size}, got {_shape_text(x.shape)}")
        batched = x.ndim == 3
        if not batched:
            x = x.reshape(x.shape[0], 1, self.input_size)
        elif self.batch_first:
            x = x.transpose(0, 1)
        T, B = x.shape[0], x.shape[1]
        h0, c0 = self._initial_states(hx, B, batched)
        lengths = _rnn.check_lengths(fn, lengths, T, B)
        lstm, directions = self._cell == "lstm", 2 if self.bidirectional else 1

        layer_input, h_n, c_n = x, [], []
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(directions):
                k = layer * directions + direction
                out, h, c = _rnn.recurrent(self._cell, layer_input, *self._weights(layer, direction),
                                           None if h0 is None else h0[k], None if c0 is None else c0[k],
                                           lengths=lengths, reverse=direction == 1)
                outputs.append(out)
                h_n.append(h)
                c_n.append(c)
            layer_input = outputs[0] if directions == 1 else cat(outputs, axis=2)
            if self.dropout > 0 and self.training and layer < self.num_layers - 1:
                layer_input = F.dropout(layer_input, self.dropout, True)

        output, h_n = layer_input, _join(h_n)
        c_n = _join(c_n) if lstm else None
        if not batched:
            output = output.reshape(T, directions * self.hidden_size)
            h_n = h_n.reshape(h_n.shape[0], self.hidden_size)
            c_n = None if c_n is None else c_n.reshape(c_n.shape[0], self.hidden_size)
        elif self.batch_first:
            output = output.transpose(0, 1)
        return (output, (h_n, c_n)) if lstm else (output, h_n)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if getattr(self, "nonlinearity", "tanh") != "tanh":
            s += f", nonlinearity={self.nonlinearity!r}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        return s

    def get_config(self) -> dict:
        return {"input_size": self.input_size, "hidden_size": self.hidden_size, "num_layers": self.num_layers,
                "bias": self.bias, "batch_first": self.batch_first, "dropout": self.dropout,
                "bidirectional": self.bidirectional}


class LSTM(_RNNBase):
    """Long short-term memory over whole sequences (PyTorch's nn.LSTM, without proj_size):
    i, f, o = sigmoid(.), g = tanh(.) of x W_ih^T + b_ih + h W_hh^T + b_hh (gates stacked i, f, g, o),
    c' = f * c + i * g, h' = o * tanh(c'). forward(input, (h0, c0), lengths) -> output, (h_n, c_n)."""

    _cell = "lstm"


class GRU(_RNNBase):
    """Gated recurrent unit over whole sequences (PyTorch's nn.GRU): r, z = sigmoid(.) of
    x W_i^T + b_i + h W_h^T + b_h (gates stacked r, z, n), n = tanh(x W_in^T + b_in + r * (h W_hn^T +
    b_hn)), h' = (1 - z) * n + z * h. forward(input, h0, lengths) -> output, h_n."""

    _cell = "gru"


class RNN(_RNNBase):
    """Elman RNN over whole sequences (PyTorch's nn.RNN): h' = tanh (or relu) of
    x W_ih^T + b_ih + h W_hh^T + b_hh. forward(input, h0, lengths) -> output, h_n."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "tanh",
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False):
        self.nonlinearity = _nonlinearity("RNN", nonlinearity)
        self._cell = "rnn_" + nonlinearity
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional)

    def get_config(self) -> dict:
        config = super().get_config()
        config["nonlinearity"] = self.nonlinearity
        return config


# ---------------------------------------------------------------------------------------------
# one-step cells

class _CellBase(Module):
    _cell = "lstm"

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True):
        super().__init__()
        fn = type(self).__name__
        self.input_size = check_int(fn, "input_size", input_size, 0)
        self.hidden_size = _positive(fn, "hidden_size", hidden_size)
        self.bias = _flag(fn, "bias", bias)
        gates = _rnn.GATES[self._cell] * self.hidden_size
        self.weight_ih = Parameter(np.empty((gates, self.input_size), np.float32))
        self.weight_hh = Parameter(np.empty((gates, self.hidden_size), np.float32))
        if self.bias:
            self.bias_ih = Parameter(np.empty((gates,), np.float32))
            self.bias_hh = Parameter(np.empty((gates,), np.float32))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Every weight and bias uniform in (-1/sqrt(hidden_size), 1/sqrt(hidden_size)), as PyTorch."""
        _reset_uniform(self, self.hidden_size)

    def _step(self, input, states):  # noqa: A002
        """One step: input (B, I) or (I,); states: the given h (and c) or None. Returns (h', c')."""
        fn = type(self).__name__
        x = as_tensor(input)
        if x.ndim not in (1, 2) or x.shape[-1] != self.input_size:
            raise ValueError(f"{fn}: expected input of shape (batch, {self.input_size}) or unbatched "
                             f"({self.input_size},), got {_shape_text(x.shape)}")
        batched = x.ndim == 2
        B = x.shape[0] if batched else 1
        shape = (B, self.hidden_size) if batched else (self.hidden_size,)
        meaning = "batch, hidden_size" if batched else "hidden_size: the input is unbatched"
        states = [None if s is None else _state(fn, name, s, shape, meaning).reshape(B, self.hidden_size)
                  for name, s in zip(("h", "c"), states)]
        _, h, c = _rnn.recurrent(self._cell, x.reshape(1, B, self.input_size), self.weight_ih, self.weight_hh,
                                 self.bias_ih, self.bias_hh, *states)
        shape = (B, self.hidden_size) if batched else (self.hidden_size,)
        return h.reshape(shape), None if c is None else c.reshape(shape)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            s += ", bias=False"
        if getattr(self, "nonlinearity", "tanh") != "tanh":
            s += f", nonlinearity={self.nonlinearity!r}"
        return s

    def get_config(self) -> dict:
        return {"input_size": self.input_size, "hidden_size": self.hidden_size, "bias": self.bias}


class LSTMCell(_CellBase):
    """One LSTM step: forward(input, (h, c)) -> (h', c'); input (B, input_size) or (input_size,),
    states (B, hidden_size) (zeros when hx is None)."""

    _cell = "lstm"

    def forward(self, input, hx=None):  # noqa: A002
        if hx is None:
            hx = (None, None)
        elif not isinstance(hx, (tuple, list)) or len(hx) != 2:
            raise TypeError(f"LSTMCell: hx must be a tuple (h, c) of two tensors, got {type(hx).__name__}")
        return self._step(input, hx)


class GRUCell(_CellBase):
    """One GRU step: forward(input, h) -> h'."""

    _cell = "gru"

    def forward(self, input, hx=None):  # noqa: A002
        return self._step(input, (hx, None))[0]


class RNNCell(_CellBase):
    """One Elman RNN step: forward(input, h) -> h' = tanh (or relu) of x W_ih^T + b_ih + h W_hh^T + b_hh."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh"):
        self.nonlinearity = _nonlinearity("RNNCell", nonlinearity)
        self._cell = "rnn_" + nonlinearity
        super().__init__(input_size, hidden_size, bias)

    def forward(self, input, hx=None):  # noqa: A002
        return self._step(input, (hx, None))[0]

    def get_config(self) -> dict:
        config = super().get_config()
        config["nonlinearity"] = self.nonlinearity
        return config


# ---------------------------------------------------------------------------------------------
# embedding

class Embedding(Module):
    """A lookup table: forward(indices) = weight[indices], of shape indices.shape + (embedding_dim,).

    weight (num_embeddings, embedding_dim) starts N(0, 1), as in PyTorch. The row padding_idx starts
    at zero and gets no gradient. With max_norm, the rows looked up are renormalized in place to a
    norm_type-norm of at most max_norm before the lookup. Indices must be integers in
    [0, num_embeddings) (a TypeError or ValueError says which one is not); a row looked up several
    times gets the sum of those positions' gradients.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx=None, max_norm=None,
                 norm_type: float = 2.0):
        super().__init__()
        self.num_embeddings = check_int("Embedding", "num_embeddings", num_embeddings, 0)
        self.embedding_dim = check_int("Embedding", "embedding_dim", embedding_dim, 0)
        if padding_idx is not None:
            if isinstance(padding_idx, numbers.Integral) and padding_idx < 0:
                padding_idx = padding_idx + self.num_embeddings
            padding_idx = check_int("Embedding", "padding_idx", padding_idx, 0)
            if padding_idx >= self.num_embeddings:
                raise ValueError(f"Embedding: padding_idx must be within [-{self.num_embeddings}, "
                                 f"{self.num_embeddings}), got {padding_idx}")
        self.padding_idx = padding_idx
        for name, value in (("max_norm", max_norm), ("norm_type", norm_type)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Real) or value <= 0):
                raise ValueError(f"Embedding: {name} must be a positive number, got {value!r}")
        self.max_norm = None if max_norm is None else float(max_norm)
        self.norm_type = float(norm_type)
        self.weight = Parameter(np.empty((self.num_embeddings, self.embedding_dim), np.float32))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.normal_(self.weight)
        if self.padding_idx is not None:
            self.weight.data[self.padding_idx] = 0.0

    @classmethod
    def from_pretrained(cls, embeddings, freeze: bool = True, padding_idx=None, max_norm=None,
                        norm_type: float = 2.0) -> "Embedding":
        """An Embedding holding a copy of `embeddings` (num_embeddings, embedding_dim); frozen
        (requires_grad=False) unless freeze=False."""
        values = np.array(embeddings.data if isinstance(embeddings, Tensor) else embeddings, dtype=np.float32)
        if values.ndim != 2:
            raise ValueError(f"Embedding.from_pretrained: embeddings must be 2-D (num_embeddings, embedding_dim), "
                             f"got shape {_shape_text(values.shape)}")
        layer = cls(values.shape[0], values.shape[1], padding_idx, max_norm, norm_type)
        layer.weight.data[...] = values
        layer.weight.requires_grad = not freeze
        return layer

    def forward(self, input):  # noqa: A002
        return _rnn.embedding(input, self.weight, self.padding_idx, self.max_norm, self.norm_type)

    def extra_repr(self) -> str:
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        if self.padding_idx is not None:
            s += f", padding_idx={self.padding_idx}"
        if self.max_norm is not None:
            s += f", max_norm={self.max_norm}"
        if self.norm_type != 2.0:
            s += f", norm_type={self.norm_type}"
        return s

    def get_config(self) -> dict:
        return {"num_embeddings": self.num_embeddings, "embedding_dim": self.embedding_dim,
                "padding_idx": self.padding_idx, "max_norm": self.max_norm, "norm_type": self.norm_type}
