"""`run_batch` around a stand-in pipeline: one item's failure stays its own, finished items are skipped on a re-run
(and say whether they are up to date), Ctrl-C and a full disk end the batch with a summary, `--fail-fast` stops at
the first failure; rows with their own settings get their own pipeline."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from know3d_cli import batch, metadata
from know3d_cli.batch import BatchSummary, RunOptions, run_batch
from know3d_cli.config import load_config
from know3d_cli.errors import (
    EXIT_BATCH_FAILURES,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_RUNTIME,
    InputError,
    WriteFailure,
)
from know3d_cli.outputs import AssetLock, ExistingAsset, write_asset
from know3d_cli.pipeline import GenerateResult

FAILURES = {
    "unreadable": InputError("unreadable.png is truncated"),
    "bug": RuntimeError("boom"),
    "full": WriteFailure("No space left on device", errno.ENOSPC),
    "ctrl-c": KeyboardInterrupt(),
}


class StandInPipeline:
    """Generates an asset folder whose metadata carries the resume key; ids in FAILURES raise instead."""

    made: list[str] = []
    built: list = []  # the configurations of the pipelines made
    released: list = []  # the configurations whose models were freed

    def __init__(self, cfg, progress=None, keep_models=False):
        assert keep_models  # a batch keeps its models loaded for the next item
        self.cfg = cfg
        self.models = self  # stands in for its `StageModels` too
        type(self).built.append(cfg)

    def release_all(self):
        type(self).released.append(self.cfg)

    def check_job(self, job, out_root):
        pass

    def expected_key(self, job, input_sha256):
        return f"{input_sha256}:{job.back}:{job.seed}"

    def run(self, job, out_root, *, locked=False):
        assert locked and not AssetLock(out_root, job.id).acquire(blocking=False)  # the batch holds the item's lock
        if job.id in FAILURES:
            raise FAILURES[job.id]
        type(self).made.append(job.id)
        sha256 = batch.file_sha256(job.image)
        meta = {"schema_version": metadata.SCHEMA_VERSION, "key": self.expected_key(job, sha256), "seed": job.seed,
                "mode": {"used": "trellis"}, "files": ["model.glb", metadata.METADATA_FILE]}
        out = write_asset(out_root, job.id, {"model.glb": b"glTF", metadata.METADATA_FILE: json.dumps(meta).encode()})
        return GenerateResult(job.id, out, "ok", meta)


@pytest.fixture
def stand_in(monkeypatch):
    StandInPipeline.made, StandInPipeline.built, StandInPipeline.released = [], [], []
    monkeypatch.setattr(batch, "Know3dPipeline", StandInPipeline)
    return StandInPipeline


def manifest(folder: Path, *ids: str, extra: str = "") -> Path:
    for name in ids:
        Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(folder / f"{name}.png")
    path = folder / "assets.csv"
    path.write_text("image,id,seed\n" + "".join(f"{name}.png,{name},{i}\n" for i, name in enumerate(ids)) + extra)
    return path


OVERRIDES = ["preset=tiny", "models.tiny_root=/nonexistent"]


def run(path: Path, out: Path, **options):
    events: list[dict] = []
    summary = run_batch(path, out, OVERRIDES, base=load_config(OVERRIDES), emit=events.append,
                        options=RunOptions(**options))
    return summary, events


def test_one_item_failing_does_not_stop_the_others_and_each_line_says_why(stand_in, tmp_path):
    summary, events = run(manifest(tmp_path, "a", "unreadable", "bug", "b", extra="missing.png,,\n"),
                          tmp_path / "out")
    items, last = events[:-1], events[-1]
    assert [(e["id"], e["status"], e.get("code")) for e in items] == [
        ("a", "ok", None), ("unreadable", "failed", "bad_input"), ("bug", "failed", "internal"), ("b", "ok", None),
        ("missing", "failed", "bad_input")]
    assert items[2]["error"] == "unexpected RuntimeError: boom" and items[4]["line"] == 6
    assert summary == BatchSummary(5, 2, 3, 0, False) and summary.exit_code == EXIT_BATCH_FAILURES
    assert last == {**summary.event(tmp_path / "out" / batch.RESULTS_FILE),
                    "report": str(tmp_path / "out" / "index.html")}  # the review gallery, written at the end
    logged = [json.loads(line) for line in (tmp_path / "out" / batch.RESULTS_FILE).read_text().splitlines()]
    assert [{k: v for k, v in e.items() if k != "run"} for e in logged] == items
    assert len({e["run"] for e in logged}) == 1


def test_a_rerun_skips_finished_items_and_says_which_are_out_of_date(stand_in, tmp_path, caplog):
    path = manifest(tmp_path, "a", "b")
    assert run(path, tmp_path / "out")[0].exit_code == EXIT_OK
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "b.png")  # another image: another key
    summary, events = run(path, tmp_path / "out")
    assert [(e["id"], e["status"], e["up_to_date"]) for e in events[:-1]] == [("a", "skipped", True),
                                                                              ("b", "skipped", False)]
    assert events[0]["files"] == ["model.glb", metadata.METADATA_FILE] and events[0]["mode"] == "trellis"
    assert "b: a finished asset made from other inputs or settings is kept" in caplog.text
    assert summary.skipped == 2 and stand_in.made == ["a", "b"]
    (tmp_path / "out" / "a" / "model.glb").unlink()  # an incomplete folder is redone
    assert run(path, tmp_path / "out")[1][0]["status"] == "ok"
    summary, events = run(path, tmp_path / "out", existing=ExistingAsset.overwrite)
    assert [e["status"] for e in events[:-1]] == ["ok", "ok"] and stand_in.made == ["a", "b", "a", "a", "b"]


def test_ctrl_c_ends_with_a_summary_and_exit_130(stand_in, tmp_path, caplog):
    summary, events = run(manifest(tmp_path, "a", "ctrl-c", "b"), tmp_path / "out")
    assert [e["id"] for e in events[:-1]] == ["a"] and events[-1]["interrupted"] is True
    assert summary.exit_code == EXIT_INTERRUPTED and "ctrl-c was not finished" in caplog.text
    assert not (tmp_path / "out" / "b").exists()


def test_a_full_disk_stops_the_batch_because_no_later_item_can_succeed(stand_in, tmp_path):
    summary, events = run(manifest(tmp_path, "a", "full", "b"), tmp_path / "out")
    assert [(e["id"], e["status"]) for e in events[:-1]] == [("a", "ok"), ("full", "failed")]
    assert summary.stopped == "the output disk is full" and summary.exit_code == EXIT_RUNTIME
    assert events[-1]["stopped"] == "the output disk is full"


def test_fail_fast_stops_after_the_first_failure(stand_in, tmp_path):
    summary, events = run(manifest(tmp_path, "unreadable", "a"), tmp_path / "out", fail_fast=True)
    assert [e["id"] for e in events[:-1]] == ["unreadable"] and summary.exit_code == EXIT_BATCH_FAILURES


def test_an_item_another_process_holds_is_done_last_once_its_lock_is_free(stand_in, tmp_path, monkeypatch):
    path = manifest(tmp_path, "a", "b")
    out = tmp_path / "out"
    out.mkdir()
    held = AssetLock(out, "a")
    assert held.acquire(blocking=False)
    real_acquire = AssetLock.acquire

    def acquire(self, blocking=True):  # the other process finishes "a" while "b" runs
        if self.asset_id == "a" and blocking:
            held.release()
        return real_acquire(self, blocking)

    monkeypatch.setattr(AssetLock, "acquire", acquire)
    summary, events = run(path, out)
    assert [e["id"] for e in events[:-1]] == ["b", "a"] and summary.ok == 2


@pytest.mark.parametrize("summary, code", [
    (BatchSummary(2, 2, 0, 0, False), EXIT_OK),
    (BatchSummary(2, 1, 1, 0, False), EXIT_BATCH_FAILURES),
    (BatchSummary(2, 1, 0, 0, False, stopped="the output disk is full"), EXIT_RUNTIME),
    (BatchSummary(2, 1, 1, 0, True, stopped="the output disk is full"), EXIT_INTERRUPTED),
])
def test_the_exit_code_says_how_the_batch_ended(summary, code):
    assert summary.exit_code == code


def test_rows_with_their_own_settings_share_a_pipeline_per_configuration_and_bad_rows_fail_before_any_work(
        stand_in, tmp_path):
    path = manifest(tmp_path, "a", "b", "c", "d", "e")
    path.write_text("image,id,mode,overrides\na.png,a,,\nb.png,b,,export.faces=3000\nc.png,c,,engine=ray\n"
                    "d.png,d,,tap.blok=1\ne.png,e,trellis,export.faces=3000\n")
    summary, events = run(path, tmp_path / "fast", fail_fast=True)
    assert [(e["id"], e["code"]) for e in events[:-1]] == [("c", "invalid_config")]  # the first bad row; no work
    assert stand_in.made == [] and "sets the engine" in events[0]["error"]

    summary, events = run(path, tmp_path / "out")
    assert [(e["id"], e["status"]) for e in events[:-1]] == [("a", "ok"), ("b", "ok"), ("c", "failed"),
                                                              ("d", "failed"), ("e", "ok")]
    assert "tap.blok" in events[3]["error"] and events[3]["code"] == "invalid_config"
    base = load_config(OVERRIDES)
    built = [(cfg.mode.value, cfg.export.faces) for cfg in stand_in.built]
    assert built == [(base.mode.value, base.export.faces), (base.mode.value, 3000), ("trellis", 3000)] * 2  # per run
    assert stand_in.released == stand_in.built[3:5]  # moving on to other settings frees the previous models
