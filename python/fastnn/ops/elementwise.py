"""Elementwise ops with numpy broadcasting: add, sub, mul, div, neg, pow, exp, log, sqrt, relu,
sigmoid, tanh, clone.

Forward and backward are numpy expressions. Values follow IEEE as PyTorch does: log(0) = -inf,
sqrt(-1) = nan, 1/0 = inf, without warnings (Function.apply runs ops under np.errstate).
A broadcast input receives the gradient summed back to its own shape by `unbroadcast`.

On a device add, sub, mul, div and pow run _C.cuda.binary, which broadcasts both operands as
numpy does; gradients are summed back to the input shapes by _device.reduce_to.
"""
from __future__ import annotations

import numpy as np

from fastnn import _C, _device
from fastnn._device import ADD, DIV, MUL, POW, POW_GRAD_BASE, POW_GRAD_EXPONENT, SUB  # _C.cuda.binary op codes
from fastnn.autograd import Function
from fastnn.ops._common import as_tensor


def unbroadcast(grad: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum grad over the axes that broadcasting prepended or stretched from 1, giving `shape`."""
    if grad.shape == shape:
        return grad
    prepended = grad.ndim - len(shape)
    if prepended:
        grad = grad.sum(axis=tuple(range(prepended)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if stretched:
        grad = grad.sum(axis=stretched, keepdims=True)
    return grad


def _binary(fn: str, function: type, a, b):
    a, b = as_tensor(a), as_tensor(b)
    if _device.cuda_used and a.is_cuda != b.is_cuda:  # a constant scalar follows the tensor to its device
        if b.is_cuda and a.ndim == 0 and not a.requires_grad:
            a = a.to(b.device)
        elif a.is_cuda and b.ndim == 0 and not b.requires_grad:
            b = b.to(a.device)
    if a.shape != b.shape:
        try:
            np.broadcast_shapes(a.shape, b.shape)
        except ValueError:
            raise ValueError(f"{fn}: shapes {a.shape} and {b.shape} cannot be broadcast together "
                             f"(trailing dimensions must be equal or 1)") from None
    return function.apply(a, b)


# -- binary -----------------------------------------------------------------------------------

def _cuda_binary(op: int, a, b):
    return _device.backend.binary(op, a, b)


class Add(Function):
    cuda = True

    @staticmethod
    def forward(ctx, a, b):
        ctx.a_shape, ctx.b_shape = a.shape, b.shape
        if _device.is_device_array(a):
            return _cuda_binary(ADD, a, b)
        return a + b

    @staticmethod
    def backward(ctx, grad):
        if _device.is_device_array(grad):
            return _device.reduce_to(grad, ctx.a_shape), _device.reduce_to(grad, ctx.b_shape)
        return unbroadcast(grad, ctx.a_shape), unbroadcast(grad, ctx.b_shape)


class Sub(Function):
    cuda = True

    @staticmethod
    def forward(ctx, a, b):
        ctx.a_shape, ctx.b_shape = a.shape, b.shape
        if _device.is_device_array(a):
            return _cuda_binary(SUB, a, b)
        return a - b

    @staticmethod
    def backward(ctx, grad):
        if _device.is_device_array(grad):
            grad_b = _device.scaled(_device.reduce_to(grad, ctx.b_shape), -1.0) if ctx.needs_input_grad[1] else None
            return _device.reduce_to(grad, ctx.a_shape), grad_b
        grad_b = unbroadcast(-grad, ctx.b_shape) if ctx.needs_input_grad[1] else None
        return unbroadcast(grad, ctx.a_shape), grad_b


class Mul(Function):
    cuda = True

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        if _device.is_device_array(a):
            return _cuda_binary(MUL, a, b)
        return a * b

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        if _device.is_device_array(grad):
            grad_a = _device.reduce_to(_cuda_binary(MUL, grad, b), a.shape) if ctx.needs_input_grad[0] else None
            grad_b = _device.reduce_to(_cuda_binary(MUL, grad, a), b.shape) if ctx.needs_input_grad[1] else None
            return grad_a, grad_b
        grad_a = unbroadcast(grad * b, a.shape) if ctx.needs_input_grad[0] else None
        grad_b = unbroadcast(grad * a, b.shape) if ctx.needs_input_grad[1] else None
        return grad_a, grad_b


class Div(Function):
    cuda = True

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        if _device.is_device_array(a):
            return _cuda_binary(DIV, a, b)
        return a / b

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        if _device.is_device_array(grad):
            grad_a = _device.reduce_to(_cuda_binary(DIV, grad, b), a.shape) if ctx.needs_input_grad[0] else None
            grad_b = None
            if ctx.needs_input_grad[1]:  # -grad * a / b^2, as (grad * a / b) / b
                quotient = _cuda_binary(DIV, _cuda_binary(DIV, _cuda_binary(MUL, grad, a), b), b)
                grad_b = _device.scaled(_device.reduce_to(quotient, b.shape), -1.0)
            return grad_a, grad_b
        grad_a = unbroadcast(grad / b, a.shape) if ctx.needs_input_grad[0] else None
        grad_b = unbroadcast(-grad * a / (b * b), b.shape) if ctx.needs_input_grad[1] else None
        return grad_a, grad_b


class Pow(Function):
    """base ** exponent, either of which may be a constant. On a device the factors
    exponent * base**(exponent - 1) and base**exponent * log(base) (0 at base == 0 for
    exponent >= 0, as below) are one kernel each (binary ops POW_GRAD_BASE, POW_GRAD_EXPONENT)."""

    cuda = True

    @staticmethod
    def forward(ctx, base, exponent):
        if _device.is_device_array(base):
            ctx.save_for_backward(base, exponent)
            return _cuda_binary(POW, base, exponent)
        out = np.power(base, exponent)
        ctx.save_for_backward(base, exponent, out)
        return out

    @staticmethod
    def backward(ctx, grad):
        if _device.is_device_array(grad):
            base, exponent = ctx.saved_tensors
            grad_base = grad_exponent = None
            if ctx.needs_input_grad[0]:
                d_base = _cuda_binary(POW_GRAD_BASE, base, exponent)
                grad_base = _device.reduce_to(_cuda_binary(MUL, grad, d_base), base.shape)
            if ctx.needs_input_grad[1]:
                d_exponent = _cuda_binary(POW_GRAD_EXPONENT, base, exponent)
                grad_exponent = _device.reduce_to(_cuda_binary(MUL, grad, d_exponent), exponent.shape)
            return grad_base, grad_exponent
        base, exponent, out = ctx.saved_tensors
        grad_base = grad_exponent = None
        if ctx.needs_input_grad[0]:
            grad_base = unbroadcast(grad * exponent * np.power(base, exponent - 1), base.shape)
        if ctx.needs_input_grad[1]:
            # d/dy x**y = x**y log x; PyTorch takes it as 0 at x = 0 (where 0 * -inf is nan) for y >= 0
            d_exponent = np.where((base == 0) & (exponent >= 0), 0.0, out * np.log(base))
            grad_exponent = unbroadcast(grad * d_exponent, exponent.shape)
        return grad_base, grad_exponent


def add(a, b): return _binary("add", Add, a, b)
def sub(a, b): return _binary("sub", Sub, a, b)
def mul(a, b): return _binary("mul", Mul, a, b)
def div(a, b): return _binary("div", Div, a, b)
def pow(base, exponent): return _binary("pow", Pow, base, exponent)  # noqa: A001 (torch's name)


# -- unary ------------------------------------------------------------------------------------
# On a device array each runs one kernel forward and one back (_C.cuda.unary, unary_backward:
# op codes below), saving the input (log) or the output (the others), as the numpy forms do.
# nn.functional's leaky_relu and gelu (both forms) run the same kernels with the last three codes.

UNARY = {"Neg": 0, "Exp": 1, "Log": 2, "Sqrt": 3, "Sigmoid": 4, "Tanh": 5, "LeakyReLU": 6, "GELU_none": 7,
         "GELU_tanh": 8}


class _Unary(Function):
    cuda = True
    saves_input = False  # log's derivative needs the input, the others' their output

    @classmethod
    def forward(cls, ctx, a):
        if _device.is_device_array(a):
            out = _device.backend.unary(UNARY[cls.__name__], a)
        else:
            out = cls.numpy_forward(a)
        ctx.save_for_backward(a if cls.saves_input else out)
        return out

    @classmethod
    def backward(cls, ctx, grad):
        saved, = ctx.saved_tensors
        if _device.is_device_array(grad):
            return _device.backend.unary_backward(UNARY[cls.__name__], grad, saved)
        return cls.numpy_backward(grad, saved)


class Neg(_Unary):
    numpy_forward = staticmethod(lambda a: -a)
    numpy_backward = staticmethod(lambda grad, out: -grad)


class Exp(_Unary):
    numpy_forward = staticmethod(np.exp)
    numpy_backward = staticmethod(lambda grad, out: grad * out)


class Log(_Unary):
    saves_input = True
    numpy_forward = staticmethod(np.log)
    numpy_backward = staticmethod(lambda grad, a: grad / a)


class Sqrt(_Unary):
    numpy_forward = staticmethod(np.sqrt)
    numpy_backward = staticmethod(lambda grad, out: grad / (2 * out))


class ReLU(Function):
    """max(a, 0) (NaN stays NaN, as torch.relu) and its gradient, 0 at a == 0 as in PyTorch; one
    threaded C++ pass each (_C.relu, _C.relu_backward: the mask is read from the output)."""

    cuda = True
    numpy_math = False

    @staticmethod
    def forward(ctx, a):
        if _device.is_device_array(a):
            out = _device.backend.relu_forward(a)
        else:
            out = _C.relu(np.ascontiguousarray(a, dtype=np.float32)).reshape(a.shape)  # (ascontiguousarray makes 0-d 1-d)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        out, = ctx.saved_tensors
        if _device.is_device_array(out):
            return _device.backend.relu_backward(grad, out)
        return _C.relu_backward(np.ascontiguousarray(grad, dtype=np.float32).reshape(out.shape), out)


def stable_sigmoid(x: np.ndarray) -> np.ndarray:
    # exp of a non-positive number cannot overflow, so each branch is exact for its sign
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


class Sigmoid(_Unary):
    numpy_forward = staticmethod(stable_sigmoid)
    numpy_backward = staticmethod(lambda grad, out: grad * out * (1 - out))


class Tanh(_Unary):
    numpy_forward = staticmethod(np.tanh)
    numpy_backward = staticmethod(lambda grad, out: grad * (1 - out * out))


class Clone(Function):
    cuda = True  # a device array copies itself

    @staticmethod
    def forward(ctx, a):
        return a.copy()

    @staticmethod
    def backward(ctx, grad):
        return grad


def neg(x): return Neg.apply(as_tensor(x))
def exp(x): return Exp.apply(as_tensor(x))
def log(x): return Log.apply(as_tensor(x))
def sqrt(x): return Sqrt.apply(as_tensor(x))
def relu(x): return ReLU.apply(as_tensor(x))
def sigmoid(x): return Sigmoid.apply(as_tensor(x))
def tanh(x): return Tanh.apply(as_tensor(x))
def clone(x): return Clone.apply(as_tensor(x))
