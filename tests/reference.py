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


# ---- recurrent layers (PyTorch's published equations), float64 --------------------------------
# Weights as PyTorch stores them: w_ih (G, I), w_hh (G, H), biases (G,) or None; gates stacked
# i, f, g, o (LSTM), r, z, n (GRU).

def _affine(x, w, b):
    out = x @ w.T
    return out if b is None else out + b


def lstm_cell_ref(x, h, c, w_ih, w_hh, b_ih=None, b_hh=None):
    """One LSTM step: returns (h', c')."""
    i, f, g, o = np.split(_affine(x, w_ih, b_ih) + _affine(h, w_hh, b_hh), 4, axis=-1)
    c_new = sigmoid_ref(f) * c + sigmoid_ref(i) * np.tanh(g)
    return sigmoid_ref(o) * np.tanh(c_new), c_new


def gru_cell_ref(x, h, w_ih, w_hh, b_ih=None, b_hh=None):
    """One GRU step: r and z from both products, n = tanh(x W_in + b_in + r * (h W_hn + b_hn))."""
    xr, xz, xn = np.split(_affine(x, w_ih, b_ih), 3, axis=-1)
    hr, hz, hn = np.split(_affine(h, w_hh, b_hh), 3, axis=-1)
    r, z = sigmoid_ref(xr + hr), sigmoid_ref(xz + hz)
    n = np.tanh(xn + r * hn)
    return (1.0 - z) * n + z * h


def rnn_cell_ref(x, h, w_ih, w_hh, b_ih=None, b_hh=None, nonlinearity="tanh"):
    a = _affine(x, w_ih, b_ih) + _affine(h, w_hh, b_hh)
    return np.tanh(a) if nonlinearity == "tanh" else np.maximum(a, 0.0)


def recurrent_cell_ref(cell, x, h, c, weights):
    """(h', c') of one step of cell 'lstm' | 'gru' | 'rnn_tanh' | 'rnn_relu' (c' None but for the LSTM)."""
    if cell == "lstm":
        return lstm_cell_ref(x, h, c, *weights)
    if cell == "gru":
        return gru_cell_ref(x, h, *weights), None
    return rnn_cell_ref(x, h, *weights, nonlinearity=cell[4:]), None


def recurrent_direction_ref(cell, x, weights, h, c, lengths=None, reverse=False):
    """One layer-direction over x (T, B, I) from the states h, c (B, H) (c None but for the LSTM).
    Every sequence runs over its own length only (the reverse direction from its own last step),
    its outputs past it are zero, and its final state is the one at its end.
    Returns (output (T, B, H), h_n, c_n)."""
    T, B = x.shape[:2]
    lengths = np.full(B, T) if lengths is None else np.asarray(lengths)
    output = np.zeros((T, B, weights[1].shape[1]))
    for t in (range(T - 1, -1, -1) if reverse else range(T)):
        active = (t < lengths)[:, None]  # rows past their length keep their state
        h_new, c_new = recurrent_cell_ref(cell, x[t], h, c, weights)
        h = np.where(active, h_new, h)
        if c_new is not None:
            c = np.where(active, c_new, c)
        output[t] = np.where(active, h, 0.0)
    return output, h, c


def recurrent_ref(cell, x, weights, h0=None, c0=None, lengths=None, num_layers=1, bidirectional=False):
    """A stacked, optionally bidirectional recurrent network, time-major: x (T, B, I);
    weights[layer * D + d] = (w_ih, w_hh, b_ih, b_hh); h0, c0 (L * D, B, H) or None (zeros);
    lengths (B,) or None. Returns (output (T, B, D * H), h_n (L * D, B, H), c_n or None)."""
    T, B, _ = x.shape
    D = 2 if bidirectional else 1
    H = weights[0][1].shape[1]
    h0 = np.zeros((num_layers * D, B, H)) if h0 is None else h0
    c0 = np.zeros((num_layers * D, B, H)) if c0 is None else c0
    h_n, c_n = np.zeros_like(h0), np.zeros_like(c0)
    layer_input = x
    for layer in range(num_layers):
        outputs = []
        for d in range(D):
            k = layer * D + d
            out, h_n[k], c = recurrent_direction_ref(cell, layer_input, weights[k], h0[k],
                                                     c0[k] if cell == "lstm" else None, lengths, reverse=d == 1)
            if c is not None:
                c_n[k] = c
            outputs.append(out)
        layer_input = np.concatenate(outputs, axis=2)
    return layer_input, h_n, (c_n if cell == "lstm" else None)


