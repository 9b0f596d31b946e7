"""Datasets: the map-style protocol (`len(ds)`, `ds[i]`), arrays held in memory, subsets.

A dataset is anything with `__len__` and `__getitem__(int)`; `Dataset` is the base class to
subclass. `TensorDataset` holds arrays (numpy arrays or fastnn Tensors) that share their first
dimension and serves sample i as the tuple `(a[i], b[i], ...)`. It also serves a whole batch
in one indexing operation per array (`_get_batch`), which the DataLoader uses instead of a
Python loop over samples.
"""
from __future__ import annotations

import operator

import numpy as np

from fastnn._tensor import Tensor


class Dataset:
    """Base class of map-style datasets: subclasses define `__len__` and `__getitem__(index)`,
    where index is an int in [0, len(self))."""

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__(index)")

    def __len__(self) -> int:
        raise NotImplementedError(f"{type(self).__name__} must define __len__()")


class TensorDataset(Dataset):
    """Samples are the rows of the given arrays: `ds[i] == (arrays[0][i], arrays[1][i], ...)`.

    Each argument is a numpy array, a fastnn Tensor, or something numpy.asarray accepts (a list);
    all must have the same first dimension, the number of samples. Rows of Tensors come back as
    Tensors, rows of arrays as arrays (views: no copy). `.tensors` holds the arguments
    (lists converted to arrays).
    """

    def __init__(self, *arrays):
        if not arrays:
            raise ValueError("TensorDataset: expected at least one array, got none")
        tensors, datas = [], []
        for i, a in enumerate(arrays):
            if isinstance(a, Tensor):
                data = a.data
            else:
                try:
                    a = data = np.asarray(a)
                except ValueError as error:  # ragged nested lists
                    raise ValueError(f"TensorDataset: array {i} is not rectangular: {error}") from None
            if data.ndim == 0:
                raise ValueError(f"TensorDataset: array {i} is 0-d (a scalar); every array needs a first "
                                 f"dimension that indexes the samples")
            tensors.append(a)
            datas.append(data)
        sizes = [d.shape[0] for d in datas]
        if len(set(sizes)) != 1:
            described = ", ".join(f"array {i}: {tuple(d.shape)}" for i, d in enumerate(datas))
            raise ValueError(f"TensorDataset: all arrays must have the same first dimension (the number "
                             f"of samples), got {described}")
        self.tensors = tuple(tensors)
        self._arrays = tuple(datas)
        self._is_tensor = tuple(isinstance(t, Tensor) for t in tensors)
        self._length = sizes[0]

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index):
        return tuple(Tensor(a[index]) if is_tensor else a[index]
                     for a, is_tensor in zip(self._arrays, self._is_tensor))

    def _get_batch(self, indices: np.ndarray) -> tuple:
        """The collated batch of samples `indices` (an int array): one gather per array, a copy."""
        return tuple(Tensor(a[indices]) if is_tensor else a[indices]
                     for a, is_tensor in zip(self._arrays, self._is_tensor))


class Subset(Dataset):
    """The samples `indices` of `dataset`, in that order: `Subset(ds, idx)[i] == ds[idx[i]]`."""

    def __init__(self, dataset, indices):
        indices = np.asarray(indices)
        if indices.ndim != 1 or (indices.size and indices.dtype.kind not in "iu"):
            raise ValueError(f"Subset: indices must be a 1-D sequence of ints, got an array of shape "
                             f"{indices.shape} and dtype {indices.dtype}")
        n = len(dataset)
        if indices.size and (indices.min() < -n or indices.max() >= n):
            raise IndexError(f"Subset: indices must lie in [{-n}, {n}) for a dataset of {n} samples, got "
                             f"values from {indices.min()} to {indices.max()}")
        self.dataset = dataset
        self.indices = indices.astype(np.int64) % max(n, 1)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index):
        return self.dataset[int(self.indices[operator.index(index)])]


def batch_fetcher(dataset):
    """A function indices -> collated batch that gathers whole batches at once, or None when the
    dataset has no such fast path (then the loader collates sample by sample)."""
    if isinstance(dataset, TensorDataset):
        return dataset._get_batch
    if isinstance(dataset, Subset):
        inner = batch_fetcher(dataset.dataset)
        if inner is not None:
            indices = dataset.indices
            return lambda batch: inner(indices[batch])
    return None
