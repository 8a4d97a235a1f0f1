"""`bench prepare` for real datasets: --from archives/folders, downloads, safety, offline failure, report."""

from __future__ import annotations

import dataclasses
import functools
import http.server
import socket
import subprocess
import tarfile
import threading
import zipfile
from pathlib import Path

from conftest import BENCH, subprocess_env, tiny_set_args
from test_real_datasets import make_modelnet40, make_r2n2

from ssl3d.bench.cli import main
from ssl3d.datasets import get_dataset


def _serve_modelnet40_from(monkeypatch, url: str) -> None:
    """Point modelnet40's download at ``url`` (the URLs live on the dataset class)."""
    cls = get_dataset("modelnet40")
    monkeypatch.setattr(cls, "raw_parts", (dataclasses.replace(cls.raw_parts[0], urls=(url,)),))

SMALL_MODELNET = ["--set", "data.categories=chair,toilet", "--set", "data.workers=1", "--set", "data.n_points=64",
                  "--set", "data.voxel_resolution=16", "--set", "data.view_size=32"]


def zip_folder(folder: Path, archive: Path) -> Path:
    """Zip ``folder`` with its own name as the top-level member (as the official archives are laid out)."""
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(folder.rglob("*")):
            zf.write(path, path.relative_to(folder.parent).as_posix())
    return archive


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def staging_leftovers(root: Path, name: str) -> list[Path]:
    raw = root / name / "raw"
    return [p for p in raw.iterdir() if p.name.startswith(".")] if raw.is_dir() else []


