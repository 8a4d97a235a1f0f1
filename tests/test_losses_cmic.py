"""CMIC losses (Eq. 4-6, Section 4.3 triplet variant) against direct loops."""
import math

import numpy as np
import pytest
import torch

from ssl3d.methods.losses.cmic import (
    CMICLoss,
    category_contrastive,
    category_triplet,
    cmic_triplet,
    instance_contrastive,
    instance_triplet,
)

LABELS = [0, 0, 1, 2]  # category 0 has two members, 1 and 2 one each


def _data(seed=0, b=4, d=3, specific=False):
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(b, d))
    s = rng.normal(size=(b, b, d) if specific else (b, d))
    return q, s


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _sim(q, s, i, j):
    """v_i^q . v_ji^r with python floats (s shared [B, D] or specific [B, B, D])."""
    sv = s[i][j] if s.ndim == 3 else s[j]
    return float(sum(float(a) * float(b) for a, b in zip(q[i], sv)))


def _ref_inst(q, s, tau):
    b = len(q)
    total = 0.0
    for i in range(b):
        den = sum(math.exp(_sim(q, s, i, j) / tau) for j in range(b))
        total += -math.log(math.exp(_sim(q, s, i, i) / tau) / den)
    return total / b


def _ref_cats(q, s, labels, tau, include):
    b = len(q)
    terms = []
    for i in range(b):
        pos = [j for j in range(b) if labels[j] == labels[i] and (include or j != i)]
        has_neg = any(labels[j] != labels[i] for j in range(b))
        if not pos or not has_neg:
            continue  # skipped query
        den = sum(math.exp(_sim(q, s, i, j) / tau) for j in range(b) if include or j != i)
        terms.append(-sum(math.log(math.exp(_sim(q, s, i, p) / tau) / den) for p in pos) / len(pos))
    return sum(terms) / len(terms) if terms else 0.0


def _t(x):
    return torch.tensor(x, dtype=torch.float64)


@pytest.mark.parametrize("specific", [False, True])
def test_instance_matches_loop(specific):
    q, s = _data(1, specific=specific)
    qn, sn = _unit(q), _unit(s)
    got = instance_contrastive(_t(q), _t(s), tau=0.1).item()
    assert got == pytest.approx(_ref_inst(qn, sn, 0.1), rel=1e-10)


@pytest.mark.parametrize("specific", [False, True])
@pytest.mark.parametrize("include", [True, False])
def test_category_matches_loop(specific, include):
    q, s = _data(2, specific=specific)
    qn, sn = _unit(q), _unit(s)
    got = category_contrastive(_t(q), _t(s), torch.tensor(LABELS), tau=0.1, include_instance=include).item()
    assert got == pytest.approx(_ref_cats(qn, sn, LABELS, 0.1, include), rel=1e-10)


def test_category_include_settings_differ_and_singletons():
    q, s = _t(_data(3)[0]), _t(_data(3)[1])
    lab = torch.tensor(LABELS)
    a = category_contrastive(q, s, lab, include_instance=True)
    b = category_contrastive(q, s, lab, include_instance=False)
    assert a.item() != pytest.approx(b.item())
    # include_instance=True: a singleton category's term equals its instance term
    singles = torch.tensor([0, 1, 2, 3])
    assert category_contrastive(q, s, singles).item() == pytest.approx(instance_contrastive(q, s).item())
    # include_instance=False: every query is alone in its category -> all skipped -> 0
    z = category_contrastive(q, s, singles, include_instance=False)
    assert z.item() == 0.0


def test_tau_scaling():
    q, s = _data(4)
    qn, sn = _unit(q), _unit(s)
    got = instance_contrastive(_t(q), _t(s), tau=0.5).item()
    assert got == pytest.approx(_ref_inst(qn, sn, 0.5), rel=1e-10)
    assert category_contrastive(_t(q), _t(s), torch.tensor(LABELS), tau=0.5).item() == pytest.approx(
        _ref_cats(qn, sn, LABELS, 0.5, True), rel=1e-10)
    # without normalisation only score/tau matters: (2q, tau=0.2) == (q, tau=0.1)
    for fn in (instance_contrastive,):
        assert fn(_t(2 * q), _t(s), 0.2, normalize=False).item() == pytest.approx(
            fn(_t(q), _t(s), 0.1, normalize=False).item(), rel=1e-12)
    # a sharper temperature makes a correct ranking cheaper
    eye = torch.eye(4, dtype=torch.float64)
    assert instance_contrastive(eye, eye, tau=0.05) < instance_contrastive(eye, eye, tau=1.0)


