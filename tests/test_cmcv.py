"""CM-CV (methods/cmcv.py, cmcv_config.py, cmcv_metrics.py, samplers.py, augment/): sampler, augmentations,
network shapes, training, pretext metrics, variants.

The loss terms themselves are checked against hand-computed values in
tests/test_losses_cmcv.py.
"""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ssl3d.methods import RunContext, get_method, list_methods
from ssl3d.methods.augment.crops import center_crop, random_crop_flip
from ssl3d.methods.augment.points import rotate_jitter
from ssl3d.methods.cmcv import CMCVNet
from ssl3d.methods.cmcv_config import CMConfig, CMCVConfig
from ssl3d.methods.cmcv_metrics import pretext_metrics
from ssl3d.methods.samplers import CrossViewSampler

from conftest import optimisation_steps


class CodedViews(Dataset):
    """``n`` objects whose view ``v`` of object ``o`` is the constant image ``o * 100 + v`` (decodable)."""

    def __init__(self, n: int, views: int = 6, size: int = 8, points: int = 16) -> None:
        self.n, self.views, self.size, self.points = n, views, size, points

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, o: int) -> dict[str, torch.Tensor]:
        values = o * 100.0 + torch.arange(self.views, dtype=torch.float32)
        return {"points": torch.full((self.points, 3), float(o)),
                "views": values.view(-1, 1, 1, 1).expand(-1, 1, self.size, self.size).clone(),
                "label": torch.tensor(0), "index": torch.tensor(o)}


def _decode(img: torch.Tensor) -> tuple[int, int]:
    value = int(img.flatten()[0])
    return value // 100, value % 100


# -- sampler (Sec. 3.3, Algorithm 1) ----------------------------------------------------------
def test_sampler_never_pairs_an_object_with_itself_and_draws_from_the_right_objects():
    data = CodedViews(n=3, views=6)
    sampler = CrossViewSampler(data, train_views=4)
    torch.manual_seed(0)
    negatives = {o: set() for o in range(3)}
    for _ in range(100):
        for k in range(len(sampler)):
            s = sampler[k]
            i, j = int(s["index"]), int(s["negative_index"])
            assert i == k and j != i
            o1, v1 = _decode(s["img1"])
            o2, v2 = _decode(s["img2"])
            o3, v3 = _decode(s["img3"])
            assert o1 == o2 == i and v1 != v2  # two *different* views of the same object
            assert o3 == j  # img3 is a view of the negative object
            assert max(v1, v2, v3) < 4  # held-out views (4, 5) are never used
            assert torch.equal(s["points"], data[i]["points"])
            assert "label" not in s  # category labels do not reach the pretext task
            negatives[i].add(j)
    assert negatives == {0: {1, 2}, 1: {0, 2}, 2: {0, 1}}  # every other object is reachable


def test_sampler_two_objects_always_negative_the_other_one():
    sampler = CrossViewSampler(CodedViews(n=2), train_views=2)
    torch.manual_seed(3)
    for _ in range(50):
        assert int(sampler[0]["negative_index"]) == 1 and int(sampler[1]["negative_index"]) == 0


def _draws_per_object(sampler: CrossViewSampler) -> torch.Tensor:
    objects = [int(sampler[k]["index"]) for k in range(len(sampler))]
    return torch.bincount(torch.tensor(objects), minlength=len(sampler.data))


