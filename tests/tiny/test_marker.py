"""One completion marker for every tiny folder, the whole set included (`tiny/marker.py`); know3d only ever deletes
or writes into folders it created."""

from __future__ import annotations

import json
import os

import pytest

from know3d_cli.errors import ConfigError
from know3d_cli.tiny import SET_KIND, build_tiny_models
from know3d_cli.tiny.marker import clear, is_complete, mark_complete


def test_the_whole_set_uses_the_shared_marker(tiny_root):
    markers = sorted(p.relative_to(tiny_root).as_posix() for p in tiny_root.rglob(".*") if p.is_file())
    assert ".know3d-tiny.json" in markers and not [m for m in markers if not m.endswith(".know3d-tiny.json")]
    assert json.loads((tiny_root / ".know3d-tiny.json").read_text()) == {"kind": SET_KIND, "seed": 0}
    assert is_complete(tiny_root, SET_KIND, 0) and not is_complete(tiny_root, SET_KIND, 1)
    stamp = (tiny_root / "trellis2" / "pipeline.json").stat().st_mtime_ns
    assert build_tiny_models(tiny_root) == tiny_root  # complete: nothing is rewritten
    assert (tiny_root / "trellis2" / "pipeline.json").stat().st_mtime_ns == stamp


def test_a_marker_of_another_kind_or_seed_is_not_complete(tmp_path):
    mark_complete(tmp_path, "editor", 3)
    assert is_complete(tmp_path, "editor", 3)
    assert not is_complete(tmp_path, SET_KIND, 3) and not is_complete(tmp_path, "editor", 0)
    (tmp_path / ".know3d-tiny.json").write_text("{not json")
    assert not is_complete(tmp_path, "editor", 3)


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
