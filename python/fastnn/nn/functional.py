"""fastnn.nn.functional (import as F): the layers' ops and the losses, as functions.

Each op is a `Function` with forward and backward side by side. `linear` (and `linear_relu`,
which Sequential uses for a Linear followed by a ReLU) is one `_C.gemm` call with the bias (and
the ReLU) fused in the GEMM epilogue; `cross_entropy` is one fused C++ kernel (log-softmax + NLL,
`_C.cross_entropy_forward/backward`); the others are numpy expressions. On CUDA tensors, softmax,
log_softmax and every loss run the kernels of csrc/cuda/loss.cu, leaky_relu and gelu those of
csrc/cuda/elementwise.cu (`cuda = True` Functions).

Losses take `reduction` = 'none' | 'mean' | 'sum' and follow PyTorch's definitions, including
binary_cross_entropy's log clamped at -100 and cross_entropy's handling of class weights,
ignore_index and label smoothing. Targets may require grad where PyTorch allows it (regression
losses, BCE, probability targets).
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from fastnn import _C, _device
from fastnn._config import get_check_finite
from fastnn._tensor import Tensor
from fastnn.autograd import Function
from fastnn.ops import elementwise as _elementwise
from fastnn.ops._common import as_array, as_tensor, normalize_axis
from fastnn.ops.linalg import _fold, _gemm_operand, gemm2d

__all__ = ["linear", "linear_relu", "relu", "leaky_relu", "gelu", "sigmoid", "tanh", "softmax", "log_softmax",
           "dropout", "mse_loss", "l1_loss", "huber_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits",
           "cross_entropy", "nll_loss"]

_REDUCTIONS = ("none", "mean", "sum")


def _shape_text(shape: tuple) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


# ---------------------------------------------------------------------------------------------
# linear: one GEMM, bias (and ReLU) in its epilogue

class Linear(Function):
    """x (..., K) @ weight (N, K)^T + bias (N,), optionally followed by a ReLU."""
    cuda = True
    numpy_math = False  # kernels only

    @staticmethod
    def forward(ctx, x, weight, bias, relu):
        if _device.is_device_array(x):
            out = _device.backend.gemm(x.reshape([x.size // x.shape[-1], x.shape[-1]]), weight,
                                       trans_b=True, bias=bias, relu=relu)
            ctx.save_for_backward(x, weight, out if relu else None)
            return out.reshape(list(x.shape[:-1]) + [weight.shape[0]])
        rows = _fold(x)                        # (M, K): the leading dims folded
        a, trans_a = _gemm_operand(rows)
        b, trans_b = _gemm_operand(weight.T)   # op(b) = weight^T (K, N): weight itself, trans_b=True
        if bias is not None and not bias.flags.c_contiguous:
            bias = np.ascontiguousarray(bias)
        out = _C.gemm(a, b, trans_a=trans_a, trans_b=trans_b, bias=bias, relu=relu,
                      check_finite=get_check_finite())
        ctx.save_for_backward(x, weight, out if relu else None)
        return out.reshape(x.shape[:-1] + (weight.shape[0],))

    @staticmethod
    def backward(ctx, grad):
        x, weight, out = ctx.saved_tensors
        if _device.is_device_array(grad):
            return Linear._backward_cuda(ctx, grad, x, weight, out)
        g = _fold(grad)
        grad_b = None
        if out is not None or ctx.needs_input_grad[2]:
            # One pass: the fused ReLU's mask (the gradient passes where the output is positive)
            # and the bias gradient, the sum over the batch.
            g, grad_b = _C.linear_epilogue_backward(np.ascontiguousarray(g), None if out is None else _fold(out),
                                                    bias_grad=ctx.needs_input_grad[2])
        grad_x = gemm2d(g, weight).reshape(x.shape) if ctx.needs_input_grad[0] else None
        grad_w = gemm2d(g.T, _fold(x)) if ctx.needs_input_grad[1] else None  # (N, M) @ (M, K)
        return grad_x, grad_w, grad_b, None

    @staticmethod
    def _backward_cuda(ctx, grad, x, weight, out):
        cuda = _device.backend
        N, K = weight.shape
        g = grad.reshape([grad.size // N, N])
        if out is not None:  # the fused ReLU's mask
            g = cuda.relu_backward(g, out)
        rows = x.reshape([x.size // K, K])
        grad_x = cuda.gemm(g, weight).reshape(list(x.shape)) if ctx.needs_input_grad[0] else None
        grad_w = cuda.gemm(g, rows, trans_a=True) if ctx.needs_input_grad[1] else None  # (N, M) @ (M, K)
        grad_b = cuda.column_sums(g) if ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b, None


def _linear(fn: str, input, weight, bias, relu: bool):
    x, w = as_tensor(input), as_tensor(weight)
    b = None if bias is None else as_tensor(bias)
    if w.ndim != 2:
        raise ValueError(f"{fn}: weight must be 2-D (out_features, in_features), got shape {_shape_text(w.shape)}")
    out_features, in_features = w.shape
    if x.ndim == 0 or x.shape[-1] != in_features:
        hint = ""
        if x.ndim > 2 and math.prod(x.shape[1:]) == in_features:
            hint = "; flatten it first (nn.Flatten() or x.flatten(1))"
        raise ValueError(f"{fn}: expected input of shape (..., {in_features}) for weight of shape "
                         f"{_shape_text(w.shape)}, got {_shape_text(x.shape)}{hint}")
    if b is not None and b.shape != (out_features,):
        raise ValueError(f"{fn}: bias must have shape ({out_features},) for weight of shape "
                         f"{_shape_text(w.shape)}, got {_shape_text(b.shape)}")
    try:
        return Linear.apply(x, w, b, relu)
    except ValueError as error:  # a NaN or infinity found by gemm's check
        message = str(error).replace("argument 'a'", "the input (leading dims folded)")
        message = message.replace("argument 'b'", "the weight").replace("argument 'bias'", "the bias")
        raise ValueError(f"{fn}: {message}") from error


def linear(input, weight, bias=None):  # noqa: A002 (torch's argument names)
    """input (..., in) @ weight (out, in)^T + bias (out,): one GEMM with the bias fused."""
    return _linear("linear", input, weight, bias, relu=False)


def linear_relu(input, weight, bias=None):  # noqa: A002
    """relu(linear(input, weight, bias)) as one GEMM with the bias and the ReLU fused."""
    return _linear("linear_relu", input, weight, bias, relu=True)


# ---------------------------------------------------------------------------------------------
# activations

def relu(input):  # noqa: A002
    return _elementwise.relu(input)


def sigmoid(input):  # noqa: A002
    return _elementwise.sigmoid(input)


def tanh(input):  # noqa: A002
    return _elementwise.tanh(input)


class LeakyReLU(Function):
    cuda = True  # one kernel each way on a device (cuda.unary op leaky_relu), saving the input as here

    @staticmethod
    def forward(ctx, x, slope):
        ctx.save_for_backward(x)
        ctx.slope = np.float32(slope)
        if _device.is_device_array(x):
            return _device.backend.unary(_elementwise.UNARY["LeakyReLU"], x, slope)
        return np.where(x > 0, x, x * ctx.slope)

    @staticmethod
    def backward(ctx, grad):
        x, = ctx.saved_tensors
        if _device.is_device_array(grad):
            return _device.backend.unary_backward(_elementwise.UNARY["LeakyReLU"], grad, x, float(ctx.slope)), None
        return np.where(x > 0, grad, grad * ctx.slope), None


def leaky_relu(input, negative_slope: float = 0.01):  # noqa: A002
    """x for x > 0, negative_slope * x otherwise."""
    if not isinstance(negative_slope, numbers.Real):
        raise TypeError(f"leaky_relu: negative_slope must be a number, got {type(negative_slope).__name__}")
    return LeakyReLU.apply(as_tensor(input), float(negative_slope))


def _erfc(z: np.ndarray) -> np.ndarray:
    """Complementary error function in float64, relative error < 1.2e-7 everywhere: the
    Chebyshev-fitted exponential of Numerical Recipes (erfcc). numpy has no erf of its own."""
    a = np.abs(z)
    t = 1.0 / (1.0 + 0.5 * a)
    poly = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (
        -0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (
            -0.82215223 + t * 0.17087277))))))))
    r = t * np.exp(-a * a + poly)
    return np.where(z >= 0, r, 2.0 - r)


_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_CUBIC = 0.044715


def gelu_numpy(x: np.ndarray, approximate: str) -> np.ndarray:
    """GELU of a float64 array: x * Phi(x) (Phi: the standard normal CDF), or its tanh approximation."""
    if approximate == "tanh":
        return 0.5 * x * (1.0 + np.tanh(_SQRT_2_OVER_PI * (x + _GELU_CUBIC * x ** 3)))
    return 0.5 * x * _erfc(-x / math.sqrt(2.0))


def gelu_derivative_numpy(x: np.ndarray, approximate: str) -> np.ndarray:
    """d gelu / dx of a float64 array."""
    if approximate == "tanh":
        th = np.tanh(_SQRT_2_OVER_PI * (x + _GELU_CUBIC * x ** 3))
        return 0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * _SQRT_2_OVER_PI * (1.0 + 3 * _GELU_CUBIC * x * x)
    return 0.5 * _erfc(-x / math.sqrt(2.0)) + x * np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


class GELU(Function):
    """gelu_numpy in float64; on a device one kernel each way (cuda.unary ops gelu, gelu_tanh), in
    double too, saving the input."""
    cuda = True

    @staticmethod
    def forward(ctx, x, approximate):
        ctx.approximate = approximate
        if _device.is_device_array(x):
            ctx.save_for_backward(x)
            return _device.backend.unary(_elementwise.UNARY[f"GELU_{approximate}"], x)
        x64 = x.astype(np.float64)
        ctx.save_for_backward(x64)
        return gelu_numpy(x64, approximate).astype(np.float32)

    @staticmethod
    def backward(ctx, grad):
        x, = ctx.saved_tensors
        if _device.is_device_array(grad):
            return _device.backend.unary_backward(_elementwise.UNARY[f"GELU_{ctx.approximate}"], grad, x), None
        return (grad * gelu_derivative_numpy(x, ctx.approximate)).astype(np.float32), None


def gelu(input, approximate: str = "none"):  # noqa: A002
    """Gaussian error linear unit; approximate='tanh' uses the tanh formula (as PyTorch)."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return GELU.apply(as_tensor(input), approximate)


