"""SwitchVAE (methods/switchvae.py) and its latent-space figures (methods/switchvae_viz.py).

The loss terms themselves are checked against hand-computed values in
tests/test_losses_switchvae.py; here: the paper's block sizes, the switch,
the wiring of Eq. 1, training, embedding, reconstruction, variants and the PNGs.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from ssl3d.methods import get_method
from ssl3d.methods.losses.switchvae import beta_tc_kl, gaussian_kl, weighted_bce
from ssl3d.methods.switchvae import (
    MultiViewVAEEncoder, SwitchVAE, SwitchVAEConfig, choose_branch, reparameterize,
)
from ssl3d.methods.switchvae_viz import (
    arithmetic_latent, interpolate_latents, latent_interpolation, shape_arithmetic, voxel_faces,
)
from ssl3d.methods.trainer import seed_everything

from conftest import optimisation_steps



@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: these small convolutions gain nothing from two, and lose much on a busy CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

# tiny but structurally complete: 2 views of 32 px, batch 4
TINY = {"n_views": 2, "view_size": 32}


def tiny(name: str = "switchvae", **overrides):
    method = get_method(name).from_preset("quick", {**TINY, **overrides})
    seed_everything(0)
    method.model = method.build_model()
    return method


def batch_of(b: int = 4, seed: int = 0, views: int = 2, size: int = 32) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    vox = torch.zeros(b, 32, 32, 32)
    for i in range(b):  # boxes of different sizes: learnable, unlike noise
        h = 6 + 3 * i
        vox[i, 16 - h // 2: 16 + h // 2, 4: 4 + 2 * h, 10:22] = 1.0
    return {"voxels": vox, "views": torch.rand(b, views, 1, size, size, generator=g)}


def test_blocks_have_the_papers_sizes():
    method = SwitchVAE()  # paper preset: 8 views of 137 px, latent 128, 343-d voxel feature
    model = method.build_model().eval()
    vox = (torch.rand(2, 32, 32, 32) > 0.7).float()
    enc = model["voxel_encoder"]
    assert enc.features(vox).shape == (2, 343)
    mu, logvar = enc(vox)
    assert mu.shape == logvar.shape == (2, 128)
    # ResNet18 on 137 px: 137 -> 69 (conv1) -> 35 (max-pool) -> 35 -> 18 -> 9 -> 5: a 5 x 5 x 512 map (Sec. 4.1)
    img = model["image_encoder"]
    assert img.views.embed[0].in_features == 5 * 5 * 512
    assert img.views.embed[0].out_features == 1024 and img.views.aggregator.hidden_size == 1024
    with torch.no_grad():
        h = img.features(torch.rand(2, 8, 1, 137, 137))
        mu_i, logvar_i = img(torch.rand(2, 8, 1, 137, 137))
        probs = model["decoder"](mu)
    assert h.shape == (2, 1024) and mu_i.shape == logvar_i.shape == (2, 128)
    assert probs.shape == (2, 32, 32, 32) and probs.min() >= 0 and probs.max() <= 1
    assert method.data_overrides() == {"voxel_resolution": 32, "view_rig": "first8", "view_size": 137}


def test_image_encoder_uses_the_first_n_views_and_grey_of_colour():
    seed_everything(0)
    enc = MultiViewVAEEncoder(latent_dim=8, n_views=2, view_size=32, view_dim=16).eval()
    views = torch.rand(3, 5, 1, 32, 32)
    with torch.no_grad():
        a = enc(views)[0]
        b = enc(torch.cat([views[:, :2], torch.rand(3, 3, 1, 32, 32)], dim=1))[0]  # other views 3-5
        c = enc(views[:, :2].expand(-1, -1, 3, -1, -1))[0]  # the same grey as RGB
    assert torch.equal(a, b)
    assert torch.allclose(a, c, atol=1e-5)
    with pytest.raises(ValueError, match="C = 1 or 3"):
        enc(torch.rand(3, 2, 2, 32, 32))


def test_switch_probability_over_2000_draws():
    g = torch.Generator().manual_seed(1234)
    n_image = sum(choose_branch(0.2, g) == "views" for _ in range(2000))
    # Binomial(2000, 0.2): mean 400, sd 17.9; 4.5 sd either side
    assert abs(n_image - 400) <= 4.5 * math.sqrt(2000 * 0.2 * 0.8)
    assert all(choose_branch(0.0, g) == "voxels" for _ in range(50))
    assert all(choose_branch(1.0, g) == "views" for _ in range(50))
    with pytest.raises(ValueError, match="p_image"):
        choose_branch(1.5)


def test_epoch_switch_is_one_draw_per_epoch_seed():
    method = get_method("switchvae").from_preset("quick", {"switch": "epoch"})
    per_epoch = []
    for seed in range(400):
        torch.manual_seed(seed)  # what the trainer does at every epoch start
        draws = {method._switch() for _ in range(5)}
        torch.rand(10)  # other randomness inside the epoch must not change the draw
        draws.add(method._switch())
        assert len(draws) == 1
        per_epoch.append(draws.pop() == "views")
    # Binomial(400, 0.2): mean 80, sd 8
    assert abs(sum(per_epoch) - 80) <= 4.5 * 8


@pytest.mark.parametrize("p_image, branch", [(0.0, "voxels"), (1.0, "views")])
def test_loss_is_eq1_on_the_switched_branch(p_image, branch):
    method = tiny(p_image=p_image, kl_warmup_epochs=4)
    method.lr_factor(1)  # the trainer's epoch-start call: KL weight 1/4 in epoch 2
    model = method.model.eval()  # eval: z = mu, deterministic
    batch = batch_of()
    with torch.no_grad():
        out = method.training_step(batch, 0)
        mu_v, lv_v = model["voxel_encoder"](batch["voxels"])
        mu_i, lv_i = model["image_encoder"](batch["views"])
        mu, lv = (mu_v, lv_v) if branch == "voxels" else (mu_i, lv_i)
        recon = weighted_bce(model["decoder"].logits(mu), batch["voxels"], gamma=0.8)
        kl = gaussian_kl(mu, lv)
        cos = torch.nn.functional.cosine_similarity(mu_i, mu_v, dim=1)
        contras = (128 * (2 - 2 * cos)).mean()  # latents on the sphere of radius sqrt(128)
    assert float(out["image_branch"]) == float(branch == "views")
    assert torch.allclose(out["recon"], recon) and torch.allclose(out["kl"], kl)
    assert torch.allclose(out["contras"], contras, rtol=1e-4)
    assert torch.allclose(out["loss"], recon + 0.25 * kl + contras, rtol=1e-5)


def test_contrast_norm_options_and_btcvae_term():
    batch = batch_of()
    raw = tiny(contrast_norm="none", kl_warmup_epochs=0)
    raw.model.eval()
    with torch.no_grad():
        out = raw.training_step(batch, 0)
        mu_v = raw.model["voxel_encoder"](batch["voxels"])[0]
        mu_i = raw.model["image_encoder"](batch["views"])[0]
    assert torch.allclose(out["contras"], ((mu_i - mu_v) ** 2).sum(1).mean(), rtol=1e-5)

    btc = tiny("switch-btcvae", p_image=0.0, kl_warmup_epochs=0)
    btc.pretrain_dataset(list(range(100)))  # the dataset size enters the TC estimate
    btc.model.eval()
    with torch.no_grad():
        out = btc.training_step(batch, 0)
        mu, lv = btc.model["voxel_encoder"](batch["voxels"])
        tc = beta_tc_kl(mu, mu, lv, 100, 5.0)["tc"]
    assert torch.allclose(out["tc"], tc)
    assert torch.allclose(out["loss"], out["recon"] + out["kl"] + 4.0 * tc + out["contras"], rtol=1e-5)


def test_a_few_steps_lower_the_loss():
    method = tiny()
    model = method.model
    opt = method.configure_optimizer(model)  # the paper's SGD + Nesterov, lr 2e-4
    batch = batch_of()

    def loss_now() -> float:
        model.train()
        torch.manual_seed(7)  # same switch draw and noise each time
        with torch.no_grad():
            return float(method.training_step(batch, 0)["loss"])

    before = loss_now()
    optimisation_steps(method, batch, opt, 10)
    assert loss_now() < 0.9 * before


def test_embed_is_the_mean_and_deterministic():
    method = tiny()
    batch = batch_of()
    for modality, key in (("voxels", "voxel_encoder"), ("views", "image_encoder")):
        a = method.embed(batch, modality)
        b = method.embed(batch, modality)
        assert a.shape == (4, 128) and torch.equal(a, b)
        with torch.no_grad():
            assert torch.allclose(a, method.model[key](batch[modality])[0])
    assert method.encoder("views") is method.model["image_encoder"]
    with pytest.raises(ValueError, match="cannot encode 'points'"):
        method.encoder("points")


@pytest.mark.parametrize("modality", ["voxels", "views"])
def test_reconstruct_shape_and_range(modality):
    method = tiny()
    batch = batch_of()
    probs = method.reconstruct(batch, modality)
    assert probs.shape == (4, 32, 32, 32)
    assert probs.min() >= 0 and probs.max() <= 1
    assert torch.allclose(probs, method.decode(method.embed(batch, modality)), atol=1e-6)


@pytest.mark.parametrize("name, pretrain, embed", [
    ("switchvae", {"voxels", "views"}, {"voxels", "views"}),
    ("switchvae-nocontrast", {"voxels", "views"}, {"voxels", "views"}),
    ("switch-btcvae", {"voxels", "views"}, {"voxels", "views"}),
    ("voxel-vae", {"voxels"}, {"voxels"}),
    ("image-vae", {"views", "voxels"}, {"views"}),
])
def test_variants_are_registered_with_their_modalities(name, pretrain, embed):
    cls = get_method(name)
    assert cls.name == name
    assert cls.pretrain_modalities == pretrain
    assert cls.embed_modalities == embed == cls.reconstruct_modalities
    model = tiny(name).model
    assert set(model.keys()) == {"decoder"} | {{"voxels": "voxel_encoder", "views": "image_encoder"}[m] for m in embed}


def test_variant_configs_and_single_branch_losses():
    assert get_method("switchvae-nocontrast")().config.lambda_contras == 0.0
    assert get_method("switch-btcvae")().config.kl == "beta_tc"
    assert get_method("switch-btcvae")().config.beta == 5.0
    vox = tiny("voxel-vae")
    assert vox.data_overrides() == tiny().data_overrides()  # same evaluation data as SwitchVAE
    out = vox.training_step({"voxels": batch_of()["voxels"]}, 0)  # needs no views
    assert set(out) == {"loss", "recon", "kl"}


def test_config_validation_and_rigs():
    with pytest.raises(ValueError, match="p_image"):
        SwitchVAEConfig(p_image=1.2)
    with pytest.raises(ValueError, match="n_views"):
        SwitchVAEConfig(n_views=0)
    with pytest.raises(ValueError, match="lambda_contras"):
        SwitchVAEConfig(lambda_contras=-1.0)
    assert SwitchVAE(SwitchVAEConfig(n_views=12)).data_overrides()["view_rig"] == "ring12"
    assert SwitchVAE(SwitchVAEConfig(n_views=24)).data_overrides()["n_views"] == 24


def test_reparameterize_statistics():
    torch.manual_seed(0)
    mu = torch.full((20000, 2), 3.0)
    logvar = torch.log(torch.tensor([[0.25, 4.0]])).expand(20000, 2)
    z = reparameterize(mu, logvar)
    assert torch.allclose(z.mean(0), torch.tensor([3.0, 3.0]), atol=0.05)
    assert torch.allclose(z.std(0), torch.tensor([0.5, 2.0]), atol=0.05)


def test_latent_interpolation_and_arithmetic():
    a, b, c = torch.tensor([0.0, 2.0]), torch.tensor([4.0, -2.0]), torch.tensor([1.0, 1.0])
    z = interpolate_latents(a, b, 5)
    assert torch.allclose(z, torch.tensor([[0.0, 2.0], [1.0, 1.0], [2.0, 0.0], [3.0, -1.0], [4.0, -2.0]]))
    assert torch.equal(arithmetic_latent(a, b, c), torch.tensor([-3.0, 5.0]))
    with pytest.raises(ValueError, match="steps"):
        interpolate_latents(a, b, 1)


def test_voxel_faces_of_a_single_voxel_and_a_bar():
    grid = np.zeros((4, 4, 4))
    grid[1, 2, 3] = 1.0
    quads, normals = voxel_faces(grid)
    assert quads.shape == (6, 4, 3) and normals.shape == (6, 3)
    assert np.allclose(quads.reshape(-1, 3).min(0), [1, 2, 3]) and np.allclose(quads.reshape(-1, 3).max(0), [2, 3, 4])
    # each face lies in the plane its normal points out of
    centre = np.array([1.5, 2.5, 3.5])
    assert np.allclose(((quads.mean(1) - centre) * normals).sum(1), 0.5)
    grid[1, 2, 2] = 1.0  # a 1 x 1 x 2 bar: 10 exposed faces, the shared one hidden
    assert len(voxel_faces(grid)[0]) == 10


def test_viz_writes_valid_pngs(tmp_path):
    method = tiny()
    batch = batch_of(3)
    path = latent_interpolation(method, batch["voxels"][0], batch["voxels"][1], tmp_path / "interp.png", steps=3)
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > 3 * im.size[1]  # one row of 5 panels
    path = shape_arithmetic(method, *batch["views"][:3], tmp_path / "arith.png", modality="views")
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[1] > 0
        assert np.asarray(im.convert("L")).std() > 0  # something was drawn
    assert sorted(p.name for p in tmp_path.iterdir()) == ["arith.png", "interp.png"]  # no temp files left
