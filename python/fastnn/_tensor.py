"""Tensor, its factories, the random generator and the grad mode.

A CPU Tensor is a float32 numpy array (`.data`) plus what autograd needs: `requires_grad`,
`grad`, and `grad_fn`, the graph node of the op that made it (None for leaves). `from_numpy`,
`numpy()`, `__array__` and DLPack share memory with numpy; `tensor()` copies. A CUDA tensor's
`.data` is a device array (see fastnn._device); `to()`, `cuda()` and `cpu()` copy between the
two, and gradients flow back across the copy.
"""
from __future__ import annotations

import functools
import math
import operator
import threading

import numpy as np

# Shapes asking for more elements than this are taken for mistakes (4 TiB of float32).
MAX_ELEMENTS = 2 ** 40

# ---------------------------------------------------------------------------------------------
# Grad mode (thread-local, like PyTorch's)

_grad_mode = threading.local()


def is_grad_enabled() -> bool:
    """False inside `with fastnn.no_grad():`, True otherwise."""
    return getattr(_grad_mode, "enabled", True)


class no_grad:
    """Context manager and decorator: ops inside record no graph and return tensors that do not
    require grad (for evaluation and for parameter updates)."""

    def __init__(self):
        self._previous = []  # a stack, so one instance can be entered again while active

    def __enter__(self):
        self._previous.append(is_grad_enabled())
        _grad_mode.enabled = False
        return self

    def __exit__(self, *exc_info):
        _grad_mode.enabled = self._previous.pop()
        return False

    def __call__(self, func):
        @functools.wraps(func)
        def without_grad(*args, **kwargs):
            with no_grad():  # a fresh instance per call: safe under recursion and threads
                return func(*args, **kwargs)
        return without_grad


# ---------------------------------------------------------------------------------------------
# Random numbers: one global generator, seeded with a fixed default like PyTorch's, so that a
# run is reproducible even without manual_seed.

_DEFAULT_SEED = 0
_generator = np.random.Generator(np.random.PCG64(_DEFAULT_SEED))
# Dropout masks come from Philox4x32-10 (csrc/common/philox.h), a counter-based generator that
# the CPU and the GPU share: the k-th mask after manual_seed(s) depends on (s, k) alone, not on
# the device, the thread count or the numpy generator's position.
_dropout_seed = _DEFAULT_SEED
_dropout_draws = 0


def manual_seed(seed: int) -> None:
    """Reseed the global generator used by randn, rand and the layers' initialisation, and the
    dropout masks' generator (on the CPU and the GPUs)."""
    global _generator
    try:
        seed = operator.index(seed)
    except TypeError:
        raise TypeError(f"manual_seed: seed must be an int, got {type(seed).__name__}") from None
    if not -2 ** 63 <= seed < 2 ** 64:
        raise ValueError(f"manual_seed: seed must be in [-2**63, 2**64), got seed={seed}")
    global _dropout_seed, _dropout_draws
    _generator = np.random.Generator(np.random.PCG64(seed % 2 ** 64))  # negative seeds wrap as in torch
    _dropout_seed, _dropout_draws = seed % 2 ** 64, 0


def default_generator() -> np.random.Generator:
    """The global numpy Generator (replaced by manual_seed; fetch it at each use)."""
    return _generator


def next_dropout_draw(advance: bool = True) -> tuple:
    """(seed, draw number) of the next dropout mask; counts the draw unless advance is False."""
    global _dropout_draws
    draw = _dropout_draws
    _dropout_draws += bool(advance)
    return _dropout_seed, draw


# ---------------------------------------------------------------------------------------------
# Shapes

def _shape_arg(args: tuple):
    # zeros(2, 3), zeros((2, 3)) and zeros([2, 3]) mean the same
    if len(args) == 1 and hasattr(args[0], "__iter__") and not isinstance(args[0], str):
        return args[0]
    return args


