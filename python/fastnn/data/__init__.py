"""Datasets and batching: Dataset, TensorDataset, Subset, DataLoader, default_collate."""
from fastnn.data.dataset import Dataset, Subset, TensorDataset
from fastnn.data.loader import DataLoader, default_collate

__all__ = ["Dataset", "TensorDataset", "Subset", "DataLoader", "default_collate"]
