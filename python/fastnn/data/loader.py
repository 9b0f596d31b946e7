"""DataLoader: batches of a dataset, shuffled with a seed, optionally prepared one batch ahead
on a background thread.

Order. Each pass (`iter(loader)`) draws one permutation of range(len(dataset)) (or takes them in
order without shuffle) in the calling thread, then cuts it into batches of batch_size (the last
one shorter, or dropped with drop_last). With `seed`, the loader owns a numpy Generator seeded
once, so loaders built with the same seed give the same sequence of epochs and each epoch a new
permutation. Without it, permutations come from fastnn's global generator (`fastnn.manual_seed`).

Batches. `default_collate` stacks a list of samples; for a TensorDataset (or a Subset of one)
and no collate_fn, the loader skips the per-sample loop and gathers each batch with one fancy
index per array, which gives the same result.

Prefetch. With prefetch=True one daemon thread runs ahead and fills a queue of at most
`PREFETCH_DEPTH` batches. An exception in it is re-raised by the consumer's next(). The thread
stops when the pass ends, when the iterator is closed or garbage collected (a `break` out of the
for loop), and, being a daemon, never holds up interpreter exit.
"""
from __future__ import annotations

import collections.abc
import operator
import queue
import threading

import numpy as np

from fastnn import _tensor
from fastnn._tensor import Tensor
from fastnn.data.dataset import batch_fetcher

PREFETCH_DEPTH = 2


# ---------------------------------------------------------------------------------------------
# collate

def default_collate(batch):
    """Stack a list of samples into a batch, recursively.

    numpy arrays -> one array with a new first axis; Tensors -> one Tensor; numpy scalars -> an
    array of their dtype; Python bools/ints/floats -> bool/int64/float32 arrays; strings -> the
    list unchanged; tuples, lists and dicts -> the same container of collated fields.
    """
    if not isinstance(batch, collections.abc.Sequence) or isinstance(batch, (str, bytes)):
        raise TypeError(f"default_collate: expected a list of samples, got {type(batch).__name__}")
    if len(batch) == 0:
        raise ValueError("default_collate: cannot collate an empty list of samples")
    first = batch[0]
    if isinstance(first, Tensor):
        _check_same_type(batch, Tensor)
        return Tensor(_stack([t.data for t in batch]))
    if isinstance(first, np.ndarray):
        _check_same_type(batch, np.ndarray)
        return _stack(batch)
    if isinstance(first, np.generic):
        return np.array(batch, dtype=first.dtype)
    if isinstance(first, bool):
        return np.array(batch, dtype=np.bool_)
    if isinstance(first, int):
        return np.array(batch, dtype=np.int64)
    if isinstance(first, float):
        return np.array(batch, dtype=np.float32)
    if isinstance(first, (str, bytes)):
        return list(batch)
    if isinstance(first, collections.abc.Mapping):
        keys = first.keys()
        for sample in batch:
            if not isinstance(sample, collections.abc.Mapping) or sample.keys() != keys:
                raise ValueError(f"default_collate: all dict samples must have the same keys, got "
                                 f"{sorted(map(str, keys))} and "
                                 f"{sorted(map(str, sample.keys())) if isinstance(sample, dict) else sample!r}")
        return {key: default_collate([sample[key] for sample in batch]) for key in keys}
    if isinstance(first, (tuple, list)):
        size = len(first)
        for sample in batch:
            if not isinstance(sample, (tuple, list)) or len(sample) != size:
                raise ValueError(f"default_collate: all samples must have the same number of fields, "
                                 f"got {size} and {len(sample) if isinstance(sample, (tuple, list)) else sample!r}")
        fields = [default_collate([sample[i] for sample in batch]) for i in range(size)]
        if isinstance(first, tuple) and hasattr(first, "_fields"):  # namedtuple
            return type(first)(*fields)
        return tuple(fields) if isinstance(first, tuple) else fields
    raise TypeError(f"default_collate: cannot batch samples of type {type(first).__name__}; expected "
                    f"numpy arrays, Tensors, numbers, strings, or tuples/lists/dicts of them; "
                    f"pass collate_fn= to the DataLoader")


def _check_same_type(batch, kind):
    for sample in batch:
        if not isinstance(sample, kind):
            raise TypeError(f"default_collate: samples mix {kind.__name__} and {type(sample).__name__}")


def _stack(arrays):
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise ValueError(f"default_collate: cannot stack samples of different shapes "
                         f"{sorted(shapes)}; pad or resize them, or pass collate_fn=")
    return np.stack(arrays)


# ---------------------------------------------------------------------------------------------
# the loader