def parse_shape(fn: str, shape, allow_infer: bool = False) -> tuple:
    """Validate a shape (a sequence of non-negative ints; one -1 allowed when allow_infer)."""
    try:
        items = tuple(shape)
    except TypeError:
        raise ValueError(f"{fn}: shape must be a sequence of ints, got shape={shape!r}") from None
    dims = []
    for d in items:
        if isinstance(d, (bool, np.bool_)):
            raise ValueError(f"{fn}: shape must contain ints, got shape={items!r}")
        try:
            d = operator.index(d)
        except TypeError:
            raise ValueError(f"{fn}: shape must contain ints, got {type(d).__name__} in shape={items!r}") from None
        if d < 0 and not (allow_infer and d == -1):
            raise ValueError(f"{fn}: shape must contain non-negative ints"
                             f"{' (or one -1)' if allow_infer else ''}, got shape={items!r}")
        dims.append(d)
    if dims.count(-1) > 1:
        raise ValueError(f"{fn}: only one dimension can be -1, got shape={tuple(dims)!r}")
    count = math.prod(d for d in dims if d != -1)  # Python ints: no overflow
    if count > MAX_ELEMENTS:
        raise ValueError(f"{fn}: shape={tuple(dims)!r} asks for {count} elements, more than the limit "
                         f"of 2**40 ({MAX_ELEMENTS}); check the shape")
    return tuple(dims)


def _allocate(fn: str, make, shape: tuple) -> np.ndarray:
    try:
        return make(shape)
    except MemoryError:
        gib = math.prod(shape) * 4 / 2 ** 30
        raise MemoryError(f"{fn}: not enough memory for shape={shape} ({gib:.1f} GiB of float32)") from None


# ---------------------------------------------------------------------------------------------
# Tensor

