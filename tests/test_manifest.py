"""read_manifest / safe_id: file-level errors raise, row-level problems stay on their row."""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from know3d_cli.errors import InputError
from know3d_cli.inputs import IdTemplate
from know3d_cli.manifest import ManifestRow, RowDefaults, read_manifest, safe_id


def _write(tmp_path: Path, text: str, name: str = "items.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def test_basic_rows_and_relative_paths(tmp_path):
    absolute = tmp_path / "elsewhere" / "vase.png"
    path = _write(tmp_path, f"image,back,id,seed\nimgs/chair.png,a wooden back,,7\n{absolute},,vase-1,\n")
    rows = read_manifest(path)
    assert rows == [
        ManifestRow(line=2, image=tmp_path / "imgs" / "chair.png", back="a wooden back", id="chair", seed=7,
                    error=None),
        ManifestRow(line=3, image=absolute, back=None, id="vase-1", seed=None, error=None),
    ]


def test_bom_quotes_and_blank_lines(tmp_path):
    text = ('\ufeffImage,Back\n'
            '\n'
            'a.png,"red, with a zip"\n'
            '   \n'
            'b.png,"two\nlines ""quoted"""\n'
            ',\n'
            'c.png,\n')
    rows = read_manifest(_write(tmp_path, text))
    assert [r.id for r in rows] == ["a", "b", "c"]
    assert rows[0].back == "red, with a zip"
    assert rows[1].back == 'two\nlines "quoted"'
    assert [r.line for r in rows] == [3, 5, 8]  # where each row starts; the quoted newline spans lines 5-6
    assert all(r.error is None for r in rows)


def test_extra_columns_warn(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        rows = read_manifest(_write(tmp_path, "image,colour\nx.png,blue\n"))
    assert rows[0].error is None
    assert "colour" in caplog.text


def test_too_many_fields_is_a_row_error(tmp_path):
    rows = read_manifest(_write(tmp_path, "image,back\nx.png,red, with a zip\ny.png,fine\n"))
    assert "quote cells that contain commas" in rows[0].error
    assert rows[1].error is None


@pytest.mark.parametrize("bad", ["../up", "a/b", "a\\b", ".hidden", "..", "x..y", "con:1", "tab\tname"])
def test_unsafe_explicit_ids_reject_only_their_row(tmp_path, bad):
    quoted = '"' + bad + '"'
    rows = read_manifest(_write(tmp_path, f"image,id\nx.png,{quoted}\ny.png,ok\n"))
    assert rows[0].id is None and "unsafe id" in rows[0].error
    assert rows[1].id == "ok" and rows[1].error is None


def test_unsafe_image_stems(tmp_path):
    rows = read_manifest(_write(tmp_path, "image\n.secret.png\nsub\\dir.png\nfine/ok.png\n"))
    assert rows[0].id is None and "unsafe id" in rows[0].error
    assert rows[1].id is None and "unsafe id" in rows[1].error
    assert rows[2].id == "ok" and rows[2].error is None


def test_two_rows_with_one_id_fail_the_later_row(tmp_path):
    text = ("image,id\n"
            "a/chair.png,\n"
            "b/chair.png,\n"
            "c/Chair.png,\n"
            "d.png,chair-4\n"
            "e.png,mug\n"
            "f.png,MUG\n"
            "g/chair-4.png,\n")
    rows = read_manifest(_write(tmp_path, text))
    ids = [r.id for r in rows]
    # ids compare case-insensitively; explicit ids are claimed first; a later row that maps to a taken id fails
    assert ids == ["chair", None, None, "chair-4", "mug", None, None]
    assert "line 2" in rows[1].error and "two inputs" in rows[1].error
    assert "duplicate id" in rows[5].error
    assert "line 5" in rows[6].error
    assert [r.error is None for r in rows] == [True, False, False, True, True, False, False]


def test_explicit_id_beats_an_earlier_derived_stem(tmp_path):
    rows = read_manifest(_write(tmp_path, "image,id\nchair.png,\nother.png,chair\n"))
    assert [r.id for r in rows] == [None, "chair"]
    assert "line 3" in rows[0].error and rows[1].error is None


def test_id_template_tells_apart_same_named_images(tmp_path):
    rows = read_manifest(_write(tmp_path, "image,seed\na/chair.png,3\nb/chair.png,\n"),
                         RowDefaults(seed=9, id_template=IdTemplate("{parent}_{stem}_s{seed}_{index}")))
    assert [r.id for r in rows] == ["a_chair_s3_1", "b_chair_s9_2"]
    assert [r.seed for r in rows] == [3, 9]


def test_mode_preview_and_overrides_columns(tmp_path):
    text = ('image,mode,preview,overrides\n'
            'a.png,trellis,none,"tap.block=3 back=\'two words\'"\n'
            'b.png,sideways,,\n'
            'c.png,,x1,\n'
            'd.png,,,tap.block\n'
            'e.png,,,"a=\'unclosed"\n'
            'f.png,,,\n')
    rows = read_manifest(_write(tmp_path, text))
    assert rows[0].error is None
    assert rows[0].config_overrides() == ["mode=trellis", "preview=none", "tap.block=3", "back=two words"]
    assert "mode 'sideways'" in rows[1].error and "know3d" in rows[1].error
    assert "preview 'x1'" in rows[2].error
    assert "not key=value" in rows[3].error
    assert "cannot be split" in rows[4].error
    assert rows[5].error is None and rows[5].config_overrides() == []


def test_manifest_from_stdin_is_relative_to_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"image,back\nimgs/a.png,x\n")))
    (row,) = read_manifest("-", RowDefaults(back="default", seed=4))
    assert row.image == tmp_path / "imgs" / "a.png" and row.back == "x" and row.seed == 4 and row.id == "a"