def _stable_log_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    shifted = x - np.max(x, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def _softmax_cuda(x, axis, log: bool):
    """(log-)softmax of a device array along axis (None: a 0-d input, one value along an axis of its own)."""
    line, dim = (x.reshape([1]), 0) if axis is None else (x, axis)
    return _device.backend.softmax_forward(line, dim, log=log).reshape(list(x.shape))


def _softmax_cuda_backward(grad, out, axis, log: bool):
    line, dim = (out.reshape([1]), 0) if axis is None else (out, axis)
    return _device.backend.softmax_backward(grad.reshape(list(line.shape)), line, dim, log=log).reshape(list(out.shape))


class Softmax(Function):
    cuda = True

    @staticmethod
    def forward(ctx, x, axis):
        if _device.is_device_array(x):
            out = _softmax_cuda(x, axis, log=False)
        elif x.size == 0:
            out = x.copy()
        else:
            e = np.exp(x - np.max(x, axis=axis, keepdims=True))
            out = e / np.sum(e, axis=axis, keepdims=True)
        ctx.save_for_backward(out)
        ctx.axis = axis
        return out

    @staticmethod
    def backward(ctx, grad):
        out, = ctx.saved_tensors
        if _device.is_device_array(out):
            return _softmax_cuda_backward(grad, out, ctx.axis, log=False), None
        return out * (grad - np.sum(grad * out, axis=ctx.axis, keepdims=True)), None


class LogSoftmax(Function):
    cuda = True

    @staticmethod
    def forward(ctx, x, axis):
        if _device.is_device_array(x):
            out = _softmax_cuda(x, axis, log=True)
        else:
            out = x.copy() if x.size == 0 else _stable_log_softmax(x, axis)
        ctx.save_for_backward(out)
        ctx.axis = axis
        return out

    @staticmethod
    def backward(ctx, grad):
        out, = ctx.saved_tensors
        if _device.is_device_array(out):
            return _softmax_cuda_backward(grad, out, ctx.axis, log=True), None
        return grad - np.exp(out) * np.sum(grad, axis=ctx.axis, keepdims=True), None


def softmax(input, dim: int):  # noqa: A002
    """exp(x) / sum(exp(x)) along dim (computed without overflow)."""
    x = as_tensor(input)
    return Softmax.apply(x, normalize_axis("softmax", dim, max(x.ndim, 1), name="dim") if x.ndim else None)


def log_softmax(input, dim: int):  # noqa: A002
    """log(softmax(x)) along dim, computed directly (stable for large inputs)."""
    x = as_tensor(input)
    return LogSoftmax.apply(x, normalize_axis("log_softmax", dim, max(x.ndim, 1), name="dim") if x.ndim else None)


# ---------------------------------------------------------------------------------------------
# losses: shared helpers

def _check_reduction(fn: str, reduction) -> str:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{fn}: reduction must be 'none', 'mean' or 'sum', got {reduction!r}")
    return reduction


def _reduce(elements: np.ndarray, reduction: str) -> np.ndarray:
    """The loss of every element reduced; the mean of nothing is nan, as in PyTorch."""
    if reduction == "none":
        return elements.astype(np.float32, copy=False)
    total = np.sum(elements, dtype=np.float64)
    if reduction == "mean":
        total = total / elements.size if elements.size else np.float64("nan")
    return np.asarray(total, dtype=np.float32)


def _spread(grad: np.ndarray, shape: tuple, reduction: str) -> np.ndarray:
    """The output gradient as d(loss)/d(element loss), of the elements' shape."""
    if reduction == "none":
        return grad
    if reduction == "mean":
        grad = grad / np.float32(max(math.prod(shape), 1))
    return np.broadcast_to(grad, shape)


def _pair(fn: str, input, target):
    """input and target as tensors of one shape."""
    x, y = as_tensor(input), as_tensor(target)
    if x.shape != y.shape:
        raise ValueError(f"{fn}: target shape {_shape_text(y.shape)} differs from input shape "
                         f"{_shape_text(x.shape)}; reshape one of them (PyTorch would broadcast them, "
                         f"which is rarely what was meant)")
    return x, y


def _optional_weight(fn: str, name: str, weight, shape: tuple):
    """A constant float32 array broadcastable to `shape`, or None."""
    if weight is None:
        return None
    w = as_array(weight)
    try:
        fits = np.broadcast_shapes(w.shape, shape) == shape
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(f"{fn}: {name} of shape {_shape_text(w.shape)} cannot be broadcast to the input's "
                         f"shape {_shape_text(shape)}")
    return w


def _grad_or_none(ctx, i: int, value):
    return value() if ctx.needs_input_grad[i] else None


# The kinds of _C.cuda's elementwise_loss_forward/backward (csrc/cuda/loss.cu).
_MSE, _L1, _HUBER, _BCE, _BCE_WITH_LOGITS = range(5)


def _weight_cuda(fn: str, weight, x):
    """A constant weight broadcastable to device array x's shape, on x's device, in a shape the
    kernels broadcast: a trailing part of x's (element i takes weight[i % weight.size]); other
    shapes, such as (N, 1), are spelled out in full."""
    if weight is None:
        return None
    shape = tuple(weight.shape)
    while shape and shape[0] == 1:
        shape = shape[1:]
    if shape != tuple(x.shape)[len(x.shape) - len(shape):]:
        host = weight.numpy() if _device.is_device_array(weight) else weight
        weight, shape = np.broadcast_to(host, tuple(x.shape)), tuple(x.shape)
    return _device.to_device(fn, weight, x.device).reshape(list(shape))


def _elementwise_loss_cuda(ctx, fn: str, kind: int, x, y, weight=None, pos_weight=None, delta: float = 1.0):
    """An elementwise loss of device arrays, reduced by ctx.reduction, in one kernel (and sum_all)."""
    ctx.cuda_settings = dict(weight=_weight_cuda(fn, weight, x), pos_weight=_weight_cuda(fn, pos_weight, x),
                             delta=delta, reduction=ctx.reduction)
    ctx.cuda_kind = kind
    ctx.save_for_backward(x, y)
    return _device.backend.elementwise_loss_forward(kind, x, y, **ctx.cuda_settings)


def _elementwise_loss_cuda_backward(ctx, grad) -> tuple:
    """(input's gradient, target's gradient) of _elementwise_loss_cuda, None where not needed."""
    x, y = ctx.saved_tensors
    return _device.backend.elementwise_loss_backward(ctx.cuda_kind, grad, x, y, need_input=ctx.needs_input_grad[0],
                                                     need_target=ctx.needs_input_grad[1], **ctx.cuda_settings)


# ---------------------------------------------------------------------------------------------
# regression losses

class DifferenceLoss(Function):
    """A loss of the difference d = x - y, element by element, reduced: value(d) and its
    derivative d(value)/dd; the target's gradient is the negative of the input's. On device
    arrays the elementwise-loss kernel `kind` computes the same (delta: huber's, unused by the others)."""
    cuda = True

    @staticmethod
    def forward(ctx, x, y, reduction, value, derivative, kind, delta):
        ctx.reduction, ctx.derivative = reduction, derivative
        if _device.is_device_array(x):
            return _elementwise_loss_cuda(ctx, "loss", kind, x, y, delta=delta)
        diff = x - y
        ctx.save_for_backward(diff)
        return _reduce(value(diff), reduction)

    @staticmethod
    def backward(ctx, grad):
        if _device.is_device_array(grad):
            return _elementwise_loss_cuda_backward(ctx, grad) + (None,) * 5
        diff, = ctx.saved_tensors
        g = _spread(grad, diff.shape, ctx.reduction) * ctx.derivative(diff)
        return _grad_or_none(ctx, 0, lambda: g), _grad_or_none(ctx, 1, lambda: -g), None, None, None, None, None


def mse_loss(input, target, reduction: str = "mean"):  # noqa: A002
    """(input - target)^2, reduced."""
    x, y = _pair("mse_loss", input, target)
    return DifferenceLoss.apply(x, y, _check_reduction("mse_loss", reduction), lambda d: d * d, lambda d: 2 * d,
                                _MSE, 1.0)


def l1_loss(input, target, reduction: str = "mean"):  # noqa: A002
    """|input - target|, reduced (gradient 0 where they are equal, as in PyTorch)."""
    x, y = _pair("l1_loss", input, target)
    return DifferenceLoss.apply(x, y, _check_reduction("l1_loss", reduction), np.abs, np.sign, _L1, 1.0)


def huber_loss(input, target, reduction: str = "mean", delta: float = 1.0):  # noqa: A002
    """0.5 d^2 where |d| < delta, delta (|d| - delta / 2) elsewhere, with d = input - target."""
    if isinstance(delta, bool) or not isinstance(delta, numbers.Real) or not delta > 0:
        raise ValueError(f"huber_loss: delta must be a positive number, got delta={delta!r}")
    x, y = _pair("huber_loss", input, target)
    delta = np.float32(delta)

    def value(d):
        a = np.abs(d)
        return np.where(a < delta, 0.5 * d * d, delta * (a - 0.5 * delta))

    # d inside the band, +-delta outside
    return DifferenceLoss.apply(x, y, _check_reduction("huber_loss", reduction), value,
                                lambda d: np.clip(d, -delta, delta), _HUBER, float(delta))


# ---------------------------------------------------------------------------------------------
# binary classification losses

_LOG_CLAMP = np.float32(-100.0)  # PyTorch clamps BCE's logs here, so a 0 or 1 input stays finite
_BCE_EPS = np.float32(1e-12)     # and its gradient divides by at least this


class BinaryCrossEntropy(Function):
    cuda = True

    @staticmethod
    def forward(ctx, x, y, weight, reduction):
        if _device.is_device_array(x):
            ctx.reduction = reduction
            return _elementwise_loss_cuda(ctx, "binary_cross_entropy", _BCE, x, y, weight)
        log_x = np.maximum(np.log(x), _LOG_CLAMP)
        log_1mx = np.maximum(np.log1p(-x), _LOG_CLAMP)
        ctx.save_for_backward(x, y, weight, log_x, log_1mx)
        ctx.reduction = reduction
        loss = -(y * log_x + (1 - y) * log_1mx)
        return _reduce(loss if weight is None else loss * weight, reduction)

    @staticmethod
    def backward(ctx, grad):
        if _device.is_device_array(grad):
            return _elementwise_loss_cuda_backward(ctx, grad) + (None, None)
        x, y, weight, log_x, log_1mx = ctx.saved_tensors
        g = _spread(grad, x.shape, ctx.reduction)
        if weight is not None:
            g = g * weight
        grad_x = _grad_or_none(ctx, 0, lambda: g * (x - y) / np.maximum((1 - x) * x, _BCE_EPS))
        grad_y = _grad_or_none(ctx, 1, lambda: g * (log_1mx - log_x))
        return grad_x, grad_y, None, None


def binary_cross_entropy(input, target, weight=None, reduction: str = "mean"):  # noqa: A002
    """-w [y log(x) + (1 - y) log(1 - x)] for probabilities x in [0, 1], logs clamped at -100.
    An input outside [0, 1] raises on the CPU; on a GPU (where checking would wait for it) its loss
    and gradients are NaN."""
    x, y = _pair("binary_cross_entropy", input, target)
    _check_reduction("binary_cross_entropy", reduction)
    if not x.is_cuda:
        outside = (x.data < 0) | (x.data > 1)
        if outside.any():
            bad = x.data[outside].reshape(-1)[0]
            raise ValueError(f"binary_cross_entropy: every input must be a probability in [0, 1], found {bad}; "
                             f"apply sigmoid first, or use binary_cross_entropy_with_logits on the raw scores")
    w = _optional_weight("binary_cross_entropy", "weight", weight, x.shape)
    return BinaryCrossEntropy.apply(x, y, w, reduction)


def _softplus(z: np.ndarray) -> np.ndarray:
    """log(1 + exp(z)) without overflow."""
    return np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))


