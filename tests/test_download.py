"""Downloads against a local HTTP server (full, resume, no-Range server, checksum, offline) and safe extraction."""

from __future__ import annotations

import hashlib
import io
import os
import re
import socket
import stat
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ssl3d.datasets import get_dataset, list_datasets
from ssl3d.datasets.download import (
    ChecksumError,
    DownloadError,
    UnsafeArchiveError,
    download,
    extract_archive,
    sha256sum,
)

PAYLOAD = os.urandom(300_000)
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    """/data.bin honours Range; /norange.bin ignores it; /flaky.bin drops the
    connection half-way through a full request; anything else is a 404."""

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str], length: int | None = None) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        requested = self.headers.get("Range")
        self.server.requests.append((self.path, requested))
        if self.path not in ("/data.bin", "/norange.bin", "/flaky.bin"):
            self.send_error(404, "Not Found")
            return
        match = re.fullmatch(r"bytes=(\d+)-", requested or "")
        if match and self.path != "/norange.bin":
            start = int(match.group(1))
            if start >= len(PAYLOAD):
                self._send(416, b"", {"Content-Range": f"bytes */{len(PAYLOAD)}"})
                return
            self._send(206, PAYLOAD[start:], {"Content-Range": f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}"})
        elif self.path == "/flaky.bin":
            # Announce the whole file, send 100 kB, hang up.
            self._send(200, PAYLOAD[:100_000], {}, length=len(PAYLOAD))
            self.close_connection = True
        else:
            self._send(200, PAYLOAD, {})


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.requests = []
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_full_download_verified(server, tmp_path):
    httpd, base = server
    out = download(f"{base}/data.bin", tmp_path / "data.bin", sha256=DIGEST, progress=False)
    assert out == tmp_path / "data.bin" and out.read_bytes() == PAYLOAD
    assert not (tmp_path / "data.bin.partial").exists()
    assert httpd.requests == [("/data.bin", None)]
    # Already there: no new request.
    assert download(f"{base}/data.bin", tmp_path, sha256=DIGEST, progress=False) == out
    assert len(httpd.requests) == 1


def test_resume_with_range(server, tmp_path):
    httpd, base = server
    (tmp_path / "data.bin.partial").write_bytes(PAYLOAD[:123_456])
    out = download(f"{base}/data.bin", tmp_path / "data.bin", sha256=DIGEST, progress=False)
    assert out.read_bytes() == PAYLOAD
    assert httpd.requests == [("/data.bin", "bytes=123456-")]


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    httpd, base = server
    (tmp_path / "f.bin.partial").write_bytes(b"garbage that is not a prefix")
    out = download(f"{base}/norange.bin", tmp_path / "f.bin", sha256=DIGEST, progress=False)
    assert out.read_bytes() == PAYLOAD
    assert httpd.requests == [("/norange.bin", "bytes=28-")]


def test_partial_longer_than_file_starts_over(server, tmp_path):
    httpd, base = server
    (tmp_path / "data.bin.partial").write_bytes(b"x" * (len(PAYLOAD) + 10))
    assert download(f"{base}/data.bin", tmp_path / "data.bin", progress=False).read_bytes() == PAYLOAD
    assert httpd.requests == [("/data.bin", f"bytes={len(PAYLOAD) + 10}-"), ("/data.bin", None)]


def test_dropped_connection_keeps_partial_then_resumes(server, tmp_path):
    httpd, base = server
    with pytest.raises(DownloadError, match="run again to resume"):
        download(f"{base}/flaky.bin", tmp_path / "flaky.bin", progress=False)
    partial = tmp_path / "flaky.bin.partial"
    assert partial.read_bytes() == PAYLOAD[:100_000]
    assert download(f"{base}/flaky.bin", tmp_path / "flaky.bin", sha256=DIGEST, progress=False).read_bytes() == PAYLOAD
    assert httpd.requests[-1] == ("/flaky.bin", "bytes=100000-")


def test_checksum_mismatch_deletes_download(server, tmp_path):
    _, base = server
    with pytest.raises(ChecksumError, match=f"expected {'0' * 64}"):
        download(f"{base}/data.bin", tmp_path / "data.bin", sha256="0" * 64, progress=False)
    assert not (tmp_path / "data.bin").exists() and not (tmp_path / "data.bin.partial").exists()


def test_http_error_and_no_network_point_to_from(server, tmp_path):
    _, base = server
    with pytest.raises(DownloadError, match="HTTP 404.*--from PATH"):
        download(f"{base}/missing.zip", tmp_path / "m.zip", progress=False)
    # A port nobody listens on: connection refused, reported with the --from hint.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    with pytest.raises(DownloadError, match="could not download.*--from PATH"):
        download(f"http://127.0.0.1:{closed_port}/x.zip", tmp_path / "x.zip", progress=False, connect_timeout=2)
    assert not (tmp_path / "x.zip").exists()
    with pytest.raises(ValueError, match="http"):
        download("ftp://example.org/x.zip", tmp_path / "x.zip")


def test_sha256sum_matches_hashlib(tmp_path):
    path = tmp_path / "blob"
    path.write_bytes(PAYLOAD * 5)  # > 1 MiB: several chunks
    assert sha256sum(path) == hashlib.sha256(PAYLOAD * 5).hexdigest()


def test_every_real_dataset_declares_its_archives():
    # the URLs, archive names and checksums live on the dataset classes, not in download.py
    archives = {}
    for name in list_datasets():
        for part in getattr(get_dataset(name), "raw_parts", ()):
            assert part.urls and all(u.startswith("http") for u in part.urls)
            assert part.urls[0].rsplit("/", 1)[1] == part.archive
            assert part.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", part.sha256)
            assert part.layout
            archives[part.archive] = name
    assert set(archives) == {
        "ModelNet40.zip", "ModelNet10.zip", "modelnet40_ply_hdf5_2048.zip", "modelnet40_normal_resampled.zip",
        "shapenetcore_partanno_segmentation_benchmark_v0_normal.zip", "ShapeNetRendering.tgz", "ShapeNetVox32.tgz",
        "pix3d.zip", "h5_files.zip", "indoor3d_sem_seg_hdf5_data.zip",
    }


# ---------------------------------------------------------------- extraction


def _snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]], mode: str = "w") -> Path:
    with tarfile.open(path, mode) as tf:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _info(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


@pytest.mark.parametrize(
    "suffix, mode", [(".tar", "w"), (".tar.gz", "w:gz"), (".tgz", "w:gz"), (".tar.bz2", "w:bz2"), (".tar.xz", "w:xz")]
)
def test_extract_tar_variants(tmp_path, suffix, mode):
    archive = _tar(
        tmp_path / f"a{suffix}",
        [
            (_info("data/", tarfile.DIRTYPE), None),
            (_info("data/a.txt"), b"alpha"),
            (_info("data/sub/b.txt"), b"beta"),
            (_info("data/sub/link", tarfile.SYMTYPE, "../a.txt"), None),  # stays inside: allowed
        ],
        mode,
    )
    out = extract_archive(archive, tmp_path / "out")
    assert (out / "data/a.txt").read_bytes() == b"alpha" and (out / "data/sub/b.txt").read_bytes() == b"beta"
    assert (out / "data/sub/link").is_symlink() and (out / "data/sub/link").read_bytes() == b"alpha"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".extracting")]


