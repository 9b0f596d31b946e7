"""fastnn on NVIDIA GPUs: is CUDA there, and the device-wide controls.

Built when the CUDA toolkit was present at install time (`fastnn.config()['cuda_built']`);
usable when, in addition, this process sees a GPU (`is_available()`). A tensor goes to the GPU
with `t.to("cuda")` or `t.cuda()`, a model with `model.to("cuda")`, and factories take
`device="cuda"`. Ops whose tensors sit on different devices raise RuntimeError; an op without a
CUDA kernel raises NotImplementedError naming itself. The ops with CUDA kernels so far: linear
(with its fused bias and ReLU), 2-D matmul, conv2d and conv1d (im2col + our SGEMM, any stride,
padding, dilation, groups) and their transposed forms, max_pool2d/1d, avg_pool2d/1d, adaptive average
pooling (any output size), batch norm, the recurrent
layers, embedding (not max_norm; deterministic gradients), dropout, transpose/permute, cat, basic
indexing (ints, slices of any step, None, ...), relu, leaky_relu, gelu (both forms), sigmoid, tanh,
exp, log, sqrt, neg, reshape/flatten, add/sub/mul/div/pow (numpy broadcasting), sum, mean and max (any axes,
keepdim), softmax and log_softmax (any dim), every loss with all its options (cross_entropy, nll_loss,
mse_loss, l1_loss, huber_loss, binary_cross_entropy with and without logits), every optimizer's update (SGD, Adagrad,
RMSprop, Adam/AdamW with AMSGrad) and EMA; device
memory comes from a caching allocator.
"""
from __future__ import annotations

import numpy as np

from fastnn import _device, _tensor
from fastnn._tensor import Tensor, tensor
from fastnn.ops import dropout as dropout_ops


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


def set_allow_tf32(allow: bool) -> bool:
    """Let matrix products on the GPU round their operands to TF32 and run on the tensor cores
    (like torch.backends.cuda.matmul.allow_tf32): several times faster, about 3 significant
    digits per product instead of 7. Off by default. Returns the previous setting."""
    previous = get_allow_tf32()
    if is_built():
        _device.backend.set_allow_tf32(bool(allow))
    return previous


def get_allow_tf32() -> bool:
    return bool(is_built() and _device.backend.allow_tf32())


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


# ---------------------------------------------------------------------------------------------
# A whole training step as one CUDA graph

class GraphedStep:
    """A training step (forward, loss, backward, optimizer update) captured once into a CUDA graph
    and replayed with one launch per call, for static shapes: a small model on a GPU spends most
    of an eager step launching kernels one Python call at a time.

        step = fastnn.cuda.graphed_step(model, nn.functional.cross_entropy, optimizer, x0, y0)
        for x, y in batches:            # numpy arrays or CUDA tensors of x0's and y0's shapes
            loss = step(x, y)           # a CUDA tensor, rewritten by every call; loss.item() waits

    Building it runs `warmup` eager steps on the example batch (so that every buffer exists
    before the capture), then puts the parameters and the optimizer's state back as they were:
    the graph's first replay is the first real step. What the graph freezes: the shapes, the
    learning rate and the other hyper-parameters (change them, and build a new step), and the
    arrays of the parameters and their state (do not replace them; in-place updates are fine).
    Class labels go to the device as float32 (whole numbers; a label outside [0, C) gives a NaN
    loss instead of an error, since checking it would stop the GPU). Adam keeps its step count
    on the device; Adagrad needs lr_decay=0 (its rate follows a host step count, which the graph
    would freeze: it raises NotImplementedError otherwise). SGD's first step with momentum and
    dampening > 0 differs from PyTorch's (the buffer starts at zero, not at the gradient). Dropout draws its masks on the device with a
    draw counter of its own there: replay k uses the masks eager step k would have drawn after
    the graph was built (eager steps taken later continue from the host's count, not the graph's).
    """

    def __init__(self, model, loss_fn, optimizer, example_input, example_target, warmup: int = 3):
        params = list(model.parameters())
        if not params or not all(p.is_cuda for p in params):
            raise ValueError("graphed_step: the model's parameters must all be on a CUDA device; call "
                             "model.to('cuda') first")
        index = params[0].data.device
        self._input = tensor(example_input, device=f"cuda:{index}")  # the static inputs, copies
        self._target = tensor(example_target, device=f"cuda:{index}")
        optimizer._capturable = True

        def step():
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(self._input), self._target)
            loss.backward()
            optimizer.step()
            return loss

        backend = _device.backend
        # The parameters and the optimizer's state before the warm-up (device arrays copied).
        copy = lambda v: v.copy() if _device.is_device_array(v) else v  # noqa: E731
        saved_params = [p.data.copy() for p in params]
        draws_before = _tensor.next_dropout_draw(advance=False)[1]
        saved_state = {id(p): {k: copy(v) for k, v in optimizer.state.get(p, {}).items()} for p in params}
        for _ in range(max(1, int(warmup))):
            step()
        for p, saved in zip(params, saved_params):  # undo the warm-up, in place
            backend.copy_(p.data, saved)
        for p in params:
            state, before = optimizer.state.get(p, {}), saved_state[id(p)]
            for key, value in list(state.items()):
                start = before.get(key, 0)  # what the warm-up made starts from zero (Adam's count too)
                if not _device.is_device_array(value):
                    state[key] = before.get(key, value)
                elif _device.is_device_array(start):
                    backend.copy_(value, start)
                else:
                    backend.fill(value, float(start) if isinstance(start, (int, float)) else 0.0)
        # Dropout in the graph draws with a device counter that starts where the warm-up started
        # (so the first replay's masks are the ones an eager first step would have drawn).
        _tensor._dropout_draws = draws_before
        self._draw_counter = backend.from_numpy(np.array([draws_before], dtype=np.int64), index)
        backend.synchronize(index)
        dropout_ops.graph_draw_counter = self._draw_counter
        try:
            self._graph, self._loss = backend.capture(index, step)
        finally:
            dropout_ops.graph_draw_counter = None
        if not isinstance(self._loss, Tensor):
            raise TypeError(f"graphed_step: loss_fn must return a Tensor, got {type(self._loss).__name__}")

    def __call__(self, input, target):  # noqa: A002
        for static, new in ((self._input, input), (self._target, target)):  # copy_ converts host data
            _device.backend.copy_(static.data, new.data if isinstance(new, Tensor) else new)
        self._graph.replay()
        return self._loss


def graphed_step(model, loss_fn, optimizer, example_input, example_target, warmup: int = 3) -> GraphedStep:
    """A training step captured as one CUDA graph: see GraphedStep."""
    if not is_available():
        raise RuntimeError(f"graphed_step: CUDA is not available ({unavailable_reason()})")
    return GraphedStep(model, loss_fn, optimizer, example_input, example_target, warmup)
