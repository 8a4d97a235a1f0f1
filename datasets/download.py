"""Resumable, checksum-verified downloads and safe archive extraction for the real datasets.

Everything lands by rename: a download streams into ``<dest>.partial`` and is
renamed when complete (and verified), an archive is extracted into a hidden
temporary folder next to the target and renamed into place, so an
interrupted run never leaves something half-done under a final name.

Extraction refuses, before writing anything, any member that could write
outside the target: absolute paths, ``..`` components that escape, symbolic
or hard links whose target escapes, device/FIFO files, and any symbolic link
in a zip archive (zipfile cannot extract one as a link)
(:class:`UnsafeArchiveError` names the member). It also reads the whole archive
once first: a file that is no archive, a truncated one or a member failing its
CRC is refused with :class:`ArchiveError` (naming the archive, and the member
where there is one), again before anything is written.

Where each dataset's archives come from (URLs, archive names, checksums) is
declared on the dataset class (:class:`~ssl3d.datasets.real.RawPart`); this
module knows no dataset. Several Stanford mirrors (``shapenet.cs.stanford.edu``)
have been offline; without network, or when a host is gone, download the
archive elsewhere and give it to ``bench prepare <dataset> --from PATH``.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.client
import lzma
import os
import re
import shutil
import stat
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from ssl3d.core.errors import UserError
from ssl3d.datasets.errors import DataFileError

__all__ = [
    "DownloadError",
    "ChecksumError",
    "UnsafeArchiveError",
    "ArchiveError",
    "download",
    "extract_archive",
    "sha256sum",
]

_CHUNK = 1 << 20
_FROM_HINT = (
    "If this machine has no network access (or the host is gone), download the archive "
    "elsewhere and pass it, or the folder you already extracted, with `--from PATH`."
)


class DownloadError(UserError, RuntimeError):
    """A download failed; the message says why and how to proceed without network."""


class ChecksumError(DownloadError):
    """The downloaded file's SHA-256 differs from the expected one (the file was deleted)."""


class UnsafeArchiveError(UserError, ValueError):
    """An archive member would land outside the extraction target, or is a device file."""


class ArchiveError(DataFileError):
    """A file that is not a zip/tar archive, or a truncated or damaged one: ``ARCHIVE: what is wrong``."""


class BadZipArchiveError(ArchiveError, zipfile.BadZipFile):
    """A truncated or damaged zip archive (still a ``zipfile.BadZipFile``)."""


class BadTarArchiveError(ArchiveError, tarfile.ReadError):
    """A truncated or damaged tar archive (still a ``tarfile.ReadError``)."""


