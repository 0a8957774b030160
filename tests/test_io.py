"""Single-file atomic writes and the output-folder check (`know3d_cli/io.py`)."""

from __future__ import annotations

import os
import stat

import pytest

from know3d_cli.errors import OutputError
from know3d_cli.io import atomic_write, ensure_writable_dir


def test_atomic_write_creates_parents_and_replaces_the_file(tmp_path):
    path = tmp_path / "a" / "b" / "file.bin"
    atomic_write(path, b"old")
    atomic_write(path, b"new contents")
    assert path.read_bytes() == b"new contents"
    assert sorted(p.name for p in path.parent.iterdir()) == ["file.bin"]  # no temporary left beside it


def test_atomic_write_gives_the_mode_open_would(tmp_path):
    mask = os.umask(0o027)
    try:
        atomic_write(tmp_path / "f", b"x")
    finally:
        os.umask(mask)
    assert stat.S_IMODE((tmp_path / "f").stat().st_mode) == 0o640


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "file.txt"
    path.write_bytes(b"kept")

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="No space"):
        atomic_write(path, b"lost")
    assert path.read_bytes() == b"kept"
    assert [p.name for p in tmp_path.iterdir()] == ["file.txt"]


def test_ensure_writable_dir_creates_the_folder_and_leaves_nothing(tmp_path):
    out = ensure_writable_dir(tmp_path / "new" / "out")
    assert out.is_dir() and list(out.iterdir()) == []


def test_a_file_in_the_way_is_a_one_line_output_error(tmp_path):
    (tmp_path / "taken").write_text("x")
    with pytest.raises(OutputError, match="exists and is not a directory") as info:
        ensure_writable_dir(tmp_path / "taken")
    assert "\n" not in str(info.value)


def test_a_folder_that_refuses_files_is_a_one_line_output_error(tmp_path, monkeypatch):
    def refused(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("know3d_cli.io.tempfile.mkstemp", refused)  # as a read-only mount does, even for root
    with pytest.raises(OutputError, match=r"output directory .* is not writable \(Permission denied\)") as info:
        ensure_writable_dir(tmp_path / "ro")
    assert "\n" not in str(info.value)