def test_every_object_is_drawn_equally_often_in_an_epoch():
    # ModelNet40 in miniature: objects sorted by label (classes of 2), 32 samples = 3 passes over 10 objects + 2;
    # k mod n gave objects 0 and 1 (class 0) a 4th draw in every epoch
    data = CodedViews(n=10)
    sampler = CrossViewSampler(data, train_views=4, length=32, seed=3)
    extra = set()
    for epoch in range(6):
        sampler.set_epoch(epoch)
        torch.manual_seed(epoch)
        counts = _draws_per_object(sampler)
        assert counts.sum() == 32 and counts.max() - counts.min() <= 1, counts
        extra.add(tuple(torch.nonzero(counts == 4).flatten().tolist()))
    assert len(extra) > 1  # the extra draws move between epochs instead of always favouring the same objects
    # fewer samples than objects: distinct objects, not the first `length` ones
    short = CrossViewSampler(data, train_views=4, length=4, seed=3)
    picked = {tuple(sorted(short.object_index(k) for k in range(4))) for e in range(5) if not short.set_epoch(e)}
    assert all(len(set(p)) == 4 for p in picked) and len(picked) > 1 and picked != {(0, 1, 2, 3)}


def test_sampler_permutation_depends_only_on_seed_and_epoch():
    data = CodedViews(n=7)

    def mapping(seed: int, epoch: int) -> list[int]:
        sampler = CrossViewSampler(data, train_views=4, length=12, seed=seed)
        sampler.set_epoch(epoch)
        return [sampler.object_index(k) for k in range(12)]

    assert mapping(0, 2) == mapping(0, 2)
    assert mapping(0, 2)[:7] == list(range(7))  # whole passes are whole passes
    assert len({tuple(mapping(s, e)) for s in range(3) for e in range(3)}) > 3
    # the views and negatives follow torch's global generator (re-seeded by the trainer every epoch)
    sampler = CrossViewSampler(data, train_views=4, length=12)

    def draw(seed):
        torch.manual_seed(seed)
        return [(int(s["negative_index"]), _decode(s["img1"]), _decode(s["img2"]), _decode(s["img3"]))
                for s in (sampler[k] for k in range(12))]

    assert draw(0) == draw(0) and draw(0) != draw(1)


def test_persistent_loader_workers_follow_the_epoch():
    data = CodedViews(n=10)
    sampler = CrossViewSampler(data, train_views=4, length=15, seed=1)
    loader = DataLoader(sampler, batch_size=5, shuffle=True, num_workers=2, persistent_workers=True)
    seen = []
    for epoch in range(2):
        sampler.set_epoch(epoch)  # after epoch 0 the workers already exist and hold their own copy
        got = torch.bincount(torch.cat([b["index"] for b in loader]), minlength=10)
        assert torch.equal(got, _draws_per_object(sampler))
        seen.append(got)
    assert not torch.equal(seen[0], seen[1])  # so a worker stuck on epoch 0 would have been caught


def test_sampler_rejects_too_little_data():
    with pytest.raises(ValueError, match="at least 2 objects"):
        CrossViewSampler(CodedViews(n=1), train_views=2)
    with pytest.raises(ValueError, match="train_views"):
        CrossViewSampler(CodedViews(n=3), train_views=1)
    with pytest.raises(ValueError, match="views"):
        CrossViewSampler(CodedViews(n=3, views=3), train_views=4)[0]


# -- augmentations (Sec. 4.1) ------------------------------------------------------------------------
def test_rotation_is_about_the_up_axis_and_rigid():
    torch.manual_seed(0)
    p = torch.randn(3, 50, 3)
    q = rotate_jitter(p, sigma=0.0)
    assert torch.allclose(q[..., 1], p[..., 1])  # +Y is kept
    assert torch.allclose(q[..., [0, 2]].norm(dim=-1), p[..., [0, 2]].norm(dim=-1), atol=1e-5)
    pairwise = lambda x: (x[:, :, None] - x[:, None]).norm(dim=-1)  # noqa: E731
    assert torch.allclose(pairwise(q), pairwise(p), atol=1e-5)  # rigid
    assert not torch.allclose(q, p)
    # jitter: the residual after undoing nothing but the rotation has std sigma
    torch.manual_seed(1)
    rotated = rotate_jitter(p, 0.0)
    torch.manual_seed(1)
    noisy = rotate_jitter(p, 0.02)
    assert (noisy - rotated).std().item() == pytest.approx(0.02, rel=0.15)


