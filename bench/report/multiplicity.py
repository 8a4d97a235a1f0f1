"""A table's family of tests: identical comparisons counted once, Benjamini-Hochberg q-values, p formatting.

Two rows test the same thing when both sides hold the same per-seed values (a ParAE network untrained
is bitwise the random baseline; a balanced test set gives equal overall and mean-class accuracies):
such a row is marked with the first one's index and shares its q-value, and the family's size counts
it once. Definitions: docs/protocols.md#statistics.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from ssl3d.core.stats import bh_qvalues

__all__ = ["ALPHA", "add_qvalues", "distinct_tests", "format_p"]

#: the false discovery rate every page controls
ALPHA = 0.05

SeedValues = Mapping[int, float]


def _identity(a: SeedValues, b: SeedValues) -> tuple:
    return tuple(sorted((int(s), round(float(v), 9)) for s, v in a.items())), \
        tuple(sorted((int(s), round(float(v), 9)) for s, v in b.items()))


def add_qvalues(table: pd.DataFrame, sides: Sequence[tuple[SeedValues, SeedValues]], p_column: str,
                q_column: str, same_column: str = "same_test_as") -> pd.DataFrame:
    """``table`` with ``q_column`` (BH over its distinct tests) and ``same_column`` (-1, or the first twin row).

    ``sides[i]`` holds row i's two per-seed value maps; a later row whose pair is an earlier row's gets that
    row's position and q-value instead of a place of its own in the family.
    """
    first: dict[tuple, int] = {}
    same = []
    for i, (a, b) in enumerate(sides):
        key = _identity(a, b)
        same.append(first[key] if key in first else -1)
        first.setdefault(key, i)
    same_arr = np.array(same, dtype=int)
    p = table[p_column].to_numpy(dtype=float) if len(table) else np.array([])
    q = np.full(len(table), np.nan)
    own = np.flatnonzero(same_arr < 0) if len(table) else np.array([], dtype=int)
    q[own] = bh_qvalues(p[own])
    for i in np.flatnonzero(same_arr >= 0):
        q[i] = q[same_arr[i]]
    out = table.copy()
    out[q_column] = q
    out[same_column] = same_arr
    return out


def distinct_tests(table: pd.DataFrame, p_column: str = "p_value", same_column: str = "same_test_as") -> int:
    """How many tests the family counts: rows with a p-value that repeat no earlier row."""
    if table.empty:
        return 0
    return int(((table[same_column] < 0) & table[p_column].notna()).sum())


def format_p(p: float) -> str:
    """A p- or q-value for a table: three decimals, ``< 0.001`` below, empty when undefined."""
    if p is None or np.isnan(p):
        return ""
    return "< 0.001" if p < 0.001 else f"{p:.3f}"
