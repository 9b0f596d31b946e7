"""Module, Parameter and Sequential: the containers layers are built from.

A Module keeps its parameters, buffers and sub-modules in three ordered dicts filled by
`__setattr__` (assigning a Parameter registers it, assigning a Module registers it as a child),
and reads them back through `__getattr__`, as PyTorch does. Names in `state_dict()` are the
dotted attribute paths (`0.weight`, `encoder.fc1.bias`), so a PyTorch state dict of the same
architecture loads, and the values are numpy copies.

`Sequential.forward` runs a `Linear` directly followed by a `ReLU` as one GEMM with the bias and
the ReLU fused in its epilogue (`F.linear_relu`), and a `Conv2d` followed by a `ReLU` as one
convolution with the ReLU in its epilogue (`F.conv2d_relu`); the modules stay visible as they are.
"""
from __future__ import annotations

import collections
import itertools
import operator
from collections import OrderedDict

import numpy as np

from fastnn import _device
from fastnn._tensor import Tensor
from fastnn.model import TrainingMixin


class Parameter(Tensor):
    """A Tensor that a Module registers as a learnable weight: requires_grad=True by default.

    Parameter(tensor) shares the tensor's memory; Parameter(array) shares a float32 array's memory
    (other dtypes are converted, which copies). Ops on a Parameter return plain Tensors.
    """

    def __init__(self, data=None, requires_grad: bool = True):
        if data is None:
            data = np.empty((0,), dtype=np.float32)
        if isinstance(data, Tensor):
            data = data.data
        array = np.asarray(data)
        if array.dtype.kind not in "biuf":
            raise TypeError(f"Parameter: data must be real numbers, got dtype {array.dtype}")
        super().__init__(array, requires_grad=requires_grad)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


class LoadStateDictError(ValueError, RuntimeError):
    """load_state_dict found missing, unexpected or mis-shaped entries (a ValueError, and a
    RuntimeError like PyTorch's)."""


IncompatibleKeys = collections.namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


def _state_array(key: str, value) -> np.ndarray:
    """A state dict value (numpy array, fastnn Tensor, torch tensor, nested list) as an ndarray."""
    if isinstance(value, Tensor):
        return value._host()
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor, without importing torch
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as error:
        raise TypeError(f"load_state_dict: the value of {key!r} is not an array ({type(value).__name__}): "
                        f"{error}") from None
    if array.dtype.kind not in "biuf":
        raise TypeError(f"load_state_dict: the value of {key!r} must hold numbers, got dtype {array.dtype}")
    return array


def _shape_text(shape: tuple) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def _indent(text: str, spaces: int) -> str:
    lines = text.split("\n")
    return lines[0] + "".join("\n" + " " * spaces + line for line in lines[1:])