class BinaryCrossEntropyWithLogits(Function):
    cuda = True

    @staticmethod
    def forward(ctx, x, y, weight, pos_weight, reduction):
        if _device.is_device_array(x):
            ctx.reduction = reduction
            return _elementwise_loss_cuda(ctx, "binary_cross_entropy_with_logits", _BCE_WITH_LOGITS, x, y, weight,
                                          pos_weight)
        sp_neg = _softplus(-x)  # -log(sigmoid(x))
        ctx.save_for_backward(x, y, weight, pos_weight, sp_neg)
        ctx.reduction = reduction
        if pos_weight is None:
            loss = (1 - y) * x + sp_neg
        else:
            loss = (1 - y) * x + (1 + (pos_weight - 1) * y) * sp_neg
        return _reduce(loss if weight is None else loss * weight, reduction)

    @staticmethod
    def backward(ctx, grad):
        if _device.is_device_array(grad):
            return _elementwise_loss_cuda_backward(ctx, grad) + (None, None, None)
        x, y, weight, pos_weight, sp_neg = ctx.saved_tensors
        g = _spread(grad, x.shape, ctx.reduction)
        if weight is not None:
            g = g * weight
        pw = np.float32(1) if pos_weight is None else pos_weight

        def d_input():
            s = _elementwise.stable_sigmoid(x)
            return g * (s * (pw * y + 1 - y) - pw * y)

        def d_target():  # d/dy = pw * softplus(-x) - softplus(x) = (pw - 1) softplus(-x) - x
            return g * ((pw - 1) * sp_neg - x)

        return _grad_or_none(ctx, 0, d_input), _grad_or_none(ctx, 1, d_target), None, None, None


