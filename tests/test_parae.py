"""ParAE (methods/parae.py) and its Figure 3-style plot (methods/parae_viz.py).

The GMM maths (xi, NLL) is checked against scipy in test_losses_gmm.py and the
backbones in their own tests; here: the wiring of the method (the logged NLL is
Eq. 11 of the network's own logits), the paper's sizes, learning, embedding
contracts, the matched random-DGCNN baseline and the plot.
"""

from __future__ import annotations

import io
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from ssl3d.methods import get_method, list_methods
from ssl3d.methods.backbones.pointnet import transform_regularizer
from ssl3d.methods.baselines import RandomDGCNN
from ssl3d.methods.losses.gmm import ParametricBottleneckLoss, gmm_log_likelihood, gmm_parameters
from ssl3d.methods.parae import ParAE, ParAEDGCNN, random_point_subset
from ssl3d.methods.parae_viz import _up_is_z, ellipsoid_surface, plot_partitions

from conftest import optimisation_steps

BACKBONES = ["parae-pointnet", "parae-dgcnn"]


def blobs(batch: int, n: int, seed: int = 0) -> torch.Tensor:
    """Clouds of 4 tight, well separated clusters inside the unit sphere."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[0.5, 0.0, 0.0], [-0.5, 0.0, 0.0], [0.0, 0.5, 0.0], [0.0, -0.5, 0.2]])
    owner = torch.randint(0, 4, (batch, n), generator=g)
    return centres[owner] + 0.05 * torch.randn(batch, n, 3, generator=g)


def small(name: str, **overrides) -> ParAE:
    """A quick-preset method with a narrow latent, networks built (seeded)."""
    torch.manual_seed(0)
    method = get_method(name).from_preset("quick", {"global_dim": 64, **overrides})
    method.model = method.build_model()
    return method


def test_variants_are_registered_with_their_backbones():
    assert {"parae-pointnet", "parae-dgcnn", "random-dgcnn"} <= set(list_methods())
    assert get_method("parae-pointnet") is ParAE and get_method("parae-dgcnn") is ParAEDGCNN
    assert get_method("random-dgcnn") is RandomDGCNN
    assert ParAE.Config().backbone == "pointnet" and ParAEDGCNN.Config().backbone == "dgcnn"
    for name in BACKBONES:
        cls = get_method(name)
        assert cls.pretrain_modalities == {"points"} and cls.point_feature_modalities == {"points"}
        paper = cls.Config()
        assert (paper.num_partitions, paper.global_dim, paper.pretrain_points, paper.train.epochs) == (32, 1024, 1024, 25)
    assert not RandomDGCNN.pretrain_modalities and RandomDGCNN.Config().train.epochs == 0
    # the stated schedule: x0.7 every 20 of the 25 epochs (0-based)
    assert [ParAE().lr_factor(e) for e in (0, 19, 20, 24)] == pytest.approx([1.0, 1.0, 0.7, 0.7])
    # the baseline follows parae-dgcnn's architecture in both presets
    for preset in ("paper", "quick"):
        assert RandomDGCNN.from_preset(preset).config.k == ParAEDGCNN.from_preset(preset).config.k


def test_random_dgcnn_is_the_parae_dgcnn_encoder():
    parae = small("parae-dgcnn")
    torch.manual_seed(0)
    baseline = RandomDGCNN.from_preset("quick", {"global_dim": 64})
    baseline.model = baseline.build_model()
    shapes = {k: v.shape for k, v in baseline.model.state_dict().items()}
    assert shapes == {k: v.shape for k, v in parae.model.encoder.state_dict().items()}
    assert baseline.embed({"points": blobs(2, 64)}, "points").shape == (2, 64)


@pytest.mark.parametrize("name", BACKBONES)
def test_paper_sizes(name):
    torch.manual_seed(0)
    method = get_method(name).from_preset("paper")
    method.model = model = method.build_model()
    points = blobs(2, 1024)
    model.eval()
    with torch.no_grad():
        out, logits = model(points)
    assert out.global_feature.shape == (2, 1024)
    assert logits.shape == (2, 1024, 32)
    assert method.embed({"points": points}, "points").shape == (2, 1024)
    if name == "parae-pointnet":  # the PointNet segmentation network keeps its T-Nets in the paper preset
        assert out.input_transform.shape == (2, 3, 3) and out.feature_transform.shape == (2, 64, 64)


@pytest.mark.parametrize("name", BACKBONES)
def test_logged_nll_is_eq11_of_the_networks_logits(name):
    method = small(name, pretrain_points=64, head_dropout=0.0)
    points = blobs(3, 64)
    method.model.eval()  # fixed BatchNorm statistics: the same logits in both computations
    with torch.no_grad():
        terms = method.training_step({"points": points}, 0)
        _, logits = method.model(points)
    # independent of the method: Eq. 5-7 then Eq. 10, mean over points and clouds
    expected = -gmm_log_likelihood(points, gmm_parameters(points, logits, eps=1e-4)).mean()
    assert torch.allclose(terms["nll"], expected, atol=1e-5)
    assert torch.allclose(terms["loss"], expected, atol=1e-5)  # quick: no T-Nets, nothing else in the loss
    pi = torch.softmax(logits, -1).mean(1)
    assert torch.allclose(terms["active_partitions"], torch.exp(-(pi * pi.log()).sum(-1)).mean(), atol=1e-5)


class FixedPartitions(torch.nn.Module):
    """Stands in for f_psi: cloud 0 splits its points evenly over partitions 0-1, cloud 1 over all J = 4."""

    def forward(self, points: torch.Tensor):
        n = points.shape[1]
        owner = torch.stack([torch.arange(n) % 2, torch.arange(n) % 4])  # [2, N]
        logits = 60.0 * torch.nn.functional.one_hot(owner, 4).float()  # hard assignments
        return SimpleNamespace(feature_transform=None), logits


def test_active_partitions_is_the_perplexity_of_the_mixture_weights():
    method = small("parae-pointnet", pretrain_points=64)
    method.model = FixedPartitions()
    terms = method.training_step({"points": blobs(2, 64)}, 0)
    # pi = (1/2, 1/2, 0, 0) has perplexity 2, pi = (1/4, ...) perplexity 4: logged is their mean over clouds
    assert float(terms["active_partitions"]) == pytest.approx(3.0, abs=1e-4)


def test_training_step_under_bf16_autocast_keeps_the_nll_in_float32():
    method = small("parae-pointnet", pretrain_points=64)
    points = blobs(2, 64)
    method.model.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):  # what train.precision=bf16 does
        terms = method.training_step({"points": points}, 0)
        _, logits = method.model(points)
    expected = ParametricBottleneckLoss(eps=1e-4)(points, logits.float())  # the same logits, float32 maths
    assert torch.allclose(terms["nll"].float(), expected, rtol=1e-5, atol=1e-5)


def test_pointnet_feature_transform_regulariser_is_added():
    method = small("parae-pointnet", input_transform=True, feature_transform=True, pretrain_points=64)
    points = blobs(3, 64)
    method.model.eval()
    with torch.no_grad():
        terms = method.training_step({"points": points}, 0)
        a = method.model(points)[0].feature_transform.double()
    reg = float(((torch.eye(64, dtype=torch.double) - a @ a.transpose(1, 2)) ** 2).sum((1, 2)).mean())
    assert float(terms["transform_reg"]) == pytest.approx(reg, rel=1e-4, abs=1e-8)
    assert float(terms["loss"]) == pytest.approx(float(terms["nll"]) + 1e-3 * reg, rel=1e-5, abs=1e-6)
    # the T-Nets start at the identity: the regulariser is zero before training
    assert float(transform_regularizer(a.float())) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("name", BACKBONES)
def test_a_few_steps_lower_the_nll(name):
    method = small(name, pretrain_points=128)
    model = method.model
    batch = {"points": blobs(4, 128)}
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def nll() -> float:
        torch.manual_seed(123)  # the same dropout masks (DGCNN head) every time
        with torch.no_grad():
            return float(method.training_step(batch, 0)["nll"])

    model.train()
    before = nll()
    optimisation_steps(method, batch, optimizer, 12)
    after = nll()
    assert after < before - 0.05, (before, after)


@pytest.mark.parametrize("name", BACKBONES)
def test_embed_and_point_features(name):
    method = small(name)
    points = blobs(3, 96)
    a = method.embed({"points": points}, "points")
    b = method.embed({"points": points}, "points")
    assert a.shape == (3, 64) and torch.equal(a, b)
    # z is a max-pool over points: a permutation of the points does not change it
    perm = torch.randperm(96, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(method.embed({"points": points[:, perm]}, "points"), a, atol=1e-5)
    feats = method.point_features(points)
    assert feats.shape == (3, 96, 64 if name == "parae-pointnet" else 192)
    assert torch.allclose(method.point_features(points[:, perm]), feats[:, perm], atol=1e-5)


@pytest.mark.parametrize("name", BACKBONES)
def test_encoder_is_the_embedding_network_without_the_head(name):
    method = small(name)
    encoder = method.encoder("points")
    assert encoder is method.model.encoder and getattr(encoder, "head", None) is None
    head_params = {id(p) for p in method.model.head.parameters()}
    assert head_params and not head_params & {id(p) for p in encoder.parameters()}
    points = blobs(2, 64)
    before = method.embed({"points": points}, "points")
    with torch.no_grad():
        for p in encoder.parameters():
            p.mul_(1.5)
    assert not torch.allclose(method.embed({"points": points}, "points"), before)
    with pytest.raises(ValueError, match="points"):
        method.encoder("voxels")


def test_mixture_is_xi_of_the_logits():
    method = small("parae-pointnet")
    points = blobs(2, 80)
    logits, (pi, mu, sigma) = method.mixture(points)
    assert logits.shape == (2, 80, 32)
    gamma = torch.softmax(logits.double(), -1)
    p = points.double()
    assert torch.allclose(pi.double(), gamma.mean(1), atol=1e-6)  # Eq. 5
    w = gamma / gamma.sum(1, keepdim=True)
    assert torch.allclose(mu.double(), torch.einsum("bnj,bnk->bjk", w, p), atol=1e-5)  # Eq. 6
    assert (torch.linalg.eigvalsh(sigma) > 0).all()


def test_random_point_subset():
    cloud = torch.arange(2 * 10 * 3, dtype=torch.float32).view(2, 10, 3)
    torch.manual_seed(0)
    sub = random_point_subset(cloud, 4)
    assert sub.shape == (2, 4, 3)
    for b in range(2):
        rows = {tuple(r) for r in cloud[b].tolist()}
        kept = [tuple(r) for r in sub[b].tolist()]
        assert len(set(kept)) == 4 and set(kept) <= rows  # distinct points of the same cloud
    torch.manual_seed(0)
    assert torch.equal(random_point_subset(cloud, 4), sub)  # drawn from torch's global RNG
    assert random_point_subset(cloud, 10) is cloud and random_point_subset(cloud, 50) is cloud
    with pytest.raises(ValueError):
        random_point_subset(cloud, 0)


def test_bad_settings_raise():
    with pytest.raises(ValueError, match="backbone"):
        ParAE.from_preset("quick", {"backbone": "dgcnn"}).build_model()
    with pytest.raises(ValueError, match="num_partitions"):
        ParAE.from_preset("quick", {"num_partitions": 0})
    with pytest.raises(ValueError, match="head_dropout"):
        ParAEDGCNN.from_preset("quick", {"head_dropout": 1.0})


def test_ellipsoid_surface_is_the_one_sigma_contour():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(3, 3))
    sigma = a @ a.T + 0.1 * np.eye(3)
    mu = np.array([0.3, -0.2, 0.1])
    surface = ellipsoid_surface(mu, sigma, resolution=8).reshape(-1, 3)
    d = surface - mu
    mahalanobis = np.einsum("ni,ij,nj->n", d, np.linalg.inv(sigma), d)
    assert np.allclose(mahalanobis, 1.0)
    # the farthest surface point lies sqrt(largest eigenvalue) from the centre
    assert np.linalg.norm(d, axis=1).max() <= np.sqrt(np.linalg.eigvalsh(sigma).max()) + 1e-9
    assert np.allclose(ellipsoid_surface(mu, 4.0 * np.eye(3), scale=0.5) - mu, ellipsoid_surface(np.zeros(3), np.eye(3)))


def test_plot_frame_turns_y_up_into_z_up():
    assert np.allclose(_up_is_z(np.array([0.0, 1.0, 0.0])), [0.0, 0.0, 1.0])
    basis = _up_is_z(np.eye(3))
    assert np.allclose(basis @ basis.T, np.eye(3)) and np.isclose(np.linalg.det(basis), 1.0)


def test_plot_partitions_writes_a_png(tmp_path):
    method = small("parae-pointnet")
    path = plot_partitions(method, blobs(1, 200)[0], tmp_path / "sub" / "partitions.png", dpi=60)
    raw = path.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    image = Image.open(io.BytesIO(raw)).convert("RGB")
    assert image.size == (600, 300)
    # coloured partitions and ellipsoids, not a blank canvas
    assert len(np.unique(np.asarray(image).reshape(-1, 3), axis=0)) > 50
    assert [p.name for p in path.parent.iterdir()] == ["partitions.png"]  # no temporary left behind
    with pytest.raises(ValueError, match="one cloud"):
        plot_partitions(method, blobs(2, 10), tmp_path / "x.png")