def embedding_ref(weight, indices):
    return weight[indices]


# ---- pooling (NCHW) ---------------------------------------------------------------------------
# Windows are listed by plain loops over the output positions; the arithmetic over (N, C) is numpy.

def pool_output_size_ref(n, kernel, stride, padding=0, dilation=1, ceil_mode=False):
    """PyTorch's documented output length: floor (ceil) of (n + 2p - d(k - 1) - 1) / s, plus 1;
    with ceil_mode a last window that would start beyond the input and its left padding is dropped."""
    span = n + 2 * padding - dilation * (kernel - 1) - 1
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= n + padding:
        out -= 1
    return out


def _window_members(n, out, kernel, stride, padding, dilation):
    """For each output position, its window's input positions inside [0, n), in window order."""
    return [[o * stride - padding + k * dilation for k in range(kernel)
             if 0 <= o * stride - padding + k * dilation < n] for o in range(out)]


def max_pool2d_ref(x, kernel, stride, padding=(0, 0), dilation=(1, 1), ceil_mode=False):
    """(out, indices): each window's maximum and the flat index ih * W + iw of its first occurrence
    in row-major window order; -inf and -1 for a window without input elements."""
    x = np.asarray(x, np.float64)
    N, C, H, W = x.shape
    OH = pool_output_size_ref(H, kernel[0], stride[0], padding[0], dilation[0], ceil_mode)
    OW = pool_output_size_ref(W, kernel[1], stride[1], padding[1], dilation[1], ceil_mode)
    rows = _window_members(H, OH, kernel[0], stride[0], padding[0], dilation[0])
    cols = _window_members(W, OW, kernel[1], stride[1], padding[1], dilation[1])
    table = np.full((OH * OW, kernel[0] * kernel[1]), H * W)  # H * W: a -inf column (no element)
    for oh in range(OH):
        for ow in range(OW):
            members = [ih * W + iw for ih in rows[oh] for iw in cols[ow]]
            table[oh * OW + ow, :len(members)] = members
    flat = np.concatenate([x.reshape(N, C, H * W), np.full((N, C, 1), -np.inf)], axis=2)
    values = flat[:, :, table]                      # (N, C, OH * OW, window)
    first = np.argmax(values, axis=3)               # the first maximum
    out = np.take_along_axis(values, first[..., None], 3)[..., 0]
    indices = table[np.arange(OH * OW), first]
    indices[indices == H * W] = -1
    return out.reshape(N, C, OH, OW), indices.reshape(N, C, OH, OW)


def max_pool2d_backward_ref(grad_out, indices, input_shape):
    """Each output gradient added to its maximum's input element."""
    N, C, H, W = input_shape
    grad = np.zeros((N * C, H * W))
    g = np.asarray(grad_out, np.float64).reshape(N * C, -1)
    idx = np.asarray(indices).reshape(N * C, -1)
    for p in range(N * C):
        keep = idx[p] >= 0
        np.add.at(grad[p], idx[p][keep], g[p][keep])
    return grad.reshape(input_shape)


def _pool_matrix_apply(x, A, OH, OW):
    """x (N, C, H, W) through the linear map A (OH * OW, H * W)."""
    N, C, H, W = x.shape
    return (np.asarray(x, np.float64).reshape(N, C, H * W) @ A.T).reshape(N, C, OH, OW)


def avg_pool2d_matrix_ref(H, W, kernel, stride, padding=(0, 0), ceil_mode=False, count_include_pad=True,
                          divisor_override=None):
    """The (OH * OW, H * W) matrix of average pooling: 1 / divisor on each window's elements,
    the divisor being PyTorch's (see avg_pool2d_ref)."""
    OH = pool_output_size_ref(H, kernel[0], stride[0], padding[0], 1, ceil_mode)
    OW = pool_output_size_ref(W, kernel[1], stride[1], padding[1], 1, ceil_mode)
    A = np.zeros((OH * OW, H * W))
    for oh in range(OH):
        h0 = oh * stride[0] - padding[0]
        h1 = min(h0 + kernel[0], H + padding[0])   # the window, clipped to the padded input
        for ow in range(OW):
            w0 = ow * stride[1] - padding[1]
            w1 = min(w0 + kernel[1], W + padding[1])
            members = [ih * W + iw for ih in range(max(h0, 0), min(h1, H)) for iw in range(max(w0, 0), min(w1, W))]
            if divisor_override:
                divisor = divisor_override
            elif count_include_pad:
                divisor = (h1 - h0) * (w1 - w0)
            else:
                divisor = len(members)
            A[oh * OW + ow, members] = 1.0 / divisor
    return A, OH, OW


