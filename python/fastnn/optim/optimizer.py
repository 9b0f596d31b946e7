"""Optimizer: the base of fastnn's optimizers, with PyTorch's interface.

`param_groups` is a list of dicts, each holding "params" (a list of Tensors) and that group's
hyper-parameters ("lr", ...); `state` maps each parameter to a dict of its buffers (float32
arrays on the parameter's device, PyTorch's names) and counters. A subclass implements
`_update_group(group)`: it gathers the group's parameters that have a gradient (those whose
.grad is None are skipped, as in PyTorch) with their state buffers and hands the lists to one
fused `_C.*_step` call, which updates every tensor of the group in place in one threaded pass
(on a GPU, `_C.cuda.*_step`: one launch per 64 parameters). Subclasses whose update runs on
GPU parameters set `cuda = True`.
"""
from __future__ import annotations

import numbers
from collections import defaultdict

import numpy as np

from fastnn import _device
from fastnn._tensor import Tensor


class _RequiredParameter:
    """Default of a hyper-parameter that every group must give (none of ours uses it yet)."""

    def __repr__(self) -> str:
        return "<required parameter>"


required = _RequiredParameter()


def grad_array(p: Tensor):
    """The numpy array of p.grad (a Tensor or an array), or None when p has no gradient."""
    g = p.grad
    if g is None:
        return None
    return g.data if isinstance(g, Tensor) else g


def new_buffer(p: Tensor, fill: float = 0.0):
    """A C-contiguous float32 state buffer of p's shape, filled with `fill`, on p's device."""
    if p.is_cuda:
        return _device.full(p.shape, fill, p.data.device)
    return np.full(p.data.shape, fill, dtype=np.float32)


