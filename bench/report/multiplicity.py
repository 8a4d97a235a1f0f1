"""A table's family of tests: which way each test counts, identical comparisons counted once, BH q-values, p formatting.

Every comparison of a page is oriented so that a positive difference means the first side is better: a
metric where smaller is better (``LOWER_IS_BETTER``: CMIC's d_HAU) is compared the other way round, so
its difference is reference − method, with the same CI and p.

Two rows test the same thing when both sides hold the same per-seed values (a ParAE network untrained
is bitwise the random baseline; a balanced test set gives equal overall and mean-class accuracies):
such a row is marked with the first one's index and shares its q-value, and the family's size counts
it once. Definitions: docs/protocols.md#statistics.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from ssl3d.core.stats import Comparison, bh_qvalues, compare_seeds

__all__ = ["ALPHA", "LOWER_IS_BETTER", "add_qvalues", "better_sign", "by_seed", "compare_oriented", "counts_sentence",
           "distinct_tests", "format_p"]

#: the false discovery rate every page controls
ALPHA = 0.05

SeedValues = Mapping[int, float]

#: metrics (the name before any ``:category``) where a smaller value is better: the modified Hausdorff
#: distance of ibsr's retrieved shapes (bench/protocols/shape_distance.py); every other metric is a score
LOWER_IS_BETTER = frozenset({"hau"})


def better_sign(metric: str) -> int:
    """+1 where a larger value of ``metric`` is better, -1 where a smaller one is (``LOWER_IS_BETTER``)."""
    return -1 if str(metric).split(":")[0] in LOWER_IS_BETTER else 1


def compare_oriented(a: SeedValues, b: SeedValues, metric: str) -> Comparison:
    """``compare_seeds(a, b)`` turned so that a positive difference means ``a`` is better on ``metric``."""
    return compare_seeds(a, b) if better_sign(metric) > 0 else compare_seeds(b, a)


def by_seed(group: pd.DataFrame) -> dict[int, float]:
    """A group of leaderboard rows (one per seed) as ``{seed: value}``."""
    return dict(zip(group["seed"].astype(int), group["value"].astype(float)))


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


def counts_sentence(table: pd.DataFrame, subject: str, up: str, down: str) -> str:
    """How many distinct tests of ``table`` are above, below or undecided at q < ALPHA, and at raw p < ALPHA.

    ``difference`` is oriented (positive: better); ``subject`` ``up`` / ``down`` say what each direction means.
    """
    own = table[table["same_test_as"] < 0]
    q_sig, p_sig = own["q_value"] < ALPHA, own["p_value"] < ALPHA
    n_up = int((q_sig & (own["difference"] > 0)).sum())
    n_down = int((q_sig & (own["difference"] < 0)).sum())
    return (f"Of {len(own)} distinct tests, {subject} {up} in {n_up} and {down} in {n_down} at q < {ALPHA} "
            f"(Benjamini-Hochberg); {int(p_sig.sum())} have a raw p < {ALPHA}; the other {len(own) - n_up - n_down} "
            "are undecided (q >= 0.05 or n < 2).")
