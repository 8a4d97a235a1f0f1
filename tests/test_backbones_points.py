"""Point-cloud backbones: k-NN, memory-aware EdgeConv, DGCNN, PointNet."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.spatial.distance import cdist
from torch import nn

from ssl3d.methods.backbones.dgcnn import DGCNN, EdgeConv
from ssl3d.methods.backbones.knn import knn_indices
from ssl3d.methods.backbones.outputs import PointBackboneOutput
from ssl3d.methods.backbones.pointnet import PointNet, transform_regularizer

torch.set_num_threads(1)


def _cloud(b: int, n: int, c: int = 3, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, n, c, generator=g, dtype=dtype)
    return x / x.norm(dim=-1, keepdim=True).amax()


# --------------------------------------------------------------------------- k-NN


def _check_knn_against_bruteforce(x: torch.Tensor, idx: torch.Tensor, k: int, include_self: bool) -> None:
    xn = x.double().numpy()
    for b in range(xn.shape[0]):
        d = cdist(xn[b], xn[b], "sqeuclidean")
        n = d.shape[0]
        if include_self:
            np.fill_diagonal(d, -1.0)  # self is forced first
        else:
            np.fill_diagonal(d, np.inf)
        ref_sorted = np.sort(d, axis=1)
        got = idx[b].numpy()
        got_d = np.take_along_axis(d, got, axis=1)
        # same multiset of distances (robust to ties) and sorted ascending
        np.testing.assert_allclose(got_d, ref_sorted[:, :k], atol=1e-6)
        # where the k-th and (k+1)-th distances are well separated, the SETS are equal
        for i in range(n):
            assert len(set(got[i])) == k
            if k < n and ref_sorted[i, k] - ref_sorted[i, k - 1] > 1e-5:
                assert set(got[i]) == set(np.argsort(d[i], kind="stable")[:k])
        if include_self:
            assert (got[:, 0] == np.arange(n)).all()
        else:
            assert not (got == np.arange(n)[:, None]).any()


@pytest.mark.parametrize("chunk_size", [None, 1, 7, 64, 1000])
@pytest.mark.parametrize("include_self", [True, False])
def test_knn_matches_bruteforce(chunk_size: int | None, include_self: bool) -> None:
    x = _cloud(2, 57, 5, seed=1)
    idx = knn_indices(x, 9, chunk_size=chunk_size, include_self=include_self)
    assert idx.shape == (2, 57, 9) and idx.dtype == torch.long
    _check_knn_against_bruteforce(x, idx, 9, include_self)


def test_knn_ties_on_a_lattice_and_tiny_memory_budget() -> None:
    # integer lattice: many exactly equidistant neighbours
    g = torch.stack(torch.meshgrid(*[torch.arange(4.0)] * 3, indexing="ij"), dim=-1).reshape(1, -1, 3)
    idx = knn_indices(g, 7, memory_budget=1)  # budget of one byte -> one row per chunk
    _check_knn_against_bruteforce(g, idx, 7, True)
    # corner (0,0,0): itself, then its 3 axis neighbours at distance 1, then 3 at sqrt(2)
    d = (g[0, idx[0, 0]] - g[0, 0]).pow(2).sum(-1)
    assert d.tolist() == [0, 1, 1, 1, 2, 2, 2]


def test_knn_rejects_bad_arguments() -> None:
    x = _cloud(1, 10)
    with pytest.raises(ValueError, match="k must be"):
        knn_indices(x, 11)
    with pytest.raises(ValueError, match="k must be"):
        knn_indices(x, 10, include_self=False)
    with pytest.raises(ValueError, match=r"\[B, N, C\]"):
        knn_indices(x[0], 3)
    with pytest.raises(ValueError, match="chunk_size"):
        knn_indices(x, 3, chunk_size=0)


# --------------------------------------------------------------------------- EdgeConv


def _dense_edgeconv(
    x: torch.Tensor, idx: torch.Tensor, weights: list[torch.Tensor], norms: nn.ModuleList
) -> torch.Tensor:
    """Textbook EdgeConv: [x_i, x_j - x_i] as [B, 2C, N, k], Conv2d + BN2d + LeakyReLU(0.2), max over k."""
    b, n, c = x.shape
    k = idx.shape[2]
    xj = torch.stack([x[i][idx[i]] for i in range(b)])  # [B, N, k, C], explicit per-cloud gather
    xi = x.unsqueeze(2).expand(-1, -1, k, -1)
    h = torch.cat([xi, xj - xi], dim=-1).permute(0, 3, 1, 2)
    for w, bn in zip(weights, norms):
        h = F.leaky_relu(bn(F.conv2d(h, w[:, :, None, None])), 0.2)
    return h.max(dim=-1).values.transpose(1, 2)


def _edgeconv_pair(channels, dtype):
    torch.manual_seed(3)
    conv = EdgeConv(5, channels, k=6).to(dtype)
    with torch.no_grad():  # mixed-sign BN scales exercise both the max and the min branch
        for bn in conv.norms:
            bn.weight.uniform_(-1.0, 1.0)
            bn.bias.uniform_(-0.3, 0.3)
    weights = [conv.weight] + [lin.weight for lin in conv.linears]
    dense_norms = nn.ModuleList(nn.BatchNorm2d(w.shape[0]) for w in weights).to(dtype)
    with torch.no_grad():
        for dst, src in zip(dense_norms, conv.norms):
            dst.weight.copy_(src.weight)
            dst.bias.copy_(src.bias)
    return conv, weights, dense_norms


@pytest.mark.parametrize("channels", [16, (8, 12), (6, 6, 10)])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_edgeconv_equals_dense_formulation(channels, dtype, tol) -> None:
    conv, weights, dense_norms = _edgeconv_pair(channels, dtype)
    x = _cloud(3, 40, 5, seed=4, dtype=dtype).requires_grad_(True)
    idx = knn_indices(x, 6)
    for training in (True, False):  # train: batch statistics; eval: running statistics after one step
        conv.train(training)
        dense_norms.train(training)
        ours = conv(x, idx)
        ref = _dense_edgeconv(x, idx, weights, dense_norms)
        assert ours.shape == (3, 40, conv.out_channels)
        torch.testing.assert_close(ours, ref, atol=tol, rtol=tol)
        g = torch.randn_like(ours)
        ours_params = [x, *weights, *[p for bn in conv.norms for p in (bn.weight, bn.bias)]]
        ref_params = [x, *weights, *[p for bn in dense_norms for p in (bn.weight, bn.bias)]]
        grads = torch.autograd.grad((ours * g).sum(), ours_params)
        ref_grads = torch.autograd.grad((ref * g).sum(), ref_params)
        for a, r in zip(grads, ref_grads):
            torch.testing.assert_close(a, r, atol=10 * tol, rtol=10 * tol)
    for a, r in zip(conv.norms, dense_norms):  # identical running-statistic updates
        torch.testing.assert_close(a.running_mean, r.running_mean, atol=tol, rtol=tol)
        torch.testing.assert_close(a.running_var, r.running_var, atol=tol, rtol=tol)
        assert int(a.num_batches_tracked) == int(r.num_batches_tracked) == 1


def test_edgeconv_builds_its_own_graph_and_validates() -> None:
    conv, weights, dense_norms = _edgeconv_pair(16, torch.float64)
    x = _cloud(2, 30, 5, dtype=torch.float64)
    torch.testing.assert_close(conv(x), _dense_edgeconv(x, knn_indices(x, 6), weights, dense_norms))
    with pytest.raises(ValueError, match="negative_slope"):
        EdgeConv(3, 8, negative_slope=-0.1)
    with pytest.raises(ValueError, match="channels"):
        EdgeConv(3, ())
    with pytest.raises(ValueError, match=r"x must be \[B, N, 5\]"):
        conv(x[..., :3])


# --------------------------------------------------------------------------- DGCNN


@pytest.mark.parametrize("pooling", ["max", "max+avg"])
@pytest.mark.parametrize("training", [True, False])
def test_dgcnn_global_feature_equals_plain_aggregation(pooling: str, training: bool) -> None:
    torch.manual_seed(0)
    model = DGCNN(edge_channels=(8, (8, 8)), global_dim=24, k=5, pooling=pooling).double().train(training)
    with torch.no_grad():
        model.aggregate_norm.weight.uniform_(-1, 1)
    bn = copy.deepcopy(model.aggregate_norm)  # untouched copy for the reference
    out = model(_cloud(2, 32, dtype=torch.float64))
    local = out.point_features
    h = F.leaky_relu(bn(model.aggregate(local).reshape(64, 24)), 0.2).view(2, 32, 24)
    ref = h.max(dim=1).values
    if pooling == "max+avg":
        ref = torch.cat([ref, h.mean(dim=1)], dim=1)
    torch.testing.assert_close(out.global_feature, ref)
    torch.testing.assert_close(model.aggregate_norm.running_var, bn.running_var)


def test_dgcnn_configurations_shapes() -> None:
    pts = _cloud(2, 48)
    parae = DGCNN.from_preset("parae", num_point_outputs=32, k=8)
    out = parae(pts)
    assert isinstance(out, PointBackboneOutput)
    assert out.global_feature.shape == (2, 1024) and parae.global_dim == 1024
    assert out.point_features.shape == (2, 48, 64 + 64 + 64) and parae.point_dim == 192
    assert out.logits is not None and out.logits.shape == (2, 48, 32)
    cmcv = DGCNN.from_preset("cmcv", k=8)
    out = cmcv(pts)
    assert out.global_feature.shape == (2, 512) and out.logits is None
    assert out.point_features.shape == (2, 48, 64 + 64 + 64 + 128)
    single = DGCNN(edge_channels=(64, 64, 64, 128), global_dim=512, k=8)  # CM-CV as one-layer blocks
    assert single(pts).global_feature.shape == (2, 512)
    cls = DGCNN.from_preset("dgcnn-cls", k=8)
    assert cls(pts).global_feature.shape == (2, 2048) and cls.global_dim == 2048
    with pytest.raises(ValueError, match="unknown DGCNN preset"):
        DGCNN.from_preset("nope")
    with pytest.raises(ValueError, match="pooling"):
        DGCNN(pooling="sum")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="channels per point"):
        parae(_cloud(2, 48, 4))


# --------------------------------------------------------------------------- PointNet


def test_pointnet_shapes_and_identity_tnets_at_init() -> None:
    model = PointNet(num_point_outputs=32, input_transform=True, feature_transform=True).eval()
    out = model(_cloud(2, 50))
    assert out.global_feature.shape == (2, 1024) and model.global_dim == 1024
    assert out.point_features.shape == (2, 50, 64) and model.point_dim == 64
    assert out.logits is not None and out.logits.shape == (2, 50, 32)
    # T-Nets start as the identity transform (last layer zero weight, identity bias)
    torch.testing.assert_close(out.input_transform, torch.eye(3).expand(2, 3, 3))
    torch.testing.assert_close(out.feature_transform, torch.eye(64).expand(2, 64, 64))
    plain = PointNet(in_channels=6, global_dim=256)
    o = plain(_cloud(3, 20, 6))
    assert o.global_feature.shape == (3, 256) and o.logits is None and o.feature_transform is None
    with pytest.raises(ValueError, match="channels per point"):
        plain(_cloud(3, 20, 3))
    with pytest.raises(ValueError, match="global_dim"):
        PointNet(global_dim=0)


def test_transform_regularizer_hand_values() -> None:
    eye = torch.eye(3).expand(2, 3, 3)
    assert transform_regularizer(eye).item() == 0.0
    # A = 2I: I - 4I = -3I, squared Frobenius norm 9 * 3 = 27
    assert transform_regularizer(2 * eye).item() == pytest.approx(27.0)
    c, s = np.cos(0.7), np.sin(0.7)
    rot = torch.tensor([[[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]])
    assert transform_regularizer(rot).item() == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError):
        transform_regularizer(torch.ones(2, 3, 4))


# --------------------------------------------------------------------------- shared properties


def _models():
    torch.manual_seed(0)
    return [
        PointNet(num_point_outputs=5, input_transform=True, feature_transform=True),
        DGCNN(edge_channels=(16, (16, 16)), global_dim=64, k=6, num_point_outputs=5),
        DGCNN(edge_channels=(16, 32), global_dim=64, k=6, pooling="max+avg"),
    ]


@pytest.mark.parametrize("index", range(3))
def test_permutation_invariance_and_determinism(index: int) -> None:
    model = _models()[index].eval()
    pts = _cloud(2, 64, seed=7)
    perm = torch.randperm(64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a, a2, b = model(pts), model(pts), model(pts[:, perm])
    torch.testing.assert_close(a.global_feature, b.global_feature, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a.point_features[:, perm], b.point_features, atol=1e-5, rtol=1e-5)
    if a.logits is not None:
        torch.testing.assert_close(a.logits[:, perm], b.logits, atol=1e-5, rtol=1e-5)
        assert torch.equal(a.logits, a2.logits)
    assert torch.equal(a.global_feature, a2.global_feature)  # eval mode is deterministic


@pytest.mark.parametrize("index", range(3))
def test_gradients_reach_every_parameter(index: int) -> None:
    model = _models()[index].train()
    out = model(_cloud(2, 40, seed=2))
    loss = out.global_feature.square().mean()
    if out.logits is not None:
        loss = loss + out.logits.square().mean()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    first = model.mlp1.layers[0].weight if isinstance(model, PointNet) else model.convs[0].weight
    assert first.grad.abs().sum() > 0