class Module(TrainingMixin):
    """Base class of layers and models. Subclasses call `super().__init__()` first, assign their
    Parameters and sub-Modules as attributes, and define `forward`."""

    training: bool

    def __init__(self):
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent_buffers", set())
        object.__setattr__(self, "_modules", OrderedDict())

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # -- registration -----------------------------------------------------------------------
    def _check_initialized(self, name: str) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"cannot assign {name!r} before Module.__init__() call: call "
                                 f"super().__init__() first in {type(self).__name__}.__init__")

    def _drop_name(self, name: str) -> None:
        for registry in (self.__dict__, self._parameters, self._buffers, self._modules):
            registry.pop(name, None)
        self._non_persistent_buffers.discard(name)

    def __setattr__(self, name: str, value) -> None:
        if isinstance(value, Parameter):
            self._check_initialized(name)
            self._drop_name(name)
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._check_initialized(name)
            self._drop_name(name)
            self._modules[name] = value
        elif "_parameters" in self.__dict__ and name in self._parameters:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} as parameter {name!r} of "
                                f"{type(self).__name__} (fastnn.nn.Parameter or None expected); "
                                f"wrap it: nn.Parameter(value)")
            self._parameters[name] = None
        elif "_modules" in self.__dict__ and name in self._modules:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} as child module {name!r} of "
                                f"{type(self).__name__} (fastnn.nn.Module or None expected)")
            self._modules[name] = None
        elif "_buffers" in self.__dict__ and name in self._buffers:
            if value is not None and not isinstance(value, (Tensor, np.ndarray)):
                raise TypeError(f"cannot assign {type(value).__name__} as buffer {name!r} of "
                                f"{type(self).__name__} (Tensor, numpy array or None expected)")
            self._buffers[name] = value
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name: str):
        # Only called when normal lookup fails: the registered names live in the three dicts.
        state = self.__dict__
        for registry in ("_parameters", "_buffers", "_modules"):
            if registry in state and name in state[registry]:
                return state[registry][name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __delattr__(self, name: str) -> None:
        for registry in (self._parameters, self._buffers, self._modules):
            if name in registry:
                del registry[name]
                self._non_persistent_buffers.discard(name)
                return
        object.__delattr__(self, name)

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(self._parameters) | set(self._buffers) | set(self._modules))

    def register_parameter(self, name: str, param) -> None:
        """Register `param` (a Parameter, or None for an absent one such as bias=False) as `name`."""
        self._check_name("register_parameter", name)
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"register_parameter: {name!r} must be a fastnn.nn.Parameter or None, "
                            f"got {type(param).__name__}")
        self._drop_name(name)
        self._parameters[name] = param

    def register_buffer(self, name: str, tensor, persistent: bool = True) -> None:
        """Register state that is not learnt (running statistics): a Tensor, a numpy array or None.
        Persistent buffers are part of state_dict()."""
        self._check_name("register_buffer", name)
        if tensor is not None and not isinstance(tensor, (Tensor, np.ndarray)):
            raise TypeError(f"register_buffer: {name!r} must be a Tensor, a numpy array or None, "
                            f"got {type(tensor).__name__}")
        self._drop_name(name)
        self._buffers[name] = tensor
        if not persistent:
            self._non_persistent_buffers.add(name)

    def add_module(self, name: str, module) -> None:
        """Register `module` (or None) as the child `name`."""
        self._check_name("add_module", name)
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"add_module: {name!r} must be a fastnn.nn.Module or None, got {type(module).__name__}")
        self._drop_name(name)
        self._modules[name] = module

    register_module = add_module

    def _check_name(self, fn: str, name) -> None:
        self._check_initialized(name)
        if not isinstance(name, str):
            raise TypeError(f"{fn}: name must be a str, got {type(name).__name__}")
        if not name or "." in name:
            raise KeyError(f"{fn}: name must be a non-empty string without '.', got {name!r}")

    # -- traversal --------------------------------------------------------------------------
    def named_modules(self, memo=None, prefix: str = ""):
        """(dotted name, module) for this module and every descendant, each once, depth first."""
        memo = set() if memo is None else memo
        if id(self) in memo:
            return
        memo.add(id(self))
        yield prefix, self
        for name, child in self._modules.items():
            if child is not None:
                yield from child.named_modules(memo, f"{prefix}.{name}" if prefix else name)

    def modules(self):
        for _, module in self.named_modules():
            yield module

    def named_children(self):
        seen = set()
        for name, child in self._modules.items():
            if child is not None and id(child) not in seen:
                seen.add(id(child))
                yield name, child

    def children(self):
        for _, child in self.named_children():
            yield child

    def _named_members(self, registry: str, prefix: str, recurse: bool):
        seen = set()
        modules = self.named_modules(prefix=prefix) if recurse else [(prefix, self)]
        for module_prefix, module in modules:
            for name, value in getattr(module, registry).items():
                if value is None or id(value) in seen:
                    continue
                seen.add(id(value))  # a parameter shared by two layers is listed once
                yield (f"{module_prefix}.{name}" if module_prefix else name), value

    def named_parameters(self, prefix: str = "", recurse: bool = True):
        """(dotted name, Parameter) pairs, each parameter once even when shared."""
        return self._named_members("_parameters", prefix, recurse)

    def parameters(self, recurse: bool = True):
        for _, param in self.named_parameters(recurse=recurse):
            yield param

    def named_buffers(self, prefix: str = "", recurse: bool = True):
        return self._named_members("_buffers", prefix, recurse)

    def buffers(self, recurse: bool = True):
        for _, buffer in self.named_buffers(recurse=recurse):
            yield buffer

    def apply(self, fn):
        """Call fn(module) on every child (recursively), then on self; returns self."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    # -- modes and gradients ------------------------------------------------------------------
    def train(self, mode: bool = True):
        """Training mode (Dropout active, BatchNorm updating its statistics) for self and all
        descendants; returns self."""
        if not isinstance(mode, bool):
            raise TypeError(f"train: mode must be a bool, got {type(mode).__name__}")
        for module in self.modules():
            object.__setattr__(module, "training", mode)
        return self

    def eval(self):
        """Evaluation mode: train(False)."""
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True):
        for param in self.parameters():
            param.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear the parameters' gradients (to None, or to zeros with set_to_none=False)."""
        for param in self.parameters():
            if param.grad is None:
                continue
            if set_to_none:
                param.grad = None
            elif param.is_cuda:
                param.grad = Tensor(_device.full(param.shape, 0.0, param.data.device))
            else:
                param.grad = Tensor(np.zeros_like(param.data))

    def to(self, device):
        """Move every parameter, its gradient and every Tensor buffer to `device` ('cpu', 'cuda',
        'cuda:N') in place, keeping the Parameter objects (an optimizer made before still holds
        them); returns self."""
        index = _device.parse("Module.to", device)
        if index is not None:
            _device.require("Module.to", index)
        for module in self.modules():
            for param in module._parameters.values():
                if param is None:
                    continue
                param.data = _device.to_device("Module.to", param.data, index)
                if param.grad is not None:
                    param.grad = Tensor(_device.to_device("Module.to", param.grad.data, index))
            for buffer in module._buffers.values():
                if isinstance(buffer, Tensor):
                    buffer.data = _device.to_device("Module.to", buffer.data, index)
        return self

    def cpu(self):
        return self.to("cpu")

    def cuda(self, device=None):
        return self.to("cuda" if device is None else f"cuda:{_device.parse('Module.cuda', device) or 0}")

    # -- state dict ---------------------------------------------------------------------------
    def _own_state(self, prefix: str):
        for name, param in self._parameters.items():
            if param is not None:
                yield prefix + name, param
        for name, buffer in self._buffers.items():
            if buffer is not None and name not in self._non_persistent_buffers:
                yield prefix + name, buffer

    def _state_items(self, prefix: str = ""):
        """(key, Parameter/buffer) in PyTorch's order: own parameters, own buffers, then children."""
        for module_prefix, module in self.named_modules():
            for key, value in module._own_state(f"{prefix}{module_prefix}." if module_prefix else prefix):
                yield key, value

    def state_dict(self, prefix: str = "") -> "OrderedDict[str, np.ndarray]":
        """Every parameter and persistent buffer, keyed by its dotted name, as a numpy copy (of
        device memory too: a state dict is portable)."""
        state = OrderedDict()
        for key, value in self._state_items(prefix):
            state[key] = np.array(value._host() if isinstance(value, Tensor) else value, copy=True)
        return state

    def load_state_dict(self, state_dict, strict: bool = True) -> IncompatibleKeys:
        """Copy the values of `state_dict` (numpy arrays, fastnn or torch tensors) into the
        parameters and buffers, in place (optimizers keep working on the same arrays).

        Shapes must match exactly. With strict (the default), the keys must also match exactly.
        Everything is checked before anything is copied, so a failed load changes nothing.
        Returns (missing_keys, unexpected_keys).
        """
        if not hasattr(state_dict, "keys") or not hasattr(state_dict, "__getitem__"):
            raise TypeError(f"load_state_dict: expected a mapping of names to arrays, got "
                            f"{type(state_dict).__name__}")
        own = OrderedDict(self._state_items())
        missing = [key for key in own if key not in state_dict]
        unexpected = [key for key in state_dict.keys() if key not in own]
        errors, updates = [], []
        for key, target in own.items():
            if key not in state_dict:
                continue
            value = _state_array(key, state_dict[key])
            expected = target.shape
            if value.shape != expected:
                errors.append(f"size mismatch for {key!r}: expected shape {_shape_text(expected)} (the "
                              f"{type(self).__name__}'s), got {_shape_text(value.shape)} from the state dict")
                continue
            updates.append((target, value))
        if strict:
            key_errors = []
            if missing:
                key_errors.append("missing key(s): " + ", ".join(map(repr, missing)))
            if unexpected:
                key_errors.append("unexpected key(s): " + ", ".join(map(repr, unexpected)))
            errors = key_errors + errors
        if errors:
            raise LoadStateDictError(f"load_state_dict: error(s) loading the state dict into "
                                     f"{type(self).__name__}:\n  " + "\n  ".join(errors))
        for target, value in updates:
            array = target.data if isinstance(target, Tensor) else target
            if _device.is_device_array(array):  # into the device memory in place
                with np.errstate(over="ignore"):
                    _device.backend.copy_(array, np.asarray(value, dtype=np.float32))
                continue
            with np.errstate(over="ignore"):
                array[...] = value
        return IncompatibleKeys(missing, unexpected)

    # -- description --------------------------------------------------------------------------
    def extra_repr(self) -> str:
        """The text between the parentheses of this module's repr (its settings)."""
        return ""

    def __repr__(self) -> str:
        lines = []
        extra = self.extra_repr()
        if extra:
            lines.extend(extra.split("\n"))
        for name, child in self._modules.items():
            lines.append(f"({name}): " + _indent(repr(child), 2))
        if not self._modules:
            return f"{type(self).__name__}({extra})"
        return f"{type(self).__name__}(\n  " + "\n  ".join(lines) + "\n)"

    def get_config(self) -> dict:
        """The constructor arguments as a JSON-able dict: type(self)(**get_config()) rebuilds the
        module (with fresh weights)."""
        raise NotImplementedError(f"{type(self).__name__} does not define get_config(); define it to "
                                  f"save the architecture as JSON")

    @classmethod
    def from_config(cls, config: dict):
        """The module get_config() describes (freshly initialised)."""
        return cls(**config)


