"""A stand-in for fastnn._C.cuda that keeps "device" arrays in host memory and computes with numpy.

It lets the tests drive the Python side of the CUDA backend (device names, moves, dispatch in
the ops, autograd across devices, Module.to, the optimizers' device paths, the error messages)
on machines without a GPU; the same tests run against the real kernels where a GPU is present.
Its kernels are plain numpy: they check the Python layer, never the CUDA code.
"""
from __future__ import annotations

import numpy as np

from fastnn import _C


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
    return Array(np.ascontiguousarray(x, dtype=np.float32), device)


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
        x, y = a._host, b._host.reshape(-1) if b.size == 1 else b._host
        ops = (np.add, np.subtract, np.multiply, np.divide)
        return _new(ops[op](x, y), a.device)

    def unary(self, op, x):
        v = x._host.astype(np.float64)
        with np.errstate(all="ignore"):
            out = [-v, np.exp(v), np.log(v), np.sqrt(v), 1 / (1 + np.exp(-v)), np.tanh(v)][op]
        return _new(out, x.device)

    def unary_backward(self, op, grad_out, saved):
        g, s = grad_out._host, saved._host
        with np.errstate(all="ignore"):
            out = [-g, g * s, g / s, g * 0.5 / s, g * s * (1 - s), g * (1 - s * s)][op]
        return _new(out, grad_out.device)

    def permute(self, x, dims):
        return _new(np.transpose(x._host, dims), x.device)

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

    def cross_entropy_forward(self, logits, labels):
        x = logits._host.astype(np.float64)
        lse = np.log(np.exp(x - x.max(1, keepdims=True)).sum(1)) + x.max(1)
        return _new(np.mean(lse - x[np.arange(len(x)), labels._host.astype(np.int64)]), logits.device)

    def cross_entropy_backward(self, logits, labels, grad_loss):
        x = logits._host.astype(np.float64)
        p = np.exp(x - x.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        p[np.arange(len(x)), labels._host.astype(np.int64)] -= 1
        return _new(p * grad_loss._host.reshape(()) / len(x), logits.device)

    # convolution and pooling: the CPU kernels on the host copies
    def conv2d_forward(self, input, weight, bias, stride, padding, dilation, groups):
        out = _C.conv2d_forward(input._host, weight._host, None if bias is None else bias._host, stride, padding,
                                dilation, groups)
        return _new(out, input.device)

    def conv2d_backward(self, grad_output, input, weight, stride, padding, dilation, groups, needs):
        grads = _C.conv2d_backward(np.ascontiguousarray(grad_output._host), input._host, weight._host, stride,
                                   padding, dilation, groups, tuple(needs))
        return tuple(None if g is None else _new(g, input.device) for g in grads)

    def max_pool2d_forward(self, input, kernel_size, stride, padding, dilation, ceil_mode):
        out, indices = _C.max_pool2d_forward(input._host, kernel_size, stride, padding, dilation, ceil_mode)
        return _new(out, input.device), Array(indices.astype(np.int64), input.device)

    def max_pool2d_backward(self, grad_output, indices, input_size):
        return _new(_C.max_pool2d_backward(np.ascontiguousarray(grad_output._host),
                                           indices._host.astype(np.int32), input_size), grad_output.device)

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

    def adam_step(self, params, grads, exp_avgs, exp_avg_sqs, *, lr, beta1, beta2, eps, weight_decay, decoupled,
                  maximize, step=0, step_count=None):
        if self.capturing:
            return
        if step_count is not None:  # the capturable form: the count lives on the "device"
            step_count._host += 1
            step = float(step_count._host.reshape(-1)[0])
        for p, g, m, v in zip(params, grads, exp_avgs, exp_avg_sqs):
            w = p._host * (1 - lr * weight_decay) if decoupled else p._host
            d = (-1 if maximize else 1) * g._host + (0 if decoupled else weight_decay * w)
            m._host[...] = beta1 * m._host + (1 - beta1) * d
            v._host[...] = beta2 * v._host + (1 - beta2) * d * d
            bc1, bc2 = 1 - beta1 ** step, 1 - beta2 ** step
            p._host[...] = w - lr / bc1 * m._host / (np.sqrt(v._host) / np.sqrt(bc2) + eps)


class FakeGraph:
    def __init__(self, fn, result):
        self.fn, self.result = fn, result

    def replay(self):
        self.result.data._host[...] = self.fn().data._host
