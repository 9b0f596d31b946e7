"""Reverse-mode automatic differentiation: the Function base class and the graph walk.

An op is a `Function` subclass with two static methods side by side:

    class Mul(Function):
        @staticmethod
        def forward(ctx, a, b):          # numpy arrays in, numpy array out
            ctx.save_for_backward(a, b)
            return a * b

        @staticmethod
        def backward(ctx, grad):         # d(loss)/d(output) in, one gradient per forward argument out
            a, b = ctx.saved_tensors
            return grad * b, grad * a

`Mul.apply(x, y)` unwraps Tensor arguments to their numpy arrays, runs forward, and, when
gradients are wanted, records a `Context` node as the result's `grad_fn`. Non-Tensor arguments
(axes, flags) reach forward unchanged and get `None` as their gradient. `backward` must not
modify `grad` in place: the same array may be handed to several inputs.

`Tensor.backward()` sorts the nodes reachable from the output once, topologically (an
iterative depth-first search, so a chain of many thousand ops does not hit Python's recursion
limit), then calls each node's backward exactly once, after all of its consumers, summing the
gradients that reach a tensor along different paths. Leaves that require grad accumulate into
`.grad`; non-leaf tensors do so only after `retain_grad()`. Unless `retain_graph=True`, each
node drops what it saved as soon as its backward has run, and a second backward through it
raises RuntimeError, as in PyTorch.

Only first derivatives are supported: backward works on numpy arrays and records no graph.
"""
from __future__ import annotations

import weakref

import numpy as np

from fastnn import _device
from fastnn._tensor import Tensor, is_grad_enabled

_FREED_MESSAGE = (
    "Trying to backward through the graph a second time (or directly access saved tensors after they "
    "have already been freed). Saved intermediate values of the graph are freed when you call "
    ".backward(). Specify retain_graph=True if you need to backward through the graph a second time "
    "or if you need to access saved tensors after calling backward.")


class Context:
    """One node of the graph: the op that made a tensor, its inputs and what forward saved."""

    def __init__(self, function: type, inputs: tuple):
        self.function = function
        self.inputs = inputs  # forward's arguments as given: Tensors and plain values
        self.needs_input_grad = tuple([isinstance(x, Tensor) and x._requires_grad for x in inputs])
        self._saved = ()
        self._retained_output = None  # weakref to the output, set by Tensor.retain_grad()
        self._freed = False

    def save_for_backward(self, *arrays) -> None:
        self._saved = arrays

    @property
    def saved_tensors(self) -> tuple:
        if self._freed:
            raise RuntimeError(_FREED_MESSAGE)
        return self._saved

    def name(self) -> str:
        return self.function.__name__ + "Backward"

    def _retain_output(self, tensor: Tensor) -> None:
        self._retained_output = weakref.ref(tensor)

    def _release(self) -> None:
        # Drop the saved arrays and whatever else forward stored on ctx, keep only what repr needs.
        function = self.function
        self.__dict__.clear()
        self.function, self._freed = function, True

    def __repr__(self) -> str:
        return f"<{self.name()}>"


class Function:
    """Base class of differentiable ops; see the module docstring."""

    @staticmethod
    def forward(ctx: Context, *args):
        raise NotImplementedError

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray):
        raise NotImplementedError

    # Whether forward and backward also take device arrays (the op has CUDA kernels).
    cuda = False
    # Whether forward and backward do numpy arithmetic that may warn (division by zero, overflow):
    # they then run under np.errstate(all="ignore"). Ops that only call kernels set it False and
    # save the 1-2 microseconds errstate costs per call.
    numpy_math = True

    @classmethod
    def apply(cls, *args) -> Tensor:
        if _device.cuda_used:  # a CPU-only process skips the device checks
            _device.check_op(cls, args)
        ctx = Context(cls, args)
        raw_args = [x.data if isinstance(x, Tensor) else x for x in args]
        if cls.numpy_math:
            # Ops follow IEEE like PyTorch (log(0) = -inf, 0/0 = nan) instead of warning.
            with np.errstate(all="ignore"):
                result = cls.forward(ctx, *raw_args)
        else:
            result = cls.forward(ctx, *raw_args)
        output = Tensor(result)
        if is_grad_enabled() and any(ctx.needs_input_grad):
            output._requires_grad = True
            output.grad_fn = ctx
        return output


