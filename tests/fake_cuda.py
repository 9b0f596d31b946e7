"""A stand-in for fastnn._C.cuda that keeps "device" arrays in host memory and computes with numpy.

It lets the tests drive the Python side of the CUDA backend (device names, moves, dispatch in
the ops, autograd across devices, Module.to, the optimizers' device paths, the error messages)
on machines without a GPU; the same tests run against the real kernels where a GPU is present.
Its kernels are plain numpy: they check the Python layer, never the CUDA code.
"""
from __future__ import annotations

import numpy as np

from fastnn import _C
from fastnn.nn import functional as F


class Array:
    """Host memory posing as device memory: no implicit conversion to numpy."""

    def __init__(self, host: np.ndarray, device: int):
        self._host = host
        self.device = device

    shape = property(lambda self: self._host.shape)
    ndim = property(lambda self: self._host.ndim)
    size = property(lambda self: self._host.size)
    dtype = property(lambda self: self._host.dtype)

    def numpy(self):
        return self._host.copy()

    def reshape(self, shape):
        return Array(self._host.reshape(shape), self.device)

    def narrow(self, start, stop):
        return Array(self._host[start:stop], self.device)

    def copy(self):
        return Array(self._host.copy(), self.device)

    def __array__(self, *args, **kwargs):
        raise TypeError("can't convert a CUDA array to numpy implicitly")


def _new(x, device):
    return Array(np.asarray(x, dtype=np.float32, order="C"), device)  # (ascontiguousarray makes 0-d 1-d)


def _hosts(arrays):
    """The host arrays behind a list of fake device arrays."""
    return [a._host for a in arrays]


