"""Devices: names, moving arrays between host and GPU, and the checks ops make about devices.

A CPU tensor's storage is a numpy array; a CUDA tensor's is a `_C.cuda.Array` (device memory
owned by the compiled module). `backend` is the module that makes and runs device arrays:
`_C.cuda` (tests swap in a host-memory stand-in to exercise this layer on machines without a
GPU). `cuda_used` stays False until the first device array is made, so a CPU-only process pays
nothing for the device checks in `Function.apply`; it turns True in `require`, the gate every
device array passes first.
"""
from __future__ import annotations

import math
import operator

import numpy as np

from fastnn import _C

backend = _C.cuda
cuda_used = False


def is_device_array(x) -> bool:
    if type(x) is np.ndarray:  # the common case, answered without a look at the backend
        return False
    array_type = getattr(backend, "Array", None)
    return array_type is not None and isinstance(x, array_type)


def name_of(array) -> str:
    """'cpu' or 'cuda:N' for a tensor's storage."""
    return f"cuda:{array.device}" if is_device_array(array) else "cpu"


def parse(fn: str, device):
    """None for the CPU, the device index for CUDA ('cuda', 'cuda:N', torch.device objects too)."""
    if isinstance(device, (int, np.integer)) and not isinstance(device, bool):
        index = operator.index(device)
        if index < 0:
            raise ValueError(f"{fn}: device index must be >= 0, got device={index}")
        return index
    name = str(device).strip().lower()
    if name in ("cpu", "cpu:0"):
        return None
    if name == "cuda":
        return 0
    if name.startswith("cuda:") and name[5:].isdigit():
        return int(name[5:])
    raise ValueError(f"{fn}: unknown device {device!r}; expected 'cpu', 'cuda' or 'cuda:N'")


def require(fn: str, index: int) -> None:
    """Raise RuntimeError unless CUDA device `index` can be used."""
    global cuda_used
    count = backend.device_count()
    if count == 0:
        raise RuntimeError(f"{fn}: CUDA is not available ({backend.unavailable_reason()}); "
                           f"use device='cpu', or check fastnn.cuda.is_available() first")
    if index >= count:
        raise RuntimeError(f"{fn}: there is no device cuda:{index}; this machine has {count} CUDA "
                           f"device{'s' if count != 1 else ''} (cuda:0 to cuda:{count - 1})")
    cuda_used = True


def to_device(fn: str, array, index):
    """The array on device `index` (None: the host); the same array when it is there already."""
    if index is None:
        return array.numpy() if is_device_array(array) else array
    if is_device_array(array) and array.device == index:
        return array
    require(fn, index)
    # (asarray, not ascontiguousarray, which makes a 0-d array 1-d)
    host = array.numpy() if is_device_array(array) else np.asarray(array, dtype=np.float32, order="C")
    return backend.from_numpy(host, index)


def labels_to_device(fn: str, labels: np.ndarray, index: int):
    """Integer class labels (checked on the host by the caller) as an int64 device array."""
    require(fn, index)
    return backend.from_numpy(np.ascontiguousarray(labels, dtype=np.int64), index)


def full(shape: tuple, value: float, index: int):
    """A new float32 device array of `shape` filled with `value` (where device arrays exist already)."""
    array = backend.empty(list(shape), "float32", index)
    backend.fill(array, float(value))
    return array


def kernels(array):
    """The module whose entry points take `array`: _C.cuda's for a device array, _C's otherwise (for
    the ops whose CPU and CUDA entry points share names and arguments)."""
    return backend if is_device_array(array) else _C


def contiguous(array):
    """A C-contiguous array for the kernels (device arrays always are), None as it is."""
    if array is None or is_device_array(array):
        return array
    return np.ascontiguousarray(array, dtype=np.float32)


def transpose(x, axes):
    """x with its axes reordered (out axis i is x's axes[i]): a numpy view, or a device copy."""
    if is_device_array(x):
        return backend.permute(x, [int(d) for d in axes])
    return np.transpose(x, axes)


