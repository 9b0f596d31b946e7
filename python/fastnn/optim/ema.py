"""EMA: an exponential moving average of parameters, for evaluation with smoothed weights.

    ema = fastnn.optim.EMA(model, decay=0.999)
    for batch in data:
        ...; optimizer.step(); ema.update()
    with ema.average_parameters():     # the averaged weights are in the model here
        evaluate(model)                # and the trained ones are back afterwards

update() runs one fused `_C.ema_update` over every parameter:
shadow = d * shadow + (1 - d) * param, with d = decay, or with warmup=True (TensorFlow's
ExponentialMovingAverage with num_updates) d = min(decay, (1 + n) / (10 + n)), n being the
number of updates made before this one (so the first update uses 0.1 and the average follows
the fast-moving early weights closely). The shadows start as copies of the parameters, on their
device: for parameters on a GPU, update, copy_to and average_parameters run `_C.cuda`'s
entry points of the same names (one launch per 64 parameters). state_dict() holds host copies
either way (portable, as Module.state_dict).
"""
from __future__ import annotations

import contextlib

import numpy as np

from fastnn import _device
from fastnn._tensor import Tensor


class EMA:
    def __init__(self, model_or_params, decay: float = 0.999, warmup: bool = True):
        if hasattr(model_or_params, "parameters") and callable(model_or_params.parameters):
            params = model_or_params.parameters()
        else:
            params = model_or_params
        if isinstance(params, Tensor):
            params = [params]
        params = list(params)
        if not params:
            raise ValueError("EMA got an empty parameter list")
        for i, p in enumerate(params):
            if not isinstance(p, Tensor):
                raise TypeError(f"EMA averages Tensors, but params[{i}] is {type(p).__name__}")
        if len({id(p) for p in params}) != len(params):
            raise ValueError("EMA: the same parameter is listed more than once; list each parameter once")
        decay = float(decay)
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"EMA: decay must be in [0, 1], got decay={decay}")
        self.params = params
        self.decay = decay
        self.warmup = bool(warmup)
        self.num_updates = 0
        self.shadow = [_copy(p.data) for p in params]

    def _kernels(self):
        """_C, or _C.cuda for shadows on a GPU."""
        return _device.kernels(self.shadow[0])

    def current_decay(self) -> float:
        """The decay the next update() will use."""
        if self.warmup:
            n = self.num_updates
            return min(self.decay, (1.0 + n) / (10.0 + n))
        return self.decay

    def update(self) -> None:
        """shadow = d * shadow + (1 - d) * param for every parameter, in one fused pass."""
        self._kernels().ema_update(self.shadow, [p.data for p in self.params], decay=self.current_decay())
        self.num_updates += 1

    def copy_to(self, params=None) -> None:
        """Write the averaged weights into `params` (default: the averaged parameters themselves)."""
        targets = self.params if params is None else list(params)
        if len(targets) != len(self.shadow):
            raise ValueError(f"EMA.copy_to: got {len(targets)} parameters, expected {len(self.shadow)}")
        self._kernels().copy_buffers([p.data for p in targets], self.shadow)

    @contextlib.contextmanager
    def average_parameters(self):
        """Within the block the parameters hold the averaged weights; their own values are
        restored on exit, also when the block raises."""
        kernels, params = self._kernels(), [p.data for p in self.params]
        backup = [_empty_like(a) for a in params]
        kernels.copy_buffers(backup, params)
        kernels.copy_buffers(params, self.shadow)
        try:
            yield self
        finally:
            kernels.copy_buffers(params, backup)

    def state_dict(self) -> dict:
        """{"decay", "warmup", "num_updates", "shadow": [arrays]} (the arrays are numpy copies, also
        of shadows on a GPU)."""
        return {"decay": self.decay, "warmup": self.warmup, "num_updates": self.num_updates,
                "shadow": [s.numpy() if _device.is_device_array(s) else s.copy() for s in self.shadow]}

    def load_state_dict(self, state_dict: dict) -> None:
        missing = {"decay", "warmup", "num_updates", "shadow"} - set(state_dict)
        if missing:
            raise ValueError(f"EMA.load_state_dict: missing keys {sorted(missing)}")
        shadow = list(state_dict["shadow"])
        if len(shadow) != len(self.shadow):
            raise ValueError(f"EMA.load_state_dict: got {len(shadow)} shadow arrays, expected {len(self.shadow)}")
        arrays = []
        for i, (saved, own) in enumerate(zip(shadow, self.shadow)):
            if isinstance(saved, Tensor):
                saved = saved.data
            a = _copy(saved.numpy() if _device.is_device_array(saved) else saved)
            if a.shape != tuple(own.shape):
                raise ValueError(f"EMA.load_state_dict: shadow[{i}] has shape {a.shape}, expected {tuple(own.shape)}")
            arrays.append(_device.to_device("EMA.load_state_dict", a, own.device) if _device.is_device_array(own)
                          else a)
        decay = float(state_dict["decay"])
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"EMA.load_state_dict: decay must be in [0, 1], got {decay}")
        self.shadow = arrays
        self.decay = decay
        self.warmup = bool(state_dict["warmup"])
        self.num_updates = int(state_dict["num_updates"])

    def __repr__(self) -> str:
        return (f"EMA(decay={self.decay}, warmup={self.warmup}, num_updates={self.num_updates}, "
                f"tensors={len(self.shadow)})")


def _copy(array):
    """A C-contiguous float32 copy of a numpy array, or a copy of a device array on its device."""
    if _device.is_device_array(array):
        return array.copy()
    return np.array(array, dtype=np.float32, order="C", copy=True)


def _empty_like(array):
    """A new float32 array of array's shape on its device (contents undefined)."""
    if _device.is_device_array(array):
        return _device.backend.empty(list(array.shape), "float32", array.device)
    return np.empty(array.shape, dtype=np.float32)
