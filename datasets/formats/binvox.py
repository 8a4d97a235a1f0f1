r"""Reader and writer for binvox voxel files (``model.binvox`` of 3D-R2N2's ShapeNetVox32).

A binvox file is a short ASCII header followed by run-length-encoded bytes::

    #binvox 1
    dim 32 32 32
    translate -0.2 -0.3 -0.1
    scale 0.7
    data
    <value byte><count byte><value byte><count byte>...

Each (value, count) pair stands for ``count`` (1..255) consecutive voxels of
``value`` (0 or 1; version 2 files allow 1..255 for "set"). The runs walk the
grid with **y varying fastest, then z, then x**, i.e. the voxel (x, y, z) of a
``d^3`` grid is run-length position

.. math::
    \mathrm{index}(x, y, z) = x\,d^2 + z\,d + y .

:func:`read_binvox` undoes this order and returns the usual ``[x, y, z]``
array. The voxel axes are the axes of the mesh that was voxelised (binvox
only translates and scales it into the unit cube; voxel (i, j, k) has its
centre at ``translate + scale * ((i, j, k) + 0.5) / d``). ShapeNet meshes are
+Y up, so ShapeNetVox32 grids read this way are ``[x, y, z]`` with +Y up
(array axis 1), the project's convention; a grid voxelised from a Z-up mesh
(ModelNet's voxel releases) needs the mesh's rotation
(:func:`~ssl3d.datasets.formats.modelnet.z_up_to_y_up_grid`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ssl3d.core.io import atomic_path
from ssl3d.datasets.errors import DataFileError

__all__ = ["BinvoxHeader", "read_binvox", "write_binvox"]

_MAX_HEADER = 1024  # real headers are < 100 bytes; bounds the search for 'data'


@dataclass(frozen=True)
class BinvoxHeader:
    """The header fields of a binvox file.

    Args:
        version: 1 (values 0/1) or 2 (any non-zero value is set).
        dim: grid resolution ``d`` (binvox grids here are cubic).
        translate: ``(t_x, t_y, t_z)`` of the normalisation (mesh units).
        scale: edge length of the voxelised cube in mesh units.
    """

    version: int
    dim: int
    translate: tuple[float, float, float]
    scale: float


def _parse_header(path: Path, raw: bytes) -> tuple[BinvoxHeader, int]:
    end = raw.find(b"\ndata\n", 0, _MAX_HEADER)
    if end < 0:
        if not raw.startswith(b"#binvox"):
            raise DataFileError(path, "not a binvox file (does not start with '#binvox')")
        raise DataFileError(path, "header has no 'data' line within its first 1 KiB")
    lines = raw[:end].decode("ascii", errors="replace").replace("\r", "").split("\n")
    first = lines[0].split()
    if len(first) != 2 or first[0] != "#binvox" or first[1] not in ("1", "2"):
        raise DataFileError(path, f"first line must be '#binvox 1' or '#binvox 2', got {lines[0]!r}")
    fields: dict[str, list[str]] = {}
    for line in lines[1:]:
        tokens = line.split()
        if not tokens or tokens[0].startswith("#"):
            continue  # comment lines (trimesh writes '# generated in `trimesh`') carry no header field
        if tokens[0] not in ("dim", "translate", "scale"):
            raise DataFileError(path, f"unknown header line {line!r}")
        fields[tokens[0]] = tokens[1:]
    if "dim" not in fields:
        raise DataFileError(path, "header has no 'dim' line")
    try:
        dims = [int(t) for t in fields["dim"]]
        translate = [float(t) for t in fields.get("translate", ["0", "0", "0"])]
        scale = [float(t) for t in fields.get("scale", ["1"])]
    except ValueError as exc:
        raise DataFileError(path, f"malformed header number: {exc}") from None
    if len(dims) != 3 or min(dims) <= 0:
        raise DataFileError(path, f"'dim' must be three positive integers, got {fields['dim']}")
    if len(set(dims)) != 1:
        raise DataFileError(path, f"only cubic grids are supported, got dim {dims}")
    if len(translate) != 3 or len(scale) != 1:
        raise DataFileError(path, "'translate' needs 3 numbers and 'scale' 1")
    header = BinvoxHeader(int(first[1]), dims[0], (translate[0], translate[1], translate[2]), scale[0])
    return header, end + len(b"\ndata\n")


def read_binvox(
    path: str | os.PathLike[str], *, return_header: bool = False, allow_empty_runs: bool = False
) -> np.ndarray | tuple[np.ndarray, BinvoxHeader]:
    """Read a binvox file into a boolean occupancy grid indexed ``[x, y, z]``.

    Header lines starting with ``#`` after the first are comments (trimesh writes one).

    Args:
        path: the ``.binvox`` file.
        return_header: also return the :class:`BinvoxHeader`.
        allow_empty_runs: accept runs of length 0 (they add no voxel). binvox itself never
            writes them, but trimesh's encoder does: 159 of the 4,899 files of the ModelNet10
            32^3 voxel release hold some, with the right voxel total.

    Returns:
        bool ``[d, d, d]`` occupancy (``occ[x, y, z]``), or ``(occ, header)``.

    Raises:
        DataFileError: missing file, bad header, truncated or over-long
            run-length data, a zero run length (unless allowed), or (version 1) a value other
            than 0/1.

    Shapes:
        - **occupancy:** ``[d, d, d]``, axis 1 is up for ShapeNet grids.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataFileError(path, "file not found") from None
    except OSError as exc:
        raise DataFileError(path, f"cannot read file: {exc.strerror or exc}") from None
    header, start = _parse_header(path, raw)
    d = header.dim
    body = np.frombuffer(raw, dtype=np.uint8, offset=start)
    if body.size % 2:
        raise DataFileError(path, f"run-length data has an odd number of bytes ({body.size}); file is truncated")
    values, counts = body[0::2], body[1::2].astype(np.int64)
    if not allow_empty_runs and (counts == 0).any():
        raise DataFileError(path, f"run {int(np.flatnonzero(counts == 0)[0])} has length 0 (allowed 1..255)")
    if header.version == 1 and (values > 1).any():
        raise DataFileError(path, f"version 1 voxel values must be 0 or 1, found {int(values.max())}")
    total = int(counts.sum())
    if total != d**3:
        where = "ends after" if total < d**3 else "describes"
        raise DataFileError(path, f"expected {d**3} voxels for dim {d}, run-length data {where} {total}")
    flat = np.repeat(values != 0, counts)
    # Stored order is [x, z, y] with y fastest; swap to [x, y, z].
    occupancy = np.ascontiguousarray(flat.reshape(d, d, d).transpose(0, 2, 1))
    return (occupancy, header) if return_header else occupancy


