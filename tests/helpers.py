"""Test helpers: check_op (a fastnn op against its float64 reference, in value and gradient),
assert_kernel_results (a kernel's outputs against a reference within a rounding bound), a quiet
HTTP handler, and load_example (an examples/ script imported as a module)."""
import http.server
import importlib.util
import sys
from pathlib import Path

import numpy as np

import fastnn


def numerical_gradient(f, inputs, i, eps=1e-6):
    """Central differences of the scalar f(*inputs) with respect to inputs[i], in float64."""
    inputs = [np.array(x, dtype=np.float64) for x in inputs]
    x = inputs[i]
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        saved = x[index]
        x[index] = saved + eps
        above = f(*inputs)
        x[index] = saved - eps
        below = f(*inputs)
        x[index] = saved
        grad[index] = (above - below) / (2 * eps)
    return grad


def assert_kernel_results(results, scale, case, tol=2e-5):
    """results: (name, got, want) of a kernel against its float64 reference, want None where no
    result is expected. The bound grows with the largest value and with sqrt(scale), the terms
    summed per output, as the rounding error does."""
    for name, got, want in results:
        if want is None:
            assert got is None
            continue
        assert got.shape == want.shape, (name, case)
        assert got.dtype == np.float32
        bound = tol * max(1.0, float(np.abs(want).max())) * max(1.0, np.sqrt(scale))
        np.testing.assert_allclose(got, want, atol=bound, rtol=1e-4, err_msg=f"{name} for {case}")


def host(x):
    """The values of a numpy array, or of a tensor on any device, as a numpy array."""
    return x if isinstance(x, np.ndarray) else x.detach().cpu().numpy()


def random_inputs(shapes, low=-2.0, high=2.0, seed=0):
    """float32 inputs drawn uniformly from [low, high) (one bound per input when given lists)."""
    rng = np.random.default_rng(seed)
    lows = low if isinstance(low, (list, tuple)) else [low] * len(shapes)
    highs = high if isinstance(high, (list, tuple)) else [high] * len(shapes)
    return [rng.uniform(lo, hi, size=shape).astype(np.float32) for shape, lo, hi in zip(shapes, lows, highs)]


def check_op(shapes, fastnn_fn, reference_fn, atol=1e-5, rtol=1e-5, grad=True,
             grad_atol=1e-4, grad_rtol=1e-3, low=-2.0, high=2.0, seed=0, device="cpu"):
    """fastnn_fn(*tensors) against reference_fn(*float64 arrays) on random inputs of `shapes`,
    the tensors on `device` (the conftest fixture `device` gives "cpu" or "cuda").

    The forward must match the reference within atol/rtol. With grad, the output is
    back-propagated with a random upstream gradient g, and each input's .grad must match the
    central finite differences of sum(reference_fn(...) * g), taken in float64.
    Returns the output tensor.
    """
    inputs32 = random_inputs(shapes, low, high, seed)
    inputs64 = [x.astype(np.float64) for x in inputs32]
    tensors = [fastnn.tensor(x, requires_grad=grad, device=device) for x in inputs32]

    out = fastnn_fn(*tensors)
    expected = np.asarray(reference_fn(*inputs64), dtype=np.float64)
    assert isinstance(out, fastnn.Tensor)
    assert out.dtype == np.float32
    assert out.device == tensors[0].device, f"output on {out.device}, inputs on {tensors[0].device}"
    assert out.shape == expected.shape, f"shape {out.shape}, expected {expected.shape}"
    np.testing.assert_allclose(out.detach().cpu().numpy(), expected, atol=atol, rtol=rtol, err_msg="forward")
    if not grad:
        return out

    upstream = np.random.default_rng(seed + 1).standard_normal(expected.shape).astype(np.float32)
    out.backward(fastnn.tensor(upstream, device=device))

    def weighted(*xs):
        return np.sum(reference_fn(*xs) * upstream.astype(np.float64))

    for i, t in enumerate(tensors):
        assert t.grad is not None, f"input {i} received no gradient"
        assert t.grad.shape == t.shape
        expected_grad = numerical_gradient(weighted, inputs64, i)
        np.testing.assert_allclose(t.grad.cpu().numpy(), expected_grad, atol=grad_atol, rtol=grad_rtol,
                                   err_msg=f"gradient of input {i}")
    return out


def train_steps(model, optimizer, x, y, device, steps):
    """`steps` optimizer steps of cross-entropy of model(x) against labels y, x sent to `device`
    (where the model is); the losses, as floats."""
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = fastnn.nn.functional.cross_entropy(model(fastnn.tensor(x, device=device)), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files without logging to stderr; records (path, status) of each request."""
    requests = []

    def log_request(self, code="-", size="-"):
        QuietHandler.requests.append((self.path, int(code)))

    def log_message(self, *args):
        pass


EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load_example(name):
    """examples/<name>.py imported as a module (the examples import their shared examples/_common.py)."""
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    spec = importlib.util.spec_from_file_location(f"fastnn_example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