def binary_cross_entropy_with_logits(input, target, weight=None, reduction: str = "mean",  # noqa: A002
                                     pos_weight=None):
    """binary_cross_entropy(sigmoid(input), target) computed from the logits, stable for any
    logit; pos_weight (broadcast along the last axis: one per class) weighs the positive term."""
    fn = "binary_cross_entropy_with_logits"
    x, y = _pair(fn, input, target)
    _check_reduction(fn, reduction)
    w = _optional_weight(fn, "weight", weight, x.shape)
    pw = _optional_weight(fn, "pos_weight", pos_weight, x.shape)
    return BinaryCrossEntropyWithLogits.apply(x, y, w, pw, reduction)


# ---------------------------------------------------------------------------------------------
# multi-class losses: (N, C), (N, C, d1, ...) or unbatched (C,) inputs; the class axis is 1

def _class_weight(fn: str, weight, C: int):
    if weight is None:
        return None
    w = as_array(weight)  # a device tensor's array stays there
    w = w if _device.is_device_array(w) else np.ascontiguousarray(w)
    if tuple(w.shape) != (C,):
        raise ValueError(f"{fn}: weight must have one value per class, shape ({C},), got {_shape_text(w.shape)}")
    return w


def _class_indices(fn: str, target) -> np.ndarray:
    """Class-index targets as int64 (integral floats, such as a fastnn Tensor of labels, accepted)."""
    t = target.data if isinstance(target, Tensor) else np.asarray(target)
    if t.dtype.kind == "b" or t.dtype.kind not in "iuf":
        raise TypeError(f"{fn}: class-index targets must be integers, got dtype {t.dtype}")
    if t.dtype.kind == "f":
        if not np.all(np.isfinite(t)) or not np.array_equal(t, np.round(t)):
            raise ValueError(f"{fn}: target of shape {_shape_text(t.shape)} is read as class indices, which "
                             f"must be whole numbers; class probabilities need the input's shape")
    return np.ascontiguousarray(t.astype(np.int64, copy=False))


