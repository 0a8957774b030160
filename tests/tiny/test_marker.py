"""One completion marker for every tiny folder, the whole set included (`tiny/marker.py`)."""

from __future__ import annotations

import json

from know3d_cli.tiny import SET_KIND, build_tiny_models
from know3d_cli.tiny.marker import is_complete, mark_complete


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
