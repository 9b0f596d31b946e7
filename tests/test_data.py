"""fastnn.data: Dataset, TensorDataset, Subset, default_collate and DataLoader (coverage of
every sample per epoch, drop_last, seeded shuffles, the TensorDataset fast path, the background
prefetch thread and its error and shutdown behaviour), and bad arguments."""
import collections
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import fastnn
from fastnn.data import DataLoader, Dataset, Subset, TensorDataset, default_collate


class Squares(Dataset):
    """A map-style dataset computed per sample: (index as float32 vector, index ** 2)."""

    def __init__(self, n, fail_at=None):
        self.n, self.fail_at = n, fail_at

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if i == self.fail_at:
            raise KeyError(f"sample {i} is broken")
        return np.full(3, i, dtype=np.float32), i * i


def indices_seen(batches):
    """The sample indices in a list of batches whose second field is the index."""
    return np.concatenate([np.asarray(b[1]) for b in batches]) if batches else np.array([], int)


def wait_until_stopped(thread, seconds=5.0):
    thread.join(seconds)
    return not thread.is_alive()


def prefetch_threads():
    return [t for t in threading.enumerate() if t.name == "fastnn-DataLoader-prefetch"]


# ---------------------------------------------------------------------------------------------
# datasets

def test_dataset_base_class_asks_for_its_methods():
    with pytest.raises(NotImplementedError, match="__getitem__"):
        Dataset()[0]
    with pytest.raises(NotImplementedError, match="__len__"):
        len(Dataset())


def test_tensor_dataset_rows_keep_their_kind():
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    y = fastnn.tensor([0, 1, 2, 3])
    ds = TensorDataset(x, y, [[1, 2]] * 4)
    assert len(ds) == 4
    a, b, c = ds[2]
    np.testing.assert_array_equal(a, x[2])
    assert isinstance(b, fastnn.Tensor) and b.item() == 2
    np.testing.assert_array_equal(c, [1, 2])
    assert ds.tensors[0] is x and ds.tensors[1] is y and isinstance(ds.tensors[2], np.ndarray)
    assert ds[-1][1].item() == 3
    with pytest.raises(IndexError):
        ds[4]


@pytest.mark.parametrize("arrays, error, match", [
    ((), ValueError, "at least one array"),
    ((np.zeros((5, 2)), np.zeros(4)), ValueError, r"same first dimension.*array 0: \(5, 2\), array 1: \(4,\)"),
    ((np.float32(3.0),), ValueError, "0-d"),
    (([[1, 2], [3]],), ValueError, "not rectangular"),
])
def test_tensor_dataset_bad_arrays(arrays, error, match):
    with pytest.raises(error, match=match):
        TensorDataset(*arrays)


def test_subset_and_its_bad_indices():
    ds = TensorDataset(np.arange(10) * 10)
    sub = Subset(ds, [3, -1, 0])
    assert len(sub) == 3 and [int(sub[i][0]) for i in range(3)] == [30, 90, 0]
    with pytest.raises(IndexError, match=r"indices must lie in \[-10, 10\)"):
        Subset(ds, [10])
    with pytest.raises(ValueError, match="1-D sequence of ints"):
        Subset(ds, [0.5])


# ---------------------------------------------------------------------------------------------
# default_collate

Point = collections.namedtuple("Point", "x y")


def test_default_collate_stacks_every_supported_kind():
    batch = default_collate([
        {"image": np.ones((2, 2), np.uint8), "label": 1, "w": 0.5, "ok": True, "name": "a",
         "t": fastnn.tensor([1.0, 2.0]), "s": np.float64(1.5), "p": Point(1, [2.0, 3])},
        {"image": np.zeros((2, 2), np.uint8), "label": 7, "w": 1.5, "ok": False, "name": "b",
         "t": fastnn.tensor([3.0, 4.0]), "s": np.float64(2.5), "p": Point(4, [5.0, 6])},
    ])
    assert batch["image"].shape == (2, 2, 2) and batch["image"].dtype == np.uint8
    assert batch["label"].dtype == np.int64 and batch["label"].tolist() == [1, 7]
    assert batch["w"].dtype == np.float32 and batch["ok"].dtype == np.bool_
    assert batch["name"] == ["a", "b"]
    assert isinstance(batch["t"], fastnn.Tensor) and batch["t"].shape == (2, 2)
    assert batch["s"].dtype == np.float64
    assert isinstance(batch["p"], Point) and batch["p"].x.tolist() == [1, 4]
    assert isinstance(batch["p"].y, list) and batch["p"].y[0].tolist() == [2.0, 5.0]


