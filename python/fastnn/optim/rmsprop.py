"""RMSprop, plain, centered and with momentum (torch.optim.RMSprop's rule).

Per element, g = grad (negated when maximize) + weight_decay * p;
v = alpha * v + (1 - alpha) * g * g; centered: ga = lerp(ga, g, 1 - alpha) and
avg = sqrt(v - ga * ga) + eps, else avg = sqrt(v) + eps; with momentum, b = momentum * b + g / avg
and p -= lr * b, else p -= lr * g / avg. One fused `_C.rmsprop_step` per group (on a GPU,
`_C.cuda.rmsprop_step`, which takes the same arguments).
"""
from __future__ import annotations

from fastnn import _device
from fastnn.optim.optimizer import Optimizer, check_hyper, new_buffer


class RMSprop(Optimizer):
    def __init__(self, params, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8, weight_decay: float = 0.0,
                 momentum: float = 0.0, centered: bool = False, *, maximize: bool = False):
        check_hyper("learning rate", lr)
        check_hyper("epsilon value", eps)
        check_hyper("momentum value", momentum)
        check_hyper("weight_decay value", weight_decay)
        check_hyper("alpha value", alpha)
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                                      centered=centered, maximize=maximize))

    cuda = True

    def _update_group(self, group: dict) -> None:
        items = self._with_grads(group)
        if not items:
            return
        momentum, centered = float(group["momentum"]), bool(group["centered"])
        states = []
        for p, _, state in items:
            if not state:
                state["step"] = 0
                state["square_avg"] = new_buffer(p)
            if momentum > 0 and "momentum_buffer" not in state:
                state["momentum_buffer"] = new_buffer(p)
            if centered and "grad_avg" not in state:
                state["grad_avg"] = new_buffer(p)
            states.append(state)
        kernels = _device.kernels(items[0][0].data)
        kernels.rmsprop_step([p.data for p, _, _ in items], [g for _, g, _ in items],
                             [s["square_avg"] for s in states],
                             [s["grad_avg"] for s in states] if centered else [],
                             [s["momentum_buffer"] for s in states] if momentum > 0 else [],
                             lr=float(group["lr"]), alpha=float(group["alpha"]), eps=float(group["eps"]),
                             weight_decay=float(group["weight_decay"]), momentum=momentum, centered=centered,
                             maximize=bool(group["maximize"]))
        for state in states:
            state["step"] += 1