def _labels(fn: str, target, x: Tensor, C: int, ignore_index: int):
    """Class-index targets for the device kernels or nll_loss: a CUDA tensor's array as it is (whole
    numbers held as float32, checked on the device, where a label that is not a class index gives
    NaN), or host int64 labels checked here."""
    if isinstance(target, Tensor) and target.is_cuda:
        if not x.is_cuda:
            raise RuntimeError(f"{fn}: expected all tensors to be on the same device, but found at least two "
                               f"devices, cpu and {target.device}; move them with .to(device)")
        return target.data
    t = _class_indices(fn, target)
    named = t.reshape(1) if t.ndim == 0 else t  # an unbatched target's label is called target[0]
    bad = (named != ignore_index) & ((named < 0) | (named >= C))
    if bad.any():
        where = tuple(int(i[0]) for i in np.nonzero(bad))
        raise ValueError(f"{fn}: target[{', '.join(map(str, where))}] = {int(named[where])} is out of range for "
                         f"{C} classes: class indices outside [0, {C}) must equal ignore_index ({ignore_index})")
    return t


def _rows(x):
    """(N, C, d1, ...) -> (N * d1 * ..., C) contiguous, class axis last (a numpy or a device array)."""
    ndim = len(x.shape)
    if ndim > 2:
        x = _device.transpose(x, [0, *range(2, ndim), 1])
    return _device.contiguous(x).reshape([-1, x.shape[-1]])


