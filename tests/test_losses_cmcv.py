"""CM-CV losses (Eq. 1-3) against hand-computed values."""
import math

import pytest
import torch

from ssl3d.methods.losses.cmcv import CMCVLoss, cross_modality_ce, cross_view_triplet

# Two triplets of 2-d features.
#   b=0: a=(0,0) p=(1,0) n=(0,2): |a-p|^2 = 1, |a-n|^2 = 4  -> max(1 - 4 + 1, 0) = 0
#   b=1: a=(1,1) p=(1,2) n=(1,1.5): |a-p|^2 = 1, |a-n|^2 = 0.25 -> max(1 - 0.25 + 1, 0) = 1.75
A = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
P = torch.tensor([[1.0, 0.0], [1.0, 2.0]])
N = torch.tensor([[0.0, 2.0], [1.0, 1.5]])

# Single logits per pair, labels (1, 1, 0):
#   sample 0: logits (0, ln3, 0):   ln2 + ln(4/3) + ln2           = ln(16/3)
#   sample 1: logits (ln3, 0, -ln3): ln(4/3) + ln2 + ln(4/3)      = ln(32/9)
L3 = math.log(3.0)
LOGITS = torch.tensor([[0.0, L3, 0.0], [L3, 0.0, -L3]])
CE_EXPECTED = (math.log(16 / 3) + math.log(32 / 9)) / 2


def test_triplet_hand_values():
    assert cross_view_triplet(A, P, N, margin=1.0).item() == pytest.approx(0.875)
    # margin 0: b=0 -> 0, b=1 -> 0.75
    assert cross_view_triplet(A, P, N, margin=0.0).item() == pytest.approx(0.375)


def test_triplet_margin_behaviour():
    a, p, n = A[:1], P[:1], N[:1]  # d_pos = 1, d_neg = 4
    assert cross_view_triplet(a, p, n, margin=2.9).item() == 0.0  # negative far enough
    assert cross_view_triplet(a, p, n, margin=3.0).item() == pytest.approx(0.0, abs=1e-7)
    assert cross_view_triplet(a, p, n, margin=3.5).item() == pytest.approx(0.5)
    # squared (not plain) distances: with plain distances 1 - 2 + 1.5 would be 0.5
    assert cross_view_triplet(a, p, n, margin=1.5).item() == 0.0


def test_triplet_normalize_option():
    # unit vectors: a=(1,0), p=(0,1)*3, n=(-1,0)*5 -> |a-p|^2 = 2, |a-n|^2 = 4
    a, p, n = torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 3.0]]), torch.tensor([[-5.0, 0.0]])
    assert cross_view_triplet(a, p, n, margin=2.5, normalize=True).item() == pytest.approx(0.5)


def test_triplet_gradient_and_errors():
    a = A.clone().requires_grad_(True)
    cross_view_triplet(a, P, N, margin=1.0).backward()
    # only b=1 is active: d/da (|a-p|^2 - |a-n|^2) / B = (2(a-p) - 2(a-n)) / 2 = n - p
    assert torch.allclose(a.grad, torch.tensor([[0.0, 0.0], [0.0, -0.5]]))
    with pytest.raises(ValueError, match="margin"):
        cross_view_triplet(A, P, N, margin=-1.0)
    with pytest.raises(ValueError, match="shape"):
        cross_view_triplet(A, P[:1], N)


def test_cross_modality_ce_single_logit():
    assert cross_modality_ce(LOGITS).item() == pytest.approx(CE_EXPECTED, rel=1e-6)
    labels = torch.tensor([1, 1, 0])
    assert cross_modality_ce(LOGITS, labels).item() == pytest.approx(CE_EXPECTED, rel=1e-6)
    # all pairs labelled "same": sample 0 ln2+ln(4/3)+ln2, sample 1 ln(4/3)+ln2+ln4
    ones = torch.ones(2, 3)
    expected = (math.log(16 / 3) + math.log(32 / 3)) / 2
    assert cross_modality_ce(LOGITS, ones).item() == pytest.approx(expected, rel=1e-6)


def test_cross_modality_ce_two_class():
    # two-class scores (0, l) give softmax_1 = sigmoid(l): same loss as the single logit
    two = torch.stack([torch.zeros_like(LOGITS), LOGITS], dim=-1)
    assert cross_modality_ce(two).item() == pytest.approx(CE_EXPECTED, rel=1e-6)
    # shifting both scores changes nothing
    assert cross_modality_ce(two + 7.0).item() == pytest.approx(CE_EXPECTED, rel=1e-6)


def test_cross_modality_ce_errors():
    with pytest.raises(ValueError, match="K = 3"):
        cross_modality_ce(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="0 .* or 1"):
        cross_modality_ce(LOGITS, torch.tensor([1, 2, 0]))
    with pytest.raises(ValueError, match="logits"):
        cross_modality_ce(torch.zeros(2, 3, 5))


def test_cmcv_loss_combination_and_cm_flag():
    loss = CMCVLoss(alpha=1.0, beta=0.5)
    out = loss(A, P, N, LOGITS)
    assert out["triplet"].item() == pytest.approx(0.875)
    assert out["cross"].item() == pytest.approx(CE_EXPECTED, rel=1e-6)
    assert out["total"].item() == pytest.approx(0.875 + 0.5 * CE_EXPECTED, rel=1e-6)

    a = A.clone().requires_grad_(True)
    cm = CMCVLoss(alpha=1.0, beta=0.5, cross_view=False)(a, P, N, LOGITS)
    assert cm["total"].item() == pytest.approx(0.5 * CE_EXPECTED, rel=1e-6)
    assert cm["triplet"].item() == pytest.approx(0.875)  # still reported ...
    assert not cm["triplet"].requires_grad  # ... but detached
    assert not cm["total"].requires_grad  # features get no gradient from the CM objective


def test_cmcv_loss_gradients_reach_logits_and_features():
    f1, f2, f3 = (x.clone().requires_grad_(True) for x in (A, P, N))
    logits = LOGITS.clone().requires_grad_(True)
    CMCVLoss()(f1, f2, f3, logits)["total"].backward()
    for t in (f1, f2, f3, logits):
        assert t.grad is not None and torch.isfinite(t.grad).all()
    # d/dl of -log sigmoid(l) = sigmoid(l) - 1; sample 0 pair 0: (0.5 - 1) / B
    assert logits.grad[0, 0].item() == pytest.approx(-0.25)


def test_cmcv_bad_options():
    with pytest.raises(ValueError, match="alpha"):
        CMCVLoss(alpha=-0.1)
    with pytest.raises(ValueError, match="beta"):
        CMCVLoss(beta=-1.0)