class Tensor:
    """A float32 array with autograd. Build one with fastnn.tensor (copies) or
    fastnn.from_numpy (shares memory); Tensor(array) wraps a float32 array without copying."""

    # numpy defers to our reflected operators (ndarray + Tensor -> Tensor.__radd__) instead of
    # turning the Tensor into an array and returning an ndarray.
    __array_ufunc__ = None

    def __init__(self, data, requires_grad: bool = False):
        if isinstance(data, Tensor):
            data = data.data
        if not isinstance(data, np.ndarray) and _device.is_device_array(data):
            if data.dtype != np.float32:
                raise TypeError(f"Tensor: fastnn computes in float32, got a device array of {data.dtype}")
            self.data = data
        else:
            self.data = np.asarray(data, dtype=np.float32)
        self._requires_grad = bool(requires_grad)
        self.grad = None
        self.grad_fn = None

    # -- autograd -----------------------------------------------------------------------------
    @property
    def requires_grad(self) -> bool:
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, flag: bool) -> None:
        if self.grad_fn is not None and not flag:
            raise RuntimeError("you can only change requires_grad flags of leaf variables. If you want "
                               "to use a computed variable in a subgraph that doesn't require "
                               "differentiation use var_no_grad = var.detach().")
        self._requires_grad = bool(flag)

    def requires_grad_(self, requires_grad: bool = True) -> "Tensor":
        self.requires_grad = requires_grad
        return self

    @property
    def is_leaf(self) -> bool:
        return self.grad_fn is None

    @property
    def _ctx(self):
        return self.grad_fn

    def retain_grad(self) -> None:
        """Make backward fill this non-leaf tensor's .grad too (leaves get it anyway)."""
        if not self.requires_grad:
            raise RuntimeError("can't retain_grad on Tensor that has requires_grad=False")
        if self.grad_fn is not None:
            self.grad_fn._retain_output(self)

    @property
    def retains_grad(self) -> bool:
        ctx = self.grad_fn
        return ctx is not None and getattr(ctx, "_retained_output", None) is not None \
            and ctx._retained_output() is self

    def backward(self, gradient=None, retain_graph: bool = False) -> None:
        """Accumulate the gradient of this tensor into the leaves' .grad (see fastnn.autograd)."""
        autograd.backward(self, gradient, retain_graph)

    def detach(self) -> "Tensor":
        """The same memory, cut from the graph."""
        return Tensor(self.data)

    def clone(self) -> "Tensor":
        """A copy with its own memory; gradients flow back to self."""
        return _elementwise.clone(self)

    def zero_(self) -> "Tensor":
        if self.requires_grad and self.is_leaf and is_grad_enabled():
            raise RuntimeError("a leaf Variable that requires grad is being used in an in-place operation.")
        if _device.is_device_array(self.data):
            _device.backend.fill(self.data, 0.0)
        else:
            self.data[...] = 0.0
        return self

    # -- description --------------------------------------------------------------------------
    @property
    def shape(self) -> tuple:
        return self.data.shape

    @property
    def ndim(self) -> int:
        return self.data.ndim

    def dim(self) -> int:
        return self.data.ndim

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def device(self) -> str:
        """'cpu' or 'cuda:N'."""
        return _device.name_of(self.data)

    @property
    def is_cuda(self) -> bool:
        return _device.is_device_array(self.data)

    def _host(self) -> np.ndarray:
        """The values in host memory: the array itself on the CPU, a copy from a GPU."""
        return self.data.numpy() if _device.is_device_array(self.data) else self.data

    def size(self, dim=None):
        if dim is None:
            return self.data.shape
        return self.data.shape[_common.normalize_axis("size", dim, self.ndim)]

    def numel(self) -> int:
        return self.data.size

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.data.shape[0]

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self.data.shape[0]))

    def item(self) -> float:
        if self.data.size != 1:
            raise RuntimeError(f"a Tensor with {self.data.size} elements cannot be converted to Scalar")
        return float(self._host().reshape(-1)[0])

    def __float__(self) -> float:
        return self.item()

    def __bool__(self) -> bool:
        if self.data.size != 1:
            raise RuntimeError(f"Boolean value of Tensor with {self.data.size} values is ambiguous")
        return bool(self._host().reshape(-1)[0])

    def __repr__(self) -> str:
        body = np.array2string(self._host(), precision=4, separator=", ", prefix="tensor(")
        if self.data.size == 0 and self.ndim != 1:  # "[]" alone does not tell the shape
            body += f", size={self.shape}"
        if self.is_cuda:
            body += f", device='{self.device}'"
        if self.grad_fn is not None:
            return f"tensor({body}, grad_fn={self.grad_fn!r})"
        if self.requires_grad:
            return f"tensor({body}, requires_grad=True)"
        return f"tensor({body})"

    # -- exchange with numpy, DLPack and devices ----------------------------------------------
    def _check_exportable(self, what: str) -> None:
        if self.requires_grad:
            raise RuntimeError(f"Can't call {what} on Tensor that requires grad. "
                               f"Use tensor.detach().{what} instead.")
        if self.is_cuda and what != "__dlpack__()":
            raise TypeError(f"can't convert {self.device} device type tensor to numpy. Use Tensor.cpu() to "
                            f"copy the tensor to host memory first.")

    def numpy(self) -> np.ndarray:
        """The underlying array, without a copy."""
        self._check_exportable("numpy()")
        return self.data

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        self._check_exportable("numpy()")
        if dtype is not None and np.dtype(dtype) != self.data.dtype:
            if copy is False:
                raise ValueError(f"Unable to avoid copy while converting a float32 Tensor to {np.dtype(dtype)}")
            return self.data.astype(dtype)
        return self.data.copy() if copy else self.data

    def __dlpack__(self, *, stream=None, max_version=None, dl_device=None, copy=None):
        self._check_exportable("__dlpack__()")
        given = dict(stream=stream, max_version=max_version, dl_device=dl_device, copy=copy)
        return self.data.__dlpack__(**{k: v for k, v in given.items() if v is not None})

    def __dlpack_device__(self):
        return self.data.__dlpack_device__()

    def to(self, device) -> "Tensor":
        """This tensor on `device` ('cpu', 'cuda', 'cuda:N'): itself when it is there already,
        else a copy through which gradients flow back (as in PyTorch)."""
        index = _device.parse("to", device)
        if _device.name_of(self.data) == ("cpu" if index is None else f"cuda:{index}"):
            return self
        if index is not None:
            _device.require("to", index)
        return _shape.ToDevice.apply(self, index)

    def cpu(self) -> "Tensor":
        return self.to("cpu")

    def cuda(self, device=None) -> "Tensor":
        index = 0 if device is None else _device.parse("cuda", device)
        return self.to(f"cuda:{index}")

    # -- operators (numpy broadcasting; Python scalars and numpy arrays are constants) -------
    def __add__(self, other): return _elementwise.add(self, other)
    def __radd__(self, other): return _elementwise.add(other, self)
    def __sub__(self, other): return _elementwise.sub(self, other)
    def __rsub__(self, other): return _elementwise.sub(other, self)
    def __mul__(self, other): return _elementwise.mul(self, other)
    def __rmul__(self, other): return _elementwise.mul(other, self)
    def __truediv__(self, other): return _elementwise.div(self, other)
    def __rtruediv__(self, other): return _elementwise.div(other, self)
    def __pow__(self, other): return _elementwise.pow(self, other)
    def __rpow__(self, other): return _elementwise.pow(other, self)
    def __matmul__(self, other): return _linalg.matmul(self, other)
    def __rmatmul__(self, other): return _linalg.matmul(other, self)
    def __neg__(self): return _elementwise.neg(self)
    def __pos__(self): return self
    def __getitem__(self, index): return _shape.getitem(self, index)

    # Comparisons give plain boolean arrays: they have no gradient. == and != keep identity
    # semantics so tensors still work as dict keys and in `x in list`.
    def __lt__(self, other): return self.data < _common.as_array(other)
    def __le__(self, other): return self.data <= _common.as_array(other)
    def __gt__(self, other): return self.data > _common.as_array(other)
    def __ge__(self, other): return self.data >= _common.as_array(other)

    # -- methods ------------------------------------------------------------------------------
    def matmul(self, other): return _linalg.matmul(self, other)
    def exp(self): return _elementwise.exp(self)
    def log(self): return _elementwise.log(self)
    def sqrt(self): return _elementwise.sqrt(self)
    def relu(self): return _elementwise.relu(self)
    def sigmoid(self): return _elementwise.sigmoid(self)
    def tanh(self): return _elementwise.tanh(self)
    def pow(self, exponent): return _elementwise.pow(self, exponent)

    def sum(self, axis=None, keepdim=False, *, dim=None):
        return _reduce.sum(self, axis, keepdim, dim=dim)

    def mean(self, axis=None, keepdim=False, *, dim=None):
        return _reduce.mean(self, axis, keepdim, dim=dim)

    def max(self, axis=None, keepdim=False, *, dim=None):
        return _reduce.max(self, axis, keepdim, dim=dim)

    def reshape(self, *shape): return _shape.reshape(self, _shape_arg(shape))
    def view(self, *shape): return _shape.reshape(self, _shape_arg(shape))
    def transpose(self, dim0, dim1): return _shape.transpose(self, dim0, dim1)
    def permute(self, *dims): return _shape.permute(self, _shape_arg(dims))
    def flatten(self, start_dim=0, end_dim=-1): return _shape.flatten(self, start_dim, end_dim)

    @property
    def T(self):
        """The transpose of a 2-D tensor (numpy's rule for other ranks: the axes reversed)."""
        return _shape.permute(self, tuple(range(self.ndim - 1, -1, -1)))


