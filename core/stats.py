"""Statistics shared by the protocols and the reports: CIs, paired and Welch t-tests, BH q-values.

Definitions, and which test each table uses: docs/protocols.md#statistics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
from scipy import stats

__all__ = ["Comparison", "bh_qvalues", "ci95_halfwidth", "ci95_seeds_and_test", "compare_seeds", "paired_t",
           "welch_t"]


def ci95_halfwidth(values: np.ndarray) -> float:
    """Half-width of the Student-t 95% confidence interval of the mean (nan for n < 2)."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    if n < 2:
        return float("nan")
    return float(stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / np.sqrt(n))


def ci95_seeds_and_test(values: np.ndarray, n_eval: int) -> float:
    """95% CI half-width of a mean accuracy (%) over seeds that also counts the test set's sampling.

    Every seed is scored on the same ``n_eval`` test items, so the test set's sampling error does not
    shrink with more seeds. Two half-widths are combined in quadrature: the seeds' Student t one,
    t(k - 1) s / sqrt(k), and the test set's normal one, 1.96 sqrt(p (1 - p) / n_eval) (in %). The
    result is never narrower than either alone; the binomial term is an upper bound (seeds that
    disagree on an item vary less).
    """
    values = np.asarray(values, dtype=float)
    k, p = len(values), float(values.mean()) / 100.0 if len(values) else float("nan")
    if k == 0 or not n_eval > 0 or not 0.0 <= p <= 1.0:
        return float("nan")
    test_half = stats.norm.ppf(0.975) * np.sqrt(1e4 * p * (1.0 - p) / n_eval)
    seed_half = ci95_halfwidth(values) if k > 1 else 0.0
    return float(np.hypot(seed_half, test_half))


@dataclass(frozen=True)
class Comparison:
    """mean(a) - mean(b) with its 95% CI half-width and p-values, and which test gave them."""

    test: str  # "paired t", "Welch t", "equal" (both sides one constant) or "" (too few values)
    difference: float
    ci95: float
    p_two_sided: float
    p_greater: float  # one-sided, alternative mean(a) > mean(b)
    p_less: float  # one-sided, alternative mean(a) < mean(b)
    n: tuple[int, int]


def _from_t(test: str, diff: float, se: float, dof: float, n: tuple[int, int]) -> Comparison:
    if se == 0:  # every paired difference (or every value) the same: the sign is certain unless it is zero
        p_g, p_l = (0.0, 1.0) if diff > 0 else (1.0, 0.0) if diff < 0 else (1.0, 1.0)
        return Comparison(test, diff, 0.0, min(1.0, 2 * min(p_g, p_l)) if diff else 1.0, p_g, p_l, n)
    t = diff / se
    p_g, p_l = float(stats.t.sf(t, dof)), float(stats.t.cdf(t, dof))
    return Comparison(test, diff, float(stats.t.ppf(0.975, dof) * se), min(1.0, 2 * min(p_g, p_l)), p_g, p_l, n)


def paired_t(a: Sequence[float], b: Sequence[float]) -> Comparison:
    """Paired t-test of ``a[i] - b[i]`` (the same seed on both sides)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) != len(b):
        raise ValueError(f"a paired test needs equal lengths; got {len(a)} and {len(b)}")
    n = (len(a), len(b))
    if len(a) < 2:
        return Comparison("", float(np.mean(a - b)) if len(a) else float("nan"), *[float("nan")] * 4, n=n)
    d = a - b
    return _from_t("paired t", float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d))), len(d) - 1, n)


def welch_t(a: Sequence[float], b: Sequence[float]) -> Comparison:
    """Welch's unequal-variance t-test of mean(a) - mean(b) (independent samples)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    n = (len(a), len(b))
    diff = float(a.mean() - b.mean()) if len(a) and len(b) else float("nan")
    if len(a) < 2 or len(b) < 2:
        return Comparison("", diff, *[float("nan")] * 4, n=n)
    if np.ptp(np.concatenate([a, b])) == 0:
        return Comparison("equal", 0.0, 0.0, 1.0, 1.0, 1.0, n)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = float(np.sqrt(va + vb))
    dof = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1)) if se else 1.0
    return _from_t("Welch t", diff, se, dof, n)


def compare_seeds(a: Mapping[int, float], b: Mapping[int, float]) -> Comparison:
    """Paired over seeds when both sides ran exactly the same seeds (at least two), Welch's t otherwise.

    A method and its own untrained network, or an ablation and its parent, share each seed's
    initialisation, data order and SVM folds: pairing removes that shared noise.
    """
    if set(a) == set(b) and len(a) >= 2:
        seeds = sorted(a)
        if all(a[s] == b[s] for s in seeds):
            return Comparison("equal", 0.0, 0.0, 1.0, 1.0, 1.0, (len(a), len(b)))
        return paired_t([a[s] for s in seeds], [b[s] for s in seeds])
    return welch_t(list(a.values()), list(b.values()))


def bh_qvalues(p_values: Sequence[float]) -> np.ndarray:
    """Benjamini-Hochberg q-values (step-up FDR adjustment); a nan p stays nan and is not counted.

    q_(i) = min over j >= i of m p_(j) / j, capped at 1, for the m finite p-values in ascending order.
    """
    p = np.asarray(p_values, dtype=float)
    q = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    if finite.size == 0:
        return q
    order = finite[np.argsort(p[finite], kind="stable")]
    m = finite.size
    scaled = p[order] * m / np.arange(1, m + 1)
    q[order] = np.minimum(1.0, np.minimum.accumulate(scaled[::-1])[::-1])
    return q