class Sequential(Module):
    """Modules applied in order: Sequential(m0, m1, ...) or Sequential(OrderedDict(name=module)).

    A Linear directly followed by a ReLU runs as one GEMM with the bias and the ReLU fused in its
    epilogue; the result and the gradients are those of the two modules run one after the other.
    """

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            for name, module in modules[0].items():
                self.add_module(name, module)
        else:
            for index, module in enumerate(modules):
                self._check_module("Sequential", index, module)
                self.add_module(str(index), module)

    @staticmethod
    def _check_module(fn: str, index, module) -> None:
        if not isinstance(module, Module):
            raise TypeError(f"{fn}: item {index} must be a fastnn.nn.Module, got {type(module).__name__}"
                            + ("; instantiate the class: nn.ReLU()" if isinstance(module, type) else ""))

    def _index(self, idx) -> int:
        n = len(self._modules)
        try:
            idx = operator.index(idx)
        except TypeError:
            raise TypeError(f"Sequential indices must be integers or slices, got {type(idx).__name__}") from None
        if not -n <= idx < n:
            raise IndexError(f"Sequential index {idx} is out of range for {n} modules")
        return idx % n

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            return Sequential(OrderedDict(list(self._modules.items())[idx]))
        return next(itertools.islice(self._modules.values(), self._index(idx), None))

    def __setitem__(self, idx, module) -> None:
        self._check_module("Sequential.__setitem__", idx, module)
        key = list(self._modules)[self._index(idx)]
        self._modules[key] = module

    def __delitem__(self, idx) -> None:
        keys = list(self._modules)
        doomed = keys[idx] if isinstance(idx, slice) else [keys[self._index(idx)]]
        for key in doomed:
            del self._modules[key]
        if all(k.isdigit() for k in self._modules):  # keep 0..n-1 names, as PyTorch does
            items = list(self._modules.values())
            self._modules.clear()
            for i, module in enumerate(items):
                self._modules[str(i)] = module

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def append(self, module):
        self._check_module("Sequential.append", len(self), module)
        self.add_module(str(len(self)), module)
        return self

    def extend(self, modules):
        for module in modules:
            self.append(module)
        return self

    def insert(self, index: int, module):
        self._check_module("Sequential.insert", index, module)
        n = len(self)
        if not -n <= index <= n:
            raise IndexError(f"Sequential.insert: index {index} is out of range for {n} modules")
        items = list(self._modules.values())
        items.insert(index % (n + 1) if index < 0 else index, module)
        self._modules.clear()
        for i, m in enumerate(items):
            self._modules[str(i)] = m
        return self

    def forward(self, x):
        modules = list(self._modules.values())
        i = 0
        while i < len(modules):
            module = modules[i]
            following = modules[i + 1] if i + 1 < len(modules) else None
            if type(following) is _layers.ReLU and type(module) is _layers.Linear:  # exact types: subclasses may differ
                x = _F.linear_relu(x, module.weight, module.bias)
                i += 2
            elif type(following) is _layers.ReLU and type(module) is _conv.Conv2d:
                x = _F.conv2d_relu(x, module.weight, module.bias, module.stride, module.padding, module.dilation,
                                   module.groups)
                i += 2
            else:
                x = module(x)
                i += 1
        return x

    def get_config(self) -> dict:
        """{"layers": [{"class_name": "Linear", "config": {...}}, ...]} (Keras's shape), JSON-able;
        every layer must define get_config()."""
        layers = []
        for name, module in self._modules.items():
            entry = {"class_name": type(module).__name__, "config": module.get_config()}
            if not name.isdigit():
                entry["name"] = name
            layers.append(entry)
        return {"layers": layers}

    @classmethod
    def from_config(cls, config: dict, custom_objects: dict = None):
        """The Sequential get_config() describes; layer classes are looked up in fastnn.nn, then in
        custom_objects ({"MyLayer": MyLayer})."""
        from fastnn import nn  # the package namespace: every public layer class

        classes = dict(custom_objects or {})
        named = OrderedDict()
        for k, entry in enumerate(config.get("layers", ())):
            name = entry.get("class_name")
            layer_class = classes.get(name) or getattr(nn, name, None)
            if not (isinstance(layer_class, type) and issubclass(layer_class, Module)):
                raise ValueError(f"Sequential.from_config: layer {k} has unknown class_name {name!r}; "
                                 f"pass custom_objects={{{name!r}: TheClass}} for your own layers")
            named[entry.get("name", str(k))] = layer_class.from_config(entry.get("config", {}))
        return cls(named)


# The layers import Module from here; Sequential's fusion needs them, looked up at call time.
from fastnn.nn import functional as _F  # noqa: E402
from fastnn.nn import conv as _conv  # noqa: E402
from fastnn.nn import layers as _layers  # noqa: E402
