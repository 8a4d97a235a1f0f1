"""CMIC (methods/cmic.py): attention, encoders, query-conditioned IBSR scores, training, variants.

Colour transfer and the loss terms are tested in test_colour_transfer.py and
test_losses_cmic.py; here the glue: shapes, the attention of Sec. 3.4 against a
per-pair loop, the affine augmentation against hand-computed pixels, and the
registered ablations.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ssl3d.methods import get_method
from ssl3d.methods.augment.crops import random_resized_crop_flip
from ssl3d.methods.cmic import CMICNet, select_views
from ssl3d.core.seeding import seed_everything

from conftest import optimisation_steps

# tiny networks and images keep the file fast on a 2-core CPU
TINY = {"query_arch": "resnet18", "render_arch": "resnet18", "image_size": 32, "view_size": 32, "n_views": 4}


def _method(name: str = "cmic", **over):
    method = get_method(name).from_preset("quick", {**TINY, **over})
    method.model = method.build_model()
    return method


def _batch(b: int = 6, v: int = 12, size: int = 32, seed: int = 0) -> dict[str, torch.Tensor]:
    """Smooth random images (blobs, not white noise) so augmentations keep them recognisable."""
    g = torch.Generator().manual_seed(seed)

    def smooth(*shape):
        low = torch.rand(*shape[:-2], 4, 4, generator=g)
        flat = low.reshape(-1, 1, 4, 4)
        return F.interpolate(flat, size=shape[-2:], mode="bilinear", align_corners=False).reshape(*shape)

    mask = (smooth(b, size, size) > 0.5).float()
    return {"image": smooth(b, 3, size, size), "mask": mask, "views": smooth(b, v, 1, size, size),
            "label": torch.tensor([0, 0, 1, 1, 2, 2][:b]), "index": torch.arange(b)}


def test_encoders_give_unit_128d_embeddings():
    torch.manual_seed(0)
    net = CMICNet("resnet18", "resnet18", embed_dim=128).eval()
    batch = _batch()
    with torch.no_grad():
        q = net.embed_query(batch["image"], batch["mask"])
        v = net.embed_views(batch["views"])
    assert q.shape == (6, 128) and v.shape == (6, 12, 128)
    assert torch.allclose(q.norm(dim=-1), torch.ones(6), atol=1e-5)
    assert torch.allclose(v.norm(dim=-1), torch.ones(6, 12), atol=1e-5)
    # the query encoder really reads the mask (4th input channel)
    with torch.no_grad():
        q2 = net.embed_query(batch["image"], 1 - batch["mask"])
    assert not torch.allclose(q, q2)
    with pytest.raises(ValueError, match="mask"):
        net.embed_query(batch["image"], batch["mask"][:, :5])


def test_attention_weights_sum_to_one_and_merge_by_hand():
    torch.manual_seed(0)
    net = CMICNet("resnet18", "resnet18", embed_dim=8)
    query = F.normalize(torch.randn(3, 8), dim=-1)
    views = F.normalize(torch.randn(5, 4, 8), dim=-1)
    merged, weights = net.attend(query, views)
    assert weights.shape == (3, 5, 4) and merged.shape == (3, 5, 8)
    assert torch.allclose(weights.sum(-1), torch.ones(3, 5), atol=1e-6)
    assert (weights > 0).all()
    W = net.attention.weight.detach()
    i, j = 2, 3
    scores = views[j] @ (W @ query[i])  # (W v_i^q) . v^r_{j,m}
    a = torch.exp(scores) / torch.exp(scores).sum()
    assert torch.allclose(weights[i, j], a, atol=1e-6)
    assert torch.allclose(merged[i, j], (a[:, None] * views[j]).sum(0), atol=1e-6)


def test_ibsr_similarity_equals_per_pair_computation():
    seed_everything(0)
    method = _method()
    method.model.eval()
    batch = _batch(b=5, v=12)
    with torch.no_grad():
        query = method.embed(batch, "image")
        sim = method.ibsr_similarity_batch(query, batch["views"])
        per_view = method.model.embed_views(batch["views"][:, [0, 3, 6, 9]])  # 4 evenly spaced of 12
        expected = torch.empty(5, 5)
        for i in range(5):
            for j in range(5):
                a = torch.softmax(per_view[j] @ method.model.attention(query[i]), dim=0)
                v = (a[:, None] * per_view[j]).sum(0)
                expected[i, j] = torch.dot(query[i], v) / (query[i].norm() * v.norm())
    assert sim.shape == (5, 5)
    assert torch.allclose(sim, expected, atol=1e-5)
    # a different number of gallery shapes than queries
    with torch.no_grad():
        assert method.ibsr_similarity_batch(query[:2], batch["views"]).shape == (2, 5)


def test_views_embedding_is_mean_of_view_embeddings():
    seed_everything(0)
    method = _method()
    batch = _batch(b=3)
    emb = method.embed(batch, "views")
    with torch.no_grad():
        method.model.eval()
        per_view = method.model.embed_views(batch["views"][:, [0, 3, 6, 9]])
    assert emb.shape == (3, 128)
    assert torch.allclose(emb, per_view.mean(1), atol=1e-6)


def test_select_views_is_evenly_spaced():
    views = torch.arange(12.0).view(1, 12, 1, 1, 1)
    assert select_views(views, 6).flatten().tolist() == [0, 2, 4, 6, 8, 10]
    assert select_views(views, 5).flatten().tolist() == [0, 2, 4, 7, 9]  # floor(k * 12 / 5)
    assert select_views(views, 12).shape[1] == 12 and select_views(views, 20).shape[1] == 12


def test_affine_identity_and_flip_by_hand():
    img = torch.rand(2, 4, 6, 6)
    torch.manual_seed(0)
    same = random_resized_crop_flip(img, (1.0, 1.0), (1.0, 1.0), flip_prob=0.0)
    assert torch.allclose(same, img, atol=1e-5)  # scale 1, ratio 1: the crop is the whole image
    flipped = random_resized_crop_flip(img, (1.0, 1.0), (1.0, 1.0), flip_prob=1.0)
    assert torch.allclose(flipped, img.flip(-1), atol=1e-5)
    # a centred 1/4-area crop of a horizontal ramp: the output spans the middle half of the ramp
    ramp = torch.linspace(0, 1, 64).expand(1, 1, 64, 64).clone()
    torch.manual_seed(0)
    out = random_resized_crop_flip(ramp, (0.25, 0.25), (1.0, 1.0), flip_prob=0.0)
    row = out[0, 0, 32]
    slope = (row[40] - row[20]) / 20
    assert math.isclose(float(slope), 0.5 / 63, rel_tol=1e-3)  # zoomed 2x: half the input slope


def test_augment_applies_the_same_affine_to_image_and_mask():
    seed_everything(0)
    method = _method("cmic-noaug")  # affine only, so image and mask must stay aligned
    img = torch.zeros(2, 3, 32, 32)
    mask = torch.zeros(2, 32, 32)
    img[:, :, 8:20, 4:14] = 1.0
    mask[:, 8:20, 4:14] = 1.0
    torch.manual_seed(3)
    out_img, out_mask = method.augment(img, mask)
    assert torch.allclose(out_img[:, 0], out_mask, atol=1e-5)
    assert not torch.allclose(out_mask, mask)


def test_a_few_steps_lower_the_loss():
    seed_everything(0)
    method = _method()
    model = method.model
    batch = _batch()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def loss_at() -> float:
        model.train()  # batch statistics: a network after a few steps has unsettled running stats
        torch.manual_seed(123)
        with torch.no_grad():
            return float(method.training_step(batch, 0)["loss"])

    before = loss_at()
    terms = optimisation_steps(method, batch, optimizer, 10)
    assert set(terms) == {"loss", "inst", "cats", "batch_top1"}
    assert loss_at() < before


@pytest.mark.parametrize("name, field, value", [
    ("cmic", "beta1", 0.2), ("cmic-noncat", "beta1", 0.0), ("cmic-hsv", "colour_aug", "hsv"),
    ("cmic-noaug", "colour_aug", "none"), ("cmic-triplet", "instance_loss", "triplet"),
])
def test_variants_are_configured_as_named(name, field, value):
    cls = get_method(name)
    for preset in ("paper", "quick"):
        config = cls.from_preset(preset).config
        assert getattr(config, field) == value
        assert config.affine_aug
    paper = cls.from_preset("paper").config
    assert (paper.train.lr, paper.train.betas, paper.train.batch_size, paper.train.epochs) == (5e-5, (0.5, 0.999), 60, 500)
    assert (paper.query_arch, paper.render_arch, paper.n_views, paper.tau, paper.embed_dim) == ("resnet50", "resnet34", 12, 0.1, 128)
    if name != "cmic":
        with pytest.raises(ValueError, match="variant"):
            cls.from_preset("quick", {field: getattr(get_method("cmic").Config(), field)})


def test_noncat_uses_no_labels_and_cmic_does():
    seed_everything(0)
    batch = _batch()
    relabelled = {**batch, "label": torch.tensor([0, 1, 2, 0, 1, 2])}
    for name, depends in (("cmic", True), ("cmic-noncat", False)):
        method = _method(name)
        method.model.eval()
        out = []
        for b in (batch, relabelled):
            torch.manual_seed(0)
            with torch.no_grad():
                out.append(float(method.training_step(b, 0)["loss"]))
        assert (out[0] != out[1]) == depends


def test_duplicate_shapes_are_dropped_when_shape_index_is_given():
    seed_everything(0)
    method = _method()
    method.model.eval()
    batch = _batch()
    dup = {**batch, "shape_index": torch.tensor([0, 1, 2, 3, 4, 5])}
    torch.manual_seed(0)
    with torch.no_grad():
        ref = method.training_step({k: v[:4] for k, v in batch.items()}, 0)["loss"]
        # photos 4 and 5 show shapes 0 and 1 again: only the first four items remain
        dup["shape_index"] = torch.tensor([0, 1, 2, 3, 0, 1])
        torch.manual_seed(0)
        got = method.training_step(dup, 0)["loss"]
    assert torch.allclose(ref, got, atol=1e-6)


def test_data_overrides_and_modalities():
    method = get_method("cmic").from_preset("quick")
    over = method.data_overrides()
    assert over == {"view_rig": "ring12", "view_size": method.config.view_size, "image_size": method.config.image_size}
    assert method.query_conditioned and method.embed_modalities == {"image", "views"}
    assert method.pretrain_modalities == {"image", "mask", "views"}
    with pytest.raises(ValueError, match="crop_scale"):
        get_method("cmic").from_preset("quick", {"crop_scale": (0.9, 0.5)})
