"""CrossPoint's losses (methods/losses/crosspoint.py) against hand computations."""

from __future__ import annotations

import math

import pytest
import torch

from ssl3d.methods.losses.crosspoint import CrossPointLoss, nt_xent


def plain_nt_xent(a: list[list[float]], b: list[list[float]], tau: float) -> float:
    """The NT-Xent formula written out: 2B anchors; each anchor's candidates are the 2B - 1 others.

    loss = 1/(2B) * sum over anchors x of  -log( exp(cos(x, x+) / tau) / sum_{y != x} exp(cos(x, y) / tau) ),
    x+ the other side's row of the same index.
    """
    def unit(v):
        n = math.sqrt(sum(c * c for c in v))
        return [c / n for c in v]

    rows = [unit(v) for v in a] + [unit(v) for v in b]
    n = len(a)
    total = 0.0
    for i, x in enumerate(rows):
        positive = rows[(i + n) % (2 * n)]
        sim = lambda y: sum(p * q for p, q in zip(x, y)) / tau  # noqa: E731
        denominator = sum(math.exp(sim(y)) for j, y in enumerate(rows) if j != i)
        total += -math.log(math.exp(sim(positive)) / denominator)
    return total / (2 * n)


def test_nt_xent_of_orthonormal_pairs_is_log_e_plus_2_minus_1():
    # u1 = v1 = e1, u2 = v2 = e2, tau = 1: every anchor has its positive at cos 1 and two candidates at cos 0,
    # so each term is -log(e / (e + 1 + 1)) = log(e + 2) - 1
    eye = torch.eye(2)
    assert nt_xent(eye, eye, temperature=1.0).item() == pytest.approx(math.log(math.e + 2) - 1, abs=1e-6)


def test_nt_xent_matches_the_plain_formula_on_three_embeddings():
    a = [[1.0, 2.0, 0.0], [0.5, -1.0, 3.0], [-2.0, 0.0, 1.0]]
    b = [[0.0, 1.0, 1.0], [2.0, 2.0, -1.0], [1.0, -3.0, 0.5]]
    for tau in (0.1, 0.5, 2.0):
        got = nt_xent(torch.tensor(a), torch.tensor(b), temperature=tau).item()
        assert got == pytest.approx(plain_nt_xent(a, b, tau), rel=1e-5)


def test_nt_xent_ignores_lengths_and_is_symmetric():
    torch.manual_seed(0)
    a, b = torch.randn(5, 8), torch.randn(5, 8)
    scale = torch.rand(5, 1) + 0.1
    assert torch.allclose(nt_xent(a * scale, b), nt_xent(a, b), atol=1e-6)  # cosine similarity
    assert torch.allclose(nt_xent(a, b), nt_xent(b, a), atol=1e-6)  # both sides are anchors


def test_nt_xent_of_one_pair_is_zero():
    # B = 1: the positive is the anchor's only candidate
    assert nt_xent(torch.tensor([[1.0, 2.0]]), torch.tensor([[-3.0, 0.5]])).item() == pytest.approx(0.0, abs=1e-7)


def test_cross_modal_term_contrasts_the_mean_of_the_two_clouds():
    # z1 = h + d and z2 = h - d point far from h, but their mean is h exactly, so L_cmid = NTXent(h, h)
    h = torch.eye(2)
    d = torch.tensor([[0.0, 3.0], [3.0, 0.0]])
    terms = CrossPointLoss(temperature=1.0)(h + d, h - d, h)
    assert terms["cmid"].item() == pytest.approx(math.log(math.e + 2) - 1, abs=1e-6)
    # not the mean of the two clouds' own cross-modal losses
    per_cloud = 0.5 * (nt_xent(h + d, h, 1.0) + nt_xent(h - d, h, 1.0))
    assert abs(per_cloud.item() - terms["cmid"].item()) > 0.1
    z1, z2 = (h + d).tolist(), (h - d).tolist()
    assert terms["imid"].item() == pytest.approx(plain_nt_xent(z1, z2, 1.0), rel=1e-6)
    assert torch.equal(terms["total"], terms["imid"] + terms["cmid"])  # Eq. 5


def test_the_prototype_is_the_mean_of_unnormalised_projections():
    # a long z1 pulls the prototype towards itself: the mean is taken before normalisation, as released
    z1 = torch.tensor([[10.0, 0.0], [0.0, 1.0]])
    z2 = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    h = torch.tensor([[1.0, 0.2], [0.3, 1.0]])
    got = CrossPointLoss(0.5)(z1, z2, h)["cmid"].item()
    prototype = [[5.0, 0.5], [0.5, 0.5]]
    assert got == pytest.approx(plain_nt_xent(prototype, h.tolist(), 0.5), rel=1e-6)


def test_gradients_reach_all_three_inputs():
    torch.manual_seed(1)
    z1, z2, h = (torch.randn(4, 6, requires_grad=True) for _ in range(3))
    CrossPointLoss()(z1, z2, h)["total"].backward()
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in (z1, z2, h))


@pytest.mark.parametrize("call, message", [
    (lambda: nt_xent(torch.ones(2, 3), torch.ones(3, 3)), "share one shape"),
    (lambda: nt_xent(torch.ones(0, 3), torch.ones(0, 3)), "B >= 1"),
    (lambda: nt_xent(torch.ones(2, 3), torch.ones(2, 3), temperature=0.0), "temperature must be > 0"),
    (lambda: CrossPointLoss(temperature=-1.0), "temperature must be > 0"),
])
def test_bad_inputs_are_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call()
