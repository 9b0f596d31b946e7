"""Recurrent ops: one layer and one direction of an LSTM, GRU or RNN over a whole sequence as one
autograd Function (one `_C.rnn_forward` call forward, one `_C.rnn_backward` call back), and the
embedding lookup that usually feeds them.

The Function's one output is a packed tensor of shape (T + states, B, H): the outputs of the T
steps, then h_n and, for the LSTM, c_n; `recurrent(cell, x, ...)` returns its three slices. The
forward saves what the backward needs: the inputs, the packed output (the hidden states), the
LSTM's cell states, the gate activations, and the held states when `lengths` is given.
"""
from __future__ import annotations

import numpy as np

from fastnn import _device
from fastnn._tensor import Tensor, is_grad_enabled
from fastnn.autograd import Function
from fastnn.ops._common import as_tensor

CELLS = ("lstm", "gru", "rnn_tanh", "rnn_relu")
GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}


_contiguous = _device.contiguous


class Recurrent(Function):
    """One layer-direction: x (T, B, I), w_ih (G, I), w_hh (G, H), b_ih/b_hh (G,) or None,
    h0/c0 (B, H) or None -> packed (T + states, B, H)."""
    cuda = True
    numpy_math = False

    @staticmethod
    def forward(ctx, x, w_ih, w_hh, b_ih, b_hh, h0, c0, cell, lengths, reverse):
        x, w_ih, w_hh, h0, c0 = (_contiguous(a) for a in (x, w_ih, w_hh, h0, c0))
        out, hs, cs, gates = _device.kernels(x).rnn_forward(cell, x, w_ih, w_hh, _contiguous(b_ih), _contiguous(b_hh), h0, c0,
                                            lengths=lengths, reverse=reverse)
        ctx.save_for_backward(x, w_ih, w_hh, h0, c0, out, hs, cs, gates)
        ctx.cell, ctx.lengths, ctx.reverse = cell, lengths, reverse
        ctx.has_bias = b_ih is not None or b_hh is not None
        return out

    @staticmethod
    def backward(ctx, grad):
        x, w_ih, w_hh, h0, c0, out, hs, cs, gates = ctx.saved_tensors
        need = ctx.needs_input_grad
        dx, dw_ih, dw_hh, db_ih, db_hh, dh0, dc0 = _device.kernels(x).rnn_backward(
            ctx.cell, _contiguous(grad), x, w_ih, w_hh, h0, c0, out, hs, cs, gates,
            lengths=ctx.lengths, reverse=ctx.reverse, need_dx=need[0], bias=ctx.has_bias and (need[3] or need[4]))
        keep = lambda i, value: value if need[i] else None  # noqa: E731
        return (dx, keep(1, dw_ih), keep(2, dw_hh), keep(3, db_ih), keep(4, db_hh), keep(5, dh0), keep(6, dc0),
                None, None, None)


def check_lengths(fn: str, lengths, T: int, B: int):
    """lengths as a contiguous int64 array of shape (B,) with 0 <= length <= T, or None."""
    if lengths is None:
        return None
    a = lengths.data if isinstance(lengths, Tensor) else np.asarray(lengths)
    if a.dtype.kind == "f" and a.size and np.all(np.isfinite(a)) and np.array_equal(a, np.round(a)):
        a = a.astype(np.int64)  # a fastnn Tensor of lengths is float32
    if a.dtype.kind not in "iu" or a.dtype == np.bool_:
        raise TypeError(f"{fn}: lengths must hold integers, got dtype {a.dtype}")
    if a.shape != (B,):
        raise ValueError(f"{fn}: lengths must have shape ({B},) (one length per sequence of the batch), "
                         f"got {a.shape}")
    a = np.ascontiguousarray(a, dtype=np.int64)
    bad = np.flatnonzero((a < 0) | (a > T))
    if bad.size:
        raise ValueError(f"{fn}: lengths[{bad[0]}] = {a[bad[0]]} is out of range: expected 0 <= length <= {T} "
                         f"(the padded sequence's steps)")
    return a


