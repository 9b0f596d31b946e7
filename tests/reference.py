"""Plain float64 numpy references for the ops (the oracle of tests/test_*.py)."""
import numpy as np


def matmul_ref(a, b):
    return np.matmul(np.asarray(a, np.float64), np.asarray(b, np.float64))


def relu_ref(x):
    return np.maximum(x, 0.0)


def sigmoid_ref(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # the same function, written without overflow


def tanh_ref(x):
    return np.tanh(x)


def sum_ref(x, axis=None, keepdim=False):
    return np.sum(x, axis=axis, keepdims=keepdim)


def mean_ref(x, axis=None, keepdim=False):
    return np.mean(x, axis=axis, keepdims=keepdim)


def max_ref(x, axis=None, keepdim=False):
    return np.max(x, axis=axis, keepdims=keepdim)


def flatten_ref(x, start_dim=0, end_dim=-1):
    if x.ndim == 0:
        return x.reshape(1)
    start, end = start_dim % x.ndim, end_dim % x.ndim
    return x.reshape(x.shape[:start] + (-1,) + x.shape[end + 1:])


def transpose_ref(x, dim0, dim1):
    return np.swapaxes(x, dim0, dim1)


def cat_ref(*arrays, axis=0):
    return np.concatenate(arrays, axis=axis)


def stack_ref(*arrays, axis=0):
    return np.stack(arrays, axis=axis)


# ---- optimizers (PyTorch's published update rules), one tensor, one step, in float64 ----------
# Each takes the parameter p, its gradient g and its state dict (updated in place; empty before
# the first step) and returns the new parameter.

def sgd_ref(p, g, state, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False):
    g = -g if maximize else g
    if weight_decay:
        g = g + weight_decay * p
    if momentum:
        b = state.get("momentum_buffer")
        b = g.copy() if b is None else momentum * b + (1 - dampening) * g
        state["momentum_buffer"] = b
        g = g + momentum * b if nesterov else b
    return p - lr * g


def adagrad_ref(p, g, state, lr, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10,
                maximize=False):
    state["step"] = state.get("step", 0) + 1
    s = state.setdefault("sum", np.full(p.shape, initial_accumulator_value, np.float64))
    g = -g if maximize else g
    if weight_decay:
        g = g + weight_decay * p
    clr = lr / (1 + (state["step"] - 1) * lr_decay)
    s += g * g
    return p - clr * g / (np.sqrt(s) + eps)


def rmsprop_ref(p, g, state, lr, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False,
                maximize=False):
    v = state.setdefault("square_avg", np.zeros(p.shape))
    g = -g if maximize else g
    if weight_decay:
        g = g + weight_decay * p
    v[...] = alpha * v + (1 - alpha) * g * g
    if centered:
        ga = state.setdefault("grad_avg", np.zeros(p.shape))
        ga[...] = alpha * ga + (1 - alpha) * g
        avg = np.sqrt(v - ga * ga) + eps
    else:
        avg = np.sqrt(v) + eps
    if momentum > 0:
        b = state.setdefault("momentum_buffer", np.zeros(p.shape))
        b[...] = momentum * b + g / avg
        return p - lr * b
    return p - lr * g / avg


def adam_ref(p, g, state, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, maximize=False,
             decoupled=False):
    beta1, beta2 = betas
    t = state["step"] = state.get("step", 0) + 1
    m = state.setdefault("exp_avg", np.zeros(p.shape))
    v = state.setdefault("exp_avg_sq", np.zeros(p.shape))
    g = -g if maximize else g
    if decoupled:
        p = p * (1 - lr * weight_decay)
    elif weight_decay:
        g = g + weight_decay * p
    m[...] = beta1 * m + (1 - beta1) * g
    v[...] = beta2 * v + (1 - beta2) * g * g
    if amsgrad:
        vmax = state.setdefault("max_exp_avg_sq", np.zeros(p.shape))
        np.maximum(vmax, v, out=vmax)
        v = vmax
    m_hat = m / (1 - beta1 ** t)
    v_hat = v / (1 - beta2 ** t)
    return p - lr * m_hat / (np.sqrt(v_hat) + eps)


def ema_ref(shadow, param, decay):
    return decay * shadow + (1 - decay) * param


def total_norm_ref(arrays, norm_type=2.0):
    flat = np.concatenate([np.asarray(a, np.float64).ravel() for a in arrays])
    if np.isinf(norm_type):
        return float(np.max(np.abs(flat))) if flat.size else 0.0
    return float(np.sum(np.abs(flat) ** norm_type) ** (1.0 / norm_type))
