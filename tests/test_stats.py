"""core/stats.py against hand-computed values and scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from ssl3d.core.stats import bh_qvalues, ci95_halfwidth, ci95_seeds_and_test, compare_seeds, paired_t, welch_t


def test_paired_t_by_hand():
    # d = 1, 2, 3: mean 2, sd 1, se 1/sqrt(3), t = 2 sqrt(3) on 2 dof; for 2 dof sf(t) = (1 - t / sqrt(t^2 + 2)) / 2
    c = paired_t([1.0, 2.0, 3.0], [0.0, 0.0, 0.0])
    t = 2 * math.sqrt(3)
    assert c.test == "paired t" and c.difference == pytest.approx(2.0)
    assert c.p_greater == pytest.approx((1 - t / math.sqrt(t * t + 2)) / 2, abs=1e-12)
    assert c.p_two_sided == pytest.approx(1 - t / math.sqrt(t * t + 2), abs=1e-12)  # 0.07418
    assert c.p_two_sided == pytest.approx(0.074180, abs=1e-6)
    assert c.ci95 == pytest.approx(4.302653 / math.sqrt(3), abs=1e-5)  # t(0.975, 2) * se
    assert c.p_less == pytest.approx(1 - c.p_greater)


def test_paired_t_matches_scipy_and_differs_from_welch():
    a = np.array([86.1, 80.2, 83.9])
    b = a - np.array([1.0, 1.2, 0.9])  # seeds differ a lot, pretraining adds about one point to each
    c = paired_t(a, b)
    assert c.p_two_sided == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-10)
    assert c.p_greater == pytest.approx(stats.ttest_rel(a, b, alternative="greater").pvalue, rel=1e-10)
    w = welch_t(a, b)
    assert w.test == "Welch t" and w.p_two_sided == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)
    assert c.p_two_sided < 0.02 < 0.5 < w.p_two_sided  # the shared per-seed offset cancels in the pairs


def test_welch_by_hand():
    # a = 1, 2, 3 (var 1), b = 2, 4, 6 (var 4): se = sqrt(1/3 + 4/3), dof = (5/3)^2 / ((1/3)^2/2 + (4/3)^2/2) = 50/17
    c = welch_t([1.0, 2.0, 3.0], [2.0, 4.0, 6.0])
    se, dof = math.sqrt(5 / 3), 50 / 17
    assert c.difference == pytest.approx(-2.0)
    assert c.ci95 == pytest.approx(stats.t.ppf(0.975, dof) * se)
    assert c.p_two_sided == pytest.approx(2 * stats.t.cdf(-2 / se, dof))


def test_compare_pairs_only_the_same_seeds():
    a, b = {0: 86.0, 1: 85.0, 2: 87.0}, {0: 80.0, 1: 79.5, 2: 81.0}
    assert compare_seeds(a, b).test == "paired t"
    assert compare_seeds(a, {0: 80.0, 1: 79.5, 3: 81.0}).test == "Welch t"
    assert compare_seeds({0: 1.0}, {0: 2.0}).test == ""  # one seed: no test
    same = compare_seeds(a, dict(a))
    assert same.test == "equal" and same.p_two_sided == 1.0  # bitwise-identical sides: no evidence either way


def test_a_constant_nonzero_paired_difference_is_certain():
    c = paired_t([2.0, 3.0, 4.0], [1.0, 2.0, 3.0])
    assert (c.difference, c.ci95, c.p_two_sided, c.p_greater, c.p_less) == (1.0, 0.0, 0.0, 0.0, 1.0)


def test_bh_by_hand_and_against_scipy():
    p = [0.01, 0.04, 0.03, 0.005]
    # ascending 0.005, 0.01, 0.03, 0.04 -> m p / rank = 0.02, 0.02, 0.04, 0.04 -> running minimum from the top
    assert bh_qvalues(p) == pytest.approx([0.02, 0.04, 0.04, 0.02])
    rng = np.random.default_rng(0)
    many = rng.uniform(0, 0.2, 50)
    assert bh_qvalues(many) == pytest.approx(stats.false_discovery_control(many, method="bh"))


def test_bh_ignores_nan_and_caps_at_one():
    q = bh_qvalues([0.5, float("nan"), 0.9])
    assert np.isnan(q[1]) and q[0] == pytest.approx(0.9) and q[2] == pytest.approx(0.9)
    assert bh_qvalues([0.8, 0.9, 0.95]).max() <= 1.0
    assert np.isnan(bh_qvalues([float("nan")])).all()


def test_ci_with_test_noise_by_hand():
    # mean 82 %, s^2 = 4 over k = 3 seeds: seeds 4/3; test 1e4 * 0.82 * 0.18 / 900 = 1.64
    values = np.array([80.0, 82.0, 84.0])
    seeds = 4.302653 * 2 / math.sqrt(3)  # t(0.975, 2) s / sqrt(k) = 4.968
    test = 1.959964 * math.sqrt(1.64)  # 2.510
    assert ci95_seeds_and_test(values, 900) == pytest.approx(math.sqrt(seeds ** 2 + test ** 2), rel=1e-6)
    assert ci95_seeds_and_test(values, 900) == pytest.approx(5.566, abs=2e-3)
    assert ci95_seeds_and_test(values, 900) > ci95_halfwidth(values)  # never narrower than the seeds-only CI
    # one seed: the binomial term alone, normal quantile (1.1 points at 88% of 901 shapes: the figure)
    one = ci95_seeds_and_test(np.array([88.0]), 901)
    assert one == pytest.approx(1.959964 * math.sqrt(1e4 * 0.88 * 0.12 / 901), rel=1e-6)
    assert math.sqrt(1e4 * 0.88 * 0.12 / 901) == pytest.approx(1.08, abs=0.01)
    assert math.isnan(ci95_seeds_and_test(values, 0))
