"""Gradient clipping through fused kernels: torch.nn.utils.clip_grad_norm_ and clip_grad_value_.

Both modify the .grad arrays of the parameters in place, in one threaded pass over all of them
(the norm needs a second pass to scale). Parameters without a gradient are skipped.
"""
from __future__ import annotations

import numpy as np

from fastnn import _C
from fastnn._tensor import Tensor


def _grads(fn: str, parameters) -> list:
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    grads = []
    for i, p in enumerate(parameters):
        if not isinstance(p, Tensor):
            raise TypeError(f"{fn}: parameters must be Tensors, but item {i} is {type(p).__name__}")
        g = p.grad
        if g is not None:
            grads.append(g.data if isinstance(g, Tensor) else g)
    return grads


def clip_grad_norm_(parameters, max_norm: float, norm_type: float = 2.0, error_if_nonfinite: bool = False,
                    foreach=None) -> Tensor:
    """Scale all gradients together so that their total norm is at most max_norm.

    The total norm is the norm of order `norm_type` (2, 1, inf or any p > 0) of all gradient
    elements taken as one vector, accumulated in double. When it exceeds max_norm, every
    gradient is multiplied by max_norm / (total_norm + 1e-6). Returns the total norm before
    clipping, as a 0-d Tensor. With error_if_nonfinite, a NaN or infinite norm raises
    RuntimeError and leaves the gradients unchanged. (`foreach` is accepted for PyTorch
    compatibility and ignored: the kernel is always fused.)
    """
    grads = _grads("clip_grad_norm_", parameters)
    norm_type = float(norm_type)
    if not grads:
        return Tensor(np.array(0.0, dtype=np.float32))
    total = _C.clip_grad_norm(grads, max_norm=float(max_norm), norm_type=norm_type,
                              error_if_nonfinite=bool(error_if_nonfinite))
    return Tensor(np.array(total, dtype=np.float32))


def clip_grad_value_(parameters, clip_value: float, foreach=None) -> None:
    """Clamp every gradient element to [-clip_value, clip_value], in place."""
    grads = _grads("clip_grad_value_", parameters)
    if grads:
        _C.clip_grad_value(grads, clip_value=float(clip_value))
