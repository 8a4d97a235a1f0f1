"""The L2 Chamfer distance of Point-MAE (methods/losses/chamfer.py) against hand-computed values."""

from __future__ import annotations

import pytest
import torch

from ssl3d.methods.losses.chamfer import ChamferL2Loss, chamfer_l2


def _t(points) -> torch.Tensor:
    return torch.tensor(points, dtype=torch.float32).unsqueeze(0)


def test_two_points_each_by_hand():
    # A = {(0,0,0), (1,0,0)}, B = {(0,0,0), (0,2,0)}
    # A -> B: 0 and min(1, 5) = 1, mean 0.5;  B -> A: 0 and min(4, 5) = 4, mean 2
    value = chamfer_l2(_t([[0, 0, 0], [1, 0, 0]]), _t([[0, 0, 0], [0, 2, 0]]))
    assert value.item() == pytest.approx(2.5)


def test_squared_distances_summed_over_both_directions_for_sets_of_other_sizes():
    # A = {(0,0,0), (3,0,0), (0,0,1)}, B = {(1,0,0), (0,0,0)}
    # A -> B: 0, 4 (not sqrt: 2), min(1, 2) = 1 -> 5/3;  B -> A: min(1, 4, 2) = 1, 0 -> 1/2
    value = chamfer_l2(_t([[0, 0, 0], [3, 0, 0], [0, 0, 1]]), _t([[1, 0, 0], [0, 0, 0]]))
    assert value.item() == pytest.approx(5 / 3 + 1 / 2)


def test_symmetric_permutation_invariant_and_zero_on_equal_sets():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 7, 3, generator=g), torch.randn(3, 5, 3, generator=g)
    assert torch.allclose(chamfer_l2(a, b), chamfer_l2(b, a))
    assert torch.allclose(chamfer_l2(a[:, torch.randperm(7)], b[:, torch.randperm(5)]), chamfer_l2(a, b))
    assert torch.equal(chamfer_l2(a, a), torch.zeros(3))


def test_loss_is_the_official_mean_over_all_points_of_both_directions():
    # ChamferDistanceL2: mean(dist1) + mean(dist2), each over every point of every patch
    g = torch.Generator().manual_seed(1)
    pred, target = torch.randn(4, 6, 3, generator=g), torch.randn(4, 6, 3, generator=g)
    dist = ((pred[:, :, None] - target[:, None]) ** 2).sum(-1)
    official = dist.min(dim=2).values.mean() + dist.min(dim=1).values.mean()
    loss = ChamferL2Loss()(pred, target)
    assert loss.item() == pytest.approx(official.item(), rel=1e-6)
    assert loss.item() == pytest.approx(chamfer_l2(pred, target).mean().item(), rel=1e-6)


def test_gradient_by_hand():
    # one point each: d = 2 |a - b|^2, so dd/da = 4 (a - b)
    a = torch.tensor([[[1.0, 0.0, 0.0]]], requires_grad=True)
    chamfer_l2(a, torch.zeros(1, 1, 3)).sum().backward()
    assert torch.allclose(a.grad, torch.tensor([[[4.0, 0.0, 0.0]]]))


def test_float32_under_bf16_autocast():
    a, b = torch.randn(2, 4, 3), torch.randn(2, 4, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = chamfer_l2(a.bfloat16(), b.bfloat16())
    assert value.dtype == torch.float32


@pytest.mark.parametrize("pred, target", [
    (torch.zeros(2, 4, 3), torch.zeros(3, 4, 3)),  # other number of sets
    (torch.zeros(2, 4, 3), torch.zeros(2, 4, 2)),  # other coordinates
    (torch.zeros(4, 3), torch.zeros(4, 3)),  # no set dimension
    (torch.zeros(2, 0, 3), torch.zeros(2, 4, 3)),  # an empty set
])
def test_bad_shapes_raise(pred, target):
    with pytest.raises(ValueError):
        chamfer_l2(pred, target)