def avg_pool2d_ref(x, kernel, stride, padding=(0, 0), ceil_mode=False, count_include_pad=True, divisor_override=None):
    """Mean of each window: divisor_override, else the window's size clipped to the padded input
    (count_include_pad) or the number of input elements in it."""
    A, OH, OW = avg_pool2d_matrix_ref(x.shape[2], x.shape[3], kernel, stride, padding, ceil_mode,
                                      count_include_pad, divisor_override)
    return _pool_matrix_apply(x, A, OH, OW)


def adaptive_avg_pool2d_matrix_ref(H, W, OH, OW):
    A = np.zeros((OH * OW, H * W))
    for oh in range(OH):
        h0, h1 = (oh * H) // OH, -(-((oh + 1) * H) // OH)
        for ow in range(OW):
            w0, w1 = (ow * W) // OW, -(-((ow + 1) * W) // OW)
            members = [ih * W + iw for ih in range(h0, h1) for iw in range(w0, w1)]
            A[oh * OW + ow, members] = 1.0 / len(members)
    return A


def adaptive_avg_pool2d_ref(x, output_size):
    """Output (i, j) averages rows floor(i H / OH) .. ceil((i + 1) H / OH) - 1, columns likewise."""
    OH, OW = output_size
    return _pool_matrix_apply(x, adaptive_avg_pool2d_matrix_ref(x.shape[2], x.shape[3], OH, OW), OH, OW)


# ---- batch normalization ----------------------------------------------------------------------

def _channel_shape(x):
    return (1, x.shape[1]) + (1,) * (x.ndim - 2)


def batch_norm_ref(x, mean, var, weight=None, bias=None, eps=1e-5):
    """(x - mean) / sqrt(var + eps) * weight + bias, per channel (axis 1)."""
    s = _channel_shape(x)
    y = (np.asarray(x, np.float64) - np.reshape(mean, s)) / np.sqrt(np.reshape(var, s) + eps)
    if weight is not None:
        y = y * np.reshape(weight, s)
    if bias is not None:
        y = y + np.reshape(bias, s)
    return y


def batch_stats_ref(x):
    """Per-channel mean and biased variance over every axis but 1."""
    axes = (0,) + tuple(range(2, x.ndim))
    x = np.asarray(x, np.float64)
    return x.mean(axis=axes), x.var(axis=axes)


def batch_norm_train_ref(x, weight=None, bias=None, eps=1e-5):
    mean, var = batch_stats_ref(x)
    return batch_norm_ref(x, mean, var, weight, bias, eps)


def running_stats_ref(running_mean, running_var, x, momentum):
    """PyTorch's update: r = (1 - momentum) r + momentum * stat, the variance unbiased (M / (M - 1))."""
    mean, var = batch_stats_ref(x)
    m = x.size // x.shape[1]
    return ((1 - momentum) * running_mean + momentum * mean,
            (1 - momentum) * running_var + momentum * var * m / (m - 1))


# ---- convolution: direct loops over the kernel taps, float64 ---------------------------------
# x (N, C, H, W), w (K, C/groups, R, S); stride/dilation an int or (h, w); padding an int,
# (h, w) or (top, bottom, left, right).

def _conv_pair(v):
    return (v, v) if np.isscalar(v) else tuple(v)


def _conv_sides(padding):
    if np.isscalar(padding):
        return (padding,) * 4
    if len(padding) == 2:
        return (padding[0], padding[0], padding[1], padding[1])
    return tuple(padding)


