"""fastnn on NVIDIA GPUs: is CUDA there, and the device-wide controls.

Built when the CUDA toolkit was present at install time (`fastnn.config()['cuda_built']`);
usable when, in addition, this process sees a GPU (`is_available()`). A tensor goes to the GPU
with `t.to("cuda")` or `t.cuda()`, a model with `model.to("cuda")`, and factories take
`device="cuda"`. Ops whose tensors sit on different devices raise RuntimeError; an op without a
CUDA kernel raises NotImplementedError naming itself. The ops with CUDA kernels so far: linear
(with its fused bias and ReLU), 2-D matmul, conv2d and conv1d (im2col + our SGEMM, any stride,
padding, dilation, groups), max_pool2d/1d, relu, reshape/flatten, add/sub/mul (same shape, a
bias row, or a scalar), sum and mean over all elements, cross_entropy (class indices, mean), and
the SGD and Adam/AdamW updates; device memory comes from a caching allocator.
"""
from __future__ import annotations

from fastnn import _device


def is_built() -> bool:
    """Whether this fastnn was compiled with its CUDA kernels."""
    return bool(_device.backend.is_built())


def device_count() -> int:
    """The CUDA devices this process can use (0 without a driver, a GPU, or a CUDA build)."""
    return int(_device.backend.device_count())


def is_available() -> bool:
    """Whether CUDA tensors can be made here: a CUDA build and at least one device."""
    return device_count() > 0


def unavailable_reason() -> str:
    """Why is_available() is False ('' when it is True)."""
    return "" if is_available() else str(_device.backend.unavailable_reason())


def synchronize(device=None) -> None:
    """Wait until fastnn's queued work on `device` (default cuda:0) has finished."""
    index = 0 if device is None else _device.parse("synchronize", device)
    _device.require("synchronize", index or 0)
    _device.backend.synchronize(index or 0)


def empty_cache() -> None:
    """Give the device memory cached by fastnn's allocator back to the driver."""
    if is_available():
        _device.backend.empty_cache()


def memory_allocated(device=None) -> int:
    """Bytes of device memory in live fastnn arrays on `device` (default cuda:0)."""
    if not is_available():
        return 0
    return int(_device.backend.memory_allocated(_device.parse("memory_allocated", device or 0) or 0))


def memory_reserved(device=None) -> int:
    """Bytes held by fastnn's allocator on `device`: live arrays plus the cache."""
    if not is_available():
        return 0
    return int(_device.backend.memory_reserved(_device.parse("memory_reserved", device or 0) or 0))
