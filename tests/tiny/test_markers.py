"""Tiny model folders: know3d only ever deletes or writes into folders it created."""

from __future__ import annotations

import os

import pytest

from know3d_cli.errors import ConfigError
from know3d_cli.tiny import build_tiny_models
from know3d_cli.tiny.marker import clear, is_complete, mark_complete


def test_foreign_folder_or_file_is_refused_and_left_alone(tmp_path):
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"precious")
    with pytest.raises(ConfigError, match="did not create") as info:
        build_tiny_models(foreign)
    assert info.value.exit_code == 2
    assert os.listdir(foreign) == ["holiday.jpg"]
    with pytest.raises(ConfigError, match="did not create"):
        clear(foreign)
    assert os.listdir(foreign) == ["holiday.jpg"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="not a folder"):
        build_tiny_models(tmp_path / "file")
    assert (tmp_path / "file").read_text() == "x"


def test_clear_replaces_a_half_written_tiny_folder(tmp_path):
    part = tmp_path / "editor"
    clear(part)  # new: created and marked as being written
    (part / "weights.bin").write_bytes(b"half")
    assert not is_complete(part, "editor", 0)
    clear(part)  # an interrupted writer's folder is know3d's: replaced
    assert sorted(os.listdir(part)) == [".know3d-tiny.json"]
    mark_complete(part, "editor", 0)
    assert is_complete(part, "editor", 0)


@pytest.mark.parametrize("legacy", [".complete-v1", ".know3d-tiny-root"])
def test_a_tiny_set_written_by_an_earlier_version_is_rebuilt(tmp_path, legacy):
    old = tmp_path / "tiny"
    (old / "editor").mkdir(parents=True)
    (old / legacy).write_text("tiny random models for know3d tests and demo\n")
    (old / "editor" / "model_index.json").write_text("{}")
    clear(old)  # recognised as written by know3d: replaced, not refused
    assert sorted(os.listdir(old)) == [".know3d-tiny.json"]
