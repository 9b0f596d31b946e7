"""Adagrad (torch.optim.Adagrad's rule).

Per element, g = grad (negated when maximize) + weight_decay * p; sum += g * g;
p -= clr * g / (sqrt(sum) + eps) with clr = lr / (1 + (step - 1) * lr_decay), step counted
per parameter from 1 (computed in double). One fused `_C.adagrad_step` per group (on a GPU,
`_C.cuda.adagrad_step`, one launch per step count, normally one).
"""
from __future__ import annotations

from fastnn import _C, _device
from fastnn.optim.optimizer import Optimizer, by_step, check_hyper, new_buffer


class Adagrad(Optimizer):
    def __init__(self, params, lr: float = 1e-2, lr_decay: float = 0.0, weight_decay: float = 0.0,
                 initial_accumulator_value: float = 0.0, eps: float = 1e-10, *, maximize: bool = False):
        check_hyper("learning rate", lr)
        check_hyper("lr_decay value", lr_decay)
        check_hyper("weight_decay value", weight_decay)
        check_hyper("initial_accumulator_value value", initial_accumulator_value)
        check_hyper("epsilon value", eps)
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value, eps=eps,
                                      maximize=maximize))
        # As PyTorch: the accumulators exist from the start, filled with initial_accumulator_value.
        for group in self.param_groups:
            for p in group["params"]:
                self._init_state(p, group)

    cuda = True

    def _init_state(self, p, group: dict) -> dict:
        state = self.state[p]
        if not state:
            state["step"] = 0
            state["sum"] = new_buffer(p, float(group["initial_accumulator_value"]))
        return state

    def _update_group(self, group: dict) -> None:
        items = self._with_grads(group)
        if not items:
            return
        states = [self._init_state(p, group) for p, _, _ in items]
        steps = [int(s["step"]) + 1 for s in states]
        if items[0][0].is_cuda:
            self._update_cuda(group, items, states, steps)
        else:
            _C.adagrad_step([p.data for p, _, _ in items], [g for _, g, _ in items], [s["sum"] for s in states],
                            lr=float(group["lr"]), lr_decay=float(group["lr_decay"]),
                            weight_decay=float(group["weight_decay"]), eps=float(group["eps"]), step=steps,
                            maximize=bool(group["maximize"]))
        for state, step in zip(states, steps):
            state["step"] = step

    def _update_cuda(self, group: dict, items: list, states: list, steps: list) -> None:
        lr_decay = float(group["lr_decay"])
        if self._capturable and lr_decay != 0.0:
            raise NotImplementedError("Adagrad with lr_decay != 0 cannot run in a captured CUDA graph: its rate "
                                      "changes with the step count, which the graph would freeze; use "
                                      "lr_decay=0 or eager steps")
        for step, chosen in by_step(steps):
            _device.backend.adagrad_step([items[i][0].data for i in chosen], [items[i][1] for i in chosen],
                                         [states[i]["sum"] for i in chosen], lr=float(group["lr"]),
                                         lr_decay=lr_decay, weight_decay=float(group["weight_decay"]),
                                         eps=float(group["eps"]), step=step, maximize=bool(group["maximize"]))