# _C.cuda.binary's op codes (csrc/cuda/kernels.h, enum Binary); the last two are the factors of
# pow's gradients (ops/elementwise.py Pow).
ADD, SUB, MUL, DIV, POW, POW_GRAD_BASE, POW_GRAD_EXPONENT = range(7)


def add(a, b):
    """a + b for two gradients of one shape on one device (numpy arrays or device arrays)."""
    if is_device_array(a):
        return backend.binary(ADD, a, b)
    return a + b


def check_op(function: type, args: tuple) -> None:
    """Raise when an op's tensors sit on different devices, or it has no CUDA kernel yet."""
    from fastnn._tensor import Tensor
    devices = {x.device for x in args if isinstance(x, Tensor)}
    if len(devices) > 1:
        first, second = sorted(devices)[:2]
        raise RuntimeError(f"{function.__name__}: expected all tensors to be on the same device, but found at "
                           f"least two devices, {first} and {second}; move them with .to(device)")
    if devices and next(iter(devices)) != "cpu" and not getattr(function, "cuda", False):
        raise NotImplementedError(f"{function.__name__} has no CUDA kernel yet; run it on the CPU "
                                  f"(tensor.cpu()) or see fastnn.cuda's docstring for the ops CUDA has")


# -- helpers for the ops' CUDA branches ----------------------------------------------------------

def scaled(x, alpha: float):
    """alpha * x as a new device array."""
    out = backend.empty(list(x.shape), "float32", x.device)
    backend.axpby(out, float(alpha), x, 0.0)
    return out


def reduction_view(x, axes: tuple):
    """x as (outer, R, inner) with the `axes` in R, for the reduction kernels, and the function that
    takes an array of that shape back to x's shape. Size-1 axes are left out; when the other reduced
    axes are not adjacent, the view is a permuted copy (kept axes first, reduced last), so that R
    holds the whole reduced set (which max's ties need)."""
    sizes = [n for n in x.shape if n != 1]
    reduced = [d in axes for d, n in enumerate(x.shape) if n != 1]
    inside = [i for i, r in enumerate(reduced) if r]
    first, last = (inside[0], inside[-1] + 1) if inside else (len(sizes), len(sizes))
    if all(reduced[first:last]):  # one run of reduced axes: a view
        view = x.reshape([math.prod(sizes[:first]), math.prod(sizes[first:last]), math.prod(sizes[last:])])
        return view, lambda y: y.reshape(list(x.shape))
    order = [i for i, r in enumerate(reduced) if not r] + inside
    kept = math.prod(sizes[i] for i in order[:-len(inside)])
    view = backend.permute(x.reshape(sizes), order).reshape([kept, math.prod(sizes[i] for i in inside), 1])
    undo = sorted(range(len(order)), key=order.__getitem__)
    return view, lambda y: backend.permute(y.reshape([sizes[i] for i in order]), undo).reshape(list(x.shape))


def sum_axes(x, axes: tuple, scale: float = 1.0):
    """scale * the sum of device array x over `axes`, in the kernels' layout (the caller reshapes).
    A sum with one output takes the multi-block sum_all."""
    view, _ = reduction_view(x, axes)
    if view.shape[0] * view.shape[2] == 1:
        return backend.sum_all(view, scale)
    return backend.reduce_sum(view, scale)


def reduce_to(grad, shape: tuple):
    """A device gradient summed over the axes broadcasting prepended or stretched from 1, giving `shape`."""
    shape = tuple(shape)
    if tuple(grad.shape) == shape:
        return grad
    prepended = grad.ndim - len(shape)
    stretched = [prepended + i for i, n in enumerate(shape) if n == 1 and grad.shape[prepended + i] != 1]
    return sum_axes(grad, tuple(range(prepended)) + tuple(stretched)).reshape(list(shape))

