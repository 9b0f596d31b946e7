"""matmul with numpy's shape rules, on fastnn's own GEMM (_C.gemm), forward and backward.

Shapes: input (..., M, K) @ other (..., K, N) -> (..., M, N).
- other 2-D: input's leading dims fold into M, so it is one GEMM whatever input's rank
  (nn.Linear on a batch of sequences), and so are both gradients.
- otherwise the batch dims broadcast, and each batch element is one GEMM writing into its
  slice of the output.
- a 1-D operand (K,) is (1, K) on the left or (K, 1) on the right, and that axis is dropped
  from the result, as numpy does.
Transposed operands (F-contiguous views such as x.T) reach gemm with its transpose flag instead
of being copied; backward relies on it: dA = dC @ B^T and dB = A^T @ dC use transposed views.
"""
from __future__ import annotations

import math

import numpy as np

from fastnn import _C, _device
from fastnn._config import get_check_finite
from fastnn.autograd import Function
from fastnn.ops._common import as_tensor
from fastnn.ops.elementwise import unbroadcast
from fastnn.ops.shape import reshape

_ITEMSIZE = np.dtype(np.float32).itemsize


def _gemm_reads_directly(x: np.ndarray) -> bool:
    """Whether gemm accepts x's layout: unit stride along rows, a positive row stride >= cols."""
    rows, cols = x.shape
    row_stride, col_stride = x.strides
    inner_ok = cols <= 1 or col_stride == _ITEMSIZE
    rows_ok = rows <= 1 or (row_stride > 0 and row_stride % _ITEMSIZE == 0 and row_stride // _ITEMSIZE >= cols)
    return inner_ok and rows_ok


def _gemm_operand(x: np.ndarray):
    """(array, transpose flag) that gemm reads as x; a copy only for layouts it cannot read."""
    if _gemm_reads_directly(x):
        return x, False
    if _gemm_reads_directly(x.T):
        return x.T, True
    return np.ascontiguousarray(x), False


def gemm2d(a: np.ndarray, b: np.ndarray, out: np.ndarray = None) -> np.ndarray:
    """a (M, K) @ b (K, N) for float32 arrays of any strides, into out (M, N) when given."""
    if out is None:
        out = np.empty((a.shape[0], b.shape[1]), dtype=np.float32)
    a, trans_a = _gemm_operand(a)
    b, trans_b = _gemm_operand(b)
    return _C.gemm(a, b, out, trans_a=trans_a, trans_b=trans_b, check_finite=get_check_finite())


def _fold(x: np.ndarray) -> np.ndarray:
    """(..., K) as (rows, K); a view when x's layout allows."""
    return x.reshape(math.prod(x.shape[:-1]), x.shape[-1])


def batched_gemm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a (..., M, K) @ b (..., K, N) with broadcast batch dims: one gemm per batch element."""
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    a = np.broadcast_to(a, batch + a.shape[-2:])  # broadcast batch axes get stride 0: no copy
    b = np.broadcast_to(b, batch + b.shape[-2:])
    out = np.empty(batch + (a.shape[-2], b.shape[-1]), dtype=np.float32)
    for index in np.ndindex(*batch):
        gemm2d(a[index], b[index], out[index])
    return out


class MatMul(Function):
    """a (..., M, K) @ b (..., K, N), both at least 2-D."""
    cuda = True

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        if _device.is_device_array(a):
            if a.ndim != 2 or b.ndim != 2:
                raise NotImplementedError("matmul of tensors with more than 2 dimensions has no CUDA kernel yet")
            return _device.backend.gemm(a, b)
        if b.ndim == 2:
            return gemm2d(_fold(a), b).reshape(a.shape[:-1] + (b.shape[1],))
        return batched_gemm(a, b)

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        grad_a = grad_b = None
        if _device.is_device_array(grad):
            if ctx.needs_input_grad[0]:
                grad_a = _device.backend.gemm(grad, b, trans_b=True)  # dA = dC @ B^T
            if ctx.needs_input_grad[1]:
                grad_b = _device.backend.gemm(a, grad, trans_a=True)  # dB = A^T @ dC
            return grad_a, grad_b
        if b.ndim == 2:
            grad_rows = _fold(grad)
            if ctx.needs_input_grad[0]:
                grad_a = gemm2d(grad_rows, b.T).reshape(a.shape)  # dA = dC @ B^T
            if ctx.needs_input_grad[1]:
                grad_b = gemm2d(_fold(a).T, grad_rows)  # dB = A^T @ dC, summed over the folded rows
        else:
            if ctx.needs_input_grad[0]:
                grad_a = unbroadcast(batched_gemm(grad, np.swapaxes(b, -1, -2)), a.shape)
            if ctx.needs_input_grad[1]:
                grad_b = unbroadcast(batched_gemm(np.swapaxes(a, -1, -2), grad), b.shape)
        return grad_a, grad_b


def _check_shapes(a_shape: tuple, b_shape: tuple) -> None:
    if not a_shape or not b_shape:
        raise ValueError(f"matmul: both arguments must be at least 1-D, got shapes {a_shape} and {b_shape}; "
                         f"use * to multiply by a scalar")
    K = a_shape[-1]
    b_rows = b_shape[0] if len(b_shape) == 1 else b_shape[-2]
    if b_rows != K:
        expected = {1: f"({K},)", 2: f"({K}, ...)"}.get(len(b_shape), f"(..., {K}, N)")
        raise ValueError(f"matmul: shapes {a_shape} and {b_shape} cannot be multiplied: "
                         f"expected other of shape {expected}")
    try:
        np.broadcast_shapes(a_shape[:-2], b_shape[:-2])
    except ValueError:
        raise ValueError(f"matmul: shapes {a_shape} and {b_shape} cannot be multiplied: batch dimensions "
                         f"{a_shape[:-2]} and {b_shape[:-2]} cannot be broadcast together") from None


def matmul(input, other):  # noqa: A002 (torch's argument names)
    """input @ other with numpy's rules for 1-D operands and broadcast batch dimensions."""
    input, other = as_tensor(input), as_tensor(other)
    _check_shapes(input.shape, other.shape)
    K = input.shape[-1]
    a = reshape(input, (1, K)) if input.ndim == 1 else input
    b = reshape(other, (K, 1)) if other.ndim == 1 else other
    try:
        out = MatMul.apply(a, b)
    except ValueError as error:  # a NaN or infinity found by gemm's check
        raise ValueError(f"matmul of input {input.shape} and other {other.shape}: {error}") from error
    if input.ndim == 1 and other.ndim == 1:
        return reshape(out, ())
    if input.ndim == 1:
        return reshape(out, other.shape[:-2] + (other.shape[-1],))
    if other.ndim == 1:
        return reshape(out, input.shape[:-1])
    return out
