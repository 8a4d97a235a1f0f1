"""Reinhard colour transfer (CMIC Section 3.1, Eq. 1), derangements, HSV jitter."""
import colorsys
import math

import numpy as np
import pytest
import torch

from ssl3d.methods.augment.colour_transfer import (
    batch_colour_transfer,
    colour_transfer,
    lab_to_rgb,
    random_derangement,
    rgb_to_lab,
)
from ssl3d.methods.augment.hsv import hsv_jitter, hsv_to_rgb, rgb_to_hsv


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _disc_mask(h, w, r):
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return ((yy - h / 2) ** 2 + (xx - w / 2) ** 2 < r * r).float()


def _np_lab(rgb, eps=1e-3):
    """Independent numpy lab of one [3] colour with Reinhard's published forward matrices."""
    m = np.array([[0.3811, 0.5783, 0.0402], [0.1967, 0.7244, 0.0782], [0.0241, 0.1288, 0.8444]])
    lms = np.log10(m @ np.asarray(rgb) + eps)
    l = lms.sum() / math.sqrt(3)
    a = (lms[0] + lms[1] - 2 * lms[2]) / math.sqrt(6)
    b = (lms[0] - lms[1]) / math.sqrt(2)
    return np.array([l, a, b])


def test_rgb_to_lab_matches_numpy_reference():
    cols = [(1.0, 1.0, 1.0), (0.2, 0.5, 0.8), (0.9, 0.1, 0.3), (0.0, 0.0, 0.0)]
    img = torch.tensor(cols, dtype=torch.float64).T.reshape(3, 1, 4)
    lab = rgb_to_lab(img)
    for k, c in enumerate(cols):
        np.testing.assert_allclose(lab[:, 0, k].numpy(), _np_lab(c), rtol=0, atol=1e-12)


def test_round_trip():
    img = torch.rand(2, 3, 8, 9, generator=_gen(0), dtype=torch.float64)
    img[0, :, 0, 0] = 0.0  # black survives the epsilon
    img[0, :, 0, 1] = 1.0
    np.testing.assert_allclose(lab_to_rgb(rgb_to_lab(img)).numpy(), img.numpy(), atol=1e-10)
    f32 = img.float()
    assert (lab_to_rgb(rgb_to_lab(f32)) - f32).abs().max() < 1e-5


def test_lab_to_rgb_clamps():
    lab = torch.zeros(3, 2, 2)
    lab[0] = 5.0  # far beyond white
    out = lab_to_rgb(lab)
    assert out.max() == 1.0 and out.min() >= 0.0


def _masked_lab_stats(img, mask):
    lab = rgb_to_lab(img.double())
    sel = lab[:, mask > 0.5]
    return sel.mean(dim=1), sel.std(dim=1, unbiased=False)


def test_transfer_maps_source_statistics_inside_mask():
    g = _gen(1)
    h = w = 24
    tmask, smask = _disc_mask(h, w, 9), _disc_mask(h, w, 7)
    # in-gamut colours: target bluish-grey, source warm, both far from 0 and 1
    target = 0.35 + 0.3 * torch.rand(3, h, w, generator=g, dtype=torch.float64)
    source = torch.tensor([0.55, 0.4, 0.3], dtype=torch.float64).view(3, 1, 1) + 0.12 * torch.rand(
        3, h, w, generator=g, dtype=torch.float64)
    source[:, smask < 0.5] = 0.0  # a black background must not enter the statistics
    out = colour_transfer(target, source, tmask, smask)
    inside = out[:, tmask > 0.5]
    assert inside.min() > 0.01 and inside.max() < 0.99  # no clamping happened
    mo, so = _masked_lab_stats(out, tmask)
    ms, ss = _masked_lab_stats(source, smask)
    np.testing.assert_allclose(mo.numpy(), ms.numpy(), atol=1e-8)
    np.testing.assert_allclose(so.numpy(), ss.numpy(), rtol=1e-6)
    # background untouched, bit for bit
    assert torch.equal(out[:, tmask < 0.5], target[:, tmask < 0.5])
    # and the result really changed colour
    assert (mo - _masked_lab_stats(target, tmask)[0]).abs().max() > 0.05


def test_transfer_scales_by_source_over_target_spread_hand_example():
    # Two target pixels sit at mu_t -+ sigma_t in every l-alpha-beta channel, so Eq. (1) with sigma_s / sigma_t
    # sends them to mu_s -+ sigma_s exactly; the printed sigma_t / sigma_s would give mu_s -+ sigma_t^2 / sigma_s.
    target_rgb = [(0.20, 0.30, 0.50), (0.70, 0.60, 0.40)]
    source_rgb = [(0.50, 0.42, 0.40), (0.56, 0.40, 0.36), (0.53, 0.44, 0.38), (0.50, 0.45, 0.40)]
    t_lab = np.array([_np_lab(c) for c in target_rgb])
    s_lab = np.array([_np_lab(c) for c in source_rgb])
    mu_s, sigma_s = s_lab.mean(0), s_lab.std(0)
    sigma_t = t_lab.std(0)
    sign = np.sign(t_lab - t_lab.mean(0))  # -1 / +1 per pixel and channel
    expected = mu_s + sign * sigma_s
    reversed_ratio = mu_s + sign * sigma_t ** 2 / sigma_s
    assert np.abs(expected - reversed_ratio).min() > 0.02  # the example tells the two ratios apart in every channel

    def image(colours):
        return torch.tensor(colours, dtype=torch.float64).T.reshape(3, 1, len(colours))

    out = colour_transfer(image(target_rgb), image(source_rgb))
    np.testing.assert_allclose(rgb_to_lab(out)[:, 0, :].T.numpy(), expected, atol=1e-9)
    assert out.min() > 0.0 and out.max() < 1.0  # in gamut: the clamp played no part


