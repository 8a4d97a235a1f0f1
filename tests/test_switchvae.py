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

from ssl3d.methods import RunContext, get_method
from ssl3d.methods.losses.switchvae import beta_tc_kl, gaussian_kl, weighted_bce
from ssl3d.methods.backbones.image import MultiViewVAEEncoder
from ssl3d.methods.switchvae import (
    SwitchVAE, SwitchVAEConfig, choose_branch, reparameterize,
)
from ssl3d.methods.switchvae_viz import (
    arithmetic_latent, interpolate_latents, latent_interpolation, shape_arithmetic, voxel_faces,
)
from ssl3d.core.seeding import epoch_seed, seed_everything

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
    # paper preset: 8 views of 137 px, latent 128, 343-d voxel feature; the sizes do not depend on the
    # initialisation, so random init here (the ImageNet load: tests/test_imagenet_init.py)
    method = SwitchVAE(SwitchVAEConfig(image_weights=None))
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
    assert probs.shape == (2, 32, 32, 32)
    assert torch.allclose(probs, torch.sigmoid(model["decoder"].logits(mu)))  # Sec. 4.1: a sigmoid output layer
    assert method.data_overrides() == {"voxel_resolution": 32, "view_rig": "first8", "view_size": 137}


def test_image_encoder_uses_n_views_spread_evenly_and_grey_of_colour():
    seed_everything(0)
    enc = MultiViewVAEEncoder(latent_dim=8, n_views=2, view_size=32, view_dim=16).eval()
    views = torch.rand(3, 6, 1, 32, 32)
    others = views.clone()
    others[:, [1, 2, 4, 5]] = torch.rand(3, 4, 1, 32, 32)  # 2 of 6 ring views are views 0 and 3
    with torch.no_grad():
        a = enc(views)[0]
        b = enc(others)[0]
        c = enc(views[:, [0, 3]].expand(-1, -1, 3, -1, -1))[0]  # the same two views, grey as RGB
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


def test_batch_switch_is_a_function_of_run_seed_epoch_and_step():
    method = get_method("switchvae").from_preset("quick")

    def branches(run_seed: int, epoch: int, steps: range) -> list[str]:
        method.on_epoch_start(epoch, run_seed)  # the trainer's epoch-start call
        torch.manual_seed(run_seed + 1_000_003)  # another rank's global generator: must not matter
        return [method._switch(step) for step in steps]

    draws = branches(5, 0, range(2000))
    assert draws == branches(5, 0, range(2000))
    # Binomial(2000, 0.2): the per-batch probability of Sec. 4 is unchanged
    assert abs(sum(d == "views" for d in draws) - 400) <= 4.5 * math.sqrt(2000 * 0.2 * 0.8)
    assert draws[:200] != branches(6, 0, range(200)) and draws[:200] != branches(5, 1, range(200))


def test_epoch_switch_is_one_draw_per_run_seed_and_epoch():
    method = get_method("switchvae").from_preset("quick", {"switch": "epoch"})
    per_epoch = []
    for run_seed in range(100):
        for epoch in range(4):
            method.on_epoch_start(epoch, run_seed)
            torch.manual_seed(run_seed * 7 + epoch)  # other randomness inside the epoch must not change the draw
            draws = {method._switch(step) for step in range(5)}
            assert len(draws) == 1
            draw = draws.pop()
            # the draw single-process runs always had: torch.initial_seed() was the trainer's epoch seed
            expected = choose_branch(0.2, torch.Generator().manual_seed(epoch_seed(run_seed, epoch)))
            assert draw == expected
            per_epoch.append(draw == "views")
    # Binomial(400, 0.2): mean 80, sd 8
    assert abs(sum(per_epoch) - 80) <= 4.5 * 8


@pytest.mark.parametrize("p_image, branch", [(0.0, "voxels"), (1.0, "views")])
def test_loss_is_eq1_on_the_switched_branch(p_image, branch):
    method = tiny(p_image=p_image, kl_warmup_epochs=4)
    method.on_epoch_start(1, 0)  # the trainer's epoch-start call: KL weight 1/4 in epoch 2
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


