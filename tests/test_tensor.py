"""Tensor: factories, zero-copy exchange with numpy / DLPack / torch, seeding, grad mode,
leaf semantics, gradient accumulation, retain_graph, and the errors users see."""
import threading

import numpy as np
import pytest

import fastnn
from fastnn import Tensor

# ---------------------------------------------------------------------------------------------
# factories


@pytest.mark.parametrize("factory, check", [
    (fastnn.zeros, lambda a: np.all(a == 0)),
    (fastnn.ones, lambda a: np.all(a == 1)),
    (fastnn.rand, lambda a: np.all((a >= 0) & (a < 1))),
    (fastnn.randn, lambda a: np.all(np.isfinite(a))),
])
@pytest.mark.parametrize("args, shape", [((2, 3), (2, 3)), (((2, 3),), (2, 3)), (([4],), (4,)), ((17,), (17,)),
                                         ((), ()), ((0, 3), (0, 3)), ((np.int64(3), 1), (3, 1))])
def test_factories_shapes_and_values(factory, check, args, shape):
    t = factory(*args)
    assert isinstance(t, Tensor)
    assert t.shape == shape and t.size() == shape and t.ndim == len(shape) and t.dim() == len(shape)
    assert t.dtype == np.float32 and t.device == "cpu"
    assert t.numel() == int(np.prod(shape))
    assert not t.requires_grad and t.is_leaf and t.grad is None
    assert check(t.numpy())


def test_factories_requires_grad():
    for factory in (fastnn.zeros, fastnn.ones, fastnn.rand, fastnn.randn):
        t = factory(2, 3, requires_grad=True)
        assert t.requires_grad and t.is_leaf


def test_tensor_copies_and_converts():
    source = np.arange(6, dtype=np.float64).reshape(2, 3)
    t = fastnn.tensor(source)
    assert t.dtype == np.float32
    source[0, 0] = 99
    assert t.numpy()[0, 0] == 0  # a copy
    f32 = np.ones(3, np.float32)
    t32 = fastnn.tensor(f32)
    f32[0] = 5
    assert t32.numpy()[0] == 1  # a copy even when no conversion is needed
    assert fastnn.tensor([[1, 2], [3, 4]]).shape == (2, 2)
    assert fastnn.tensor(3).shape == () and fastnn.tensor(3).item() == 3.0
    np.testing.assert_array_equal(fastnn.tensor([True, False]).numpy(), [1.0, 0.0])
    assert fastnn.tensor(fastnn.ones(2), requires_grad=True).requires_grad
    assert np.isinf(fastnn.tensor(1e300).item())  # beyond float32, as torch.tensor does


@pytest.mark.parametrize("data, error, match", [
    ("abc", TypeError, "real numbers"),
    ([1 + 2j], TypeError, "real numbers"),
    (None, TypeError, "real numbers"),
    ([[1, 2], [3]], ValueError, "rectangular"),
])
def test_tensor_rejects_bad_data(data, error, match):
    with pytest.raises(error, match=match):
        fastnn.tensor(data)


def test_tensor_constructor_wraps_float32_without_copy():
    a = np.zeros(3, np.float32)
    assert Tensor(a).data is a


def test_len_item_bool_iter():
    t = fastnn.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    assert len(t) == 3
    assert [row.shape for row in t] == [(2,)] * 3
    assert t[1, 1].item() == 4.0 and float(t[0, 0]) == 1.0
    assert bool(fastnn.tensor([1.0])) and not bool(fastnn.tensor(0.0))
    with pytest.raises(RuntimeError, match="6 elements cannot be converted to Scalar"):
        t.item()
    with pytest.raises(RuntimeError, match="ambiguous"):
        bool(t)
    with pytest.raises(TypeError, match="0-d"):
        len(fastnn.tensor(1.0))
    assert t.size(1) == 2 and t.size(-2) == 3


def test_repr_follows_pytorch():
    assert repr(fastnn.tensor([1.0, 2.0])) == "tensor([1., 2.])"
    assert repr(fastnn.tensor(3.5)) == "tensor(3.5)"
    assert repr(fastnn.tensor([1.0], requires_grad=True)) == "tensor([1.], requires_grad=True)"
    assert repr(fastnn.tensor([1.0], requires_grad=True) * 2) == "tensor([2.], grad_fn=<MulBackward>)"
    assert repr(fastnn.zeros(0, 3)) == "tensor([], size=(0, 3))"
    assert repr(fastnn.tensor([[1.0, 2.0], [3.0, 4.0]])) == "tensor([[1., 2.],\n        [3., 4.]])"


# ---------------------------------------------------------------------------------------------
# zero-copy exchange


