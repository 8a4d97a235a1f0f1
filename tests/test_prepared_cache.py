"""`bench prepare synth` builds the caches that later runs on views, voxels and photos read as they are."""

from __future__ import annotations

import json
import subprocess

from conftest import BENCH, subprocess_env

TINY = ["--set", "data.n_classes=2", "--set", "data.train_per_class=4", "--set", "data.test_per_class=2",
        "--set", "data.workers=1"]


def _processed(root):
    return {p.name: p.stat().st_mtime_ns for p in (root / "synth" / "processed").glob("*.h5")}


def test_runs_on_views_voxels_and_images_read_the_prepared_cache(tmp_path):
    env = {**subprocess_env(), "SSL3D_DATA": str(tmp_path / "data")}
    # the settings of the runs below: switchvae quick (first8 views at 64 px, voxels) and cmic quick
    # (ring12 views at 32 px, photos at 32 px)
    prep = [("views", "voxels"), ("image", "views", "points", "voxels")]  # ibsr also reads the shapes' points/voxels
    sets = [["--set", "data.view_rig=first8", "--set", "data.view_size=64"],
            ["--set", "data.view_rig=ring12", "--set", "data.view_size=32", "--set", "data.image_size=32"]]
    for modalities, extra in zip(prep, sets):
        out = subprocess.run(BENCH + ["prepare", "synth", "--modalities", *modalities, *TINY, *extra], env=env,
                             capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr
        assert "synth/test: 4 shapes" in out.stdout
    before = _processed(tmp_path / "data")
    assert {name.split("-")[1] for name in before} >= {"views", "voxels", "image"}

    runs = [["--method", "switchvae", "--task", "synth-recon", "--modality", "views", *sets[0]],
            ["--method", "switchvae", "--task", "synth-svm", "--modality", "voxels", *sets[0]],
            ["--method", "cmic", "--task", "synth-ibsr", *sets[1]]]
    for args in runs:
        out = subprocess.run(BENCH + ["run", *args, "--set", "train.epochs=0", "--no-progress", "--results-dir",
                                      str(tmp_path / "res"), *TINY], env=env, capture_output=True, text=True,
                             timeout=600)
        assert out.returncode == 0, out.stderr[-2000:]
    assert _processed(tmp_path / "data") == before  # nothing rebuilt, nothing added
    results = [json.loads(p.read_text()) for p in (tmp_path / "res" / "runs").glob("*/result.json")]
    assert sorted((r["task"], r["modality"]) for r in results) == [
        ("synth-ibsr", "image"), ("synth-recon", "views"), ("synth-svm", "voxels")]
