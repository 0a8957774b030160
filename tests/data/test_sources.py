"""ASSETS of `know3d data build`: folders, globs and CSVs, with ids that depend on their own asset only."""

from __future__ import annotations

from pathlib import Path

import pytest

from know3d_cli.data.sources import caption_parts, read_sources
from know3d_cli.errors import InputError


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_a_folder_lists_its_assets_recursively(tmp_path):
    for name in ("b.glb", "sub/a.OBJ", "sub/deep/c.ply", "d.gltf", "d.bin", "tex.png", "notes.txt"):
        touch(tmp_path / name)
    sources = read_sources(str(tmp_path))
    assert [s.path.relative_to(tmp_path).as_posix() for s in sources] == ["b.glb", "d.gltf", "sub/a.OBJ",
                                                                          "sub/deep/c.ply"]
    assert [s.id for s in sources] == ["b", "d", "a", "c"] and all(s.caption is None for s in sources)


def test_a_glob_and_a_single_file(tmp_path):
    touch(tmp_path / "x" / "one.glb"), touch(tmp_path / "y" / "two.glb"), touch(tmp_path / "y" / "three.obj")
    assert [s.id for s in read_sources(str(tmp_path / "**" / "*.glb"))] == ["one", "two"]
    assert [s.id for s in read_sources(str(tmp_path / "y" / "three.obj"))] == ["three"]
    with pytest.raises(InputError, match="matches no file"):
        read_sources(str(tmp_path / "*.fbx"))
    with pytest.raises(InputError, match="not found"):
        read_sources(str(tmp_path / "missing"))
    with pytest.raises(InputError, match="no asset"):
        read_sources(str(touch(tmp_path / "empty" / "readme.txt").parent))


def test_colliding_stems_get_a_path_suffix_that_does_not_depend_on_other_assets(tmp_path):
    touch(tmp_path / "a" / "chair.glb"), touch(tmp_path / "b" / "chair.glb"), touch(tmp_path / "table.glb")
    ids = {s.path.relative_to(tmp_path).as_posix(): s.id for s in read_sources(str(tmp_path))}
    assert ids["table.glb"] == "table"
    assert ids["a/chair.glb"].startswith("chair-") and ids["b/chair.glb"].startswith("chair-")
    assert ids["a/chair.glb"] != ids["b/chair.glb"]
    touch(tmp_path / "c" / "chair.glb")  # a third chair leaves the first two ids alone
    again = {s.path.relative_to(tmp_path).as_posix(): s.id for s in read_sources(str(tmp_path))}
    assert again["a/chair.glb"] == ids["a/chair.glb"] and again["b/chair.glb"] == ids["b/chair.glb"]


def test_csv_rows_with_ids_captions_and_row_errors(tmp_path):
    touch(tmp_path / "m" / "mug.glb")
    manifest = tmp_path / "list.csv"
    manifest.write_text("\ufeffAsset,ID,caption,extra\n"
                        'm/mug.glb,,"a handle: curved, black; a label ; ",x\n'
                        "m/mug.glb,mug,,\n"  # an explicit id equal to the first row's stem: the stem gets a suffix
                        "m/mug.glb,mug,,\n"  # a repeated explicit id
                        "m/mug.glb,../up,,\n"
                        ",nothing,,\n"
                        "\n")
    rows = read_sources(str(manifest))
    assert [r.line for r in rows] == [2, 3, 4, 5, 6]
    first, second, third, fourth, fifth = rows
    assert first.caption == ("a handle: curved, black", "a label") and first.id.startswith("mug-")
    assert second.id == "mug" and second.error is None and second.caption is None
    assert third.id is None and "duplicate id" in third.error
    assert fourth.id is None and "unsafe id" in fourth.error
    assert fifth.error == "the asset cell is empty"
    assert first.path == tmp_path / "m" / "mug.glb"


def test_bad_csv_files(tmp_path):
    for text, message in (("path,id\nx.glb,a\n", "no 'asset' column"), ("", "is empty"),
                          ('asset\n"x.glb\n', "not valid CSV")):
        manifest = tmp_path / "list.csv"
        manifest.write_text(text)
        with pytest.raises(InputError, match=message):
            read_sources(str(manifest))
    manifest.write_bytes(b"asset\n\xff\xfe.glb\n")
    with pytest.raises(InputError, match="not UTF-8"):
        read_sources(str(manifest))


def test_caption_parts():
    assert caption_parts(" a  round handle ;; two straps;", ";") == ("a round handle", "two straps")
    assert caption_parts("one | two", "|") == ("one", "two")
    assert caption_parts(None, ";") is None and caption_parts(" ; ", ";") is None
