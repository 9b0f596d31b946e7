"""Adam and AdamW with bias correction and the AMSGrad option (torch.optim.Adam/AdamW's rule).

Per element, g = grad (negated when maximize); Adam adds weight_decay * p to g (L2), AdamW
first multiplies p by 1 - lr * weight_decay (decoupled); m = lerp(m, g, 1 - beta1);
v = beta2 * v + (1 - beta2) * g * g; AMSGrad keeps vmax = max(vmax, v) and uses it for v;
p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps), t counted per parameter from
1, the bias corrections computed in double. One fused `_C.adam_step` per group (on a GPU,
`_C.cuda.adam_step`, one launch per step count, normally one).
"""
from __future__ import annotations

from fastnn import _C, _device
from fastnn.optim.optimizer import Optimizer, by_step, check_hyper, new_buffer


class Adam(Optimizer):
    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0,
                 amsgrad: bool = False, *, maximize: bool = False, decoupled_weight_decay: bool = False):
        check_hyper("learning rate", lr)
        check_hyper("epsilon value", eps)
        try:
            beta1, beta2 = betas
        except (TypeError, ValueError):
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}") from None
        check_hyper("beta", beta1, 0.0, 1.0, True, f"Invalid beta parameter at index 0: {beta1}")
        check_hyper("beta", beta2, 0.0, 1.0, True, f"Invalid beta parameter at index 1: {beta2}")
        check_hyper("weight_decay value", weight_decay)
        super().__init__(params, dict(lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad, maximize=maximize,
                                      decoupled_weight_decay=decoupled_weight_decay))

    cuda = True

    def _update_group(self, group: dict) -> None:
        items = self._with_grads(group)
        if not items:
            return
        amsgrad = bool(group["amsgrad"])
        states = []
        for p, _, state in items:
            if not state:
                state["step"] = 0
                state["exp_avg"] = new_buffer(p)
                state["exp_avg_sq"] = new_buffer(p)
            if amsgrad and "max_exp_avg_sq" not in state:
                state["max_exp_avg_sq"] = new_buffer(p)
            states.append(state)
        beta1, beta2 = group["betas"]
        if items[0][0].is_cuda:
            settings = dict(lr=float(group["lr"]), beta1=float(beta1), beta2=float(beta2), eps=float(group["eps"]),
                            weight_decay=float(group["weight_decay"]), maximize=bool(group["maximize"]),
                            decoupled=bool(group["decoupled_weight_decay"]))
            if self._capturable:
                return self._update_capturable(items, states, settings, amsgrad)
        steps = [int(s["step"]) + 1 for s in states]
        if items[0][0].is_cuda:
            for step, chosen in by_step(steps):
                _device.backend.adam_step([items[i][0].data for i in chosen], [items[i][1] for i in chosen],
                                          [states[i]["exp_avg"] for i in chosen],
                                          [states[i]["exp_avg_sq"] for i in chosen],
                                          [states[i]["max_exp_avg_sq"] for i in chosen] if amsgrad else [],
                                          step=step, **settings)
            for state, step in zip(states, steps):
                state["step"] = step
            return
        _C.adam_step([p.data for p, _, _ in items], [g for _, g, _ in items],
                     [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states],
                     [s["max_exp_avg_sq"] for s in states] if amsgrad else [],
                     lr=float(group["lr"]), beta1=float(beta1), beta2=float(beta2), eps=float(group["eps"]),
                     weight_decay=float(group["weight_decay"]), amsgrad=amsgrad, step=steps,
                     decoupled=bool(group["decoupled_weight_decay"]), maximize=bool(group["maximize"]))
        for state, step in zip(states, steps):
            state["step"] = step

    def _update_capturable(self, items: list, states: list, settings: dict, amsgrad: bool) -> None:
        """The update of a captured CUDA graph: the step count lives on the device, one float32
        array shared by the group's parameters, advanced by the kernel itself (a host count would
        be frozen into the graph)."""
        counter = next((s["step"] for s in states if _device.is_device_array(s["step"])), None)
        if counter is None:
            counter = _device.full((1,), float(max(int(s["step"]) for s in states)), items[0][0].data.device)
        for state in states:
            state["step"] = counter
        _device.backend.adam_step([p.data for p, _, _ in items], [g for _, g, _ in items],
                                  [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states],
                                  [s["max_exp_avg_sq"] for s in states] if amsgrad else [],
                                  step_count=counter, **settings)


class AdamW(Adam):
    """Adam with decoupled weight decay (default 1e-2): p *= 1 - lr * weight_decay before the step."""

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 1e-2,
                 amsgrad: bool = False, *, maximize: bool = False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                         maximize=maximize, decoupled_weight_decay=True)
