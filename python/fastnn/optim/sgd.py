"""SGD with momentum, dampening, Nesterov momentum and weight decay (torch.optim.SGD's rule).

Per element, g = grad (negated when maximize) + weight_decay * p; with momentum,
b = g on the first step and b = momentum * b + (1 - dampening) * g after it, and g = b, or
g + momentum * b with Nesterov; then p -= lr * g. One fused `_C.sgd_step` per group.
"""
from __future__ import annotations

import numpy as np

from fastnn import _C, _device
from fastnn.optim.optimizer import Optimizer, check_hyper, new_buffer


class SGD(Optimizer):
    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False, *, maximize: bool = False):
        check_hyper("learning rate", lr)
        check_hyper("momentum value", momentum)
        check_hyper("weight_decay value", weight_decay)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening, got "
                             f"momentum={momentum}, dampening={dampening}")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                                      nesterov=nesterov, maximize=maximize))

    cuda = True

    def _update_group(self, group: dict) -> None:
        items = self._with_grads(group)
        if not items:
            return
        if items[0][0].is_cuda:
            return self._update_cuda(group, items)
        momentum = float(group["momentum"])
        buffers, new, created = [], [], []
        if momentum != 0.0:
            for p, _, state in items:
                buf = state.get("momentum_buffer")
                fresh = buf is None
                if fresh:  # first step: the kernel sets it to the gradient
                    buf = np.empty(p.data.shape, dtype=np.float32)
                    created.append((state, buf))
                buffers.append(buf)
                new.append(fresh)
        _C.sgd_step([p.data for p, _, _ in items], [g for _, g, _ in items], buffers,
                    lr=float(group["lr"]), momentum=momentum, dampening=float(group["dampening"]),
                    weight_decay=float(group["weight_decay"]), nesterov=bool(group["nesterov"]),
                    maximize=bool(group["maximize"]), new_buffers=new or None)
        for state, buf in created:  # kept only once the step succeeded
            state["momentum_buffer"] = buf

    def _update_cuda(self, group: dict, items: list) -> None:
        momentum = float(group["momentum"])
        settings = dict(lr=float(group["lr"]), momentum=momentum, dampening=float(group["dampening"]),
                        weight_decay=float(group["weight_decay"]), nesterov=bool(group["nesterov"]),
                        maximize=bool(group["maximize"]))
        if momentum == 0.0:
            _device.backend.sgd_step([p.data for p, _, _ in items], [g for _, g, _ in items], [],
                                     first_step=False, **settings)
            return
        fresh = [("momentum_buffer" not in s) for _, _, s in items]  # before any buffer is made
        for first in (True, False):  # the first step sets the buffer to the gradient
            chosen = [item for item, new in zip(items, fresh) if new == first]
            if not chosen:
                continue
            buffers = [s["momentum_buffer"] if not first else new_buffer(p) for p, _, s in chosen]
            _device.backend.sgd_step([p.data for p, _, _ in chosen], [g for _, g, _ in chosen], buffers,
                                     first_step=first, **settings)
            for (_, _, state), buf in zip(chosen, buffers):
                state["momentum_buffer"] = buf