@pytest.mark.parametrize("modality, encoder", [("voxels", "voxel_encoder"), ("views", "image_encoder")])
def test_reconstruct_decodes_the_mean_of_the_matching_encoder(modality, encoder):
    method = tiny()
    batch = batch_of()
    optimisation_steps(method, batch, method.configure_optimizer(method.model), 1)  # BatchNorm statistics != init
    probs = method.reconstruct(batch, modality)
    model = method.model.eval()
    with torch.no_grad():
        mu, _ = model[encoder](batch[modality])
        expected = torch.sigmoid(model["decoder"].logits(mu))
    assert probs.shape == (4, 32, 32, 32)
    assert torch.allclose(probs, expected, atol=1e-6)
    other = "views" if modality == "voxels" else "voxels"
    assert not torch.allclose(probs, method.reconstruct(batch, other), atol=1e-3)  # so a swapped route would show
    z = torch.randn(3, 128)
    with torch.no_grad():
        assert torch.allclose(method.decode(z), torch.sigmoid(model["decoder"].logits(z)), atol=1e-6)


@pytest.mark.parametrize("modality", ["voxels", "views"])
def test_embeddings_do_not_depend_on_the_rest_of_the_batch(modality):
    method = tiny()
    batch = batch_of()
    optimisation_steps(method, batch, method.configure_optimizer(method.model), 1)  # BatchNorm statistics != init
    whole = method.embed(batch, modality)
    for i in range(4):
        alone = method.embed({k: v[i:i + 1] for k, v in batch.items()}, modality)
        assert torch.allclose(alone[0], whole[i], atol=1e-5)


@pytest.mark.parametrize("p_image, selected, unselected", [(0.0, "voxel_encoder", "image_encoder"),
                                                           (1.0, "image_encoder", "voxel_encoder")])
def test_stop_gradient_routing_of_the_switch(p_image, selected, unselected):
    def gradient_mass(lambda_contras: float) -> dict[str, float]:
        method = tiny(p_image=p_image, lambda_contras=lambda_contras, kl_warmup_epochs=0)
        method.model.train()
        method.training_step(batch_of(), 0)["loss"].backward()
        return {name: sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)
                for name, module in method.model.items()}

    alone = gradient_mass(0.0)
    assert alone[unselected] == 0.0  # Sec. 1, 3.1: no gradient into the branch the switch left out
    assert alone[selected] > 0 and alone["decoder"] > 0
    assert gradient_mass(1.0)[unselected] > 0  # ... except through the contrastive term of Eq. 4


def test_training_mode_samples_the_decoded_latent():
    method = tiny(p_image=0.0, kl_warmup_epochs=0)
    model = method.model.train()
    batch = batch_of()
    torch.manual_seed(3)
    out = method.training_step(batch, 0)
    torch.manual_seed(3)
    with torch.no_grad():
        mu, logvar = model["voxel_encoder"](batch["voxels"])
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)  # the step's first draw: the voxel latent's noise
        recon = weighted_bce(model["decoder"].logits(z), batch["voxels"], gamma=0.8)
        recon_of_mean = weighted_bce(model["decoder"].logits(mu), batch["voxels"], gamma=0.8)
    assert torch.allclose(out["recon"], recon, rtol=1e-5)
    assert not torch.allclose(out["recon"], recon_of_mean, rtol=1e-3)
    assert torch.allclose(out["kl"], gaussian_kl(mu, logvar), rtol=1e-5)  # the KL of (mu, sigma), not of z


def test_learning_rate_schedule_of_sec4():
    method = SwitchVAE()  # x0.96 per 10 epochs after the first 50 (0-based epochs)
    factors = [method.lr_factor(e) for e in (0, 49, 50, 59, 60, 69, 70, 149)]
    assert factors == pytest.approx([1, 1, 1, 1, 0.96, 0.96, 0.96 ** 2, 0.96 ** 9])
    # and the shared loop applies it: epochs 1, 2, 3 at 1, 1, 0.96 x lr with the decay from epoch 1 on
    vae = get_method("voxel-vae").from_preset("quick", {
        "train.epochs": 3, "train.batch_size": 2, "train.schedule_start": 1, "train.step_size": 1})
    vae.pretrain([{"voxels": v} for v in batch_of()["voxels"]], RunContext(progress=False))
    assert [h["lr"] for h in vae.pretrain_info["history"]] == pytest.approx([2e-4, 2e-4, 2e-4 * 0.96])


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