def test_identity_when_source_is_target():
    img = torch.rand(3, 16, 16, generator=_gen(2))
    mask = _disc_mask(16, 16, 6)
    out = colour_transfer(img, img, mask, mask)
    assert (out - img).abs().max() < 1e-5
    assert (colour_transfer(img, img) - img).abs().max() < 1e-5


def test_batched_equals_unbatched_and_empty_masks():
    g = _gen(3)
    t, s = torch.rand(2, 3, 10, 10, generator=g), torch.rand(2, 3, 12, 12, generator=g)
    tm, sm = torch.ones(2, 10, 10), torch.ones(2, 12, 12)
    tm[1] = 0.0  # empty target mask -> image 1 unchanged
    out = colour_transfer(t, s, tm, sm)
    assert torch.allclose(out[0], colour_transfer(t[0], s[0], tm[0], sm[0]), atol=1e-6)
    assert torch.equal(out[1], t[1])
    sm[0] = 0.0  # empty source mask -> unchanged too
    assert torch.equal(colour_transfer(t, s, None, sm)[0], t[0])


def test_transfer_bad_arguments():
    img = torch.rand(3, 4, 4)
    with pytest.raises(ValueError, match="target_mask"):
        colour_transfer(img, img, torch.ones(5, 5))
    with pytest.raises(ValueError, match="batch shape"):
        colour_transfer(img, img.unsqueeze(0))
    with pytest.raises(ValueError, match=r"\[3, H, W\]"):
        rgb_to_lab(torch.rand(4, 4, 4))


def test_derangement_no_fixed_points_and_deterministic():
    for n in range(2, 12):
        for seed in range(20):
            perm = random_derangement(n, _gen(seed))
            assert sorted(perm.tolist()) == list(range(n))
            assert all(perm[i].item() != i for i in range(n))
            assert torch.equal(perm, random_derangement(n, _gen(seed)))
    assert random_derangement(1, _gen(0)).tolist() == [0]
    assert random_derangement(0).numel() == 0
    # both derangements of 3 elements occur
    seen = {tuple(random_derangement(3, _gen(s)).tolist()) for s in range(40)}
    assert seen == {(1, 2, 0), (2, 0, 1)}
    with pytest.raises(ValueError, match="non-negative"):
        random_derangement(-1)


def test_batch_colour_transfer_uses_the_derangement():
    g = _gen(4)
    imgs = torch.rand(5, 3, 8, 8, generator=g)
    masks = (torch.rand(5, 8, 8, generator=g) > 0.3).float()
    out = batch_colour_transfer(imgs, masks, _gen(7))
    perm = random_derangement(5, _gen(7))
    expected = colour_transfer(imgs, imgs[perm], masks, masks[perm])
    assert torch.equal(out, expected)
    assert torch.equal(out, batch_colour_transfer(imgs, masks, _gen(7)))  # deterministic
    assert torch.equal(out[masks[:, None].expand_as(imgs) < 0.5], imgs[masks[:, None].expand_as(imgs) < 0.5])
    one = imgs[:1]
    assert torch.equal(batch_colour_transfer(one, masks[:1], _gen(0)), one)


def test_hsv_conversions_match_colorsys():
    px = torch.rand(3, 1, 50, generator=_gen(5), dtype=torch.float64)
    px[:, 0, 0] = 0.5  # grey
    px[:, 0, 1] = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    hsv = rgb_to_hsv(px)
    for k in range(50):
        ref = colorsys.rgb_to_hsv(*px[:, 0, k].tolist())
        np.testing.assert_allclose(hsv[:, 0, k].numpy(), ref, atol=1e-12)
    np.testing.assert_allclose(hsv_to_rgb(hsv).numpy(), px.numpy(), atol=1e-12)


def test_hsv_jitter_behaviour():
    g = _gen(6)
    imgs = 0.1 + 0.8 * torch.rand(3, 3, 6, 6, generator=g, dtype=torch.float64)
    masks = torch.zeros(3, 6, 6)
    masks[:, 1:5, 1:5] = 1.0
    # hue only, always applied: per image one constant hue shift inside the mask
    out = hsv_jitter(imgs, masks, _gen(8), hue=0.3, saturation=0.0, value=0.0, p=1.0)
    h0, h1 = rgb_to_hsv(imgs), rgb_to_hsv(out)
    inside = masks > 0.5
    for b in range(3):
        shift = torch.remainder(h1[b, 0][inside[b]] - h0[b, 0][inside[b]], 1.0)
        shift = torch.where(shift > 0.5, shift - 1.0, shift)
        assert shift.max() - shift.min() < 1e-9 and shift.abs().max() <= 0.3 + 1e-12
        sv0, sv1 = h0[b, 1:][:, inside[b]], h1[b, 1:][:, inside[b]]
        np.testing.assert_allclose(sv1.numpy(), sv0.numpy(), atol=1e-12)
    assert torch.equal(out[:, :, 0, 0], imgs[:, :, 0, 0])  # background untouched
    assert torch.equal(out, hsv_jitter(imgs, masks, _gen(8), hue=0.3, saturation=0.0, value=0.0, p=1.0))
    assert torch.equal(hsv_jitter(imgs, masks, _gen(8), p=0.0), imgs)
    with pytest.raises(ValueError, match="hue"):
        hsv_jitter(imgs, masks, hue=0.7)
