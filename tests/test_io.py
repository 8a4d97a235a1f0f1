"""Atomic writes: files land by rename, with the permissions a plain ``open()`` would give."""

from __future__ import annotations

import os
import stat

import pytest

from ssl3d.core.io import atomic_write_text


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_atomic_files_get_the_umask_mode_not_mkstemps_0600(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        plain = tmp_path / "plain.txt"
        plain.write_text("x")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "a.txt").stat().st_mode)
    assert mode == stat.S_IMODE(plain.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
