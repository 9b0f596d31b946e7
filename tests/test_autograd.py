"""The graph walk: shared subexpressions, deep chains, user-defined Functions, freed graphs,
and one broadcasting case per op through the whole backward pass."""
import sys

import numpy as np
import pytest

import fastnn
from fastnn.autograd import Context, Function
from helpers import check_op, numerical_gradient
from reference import matmul_ref, sigmoid_ref


def test_shared_subexpressions_sum_their_gradients():
    x = fastnn.tensor([0.5, -1.5, 2.0], requires_grad=True)
    y = x * x            # used three times below
    z = (y + y * y + fastnn.exp(y)).sum()
    z.backward()
    xs = np.array([0.5, -1.5, 2.0])
    expected = 2 * xs + 4 * xs ** 3 + 2 * xs * np.exp(xs ** 2)
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-5)


def test_diamond_graph_visits_each_node_once():
    calls = []

    class Recorded(Function):
        @staticmethod
        def forward(ctx, a):
            return a * 1

        @staticmethod
        def backward(ctx, grad):
            calls.append(grad.copy())
            return grad

    x = fastnn.tensor([1.0, 2.0], requires_grad=True)
    top = Recorded.apply(x)
    left, right = top * 2, top * 3
    (left + right).sum().backward()
    assert len(calls) == 1  # the gradients of both branches were summed before its backward ran
    np.testing.assert_array_equal(calls[0], [5.0, 5.0])
    np.testing.assert_array_equal(x.grad.numpy(), [5.0, 5.0])


def test_same_tensor_as_both_operands():
    x = fastnn.tensor([3.0], requires_grad=True)
    (x * x).sum().backward()
    assert x.grad.item() == 6.0
    y = fastnn.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    (y @ y).sum().backward()
    a = np.array([[1.0, 2.0], [3.0, 4.0]])
    np.testing.assert_allclose(y.grad.numpy(), np.ones((2, 2)) @ a.T + a.T @ np.ones((2, 2)))


def test_deep_chain_of_5000_ops_needs_no_recursion():
    x = fastnn.tensor([1.0, 2.0], requires_grad=True)
    y = x
    for _ in range(5000):
        y = y * 1.0001 + 0.0
    limit = sys.getrecursionlimit()
    assert limit < 10000  # the walk must not depend on a raised limit
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [1.0001 ** 5000] * 2, rtol=1e-4)


def test_custom_function_with_saved_tensors():
    class Cube(Function):
        @staticmethod
        def forward(ctx, a):
            ctx.save_for_backward(a)
            return a ** 3

        @staticmethod
        def backward(ctx, grad):
            a, = ctx.saved_tensors
            return 3 * a * a * grad

    x = fastnn.tensor([1.0, -2.0], requires_grad=True)
    out = Cube.apply(x)
    assert repr(out.grad_fn) == "<CubeBackward>"
    assert isinstance(out.grad_fn, Context)
    out.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 12.0])
    with pytest.raises(RuntimeError, match="after they have already been freed"):
        out.grad_fn.saved_tensors


def test_function_returning_a_wrong_gradient_shape_is_caught():
    class Broken(Function):
        @staticmethod
        def forward(ctx, a):
            return a.sum()

        @staticmethod
        def backward(ctx, grad):
            return np.ones(3, np.float32)

    with pytest.raises(RuntimeError, match=r"BrokenBackward returned a gradient of shape \(3,\) for an input of shape \(2,\)"):
        Broken.apply(fastnn.ones(2, requires_grad=True)).backward()


def test_inputs_without_requires_grad_get_no_gradient_and_no_graph():
    a = fastnn.ones(2, 3)
    b = fastnn.ones(3, 2)
    out = a @ b
    assert not out.requires_grad and out.grad_fn is None
    w = fastnn.ones(3, 2, requires_grad=True)
    (a @ w).sum().backward()
    assert a.grad is None and w.grad.shape == (3, 2)


def test_branch_without_gradient_path_is_skipped():
    x = fastnn.tensor([1.0, 2.0], requires_grad=True)
    unused = x * 5  # noqa: F841 (built, never reaches the loss)
    (x * 2).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 2.0])


def test_retain_graph_then_free():
    x = fastnn.tensor([2.0], requires_grad=True)
    y = x.exp()
    loss = (y * y).sum()
    for _ in range(3):
        loss.backward(retain_graph=True)
    np.testing.assert_allclose(x.grad.numpy(), 3 * 2 * np.exp(4.0), rtol=1e-6)
    loss.backward()
    with pytest.raises(RuntimeError, match="second time"):
        loss.backward()


def test_mlp_gradient_matches_finite_differences():
    def fastnn_mlp(x, w1, w2):
        return fastnn.sigmoid(fastnn.tanh(x @ w1) @ w2).mean(axis=0)

    def reference_mlp(x, w1, w2):
        return sigmoid_ref(np.tanh(matmul_ref(x, w1)) @ w2).mean(axis=0)

    check_op([(5, 3), (3, 17), (17, 2)], fastnn_mlp, reference_mlp)


# One broadcasting case per op, through the whole backward: each input's gradient is reduced back
# to its own shape.
@pytest.mark.parametrize("name, fastnn_fn, reference_fn, shapes, low", [
    ("add", lambda a, b: a + b, np.add, [(4, 1, 3), (5, 1)], -2.0),
    ("sub", lambda a, b: a - b, np.subtract, [(1, 3), (4, 1)], -2.0),
    ("mul", lambda a, b: a * b, np.multiply, [(2, 3, 4), (3, 1)], -2.0),
    ("div", lambda a, b: a / b, np.divide, [(3, 1), (1, 5)], [-2.0, 0.5]),
    ("pow", lambda a, b: a ** b, np.power, [(3, 1), (2, 1, 4)], [0.5, -2.0]),
    ("matmul", lambda a, b: a @ b, matmul_ref, [(2, 1, 3, 4), (3, 4, 5)], -2.0),
    ("matmul-2d-left", lambda a, b: a @ b, matmul_ref, [(3, 4), (2, 4, 5)], -2.0),
])
def test_broadcasting_gradients_per_op(name, fastnn_fn, reference_fn, shapes, low):
    check_op(shapes, fastnn_fn, reference_fn, low=low)


def test_broadcast_against_a_constant_reduces_only_the_variable():
    x = fastnn.ones(3, requires_grad=True)
    (x * fastnn.ones(4, 3)).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [4.0, 4.0, 4.0])


def test_numerical_gradient_helper_on_a_known_function():
    grad = numerical_gradient(lambda a: np.sum(a ** 2), [np.array([1.0, -3.0])], 0)
    np.testing.assert_allclose(grad, [2.0, -6.0], rtol=1e-6)
