"""The shared supervised step: the loss equals a plain cross-entropy, the step moves the weights, bad input is named."""

from __future__ import annotations

import math

import pytest
import torch

from ssl3d.bench.protocols.head_training import check_labels, cross_entropy_step


def test_step_returns_the_plain_cross_entropy_and_updates_the_weights():
    torch.manual_seed(0)
    layer = torch.nn.Linear(3, 4)
    x, y = torch.randn(5, 2, 3), torch.tensor([[0, 1], [2, 3], [1, 1], [0, 2], [3, 3]])
    with torch.no_grad():
        logits = layer(x)
        expected = -sum(math.log(torch.softmax(logits[i, j], 0)[y[i, j]]) for i in range(5) for j in range(2)) / 10
    before = layer.weight.detach().clone()
    loss = cross_entropy_step(torch.optim.SGD(layer.parameters(), lr=0.1), layer(x), y, "test")
    assert loss == pytest.approx(float(expected), rel=1e-5)
    assert not torch.equal(before, layer.weight)


def test_non_finite_loss_and_bad_labels_are_refused_before_any_update():
    layer = torch.nn.Linear(2, 2)
    before = layer.weight.detach().clone()
    with pytest.raises(FloatingPointError, match="probe training loss"):
        cross_entropy_step(torch.optim.SGD(layer.parameters(), lr=0.1), torch.full((1, 2), float("nan")),
                           torch.tensor([0]), "probe")
    assert torch.equal(before, layer.weight)
    with pytest.raises(ValueError, match=r"point_labels outside \[0, 3\): min 0, max 3"):
        check_labels(torch.tensor([0, 3]), 3, "point_labels")
