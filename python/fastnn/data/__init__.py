"""Datasets and batching: Dataset, TensorDataset, Subset, DataLoader, default_collate;
batch augmentation in fastnn.data.transforms."""
from fastnn.data.dataset import Dataset, Subset, TensorDataset
from fastnn.data.loader import DataLoader, default_collate
from fastnn.data import transforms

__all__ = ["Dataset", "TensorDataset", "Subset", "DataLoader", "default_collate", "transforms"]