@pytest.mark.parametrize("samples, error, match", [
    ([np.zeros(3), np.zeros(4)], ValueError, r"different shapes \[\(3,\), \(4,\)\]"),
    ([(1, 2), (1,)], ValueError, "same number of fields"),
    ([{"a": 1}, {"b": 1}], ValueError, "same keys"),
    ([object(), object()], TypeError, "cannot batch samples of type object"),
    ([np.zeros(2), fastnn.zeros(2)], TypeError, "mix ndarray and Tensor"),
    ([], ValueError, "empty"),
])
def test_default_collate_errors(samples, error, match):
    with pytest.raises(error, match=match):
        default_collate(samples)


# ---------------------------------------------------------------------------------------------
# DataLoader: order and coverage

@pytest.mark.parametrize("n", [0, 1, 10, 23, 64])
@pytest.mark.parametrize("batch_size", [1, 7, 10, 64])
@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("drop_last", [False, True])
def test_every_sample_exactly_once_per_epoch(n, batch_size, shuffle, drop_last):
    ds = TensorDataset(np.arange(2 * n, dtype=np.float32).reshape(n, 2), np.arange(n))
    loader = DataLoader(ds, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, seed=3)
    kept = n - n % batch_size if drop_last else n
    assert len(loader) == (kept + batch_size - 1) // batch_size
    for _ in range(2):  # two epochs
        batches = list(loader)
        assert len(batches) == len(loader)
        assert all(len(b[1]) == batch_size for b in (batches if drop_last else batches[:-1]))
        seen = indices_seen(batches)
        assert len(seen) == kept and len(np.unique(seen)) == kept
        if not drop_last:
            np.testing.assert_array_equal(np.sort(seen), np.arange(n))
        if not shuffle:
            np.testing.assert_array_equal(seen, np.arange(kept))
        for x, y in batches:  # features travel with their labels
            np.testing.assert_array_equal(x[:, 0], 2 * y)


def test_shuffle_is_reproducible_with_a_seed_and_new_each_epoch():
    ds = TensorDataset(np.arange(50))

    def epochs(loader, count=3):
        return [np.concatenate([b[0] for b in loader]).tolist() for _ in range(count)]

    first = epochs(DataLoader(ds, 8, shuffle=True, seed=11))
    assert first == epochs(DataLoader(ds, 8, shuffle=True, seed=11))
    assert first[0] != first[1] != first[2]
    assert first != epochs(DataLoader(ds, 8, shuffle=True, seed=12))
    assert first[0] != list(range(50))


def test_shuffle_without_seed_follows_fastnn_manual_seed():
    ds = TensorDataset(np.arange(40))
    fastnn.manual_seed(5)
    a = [b[0].tolist() for b in DataLoader(ds, 10, shuffle=True)]
    fastnn.manual_seed(5)
    b = [b[0].tolist() for b in DataLoader(ds, 10, shuffle=True)]
    assert a == b and sorted(sum(a, [])) == list(range(40))


def test_fast_path_gathers_whole_batches_and_equals_the_per_sample_path(monkeypatch):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((37, 3, 4)).astype(np.float32), rng.integers(0, 10, 37)
    per_sample = [(s[0], s[1]) for s in zip(x, y)]  # a list of samples: the generic path
    expected = list(DataLoader(per_sample, 8, shuffle=True, seed=4))

    def no_per_sample_access(self, index):
        raise AssertionError("the fast path must not index samples one by one")

    monkeypatch.setattr(TensorDataset, "__getitem__", no_per_sample_access)
    for dataset in (TensorDataset(x, y), Subset(TensorDataset(x, y), np.arange(37))):
        got = list(DataLoader(dataset, 8, shuffle=True, seed=4))
        assert len(got) == len(expected) == 5
        for (gx, gy), (ex, ey) in zip(got, expected):
            np.testing.assert_array_equal(gx, ex)
            np.testing.assert_array_equal(gy, ey)
            assert gx.dtype == ex.dtype and gy.dtype == ey.dtype


def test_fast_path_through_a_subset_and_with_tensors():
    base = TensorDataset(fastnn.tensor(np.arange(20.0)), np.arange(20))
    sub = Subset(base, np.arange(19, -1, -2))  # 19, 17, ..., 1
    batches = list(DataLoader(sub, 4))
    assert isinstance(batches[0][0], fastnn.Tensor)
    assert np.concatenate([b[1] for b in batches]).tolist() == list(range(19, 0, -2))
    assert batches[0][0].numpy().tolist() == [19.0, 17.0, 15.0, 13.0]


def test_batches_are_copies_not_views_of_the_dataset():
    x = np.zeros((6, 2), np.float32)
    batch = next(iter(DataLoader(TensorDataset(x), 3)))[0]
    batch += 1
    assert not x.any()