def test_random_crop_flip_returns_windows_of_the_input():
    h = w = 10
    img = torch.arange(h * w, dtype=torch.float32).view(1, 1, h, w).repeat(64, 2, 1, 1)
    torch.manual_seed(0)
    out = random_crop_flip(img, 6, flip_prob=0.5)
    assert out.shape == (64, 2, 6, 6)
    flips = 0
    for crop in out:
        assert torch.equal(crop[0], crop[1])  # both channels cut the same window
        top_left = int(crop[0, 0].min())
        r, c = divmod(top_left, w)
        window = img[0, 0, r:r + 6, c:c + 6]
        flipped = bool(crop[0, 0, 0] > crop[0, 0, -1])
        flips += flipped
        assert torch.equal(crop[0], window.flip(-1) if flipped else window)
    assert 16 < flips < 48  # p = 0.5
    assert torch.equal(random_crop_flip(img[:2], 10, 0.0), img[:2])  # full-size crop without flips
    assert torch.equal(center_crop(img[:1], 6), img[:1, :, 2:8, 2:8])


# -- networks (Sec. 3.2) --------------------------------------------------------------------------------
def test_network_shapes():
    torch.manual_seed(0)
    net = CMCVNet(k=8).eval()
    with torch.no_grad():
        assert net.image(torch.rand(2, 1, 32, 32)).shape == (2, 512)  # F_img
        out = net.points(torch.randn(2, 64, 3))  # F_p
        assert out.global_feature.shape == (2, 512)
        assert out.point_features.shape == (2, 64, 64 + 64 + 64 + 128)
        logits = net.pair_logits(torch.randn(2, 3, 512), torch.randn(2, 512))  # F_f
    assert logits.shape == (2, 3, 2)
    assert [m.out_features for m in net.fusion if isinstance(m, nn.Linear)] == [256, 2]
    assert net.fusion[0].in_features == 1024


def _method(name: str = "cmcv", **overrides):
    overrides = {"view_size": 24, "n_points": 64, "k": 8, "n_views": 6, "heldout_views": 2, **overrides}
    return get_method(name).from_preset("quick", overrides)


def test_embeddings_views_max_pool_and_grey_queries():
    torch.manual_seed(0)
    method = _method()
    method.model = method.build_model()
    method.model.eval()
    views = torch.rand(2, 5, 1, 24, 24)
    points = torch.randn(2, 64, 3)
    colour = torch.rand(2, 3, 24, 24)
    colour[:, 0] *= 0.2  # three different channels: a wrong weight, order or mean changes the grey
    batch = {"views": views, "points": points, "image": colour}
    grey = 0.299 * colour[:, 0:1] + 0.587 * colour[:, 1:2] + 0.114 * colour[:, 2:3]  # BT.601, by hand
    with torch.no_grad():
        per_view = method.model.image(center_crop(views.flatten(0, 1), 21)).view(2, 5, -1)
        direct_grey = method.model.image(center_crop(grey, 21))
        channel_mean = method.model.image(center_crop(colour.mean(1, keepdim=True), 21))
    assert torch.allclose(method.embed(batch, "views"), per_view.amax(dim=1), atol=1e-5)
    assert torch.allclose(method.embed(batch, "image"), direct_grey, atol=1e-4)
    assert not torch.allclose(direct_grey, channel_mean, atol=1e-3)  # the case does tell the weights apart
    assert method.embed(batch, "points").shape == (2, 512)
    assert method.point_features(points).shape == (2, 64, 320)
    assert method.encoder("points") is method.model.points
    assert method.encoder("views")(views).shape == (2, 512)