def _unrows(g, shape: tuple):
    """Inverse of _rows: (R, C) back to (N, C, d1, ...)."""
    if len(shape) == 2:
        return g
    class_last = g.reshape([shape[0], *shape[2:], shape[1]])
    return _device.transpose(class_last, [0, len(shape) - 1, *range(1, len(shape) - 1)])


def _batched(fn: str, x: Tensor, target):
    """Checks shapes: returns (input tensor with a batch axis, target, is_probabilities, unbatched)."""
    if x.ndim == 0:
        raise ValueError(f"{fn}: input must have a class axis: shape (C,), (N, C) or (N, C, d1, ...), got a 0-d input")
    unbatched = x.ndim == 1
    target_shape = np.shape(target.data if isinstance(target, Tensor) else target)
    index_shape = () if unbatched else x.shape[:1] + x.shape[2:]
    if target_shape == x.shape:
        probabilities = True
    elif target_shape == index_shape:
        probabilities = False
    else:
        C = x.shape[0] if unbatched else x.shape[1]
        raise ValueError(f"{fn}: target shape {_shape_text(target_shape)} fits input shape {_shape_text(x.shape)} "
                         f"neither as class indices, shape {_shape_text(index_shape)} with values in [0, {C}), "
                         f"nor as class probabilities of the input's shape")
    return probabilities, unbatched