def test_extract_zip_and_refuse_existing_target(tmp_path):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ModelNet10/chair/train/chair_0001.off", "OFF\n")
        zf.writestr("ModelNet10/README.txt", "hi")
    out = extract_archive(archive, tmp_path / "raw")
    assert (out / "ModelNet10/chair/train/chair_0001.off").read_text() == "OFF\n"
    with pytest.raises(FileExistsError):
        extract_archive(archive, tmp_path / "raw")
    (tmp_path / "plain.txt").write_text("not an archive")
    with pytest.raises(ValueError, match="neither a zip nor a tar"):
        extract_archive(tmp_path / "plain.txt", tmp_path / "other")


@pytest.mark.parametrize(
    "member, fragment",
    [
        (_info("../evil.txt"), "'../evil.txt' has an absolute path or escapes"),
        (_info("ok/../../evil.txt"), "escapes"),
        (_info("/tmp/abs.txt"), "'/tmp/abs.txt' has an absolute path"),
        (_info("data/link", tarfile.SYMTYPE, "../../outside"), "symlink 'data/link' -> '../../outside' points outside"),
        (_info("data/link", tarfile.SYMTYPE, "/etc/passwd"), "points outside"),
        (_info("hard", tarfile.LNKTYPE, "../x"), "hard link 'hard'"),
        (_info("dev/null", tarfile.CHRTYPE), "'dev/null' is a device"),
        (_info("fifo", tarfile.FIFOTYPE), "'fifo' is a device or special file"),
    ],
)
def test_unsafe_tar_members_refused_and_nothing_written(tmp_path, member, fragment):
    data = b"payload" if member.type == tarfile.REGTYPE else None
    archive = _tar(tmp_path / "evil.tar", [(_info("data/fine.txt"), b"fine"), (member, data)])
    before = _snapshot(tmp_path)
    with pytest.raises(UnsafeArchiveError, match=re.escape(fragment) if "'" in fragment else fragment):
        extract_archive(archive, tmp_path / "work" / "target")
    assert _snapshot(tmp_path) - before <= {"work"}  # at most the (empty) parent folder
    assert not (tmp_path / "work" / "target").exists() and not any((tmp_path / "work").iterdir())
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path.parent / "evil.txt").exists()