def backward(tensor: Tensor, gradient=None, retain_graph: bool = False) -> None:
    """Accumulate d(tensor)/d(leaf), weighted by `gradient`, into every leaf's `.grad`."""
    if not tensor.requires_grad:
        raise RuntimeError("element 0 of tensors does not require grad and does not have a grad_fn")
    root_grad = _initial_gradient(tensor, gradient)
    if tensor.grad_fn is None:  # backward() on a leaf itself
        _accumulate(tensor, root_grad)
        return

    grads = {tensor.grad_fn: root_grad}  # node -> gradient of the loss w.r.t. the node's output
    for node in _topological_order(tensor.grad_fn):
        grad = grads.pop(node, None)
        if grad is None:  # no path from the output carried a gradient here
            continue
        retained = node._retained_output() if node._retained_output is not None else None
        if retained is not None:
            _accumulate(retained, grad)
        if node.function.numpy_math:
            with np.errstate(all="ignore"):
                input_grads = node.function.backward(node, grad)
        else:
            input_grads = node.function.backward(node, grad)
        if not isinstance(input_grads, tuple):
            input_grads = (input_grads,)
        if len(input_grads) > len(node.inputs):
            raise RuntimeError(f"{node.name()} returned {len(input_grads)} gradients for "
                               f"{len(node.inputs)} forward arguments")
        for x, x_grad in zip(node.inputs, input_grads):
            if x_grad is None or not isinstance(x, Tensor) or not x.requires_grad:
                continue
            if np.shape(x_grad) != x.shape:
                raise RuntimeError(f"{node.name()} returned a gradient of shape {np.shape(x_grad)} "
                                   f"for an input of shape {x.shape}")
            if x.grad_fn is None:
                _accumulate(x, x_grad)
            else:
                previous = grads.get(x.grad_fn)
                grads[x.grad_fn] = x_grad if previous is None else _device.add(previous, x_grad)
        if not retain_graph:
            node._release()


def _initial_gradient(tensor: Tensor, gradient) -> np.ndarray:
    if gradient is None:
        if tensor.data.size != 1:
            raise RuntimeError(f"grad can be implicitly created only for scalar outputs; the output has "
                               f"shape {tensor.shape}: pass backward(gradient=...) of that shape")
        if tensor.is_cuda:
            return _device.full(tensor.shape, 1.0, tensor.data.device)
        return np.ones(tensor.shape, dtype=np.float32)
    array = gradient.data if isinstance(gradient, Tensor) else np.asarray(gradient, dtype=np.float32)
    if _device.name_of(array) != tensor.device:
        raise ValueError(f"backward: gradient is on {_device.name_of(array)} but the output is on "
                         f"{tensor.device}; move the gradient with .to('{tensor.device}')")
    if _device.is_device_array(array):
        return array
    if array.shape != tensor.shape:
        raise ValueError(f"backward: gradient has shape {array.shape} but the output has shape "
                         f"{tensor.shape}; expected gradient of shape {tensor.shape}")
    return array.astype(np.float32, copy=False)


def _topological_order(root: Context) -> list:
    """The nodes reachable from root, each before the nodes of its inputs (root first)."""
    order, visited = [], set()
    stack = [(root, False)]
    while stack:
        node, inputs_done = stack.pop()
        if inputs_done:
            order.append(node)
            continue
        if node in visited:
            continue
        if node._freed:
            raise RuntimeError(_FREED_MESSAGE)
        visited.add(node)
        stack.append((node, True))
        for x in node.inputs:
            if isinstance(x, Tensor) and x.grad_fn is not None and x.grad_fn not in visited:
                stack.append((x.grad_fn, False))
    order.reverse()  # post-order lists inputs before their consumers
    return order


def _accumulate(tensor: Tensor, grad: np.ndarray) -> None:
    # A fresh array every time: the gradient handed in may be a read-only broadcast view, or the
    # same array another input received, and users may scale .grad in place.
    if _device.is_device_array(grad):
        tensor.grad = Tensor(grad.copy() if tensor.grad is None else _device.add(tensor.grad.data, grad))
    elif tensor.grad is None:
        tensor.grad = Tensor(np.array(grad, dtype=np.float32, order="C"))
    else:
        tensor.grad = Tensor(tensor.grad.data + grad)
