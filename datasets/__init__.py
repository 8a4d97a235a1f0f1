"""Datasets of ssl3d-bench: the embedded ``synth`` default and real-dataset loaders.

``get_dataset(name)`` returns a registered dataset class; ``list_datasets("model*")``
lists names with wildcards. Third-party packages add datasets through the
entry-point group ``ssl3d.datasets``.
"""

from ssl3d.datasets.base import (
    ALL_MODALITIES,
    DATASETS,
    DataConfig,
    ShapeDataset,
    ShapeInfo,
    default_root,
    register_dataset,
)
from ssl3d.datasets.errors import DataFileError, DatasetNotPreparedError
from ssl3d.datasets.modalities.registry import MODALITY_GROUPS, MeshShape, ModalityGroup, register_modality_group
from ssl3d.datasets import synth as _synth  # noqa: F401  (registers "synth")
from ssl3d.datasets import modelnet as _modelnet  # noqa: F401  (modelnet40, modelnet10, modelnet40-h5, modelnet40-resampled)
from ssl3d.datasets import shapenetpart as _shapenetpart  # noqa: F401  (shapenetpart)
from ssl3d.datasets import r2n2 as _r2n2  # noqa: F401  (r2n2)
from ssl3d.datasets import pix3d as _pix3d  # noqa: F401  (pix3d)
from ssl3d.datasets import synth_scenes as _synth_scenes  # noqa: F401  (synth-scenes)
from ssl3d.datasets import s3dis as _s3dis  # noqa: F401  (s3dis)
from ssl3d.datasets import scanobjectnn as _scanobjectnn  # noqa: F401  (scanobjectnn)


def get_dataset(name: str) -> type[ShapeDataset]:
    """The dataset class registered as ``name`` (unknown names list the valid ones)."""
    return DATASETS.get(name)


def list_datasets(pattern: str = "*") -> list[str]:
    """Registered dataset names matching a shell-style wildcard."""
    return DATASETS.names(pattern)


__all__ = [
    "ALL_MODALITIES", "DATASETS", "MODALITY_GROUPS", "DataConfig", "DataFileError", "DatasetNotPreparedError",
    "MeshShape", "ModalityGroup", "ShapeDataset", "ShapeInfo", "default_root", "get_dataset", "list_datasets",
    "register_dataset", "register_modality_group",
]
