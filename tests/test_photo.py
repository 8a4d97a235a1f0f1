"""Tests of photo-like query images: exact masks, hand-computed shading, determinism."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import trimesh

from ssl3d.datasets.modalities.cameras import CAMERA_DISTANCE, TAN_HALF_FOV
from ssl3d.datasets.modalities.photo import (
    PhotoParams,
    compose_photo,
    make_background,
    render_photo,
    sample_photo_params,
)
from ssl3d.datasets.modalities.render import silhouette


def two_part_shape() -> tuple[trimesh.Trimesh, np.ndarray]:
    box = trimesh.creation.box((1.0, 0.4, 0.5))
    cyl = trimesh.creation.cylinder(0.2, 0.9).apply_translation([0.3, 0.45, 0.0])
    mesh = trimesh.util.concatenate([box, cyl])
    parts = np.r_[np.full(len(box.faces), 7), np.full(len(cyl.faces), 42)]
    return mesh, parts


def head_on_box_rectangle(extents, size, zoom, offset):
    """Analytic silhouette of a centred box seen from +Z (its front face), as in test_render."""
    half = np.asarray(extents) / 2.0
    scale = 1.0 / np.linalg.norm(half)
    depth = CAMERA_DISTANCE - half[2] * scale
    ndc = (np.arange(size) + 0.5) * 2.0 / size - 1.0
    x_lim = half[0] * scale / depth / TAN_HALF_FOV * zoom
    y_lim = half[1] * scale / depth / TAN_HALF_FOV * zoom
    # no pixel centre within 1e-6 NDC of an edge, so the answer is unambiguous
    assert np.abs(np.abs(ndc - offset[0]) - x_lim).min() > 1e-6
    assert np.abs(np.abs(-ndc - offset[1]) - y_lim).min() > 1e-6
    return (np.abs(-ndc - offset[1]) < y_lim)[:, None] & (np.abs(ndc - offset[0]) < x_lim)[None, :]


@pytest.mark.parametrize("crop", [False, True])
def test_mask_is_the_silhouette(crop):
    mesh, parts = two_part_shape()
    for seed in range(3):
        res = render_photo(mesh, parts, np.random.default_rng(seed), image_size=96, crop=crop)
        assert res.image.shape == (96, 96, 3) and res.image.dtype == np.uint8
        assert res.mask.shape == (96, 96) and res.mask.dtype == bool
        np.testing.assert_allclose(np.linalg.norm(res.camera), 1.0)
        p = res.params
        if not crop:
            assert p.zoom == 1.0 and p.offset == (0.0, 0.0)
            np.testing.assert_array_equal(res.mask, silhouette(mesh, res.camera, 96))
        np.testing.assert_array_equal(res.mask, silhouette(mesh, res.camera, 96, zoom=p.zoom, offset=p.offset))
        assert 0.02 < res.mask.mean() < 0.9


def test_cropped_mask_matches_analytic_projection():
    extents = (1.0, 0.6, 0.45)
    box = trimesh.creation.box(extents)
    for seed in range(4):
        res = render_photo(box, None, np.random.default_rng(seed), 80, camera=np.array([0.0, 0.0, 2.0]))
        np.testing.assert_allclose(res.camera, [0.0, 0.0, 1.0])
        p = res.params
        assert 0.85 <= p.zoom <= 1.15 and max(map(abs, p.offset)) <= 0.06
        expected = head_on_box_rectangle(extents, 80, p.zoom, p.offset)
        np.testing.assert_array_equal(res.mask, expected)


def test_object_differs_from_background_and_background_is_untouched():
    mesh, parts = two_part_shape()
    for seed in range(6):
        res = render_photo(mesh, parts, np.random.default_rng(seed), 64)
        bg = np.clip(np.rint(make_background(res.params, 64) * 255), 0, 255).astype(np.uint8)
        np.testing.assert_array_equal(res.image[~res.mask], bg[~res.mask])
        diff = np.abs(res.image.astype(int) - bg.astype(int)).max(axis=-1)[res.mask]
        assert (diff > 8).mean() > 0.9, seed


def test_shading_matches_hand_computation():
    box = trimesh.creation.box((1.0, 0.6, 0.45))
    base = sample_photo_params(np.random.default_rng(0), 1, camera=np.array([0.0, 0.0, 1.0]), crop=False)
    albedo = np.array([0.6, 0.3, 0.2])
    params = dataclasses.replace(
        base,
        part_colours=albedo[None],
        light_dir=np.array([0.0, 0.0, 1.0]),  # from the camera: n.l = 1 on the front face
        light_colour=np.array([1.0, 0.9, 0.8]),
        light_intensity=0.5,
        ambient=0.2,
        specular=0.0,
    )
    res = compose_photo(box, None, params, 65)
    front = np.rint(albedo * (0.2 + 0.5 * np.array([1.0, 0.9, 0.8])) * 255)
    np.testing.assert_array_equal(res.image[res.mask], np.broadcast_to(front, (res.mask.sum(), 3)))
    # Blinn-Phong highlight: at the centre pixel n = v = l, so n.h = 1 exactly
    shiny = compose_photo(box, None, dataclasses.replace(params, specular=0.3, shininess=20.0), 65)
    centre = np.rint((albedo * (0.2 + 0.5 * np.array([1.0, 0.9, 0.8])) + 0.3 * 0.5 * np.array([1.0, 0.9, 0.8])) * 255)
    np.testing.assert_array_equal(shiny.image[32, 32], centre)
    # the highlight falls off away from the centre
    assert shiny.image[32, 32].sum() > shiny.image[32, 45].sum() > res.image[32, 45].sum() - 1


def test_parts_get_their_own_colours():
    mesh, parts = two_part_shape()
    res = render_photo(mesh, parts, np.random.default_rng(5), 64)
    assert res.params.part_colours.shape == (2, 3)
    assert np.linalg.norm(res.params.part_colours[0] - res.params.part_colours[1]) > 1e-3
    # ids only matter through their order: 7/42 and 0/1 give the same photo
    relabelled = render_photo(mesh, (parts == 42).astype(np.int64), np.random.default_rng(5), 64)
    np.testing.assert_array_equal(relabelled.image, res.image)
    single = render_photo(mesh, None, np.random.default_rng(5), 64)
    assert single.params.part_colours.shape == (1, 3)


def test_deterministic_under_seed_and_varied_across_seeds():
    mesh, parts = two_part_shape()
    a = render_photo(mesh, parts, np.random.default_rng(11), 48)
    b = render_photo(mesh, parts, np.random.default_rng(11), 48)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.mask, b.mask)
    np.testing.assert_array_equal(a.camera, b.camera)
    kinds, colours = set(), []
    for seed in range(12):
        r = render_photo(mesh, parts, np.random.default_rng(seed), 48)
        kinds.add(r.params.background)
        colours.append(r.params.part_colours[0])
        if seed:
            assert (r.image != a.image).mean() > 0.3 or seed == 11
    assert kinds == {"flat", "gradient", "noise"}
    assert np.ptp(np.array(colours), axis=0).min() > 0.3
    # random cameras: plausible elevations, varied azimuths
    cams = np.array([sample_photo_params(np.random.default_rng(s), 1).camera for s in range(50)])
    elevation = np.degrees(np.arcsin(cams[:, 1]))
    assert elevation.min() >= 5.0 and elevation.max() <= 40.0
    assert np.ptp(np.degrees(np.arctan2(cams[:, 0], cams[:, 2]))) > 300


def test_backgrounds():
    base = sample_photo_params(np.random.default_rng(0), 1)
    red, blue = np.array([0.9, 0.1, 0.1]), np.array([0.1, 0.1, 0.9])
    flat = make_background(dataclasses.replace(base, background="flat", background_colours=red[None]), 16)
    np.testing.assert_allclose(flat, np.broadcast_to(red, (16, 16, 3)))
    grad = make_background(
        dataclasses.replace(base, background="gradient", background_colours=np.stack([red, blue]), gradient_angle=0.0),
        16,
    )
    np.testing.assert_allclose(grad[:, 0], np.broadcast_to(red, (16, 3)))  # angle 0: left to right
    np.testing.assert_allclose(grad[:, -1], np.broadcast_to(blue, (16, 3)))
    assert (np.diff(grad[0, :, 2]) > 0).all() and np.allclose(grad, grad[:1])
    grid = np.random.default_rng(1).uniform(size=(25, 3))
    noise = make_background(dataclasses.replace(base, background="noise", background_colours=grid), 40)
    assert noise.shape == (40, 40, 3)
    assert noise.min() >= grid.min() - 1e-12 and noise.max() <= grid.max() + 1e-12  # convex combinations
    # smooth: neighbouring pixels differ by at most a grid step spread over 40/4 pixels
    step = np.abs(np.diff(grid.reshape(5, 5, 3), axis=0)).max() + np.abs(np.diff(grid.reshape(5, 5, 3), axis=1)).max()
    assert np.abs(np.diff(noise, axis=0)).max() <= step * 4 / 40 + 1e-12
    assert np.abs(np.diff(noise, axis=1)).max() <= step * 4 / 40 + 1e-12


def test_photo_bad_arguments():
    mesh, parts = two_part_shape()
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="face_part"):
        render_photo(mesh, parts[:-1], rng)
    with pytest.raises(ValueError, match="face_part"):
        render_photo(mesh, parts.astype(float), rng)
    with pytest.raises(ValueError, match="Generator"):
        render_photo(mesh, parts, 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="camera"):
        render_photo(mesh, parts, rng, camera=np.zeros(3))
    with pytest.raises(ValueError, match="part colours"):
        compose_photo(mesh, parts, sample_photo_params(rng, 1), 32)
    assert isinstance(sample_photo_params(rng, 3), PhotoParams)
    assert math.isfinite(TAN_HALF_FOV)
