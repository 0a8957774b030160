"""`know3d report`: which assets the gallery shows, the page it writes, and its errors (the browser test is
test_gallery_browser.py)."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest

from know3d_cli.errors import EXIT_MISSING, EXIT_OK, EXIT_USAGE
from know3d_cli.report import REPORT_FILE, collect_entries, write_report

from .conftest import FAILURE

VENDOR = Path(__file__).resolve().parents[2] / "know3d_cli" / "report" / "vendor"


def test_entries_follow_the_results_file_and_skip_torn_lines(gallery_folder):
    entries = collect_entries(gallery_folder)
    assert [(e.id, e.status) for e in entries] == [("red", "ok"), ("missing", "failed"), ("blue", "ok")]
    red, missing, blue = entries
    assert {"model.glb", "preview.png", "turntable.webp", "input.png", "back.png"} <= set(red.files)
    assert {"model.obj", "model.mtl", "preview.png"} <= set(blue.files) and "model.glb" not in blue.files
    assert missing.error == FAILURE and missing.code == "bad_input" and not missing.has_output


def test_a_later_result_replaces_an_earlier_one_and_kept_outputs_show(gallery_folder, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(gallery_folder, out)
    with (out / "results.jsonl").open("a", encoding="utf-8") as fh:
        fh.write("\n" + json.dumps({"event": "asset", "id": "missing", "status": "ok"}) + "\n")
        fh.write(json.dumps({"event": "asset", "id": "red", "status": "failed", "error": "out of memory"}) + "\n")
        fh.write(json.dumps({"event": "summary", "total": 3}) + "\n")
    entries = {e.id: e for e in collect_entries(out)}
    assert "missing" not in entries  # no output to show for an "ok" without a folder
    assert entries["red"].status == "failed" and entries["red"].has_output  # the earlier output was kept
    assert "The output of an earlier run was kept" in _page(out)


def test_folders_without_results_file_are_shown_by_name_and_writes_in_progress_are_not(gallery_folder, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(gallery_folder, out)
    (out / "results.jsonl").unlink()
    (out / "unfinished").mkdir()  # no metadata.json: still being written, or interrupted
    (out / "unfinished" / "model.glb").write_bytes(b"glTF")
    # a write in progress and a replaced asset about to be deleted (outputs.write_asset): complete, but not assets
    shutil.copytree(out / "red", out / ".red.partial-0123abcd")
    shutil.copytree(out / "blue", out / ".blue.old-89abcdef")
    assert [e.id for e in collect_entries(out)] == ["blue", "red"]


def test_page_is_relative_escaped_and_ships_the_viewer(gallery_folder, tmp_path):
    out = tmp_path / "moved"
    shutil.copytree(gallery_folder, out)
    report = write_report(out)
    assert report.path == out / REPORT_FILE and (report.assets, report.failed) == (3, 1)
    page = report.path.read_text(encoding="utf-8")
    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert sources and all(not re.match(r"[a-z]+:|/", s) or s == "data:," for s in sources), sources
    assert str(tmp_path) not in page  # nothing absolute: the folder can be moved or served
    assert '<model-viewer src="red/model.glb"' in page and 'src="blue/model.glb"' not in page
    assert "a &lt;b&gt;warning&lt;/b&gt; &amp; more" in page and "<b>warning" not in page
    assert FAILURE in page
    script = (out / "index_files" / "model-viewer.min.js").read_bytes()
    assert script == (VENDOR / "model-viewer.min.js").read_bytes()
    assert hashlib.sha256(script).hexdigest() in (VENDOR / "README.md").read_text()  # the recorded version
    licences = (out / "index_files" / "LICENSES.txt").read_text()
    assert all(name in licences for name in ("Apache License", "three.js", "BSD 3-Clause"))
    assert not [p.name for p in out.rglob(".*.tmp")]  # atomic writes leave no temporary file


def test_report_command_prints_one_json_line(run_cli, gallery_folder, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(gallery_folder, out)
    res = run_cli("report", out, "--quiet")
    assert res.code == EXIT_OK, res.stderr
    (event,) = res.events
    assert event == {"event": "report", "path": str(out / REPORT_FILE), "assets": 3, "failed": 1}


@pytest.mark.parametrize("case", ["missing", "empty", "index is a folder"])
def test_report_errors_are_one_line_with_exit_code(run_cli, gallery_folder, tmp_path, case):
    out = tmp_path / "out"
    if case == "empty":
        out.mkdir()
    elif case == "index is a folder":
        shutil.copytree(gallery_folder, out)
        (out / REPORT_FILE).mkdir()
    res = run_cli("report", out)
    assert res.code == {"missing": EXIT_MISSING, "empty": EXIT_MISSING, "index is a folder": EXIT_USAGE}[case]
    (line,) = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert str(out) in line and "Traceback" not in res.stderr and res.stdout == ""


def _page(out: Path) -> str:
    return write_report(out).path.read_text(encoding="utf-8")
