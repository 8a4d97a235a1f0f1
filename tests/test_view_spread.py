"""Every preset's views go around the shape: which cameras SwitchVAE's and CMIC's encoders see (issue 33).

The cheaper presets used to feed SwitchVAE the first 4 cameras of ``first8``: azimuths 0-90 degrees, one
quadrant. Here the cameras each preset's encoder sees are read off the rig the method asks for, through the
encoder's own view selection, and their azimuths are checked against hand-computed values; and an edit to
that selection must change the feature cache's key (stale features are never reused).
"""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest
import torch

from ssl3d.bench.features import cache as feature_cache
from ssl3d.core.config import ConfigError
from ssl3d.core.errors import UserError
from ssl3d.datasets.modalities.cameras import camera_rig
from ssl3d.methods import get_method
from ssl3d.methods.backbones import image
from ssl3d.methods.backbones.image import even_indices, select_views
from ssl3d.methods.switchvae import SwitchVAEConfig

SWITCHVAE_FAMILY = ("switchvae", "switchvae-nocontrast", "switch-btcvae", "image-vae")


def _angles(directions: np.ndarray) -> list[tuple[float, float]]:
    """(azimuth from +Z towards +X in [0, 360), elevation) in degrees, rounded (cameras.py's convention)."""
    az = np.degrees(np.arctan2(directions[:, 0], directions[:, 2])) % 360.0
    el = np.degrees(np.arcsin(np.clip(directions[:, 1], -1, 1)))
    return [(round(float(a), 6) % 360.0, round(float(e), 6)) for a, e in zip(az, el)]


def _seen_cameras(name: str, preset: str) -> list[tuple[float, float]]:
    """The (azimuth, elevation) of the cameras the method's view encoder sees under ``preset``."""
    method = get_method(name).from_preset(preset)
    rig = method.data_overrides()["view_rig"]
    dirs = torch.from_numpy(camera_rig(rig))  # [V, 3]: passed as views [1, V, 3, 1, 1] to the same selection
    seen = select_views(dirs.view(1, -1, 3, 1, 1), method.config.n_views).view(-1, 3).numpy()
    return _angles(seen)


def test_even_indices_by_hand():
    assert even_indices(4, 12) == [0, 3, 6, 9]
    assert even_indices(6, 12) == [0, 2, 4, 6, 8, 10]
    assert even_indices(3, 12) == [0, 4, 8]
    assert even_indices(8, 8) == list(range(8))
    assert even_indices(1, 12) == [0]
    assert even_indices(2, 6) == [0, 3]
    assert even_indices(5, 12) == [0, 2, 4, 7, 9]  # floor(k * 12 / 5): gaps 2, 2, 3, 2 (and 3 back to 0)
    for n, total in ((0, 12), (13, 12), (-1, 8)):
        with pytest.raises(ValueError, match=f"cannot pick {n} of {total} cameras"):
            even_indices(n, total)


def test_select_views_keeps_all_when_there_are_no_more():
    views = torch.arange(12.0).view(1, 12, 1, 1, 1)
    assert select_views(views, 4).flatten().tolist() == [0, 3, 6, 9]
    assert select_views(views, 12) is views and select_views(views, 20) is views


@pytest.mark.parametrize("name", SWITCHVAE_FAMILY)
@pytest.mark.parametrize("preset", ["quick", "cpu"])
def test_switchvae_cheaper_presets_see_four_views_around_the_shape(name, preset):
    assert _seen_cameras(name, preset) == [(0.0, 30.0), (90.0, 30.0), (180.0, 30.0), (270.0, 30.0)]


@pytest.mark.parametrize("name", SWITCHVAE_FAMILY)
def test_switchvae_paper_preset_sees_the_official_first_eight(name):
    # the official code's first 8 of MVCNN's 12-view ring: azimuths 0-210 at 30 degrees elevation
    assert _seen_cameras(name, "paper") == [(30.0 * k, 30.0) for k in range(8)]


@pytest.mark.parametrize("preset, azimuths", [
    ("paper", [30.0 * k for k in range(12)]), ("quick", [60.0 * k for k in range(6)]),
    ("cpu", [60.0 * k for k in range(6)]),
])
def test_cmic_presets_see_views_around_the_shape(preset, azimuths):
    for name in ("cmic", "cmic-noncat"):
        assert _seen_cameras(name, preset) == [(a, 30.0) for a in azimuths]


@pytest.mark.parametrize("n, rig", [
    (1, "ring12"), (2, "ring12"), (3, "ring12"), (4, "ring12"), (6, "ring12"), (12, "ring12"),
    (8, "first8"), (20, "dodeca20"), (24, "random"),
])
def test_switchvae_rig_for_each_view_count(n, rig):
    overrides = get_method("switchvae")(SwitchVAEConfig(n_views=n, image_weights=None)).data_overrides()
    assert overrides["view_rig"] == rig
    if rig == "ring12":  # n of 12 cameras 30 degrees apart: gaps of 360 / n degrees
        seen = _angles(camera_rig("ring12")[even_indices(n, 12)])
        assert [a for a, _ in seen] == [k * 360.0 / n for k in range(n)]


@pytest.mark.parametrize("n", [5, 7, 9, 10, 11, 13, 19])
def test_switchvae_refuses_views_that_cannot_be_spread_evenly(n):
    with pytest.raises(ConfigError, match=rf"method.n_views={n} cannot be spread evenly .*\(1, 2, 3, 4, 6, 12") as info:
        get_method("switchvae").from_preset("quick", {"n_views": str(n)})
    assert isinstance(info.value, UserError) and "\n" not in str(info.value)


def test_the_quick_encoder_sees_exactly_those_four_views():
    torch.manual_seed(0)
    method = get_method("switchvae").from_preset("quick", {"view_dim": 16})
    encoder = method.build_model()["image_encoder"].eval()
    ring = torch.rand(2, 12, 1, 64, 64)  # a ring12 render, as the data gives it
    others = torch.rand(2, 12, 1, 64, 64)
    others[:, [0, 3, 6, 9]] = ring[:, [0, 3, 6, 9]]
    with torch.no_grad():
        assert torch.equal(encoder(ring)[0], encoder(others)[0])  # views other than 0, 3, 6, 9 are not read
        assert torch.equal(encoder(ring)[0], encoder(ring[:, [0, 3, 6, 9]])[0])
        assert not torch.equal(encoder(ring)[0], encoder(ring[:, :4])[0])  # not the first four


@pytest.mark.parametrize("name, preset", [("switchvae", "quick"), ("image-vae", "quick"), ("cmic", "quick")])
def test_an_edit_to_the_view_selection_changes_the_feature_cache_key(name, preset, tmp_path, monkeypatch):
    method = get_method(name).from_preset(preset, {"view_dim": 16} if name != "cmic" else {})
    method.model = method.build_model()
    before = feature_cache.code_digest(method, "views")
    source = Path(inspect.getsourcefile(image))
    edited = tmp_path / "image.py"
    edited.write_text(source.read_text().replace("k * total // n", "(k * total + n - 1) // n"))
    assert edited.read_text() != source.read_text()
    real = feature_cache._source_file
    monkeypatch.setattr(feature_cache, "_source_file",
                        lambda obj: str(edited) if real(obj) == str(source) else real(obj))
    assert feature_cache.code_digest(method, "views") != before


def test_the_family_left_the_versions_that_cached_the_old_views():
    # the version is part of the pretraining cache key: weights pretrained on the old views are never reused
    old = {"switchvae": "2", "switchvae-nocontrast": "2", "switch-btcvae": "2", "image-vae": "1"}
    for name, version in old.items():
        assert get_method(name).version != version, name
