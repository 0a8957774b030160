"""`know3d batch --shard i/n`: shards of one manifest into one --out cover every row once and keep their rows when
rows are added (each shard resumes its own); a bad spec is a usage error."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from know3d_cli.errors import EXIT_BATCH_FAILURES, EXIT_OK, EXIT_USAGE
from know3d_cli.shard import shard_of

from .conftest import SMALLEST, tiny



def shard_run(run_cli, csv: Path, out: Path, root: Path, spec: str):
    res = run_cli("batch", csv, "--out", out, "--shard", spec, "--quiet", *tiny(root, *SMALLEST))
    *items, summary = res.events
    return res.code, {e["id"]: e["status"] for e in items}, summary


def test_shards_cover_the_manifest_once_and_keep_their_rows_when_rows_are_added(run_cli, tiny_root, tmp_path,
                                                                                  one_thread):
    arr = np.full((48, 48, 3), 255, np.uint8)
    arr[10:38, 12:36] = (40, 80, 200)
    names = ["chair", "mug", "lamp", "bag"]
    for name in names:
        Image.fromarray(arr).save(tmp_path / f"{name}.png")
    csv = tmp_path / "assets.csv"
    csv.write_text("image\n" + "".join(f"{name}.png\n" for name in names), encoding="utf-8")
    assert {shard_of(name, 2) for name in names} == {0, 1}  # both shards have work
    out = tmp_path / "out"

    first = [shard_run(run_cli, csv, out, tiny_root, f"{i}/2") for i in range(2)]
    assert [code for code, _, _ in first] == [EXIT_OK, EXIT_OK]
    owned = [set(statuses) for _, statuses, _ in first]
    assert owned[0] | owned[1] == set(names) and not owned[0] & owned[1]
    assert all(shard_of(name, 2) == i for i in range(2) for name in owned[i])
    assert [summary["shard"] for _, _, summary in first] == ["0/2", "1/2"]
    assert sum(summary["total"] for _, _, summary in first) == len(names)
    journal = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in journal) == sorted(names)  # both shards appended to the one journal

    with csv.open("a", encoding="utf-8") as fh:  # rows added later (these images are missing: they fail fast)
        fh.write("vase.png\ndesk.png\n")
    again = [shard_run(run_cli, csv, out, tiny_root, f"{i}/2") for i in range(2)]
    assert {shard_of(name, 2) for name in ("vase", "desk")} == {0, 1}
    for i, (code, statuses, _) in enumerate(again):
        assert {name for name, status in statuses.items() if status == "skipped"} == owned[i]  # resumed in place
        assert {name for name, status in statuses.items() if status == "failed"} == \
            {name for name in ("vase", "desk") if shard_of(name, 2) == i}
        assert code == EXIT_BATCH_FAILURES


def test_a_bad_shard_spec_is_a_usage_error_before_anything_is_written(run_cli, tmp_path):
    csv = tmp_path / "assets.csv"
    csv.write_text("image\nchair.png\n", encoding="utf-8")
    res = run_cli("batch", csv, "--out", tmp_path / "out", "--shard", "2/2")
    assert res.code == EXIT_USAGE and res.stdout == ""
    assert "--shard" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "out").exists()