def test_custom_collate_fn_gets_the_list_of_samples():
    calls = []

    def collate(samples):
        calls.append(len(samples))
        return [s[1] for s in samples]

    loader = DataLoader(Squares(7), batch_size=3, collate_fn=collate)
    assert list(loader) == [[0, 1, 4], [9, 16, 25], [36]] and calls == [3, 3, 1]
    # with a collate_fn a TensorDataset goes through it too
    assert list(DataLoader(TensorDataset(np.arange(4)), 2, collate_fn=len)) == [2, 2]


# ---------------------------------------------------------------------------------------------
# DataLoader: prefetch on a background thread

@pytest.mark.parametrize("dataset", [Squares(29), TensorDataset(np.arange(58.0).reshape(29, 2), np.arange(29))],
                         ids=["per-sample", "TensorDataset"])
def test_prefetch_yields_the_same_batches(dataset):
    plain = list(DataLoader(dataset, 4, shuffle=True, seed=9))
    loader = DataLoader(dataset, 4, shuffle=True, seed=9, prefetch=True)
    fetched = list(loader)
    assert len(fetched) == len(plain) == len(loader)
    for a, b in zip(fetched, plain):
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u, v)


def test_prefetch_thread_ends_with_the_epoch():
    iterator = iter(DataLoader(Squares(10), 3, prefetch=True))
    thread = iterator._thread
    assert thread.daemon
    assert len(list(iterator)) == 4
    assert wait_until_stopped(thread)
    with pytest.raises(StopIteration):
        next(iterator)


def test_worker_exception_is_raised_in_the_consumer():
    loader = DataLoader(Squares(20, fail_at=9), batch_size=4, prefetch=True)
    iterator = iter(loader)
    thread = iterator._thread
    assert next(iterator)[1].tolist() == [0, 1, 4, 9]
    assert next(iterator)[1].tolist() == [16, 25, 36, 49]
    with pytest.raises(KeyError, match="sample 9 is broken"):
        next(iterator)
    assert wait_until_stopped(thread)
    with pytest.raises(StopIteration):  # the pass is over
        next(iterator)
    with pytest.raises(KeyError):  # and without prefetch, the same error
        list(DataLoader(Squares(20, fail_at=9), batch_size=4))


def test_break_and_abandoned_iterators_stop_the_worker():
    before = len(prefetch_threads())
    loader = DataLoader(Squares(1000), batch_size=2, prefetch=True)
    for _ in loader:
        break  # the for loop drops its iterator
    iterator = iter(loader)
    next(iterator)
    thread = iterator._thread
    del iterator
    assert wait_until_stopped(thread)
    deadline = time.monotonic() + 5
    while len(prefetch_threads()) > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(prefetch_threads()) == before
    closing = iter(loader)  # close() stops it too
    closing.close()
    assert wait_until_stopped(closing._thread)


def test_an_abandoned_prefetch_does_not_hold_up_interpreter_exit():
    script = (
        "import numpy as np, time\n"
        "from fastnn.data import DataLoader, Dataset\n"
        "class Slow(Dataset):\n"
        "    def __len__(self): return 100\n"
        "    def __getitem__(self, i):\n"
        "        time.sleep(0.01)\n"
        "        return np.zeros(2)\n"
        "it = iter(DataLoader(Slow(), 5, prefetch=True))\n"
        "next(it)\n"
        "KEEP = it  # still referenced at exit, worker running\n"
        "print('exiting')\n"
    )
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "exiting"
    assert time.monotonic() - start < 20


# ---------------------------------------------------------------------------------------------
# bad arguments

@pytest.mark.parametrize("kwargs, error, match", [
    ({"batch_size": 0}, ValueError, "batch_size must be a positive int, got batch_size=0"),
    ({"batch_size": -3}, ValueError, "batch_size must be a positive int"),
    ({"batch_size": 2.5}, TypeError, "batch_size must be a positive int"),
    ({"batch_size": True}, TypeError, "batch_size must be a positive int"),
    ({"seed": -1}, ValueError, "seed must be non-negative"),
    ({"seed": "7"}, TypeError, "seed must be an int or None"),
    ({"collate_fn": 3}, TypeError, "collate_fn must be callable"),
])
def test_bad_loader_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        DataLoader(TensorDataset(np.arange(4)), **kwargs)


def test_dataset_must_be_map_style():
    with pytest.raises(TypeError, match="dataset must define __len__ and __getitem__"):
        DataLoader(x for x in range(3))
    assert "batch_size=2" in repr(DataLoader(TensorDataset(np.arange(4)), 2))