def _recurrent_args(cell, x, w_ih, w_hh, b_ih, b_hh, h0, c0, lengths):
    if cell not in CELLS:
        raise ValueError(f"recurrent: cell must be one of {', '.join(CELLS)}, got {cell!r}")
    x = as_tensor(x)
    if x.ndim != 3:
        raise ValueError(f"recurrent: x must be (T, B, I), got shape {x.shape}")
    tensors = tuple(None if a is None else as_tensor(a) for a in (w_ih, w_hh, b_ih, b_hh, h0, c0))
    return (x,) + tensors, check_lengths("recurrent", lengths, x.shape[0], x.shape[1])


def recurrent_packed(cell: str, x, w_ih, w_hh, b_ih=None, b_hh=None, h0=None, c0=None, lengths=None,
                     reverse: bool = False) -> Tensor:
    """One layer-direction as one autograd node: the packed (T + states, B, H) tensor holding the
    outputs, then h_n and, for the LSTM, c_n (see `recurrent`)."""
    tensors, lengths = _recurrent_args(cell, x, w_ih, w_hh, b_ih, b_hh, h0, c0, lengths)
    return Recurrent.apply(*tensors, cell, lengths, bool(reverse))


def recurrent(cell: str, x, w_ih, w_hh, b_ih=None, b_hh=None, h0=None, c0=None, lengths=None,
              reverse: bool = False) -> tuple:
    """One layer-direction of a recurrent network over a whole sequence: (output (T, B, H),
    h_n (1, B, H), c_n (1, B, H) for the LSTM, else None).

    cell: 'lstm', 'gru', 'rnn_tanh' or 'rnn_relu'; x (T, B, I); w_ih (G, I), w_hh (G, H), biases
    (G,) or None; h0, c0 (B, H) or None (zeros); lengths: (B,) ints in [0, T] or None (a row's
    state stops changing after its length and its outputs there are zero); reverse runs each row
    from its own last step back to step 0. Without gradients to record (no_grad, or no input that
    requires grad), the kernel runs without building a graph node.
    """
    tensors, lengths = _recurrent_args(cell, x, w_ih, w_hh, b_ih, b_hh, h0, c0, lengths)
    T = tensors[0].shape[0]
    lstm = cell == "lstm"
    if is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        packed = Recurrent.apply(*tensors, cell, lengths, bool(reverse))
        return packed[:T], packed[T:T + 1], (packed[T + 1:T + 2] if lstm else None)
    arrays = [None if t is None else _contiguous(t.data) for t in tensors]
    out = _device.kernels(arrays[0]).rnn_forward(cell, *arrays, lengths=lengths, reverse=bool(reverse))[0]
    rows = out.narrow if _device.is_device_array(out) else lambda a, b: out[a:b]
    return Tensor(rows(0, T)), Tensor(rows(T, T + 1)), (Tensor(rows(T + 1, T + 2)) if lstm else None)


# ---------------------------------------------------------------------------------------------
# embedding lookup

def _position(mask: np.ndarray) -> tuple:
    """The index (a tuple of ints) of the first True of mask."""
    return tuple(int(i) for i in np.unravel_index(int(np.flatnonzero(mask.ravel())[0]), mask.shape))