def sha256sum(path: str | os.PathLike[str]) -> str:
    """Return the hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _open(url: str, start: int, connect_timeout: float, timeout: float):
    request = urllib.request.Request(url, headers={"User-Agent": "ssl3d-bench", "Accept-Encoding": "identity"})
    if start:
        request.add_header("Range", f"bytes={start}-")
    try:
        response = urllib.request.urlopen(request, timeout=connect_timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and start:
            return None  # the partial is not a prefix we can extend; caller restarts
        raise DownloadError(f"could not download {url}: HTTP {exc.code} {exc.reason}. {_FROM_HINT}") from None
    except (OSError, http.client.HTTPException) as exc:  # URLError, refused, timeout, DNS, bad reply
        reason = getattr(exc, "reason", exc)
        raise DownloadError(f"could not download {url}: {reason}. {_FROM_HINT}") from None
    # Connecting used the short timeout (fail fast offline); reading the body
    # may legitimately stall longer on a slow mirror.
    try:
        response.fp.raw._sock.settimeout(timeout)
    except AttributeError:
        pass
    return response


def download(
    url: str,
    dest: str | os.PathLike[str],
    *,
    sha256: str | None = None,
    resume: bool = True,
    progress: bool = True,
    timeout: float = 30,
    connect_timeout: float = 10,
) -> Path:
    """Download ``url`` to ``dest`` through ``<dest>.partial``, resuming and verifying.

    An existing ``dest`` is returned as is (after a checksum check when
    ``sha256`` is given). With ``resume`` and an existing ``.partial``, the
    request carries ``Range: bytes=<size>-``; a ``206`` reply is appended, a
    server that ignores ranges (``200``) restarts the file cleanly, a ``416``
    discards the partial and starts over.

    Args:
        url: http(s) URL.
        dest: destination file (an existing folder means ``folder/<url file name>``).
        sha256: expected hex digest; a mismatch deletes the file and raises.
        resume: continue an existing ``.partial`` instead of starting over.
        progress: show a tqdm progress bar.
        timeout: seconds a read may stall before giving up.
        connect_timeout: seconds to wait for the connection and response headers.

    Returns:
        the path of the complete file.

    Raises:
        ValueError: a non-http(s) URL or non-positive timeout.
        DownloadError: no connection, an HTTP error or a connection dropped
            mid-way (the partial is kept for resuming); the message tells how
            to continue with ``--from PATH``.
        ChecksumError: the SHA-256 differs (the partial is deleted).
    """
    scheme = urllib.parse.urlparse(url).scheme
    if scheme not in ("http", "https"):
        raise ValueError(f"url must be http:// or https://, got {url!r}")
    if timeout <= 0 or connect_timeout <= 0:
        raise ValueError(f"timeouts must be positive, got timeout={timeout}, connect_timeout={connect_timeout}")
    dest = Path(dest)
    if dest.is_dir():
        dest = dest / (PurePosixPath(urllib.parse.urlparse(url).path).name or "download")
    if dest.is_file():
        if sha256 is None or sha256sum(dest) == sha256.lower():
            return dest
        raise ChecksumError(f"{dest} exists but its SHA-256 is {sha256sum(dest)}, expected {sha256}; delete it to download again")
    partial = dest.with_name(dest.name + ".partial")
    if partial.exists() and not resume:
        partial.unlink()

    start = partial.stat().st_size if partial.exists() else 0
    response = _open(url, start, connect_timeout, timeout)
    if response is None:  # 416: the range did not fit the file on the server
        partial.unlink()
        start = 0
        response = _open(url, 0, connect_timeout, timeout)
    if start and response.status == 206:
        match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
        if match is None or int(match.group(1)) != start:  # not the continuation we asked for
            response.close()
            partial.unlink()
            start = 0
            response = _open(url, 0, connect_timeout, timeout)
    dest.parent.mkdir(parents=True, exist_ok=True)  # only once connected: an offline run creates no folder
    with response:
        if start and response.status != 206:
            start = 0  # server ignored Range and sends the whole file
        length = response.headers.get("Content-Length")
        total = start + int(length) if length is not None and length.isdigit() else None
        written = start
        try:
            with open(partial, "ab" if start else "wb") as out, tqdm(
                total=total, initial=start, unit="B", unit_scale=True, desc=dest.name, disable=not progress
            ) as bar:
                while True:
                    block = response.read(_CHUNK)
                    if not block:
                        break
                    out.write(block)
                    written += len(block)
                    bar.update(len(block))
        except (OSError, http.client.HTTPException) as exc:
            raise DownloadError(
                f"download of {url} interrupted after {written} bytes ({exc}); run again to resume. {_FROM_HINT}"
            ) from None
    if total is not None and written != total:
        raise DownloadError(f"download of {url} ended after {written} of {total} bytes; run again to resume. {_FROM_HINT}")
    if sha256 is not None:
        actual = sha256sum(partial)
        if actual != sha256.lower():
            partial.unlink()
            raise ChecksumError(
                f"SHA-256 of {url} is {actual}, expected {sha256}; the download was deleted (corrupt file or changed upstream)"
            )
    os.replace(partial, dest)
    return dest


def _member_target(name: str) -> PurePosixPath | None:
    """Normalised relative path of an archive member, or None if it is absolute or escapes."""
    name = name.replace("\\", "/")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return None
    parts: list[str] = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                return None
            parts.pop()
        else:
            parts.append(part)
    return PurePosixPath(*parts)


def _check_tar(archive: Path, members: list[tarfile.TarInfo]) -> None:
    for m in members:
        where = _member_target(m.name)
        if where is None:
            raise UnsafeArchiveError(f"{archive}: member {m.name!r} has an absolute path or escapes the target with '..'")
        if m.ischr() or m.isblk() or m.isfifo() or not (m.isfile() or m.isdir() or m.issym() or m.islnk()):
            raise UnsafeArchiveError(f"{archive}: member {m.name!r} is a device or special file")
        if m.issym():
            _check_symlink(archive, m.name, where, m.linkname)
        if m.islnk() and _member_target(m.linkname) is None:
            raise UnsafeArchiveError(f"{archive}: hard link {m.name!r} -> {m.linkname!r} points outside the target")


def _check_symlink(archive: Path, name: str, where: PurePosixPath, link_target: str) -> None:
    # A symlink's target is relative to the folder holding the link.
    link = link_target.replace("\\", "/")
    if link.startswith("/") or _member_target(f"{where.parent.as_posix()}/{link}") is None:
        raise UnsafeArchiveError(f"{archive}: symlink {name!r} -> {link_target!r} points outside the target")


def _check_zip(archive: Path, zf: zipfile.ZipFile) -> None:
    for info in zf.infolist():
        where = _member_target(info.filename)
        if where is None:
            raise UnsafeArchiveError(f"{archive}: member {info.filename!r} has an absolute path or escapes the target with '..'")
        kind = stat.S_IFMT(info.external_attr >> 16)
        if kind in (stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO, stat.S_IFSOCK):
            raise UnsafeArchiveError(f"{archive}: member {info.filename!r} is a device or special file")
        if kind == stat.S_IFLNK:
            with zf.open(info) as fh:  # a zip symlink stores its target as content; bounded against a bomb
                link = fh.read(4096).decode("utf-8", errors="replace")
            _check_symlink(archive, info.filename, where, link)
            # zipfile.extractall would write even a harmless link as a plain file
            # holding the target path, and fail on members stored beneath it.
            raise UnsafeArchiveError(
                f"{archive}: symlink {info.filename!r} -> {link!r} in a zip archive is not supported "
                "(Python's zipfile cannot extract links); extract it with `unzip` and pass the folder with `--from`"
            )


def extract_archive(archive: str | os.PathLike[str], target: str | os.PathLike[str]) -> Path:
    """Safely extract a zip or tar(.gz/.bz2/.xz/.tgz) archive into a new folder ``target``.

    All members are checked, and the whole archive is read once (every zip
    member's CRC, a compressed tar stream to its end), before anything is
    written; extraction goes to a temporary folder inside ``target``'s parent,
    which is renamed to ``target`` only when complete.

    Args:
        archive: the archive file (type detected from its content).
        target: folder to create; it must not exist yet.

    Returns:
        ``target``.

    Raises:
        FileNotFoundError: ``archive`` does not exist.
        FileExistsError: ``target`` already exists.
        ArchiveError: ``archive`` is neither a zip nor a tar file (a ``ValueError``), or is a
            truncated or damaged one (also a ``zipfile.BadZipFile`` / ``tarfile.ReadError``);
            the message names the archive, what is wrong and the member where there is one.
        UnsafeArchiveError: a member is absolute, escapes via ``..`` or a link,
            is a device file, or is a symlink inside a zip (nothing is written).
    """
    archive, target = Path(archive), Path(target)
    if not archive.is_file():
        raise FileNotFoundError(f"archive not found: {archive}")
    if target.exists():
        raise FileExistsError(f"extraction target already exists: {target}; remove it or choose another folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        if _archive_kind(archive) == "zip":
            zf = stack.enter_context(_open_zip(archive))
            _check_zip(archive, zf)
            _verify_zip(archive, zf)
            extract = zf.extractall
        else:
            tf = stack.enter_context(tarfile.open(archive, "r:*"))
            members = _tar_members(archive, tf)
            _check_tar(archive, members)
            if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4: a second line of defence
                extract = functools.partial(tf.extractall, members=members, filter="data")
            else:
                extract = functools.partial(tf.extractall, members=members)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".extracting", dir=target.parent))
        try:
            extract(tmp)
            os.chmod(tmp, 0o755)  # mkdtemp makes it private; the dataset folder should not be
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


_AGAIN = "download it again"
_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
_COMPRESSED = ((b"\x1f\x8b", "gzip"), (b"BZh", "bzip2"), (b"\xfd7zXZ\x00", "xz"))


def _archive_kind(archive: Path) -> str:
    """``"zip"`` or ``"tar"``, else :class:`ArchiveError` saying what the file is instead."""
    if zipfile.is_zipfile(archive):
        return "zip"
    if tarfile.is_tarfile(archive):
        return "tar"
    with open(archive, "rb") as fh:
        head = fh.read(8)
    if head.startswith(b"PK\x03\x04"):  # a zip's start without its end
        raise BadZipArchiveError(archive, f"truncated zip archive: its end (the central directory) is missing; {_AGAIN}")
    packer = next((name for magic, name in _COMPRESSED if head.startswith(magic)), None)
    if packer is not None:
        raise BadTarArchiveError(archive, f"truncated or damaged: a {packer} file without a readable tar archive inside; {_AGAIN}")
    name = archive.name.lower()
    kinds = "zip" if name.endswith(".zip") else "tar" if name.endswith(_TAR_SUFFIXES) else None
    raise ArchiveError(archive, f"not a {kinds} archive ({'an empty file' if not head else 'its content is not one'})" if kinds else
                       "neither a zip nor a tar archive (.zip, .tar, .tar.gz, .tgz, .tar.bz2, .tar.xz)")


def _open_zip(archive: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, EOFError) as exc:
        raise BadZipArchiveError(archive, f"damaged zip archive: its central directory cannot be read ({exc}); {_AGAIN}") from None


def _verify_zip(archive: Path, zf: zipfile.ZipFile) -> None:
    """Read every member through once, as ``ZipFile.testzip`` does, naming the first one that fails."""
    for info in zf.infolist():
        if info.is_dir():
            continue
        name = info.filename
        try:
            with zf.open(info) as fh:
                while fh.read(_CHUNK):
                    pass
        except zipfile.BadZipFile as exc:  # a bad CRC-32 or local header
            what = "CRC mismatch" if "CRC" in str(exc) else f"damaged header ({exc})"
            raise BadZipArchiveError(archive, f"{what} in member {name!r}; the archive is damaged, {_AGAIN}") from None
        except (EOFError, zlib.error, lzma.LZMAError, OSError) as exc:
            raise BadZipArchiveError(archive, f"truncated or damaged data in member {name!r} ({exc}); {_AGAIN}") from None
        except (NotImplementedError, RuntimeError) as exc:  # a compression method zipfile lacks; encryption
            raise ArchiveError(archive, f"member {name!r} cannot be read ({exc}); extract the archive with `unzip` "
                                        "and pass the folder with `--from`") from None


def _tar_members(archive: Path, tf: tarfile.TarFile) -> list[tarfile.TarInfo]:
    """Every member, the archive read to its end on the way (a compressed stream checks its CRC there)."""
    try:
        members = tf.getmembers()
        while tf.fileobj.read(_CHUNK):
            pass
    except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError) as exc:
        raise BadTarArchiveError(archive, f"truncated or damaged tar archive ({exc}); {_AGAIN}") from None
    return members