class DataLoader:
    """Iterate over `dataset` in batches.

    dataset: anything with __len__ and __getitem__(int) (a Dataset, a TensorDataset, a list).
    batch_size: samples per batch; shuffle: a new random order each pass; drop_last: drop the
    last batch when it is short; collate_fn: list of samples -> batch (default_collate);
    seed: an int making the shuffles reproducible (else fastnn's global generator is used);
    prefetch: prepare the next batch on a background thread while the caller works.
    len(loader) is the number of batches per pass.
    """

    def __init__(self, dataset, batch_size: int = 1, shuffle: bool = False, drop_last: bool = False,
                 collate_fn=None, seed=None, prefetch: bool = False):
        if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
            raise TypeError(f"DataLoader: dataset must define __len__ and __getitem__, got "
                            f"{type(dataset).__name__}")
        if isinstance(batch_size, (bool, np.bool_)):
            raise TypeError(f"DataLoader: batch_size must be a positive int, got {batch_size!r}")
        try:
            batch_size = operator.index(batch_size)
        except TypeError:
            raise TypeError(f"DataLoader: batch_size must be a positive int, got "
                            f"{type(batch_size).__name__} {batch_size!r}") from None
        if batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be a positive int, got batch_size={batch_size}")
        if collate_fn is not None and not callable(collate_fn):
            raise TypeError(f"DataLoader: collate_fn must be callable, got {type(collate_fn).__name__}")
        if seed is not None:
            if isinstance(seed, (bool, np.bool_)):
                raise TypeError(f"DataLoader: seed must be an int or None, got {seed!r}")
            try:
                seed = operator.index(seed)
            except TypeError:
                raise TypeError(f"DataLoader: seed must be an int or None, got "
                                f"{type(seed).__name__} {seed!r}") from None
            if seed < 0:
                raise ValueError(f"DataLoader: seed must be non-negative, got seed={seed}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.collate_fn = collate_fn
        self.seed = seed
        self.prefetch = bool(prefetch)
        self._generator = np.random.default_rng(seed) if seed is not None else None

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _batch_indices(self) -> list:
        n = len(self.dataset)
        if self.shuffle:
            generator = self._generator if self._generator is not None else _tensor.default_generator()
            order = generator.permutation(n)
        else:
            order = np.arange(n)
        stop = n - n % self.batch_size if self.drop_last else n
        return [order[i:i + self.batch_size] for i in range(0, stop, self.batch_size)]

    def _batches(self, index_batches):
        fetch = batch_fetcher(self.dataset) if self.collate_fn is None else None
        if fetch is not None:
            for indices in index_batches:
                yield fetch(indices)
            return
        collate = self.collate_fn if self.collate_fn is not None else default_collate
        dataset = self.dataset
        for indices in index_batches:
            yield collate([dataset[int(i)] for i in indices])

    def __iter__(self):
        # The order is drawn here, in the caller's thread, so prefetching changes nothing in it.
        batches = self._batches(self._batch_indices())
        if self.prefetch:
            return _PrefetchIterator(batches)
        return batches

    def __repr__(self) -> str:
        return (f"DataLoader(dataset={type(self.dataset).__name__} of {len(self.dataset)}, "
                f"batch_size={self.batch_size}, shuffle={self.shuffle}, drop_last={self.drop_last}, "
                f"seed={self.seed}, prefetch={self.prefetch})")


# ---------------------------------------------------------------------------------------------
# background prefetch

_END = object()


class _WorkerError:
    def __init__(self, error: BaseException):
        self.error = error


def _put(q: queue.Queue, item, stop: threading.Event) -> bool:
    """Put item unless stop is set first; waits in short slices so a stop is noticed."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.05)
            return True
        except queue.Full:
            continue
    return False


def _prefetch_worker(batches, q: queue.Queue, stop: threading.Event) -> None:
    # Holds no reference to the iterator object, so dropping that object stops this thread.
    try:
        for batch in batches:
            if not _put(q, batch, stop):
                return
        last = _END
    except BaseException as error:  # noqa: BLE001 - handed to the consumer, which re-raises it
        last = _WorkerError(error)
    finally:
        if stop.is_set():
            batches.close()
    _put(q, last, stop)


class _PrefetchIterator:
    """Yields the batches that a daemon worker thread puts in a bounded queue."""

    def __init__(self, batches):
        self._queue = queue.Queue(maxsize=PREFETCH_DEPTH)
        self._stop = threading.Event()
        self._done = False
        self._thread = threading.Thread(target=_prefetch_worker, args=(batches, self._queue, self._stop),
                                        name="fastnn-DataLoader-prefetch", daemon=True)
        self._thread.start()

    def __iter__(self):
        return self

    def __next__(self):
        if self._done:
            raise StopIteration
        item = self._queue.get()
        if item is _END:
            self._done = True
            self._thread.join()
            raise StopIteration
        if isinstance(item, _WorkerError):
            self._done = True
            self._thread.join()
            raise item.error
        return item

    def close(self) -> None:
        """Stop the worker (it exits within a few tens of milliseconds) and end the iteration."""
        self._done = True
        stop = getattr(self, "_stop", None)  # absent if __init__ failed part-way
        if stop is not None:
            stop.set()

    def __del__(self):
        self.close()
