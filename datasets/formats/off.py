"""Reader for Object File Format (OFF) meshes, as the Princeton ModelNet archives ship them.

An OFF file is line based::

    OFF
    # comments start with '#', anywhere on a line
    <n_vertices> <n_faces> <n_edges>
    x y z                      (n_vertices lines)
    k i_1 ... i_k [r g b [a]]  (n_faces lines: k >= 3 zero-based vertex indices,
                                optionally followed by a face colour)

The files in ``ModelNet40.zip`` / ``ModelNet10.zip`` deviate from this in ways
that a reader must accept: about 1% have the counts glued to the keyword on
the first line (``OFF490 518 0``), many use CRLF line ends and trailing
spaces, some contain blank lines, and some faces are polygons with more than
three corners. :func:`read_off` accepts all of these, fan-triangulates
polygons, ignores face colours, and rejects everything else (wrong counts,
indices out of range, non-numeric values, binary OFF) with a
:class:`~ssl3d.datasets.errors.DataFileError` that names the file and line.

The coordinates are returned exactly as stored; ModelNet meshes are Z-up and
are turned into this project's +Y-up frame by
:func:`ssl3d.datasets.formats.modelnet.z_up_to_y_up`, never silently here.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import numpy as np
import trimesh

from ssl3d.datasets.errors import DataFileError

__all__ = ["read_off", "parse_off_text"]

# Variants whose vertex lines may carry extra values (colour, normal) after x y z;
# those extras are ignored. 4OFF/nOFF (other dimensions) and binary OFF are refused.
_KEYWORDS = ("OFF", "COFF", "NOFF", "CNOFF", "STOFF", "STCOFF", "STNOFF", "STCNOFF")
_HEADER = re.compile(r"^(\w*?OFF)(.*)$")


def _data_lines(text: str) -> list[tuple[int, str]]:
    """Return ``(1-based line number, content)`` for every line with data left
    after removing comments and surrounding whitespace."""
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        content = line.split("#", 1)[0].strip()
        if content:
            out.append((number, content))
    return out


def _parse_counts(path: Path, number: int, tokens: list[str]) -> tuple[int, int]:
    if len(tokens) not in (2, 3):
        raise DataFileError(
            path,
            f"line {number}: expected '<n_vertices> <n_faces> <n_edges>', got {' '.join(tokens)!r}",
        )
    try:
        counts = [int(t) for t in tokens]
    except ValueError:
        raise DataFileError(path, f"line {number}: counts {' '.join(tokens)!r} are not integers") from None
    if min(counts) < 0:
        raise DataFileError(path, f"line {number}: negative count in {' '.join(tokens)!r}")
    return counts[0], counts[1]


def _fan_triangulate(path: Path, face_lines: list[tuple[int, str]], n_vertices: int) -> np.ndarray:
    """Parse face lines ``k i_1 .. i_k [colour]`` and fan-triangulate them in file order.

    A k-gon (i_1, ..., i_k) becomes the k-2 triangles (i_1, i_j, i_{j+1}),
    j = 2..k-1; this is exact for the convex, planar polygons CAD exporters write.
    """
    sizes = np.empty(len(face_lines), dtype=np.int64)
    rows: list[list[str]] = []
    for f, (number, content) in enumerate(face_lines):
        tokens = content.split()
        try:
            k = int(tokens[0])
        except ValueError:
            raise DataFileError(path, f"line {number}: face corner count {tokens[0]!r} is not an integer") from None
        if k < 3:
            raise DataFileError(path, f"line {number}: a face needs at least 3 vertices, this one has {k}")
        if len(tokens) < k + 1:
            raise DataFileError(path, f"line {number}: face announces {k} vertices but lists {len(tokens) - 1}")
        sizes[f] = k
        rows.append(tokens[1 : k + 1])

    n_triangles = sizes - 2
    starts = np.concatenate([[0], np.cumsum(n_triangles)[:-1]]) if len(sizes) else sizes
    triangles = np.empty((int(n_triangles.sum()), 3), dtype=np.int64)
    # Faces with the same corner count are converted in one numpy call; the
    # triangle offsets keep the original face order.
    for k in np.unique(sizes):
        which = np.flatnonzero(sizes == k)
        try:
            idx = np.array([rows[i] for i in which], dtype=np.int64)
        except ValueError:
            for i in which:
                for token in rows[i]:
                    if not re.fullmatch(r"[+-]?\d+", token):
                        raise DataFileError(
                            path, f"line {face_lines[i][0]}: vertex index {token!r} is not an integer"
                        ) from None
            raise
        bad = (idx < 0) | (idx >= n_vertices)
        if bad.any():
            i = which[int(np.flatnonzero(bad.any(axis=1))[0])]
            value = [int(t) for t in rows[i] if not 0 <= int(t) < n_vertices][0]
            raise DataFileError(
                path,
                f"line {face_lines[i][0]}: vertex index {value} out of range for {n_vertices} vertices",
            )
        for j in range(int(k) - 2):
            triangles[starts[which] + j, 0] = idx[:, 0]
            triangles[starts[which] + j, 1] = idx[:, j + 1]
            triangles[starts[which] + j, 2] = idx[:, j + 2]
    return triangles


def _parse_plain_triangles(text: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Vectorised parse of the common case: plain ``OFF`` (header possibly glued to the counts),
    no comments, vertices ``x y z``, faces ``3 i j k``. Returns None for anything else, so that
    the exact line-by-line parser handles (and reports) every other file."""
    stripped = text.lstrip()
    if "#" in stripped or not stripped.startswith("OFF") or stripped[3:4].isalpha():
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # older numpy warns and stops early: the size check catches it
            numbers = np.fromstring(stripped[3:], sep=" ")
    except ValueError:  # newer numpy refuses a malformed token outright
        return None
    if numbers.size < 3:
        return None
    n_vertices, n_faces = numbers[0], numbers[1]
    if n_vertices != int(n_vertices) or n_faces != int(n_faces) or n_vertices <= 0 or n_faces <= 0:
        return None
    n_vertices, n_faces = int(n_vertices), int(n_faces)
    data = numbers[3:]
    if data.size != 3 * n_vertices + 4 * n_faces:
        return None
    vertices = data[: 3 * n_vertices].reshape(n_vertices, 3)
    faces = data[3 * n_vertices :].reshape(n_faces, 4)
    if not (faces[:, 0] == 3).all() or not np.isfinite(vertices).all():
        return None
    triangles = faces[:, 1:]
    if (triangles != np.round(triangles)).any() or triangles.min() < 0 or triangles.max() >= n_vertices:
        return None
    return vertices, triangles.astype(np.int64)


