"""`engine=ray` on a local Ray with two CPU actors: every item once, the local engine's files, an actor killed
mid-write, an item that always fails, Ctrl-C, resume; and the engine's parts that need no Ray.

Faults are injected into the Ray workers only, by a `worker_process_setup_hook` that wraps the pipeline in each
worker process as `faults.json` asks (per asset id): `fail` (a runtime error on every attempt), `die` (the worker
SIGKILLs itself as it starts the item, every attempt), `die_once` (the worker leaves a partial folder and SIGKILLs
itself while writing, once), `interrupt` (the worker sends SIGINT to the driver, then hangs). Every attempt is
recorded with the worker's pid in `attempts.jsonl`.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from know3d_cli.config import RayEngineConfig, load_config
from know3d_cli.errors import (
    EXIT_BATCH_FAILURES,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_RUNTIME,
    EXIT_USAGE,
    BackendUnavailable,
    OutputError,
)
from know3d_cli.metadata import METADATA_FILE
from know3d_cli.report.page import ASSETS_DIR

from .conftest import SMALLEST, tiny

TIMINGS = ("timings_s", "peak_memory", "run")  # what may differ between two runs of the same item (times, start)


def settings(root: Path, *extra: str) -> list[str]:
    return ["--quiet", *tiny(root, *SMALLEST, *extra)]


def on_ray(*extra: str) -> list[str]:
    return ["engine=ray", "engine.ray.cpu_actors=2", *extra]


def manifest(folder: Path, names: list[str], name: str = "assets.csv",
             overrides: dict[str, str] | None = None) -> Path:
    arr = np.full((48, 48, 3), 255, np.uint8)
    arr[10:38, 12:36] = (40, 80, 200)
    for index, asset in enumerate(names):
        arr[20, 20 + index] = (0, 0, 0)  # a different input per row
        Image.fromarray(arr).save(folder / f"{asset}.png")
    path = folder / name
    path.write_text("image,seed,overrides\n" + "".join(f"{asset}.png,{i},{(overrides or {}).get(asset, '')}\n"
                                                      for i, asset in enumerate(names)), encoding="utf-8")
    return path


def leftovers(out: Path) -> list[str]:
    return sorted(str(p.relative_to(out)) for p in out.rglob(".*"))


def journal(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text(encoding="utf-8").splitlines()]


def fault_hook(faults: str):
    """The setup hook of every Ray worker process (pickled by value with its closure)."""

    def install() -> None:
        import json
        import os
        import signal
        import time
        from pathlib import Path

        from know3d_cli import pipeline
        from know3d_cli.errors import GenerationError

        path = Path(faults)
        real_run, real_write = pipeline.Know3dPipeline.run, pipeline.write_asset

        def run(self, job, out_root, **kwargs):
            asked = json.loads(path.read_text())
            with open(path.with_name("attempts.jsonl"), "a") as fh:
                fh.write(json.dumps({"id": job.id, "pid": os.getpid()}) + "\n")
            if asked.get(job.id) == "fail":
                raise GenerationError(f"injected failure of {job.id}")
            if asked.get(job.id) == "die":
                os.kill(os.getpid(), signal.SIGKILL)
            if asked.get(job.id) == "interrupt":
                os.kill(asked["driver"], signal.SIGINT)
                time.sleep(120)
            return real_run(self, job, out_root, **kwargs)

        def write_asset(out, asset_id, files):
            died = path.with_name(f"died-{asset_id}")
            if json.loads(path.read_text()).get(asset_id) == "die_once" and not died.exists():
                died.touch()
                (out / f".{asset_id}.partial-0badc0de").mkdir()  # as a writer killed mid-write leaves it
                os.kill(os.getpid(), signal.SIGKILL)
            return real_write(out, asset_id, files)

        pipeline.Know3dPipeline.run = run
        pipeline.write_asset = write_asset

    return install


@pytest.fixture(scope="module")
def faults(tmp_path_factory):
    """A local Ray (2 CPUs) for the module; yields `set_faults(dict)`, which also clears the attempt record."""
    ray = pytest.importorskip("ray")
    path = tmp_path_factory.mktemp("faults") / "faults.json"
    path.write_text("{}")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=80 * 2**20,
             runtime_env={"worker_process_setup_hook": fault_hook(str(path))})

    def set_faults(asked: dict) -> Path:
        path.write_text(json.dumps({**asked, "driver": os.getpid()}))
        attempts = path.with_name("attempts.jsonl")
        attempts.unlink(missing_ok=True)
        return attempts

    yield set_faults
    ray.shutdown()


def attempts_of(record: Path) -> dict[str, list[int]]:
    pids: dict[str, list[int]] = {}
    for line in record.read_text().splitlines() if record.exists() else []:
        entry = json.loads(line)
        pids.setdefault(entry["id"], []).append(entry["pid"])
    return pids


# ------------------------------------------------------------------------------------ on Ray
def test_every_item_once_the_local_files_a_lost_actor_redone_and_a_failing_item_retried_elsewhere(
        run_cli, tiny_root, tmp_path, faults, one_thread):
    own = {"c": "export.faces=1500"}  # c: its own settings
    csv = manifest(tmp_path, ["a", "b", "c", "d"], overrides=own)
    local = run_cli("batch", manifest(tmp_path, ["a", "b", "c"], "local.csv", own), "--out", tmp_path / "local",
                    *settings(tiny_root))
    assert local.code == EXIT_OK, local.stderr

    attempts = faults({"b": "die_once", "d": "fail"})
    out = tmp_path / "ray"
    res = run_cli("batch", csv, "--out", out, *settings(tiny_root, *on_ray("engine.ray.max_retries=1")))
    assert res.code == EXIT_BATCH_FAILURES, res.stderr
    *items, summary = res.events
    assert sorted((e["id"], e["status"]) for e in items) == [("a", "ok"), ("b", "ok"), ("c", "ok"), ("d", "failed")]
    assert summary == {**summary, "total": 4, "ok": 3, "failed": 1, "skipped": 0, "interrupted": False}
    assert items[[e["id"] for e in items].index("d")]["code"] == "generation_failure"
    assert sorted((r["id"], r["status"]) for r in journal(out)) == sorted((e["id"], e["status"]) for e in items)

    tried = attempts_of(attempts)
    assert len(tried["b"]) == 2  # killed while writing, then redone by the replacement actor
    assert len(tried["d"]) == 2 and tried["d"][0] != tried["d"][1]  # 1 + max_retries attempts, on two actors
    assert len(tried["a"]) == len(tried["c"]) == 1
    assert leftovers(out) == []  # the dead writer's partial folder was cleaned, every lock released

    for asset in ("a", "b", "c"):  # the same files as the local engine, metadata apart from timings
        for name in ("model.glb", "input.png"):
            assert (out / asset / name).read_bytes() == (tmp_path / "local" / asset / name).read_bytes(), name
        ray_meta, local_meta = (json.loads((folder / asset / METADATA_FILE).read_text())
                                for folder in (out, tmp_path / "local"))
        assert ray_meta["run"]["command_line"] == local_meta["run"]["command_line"]  # the driver's, not Ray's worker
        for meta in (ray_meta, local_meta):
            for key in TIMINGS:
                meta.pop(key)
            meta["trellis2"].pop("timings_s"), meta["export"].pop("timings_s")
        assert ray_meta == local_meta and "engine" not in ray_meta["config"]
        assert ray_meta["config"]["export"]["faces"] == (1500 if asset == "c" else 2000)


def test_ctrl_c_cancels_with_a_summary_and_exit_130_then_resume_skips_finished_items(run_cli, tiny_root, tmp_path,
                                                                                     faults, one_thread):
    csv = manifest(tmp_path, ["a", "b", "c"])
    out = tmp_path / "out"
    faults({"c": "interrupt"})  # c starts once a or b is done
    res = run_cli("batch", csv, "--out", out, *settings(tiny_root, *on_ray()))
    assert res.code == EXIT_INTERRUPTED, res.stderr
    *items, summary = res.events
    assert summary["event"] == "summary" and summary["interrupted"] is True
    assert 1 <= summary["ok"] == len(items) and "c" not in {e["id"] for e in items}
    assert leftovers(out) == []  # cancelled items left nothing; every lock released
    # an item cancelled while its folder was being renamed into place is complete (it gets its line on resume)
    finished = {d.name for d in out.iterdir() if d.is_dir() and d.name != ASSETS_DIR}  # not the gallery's files
    assert {e["id"] for e in items} <= finished and all((out / name / METADATA_FILE).is_file() for name in finished)
    before = {name: (out / name / "model.glb").stat().st_mtime_ns for name in finished}

    attempts = faults({})
    again = run_cli("batch", csv, "--out", out, *settings(tiny_root, "engine=ray", "engine.ray.cpu_actors=1"))
    assert again.code == EXIT_OK, again.stderr
    statuses = {e["id"]: e["status"] for e in again.events[:-1]}
    assert statuses == {name: "skipped" if name in finished else "ok" for name in ("a", "b", "c")}
    assert set(attempts_of(attempts)) == {"a", "b", "c"} - finished  # skipped items never reach an actor
    assert {name: (out / name / "model.glb").stat().st_mtime_ns for name in finished} == before


def test_when_every_actor_is_lost_the_batch_ends_with_exit_4(run_cli, tiny_root, tmp_path, faults, one_thread):
    csv = manifest(tmp_path, ["e"])
    faults({"e": "die"})
    res = run_cli("batch", csv, "--out", tmp_path / "out",
                  *settings(tiny_root, "engine=ray", "engine.ray.cpu_actors=1", "engine.ray.max_lost_actors=0"))
    assert res.code == EXIT_RUNTIME
    assert "every Ray actor was lost" in res.stderr and "Traceback" not in res.stderr
    assert leftovers(tmp_path / "out") == []


# ------------------------------------------------------------------------------------ without Ray
def test_engine_ray_without_ray_installed_is_a_usage_error(run_cli, tiny_root, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    res = run_cli("batch", manifest(tmp_path, ["a"]), "--out", tmp_path / "out", *settings(tiny_root, "engine=ray"))
    assert res.code == EXIT_USAGE
    assert 'pip install "know3d[ray]"' in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("gpus, overrides, expected", [
    (8.0, {}, (8, 1.0)),
    (8.0, {"gpus_per_actor": 0.5}, (16, 0.5)),
    (8.0, {"actors": 3}, (3, 1.0)),
    (0.0, {"cpu_actors": 2}, (2, 0.0)),
    (0.0, {"actors": 4, "cpu_actors": 2}, (4, 0.0)),
])
def test_actor_plan_is_one_actor_per_gpu_or_the_cpu_actors(gpus, overrides, expected):
    from know3d_cli.ray_engine import actor_plan

    resources = {"CPU": 16.0, **({"GPU": gpus} if gpus else {})}
    assert actor_plan(resources, RayEngineConfig(**overrides)) == expected


def test_a_worker_that_does_not_see_the_output_folder_says_so(tiny_root, tmp_path, one_thread):
    from know3d_cli.ray_engine import BatchWorker

    cfg = load_config(tiny(tiny_root, *SMALLEST))
    problem = BatchWorker(cfg, str(tmp_path), os.getcwd()).ready()  # no results.jsonl: not the driver's folder
    assert isinstance(problem, OutputError) and "every node sees" in str(problem)
    (tmp_path / "results.jsonl").touch()
    assert BatchWorker(cfg, str(tmp_path), os.getcwd()).ready() is None


def test_an_unreachable_cluster_is_a_runtime_error():
    from know3d_cli.ray_engine import connect

    class Unreachable:
        @staticmethod
        def is_initialized() -> bool:
            return False

        @staticmethod
        def init(address=None, **options):
            raise ConnectionError(f"could not reach {address}")

    with pytest.raises(BackendUnavailable, match="engine.ray.address") as info:
        connect(Unreachable, "10.0.0.1:6379")
    assert "10.0.0.1:6379" in str(info.value)


@pytest.mark.parametrize("override", ["engine.ray.max_retries=-1", "engine.ray.actors=0", "engine.ray.cpu_actors=0",
                                      "engine.ray.gpus_per_actor=-1"])
def test_engine_settings_out_of_range_are_config_errors(override):
    from know3d_cli.errors import ConfigError

    with pytest.raises(ConfigError, match=override.split("=")[0]):
        load_config(["engine=ray", override])
    assert load_config(["engine=ray"]).engine.name == "ray"