def test_from_numpy_shares_memory_both_ways():
    a = np.zeros((2, 3), np.float32)
    t = fastnn.from_numpy(a)
    a[0, 1] = 7
    assert t.numpy()[0, 1] == 7
    t.numpy()[1, 2] = 9
    assert a[1, 2] == 9
    assert t.numpy() is a and np.shares_memory(np.asarray(t), a)


def test_from_numpy_accepts_non_contiguous_views():
    base = np.arange(24, dtype=np.float32).reshape(4, 6)
    for view in (base.T, base[:, ::2], base[::-1]):
        t = fastnn.from_numpy(view)
        assert np.shares_memory(t.numpy(), base)
        np.testing.assert_array_equal(t.numpy(), view)


def test_array_protocol_is_zero_copy_and_takes_numpy2_arguments():
    t = fastnn.ones(2, 3)
    assert np.asarray(t) is t.data
    assert np.array(t, copy=False) is t.data
    copied = np.array(t, copy=True)
    assert copied is not t.data and np.array_equal(copied, t.data)
    as64 = np.asarray(t, dtype=np.float64)
    assert as64.dtype == np.float64
    with pytest.raises(ValueError, match="copy"):
        np.array(t, dtype=np.float64, copy=False)


def test_numpy_of_a_tensor_requiring_grad_raises_like_pytorch():
    t = fastnn.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"Can't call numpy\(\) on Tensor that requires grad. "
                                            r"Use tensor.detach\(\).numpy\(\) instead."):
        t.numpy()
    with pytest.raises(RuntimeError, match="requires grad"):
        np.asarray(t)
    assert np.shares_memory(t.detach().numpy(), t.data)


def test_dlpack_round_trip_with_numpy():
    t = fastnn.zeros(3, 4)
    a = np.from_dlpack(t)
    a[1, 1] = 5
    assert t.numpy()[1, 1] == 5
    assert t.__dlpack_device__() == a.__dlpack_device__()
    back = fastnn.from_dlpack(a)
    assert np.shares_memory(back.numpy(), t.numpy())
    with pytest.raises(TypeError, match="__dlpack__"):
        fastnn.from_dlpack([1, 2])


def test_dlpack_round_trip_with_torch():
    torch = pytest.importorskip("torch", reason="torch not installed")
    t = fastnn.ones(2, 3)
    as_torch = torch.from_dlpack(t)
    as_torch[0, 0] = 7
    assert t.numpy()[0, 0] == 7
    source = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    back = fastnn.from_dlpack(source)
    source[1, 2] = -1
    assert back.numpy()[1, 2] == -1
    with pytest.raises(TypeError, match="float32"):
        fastnn.from_dlpack(torch.zeros(2, dtype=torch.float64))


def test_to_and_cpu():
    t = fastnn.ones(2)
    assert t.to("cpu") is t and t.cpu() is t
    if not fastnn.cuda.is_available():
        with pytest.raises(RuntimeError, match="to: CUDA is not available"):
            t.to("cuda")
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            t.to("cuda:1")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        t.to("tpu")


def test_detach_shares_memory_and_clone_copies():
    x = fastnn.ones(3, requires_grad=True)
    d = x.detach()
    assert not d.requires_grad and d.is_leaf and np.shares_memory(d.data, x.data)
    c = x.clone()
    assert not np.shares_memory(c.data, x.data) and c.grad_fn is not None
    (c * 2).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 2.0, 2.0])


def test_zero_():
    g = fastnn.ones(3)
    assert g.zero_() is g and np.all(g.numpy() == 0)
    with pytest.raises(RuntimeError, match="in-place"):
        fastnn.ones(2, requires_grad=True).zero_()
    with fastnn.no_grad():
        leaf = fastnn.ones(2, requires_grad=True)
        leaf.zero_()
    assert np.all(leaf.data == 0)


# ---------------------------------------------------------------------------------------------
# seeding


def test_manual_seed_reproduces_numbers():
    fastnn.manual_seed(123)
    first = (fastnn.randn(5, 3).numpy().copy(), fastnn.rand(4).numpy().copy())
    fastnn.manual_seed(123)
    second = (fastnn.randn(5, 3).numpy(), fastnn.rand(4).numpy())
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    fastnn.manual_seed(124)
    assert not np.array_equal(fastnn.randn(5, 3).numpy(), first[0])


def test_manual_seed_bad_arguments():
    with pytest.raises(TypeError, match="seed must be an int"):
        fastnn.manual_seed(1.5)
    with pytest.raises(ValueError, match="seed must be in"):
        fastnn.manual_seed(2 ** 64)
    fastnn.manual_seed(-1)  # wraps as in torch
    assert fastnn.randn(1).shape == (1,)


# ---------------------------------------------------------------------------------------------
# grad mode