@pytest.mark.parametrize("seed", ["-1", "1.5", "abc", "1e3", str(2**63)])
def test_bad_seed_is_a_row_error(tmp_path, seed):
    rows = read_manifest(_write(tmp_path, f"image,seed\nx.png,{seed}\ny.png, 12 \n"))
    assert rows[0].seed is None and "seed" in rows[0].error and rows[0].id == "x"
    assert rows[1].seed == 12 and rows[1].error is None


def test_empty_image_cell(tmp_path):
    rows = read_manifest(_write(tmp_path, "image,back\n,some text\nx.png,\n"))
    assert "image cell is empty" in rows[0].error and rows[0].id is None
    assert rows[1].error is None


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("back,id\nsome,thing\n", "no 'image' column"),
        ("", "is empty"),
        ("\n\n", "is empty"),
        ("image,Image\nx.png,y.png\n", "twice"),
        ('image,back\nx.png,"never closed\ny.png,ok\n', "not valid CSV"),
        ('image,back\nx.png,"closed" then text\n', "not valid CSV"),
    ],
)
def test_whole_file_errors(tmp_path, content, reason):
    with pytest.raises(InputError, match=reason):
        read_manifest(_write(tmp_path, content))


def test_not_utf8(tmp_path):
    path = _write(tmp_path, "image,back\nx.png,caf\u00e9\n", encoding="latin-1")
    with pytest.raises(InputError, match="not UTF-8.*line 2"):
        read_manifest(path)


def test_missing_and_directory(tmp_path):
    with pytest.raises(InputError, match="manifest not found"):
        read_manifest(tmp_path / "absent.csv")
    with pytest.raises(InputError, match="is a directory"):
        read_manifest(tmp_path)


def test_safe_id():
    assert safe_id("  chair_01 ") == "chair_01"
    assert safe_id("stuhl-ä.v2") == "stuhl-ä.v2"
    for bad in ["", "  ", ".x", "a/b", "a\\b", "a..b", "x" * 129, "a*b", "nul\x00"]:
        assert safe_id(bad) is None, bad


# ------------------------------------------------------------------------------------ fuzzing
_CELLS = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12) | st.sampled_from(
    ["~nosuchuser-know3d/x.png", "a\x00b.png", "../x.png", "~/p.png", " 12 ", "-1", str(2**64), "+3", "é\n🎒"])


@st.composite
def manifests(draw) -> bytes:
    """Random bytes, or a CSV in a random dialect and encoding whose header mixes known and unknown columns."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=300))
    header = draw(st.lists(st.sampled_from(["image", "back", "id", "seed", "IMAGE", " Back ", "colour", ""]),
                           min_size=1, max_size=5))
    rows = draw(st.lists(st.lists(_CELLS, max_size=6), max_size=5))
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=draw(st.sampled_from([",", ";", "\t", "|"])),
                        quotechar=draw(st.sampled_from(['"', "'"])),
                        lineterminator=draw(st.sampled_from(["\n", "\r\n", "\r"])),
                        quoting=draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC])))
    writer.writerow(header)
    writer.writerows(rows)
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "latin-1", "cp1252"]))
    return buf.getvalue().encode(encoding, errors="replace")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=manifests())
@example(data=b"image\n~nosuchuser-know3d/x.png\n")  # `~user` that does not exist
@example(data=b"image,back\na\x00b.png,x\n")  # a NUL in a path
@example(data=b'""\n"0\n0"\n')  # a line break inside a quoted header field
def test_manifest_fuzz_gives_rows_or_one_clean_input_error(tmp_path, data):
    path = tmp_path / "fuzzed.csv"
    path.write_bytes(data)
    try:
        rows = read_manifest(path)
    except InputError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)
        return
    for row in rows:
        if row.error is None:
            assert safe_id(row.id) == row.id
            assert row.seed is None or 0 <= row.seed < 2**63
            row.image.is_file()  # a usable path (no NUL, `~` expanded)
        else:
            assert isinstance(row.error, str) and row.error