# -- training ---------------------------------------------------------------------------------------------
class ShapesAndViews(Dataset):
    """Objects whose clouds and views both carry the identity (so correspondence is learnable)."""

    def __init__(self, n: int = 6, views: int = 6, size: int = 24, points: int = 64) -> None:
        g = torch.Generator().manual_seed(0)
        self.points = [torch.randn(points, 3, generator=g) * torch.tensor([0.2 + 0.15 * o, 0.2 + 0.1 * (n - o), 0.3])
                       for o in range(n)]
        ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
        self.views = []
        for o in range(n):
            stripes = (torch.sin(xs * (0.3 + 0.25 * o)) > 0).float() * (0.3 + 0.1 * o)
            noise = torch.rand(views, 1, size, size, generator=g) * 0.2
            self.views.append(stripes + noise)

    def __len__(self) -> int:
        return len(self.points)

    def __getitem__(self, o: int) -> dict[str, torch.Tensor]:
        return {"points": self.points[o], "views": self.views[o], "label": torch.tensor(o), "index": torch.tensor(o)}


@pytest.mark.parametrize("name", ["cmcv", "cm"])
def test_a_few_steps_lower_the_loss(name):
    torch.manual_seed(0)
    method = _method(name, view_size=16)  # tiny images keep the test fast
    method.model = model = method.build_model()
    sampler = method.pretrain_dataset(ShapesAndViews(size=16))
    torch.manual_seed(1)
    batch = {k: torch.stack([sampler[i][k] for i in range(len(sampler))]) for k in ("points", "img1", "img2", "img3")}
    opt = method.configure_optimizer(model)  # the quick preset's SGD

    def loss_now() -> dict[str, float]:
        # train mode: BatchNorm uses batch statistics, so the value does not depend on running stats
        model.train()
        torch.manual_seed(123)
        with torch.no_grad():
            return {k: float(v) for k, v in method.training_step(batch, 0).items()}

    before = loss_now()
    assert before["cross"] == pytest.approx(3 * math.log(2), abs=1e-5)  # F_f starts at chance
    optimisation_steps(method, batch, opt, 8)
    after = loss_now()
    assert after["loss"] < 0.9 * before["loss"]
    # below the best loss of a head that ignores its inputs (predicting the 2:1 label prior,
    # -2 ln(2/3) - ln(1/3) = 1.909): the (image, cloud) correspondence itself is being learnt
    assert after["cross"] < -2 * math.log(2 / 3) - math.log(1 / 3)
    if name == "cm":  # no cross-view term in the objective
        assert before["loss"] == pytest.approx(before["cross"])


