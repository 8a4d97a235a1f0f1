"""Datasets of ssl3d-bench: the embedded ``synth`` default and real-dataset loaders.

``get_dataset(name)`` returns a registered dataset class; ``list_datasets("model*")``
lists names with wildcards. Third-party packages add datasets through the
entry-point group ``ssl3d.datasets``.
"""

from ssl3d.datasets.base import (
    ALL_MODALITIES,
    DATASETS,
    MODALITY_GROUP,
    DataConfig,
    ShapeDataset,
    ShapeInfo,
    default_root,
    register_dataset,
)
from ssl3d.datasets.errors import DataFileError, DatasetNotPreparedError
from ssl3d.datasets import synth as _synth  # noqa: F401  (registers "synth")


def get_dataset(name: str) -> type[ShapeDataset]:
    """The dataset class registered as ``name`` (unknown names list the valid ones)."""
    return DATASETS.get(name)


def list_datasets(pattern: str = "*") -> list[str]:
    """Registered dataset names matching a shell-style wildcard."""
    return DATASETS.names(pattern)


__all__ = [
    "ALL_MODALITIES", "DATASETS", "MODALITY_GROUP", "DataConfig", "DataFileError", "DatasetNotPreparedError",
    "ShapeDataset", "ShapeInfo", "default_root", "get_dataset", "list_datasets", "register_dataset",
]