def test_no_grad_context_records_nothing_and_restores():
    x = fastnn.ones(2, requires_grad=True)
    assert fastnn.is_grad_enabled()
    with fastnn.no_grad():
        assert not fastnn.is_grad_enabled()
        with fastnn.no_grad():
            y = x * 2
        assert not fastnn.is_grad_enabled()
    assert fastnn.is_grad_enabled()
    assert not y.requires_grad and y.grad_fn is None and y.is_leaf


def test_no_grad_as_decorator_and_after_an_exception():
    @fastnn.no_grad()
    def double(t):
        assert not fastnn.is_grad_enabled()
        return t * 2

    assert not double(fastnn.ones(1, requires_grad=True)).requires_grad
    assert fastnn.is_grad_enabled()
    with pytest.raises(KeyError):
        with fastnn.no_grad():
            raise KeyError("boom")
    assert fastnn.is_grad_enabled()


def test_grad_mode_is_per_thread():
    seen = []
    with fastnn.no_grad():
        thread = threading.Thread(target=lambda: seen.append(fastnn.is_grad_enabled()))
        thread.start()
        thread.join()
    assert seen == [True]


# ---------------------------------------------------------------------------------------------
# leaves, accumulation, retain_graph


def test_leaf_and_non_leaf_semantics():
    x = fastnn.tensor([1.0, 2.0], requires_grad=True)
    c = fastnn.tensor([3.0, 4.0])
    y = x * c
    z = y.sum()
    assert x.is_leaf and c.is_leaf and not y.is_leaf and not z.is_leaf
    assert y.requires_grad and not c.requires_grad
    assert y.grad_fn is y._ctx and repr(y.grad_fn) == "<MulBackward>"
    z.backward()
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 4.0])
    assert c.grad is None and y.grad is None and z.grad is None


def test_retain_grad_on_non_leaf():
    x = fastnn.tensor([1.0, 2.0], requires_grad=True)
    y = x * 3
    y.retain_grad()
    assert y.retains_grad
    loss = (y * y).sum()
    loss.retain_grad()
    loss.backward()
    np.testing.assert_array_equal(y.grad.numpy(), [6.0, 12.0])
    assert loss.grad.item() == 1.0
    with pytest.raises(RuntimeError, match="requires_grad=False"):
        fastnn.ones(2).retain_grad()


def test_gradients_accumulate_over_two_backward_calls():
    x = fastnn.tensor([1.0, -2.0], requires_grad=True)
    (x * x).sum().backward()
    first = x.grad
    (x * x).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [4.0, -8.0])
    np.testing.assert_array_equal(first.numpy(), [2.0, -4.0])  # a new .grad, the old one untouched


def test_retain_graph_allows_a_second_backward():
    x = fastnn.tensor([1.0, 2.0], requires_grad=True)
    loss = (x.exp() * x).sum()
    loss.backward(retain_graph=True)
    loss.backward()
    expected = 2 * (np.exp([1.0, 2.0]) * (1 + np.array([1.0, 2.0])))
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-6)


def test_backward_through_a_freed_graph_raises():
    x = fastnn.tensor([1.0, 2.0], requires_grad=True)
    loss = (x * x).sum()
    loss.backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        loss.backward()


def test_backward_errors():
    x = fastnn.ones(2, 3, requires_grad=True)
    y = x * 2
    with pytest.raises(RuntimeError, match="grad can be implicitly created only for scalar outputs"):
        y.backward()
    with pytest.raises(ValueError, match=r"gradient has shape \(3, 2\) but the output has shape \(2, 3\)"):
        y.backward(np.ones((3, 2), np.float32))
    with pytest.raises(RuntimeError, match="does not require grad"):
        fastnn.ones(1).backward()
    y.backward(fastnn.ones(2, 3))  # an explicit gradient of the right shape works
    np.testing.assert_array_equal(x.grad.numpy(), np.full((2, 3), 2.0))


def test_backward_on_a_leaf_fills_its_grad():
    x = fastnn.tensor(2.0, requires_grad=True)
    x.backward()
    assert x.grad.item() == 1.0


def test_requires_grad_flag_rules():
    x = fastnn.ones(2)
    assert x.requires_grad_() is x and x.requires_grad
    x.requires_grad = False
    assert not x.requires_grad
    y = fastnn.ones(2, requires_grad=True) * 2
    with pytest.raises(RuntimeError, match="leaf variables"):
        y.requires_grad = False


def test_comparisons_give_boolean_arrays_and_identity_equality():
    t = fastnn.tensor([1.0, 2.0, 3.0])
    np.testing.assert_array_equal(t > 1.5, [False, True, True])
    np.testing.assert_array_equal(t <= fastnn.tensor([1.0, 1.0, 5.0]), [True, False, True])
    assert (t >= 2).dtype == np.bool_ and (t < 2).sum() == 1
    assert t in [t] and {t: 1}[t] == 1  # tensors hash and compare by identity