class Optimizer:
    cuda = False  # whether _update_group also updates parameters held on a GPU
    # Set by fastnn.cuda.graphed_step: updates must be capturable into a CUDA graph (no host
    # value that changes from step to step, such as Adam's step count, may reach a kernel).
    _capturable = False
    """Base class: `Optimizer(params, defaults)`.

    params: an iterable of Tensors, of (name, Tensor) pairs, or of dicts that define parameter
    groups (each with "params" and any hyper-parameters that differ from `defaults`).
    """

    def __init__(self, params, defaults: dict):
        self.defaults = dict(defaults)
        self.state = defaultdict(dict)
        self.param_groups = []
        if isinstance(params, Tensor):
            raise TypeError("params argument given to the optimizer should be an iterable of Tensors or dicts, "
                            f"but got {type(params).__name__}")
        if isinstance(params, (set, dict)):
            raise TypeError("optimizer parameters need to be organized in ordered collections, but the ordering "
                            f"of a {type(params).__name__} can change between runs: pass a list instead")
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    # -- parameter groups -----------------------------------------------------------------------
    def add_param_group(self, param_group: dict) -> None:
        """Add a group of parameters with its own hyper-parameters (the defaults fill the rest)."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, got {type(param_group).__name__}")
        if "params" not in param_group:
            raise ValueError("param_group must have a 'params' key holding its parameters")
        params = param_group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, (set, dict)):
            raise TypeError("optimizer parameters need to be organized in ordered collections, but the ordering "
                            f"of a {type(params).__name__} can change between runs: pass a list instead")
        else:
            params = list(params)
        names = None
        if params and all(isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) for p in params):
            names = [name for name, _ in params]  # from named_parameters()
            params = [p for _, p in params]
        for i, p in enumerate(params):
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, but params[{i}] is {type(p).__name__}")
            if not p.is_leaf:
                raise ValueError(f"can't optimize a non-leaf Tensor (params[{i}]); optimize the leaves it is "
                                 "computed from, or pass a detached copy")
        if len({id(p) for p in params}) != len(params):
            raise ValueError("optimizer: a parameter group contains the same parameter more than once; "
                             "list each parameter once")

        group = dict(param_group)
        group["params"] = params
        if names is not None:
            group["param_names"] = names
        for name, default in self.defaults.items():
            if default is required and name not in group:
                raise ValueError(f"parameter group didn't specify a value of required optimization parameter {name}")
            group.setdefault(name, default)

        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in params):
            raise ValueError("some parameters appear in more than one parameter group")
        self.param_groups.append(group)

    # -- gradients and steps --------------------------------------------------------------------
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop every parameter's gradient (set_to_none=True), or fill it with zeros in place."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                elif _device.is_device_array(grad_array(p)):
                    _device.backend.fill(grad_array(p), 0.0)
                else:
                    grad_array(p)[...] = 0.0

    def step(self, closure=None):
        """Update every parameter that has a gradient: one fused kernel call per parameter group.

        closure: an optional function that recomputes the loss (running backward) and returns it;
        it is called first, and its loss is returned.
        """
        loss = None
        if closure is not None:
            loss = closure()
        for group in self.param_groups:
            if _device.cuda_used:
                if not type(self).cuda and any(p.is_cuda for p in group["params"]):
                    raise NotImplementedError(f"{type(self).__name__} has no CUDA kernel (its class does not set "
                                              f"cuda = True); the built-in SGD, Adagrad, RMSprop, Adam and AdamW "
                                              f"have one, or move the parameters to the CPU")
                self._follow_parameter_devices(group)
            self._update_group(group)
        return loss

    def _follow_parameter_devices(self, group: dict) -> None:
        """Move state buffers to their parameter's device where they differ: a model moved by .to()
        after its optimizer was built (Adagrad makes its accumulators at once; any optimizer after
        a step) takes its state along, as load_state_dict would place it."""
        for i, p in enumerate(group["params"]):
            state = self.state.get(p)
            if not state:
                continue
            for name, value in state.items():
                on_device = _device.is_device_array(value)
                if (on_device or isinstance(value, np.ndarray)) and on_device != p.is_cuda:
                    state[name] = self._load_value(i, name, value, p)

    def _update_group(self, group: dict) -> None:
        raise NotImplementedError(f"{type(self).__name__} does not implement _update_group")

    def _with_grads(self, group: dict):
        """(param, grad array, state dict) of the group's parameters that have a gradient."""
        out = []
        for p in group["params"]:
            g = grad_array(p)
            if g is not None:
                out.append((p, g, self.state[p]))
        return out

    # -- state dicts ----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """{"state": {index: buffers}, "param_groups": [hyper-parameters with "params": [indices]]}.

        Parameters are numbered in the order of the groups, as PyTorch does; the buffers are the
        optimizer's own arrays (not copies).
        """
        index = {}
        groups = []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            packed["params"] = []
            for p in group["params"]:
                index.setdefault(id(p), len(index))
                packed["params"].append(index[id(p)])
            groups.append(packed)
        state = {index[id(p)]: dict(s) for p, s in self.state.items() if id(p) in index and s}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Load what state_dict() returned (copying the buffers), for parameters in the same order."""
        if not isinstance(state_dict, dict) or "state" not in state_dict or "param_groups" not in state_dict:
            raise ValueError("load_state_dict: expected a dict with keys 'state' and 'param_groups', as "
                             "Optimizer.state_dict() returns")
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"loaded state dict has a different number of parameter groups: "
                             f"{len(saved_groups)}, expected {len(self.param_groups)}")
        for i, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(f"loaded state dict contains a parameter group that doesn't match the size of "
                                 f"optimizer's group: group {i} has {len(saved['params'])} parameters, "
                                 f"expected {len(group['params'])}")
        by_index = {}
        for saved, group in zip(saved_groups, self.param_groups):
            for old, p in zip(saved["params"], group["params"]):
                by_index[int(old)] = p

        state = defaultdict(dict)
        for key, buffers in state_dict["state"].items():
            p = by_index.get(int(key))
            if p is None:
                continue
            state[p] = {name: self._load_value(int(key), name, value, p) for name, value in buffers.items()}

        new_groups = []
        for saved, group in zip(saved_groups, self.param_groups):
            new_group = {k: v for k, v in saved.items() if k != "params"}
            new_group["params"] = group["params"]
            new_groups.append(new_group)
        self.state = state
        self.param_groups = new_groups

    @staticmethod
    def _load_value(index: int, name: str, value, p: Tensor):
        """A copy of a saved state value: a number, or a float32 buffer on p's device."""
        if value is None:  # e.g. PyTorch's momentum_buffer before its first use
            return None
        if isinstance(value, Tensor):
            value = value.data
        if _device.is_device_array(value):
            value = value.numpy()
        # a step count: a number, or an array of one (a captured Adam keeps it on the device)
        if isinstance(value, np.ndarray) and (value.ndim == 0 or (name == "step" and value.size == 1)):
            value = value.reshape(-1)[0].item()
        if isinstance(value, numbers.Number):
            return int(value) if float(value).is_integer() and name == "step" else value
        array = np.array(value, dtype=np.float32, order="C", copy=True)
        if array.shape != p.data.shape:
            raise ValueError(f"load_state_dict: state '{name}' of parameter {index} has shape {array.shape}, "
                             f"expected {p.data.shape} (the parameter's shape)")
        return _device.to_device("load_state_dict", array, p.data.device if p.is_cuda else None)

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for key in sorted(group):
                if key not in ("params", "param_names"):
                    lines.append(f"    {key}: {group[key]}")
        lines.append(")")
        return "\n".join(lines)


def by_step(steps: list):
    """(step, indices of the parameters at that step) for each distinct step count, in increasing
    order: the device kernels take one step count per launch (normally all are at the same one)."""
    for step in sorted(set(steps)):
        yield step, [i for i, s in enumerate(steps) if s == step]


def check_hyper(name: str, value, low: float = 0.0, high: float = None, high_open: bool = False,
                message: str = None) -> None:
    """Raise ValueError (PyTorch's wording) unless low <= value (< or <=) high."""
    ok = value >= low and (high is None or (value < high if high_open else value <= high))
    if not ok:
        raise ValueError(message or f"Invalid {name}: {value}")
