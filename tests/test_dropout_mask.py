"""Dropout masks from Philox4x32-10 (csrc/common/philox.h, cpu/random.cpp, cuda/random.cu): the
generator against Random123's known answers, the CPU kernel against a numpy reference bit for
bit, on any thread count, with the right keep rate; F.dropout/dropout2d draw the k-th mask after
manual_seed; on a device (fake and real) the masks equal the CPU's, in eager and graphed steps."""
import numpy as np
import pytest

import fastnn
from fastnn import _C, nn
from fastnn.nn import functional as F
from reference import dropout_mask_ref, philox4x32_10

rng = np.random.default_rng(11)


@pytest.mark.parametrize("counter, key, expected", [
    ((0, 0, 0, 0), (0, 0), (0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8)),
    ((0xffffffff,) * 4, (0xffffffff, 0xffffffff), (0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd)),
    ((0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344), (0xa4093822, 0x299f31d0),
     (0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1)),
])
def test_reference_philox_gives_random123_known_answers(counter, key, expected):
    out = philox4x32_10(np.array([counter], dtype=np.uint32), key)
    assert tuple(int(v) for v in out[0]) == expected


@pytest.mark.parametrize("n", [0, 1, 3, 4, 17, 63, 65, 127, 1000, 100_003])
def test_cpu_mask_equals_the_reference_bit_for_bit(isa, n):
    for p, seed, offset in [(0.5, 0, 0), (0.1, 12345, 7), (0.9, 2 ** 40 + 3, 2 ** 33 + 1), (0.0, 1, 1), (1.0, 2, 2)]:
        mask = _C.dropout_mask((n,), p, seed, offset)
        np.testing.assert_array_equal(mask, dropout_mask_ref(n, p, seed, offset))


def test_mask_is_the_same_on_any_thread_count_and_has_the_keep_rate(isa):
    shape = (301, 1001)  # 75,326 blocks of 4: the second thread's range starts inside a vector group
    with fastnn.threads(1):
        one = _C.dropout_mask(shape, 0.3, 99, 5)
    with fastnn.threads(2):
        two = _C.dropout_mask(shape, 0.3, 99, 5)
    np.testing.assert_array_equal(one, two)
    np.testing.assert_array_equal(one.ravel(), dropout_mask_ref(one.size, 0.3, 99, 5))
    kept = np.count_nonzero(one) / one.size
    sigma = np.sqrt(0.3 * 0.7 / one.size)
    assert abs(kept - 0.7) < 5 * sigma
    assert set(np.unique(one)) == {np.float32(0.0), np.float32(1 / 0.7)}
    assert not np.array_equal(one, _C.dropout_mask(shape, 0.3, 99, 6))  # the next draw differs


def test_dropout_draws_the_kth_mask_after_manual_seed():
    x = fastnn.tensor(rng.standard_normal((7, 33)), requires_grad=True)
    fastnn.manual_seed(2024)
    first, second = F.dropout(x, 0.25), F.dropout(x, 0.25)
    np.testing.assert_array_equal(first.detach().numpy(), x.detach().numpy() * dropout_mask_ref(7 * 33, 0.25, 2024, 0)
                                  .reshape(7, 33))
    np.testing.assert_array_equal(second.detach().numpy(),
                                  x.detach().numpy() * dropout_mask_ref(7 * 33, 0.25, 2024, 1).reshape(7, 33))
    (first * 3.0).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), 3.0 * dropout_mask_ref(7 * 33, 0.25, 2024, 0).reshape(7, 33))


def test_dropout2d_draws_one_value_per_channel():
    x = fastnn.tensor(rng.standard_normal((3, 5, 4, 6)))
    fastnn.manual_seed(-7)  # wraps to 2**64 - 7, as torch
    y = F.dropout2d(x, 0.5).numpy()
    mask = dropout_mask_ref(15, 0.5, 2 ** 64 - 7, 0).reshape(3, 5, 1, 1)
    np.testing.assert_array_equal(y, x.numpy() * mask)


@pytest.mark.parametrize("call, match", [
    (lambda: _C.dropout_mask((3,), 1.5, 0, 0), "'p' must be in"),
    (lambda: _C.dropout_mask((3,), float("nan"), 0, 0), "'p' must be in"),
    (lambda: _C.dropout_mask((-1, 3), 0.5, 0, 0), "non-negative"),
    (lambda: _C.dropout_mask((2 ** 30, 2 ** 30), 0.5, 0, 0), "2\\*\\*40"),
])
def test_bad_mask_arguments_raise_value_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# -- on a device -----------------------------------------------------------------------------------

def test_device_masks_equal_the_cpu_masks(backend):
    x = fastnn.tensor(rng.standard_normal((9, 65)), requires_grad=True)
    xd = x.detach().to("cuda").requires_grad_()
    fastnn.manual_seed(31)
    cpu = [F.dropout(x, 0.4), F.dropout2d(fastnn.tensor(np.ones((2, 3, 5, 5))), 0.5)]
    fastnn.manual_seed(31)
    dev = [F.dropout(xd, 0.4), F.dropout2d(fastnn.tensor(np.ones((2, 3, 5, 5))).to("cuda"), 0.5)]
    for c, d in zip(cpu, dev):
        np.testing.assert_array_equal(d.cpu().detach().numpy(), c.detach().numpy())
    cpu[0].sum().backward()
    dev[0].sum().backward()
    np.testing.assert_array_equal(xd.grad.cpu().numpy(), x.grad.numpy())


def test_graphed_steps_with_dropout_match_eager_steps(backend):
    data = rng.standard_normal((4, 16, 12)).astype(np.float32)
    labels = rng.integers(0, 5, (4, 16))

    def make():
        fastnn.manual_seed(3)
        model = nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 5)).to("cuda")
        return model, fastnn.optim.SGD(model.parameters(), lr=0.1)

    model, opt = make()
    fastnn.manual_seed(77)
    eager = []
    for x, y in zip(data, labels):
        opt.zero_grad()
        loss = F.cross_entropy(model(fastnn.tensor(x, device="cuda")), y)
        loss.backward()
        opt.step()
        eager.append(loss.item())
    eager_weights = [p.cpu().detach().numpy() for p in model.parameters()]

    model, opt = make()
    fastnn.manual_seed(77)
    step = fastnn.cuda.graphed_step(model, F.cross_entropy, opt, data[0], labels[0])
    graphed = [step(x, y).item() for x, y in zip(data, labels)]
    np.testing.assert_allclose(graphed, eager, rtol=1e-5, atol=1e-6)
    for p, w in zip(model.parameters(), eager_weights):
        np.testing.assert_allclose(p.cpu().detach().numpy(), w, rtol=1e-5, atol=1e-6)