def test_prepare_from_zip_subprocess_reports_skips_and_fallbacks(tmp_path):
    archive = zip_folder(make_modelnet40(tmp_path / "src"), tmp_path / "ModelNet40.zip")
    data = tmp_path / "data"
    proc = subprocess.run(
        [*BENCH, "prepare", "modelnet40", "--from", str(archive), "--data-root", str(data),
         "--modalities", "points", "voxels", "views", *SMALL_MODELNET],
        capture_output=True, text=True, env=subprocess_env(), timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "modelnet40/train: 4 shapes, 1 skipped" in out and "per class: chair 2, toilet 2" in out
    assert "modelnet40/test: 2 shapes in" in out
    assert "skipped toilet_0009 (points, voxels, views): " in out and "toilet_0009.off: expected 4 vertices" in out
    train_voxels = next(line for line in out.splitlines() if line.strip().startswith("voxels:"))
    assert "4/5 valid" in train_voxels and "voxel fallback 0" in train_voxels  # closed boxes: winding rule
    assert (data / "modelnet40" / "raw" / "ModelNet40" / "chair" / "train" / "chair_0001.off").is_file()
    assert staging_leftovers(data, "modelnet40") == []
    # the caches are complete: the dataset loads without recomputing
    cls = get_dataset("modelnet40")
    cfg = cls.Config(categories=("chair", "toilet"), n_points=64, voxel_resolution=16, view_size=32, workers=1)
    ds = cls("test", ("points", "voxels", "views"), cfg, data, progress=False)
    assert len(ds) == 2 and all(r.n_built == 0 for r in ds.reports.values())


def test_zip_with_parent_member_is_refused_and_writes_nothing(tmp_path, capsys):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ModelNet40/chair/train/chair_0001.off", "OFF\n")
        zf.writestr("../escaped.off", "OFF\n")
    data = tmp_path / "a" / "b"
    assert main(["prepare", "modelnet40", "--from", str(archive), "--data-root", str(data)]) == 2
    assert "../escaped.off" in capsys.readouterr().err
    assert not list(tmp_path.rglob("escaped.off"))
    assert not (data / "modelnet40" / "raw" / "ModelNet40").exists() and staging_leftovers(data, "modelnet40") == []


def test_offline_download_fails_fast_with_from_hint(tmp_path, monkeypatch, capsys):
    url = f"http://127.0.0.1:{closed_port()}/ModelNet40.zip"
    _serve_modelnet40_from(monkeypatch, url)
    assert main(["prepare", "modelnet40", "--data-root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert url in err and "bench prepare modelnet40 --from /path/to/ModelNet40.zip" in err
    assert not (tmp_path / "modelnet40" / "raw" / "ModelNet40").exists()


def test_no_download_flag_refuses_with_from_hint(tmp_path, capsys):
    assert main(["prepare", "modelnet40", "--no-download", "--data-root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "modelnet40 is not prepared" in err and "--from PATH" in err


def test_download_from_local_server_then_extract(tmp_path, monkeypatch, capsys):
    served = tmp_path / "served"
    served.mkdir()
    zip_folder(make_modelnet40(tmp_path / "src"), served / "ModelNet40.zip")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args, **kwargs: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/ModelNet40.zip"
        _serve_modelnet40_from(monkeypatch, url)
        data = tmp_path / "data"
        assert main(["prepare", "modelnet40", "--data-root", str(data), "--split", "test", *SMALL_MODELNET[:6]]) == 0
    finally:
        server.shutdown()
        server.server_close()
    assert (data / "modelnet40" / "downloads" / "ModelNet40.zip").read_bytes() == (served / "ModelNet40.zip").read_bytes()
    assert (data / "modelnet40" / "raw" / "ModelNet40" / "toilet" / "test" / "toilet_0020.off").is_file()
    assert "modelnet40/test: 2 shapes" in capsys.readouterr().out


def test_from_folder_links_in_place_and_checks_layout(tmp_path, capsys):
    src = make_modelnet40(tmp_path / "src")
    data = tmp_path / "data"
    bad = tmp_path / "not-modelnet"
    (bad / "chair").mkdir(parents=True)
    assert main(["prepare", "modelnet40", "--from", str(bad), "--data-root", str(data)]) == 2
    assert "*/train/*.off" in capsys.readouterr().err  # names what is missing
    # the folder's parent is accepted too (it holds ModelNet40/)
    assert main(["prepare", "modelnet40", "--from", str(src.parent), "--data-root", str(data), "--split", "train",
                 "--modalities", "points", *SMALL_MODELNET[:6]]) == 0
    link = data / "modelnet40" / "raw" / "ModelNet40.link"
    assert link.read_text().strip() == str(src.resolve())
    assert not (data / "modelnet40" / "raw" / "ModelNet40").exists()  # nothing copied
    assert "modelnet40/train: 4 shapes, 1 skipped" in capsys.readouterr().out


def test_r2n2_needs_both_archives(tmp_path, capsys):
    archives = {}
    for part, top in (("voxels", "ShapeNetVox32"), ("renderings", "ShapeNetRendering")):
        make_r2n2(tmp_path / part, part)
        archives[part] = tmp_path / f"{top}.tgz"
        with tarfile.open(archives[part], "w:gz") as tf:
            tf.add(tmp_path / part / top, arcname=top)
    data = tmp_path / "data"
    args = ["--data-root", str(data), "--set", "data.categories=aeroplane,chair", "--set", "data.workers=1",
            "--set", "data.n_views=2", "--set", "data.view_size=16"]
    assert main(["prepare", "r2n2", "--from", str(archives["renderings"]), *args]) == 2
    assert "ShapeNetVox32/*/*/model.binvox" in capsys.readouterr().err
    assert main(["prepare", "r2n2", "--from", str(archives["voxels"]), *args]) == 0  # completes the raw folder
    out = capsys.readouterr().out
    assert "r2n2/train: 8 shapes" in out and "r2n2/test: 2 shapes" in out and "per class: aeroplane 4, chair 4" in out
    assert (data / "r2n2" / "raw" / "r2n2" / "ShapeNetRendering").is_dir()


def test_synth_prepare_unchanged_and_refuses_from(tmp_path, capsys):
    assert main(["prepare", "synth", "--data-root", str(tmp_path), "--split", "test", *tiny_set_args()]) == 0
    assert "synth/test: 12 shapes" in capsys.readouterr().out
    assert main(["prepare", "synth", "--from", str(tmp_path), "--data-root", str(tmp_path)]) == 2
    assert "generated, not downloaded" in capsys.readouterr().err
