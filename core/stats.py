"""Statistics shared by the protocols (few-shot episodes) and the reports (leaderboard, claims)."""

from __future__ import annotations

import numpy as np
from scipy import stats

__all__ = ["ci95_halfwidth"]


def ci95_halfwidth(values: np.ndarray) -> float:
    """Half-width of the Student-t 95% confidence interval of the mean (nan for n < 2)."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    if n < 2:
        return float("nan")
    return float(stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / np.sqrt(n))