class CrossEntropy(Function):
    """Fused log-softmax + NLL over axis 1 (one C++ kernel each way)."""

    @staticmethod
    def forward(ctx, x, target, weight, ignore_index, label_smoothing, reduction):
        logits = _rows(x)
        t = _rows(target) if target.dtype == np.float32 else target.reshape(-1)
        loss, lse = _C.cross_entropy_forward(logits, t, weight=weight, ignore_index=ignore_index,
                                             label_smoothing=label_smoothing, reduction=reduction)
        ctx.save_for_backward(logits, t, weight, lse)
        ctx.x_shape, ctx.settings = x.shape, (ignore_index, label_smoothing, reduction)
        if reduction == "none":
            return loss.reshape(x.shape[:1] + x.shape[2:])
        return loss

    @staticmethod
    def backward(ctx, grad):
        logits, t, weight, lse = ctx.saved_tensors
        ignore_index, label_smoothing, reduction = ctx.settings
        g = np.ascontiguousarray(grad, dtype=np.float32).reshape(-1)
        grad_x = grad_t = None
        if ctx.needs_input_grad[0]:
            grad_x = _unrows(_C.cross_entropy_backward(g, logits, t, lse, weight=weight, ignore_index=ignore_index,
                                                       label_smoothing=label_smoothing, reduction=reduction),
                             ctx.x_shape)
        if ctx.needs_input_grad[1]:  # probability targets: d(row loss)/dq_c = -(1 - eps) w_c log p_c
            if reduction == "none":
                scale = g[:, None]
            else:
                scale = g[0] / len(t) if reduction == "mean" else g[0]
            d = -(1 - label_smoothing) * (logits - lse[:, None]) * scale
            if weight is not None:
                d = d * weight
            grad_t = _unrows(d.astype(np.float32), ctx.x_shape)
        return grad_x, grad_t, None, None, None, None


class ClassLossCuda(Function):
    """cross_entropy, or nll_loss (settings['log_probs']), on the GPU: one row kernel each way
    (csrc/cuda/loss.cu) with the class axis moved last. target: device labels (int64, or whole
    numbers as float32) of the input's shape without its class axis, or probabilities of its shape."""
    cuda = True
    numpy_math = False  # kernels only

    @staticmethod
    def forward(ctx, x, target, settings):
        rows = _rows(x)
        t = _rows(target) if len(target.shape) == len(x.shape) else target.reshape([-1])
        loss, weight_sum = _device.backend.cross_entropy_forward(rows, t, **settings)
        ctx.save_for_backward(rows, t, weight_sum)
        ctx.x_shape, ctx.settings = tuple(x.shape), settings
        if settings["reduction"] == "none":
            return loss.reshape([x.shape[0]] + list(x.shape[2:]))
        return loss

    @staticmethod
    def backward(ctx, grad):
        rows, t, weight_sum = ctx.saved_tensors
        grad_x, grad_t = _device.backend.cross_entropy_backward(rows, t, grad.reshape([-1]), weight_sum,
                                                                need_target=ctx.needs_input_grad[1], **ctx.settings)
        return (_unrows(grad_x, ctx.x_shape) if ctx.needs_input_grad[0] else None,
                None if grad_t is None else _unrows(grad_t, ctx.x_shape), None)


def _class_loss_cuda(fn: str, x: Tensor, target, weight, ignore_index: int, reduction: str,
                     label_smoothing: float, log_probs: bool):
    """cross_entropy / nll_loss on x's device. target: a Tensor of probabilities (moved there), or
    labels from _labels; weight: (C,) or None. The checks are the caller's."""
    index = x.data.device
    if isinstance(target, Tensor):
        target = target if target.is_cuda else target.to(x.device)
    elif not _device.is_device_array(target):
        target = _device.labels_to_device(fn, target, index)
    unbatched = x.ndim == 1
    if unbatched:
        x = x.reshape(1, x.shape[0])
        target = target.reshape(x.shape) if isinstance(target, Tensor) else target.reshape([1])
    settings = dict(weight=None if weight is None else _device.to_device(fn, weight, index),
                    ignore_index=int(ignore_index), label_smoothing=float(label_smoothing), reduction=reduction,
                    log_probs=log_probs)
    out = ClassLossCuda.apply(x, target, settings)
    return out.reshape(()) if unbatched and reduction == "none" else out


def cross_entropy(input, target, weight=None, ignore_index: int = -100, reduction: str = "mean",  # noqa: A002
                  label_smoothing: float = 0.0):
    """log_softmax + nll_loss in one fused kernel, PyTorch's semantics.

    input: logits (N, C), (N, C, d1, ...) or (C,). target: class indices of shape (N,), (N, d1, ...)
    or () (ints, or whole-number floats), or class probabilities of the input's shape.
    weight (C,) weighs each class; `mean` divides by the summed weights of the non-ignored
    targets (by the number of rows for probabilities). label_smoothing mixes the target with the
    uniform distribution. Rows whose target is ignore_index contribute nothing.
    """
    fn = "cross_entropy"
    x = as_tensor(input)
    probabilities, unbatched = _batched(fn, x, target)
    _check_reduction(fn, reduction)
    if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, numbers.Real) \
            or not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{fn}: label_smoothing must be a number in [0, 1], got {label_smoothing!r}")
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, numbers.Integral):
        raise TypeError(f"{fn}: ignore_index must be an int, got {type(ignore_index).__name__}")
    C = x.shape[-1] if unbatched else x.shape[1]
    w = _class_weight(fn, weight, C)
    if x.is_cuda:
        t = as_tensor(target) if probabilities else _labels(fn, target, x, C, ignore_index)
        return _class_loss_cuda(fn, x, t, w, ignore_index, reduction, label_smoothing, log_probs=False)
    t = as_tensor(target) if probabilities else _class_indices(fn, target)
    if unbatched:
        x = x.reshape(1, C)
        t = t.reshape(1, C) if probabilities else t.reshape(1)
    out = CrossEntropy.apply(x, t, w, int(ignore_index), float(label_smoothing), reduction)
    return out.reshape(()) if unbatched and reduction == "none" else out