@pytest.mark.parametrize("name", ["../evil.txt", "/abs.txt", "a/../../evil.txt", "C:/windows.txt"])
def test_unsafe_zip_members_refused(tmp_path, name):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("fine.txt", "fine")
        zf.writestr(zipfile.ZipInfo(name), "evil")
    before = _snapshot(tmp_path)
    with pytest.raises(UnsafeArchiveError, match=re.escape(repr(name))):
        extract_archive(archive, tmp_path / "target")
    assert _snapshot(tmp_path) == before


def _zip_symlink(name: str, link: str) -> tuple[zipfile.ZipInfo, str]:
    """A symlink member as `zip --symlinks` stores it: S_IFLNK in the Unix mode, the target as content."""
    info = zipfile.ZipInfo(name)
    info.create_system = 3  # Unix, so the high 16 bits of external_attr are st_mode
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info, link


@pytest.mark.parametrize(
    "link, fragment",
    [
        ("../../outside", "symlink 'data/link' -> '../../outside' points outside the target"),
        ("/etc", "symlink 'data/link' -> '/etc' points outside the target"),
        # zipfile would write even a harmless link as a plain file holding the target path
        ("../data", "symlink 'data/link' -> '../data' in a zip archive is not supported"),
    ],
)
def test_zip_symlink_members_refused_and_nothing_written(tmp_path, link, fragment):
    archive = tmp_path / "links.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("data/fine.txt", "fine")
        zf.writestr(*_zip_symlink("data/link", link))
        zf.writestr("data/link/through.txt", "written through the link")
    before = _snapshot(tmp_path)
    with pytest.raises(UnsafeArchiveError, match=re.escape(f"{archive}: {fragment}")):
        extract_archive(archive, tmp_path / "target")
    assert _snapshot(tmp_path) == before


def test_interrupted_extraction_leaves_nothing(tmp_path):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("first.txt", b"A" * 1000)
        zf.writestr("second.txt", b"B" * 1000)
    raw = bytearray(archive.read_bytes())
    raw[raw.index(b"B" * 1000) + 10] ^= 0xFF  # second member fails its CRC after the first was written
    archive.write_bytes(bytes(raw))
    before = _snapshot(tmp_path)
    with pytest.raises(zipfile.BadZipFile):
        extract_archive(archive, tmp_path / "target")
    assert _snapshot(tmp_path) == before
