"""outputs.py: per-asset locks across processes, all-or-nothing asset folders, the append-only results journal."""

from __future__ import annotations

import errno
import json
import os
import signal
import time

import pytest

from know3d_cli import outputs
from know3d_cli.errors import OutputError, WriteFailure
from know3d_cli.outputs import AssetLock, ResultsLog, check_asset_path, latest_results, read_results, write_asset


def hidden(out) -> list[str]:
    return sorted(name for name in os.listdir(out) if name.startswith("."))


# ------------------------------------------------------------------------------------ lock
def test_lock_excludes_a_second_holder_and_leaves_no_file(tmp_path):
    first, second = AssetLock(tmp_path, "mug"), AssetLock(tmp_path, "mug")
    assert first.acquire(blocking=False)
    assert not second.acquire(blocking=False)  # flock is per open file: excludes within one process too
    assert "pid" in second.holder()
    assert AssetLock(tmp_path, "cup").acquire(blocking=False)  # other ids are independent
    first.release()
    assert second.acquire(blocking=False)
    second.release()
    assert hidden(tmp_path) == [".cup.lock"]  # released locks remove their file; "cup" is still held


def test_lock_of_a_killed_process_is_free_at_once(tmp_path):
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: take the lock, report, wait to be killed
        os.close(read)
        AssetLock(tmp_path, "mug").acquire()
        os.write(write, b"1")
        time.sleep(60)
        os._exit(0)
    os.close(write)
    assert os.read(read, 1) == b"1"
    assert not AssetLock(tmp_path, "mug").acquire(blocking=False)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    lock = AssetLock(tmp_path, "mug")
    assert lock.acquire(blocking=False)  # the kernel dropped the dead holder's lock
    lock.release()
    assert hidden(tmp_path) == []


def test_waiter_gets_the_lock_after_the_holder_removed_its_file(tmp_path):
    holder = AssetLock(tmp_path, "mug")
    holder.acquire()
    pid = os.fork()
    if pid == 0:  # child: blocks on the lock file the parent is about to remove
        os.close(holder._fd)  # a forked copy of the parent's descriptor would share its lock
        lock = AssetLock(tmp_path, "mug")
        lock.acquire(blocking=True)
        with open(tmp_path / "child-has-it", "w"):
            pass
        time.sleep(0.5)
        lock.release()
        os._exit(0)
    time.sleep(0.3)
    holder.release()
    deadline = time.time() + 10
    while not (tmp_path / "child-has-it").exists() and time.time() < deadline:
        time.sleep(0.02)
    assert not AssetLock(tmp_path, "mug").acquire(blocking=False)  # the child holds the live lock, not a stale inode
    os.waitpid(pid, 0)


# ------------------------------------------------------------------------------------ asset folders
def test_write_asset_replaces_the_folder_whole(tmp_path):
    write_asset(tmp_path, "mug", {"model.glb": b"old", "back.png": b"b", "metadata.json": b"{}"})
    target = write_asset(tmp_path, "mug", {"model.glb": b"new", "metadata.json": b"{}"})
    assert sorted(os.listdir(target)) == ["metadata.json", "model.glb"]
    assert (target / "model.glb").read_bytes() == b"new"
    assert hidden(tmp_path) == []


def test_failed_write_keeps_the_previous_asset_and_leaves_nothing(tmp_path, monkeypatch):
    write_asset(tmp_path, "mug", {"model.glb": b"old", "metadata.json": b"{}"})
    real = outputs._write_synced

    def disk_full(path, data):
        if path.name == "metadata.json":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(path, data)

    monkeypatch.setattr(outputs, "_write_synced", disk_full)
    with pytest.raises(WriteFailure, match="No space left on device") as info:
        write_asset(tmp_path, "mug", {"model.glb": b"new", "metadata.json": b"{}"})
    assert info.value.disk_full and info.value.exit_code == 4
    with pytest.raises(WriteFailure):
        write_asset(tmp_path, "cup", {"model.glb": b"new", "metadata.json": b"{}"})
    assert (tmp_path / "mug" / "model.glb").read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["mug"]  # no "cup", no partial folder


def test_leftovers_of_a_killed_writer_are_cleaned_and_a_moved_asset_restored(tmp_path):
    (tmp_path / ".mug.old-0123abcd").mkdir()  # killed between moving the finished asset aside and replacing it
    (tmp_path / ".mug.old-0123abcd" / "metadata.json").write_text("{}")
    (tmp_path / ".mug.partial-89abcdef").mkdir()
    (tmp_path / ".mug.partial-89abcdef.partial-00000000").mkdir()  # the partial folder of the id "mug.partial-89abcdef"
    (tmp_path / ".cup.lock").write_text("host pid 1")  # a dead holder's lock file
    outputs.clean_stale(tmp_path)
    assert (tmp_path / "mug" / "metadata.json").is_file()
    assert hidden(tmp_path) == []


def test_asset_path_checks(tmp_path):
    (tmp_path / "file").write_text("x")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "model.glb").write_bytes(b"")
    check_asset_path(tmp_path, "old")  # an earlier asset (even unfinished) may be replaced
    check_asset_path(tmp_path, "new")
    with pytest.raises(OutputError, match="not a folder"):
        check_asset_path(tmp_path, "file")
    with pytest.raises(OutputError, match="todo.txt"):
        check_asset_path(tmp_path, "notes")
    with pytest.raises(OutputError, match="too long for the filesystem"):
        check_asset_path(tmp_path, "é" * 120)


# ------------------------------------------------------------------------------------ results.jsonl
def test_results_log_appends_whole_lines_and_drops_a_torn_one(tmp_path):
    path = tmp_path / "results.jsonl"
    with ResultsLog(path) as log:
        log.append({"id": "a", "status": "ok"})
    with open(path, "ab") as fh:
        fh.write(b'{"id": "b", "sta')  # a writer killed mid-line
    assert [r["id"] for r in read_results(path)] == ["a"]
    with ResultsLog(path) as log:
        log.append({"id": "b", "status": "failed", "text": "\udcff"})  # undecodable bytes stay valid JSON
        log.append({"id": "a", "status": "skipped"})
    lines = path.read_bytes().splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["a", "b", "a"]
    assert {k: r["status"] for k, r in latest_results(read_results(path)).items()} == {"a": "skipped", "b": "failed"}


def test_results_log_write_failure_leaves_the_file_as_it_was(tmp_path, monkeypatch):
    path = tmp_path / "results.jsonl"
    log = ResultsLog(path)
    log.append({"id": "a"})
    before = path.read_bytes()

    def short_then_full(fd, data):
        os.pwrite(fd, bytes(data[:5]), os.fstat(fd).st_size)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(outputs.os, "write", short_then_full)
    with pytest.raises(WriteFailure) as info:
        log.append({"id": "b"})
    assert info.value.disk_full
    assert path.read_bytes() == before
    log.close()
