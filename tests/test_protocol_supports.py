"""`Protocol.supports`: the one answer to "can this method run this task?" for run, suite and list."""

from __future__ import annotations

import pytest

from ssl3d.bench.protocols import PROTOCOLS
from ssl3d.bench.run.runner import RunSpec, list_everything, validate_run
from ssl3d.bench.sweep.suite import plan_suite
from ssl3d.bench.protocols.tasks import TASKS, Task, compatibility
from ssl3d.core.config import ConfigError
from ssl3d.methods import METHODS, Method


class PhotoOnly(Method):
    """Embeds photos but not the views of a shape gallery, with no query-conditioned score."""

    name = "photo-only"
    embed_modalities = frozenset({"image"})


@pytest.fixture
def photo_only(monkeypatch):
    monkeypatch.setitem(METHODS._items, PhotoOnly.name, PhotoOnly)  # registered for this test only
    return PhotoOnly


def _supports(method: str | type, task: str, modality: str | None = None, **overrides) -> str | None:
    method_cls = METHODS.get(method) if isinstance(method, str) else method
    t = TASKS.get(task)
    return PROTOCOLS.get(t.protocol).for_task(t, overrides).supports(method_cls, t, modality)


def test_modalities_against_what_the_protocol_needs():
    assert _supports("random-pointnet", "synth-svm") is None
    assert _supports("random-pointnet", "synth-svm", "points") is None
    assert _supports("random-pointnet", "synth-svm", "voxels") == "embeds points, not voxels"
    assert _supports("random-pointnet", "synth-svm", "audio") == (
        "cannot be evaluated on 'audio': synth-svm evaluates points, voxels, views, image")
    assert _supports("switchvae", "synth-seg") == "gives per-point features for nothing; synth-seg needs one of points"
    assert _supports("parae-dgcnn", "synth-recon") == (
        "reconstructs voxels from nothing; synth-recon needs one of voxels, views")
    assert _supports("switchvae", "synth-recon", "views") is None


def test_ibsr_also_needs_the_gallery_embedded():
    assert _supports("cmic", "synth-ibsr") is None  # query-conditioned: scores the gallery itself
    assert _supports("cm", "synth-ibsr") is None  # embeds image and the gallery's views
    assert _supports(PhotoOnly, "synth-ibsr") == "cannot embed the shape gallery (views)"
    assert _supports(PhotoOnly, "synth-ibsr", gallery_modality="image") is None


def test_suite_list_and_run_give_the_same_answer(photo_only, tmp_path):
    supported, unsupported = compatibility(TASKS.get("synth-ibsr"), ["cm", "photo-only", "voxel-vae"])
    assert supported == {"cm": ("image",)}
    assert unsupported == {"photo-only": "cannot embed the shape gallery (views)",
                           "voxel-vae": "embeds voxels; synth-ibsr needs one of image"}
    _, skipped = plan_suite("photo-only", "synth-ibsr")
    assert skipped == [("photo-only", "synth-ibsr", "photo-only cannot embed the shape gallery (views)")]
    listed = list_everything()["tasks"]["synth-ibsr"]
    assert listed["unsupported"]["photo-only"] == "cannot embed the shape gallery (views)"
    assert listed["supported"]["cmic"] == ["image"]
    spec = RunSpec(method="photo-only", task="synth-ibsr", data_root=str(tmp_path / "data"),
                   results_dir=str(tmp_path / "res"), progress=False)
    with pytest.raises(ConfigError, match="cannot run task 'synth-ibsr': photo-only cannot embed the shape gallery"):
        validate_run(spec)
    assert not (tmp_path / "res").exists() and not (tmp_path / "data").exists()


def test_a_task_whose_protocol_is_missing_still_lists(monkeypatch):
    broken = Task("synth-nothing", "synth", "no-such-protocol", ("points",))
    monkeypatch.setitem(TASKS._items, broken.name, broken)
    listed = list_everything()["tasks"]["synth-nothing"]
    assert listed["supported"] == {} and "unknown protocol 'no-such-protocol'" in listed["unsupported"]["cm"]