class FakeCuda:
    """During capture() kernels that write into existing arrays do nothing, as a CUDA capture
    records them without running them; the others compute as usual (their values are not used)."""
    Array = Array
    capturing = False

    def is_built(self): return True
    tf32 = False
    def set_allow_tf32(self, allow): self.tf32 = allow  # noqa: E301
    def allow_tf32(self): return self.tf32  # noqa: E301
    def device_count(self): return 1
    def unavailable_reason(self): return ""
    def synchronize(self, device=0): pass
    def empty_cache(self): pass
    def memory_allocated(self, device=0): return 0
    def memory_reserved(self, device=0): return 0

    def empty(self, shape, dtype="float32", device=0):
        return Array(np.empty(shape, dtype=dtype), device)

    def from_numpy(self, array, device=0):
        return Array(np.array(array, copy=True), device)

    def fill(self, y, value):
        if self.capturing:
            return
        y._host[...] = value

    def gemm(self, a, b, trans_a=False, trans_b=False, bias=None, relu=False, alpha=1.0):
        A = a._host.T if trans_a else a._host
        B = b._host.T if trans_b else b._host
        c = alpha * (A.astype(np.float64) @ B)
        if bias is not None:
            c = c + bias._host
        return _new(np.maximum(c, 0) if relu else c, a.device)

    def binary(self, op, a, b):
        try:
            np.broadcast_shapes(a.shape, b.shape)
        except ValueError:
            raise ValueError(f"cuda.binary: shapes {a.shape} of 'a' and {b.shape} of 'b' do not broadcast") from None
        ops = (np.add, np.subtract, np.multiply, np.divide, np.power,
               lambda x, y: y * np.power(x, y - 1),  # pow's gradient factors, as the CPU's Pow
               lambda x, y: np.where((x == 0) & (y >= 0), 0, np.power(x, y) * np.log(x)))
        with np.errstate(all="ignore"):
            return _new(ops[op](a._host, b._host), a.device)

    def expand(self, x, shape):
        return _new(np.broadcast_to(x._host, tuple(shape)), x.device)

    # leaky_relu in float32 and the gelus in float64, as the CPU's nn.functional.
    def unary(self, op, x, param=0.0):
        v = x._host.astype(np.float64)
        with np.errstate(all="ignore"):
            out = [lambda: -v, lambda: np.exp(v), lambda: np.log(v), lambda: np.sqrt(v), lambda: 1 / (1 + np.exp(-v)),
                   lambda: np.tanh(v), lambda: np.where(x._host > 0, x._host, x._host * np.float32(param)),
                   lambda: F.gelu_numpy(v, "none"), lambda: F.gelu_numpy(v, "tanh")][op]()
        return _new(out, x.device)

    def unary_backward(self, op, grad_out, saved, param=0.0):
        g, s = grad_out._host, saved._host
        with np.errstate(all="ignore"):
            out = [lambda: -g, lambda: g * s, lambda: g / s, lambda: g * 0.5 / s, lambda: g * s * (1 - s),
                   lambda: g * (1 - s * s), lambda: np.where(s > 0, g, g * np.float32(param)),
                   lambda: g * F.gelu_derivative_numpy(s.astype(np.float64), "none"),
                   lambda: g * F.gelu_derivative_numpy(s.astype(np.float64), "tanh")][op]()
        return _new(out, grad_out.device)

    def permute(self, x, dims):
        return _new(np.transpose(x._host, dims), x.device)

    @staticmethod
    def _view(host, offset, shape, strides):
        """The view the binding checks and walks: inside the array, or a ValueError."""
        flat = host.reshape(-1)
        if 0 not in shape:
            reach = [(n - 1) * s for n, s in zip(shape, strides)]
            if offset + sum(r for r in reach if r < 0) < 0 or offset + sum(r for r in reach if r > 0) >= flat.size:
                raise ValueError(f"cuda.gather_strided: the view of shape {tuple(shape)} at offset {offset} reaches "
                                 f"outside the array of {flat.size} elements")
        base = flat[offset:] if offset < flat.size else flat
        return np.lib.stride_tricks.as_strided(base, shape=tuple(shape), strides=tuple(4 * s for s in strides))

    def gather_strided(self, x, offset, shape, strides):
        return _new(self._view(x._host, offset, shape, strides).copy(), x.device)

    def scatter_strided(self, dst, src, offset, strides):
        if self.capturing:
            return
        self._view(dst._host, offset, src.shape, strides)[...] = src._host

    def cat(self, tensors, axis):
        return _new(np.concatenate([t._host for t in tensors], axis=axis), tensors[0].device)

    def split(self, x, sizes, axis):
        return [_new(p, x.device) for p in np.split(x._host, np.cumsum(sizes)[:-1], axis=axis)]

    def axpby(self, y, alpha, x, beta):
        if self.capturing:
            return
        y._host[...] = alpha * x._host + (beta * y._host if beta != 0 else 0)

    def relu_forward(self, x):
        return _new(np.where(x._host > 0, x._host, 0), x.device)

    def relu_backward(self, grad_out, out):
        return _new(np.where(out._host > 0, grad_out._host, 0), out.device)

    def column_sums(self, x):
        return _new(x._host.sum(axis=0, dtype=np.float64), x.device)

    def sum_all(self, x, scale=1.0):
        return _new(scale * x._host.sum(dtype=np.float64), x.device)

    # reductions of x (outer, R, inner) over R
    def reduce_sum(self, x, scale=1.0):
        return _new(scale * x._host.sum(axis=1, dtype=np.float64), x.device)

    def reduce_max(self, x):
        if x.shape[1] == 0:
            raise ValueError(f"cuda.reduce_max: cannot reduce an empty axis: x has shape {x.shape}")
        return _new(x._host.max(axis=1), x.device)

    def reduce_max_backward(self, grad_out, x, out):
        is_max = x._host == out._host[:, None, :]
        ties = is_max.sum(axis=1, keepdims=True, dtype=np.float32)
        return _new(np.where(is_max, grad_out._host[:, None, :] / ties, 0), x.device)

    # softmax and the losses: float64 numpy with the kernels' conventions (csrc/cuda/loss.cu)
    def softmax_forward(self, x, dim, log=False):
        v = x._host.astype(np.float64)
        if v.size == 0:
            return _new(v, x.device)
        shifted = v - v.max(axis=dim, keepdims=True)
        log_p = shifted - np.log(np.exp(shifted).sum(axis=dim, keepdims=True))
        return _new(log_p if log else np.exp(log_p), x.device)

    def softmax_backward(self, grad_out, out, dim, log=False):
        g, y = grad_out._host.astype(np.float64), out._host.astype(np.float64)
        if log:
            return _new(g - np.exp(y) * g.sum(axis=dim, keepdims=True), out.device)
        return _new(y * (g - (g * y).sum(axis=dim, keepdims=True)), out.device)

    @staticmethod
    def _class_rows(logits, target, weight, ignore_index, label_smoothing, log_probs):
        """log-probabilities (N, C), the class weights w (C,), the smoothed target distribution q
        (N, C: zero rows where ignored, NaN rows for labels that are not classes) and each row's
        weight in the mean's divisor: the row's loss is -sum_c w_c q_c log_p_c."""
        x = logits._host.astype(np.float64)
        N, C = x.shape
        log_p = x
        if not log_probs:
            m = x.max(1, keepdims=True)
            log_p = x - m - np.log(np.exp(x - m).sum(1, keepdims=True))
        w = np.ones(C) if weight is None else weight._host.astype(np.float64)
        eps, t = label_smoothing, target._host
        if t.shape == x.shape:  # probabilities
            return log_p, w, (1 - eps) * t + eps / C, np.ones(N)
        labels = t.astype(np.float64)
        ignored = labels == ignore_index
        valid = (labels == np.round(labels)) & (labels >= 0) & (labels < C) & ~ignored
        safe = np.where(valid, labels, 0).astype(np.int64)
        q = np.full((N, C), eps / C)
        q[np.arange(N), safe] += 1 - eps
        q[ignored] = 0
        q[~valid & ~ignored] = np.nan
        return log_p, w, q, np.where(ignored, 0.0, np.where(valid, w[safe], np.nan))

    def cross_entropy_forward(self, logits, target, *, weight=None, ignore_index=-100, label_smoothing=0.0,
                              reduction="mean", log_probs=False):
        log_p, w, q, row_weight = self._class_rows(logits, target, weight, ignore_index, label_smoothing, log_probs)
        with np.errstate(all="ignore"):
            rows = -(w * np.where(q == 0, 0, q * log_p)).sum(1)
            loss = {"none": rows, "sum": rows.sum(), "mean": rows.sum() / row_weight.sum()}[reduction]
        return _new(loss, logits.device), _new(row_weight.sum(), logits.device)

    def cross_entropy_backward(self, logits, target, grad_loss, weight_sum, *, weight=None, ignore_index=-100,
                               label_smoothing=0.0, reduction="mean", log_probs=False, need_target=False):
        log_p, w, q, _ = self._class_rows(logits, target, weight, ignore_index, label_smoothing, log_probs)
        g = grad_loss._host.astype(np.float64).reshape(-1, 1)
        with np.errstate(all="ignore"):
            if reduction == "mean":
                g = g / weight_sum._host.reshape(())
            wq = w * q
            dx = g * (wq.sum(1, keepdims=True) * (0 if log_probs else np.exp(log_p)) - wq)
        dx[~q.any(1)] = 0  # ignored rows (the mean's divisor may be 0 there)
        dt = _new(-(1 - label_smoothing) * g * w * log_p, logits.device) if need_target else None
        return _new(dx, logits.device), dt

    @staticmethod
    def _elementwise_terms(kind, x, y, pos_weight, delta):
        """Each element's loss and its derivatives by input and target (kinds: mse, l1, huber, bce, with logits)."""
        d = x - y
        if kind == 0:
            return d * d, 2 * d, -2 * d
        if kind == 1:
            return np.abs(d), np.sign(d), -np.sign(d)
        if kind == 2:
            a, clipped = np.abs(d), np.clip(d, -delta, delta)
            return np.where(a < delta, 0.5 * d * d, delta * (a - 0.5 * delta)), clipped, -clipped
        if kind == 3:
            inside = (x >= 0) & (x <= 1)
            log_x, log_1mx = np.maximum(np.log(x), -100), np.maximum(np.log1p(-x), -100)
            terms = (-(y * log_x + (1 - y) * log_1mx), (x - y) / np.maximum((1 - x) * x, 1e-12), log_1mx - log_x)
            return tuple(np.where(inside, v, np.nan) for v in terms)
        pw = 1.0 if pos_weight is None else pos_weight
        sp_neg = np.logaddexp(0, -x)  # softplus(-x)
        sigmoid = np.exp(-np.logaddexp(0, -x))
        return (1 - y) * x + (1 + (pw - 1) * y) * sp_neg, sigmoid * (pw * y + 1 - y) - pw * y, (pw - 1) * sp_neg - x

    def elementwise_loss_forward(self, kind, input, target, *, weight=None, pos_weight=None, delta=1.0,
                                 reduction="mean"):
        with np.errstate(all="ignore"):
            loss, _, _ = self._elementwise_terms(kind, input._host.astype(np.float64), target._host.astype(np.float64),
                                                 None if pos_weight is None else pos_weight._host, delta)
            loss = loss * (1 if weight is None else weight._host)
            reduced = {"none": loss, "sum": loss.sum(), "mean": loss.sum() / np.float64(loss.size)}[reduction]
        return _new(reduced, input.device)

    def elementwise_loss_backward(self, kind, grad_loss, input, target, *, weight=None, pos_weight=None, delta=1.0,
                                  reduction="mean", need_input=True, need_target=True):
        with np.errstate(all="ignore"):
            _, dx, dy = self._elementwise_terms(kind, input._host.astype(np.float64), target._host.astype(np.float64),
                                                None if pos_weight is None else pos_weight._host, delta)
        g = grad_loss._host.astype(np.float64) * (1 if weight is None else weight._host)
        if reduction == "mean":
            g = g / max(input.size, 1)
        return (_new(g * dx, input.device) if need_input else None, _new(g * dy, input.device) if need_target else None)

    # convolution and pooling: the CPU kernels on the host copies
    def conv2d_forward(self, input, weight, bias, stride, padding, dilation, groups):
        out = _C.conv2d_forward(input._host, weight._host, None if bias is None else bias._host, stride, padding,
                                dilation, groups)
        return _new(out, input.device)

    def conv2d_backward(self, grad_output, input, weight, stride, padding, dilation, groups, needs):
        grads = _C.conv2d_backward(np.ascontiguousarray(grad_output._host), input._host, weight._host, stride,
                                   padding, dilation, groups, tuple(needs))
        return tuple(None if g is None else _new(g, input.device) for g in grads)

    def conv_transpose2d_forward(self, input, weight, bias, stride, padding, output_padding, dilation, groups):
        x, output_padding = _below_stride(input._host, stride, output_padding)
        out = _C.conv_transpose2d_forward(x, weight._host, None if bias is None else bias._host, stride, padding,
                                          output_padding, dilation, groups)
        return _new(out, input.device)

    def conv_transpose2d_backward(self, grad_output, input, weight, stride, padding, output_padding, dilation, groups,
                                  needs):
        x, output_padding = _below_stride(input._host, stride, output_padding)
        gi, gw, gb = _C.conv_transpose2d_backward(np.ascontiguousarray(grad_output._host), x, weight._host, stride,
                                                  padding, output_padding, dilation, groups, tuple(needs))
        if gi is not None:  # without the gradients of the zero rows _below_stride added
            gi = gi[:, :, :input.shape[2], :input.shape[3]]
        return tuple(None if g is None else _new(g, input.device) for g in (gi, gw, gb))

    def max_pool2d_forward(self, input, kernel_size, stride, padding, dilation, ceil_mode):
        out, indices = _C.max_pool2d_forward(input._host, kernel_size, stride, padding, dilation, ceil_mode)
        return _new(out, input.device), Array(indices.astype(np.int64), input.device)

    def max_pool2d_backward(self, grad_output, indices, input_size):
        return _new(_C.max_pool2d_backward(np.ascontiguousarray(grad_output._host),
                                           indices._host.astype(np.int32), input_size), grad_output.device)

    def dropout_mask(self, shape, p, seed, offset, counter=None, device=0):
        from reference import dropout_mask_ref
        if counter is not None:  # the draw number lives on the "device"; advanced unless being recorded
            offset = int(counter._host.reshape(-1)[0])
            if not self.capturing:
                counter._host += 1
        n = int(np.prod(shape, dtype=np.int64))
        return Array(dropout_mask_ref(n, p, seed, offset).reshape(shape), device)

    def copy_(self, dst, src):
        if self.capturing:
            return
        dst._host[...] = src._host if isinstance(src, Array) else np.asarray(src, dtype=dst._host.dtype)

    def capture(self, device, fn):
        """No graph here: a replay calls fn again and copies its result into the first one's."""
        self.capturing = True
        try:
            result = fn()
        finally:
            self.capturing = False
        return FakeGraph(fn, result), result

    def batch_norm_forward(self, input, weight, bias, running_mean, running_var, *, training, momentum, eps):
        host = [None if a is None else a._host for a in (weight, bias, running_mean, running_var)]
        if self.capturing and training and running_mean is not None:  # recorded, not run: leave them be
            host[2], host[3] = host[2].copy(), host[3].copy()
        y, mean, invstd = _C.batch_norm_forward(input._host, *host, training=training, momentum=momentum, eps=eps)
        return tuple(_new(a, input.device) for a in (y, mean, invstd))

    def batch_norm_backward(self, grad_output, input, save_mean, save_invstd, weight, *, training):
        grads = _C.batch_norm_backward(np.ascontiguousarray(grad_output._host), input._host, save_mean._host,
                                       save_invstd._host, None if weight is None else weight._host, training=training)
        return tuple(_new(g, input.device) for g in grads)

    def global_avg_pool_forward(self, input):
        return _new(input._host.mean(axis=(2, 3), keepdims=True, dtype=np.float64), input.device)

    def global_avg_pool_backward(self, grad_output, input_size):
        g = grad_output._host / (input_size[0] * input_size[1])
        return _new(np.broadcast_to(g, g.shape[:2] + tuple(input_size)), grad_output.device)

    def avg_pool2d_forward(self, input, kernel_size, stride, padding, ceil_mode=False, count_include_pad=True,
                           divisor_override=0):
        return _new(_C.avg_pool2d_forward(input._host, kernel_size, stride, padding, ceil_mode, count_include_pad,
                                          divisor_override), input.device)

    def avg_pool2d_backward(self, grad_output, input_size, kernel_size, stride, padding, ceil_mode=False,
                            count_include_pad=True, divisor_override=0):
        return _new(_C.avg_pool2d_backward(np.ascontiguousarray(grad_output._host), input_size, kernel_size, stride,
                                           padding, ceil_mode, count_include_pad, divisor_override), grad_output.device)

    def adaptive_avg_pool2d_forward(self, input, output_size):
        return _new(_C.adaptive_avg_pool2d_forward(input._host, output_size), input.device)

    def adaptive_avg_pool2d_backward(self, grad_output, input_size):
        return _new(_C.adaptive_avg_pool2d_backward(np.ascontiguousarray(grad_output._host), input_size),
                    grad_output.device)

    def rnn_forward(self, cell, x, w_ih, w_hh, b_ih=None, b_hh=None, h0=None, c0=None, *, lengths=None,
                    reverse=False):
        host = [None if a is None else np.ascontiguousarray(a._host) for a in (x, w_ih, w_hh, b_ih, b_hh, h0, c0)]
        results = _C.rnn_forward(cell, *host, lengths=lengths, reverse=reverse)
        return tuple(None if r is None else _new(r, x.device) for r in results)

    def rnn_backward(self, cell, grad_out, x, w_ih, w_hh, h0, c0, out, hs, cs, gates, *, lengths=None, reverse=False,
                     need_dx=True, bias=True):
        host = [None if a is None else np.ascontiguousarray(a._host)
                for a in (grad_out, x, w_ih, w_hh, h0, c0, out, hs, cs, gates)]
        grads = _C.rnn_backward(cell, *host, lengths=lengths, reverse=reverse, need_dx=need_dx, bias=bias)
        return tuple(None if g is None else _new(g, x.device) for g in grads)

    # embedding: the binding's checks, in its order, then the CPU op's numpy (ops/rnn.py Embedding).
    @staticmethod
    def _check_float(fn, name, a):
        if a.dtype != np.float32:
            raise TypeError(f"{fn}: argument '{name}' must be float32, got {a.dtype}")

    @staticmethod
    def _check_indices(fn, indices, num_embeddings):
        if isinstance(indices, Array):
            raise TypeError(f"{fn}: argument 'indices' must be a host (numpy) int64 array, got a CUDA array; "
                            f"pass indices.numpy()")
        if not isinstance(indices, np.ndarray):
            raise TypeError(f"{fn}: argument 'indices' must be a numpy int64 array, got {type(indices).__name__}")
        if indices.dtype != np.int64:
            raise TypeError(f"{fn}: argument 'indices' must be int64, got {indices.dtype}")
        bad = np.flatnonzero((indices < 0) | (indices >= num_embeddings))
        if bad.size:
            k = int(bad[0])
            raise ValueError(f"{fn}: argument 'indices' holds {indices.flat[k]} at flat position {k}, out of range "
                             f"for {num_embeddings} embeddings: expected 0 <= index < {num_embeddings}")

    def embedding_forward(self, weight, indices):
        fn = "cuda.embedding_forward"
        self._check_float(fn, "weight", weight)
        if weight.ndim != 2:
            raise ValueError(f"{fn}: argument 'weight' must be 2-D of shape (num_embeddings, embedding_dim), "
                             f"got shape {weight.shape}")
        self._check_indices(fn, indices, weight.shape[0])
        return _new(np.take(weight._host, indices, axis=0), weight.device)

    def embedding_backward(self, grad_out, indices, num_embeddings, padding_idx=None):
        fn = "cuda.embedding_backward"
        self._check_float(fn, "grad_out", grad_out)
        if padding_idx is not None and not 0 <= padding_idx < num_embeddings:
            raise ValueError(f"{fn}: argument 'padding_idx' must be in [0, {num_embeddings}) or None, "
                             f"got {padding_idx}")
        self._check_indices(fn, indices, num_embeddings)
        if grad_out.ndim != indices.ndim + 1 or grad_out.shape[:-1] != indices.shape:
            raise ValueError(f"{fn}: argument 'grad_out' must have the shape of 'indices' {indices.shape} and one "
                             f"more axis (embedding_dim), got {grad_out.shape}")
        D = grad_out.shape[-1]
        grad_w = np.zeros((num_embeddings, D), dtype=np.float32)
        np.add.at(grad_w, indices.reshape(-1), grad_out._host.reshape(-1, D))
        if padding_idx is not None:
            grad_w[padding_idx] = 0.0
        return Array(grad_w, grad_out.device)

    def sgd_step(self, params, grads, momentum_buffers, *, lr, momentum, dampening, weight_decay, nesterov,
                 maximize, first_step):
        if self.capturing:
            return
        for i, (p, g) in enumerate(zip(params, grads)):
            d = (-1 if maximize else 1) * g._host + weight_decay * p._host
            if momentum:
                buf = momentum_buffers[i]._host
                buf[...] = d if first_step else momentum * buf + (1 - dampening) * d
                d = d + momentum * buf if nesterov else buf
            p._host[...] -= lr * d

    def adam_step(self, params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs=(), *, lr, beta1, beta2, eps,
                  weight_decay, decoupled, maximize, step=0, step_count=None):
        if self.capturing:
            return
        if step_count is not None:  # the capturable form: the count lives on the "device"
            step_count._host += 1
            step = float(step_count._host.reshape(-1)[0])
        for i, (p, g, m, v) in enumerate(zip(params, grads, exp_avgs, exp_avg_sqs)):
            w = p._host * (1 - lr * weight_decay) if decoupled else p._host
            d = (-1 if maximize else 1) * g._host + (0 if decoupled else weight_decay * w)
            m._host[...] = beta1 * m._host + (1 - beta1) * d
            v._host[...] = beta2 * v._host + (1 - beta2) * d * d
            v_used = v._host
            if max_exp_avg_sqs:  # AMSGrad
                v_used = max_exp_avg_sqs[i]._host
                v_used[...] = np.maximum(v_used, v._host)
            bc1, bc2 = 1 - beta1 ** step, 1 - beta2 ** step
            p._host[...] = w - lr / bc1 * m._host / (np.sqrt(v_used) / np.sqrt(bc2) + eps)

    # The CPU kernels on the host arrays: the same rules and arguments.
    def rmsprop_step(self, params, grads, square_avgs, grad_avgs, momentum_buffers, *, lr, alpha=0.99, eps=1e-8,
                     weight_decay=0.0, momentum=0.0, centered=False, maximize=False):
        if self.capturing:
            return
        _C.rmsprop_step(_hosts(params), _hosts(grads), _hosts(square_avgs), _hosts(grad_avgs),
                        _hosts(momentum_buffers), lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                        momentum=momentum, centered=centered, maximize=maximize)

    def adagrad_step(self, params, grads, state_sums, *, lr, lr_decay, weight_decay, eps, step, maximize):
        if self.capturing:
            return
        _C.adagrad_step(_hosts(params), _hosts(grads), _hosts(state_sums), lr=lr, lr_decay=lr_decay,
                        weight_decay=weight_decay, eps=eps, step=step, maximize=maximize)

    def ema_update(self, shadows, params, *, decay):
        if self.capturing:
            return
        _C.ema_update(_hosts(shadows), _hosts(params), decay=decay)

    def copy_buffers(self, dst, src):
        if self.capturing:
            return
        _C.copy_buffers(_hosts(dst), _hosts(src))


def _below_stride(x, stride, output_padding):
    """The CPU kernel's form of an output_padding that may reach the dilation (as ops/conv.py's
    _transposed makes it): a zero row (column) after the input per whole stride, and the rest."""
    extra = [o // s for o, s in zip(output_padding, stride)]
    x = np.pad(x, ((0, 0), (0, 0), (0, extra[0]), (0, extra[1])))
    return x, tuple(o % s for o, s in zip(output_padding, stride))


class FakeGraph:
    def __init__(self, fn, result):
        self.fn, self.result = fn, result

    def replay(self):
        self.result.data._host[...] = self.fn().data._host
