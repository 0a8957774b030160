"""`know3d generate`, `know3d batch` and `know3d demo` end to end on the tiny random models, and the bad-input table.

The complete know3d asset is checked with the golden hashes (tests/test_pipeline.py); what each mode hands the
stages, the metadata sections and the preview rules are unit tests (tests/test_pipeline.py, tests/test_asset_run.py,
tests/trellis2/test_pipeline.py)."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import socket
import sys
import zlib
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from know3d_cli.errors import (
    EXIT_BATCH_FAILURES,
    EXIT_INTERRUPTED,
    EXIT_MISSING,
    EXIT_OK,
    EXIT_RUNTIME,
    EXIT_USAGE,
)
from know3d_cli.metadata import METADATA_FILE

from .conftest import SMALLEST, tiny



def know3d(root: Path) -> list[str]:
    return ["--mode", "know3d", f"adapter.weights={root / 'adapter'}"]


def photo(path: Path, size: int = 96) -> Path:
    """A blue rounded box on a white background (the threshold remover finds it)."""
    arr = np.full((size, size, 3), 255, np.uint8)
    arr[size // 5: 4 * size // 5, size // 4: 3 * size // 4] = (40, 80, 200)
    Image.fromarray(arr).save(path)
    return path


def asset_files(out: Path) -> list[str]:
    """Every file under `out`, relative (hidden temporary files included)."""
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) if out.exists() else []


def _error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


# ------------------------------------------------------------------------------------------------ generate
def test_missing_renderer_still_writes_the_asset_and_says_why(run_cli, tiny_root, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyrender", None)  # as without the `render` extra
    image = photo(tmp_path / "vase.png")
    res = run_cli("generate", image, "--out", tmp_path / "out", "--mode", "trellis", "--quiet",
                  *tiny(tiny_root, "trellis2.pipeline_type=ss", "export.format=obj", "export.turntable=true"))
    assert res.code == EXIT_OK, res.stderr
    (event,) = res.events
    asset = tmp_path / "out" / "vase"
    assert sorted(os.listdir(asset)) == sorted(event["files"]) == ["input.png", METADATA_FILE, "model.mtl", "model.obj"]
    meta = json.loads((asset / METADATA_FILE).read_text())
    (warning,) = [w for w in meta["warnings"] if "preview.png" in w]
    assert "turntable.webp" in warning and 'pip install "know3d[render]"' in warning
    assert warning in res.stderr  # logged even with --quiet: it is a warning


def test_demo_runs_the_chain(run_cli, tiny_root, tmp_path, monkeypatch):
    monkeypatch.setenv("KNOW3D_TINY_DIR", str(tiny_root))
    res = run_cli("demo", "--out", tmp_path / "demo", "--quiet", "trellis2.pipeline_type=ss", "trellis2.ss.steps=2")
    assert res.code == EXIT_OK, res.stderr
    (event,) = res.events
    assert event["mode"] == "know3d"
    assert "RANDOM" in res.stderr
    assert (tmp_path / "demo" / "demo" / "model.glb").is_file()


def test_demo_refuses_a_folder_it_did_not_create_and_a_file(run_cli, tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("years of work")
    res = run_cli("demo", "--out", tmp_path / "demo", f"models.tiny_root={foreign}")
    assert res.code == EXIT_USAGE
    assert "did not create" in _error_line(res.stderr)
    assert os.listdir(foreign) == ["thesis.tex"]  # untouched
    (tmp_path / "file").write_text("x")
    assert run_cli("demo", "--out", tmp_path / "file").code == EXIT_USAGE
    res = run_cli("demo", "--out", tmp_path / "demo", f"models.tiny_root={tmp_path / 'file'}")
    assert res.code == EXIT_USAGE and "not a folder" in _error_line(res.stderr)


BACK_TEXT = 'Rückseite : « poche zippée » 背面有拉链 🎒 "quoted" \\back\\slash\\n ${oc.env:HOME} $HOME, a=b\nline two'


def test_back_text_reaches_the_editor_and_metadata_exactly_through_generate_and_batch(run_cli, tiny_root, tmp_path,
                                                                                       monkeypatch):
    from know3d_cli import editor
    from know3d_cli.mllm import P_VIEW

    prompts = []
    real_imagine_back = editor.imagine_back

    def recording(pipe, image, prompt, *args, **kwargs):
        prompts.append(prompt)
        return real_imagine_back(pipe, image, prompt, *args, **kwargs)

    monkeypatch.setattr(editor, "imagine_back", recording)
    image = photo(tmp_path / "bag.png")
    settings = ["--quiet", *know3d(tiny_root)[2:], "mode=know3d", "preview=none", "trellis2.pipeline_type=ss",
                "trellis2.ss.steps=1", "export.faces=2000", "seed=4", *tiny(tiny_root)]
    res = run_cli("generate", image, "--back", BACK_TEXT, "--out", tmp_path / "single", *settings)
    assert res.code == EXIT_OK, res.stderr
    manifest = tmp_path / "bags.csv"
    with manifest.open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows([["image", "back"], ["bag.png", BACK_TEXT]])
    res = run_cli("batch", manifest, "--out", tmp_path / "many", *settings)
    assert res.code == EXIT_OK, res.stderr

    assert prompts == [f"{P_VIEW} {BACK_TEXT}"] * 2  # what the editor was given, twice the same
    single = json.loads((tmp_path / "single" / "bag" / METADATA_FILE).read_text(encoding="utf-8"))
    many = json.loads((tmp_path / "many" / "bag" / METADATA_FILE).read_text(encoding="utf-8"))
    for meta in (single, many):
        assert meta["back"] == BACK_TEXT and meta["prompt"]["editor"] == prompts[0]
    assert single["key"] == many["key"]  # same text, image, seed and settings: the same asset either way


# ------------------------------------------------------------------------------------------------ batch
def test_batch_isolates_failures_resumes_and_rejects_unsafe_ids(run_cli, tiny_root, tmp_path):
    photo(tmp_path / "good.png")
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    manifest = tmp_path / "assets.csv"
    manifest.write_text("\ufeffimage,back,id,seed\ngood.png,\"a pocket, zipped\",,5\n\nmissing.png,,,\n"
                        "corrupt.png,,,\n", encoding="utf-8")
    out = tmp_path / "out"
    args = ("batch", manifest, "--out", out, "--quiet", *tiny(tiny_root, *SMALLEST))
    res = run_cli(*args)
    assert res.code == EXIT_BATCH_FAILURES, res.stderr
    *items, summary = res.events
    assert [e["status"] for e in items] == ["ok", "failed", "failed"]
    assert summary == {**summary, "event": "summary", "total": 3, "ok": 1, "failed": 2, "skipped": 0}
    assert "not found" in items[1]["error"] or "missing" in items[1]["error"]
    assert items[2]["error"]
    results = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["status"] for r in results] == ["ok", "failed", "failed"]
    meta = json.loads((out / "good" / METADATA_FILE).read_text())
    assert meta["back"] == "a pocket, zipped" and meta["seed"] == 5
    assert not (out / "missing").exists() and not (out / "corrupt").exists()
    assert summary["report"] == str(out / "index.html")  # the review gallery, failures included
    page = (out / "index.html").read_text(encoding="utf-8")
    assert 'data-id="good"' in page and page.count('class="card failed"') == 2

    again = run_cli(*args)
    assert again.code == EXIT_BATCH_FAILURES
    assert [e["status"] for e in again.events[:-1]] == ["skipped", "failed", "failed"]

    unsafe = tmp_path / "unsafe.csv"
    unsafe.write_text("image,id\ngood.png,../escape\n", encoding="utf-8")
    res = run_cli("batch", unsafe, "--out", out, "--quiet", *tiny(tiny_root, *SMALLEST))
    assert res.code == EXIT_BATCH_FAILURES
    (item, summary) = res.events
    assert item["status"] == "failed" and "id" in item["error"]
    assert not (tmp_path / "escape").exists()


def test_header_only_manifest_writes_the_results_file_its_summary_names(run_cli, tiny_root, tmp_path):
    manifest = tmp_path / "empty.csv"
    manifest.write_text("image,back\n", encoding="utf-8")
    res = run_cli("batch", manifest, "--out", tmp_path / "out", "--quiet", *tiny(tiny_root, "mode=trellis"))
    assert res.code == EXIT_OK, res.stderr
    (summary,) = res.events
    assert summary["total"] == 0 and Path(summary["results"]).is_file()


def test_out_of_memory_is_exit_4_with_a_hint(run_cli, tiny_root, tmp_path, monkeypatch):
    import torch

    from know3d_cli.trellis2 import Trellis2Pipeline

    def out_of_memory(self, *args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(Trellis2Pipeline, "__call__", out_of_memory)
    out = tmp_path / "out"
    res = run_cli("generate", photo(tmp_path / "mug.png"), "--out", out, "--mode", "trellis", *tiny(tiny_root))
    assert res.code == 4
    line = _error_line(res.stderr)
    assert "out of GPU memory" in line and "offload" in line
    assert asset_files(out) == []


# ------------------------------------------------------------------------------------------------ bad input
def _truncated_png(path: Path) -> None:
    photo(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _zero_size(path: Path) -> None:
    # a structurally valid PNG header declaring a 0 x 0 image
    def chunk(kind: bytes, body: bytes) -> bytes:
        return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")

    ihdr = (0).to_bytes(4, "big") + (0).to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) +
                     chunk(b"IEND", b""))


def _transparent(path: Path) -> None:
    Image.new("RGBA", (64, 64), (255, 0, 0, 0)).save(path)


def _huge(path: Path) -> None:
    Image.new("RGB", (64, 64), (255, 255, 255)).save(path)  # large for the lowered limit below


def _directory(path: Path) -> None:
    path.mkdir()


def _text(path: Path) -> None:
    path.write_text("not an image at all\n")


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _fifo(path: Path) -> None:
    os.mkfifo(path)  # nobody will ever write to it


def _device(path: Path) -> None:
    path.symlink_to("/dev/zero")


def _id_is_a_file(path: Path) -> None:
    photo(path)
    (path.parent / "out" / "in").write_text("mine")


def _id_is_a_foreign_folder(path: Path) -> None:
    photo(path)
    (path.parent / "out" / "in").mkdir()
    (path.parent / "out" / "in" / "notes.txt").write_text("mine")


def _raises(exc: BaseException):
    def patch(monkeypatch, out: Path) -> None:
        from know3d_cli import preprocess

        def fail(*args, **kwargs):
            raise exc

        monkeypatch.setattr(preprocess, "prepare_image", fail)

    return patch


EARLY = "early"  # the case must fail before any model loads (a loaded model fails the test)
DISK_FULL = "disk full"  # every file written under --out fails with ENOSPC
BAD_INPUTS = [
    # (case, make the input or None, extra arguments, exit code, words the one-line error must contain,
    #  EARLY, DISK_FULL or a patch(monkeypatch, out) that breaks the run)
    ("missing file", None, [], EXIT_MISSING, "not found", EARLY),
    ("directory", _directory, [], EXIT_MISSING, "directory", EARLY),
    ("non-image file", _text, [], EXIT_MISSING, "image", EARLY),
    ("empty file", _empty, [], EXIT_MISSING, "is empty", EARLY),
    ("fifo without a writer", _fifo, [], EXIT_MISSING, "is empty", EARLY),
    ("device", _device, [], EXIT_MISSING, "device", EARLY),
    ("truncated png", _truncated_png, [], EXIT_MISSING, "truncated", EARLY),
    ("zero-size image", _zero_size, [], EXIT_MISSING, "image", EARLY),
    ("huge image", _huge, ["preprocess.max_pixels=1000"], EXIT_MISSING, "pixels", EARLY),
    ("fully transparent", _transparent, [], EXIT_MISSING, "foreground", EARLY),
    ("unknown override key", photo, ["export.fces=10"], EXIT_USAGE, "fces", EARLY),
    ("invalid override value", photo, ["export.texture_size=big"], EXIT_USAGE, "texture_size", EARLY),
    ("missing model dir", photo, ["models.tiny_root=/nonexistent/know3d"], EXIT_MISSING, "not found", EARLY),
    ("tiny root is a file", photo, ["models.tiny_root=/etc/hostname"], EXIT_MISSING, "not found", EARLY),
    ("know3d without adapter", photo, ["mode=know3d"], EXIT_MISSING, "adapter", EARLY),
    ("device cuda:abc", photo, ["runtime.device=cuda:abc"], EXIT_USAGE, "runtime.device", EARLY),
    ("device cuda:", photo, ["runtime.device=cuda:"], EXIT_USAGE, "runtime.device", EARLY),
    ("seed over 63 bits", photo, ["--seed", str(2**64)], EXIT_USAGE, "--seed", EARLY),
    ("negative seed override", photo, ["seed=-1"], EXIT_USAGE, "seed", EARLY),
    ("zero sampler steps", photo, ["trellis2.ss.steps=0"], EXIT_USAGE, "trellis2.ss.steps", EARLY),
    ("negative sampler steps", photo, ["trellis2.shape.steps=-2"], EXIT_USAGE, "trellis2.shape.steps", EARLY),
    ("tap block out of range", photo, ["mode=multiview", "tap.block=99"], EXIT_USAGE, "tap.block", EARLY),
    ("100k-character back text", photo, ["mode=multiview", "--back", "x" * 100_000], EXIT_USAGE, "too long", EARLY),
    ("back text not UTF-8", photo, ["--back", os.fsdecode(b"a \xff pocket")], EXIT_USAGE, "UTF-8", EARLY),
    ("asset id too long", photo, ["--id", "é" * 120], EXIT_USAGE, "too long", EARLY),
    ("<out>/<id> is a file", _id_is_a_file, [], EXIT_USAGE, "not a folder", EARLY),
    ("<out>/<id> holds other files", _id_is_a_foreign_folder, [], EXIT_USAGE, "notes.txt", EARLY),
    ("disk full while writing", photo, [], EXIT_RUNTIME, "No space left on device", DISK_FULL),
    ("unexpected error", photo, [], EXIT_RUNTIME, "unexpected RuntimeError: boom", _raises(RuntimeError("boom"))),
    ("ctrl-c", photo, [], EXIT_INTERRUPTED, "interrupted", _raises(KeyboardInterrupt())),
]


# cases found while checking or making the asset: stdout carries its "failed" line (the others fail the command)
ASSET_FAILURES = {"missing file", "non-image file", "empty file", "fifo without a writer", "device", "truncated png",
                  "zero-size image", "huge image", "fully transparent", "100k-character back text",
                  "back text not UTF-8", "asset id too long", "<out>/<id> is a file", "<out>/<id> holds other files",
                  "disk full while writing", "unexpected error"}


@pytest.mark.parametrize("case,make,extra,code,needle,fault", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_is_one_line_with_exit_code_and_no_output(run_cli, tiny_root, tmp_path, monkeypatch, disk_full, case,
                                                            make, extra, code, needle, fault):
    image = tmp_path / "in.png"
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("already here")  # nothing already written is lost
    if make is not None:
        make(image)
    before = {name: (out / name).read_bytes() for name in asset_files(out) if (out / name).is_file()}
    if fault == EARLY:
        _fail_if_a_model_loads(monkeypatch)
    elif fault == DISK_FULL:
        disk_full(monkeypatch, out)
    else:
        fault(monkeypatch, out)
    overrides = tiny(tiny_root, *SMALLEST)
    if any(e.startswith("models.tiny_root=") for e in extra):
        overrides = ["preset=tiny", "mode=trellis"]
    with _time_limit(120):  # a hang (a FIFO read) fails instead of blocking the suite
        res = run_cli("generate", image, "--out", out, "--quiet", *overrides, *extra)
    assert res.code == code, res.stderr
    assert needle.lower() in _error_line(res.stderr).lower()
    assert len(res.stderr.splitlines()) == 1, res.stderr  # the error line and nothing else
    if case in ASSET_FAILURES:
        (line,) = res.events
        assert line["status"] == "failed" and line["id"] == ("é" * 120 if "--id" in extra else "in")
        assert line["error"] in _error_line(res.stderr) and line["code"] not in (None, "", "error")
    else:
        assert res.stdout == ""
    after = {name: (out / name).read_bytes() for name in asset_files(out) if (out / name).is_file()}
    assert after == before  # no partial, temporary or lock file, nothing changed


def _fail_if_a_model_loads(monkeypatch) -> None:
    from know3d_cli import editor, trellis2

    def loaded(*args, **kwargs):
        raise AssertionError("a model was loaded before the bad input was found")

    monkeypatch.setattr(editor, "load_editor", loaded)
    monkeypatch.setattr(trellis2.Trellis2Pipeline, "from_pretrained", loaded)


@contextmanager
def _time_limit(seconds: int):
    def expired(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_unwritable_output_dir_is_usage_error(run_cli, tiny_root, tmp_path):
    if os.geteuid() == 0:
        blocker = tmp_path / "file"
        blocker.write_text("x")
        out = blocker / "out"  # a path under a regular file can never be created, even by root
    else:
        out = tmp_path / "ro"
        out.mkdir(mode=0o500)
    image = photo(tmp_path / "mug.png")
    res = run_cli("generate", image, "--out", out, *tiny(tiny_root, "trellis2.pipeline_type=ss"))
    assert res.code == EXIT_USAGE, res.stderr
    assert "output" in _error_line(res.stderr)


def test_failed_run_keeps_the_previous_finished_asset(run_cli, tiny_root, tmp_path):
    image = photo(tmp_path / "mug.png")
    out = tmp_path / "out"
    settings = tiny(tiny_root, *SMALLEST)
    ok = run_cli("generate", image, "--out", out, "--quiet", *settings)
    assert ok.code == EXIT_OK
    before = {name: (out / "mug" / name).read_bytes() for name in os.listdir(out / "mug")}
    _transparent(image)
    failed = run_cli("generate", image, "--out", out, "--overwrite", *settings)
    assert failed.code == EXIT_MISSING
    after = {name: (out / "mug" / name).read_bytes() for name in os.listdir(out / "mug")}
    assert after == before


# ------------------------------------------------------------------------------------------------ studio use
def _studio(root: Path, out: Path, *extra: str) -> tuple:
    return ("--out", out, "--quiet", *tiny(root, *SMALLEST, *extra))


def test_generate_takes_a_glob_names_by_template_and_never_replaces_silently(run_cli, tiny_root, tmp_path,
                                                                             monkeypatch):
    shots = tmp_path / "shots"
    shots.mkdir()
    photo(shots / "mug.png")
    photo(shots / "cup.png", size=80)
    out = tmp_path / "out"
    named = ("--id-template", "{parent}_{stem}_s{seed}", "--seed", "3", "--back", "a pocket")
    res = run_cli("generate", str(shots / "*.png"), *named, *_studio(tiny_root, out))  # as a quoted glob
    assert res.code == EXIT_OK, res.stderr
    assert [(e["id"], e["status"]) for e in res.events] == [("shots_cup_s3", "ok"), ("shots_mug_s3", "ok")]
    meta = json.loads((out / "shots_mug_s3" / METADATA_FILE).read_text())
    run = meta["run"]
    assert datetime.fromisoformat(run["started_at"]).utcoffset() == timedelta(0)
    assert run["command_line"] == sys.argv and run["host"] == socket.gethostname() and run["gpu"] is None
    assert meta["input"]["absolute_path"] == str((shots / "mug.png").resolve())
    assert meta["config"]["back"] == meta["back"] == "a pocket" and meta["config"]["seed"] == meta["seed"] == 3
    assert meta["input"]["mask_warnings"] == [] and meta["geometry"]["faces"] > 0
    assert all(lo < hi for lo, hi in zip(*meta["export"]["bounds"]))
    assert meta["export"]["textures"] == {}  # an SS-only asset is untextured
    finished = {name: (out / "shots_mug_s3" / name).read_bytes() for name in os.listdir(out / "shots_mug_s3")}

    _fail_if_a_model_loads(monkeypatch)
    refused = run_cli("generate", *sorted(shots.glob("*.png")), *named, *_studio(tiny_root, out))
    assert refused.code == EXIT_USAGE
    (line,) = refused.events  # the first refusal stops the command before any work
    assert line["status"] == "failed" and line["code"] == "bad_output" and "--overwrite" in line["error"]
    skipped = run_cli("generate", *sorted(shots.glob("*.png")), *named, "--skip-existing", *_studio(tiny_root, out))
    assert skipped.code == EXIT_OK
    assert [(e["status"], e["mode"], e["seed"]) for e in skipped.events] == [("skipped", "trellis", 3)] * 2
    assert sorted(skipped.events[1]["files"]) == sorted(finished)
    assert {name: (out / "shots_mug_s3" / name).read_bytes() for name in os.listdir(out / "shots_mug_s3")} == finished

    monkeypatch.undo()
    again = run_cli("generate", shots / "mug.png", *named, "--overwrite", *_studio(tiny_root, out, "export.format=obj"))
    assert again.code == EXIT_OK, again.stderr
    (line,) = again.events
    assert sorted(os.listdir(out / "shots_mug_s3")) == sorted(line["files"])  # replaced whole: no stale GLB
    assert "model.obj" in line["files"] and "model.glb" not in line["files"]


def test_two_inputs_with_one_id_fail_before_any_work(run_cli, tiny_root, tmp_path, monkeypatch):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        photo(tmp_path / folder / "chair.png")
    _fail_if_a_model_loads(monkeypatch)
    out = tmp_path / "out"
    res = run_cli("generate", tmp_path / "a" / "chair.png", tmp_path / "b" / "chair.png", *_studio(tiny_root, out))
    assert res.code == EXIT_USAGE
    assert "two inputs cannot share one asset folder" in _error_line(res.stderr) and res.stdout == ""
    assert not out.exists()
    res = run_cli("generate", tmp_path / "a" / "chair.png", tmp_path / "b" / "chair.png", "--id", "x",
                  *_studio(tiny_root, out))
    assert res.code == EXIT_USAGE and "--id-template" in _error_line(res.stderr)


def test_an_asset_finished_by_a_parallel_invocation_is_not_replaced(run_cli, tiny_root, tmp_path, monkeypatch):
    from know3d_cli.metadata import SCHEMA_VERSION
    from know3d_cli.outputs import AssetLock, write_asset

    image = photo(tmp_path / "mug.png")
    out = tmp_path / "out"
    theirs = {"model.glb": b"theirs",
              METADATA_FILE: json.dumps({"schema_version": SCHEMA_VERSION, "files": ["model.glb"]}).encode()}
    real_acquire = AssetLock.acquire

    def acquire(self, blocking=True):  # the other invocation finished the same id while this one waited
        got = real_acquire(self, blocking)
        if got and not (out / self.asset_id).exists():
            write_asset(out, self.asset_id, theirs)
        return got

    monkeypatch.setattr(AssetLock, "acquire", acquire)
    _fail_if_a_model_loads(monkeypatch)
    res = run_cli("generate", image, *_studio(tiny_root, out))
    assert res.code == EXIT_USAGE
    (line,) = res.events
    assert line["status"] == "failed" and "holds a finished asset" in line["error"]
    assert (out / "mug" / "model.glb").read_bytes() == b"theirs"


def test_batch_from_stdin_dry_run_checks_every_row_before_any_model(run_cli, tiny_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    photo(tmp_path / "good.png")
    photo(tmp_path / "other.png")
    manifest = ("image,back,mode,preview,overrides\n"
                "good.png,,,,\n"
                "other.png,own back,trellis,none,export.faces=3000\n"
                "bad.png,,sideways,,\n"
                "worse.png,,,,tap.blok=3\n")
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(manifest.encode())))
    _fail_if_a_model_loads(monkeypatch)
    out = tmp_path / "out"
    monkeypatch.setitem(sys.modules, "ray", None)  # a dry run only preprocesses: in this process, without Ray
    res = run_cli("batch", "-", "--out", out, "--dry-run", "--back", "flag back", "--seed", "11", "--quiet",
                  *tiny(tiny_root, "mode=multiview", "engine=ray"))
    assert res.code == EXIT_BATCH_FAILURES, res.stderr
    *items, summary = res.events
    by_image = {Path(e["image"]).name: e for e in items}
    assert [by_image[n]["status"] for n in ("good.png", "other.png", "bad.png", "worse.png")] == \
        ["checked", "checked", "failed", "failed"]
    assert by_image["good.png"]["seed"] == 11 and by_image["good.png"]["mode"] == "multiview"
    assert by_image["other.png"]["mode"] == "trellis" and by_image["good.png"]["files"] == ["input.png"]
    assert "sideways" in by_image["bad.png"]["error"]
    assert "tap.blok" in by_image["worse.png"]["error"] and by_image["worse.png"]["code"] == "invalid_config"
    assert summary["checked"] == 2 and summary["failed"] == 2 and summary["ok"] == 0
    assert sorted(os.listdir(out / "good")) == ["input.png"]  # preprocessing only, nothing else

    generated = run_cli("generate", "good.png", "--dry-run", "--out", out, "--quiet", *tiny(tiny_root))
    assert generated.code == EXIT_OK, generated.stderr
    (line,) = generated.events
    assert line["status"] == "checked" and line["files"] == ["input.png"] and line["mask"] == "threshold"