@pytest.mark.parametrize("include", [True, False])
@pytest.mark.parametrize("labels", [[0, 0, 1, 2], [0, 1, 2, 3], [5, 5, 5, 5]])
def test_no_nan_and_gradients(include, labels):
    q = torch.randn(4, 8, dtype=torch.float64, requires_grad=True)
    s = torch.randn(4, 4, 8, dtype=torch.float64, requires_grad=True)
    out = CMICLoss(include_instance=include)(q, s, torch.tensor(labels))
    assert all(torch.isfinite(v) for v in out.values())
    out["total"].backward()
    assert torch.isfinite(q.grad).all() and torch.isfinite(s.grad).all()
    assert q.grad.abs().sum() > 0 and s.grad.abs().sum() > 0  # the instance term always flows


def test_category_degenerate_cases_are_zero_with_grad():
    q = torch.randn(3, 5, requires_grad=True)
    s = torch.randn(3, 5, requires_grad=True)
    same = category_contrastive(q, s, torch.tensor([1, 1, 1]))  # no negatives: N/A
    assert same.item() == 0.0
    same.backward()
    assert torch.equal(q.grad, torch.zeros_like(q))
    one = category_contrastive(q[:1], s[:1], torch.tensor([0]), include_instance=False)
    assert one.item() == 0.0


def test_cmic_loss_combination():
    q, s = _data(5, specific=True)
    qn, sn = _unit(q), _unit(s)
    out = CMICLoss()(_t(q), _t(s), torch.tensor(LABELS))
    inst, cats = _ref_inst(qn, sn, 0.1), _ref_cats(qn, sn, LABELS, 0.1, True)
    assert out["inst"].item() == pytest.approx(inst, rel=1e-10)
    assert out["cats"].item() == pytest.approx(cats, rel=1e-10)
    assert out["total"].item() == pytest.approx(inst + 0.2 * cats, rel=1e-10)
    no_labels = CMICLoss()(_t(q), _t(s))
    assert no_labels["cats"].item() == 0.0 and no_labels["total"].item() == pytest.approx(inst, rel=1e-10)


def _ref_sqd(q, s, i, j):
    sv = s[i][j] if s.ndim == 3 else s[j]
    return float(sum((float(a) - float(b)) ** 2 for a, b in zip(q[i], sv)))


def test_triplet_variant_matches_loops():
    q, s = _data(6, b=5, d=4)
    labels = [0, 0, 1, 1, 2]
    qn, sn = _unit(q), _unit(s)
    m = 0.6
    # instance: all (i, j != i) violating the margin, averaged over those
    hinges = [_ref_sqd(qn, sn, i, i) - _ref_sqd(qn, sn, i, j) + m
              for i in range(5) for j in range(5) if j != i]
    active = [h for h in hinges if h > 0]
    assert active and len(active) < len(hinges)  # the test exercises the mining
    ref_inst = sum(active) / len(active)
    assert instance_triplet(_t(q), _t(s), margin=m).item() == pytest.approx(ref_inst, rel=1e-10)
    # category: farthest same-category shape vs nearest other-category shape
    for include in (True, False):
        terms = []
        for i in range(5):
            pos = [j for j in range(5) if labels[j] == labels[i] and (include or j != i)]
            neg = [j for j in range(5) if labels[j] != labels[i]]
            if not pos:
                continue
            dp = max(_ref_sqd(qn, sn, i, j) for j in pos)
            dn = min(_ref_sqd(qn, sn, i, j) for j in neg)
            terms.append(max(dp - dn + m, 0.0))
        ref = sum(terms) / len(terms)
        got = category_triplet(_t(q), _t(s), torch.tensor(labels), margin=m, include_instance=include)
        assert got.item() == pytest.approx(ref, rel=1e-10)
    out = cmic_triplet(_t(q), _t(s), torch.tensor(labels), margin=m, beta1=0.2)
    assert out["total"].item() == pytest.approx(out["inst"].item() + 0.2 * out["cats"].item())
    via_module = CMICLoss(instance="triplet", margin=m)(_t(q), _t(s), torch.tensor(labels))
    assert via_module["total"].item() == pytest.approx(out["total"].item())


def test_triplet_zero_when_separated():
    # query i sits exactly on shape i, all other shapes are orthogonal (sq. dist 2)
    eye = torch.eye(4)
    assert instance_triplet(eye, eye, margin=1.9).item() == 0.0
    assert instance_triplet(eye, eye, margin=2.5).item() == pytest.approx(0.5)


def test_bad_arguments():
    q, s = torch.randn(4, 3), torch.randn(4, 3)
    with pytest.raises(ValueError, match="tau"):
        instance_contrastive(q, s, tau=0.0)
    with pytest.raises(ValueError, match="shape"):
        instance_contrastive(q, torch.randn(3, 3))
    with pytest.raises(ValueError, match="labels"):
        category_contrastive(q, s, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="labels"):
        category_contrastive(q, s, torch.tensor([0.0, 1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="instance"):
        CMICLoss(instance="hinge")
    with pytest.raises(ValueError, match="beta1"):
        CMICLoss(beta1=-0.5)
    with pytest.raises(ValueError, match="margin"):
        instance_triplet(q, s, margin=-1.0)