def _run_length(flat: np.ndarray) -> bytes:
    """Encode a flat bool array as binvox (value, count<=255) byte pairs."""
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    starts = np.concatenate([[0], change])
    lengths = np.diff(np.concatenate([starts, [flat.size]]))
    run_values = flat[starts].astype(np.uint8)
    # A run longer than 255 becomes several pairs of the same value.
    pieces = -(-lengths // 255)
    out_values = np.repeat(run_values, pieces)
    out_counts = np.full(out_values.size, 255, dtype=np.int64)
    last = np.cumsum(pieces) - 1
    out_counts[last] = lengths - 255 * (pieces - 1)
    pairs = np.empty(2 * out_values.size, dtype=np.uint8)
    pairs[0::2] = out_values
    pairs[1::2] = out_counts
    return pairs.tobytes()


def write_binvox(
    path: str | os.PathLike[str],
    occupancy: np.ndarray,
    translate: Sequence[float] = (0.0, 0.0, 0.0),
    scale: float = 1.0,
) -> None:
    """Write a ``[x, y, z]`` occupancy grid as a version-1 binvox file (atomically).

    Args:
        path: destination ``.binvox`` file.
        occupancy: cubic ``[d, d, d]`` array; non-zero means occupied.
        translate: header ``translate`` (mesh position of the grid corner).
        scale: header ``scale`` (mesh size of the grid).

    Raises:
        ValueError: ``occupancy`` is not a non-empty cubic 3-D array, or
            ``translate`` does not hold three numbers.
    """
    occ = np.asarray(occupancy)
    if occ.ndim != 3 or occ.shape[0] == 0 or len(set(occ.shape)) != 1:
        raise ValueError(f"occupancy must be a cubic [d, d, d] array, got shape {occ.shape}")
    if len(translate) != 3:
        raise ValueError(f"translate must hold 3 numbers, got {translate!r}")
    d = occ.shape[0]
    flat = (occ != 0).transpose(0, 2, 1).reshape(-1)
    header = (
        f"#binvox 1\ndim {d} {d} {d}\n"
        f"translate {float(translate[0]):.9g} {float(translate[1]):.9g} {float(translate[2]):.9g}\n"
        f"scale {float(scale):.9g}\ndata\n"
    ).encode("ascii")
    with atomic_path(path) as tmp:
        tmp.write_bytes(header + _run_length(flat))