def embedding_indices(fn: str, indices, num_embeddings: int) -> np.ndarray:
    """Indices as an int64 array, checked: integers (whole-valued floats, such as a fastnn Tensor
    of token ids, are accepted, on any device) in [0, num_embeddings)."""
    a = indices.detach().cpu().data if isinstance(indices, Tensor) else np.asarray(indices)
    if a.dtype == np.bool_ or a.dtype.kind not in "iuf":
        raise TypeError(f"{fn}: indices must be integers, got dtype {a.dtype}")
    if a.dtype.kind == "f":
        whole = np.isfinite(a) & (a == np.round(a))
        if not np.all(whole):
            where = _position(~whole)
            raise TypeError(f"{fn}: indices must be integers, got {float(a[where])!r} at position {where}; "
                            f"pass integer token ids (numpy int64)")
    a = a.astype(np.int64, copy=False)
    bad = (a < 0) | (a >= num_embeddings)
    if np.any(bad):
        where = _position(bad)
        raise ValueError(f"{fn}: index {int(a[where])} at position {where} is out of range for {num_embeddings} "
                         f"embeddings: expected 0 <= index < {num_embeddings}")
    return a


class Embedding(Function):
    """weight (V, D)[indices] -> indices.shape + (D,); the gradient of a row is the sum over every
    position that looked it up (np.add.at: repeated indices add up), zero for padding_idx. On a
    device: cuda.embedding_forward/backward, the indices staying on the host (checked there), the
    backward summing each row's positions in the same order, so the same bits as np.add.at."""
    cuda = True

    @staticmethod
    def forward(ctx, weight, indices, padding_idx):
        ctx.indices, ctx.padding_idx, ctx.weight_shape = indices, padding_idx, weight.shape
        if _device.is_device_array(weight):
            ctx.indices = np.asarray(indices, order="C")  # (ascontiguousarray makes 0-d 1-d)
            return _device.backend.embedding_forward(weight, ctx.indices)
        return np.take(weight, indices, axis=0)

    @staticmethod
    def backward(ctx, grad):
        V, D = ctx.weight_shape
        if _device.is_device_array(grad):
            return _device.backend.embedding_backward(grad, ctx.indices, V, ctx.padding_idx), None, None
        grad_w = np.zeros((V, D), dtype=np.float32)
        np.add.at(grad_w, ctx.indices.reshape(-1), np.asarray(grad, dtype=np.float32).reshape(-1, D))
        if ctx.padding_idx is not None:
            grad_w[ctx.padding_idx] = 0.0
        return grad_w, None, None


def renorm_rows(weight: np.ndarray, indices: np.ndarray, max_norm: float, norm_type: float) -> None:
    """Scale the looked-up rows whose norm exceeds max_norm down to max_norm, in place (PyTorch's
    embedding_renorm_: scale = max_norm / (norm + 1e-7))."""
    rows = np.unique(indices)
    if rows.size == 0:
        return
    values = weight[rows].astype(np.float64)
    norms = np.linalg.norm(values, ord=norm_type, axis=1)
    over = norms > max_norm
    if np.any(over):
        scale = max_norm / (norms[over] + 1e-7)
        weight[rows[over]] = (values[over] * scale[:, None]).astype(np.float32)


def embedding(indices, weight, padding_idx=None, max_norm=None, norm_type: float = 2.0) -> Tensor:
    """weight[indices] with a gradient for weight (see Embedding); with max_norm, the rows looked
    up are first renormalized in place as PyTorch does."""
    w = as_tensor(weight)
    if max_norm is not None and w.is_cuda:  # refused before any row is touched
        raise NotImplementedError(f"embedding: max_norm has no CUDA kernel yet (the rows are renormalized on the "
                                  f"host); the weight is on {w.device}: use max_norm=None there, or run on the CPU")
    if w.ndim != 2:
        raise ValueError(f"embedding: weight must be 2-D (num_embeddings, embedding_dim), got shape {w.shape}")
    idx = embedding_indices("embedding", indices, w.shape[0])
    if padding_idx is not None:
        if not -w.shape[0] <= padding_idx < w.shape[0]:
            raise ValueError(f"embedding: padding_idx={padding_idx} must be within [-{w.shape[0]}, {w.shape[0]})")
        padding_idx %= w.shape[0]
    if max_norm is not None:
        renorm_rows(w.data, idx, float(max_norm), float(norm_type))
    return Embedding.apply(w, idx, padding_idx)
