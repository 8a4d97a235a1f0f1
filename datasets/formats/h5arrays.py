"""Reading named arrays out of an HDF5 file, every failure naming the file and the key."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ssl3d.datasets.errors import DataFileError

__all__ = ["read_h5_arrays"]


def read_h5_arrays(path: str | Path, keys: Sequence[str]) -> dict[str, np.ndarray]:
    """The arrays ``keys`` of the HDF5 file ``path``, read whole.

    Raises :class:`DataFileError` naming ``path`` when the file cannot be read as HDF5 or lacks a key
    (the message lists the keys it has).
    """
    import h5py  # only the readers of h5 releases pay for the import

    path = Path(path)
    try:
        with h5py.File(path, "r") as h5:
            for key in keys:
                if key not in h5:
                    raise DataFileError(path, f"missing dataset {key!r} (has: {', '.join(h5.keys()) or 'nothing'})")
            return {key: np.asarray(h5[key][...]) for key in keys}
    except OSError as exc:
        raise DataFileError(path, f"not a readable HDF5 file: {exc}") from None