def parse_off_text(text: str, path: str | os.PathLike[str] = "<string>") -> tuple[np.ndarray, np.ndarray]:
    """Parse the text of an OFF file (see the module docstring for what is accepted).

    Args:
        text: the whole file content.
        path: the file name used in error messages.

    Returns:
        ``(vertices, faces)``: float64 ``[V, 3]`` coordinates as stored, and
        int64 ``[F, 3]`` triangles (polygons fan-triangulated, in file order).

    Raises:
        DataFileError: on any deviation from the format.
    """
    path = Path(path)
    fast = _parse_plain_triangles(text)
    if fast is not None:
        return fast
    lines = _data_lines(text)
    if not lines:
        raise DataFileError(path, "file is empty (no OFF header)")
    number, first = lines[0]
    match = _HEADER.match(first)
    if match is None:
        raise DataFileError(path, f"line {number}: expected an 'OFF' header, got {first[:40]!r}")
    keyword, rest = match.group(1), match.group(2).split()
    if keyword not in _KEYWORDS:
        raise DataFileError(path, f"line {number}: unsupported OFF variant {keyword!r} (supported: {', '.join(_KEYWORDS)})")
    if rest and rest[0].upper() == "BINARY":
        raise DataFileError(path, f"line {number}: binary OFF is not supported, only the ASCII format")
    cursor = 1
    if not rest:  # counts on their own line (the usual case)
        if len(lines) < 2:
            raise DataFileError(path, "file ends after the OFF header, before the vertex/face counts")
        number, counts_line = lines[1]
        rest = counts_line.split()
        cursor = 2
    n_vertices, n_faces = _parse_counts(path, number, rest)
    if n_vertices == 0 or n_faces == 0:
        raise DataFileError(path, f"header announces {n_vertices} vertices and {n_faces} faces; a mesh needs both")

    vertex_lines = lines[cursor : cursor + n_vertices]
    if len(vertex_lines) < n_vertices:
        raise DataFileError(path, f"expected {n_vertices} vertices, file ends after {len(vertex_lines)}")
    cursor += n_vertices
    face_lines = lines[cursor : cursor + n_faces]
    if len(face_lines) < n_faces:
        raise DataFileError(path, f"expected {n_faces} faces, file ends after {len(face_lines)}")
    cursor += n_faces
    if cursor < len(lines):
        raise DataFileError(
            path,
            f"line {lines[cursor][0]}: {len(lines) - cursor} unexpected data line(s) after the "
            f"{n_faces} faces the header announces (wrong counts?)",
        )

    split = [content.split() for _, content in vertex_lines]
    for (number, content), tokens in zip(vertex_lines, split):
        if len(tokens) < 3:
            raise DataFileError(path, f"line {number}: a vertex needs x y z, got {content!r}")
    try:
        vertices = np.array([tokens[:3] for tokens in split], dtype=np.float64)
    except ValueError:
        for (number, content), tokens in zip(vertex_lines, split):
            try:
                [float(t) for t in tokens[:3]]
            except ValueError:
                raise DataFileError(path, f"line {number}: vertex {content!r} is not numeric") from None
        raise
    if not np.isfinite(vertices).all():
        row = int(np.flatnonzero(~np.isfinite(vertices).all(axis=1))[0])
        raise DataFileError(path, f"line {vertex_lines[row][0]}: vertex is not finite: {vertex_lines[row][1]!r}")

    faces = _fan_triangulate(path, face_lines, n_vertices)
    return vertices, faces


def read_off(path: str | os.PathLike[str]) -> trimesh.Trimesh:
    """Read an ASCII OFF mesh exactly as stored (no re-orientation, no merging).

    Args:
        path: the ``.off`` file.

    Returns:
        a :class:`trimesh.Trimesh` built with ``process=False``, so vertex and
        face counts equal the file's (polygons become ``k - 2`` triangles).

    Raises:
        DataFileError: the file is missing, unreadable or malformed.

    Example:
        >>> mesh = read_off("ModelNet40/toilet/test/toilet_0345.off")
        >>> mesh = z_up_to_y_up(mesh)   # from ssl3d.datasets.formats.modelnet
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataFileError(path, "file not found") from None
    except OSError as exc:
        raise DataFileError(path, f"cannot read file: {exc.strerror or exc}") from None
    if b"\x00" in raw[:4096]:
        raise DataFileError(path, "file is binary; only the ASCII OFF format is supported")
    # latin-1 never fails to decode, so a stray byte in a comment is harmless and
    # one in the data is reported by the number parser with its line.
    vertices, faces = parse_off_text(raw.decode("latin-1"), path)
    return trimesh.Trimesh(vertices=vertices, faces=faces, process=False)