# ---------------------------------------------------------------------------------------------
# Factories

def tensor(data, requires_grad: bool = False, device=None) -> Tensor:
    """A new tensor holding a float32 copy of data (nested lists, scalars, arrays, tensors)."""
    if device is not None:
        return _on_device("tensor", tensor(data, requires_grad=requires_grad), device)
    if isinstance(data, Tensor):
        data = data._host()
    try:
        array = np.asarray(data)
    except ValueError as error:  # ragged nested lists
        raise ValueError(f"tensor: data must be a rectangular nested sequence of numbers: {error}") from None
    if array.dtype.kind not in "biuf":
        raise TypeError(f"tensor: data must hold real numbers, got {array.dtype} data "
                        f"(from {type(data).__name__})")
    with np.errstate(over="ignore"):  # values beyond float32 become +-inf, as in torch.tensor
        return Tensor(np.array(array, dtype=np.float32, copy=True), requires_grad=requires_grad)


def from_numpy(array: np.ndarray) -> Tensor:
    """A tensor sharing memory with a float32 numpy array (views included)."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy: expected a numpy.ndarray, got {type(array).__name__}; "
                        f"use fastnn.tensor(data) to copy other data")
    if array.dtype != np.float32:
        raise TypeError(f"from_numpy: fastnn computes in float32, got an array of dtype {array.dtype}; "
                        f"convert it with array.astype(numpy.float32), or use fastnn.tensor(array), "
                        f"which copies and converts")
    return Tensor(array)


def from_dlpack(obj) -> Tensor:
    """A tensor sharing memory with any DLPack exporter (a torch or CuPy tensor, a numpy array...),
    in host or CUDA memory."""
    if not hasattr(obj, "__dlpack__"):
        raise TypeError(f"from_dlpack: expected an object with __dlpack__, got {type(obj).__name__}")
    device_type = obj.__dlpack_device__()[0] if hasattr(obj, "__dlpack_device__") else 1
    if device_type == 2:  # kDLCUDA
        _device.require("from_dlpack", int(obj.__dlpack_device__()[1]))
        return Tensor(_device.backend.from_dlpack(obj.__dlpack__()))
    return from_numpy(np.from_dlpack(obj))


def _on_device(fn: str, t: Tensor, device) -> Tensor:
    """A factory's CPU result moved to `device` (None or 'cpu': left where it is)."""
    if device is None:
        return t
    index = _device.parse(fn, device)
    if index is None:
        return t
    _device.require(fn, index)
    return Tensor(_device.to_device(fn, t.data, index), requires_grad=t.requires_grad)