class NLLLoss(Function):
    @staticmethod
    def forward(ctx, x, target, weight, ignore_index, reduction):
        log_p = _rows(x)
        t = target.reshape(-1)
        keep = t != ignore_index
        safe_t = np.where(keep, t, 0)
        w = (np.ones(x.shape[1], np.float32) if weight is None else weight)[safe_t] * keep
        picked = log_p[np.arange(len(t)), safe_t]
        rows = -w * picked
        ctx.save_for_backward(safe_t, w)
        ctx.x_shape, ctx.reduction = x.shape, reduction
        if reduction == "none":
            return rows.astype(np.float32).reshape(x.shape[:1] + x.shape[2:])
        total = np.sum(rows, dtype=np.float64)
        if reduction == "mean":
            ctx.denominator = np.sum(w, dtype=np.float64)
            total = total / ctx.denominator if ctx.denominator else np.float64("nan")
        return np.asarray(total, dtype=np.float32)

    @staticmethod
    def backward(ctx, grad):
        safe_t, w = ctx.saved_tensors
        shape = ctx.x_shape
        if ctx.reduction == "none":
            g = grad.reshape(-1)
        elif ctx.reduction == "mean":
            g = np.float32(grad / ctx.denominator) if ctx.denominator else np.float32(0)
        else:
            g = grad
        rows = np.zeros((len(safe_t), shape[1]), dtype=np.float32)
        rows[np.arange(len(safe_t)), safe_t] = -w * g
        return _unrows(rows, shape), None, None, None, None


def nll_loss(input, target, weight=None, ignore_index: int = -100, reduction: str = "mean"):  # noqa: A002
    """Negative log-likelihood of log-probabilities input (N, C), (N, C, d1, ...) or (C,) at the
    class indices target; `mean` divides by the summed weights of the non-ignored targets."""
    fn = "nll_loss"
    x = as_tensor(input)
    probabilities, unbatched = _batched(fn, x, target)
    if probabilities:
        raise ValueError(f"{fn}: target must hold class indices of shape "
                         f"{_shape_text(x.shape[:1] + x.shape[2:]) if not unbatched else '()'}, got the input's shape "
                         f"{_shape_text(x.shape)}; for class probabilities use cross_entropy on the logits")
    _check_reduction(fn, reduction)
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, numbers.Integral):
        raise TypeError(f"{fn}: ignore_index must be an int, got {type(ignore_index).__name__}")
    C = x.shape[-1] if unbatched else x.shape[1]
    w = _class_weight(fn, weight, C)
    t = _labels(fn, target, x, C, ignore_index)
    if x.is_cuda:
        return _class_loss_cuda(fn, x, t, w, ignore_index, reduction, 0.0, log_probs=True)
    if unbatched:
        x, t = x.reshape(1, C), t.reshape(1)
    out = NLLLoss.apply(x, t, w, int(ignore_index), reduction)
    return out.reshape(()) if unbatched and reduction == "none" else out


# ---------------------------------------------------------------------------------------------
# pooling, batch normalization, dropout (fastnn.ops.pool / norm / dropout)

from fastnn.ops.dropout import dropout, dropout2d  # noqa: E402
from fastnn.ops.norm import batch_norm  # noqa: E402
from fastnn.ops.pool import (adaptive_avg_pool2d, avg_pool1d, avg_pool2d, global_avg_pool2d,  # noqa: E402
                             global_max_pool2d, max_pool1d, max_pool2d)

__all__ += ["max_pool2d", "max_pool1d", "avg_pool2d", "avg_pool1d", "adaptive_avg_pool2d", "global_avg_pool2d",
            "global_max_pool2d", "batch_norm", "dropout2d"]


# ---------------------------------------------------------------------------------------------
# embedding lookup (fastnn.ops.rnn; the recurrent layers call fastnn.ops.rnn.recurrent)

from fastnn.ops.rnn import embedding  # noqa: E402

__all__ += ["embedding"]


# ---------------------------------------------------------------------------------------------
# convolutions (fastnn.ops.conv: im2col + GEMM kernels in csrc/cpu/conv.cpp)

from fastnn.ops.conv import conv1d, conv2d, conv2d_relu, conv_transpose1d, conv_transpose2d  # noqa: E402

__all__ += ["conv1d", "conv2d", "conv2d_relu", "conv_transpose1d", "conv_transpose2d"]
