"""CrossPoint's augmentations, each alone: the point chain (methods/augment/points.py) and the view colour
jitter (methods/augment/colour_jitter.py)."""

from __future__ import annotations

import pytest
import torch

from ssl3d.methods.augment.colour_jitter import adjust_images, colour_jitter
from ssl3d.methods.augment.points import (
    clipped_jitter, normalize_unit_sphere, random_input_dropout, random_scale, random_translate, rotate_jitter,
    rotate_y,
)


def clouds(b: int = 64, n: int = 50, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, n, 3, generator=g) * torch.tensor([1.0, 2.0, 0.5]) + 3.0


def test_normalize_centres_and_fits_the_unit_sphere():
    p = clouds()
    q = normalize_unit_sphere(p)
    assert torch.allclose(q.mean(dim=1), torch.zeros(64, 3), atol=1e-5)
    assert torch.allclose(q.norm(dim=-1).amax(dim=1), torch.ones(64), atol=1e-6)
    hand = torch.tensor([[[1.0, 1.0, 1.0], [3.0, 1.0, 1.0]]])  # centroid (2, 1, 1), radius 1
    assert torch.allclose(normalize_unit_sphere(hand), torch.tensor([[[-1.0, 0, 0], [1.0, 0, 0]]]))
    assert torch.equal(normalize_unit_sphere(torch.ones(1, 4, 3)), torch.zeros(1, 4, 3))  # one repeated point


def test_scale_is_one_factor_per_cloud_in_range():
    p = clouds()
    torch.manual_seed(0)
    q = random_scale(p, 0.5, 2.0)
    ratio = q / p
    assert torch.allclose(ratio, ratio[:, :1, :1].expand_as(ratio), rtol=1e-5)  # isotropic, per cloud
    s = ratio[:, 0, 0]
    assert bool(((s >= 0.5) & (s <= 2.0)).all()) and s.min() < 0.7 and s.max() > 1.8


def test_rotate_y_keeps_the_up_axis_and_is_rigid():
    p = clouds()
    torch.manual_seed(2)
    q = rotate_y(p)
    assert torch.allclose(q[..., 1], p[..., 1])
    assert torch.allclose(q[..., [0, 2]].norm(dim=-1), p[..., [0, 2]].norm(dim=-1), atol=1e-4)
    torch.manual_seed(2)
    assert torch.equal(rotate_jitter(p, 0.0), q)  # CM-CV's augmentation is this rotation plus jitter


def test_translate_shifts_each_cloud_within_its_extent():
    p = clouds()
    torch.manual_seed(3)
    q = random_translate(p, 0.5)
    shift = q - p
    assert torch.allclose(shift, shift[:, :1].expand_as(shift), atol=1e-5)  # one offset per cloud
    extent = p.amax(dim=1) - p.amin(dim=1)
    ratio = shift[:, 0] / extent  # in [-0.5, 0.5] on every axis
    assert bool((ratio.abs() <= 0.5 + 1e-6).all()) and ratio.min() < -0.4 and ratio.max() > 0.4
    assert torch.equal(random_translate(p, 0.0), p)


def test_jitter_is_gaussian_then_clipped():
    p = torch.zeros(16, 500, 3)
    torch.manual_seed(4)
    noise = clipped_jitter(p, std=0.01, clip=0.05)
    assert noise.std().item() == pytest.approx(0.01, rel=0.05) and noise.abs().max() <= 0.05
    torch.manual_seed(4)
    clipped = clipped_jitter(p, std=1.0, clip=0.05)  # almost every draw beyond the clip
    assert clipped.abs().max() == pytest.approx(0.05) and (clipped.abs() == 0.05).float().mean() > 0.9


def test_input_dropout_replaces_points_by_the_first():
    p = clouds(b=400, n=64)
    torch.manual_seed(5)
    q = random_input_dropout(p, 0.875)
    kept = (q == p).all(dim=-1)
    first = (q == p[:, :1]).all(dim=-1)
    assert bool((kept | first).all()) and torch.equal(q[:, 0], p[:, 0])
    dropped = 1 - kept.float().mean(dim=1)  # per cloud, about U[0, 0.875): mean 0.4375
    assert dropped.max() < 0.99 and dropped.mean().item() == pytest.approx(0.4375, abs=0.05)
    assert torch.equal(random_input_dropout(p, 0.0), p)


@pytest.mark.parametrize("call", [
    lambda p: random_scale(p, 2.0, 1.0), lambda p: random_translate(p, -0.1), lambda p: clipped_jitter(p, -1, 0.1),
    lambda p: random_input_dropout(p, 1.0), lambda p: normalize_unit_sphere(p[0]),
])
def test_point_augmentations_refuse_bad_settings(call):
    with pytest.raises(ValueError):
        call(clouds(b=2))


GREY = torch.tensor([[[[0.2, 0.4], [0.6, 0.8]]]])


def test_adjust_grey_brightness_then_contrast_by_hand():
    factors, order = torch.tensor([[1.5, 0.5, 2.0]]), torch.tensor([[0, 1, 2]])
    # brightness 1.5: 0.3 0.6 0.9 1.2 -> clamp 1.0; contrast 0.5 about the mean 0.7: 0.5 x + 0.35;
    # saturation leaves a grey image as it is
    assert torch.allclose(adjust_images(GREY, factors, order), torch.tensor([[[[0.5, 0.65], [0.8, 0.85]]]]))


def test_adjust_grey_contrast_then_brightness_by_hand():
    factors, order = torch.tensor([[1.5, 0.5, 2.0]]), torch.tensor([[1, 0, 2]])
    # contrast first about the mean 0.5: 0.35 0.45 0.55 0.65; then x 1.5
    expected = torch.tensor([[[[0.525, 0.675], [0.825, 0.975]]]])
    assert torch.allclose(adjust_images(GREY, factors, order), expected)


def test_adjust_rgb_saturation_blends_with_bt601_grey():
    red = torch.zeros(1, 3, 1, 1)
    red[0, 0] = 1.0
    out = adjust_images(red, torch.tensor([[1.0, 1.0, 0.0]]), torch.tensor([[2, 0, 1]]))
    assert torch.allclose(out.flatten(), torch.full((3,), 0.299))
    half = adjust_images(red, torch.tensor([[1.0, 1.0, 0.5]]), torch.tensor([[2, 0, 1]]))
    assert torch.allclose(half.flatten(), torch.tensor([0.6495, 0.1495, 0.1495]))


def test_colour_jitter_draws_per_image_and_zero_strength_is_identity():
    torch.manual_seed(6)
    images = torch.rand(32, 1, 8, 8) * 0.5 + 0.25
    assert torch.equal(colour_jitter(images, 0.0, 0.0, 0.0), images)
    out = colour_jitter(images, 0.4, 0.0, 0.0)
    ratio = out / images  # brightness only, nothing clipped at 0.75 x 1.4 < 1.05: one factor per image
    per_image = ratio.flatten(1)
    assert torch.allclose(per_image, per_image[:, :1].expand_as(per_image), atol=1e-4)
    assert per_image[:, 0].min() >= 0.6 - 1e-6 and per_image[:, 0].max() <= 1.4 + 1e-6
    assert per_image[:, 0].std() > 0.1  # independent draws


def test_adjust_refuses_bad_orders_and_channels():
    with pytest.raises(ValueError, match="permutation"):
        adjust_images(GREY, torch.ones(1, 3), torch.tensor([[0, 0, 1]]))
    with pytest.raises(ValueError, match="C = 1 or 3"):
        adjust_images(torch.rand(1, 2, 4, 4), torch.ones(1, 3), torch.tensor([[0, 1, 2]]))