def zeros(*shape, requires_grad: bool = False, device=None) -> Tensor:
    dims = parse_shape("zeros", _shape_arg(shape))
    if device is not None:
        return _on_device("zeros", zeros(dims, requires_grad=requires_grad), device)
    return Tensor(_allocate("zeros", lambda s: np.zeros(s, np.float32), dims), requires_grad)


def ones(*shape, requires_grad: bool = False, device=None) -> Tensor:
    dims = parse_shape("ones", _shape_arg(shape))
    if device is not None:
        return _on_device("ones", ones(dims, requires_grad=requires_grad), device)
    return Tensor(_allocate("ones", lambda s: np.ones(s, np.float32), dims), requires_grad)


def randn(*shape, requires_grad: bool = False, device=None) -> Tensor:
    """Standard normal samples from the global generator (see manual_seed)."""
    dims = parse_shape("randn", _shape_arg(shape))
    if device is not None:
        return _on_device("randn", randn(dims, requires_grad=requires_grad), device)
    return Tensor(_allocate("randn", lambda s: _generator.standard_normal(s, dtype=np.float32), dims),
                  requires_grad)


def rand(*shape, requires_grad: bool = False, device=None) -> Tensor:
    """Uniform samples in [0, 1) from the global generator (see manual_seed)."""
    dims = parse_shape("rand", _shape_arg(shape))
    if device is not None:
        return _on_device("rand", rand(dims, requires_grad=requires_grad), device)
    return Tensor(_allocate("rand", lambda s: _generator.random(s, dtype=np.float32), dims), requires_grad)


# The ops modules import Tensor from here, so they are imported after it is defined; Tensor's
# methods look them up when called.
from fastnn import _device  # noqa: E402
from fastnn import autograd  # noqa: E402
from fastnn.ops import _common  # noqa: E402
from fastnn.ops import elementwise as _elementwise  # noqa: E402
from fastnn.ops import linalg as _linalg  # noqa: E402
from fastnn.ops import reduce as _reduce  # noqa: E402
from fastnn.ops import shape as _shape  # noqa: E402