# -- pretext metrics (Sec. 4.2, Tables 1-2) -----------------------------------------------------------
class StubNet(nn.Module):
    """F_img / F_p = the mean value broadcast to 8-d; F_f says "same" iff the two features agree."""

    def __init__(self, invert: bool = False, always_same: bool = False) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))
        self.invert, self.always_same = invert, always_same

    def image(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(1, 2, 3))[:, None].expand(-1, 8) + self.anchor

    def points(self, p: torch.Tensor) -> SimpleNamespace:
        return SimpleNamespace(global_feature=p.mean(dim=(1, 2))[:, None].expand(-1, 8))

    def pair_logits(self, fi: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
        gap = (fi - fp.unsqueeze(1)).abs().sum(-1)
        logits = torch.stack([gap, 1 - gap], dim=-1)
        if self.always_same:
            return torch.stack([torch.zeros_like(gap), torch.ones_like(gap)], dim=-1)
        return logits.flip(-1) if self.invert else logits


class TwoObjects(Dataset):
    """Object o: every view is the constant image a_o, every point is (a_o, a_o, a_o)."""

    levels = (0.2, 0.7)

    def __len__(self) -> int:
        return 2

    def __getitem__(self, o: int) -> dict[str, torch.Tensor]:
        a = self.levels[o]
        return {"points": torch.full((16, 3), a), "views": torch.full((6, 1, 32, 32), a)}


def test_pretext_metrics_hand_values():
    config = CMCVConfig(n_views=6, heldout_views=2, view_size=32, metric_pairs=40)
    m = pretext_metrics(StubNet(), TwoObjects(), config)
    assert m["pairs"] == 40 and m["views"] == "held-out"
    assert m["cross_modality_acc"] == 100.0
    assert m["positive_mpd"] == pytest.approx(0.0, abs=1e-6) and m["positive_mpd_std"] == pytest.approx(0.0, abs=1e-6)
    assert m["negative_mpd"] == pytest.approx(0.5 * math.sqrt(8), abs=1e-4)  # |0.7 - 0.2| in all 8 dims
    assert m["negative_mpd_std"] == pytest.approx(0.0, abs=1e-5)
    assert pretext_metrics(StubNet(invert=True), TwoObjects(), config)["cross_modality_acc"] == 0.0
    # a fusion net that calls every pair "same" is right on the positive half of the pairs only
    assert pretext_metrics(StubNet(always_same=True), TwoObjects(), config)["cross_modality_acc"] == 50.0
    assert pretext_metrics(StubNet(), TwoObjects(), config) == m  # fixed seed -> same pairs


def test_pretrain_draws_per_epoch_permutations_and_stores_pretext_metrics(tmp_path, monkeypatch):
    monkeypatch.setenv("SSL3D_TRACE_DIR", str(tmp_path))  # the trainer records the indices each epoch trained on
    method = _method("cmcv", **{"train.epochs": 2, "train.batch_size": 3, "iterations_per_epoch": 1,
                                "metric_pairs": 10})
    data = ShapesAndViews()
    method.pretrain(data, RunContext(seed=4, progress=False))
    assert method.pretrain_info["steps"] == 2  # one batch of 3 of the 6 objects per epoch
    reference = CrossViewSampler(data, train_views=4, length=3, seed=4)
    trained = []
    for epoch in range(2):
        seen = json.loads((tmp_path / f"rank0-epoch{epoch}.json").read_text())["indices"]
        reference.set_epoch(epoch)
        assert sorted(seen) == sorted(reference.object_index(k) for k in range(3))  # (run seed, epoch) permutation
        trained.append(sorted(seen))
    assert trained[0] != trained[1] and trained[0] != [0, 1, 2]
    # the stored metrics are those of the trained networks on the pretraining data
    assert method.pretrain_info["pretext_metrics"] == pretext_metrics(method.model, data, method.config)


# -- variants and config ------------------------------------------------------------------------------
def test_variants_registered_and_configured():
    assert {"cmcv", "cm"} <= set(list_methods())
    cmcv, cm = get_method("cmcv")(), get_method("cm")()
    assert cmcv.config.cross_view and not cm.config.cross_view
    assert cmcv.config.train.optimizer == "sgd" and cmcv.config.train.lr == 1e-3
    assert cmcv.config.train.epochs * cmcv.config.iterations_per_epoch == 120_000
    assert cmcv.config.train.step_size * cmcv.config.iterations_per_epoch == 40_000
    # Sec. 4.1: x0.1 at 40k and 80k of the 120k iterations (epochs of 1000 steps)
    factors = [cmcv.lr_factor(e) for e in (0, 39, 40, 79, 80, 119)]
    assert factors == pytest.approx([1.0, 1.0, 0.1, 0.1, 0.01, 0.01])
    assert cmcv.data_overrides() == {"view_rig": "random", "n_views": 180, "view_size": 224, "n_points": 2048}
    assert {"points", "views", "image"} == set(cm.embed_modalities)
    with pytest.raises(ValueError, match="cross-view"):
        CMConfig(cross_view=True)


@pytest.mark.parametrize("bad", [{"crop_fraction": 0.0}, {"heldout_views": -1}, {"n_points": 0}, {"flip_prob": 2.0}])
def test_bad_config_values_raise(bad):
    with pytest.raises(ValueError):
        CMCVConfig(**bad)
    with pytest.raises(ValueError, match="n_views - heldout_views"):
        _ = CMCVConfig(n_views=4, heldout_views=3).train_views