def _conv_taps(x_shape, w_shape, stride, padding, dilation):
    """(padded input shape, P, Q, slicer(r, s) picking the input pixels tap (r, s) sees)."""
    (sh, sw), (dh, dw) = _conv_pair(stride), _conv_pair(dilation)
    pt, pb, pl, pr = _conv_sides(padding)
    N, C, H, W = x_shape
    R, S = w_shape[2:]
    Hp, Wp = H + pt + pb, W + pl + pr
    P, Q = (Hp - dh * (R - 1) - 1) // sh + 1, (Wp - dw * (S - 1) - 1) // sw + 1

    def taps(r, s):
        return (slice(None), slice(None), slice(r * dh, r * dh + sh * (P - 1) + 1, sh),
                slice(s * dw, s * dw + sw * (Q - 1) + 1, sw))
    return (N, C, Hp, Wp), (pt, pl), P, Q, taps


def _padded(x, padded_shape, top, left):
    """x (N, C, H, W) inside zeros of padded_shape, at (top, left)."""
    xp = np.zeros(padded_shape)
    xp[:, :, top:top + x.shape[2], left:left + x.shape[3]] = x
    return xp


def conv2d_reference(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    padded, (pt, pl), P, Q, taps = _conv_taps(x.shape, w.shape, stride, padding, dilation)
    N = x.shape[0]
    K, Cg, R, S = w.shape
    Kg = K // groups
    xp = _padded(x, padded, pt, pl)
    out = np.zeros((N, K, P, Q))
    for g in range(groups):
        xg, wg = xp[:, g * Cg:(g + 1) * Cg], w[g * Kg:(g + 1) * Kg]
        for r in range(R):
            for s in range(S):
                out[:, g * Kg:(g + 1) * Kg] += np.einsum("ncpq,kc->nkpq", xg[taps(r, s)], wg[:, :, r, s])
    if b is not None:
        out += np.asarray(b, np.float64)[None, :, None, None]
    return out


def conv2d_reference_grads(x, w, grad_out, stride=1, padding=0, dilation=1, groups=1):
    """(grad_x, grad_w, grad_b) of sum(conv2d_reference(x, w, b) * grad_out), tap by tap."""
    x, w, gy = np.asarray(x, np.float64), np.asarray(w, np.float64), np.asarray(grad_out, np.float64)
    padded, (pt, pl), P, Q, taps = _conv_taps(x.shape, w.shape, stride, padding, dilation)
    N, C, H, W = x.shape
    K, Cg, R, S = w.shape
    Kg = K // groups
    xp = _padded(x, padded, pt, pl)
    gxp, gw = np.zeros(padded), np.zeros(w.shape)
    for g in range(groups):
        cs, ks = slice(g * Cg, (g + 1) * Cg), slice(g * Kg, (g + 1) * Kg)
        for r in range(R):
            for s in range(S):
                gxp[:, cs][taps(r, s)] += np.einsum("nkpq,kc->ncpq", gy[:, ks], w[ks, :, r, s])
                gw[ks, :, r, s] = np.einsum("nkpq,ncpq->kc", gy[:, ks], xp[:, cs][taps(r, s)])
    return gxp[:, :, pt:pt + H, pl:pl + W], gw, gy.sum(axis=(0, 2, 3))


# ---- transposed convolution: scatter each input pixel through the taps, float64 --------------
# x (N, C_in, H, W), w (C_in, C_out/groups, R, S). Every input pixel (h, w) adds
# x * w[:, :, r, s] at row h * stride + r * dilation, column likewise, of the full output; the
# result is the full output with `padding` rows/columns cut from each side (output_padding rows
# and columns kept at the bottom/right).

def _transposed_geometry(x_shape, w_shape, stride, padding, output_padding, dilation):
    (sh, sw), (dh, dw), (oh, ow) = _conv_pair(stride), _conv_pair(dilation), _conv_pair(output_padding)
    pt, pb, pl, pr = _conv_sides(padding)
    N, C, H, W = x_shape
    R, S = w_shape[2:]
    Hf, Wf = (H - 1) * sh + dh * (R - 1) + 1 + oh, (W - 1) * sw + dw * (S - 1) + 1 + ow

    def taps(r, s):
        return (slice(None), slice(None), slice(r * dh, r * dh + sh * (H - 1) + 1, sh),
                slice(s * dw, s * dw + sw * (W - 1) + 1, sw))
    crop = (slice(None), slice(None), slice(pt, Hf - pb), slice(pl, Wf - pr))
    return (Hf, Wf), taps, crop


def conv_transpose2d_reference(x, w, b=None, stride=1, padding=0, output_padding=0, dilation=1, groups=1):
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    (Hf, Wf), taps, crop = _transposed_geometry(x.shape, w.shape, stride, padding, output_padding, dilation)
    N, C, H, W = x.shape
    _, Kg, R, S = w.shape
    Cg = C // groups
    full = np.zeros((N, Kg * groups, Hf, Wf))
    for g in range(groups):
        cs, ks = slice(g * Cg, (g + 1) * Cg), slice(g * Kg, (g + 1) * Kg)
        for r in range(R):
            for s in range(S):
                full[:, ks][taps(r, s)] += np.einsum("nchw,ck->nkhw", x[:, cs], w[cs, :, r, s])
    out = full[crop]
    if b is not None:
        out = out + np.asarray(b, np.float64)[None, :, None, None]
    return out


def conv_transpose2d_reference_grads(x, w, grad_out, stride=1, padding=0, output_padding=0, dilation=1, groups=1):
    """(grad_x, grad_w, grad_b) of sum(conv_transpose2d_reference(x, w, b) * grad_out)."""
    x, w, gy = np.asarray(x, np.float64), np.asarray(w, np.float64), np.asarray(grad_out, np.float64)
    (Hf, Wf), taps, crop = _transposed_geometry(x.shape, w.shape, stride, padding, output_padding, dilation)
    N, C, H, W = x.shape
    _, Kg, R, S = w.shape
    Cg = C // groups
    gfull = np.zeros((N, Kg * groups, Hf, Wf))
    gfull[crop] = gy
    gx, gw = np.zeros(x.shape), np.zeros(w.shape)
    for g in range(groups):
        cs, ks = slice(g * Cg, (g + 1) * Cg), slice(g * Kg, (g + 1) * Kg)
        for r in range(R):
            for s in range(S):
                seen = gfull[:, ks][taps(r, s)]
                gx[:, cs] += np.einsum("nkhw,ck->nchw", seen, w[cs, :, r, s])
                gw[cs, :, r, s] = np.einsum("nkhw,nchw->ck", seen, x[:, cs])
    return gx, gw, gy.sum(axis=(0, 2, 3))


def philox4x32_10(counters: np.ndarray, key: tuple) -> np.ndarray:
    """Philox4x32-10 of each row of `counters` (n, 4) uint32 under key (k0, k1): (n, 4) uint32."""
    c = [counters[:, i].astype(np.uint64) for i in range(4)]
    k0, k1 = np.uint64(key[0]), np.uint64(key[1])
    low = np.uint64(0xFFFFFFFF)
    for _ in range(10):
        p0, p1 = np.uint64(0xD2511F53) * c[0], np.uint64(0xCD9E8D57) * c[2]
        c = [(p1 >> np.uint64(32)) ^ c[1] ^ k0, p1 & low, (p0 >> np.uint64(32)) ^ c[3] ^ k1, p0 & low]
        k0, k1 = (k0 + np.uint64(0x9E3779B9)) & low, (k1 + np.uint64(0xBB67AE85)) & low
    return np.stack(c, axis=1).astype(np.uint32)


def dropout_mask_ref(n: int, p: float, seed: int, offset: int) -> np.ndarray:
    """Inverted dropout's mask of n elements, draw `offset` under `seed` (csrc/common/philox.h)."""
    blocks = np.arange((n + 3) // 4, dtype=np.uint64)
    counters = np.stack([blocks & np.uint64(0xFFFFFFFF), blocks >> np.uint64(32),
                         np.full_like(blocks, offset & 0xFFFFFFFF), np.full_like(blocks, offset >> 32)], axis=1)
    bits = philox4x32_10(counters, (seed & 0xFFFFFFFF, seed >> 32)).reshape(-1)[:n]
    uniform = (bits >> np.uint32(8)).astype(np.float32) * np.float32(1.0 / 16777216.0)
    scale = np.float32(1.0 / (1.0 - p)) if p < 1 else np.float32(0.0)
    return np.where(uniform >= np.float32(p), scale, np.float32(0.0)).astype(np.float32)
