"""DatasetWriter: schema checks, atomic samples, per-shard indexes that survive kills, one compatible dataset.json."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from know3d_cli import outputs
from know3d_cli.data.schema import DATASET_FILE, SCHEMA_VERSION
from know3d_cli.data.writer import DatasetWriter, Sample, check_sample
from know3d_cli.errors import ConfigError, InputError, WriteFailure
from know3d_cli.shard import ALL, Shard
from know3d_cli.train.dataset import TrainingDataset
from know3d_cli.train_config import TrainStage

INFO = {"schema_version": SCHEMA_VERSION, "shape_resolution": 512, "dino_resolutions": [512], "variants": 2,
        "models": {"editor": {"repo": "r", "revision": None}}, "settings": {"seed": 0}, "built_by": {"host": "a"}}


def make_sample(ident: str, k: int = 2, n: int = 5, **changes) -> Sample:
    latents = {"occupancy": torch.zeros(7, 3, dtype=torch.int32), "ss_latent": torch.zeros(8, 16, 16, 16),
               "shape_coords": torch.arange(n * 3, dtype=torch.int32).reshape(n, 3),
               "shape_feats": torch.ones(n, 32), "tex_feats": torch.ones(n, 32)}
    conditions = {"dino_512": torch.ones(6, 4, dtype=torch.float16), "hdit": torch.ones(k, 2, 2, 3).bfloat16()}
    for name, value in changes.items():
        (latents if name in latents else conditions)[name] = value
    image = Image.new("RGBA", (8, 8), (255, 0, 0, 255))
    return Sample(ident, f"/assets/{ident}.glb", "0" * 64, latents, conditions, image, image,
                  tuple(f"prompt {i}" for i in range(k)), {"camera": {"azimuth_deg": 10.0}})


def index_ids(root) -> list[str]:
    return [json.loads(line)["id"] for f in sorted((root / "index").glob("*.jsonl"))
            for line in f.read_text().splitlines()]


@pytest.mark.parametrize("changes,message", [
    ({"hdit": torch.ones(3, 2, 2, 3).bfloat16()}, "hdit has shape"),  # 3 taps for 2 prompts
    ({"shape_feats": torch.ones(4, 32)}, "shape_feats has shape"),  # N differs from shape_coords
    ({"ss_latent": torch.zeros(8, 16, 16, 15)}, "ss_latent has shape"),
    ({"dino_512": torch.ones(6, 4)}, "dino_512 is float32, expected float16"),
    ({"hdit": None}, "hdit is missing"),
    ({"extra": torch.ones(1)}, "not in the schema"),
])
def test_check_sample_rejects_what_breaks_the_schema(changes, message):
    sample = make_sample("a", **{k: v for k, v in changes.items() if v is not None})
    if changes.get("hdit", 0) is None:
        del sample.conditions["hdit"]
    with pytest.raises(ValueError, match=message):
        check_sample(sample)
    check_sample(make_sample("b", dino_1024=torch.ones(9, 4, dtype=torch.float16)))  # the optional one is fine


def test_samples_of_two_shards_in_one_folder_are_read_as_one_dataset(tmp_path):
    first, second = DatasetWriter(tmp_path, Shard(0, 2), INFO), DatasetWriter(tmp_path, Shard(1, 2),
                                                                              {**INFO, "built_by": {"host": "b"}})
    first.write(make_sample("a"))
    second.write(make_sample("b"))
    assert {p.name for p in (tmp_path / "index").iterdir()} == {"shard-00000-of-00002.jsonl",
                                                                 "shard-00001-of-00002.jsonl"}
    assert json.loads((tmp_path / DATASET_FILE).read_text())["built_by"] == {"host": "a"}  # written once
    dataset = TrainingDataset(tmp_path, TrainStage.ss)
    assert sorted(e.id for e in dataset.entries) == ["a", "b"]
    assert dataset.load(0).hdit.shape == (2, 2, 2, 3)
    with pytest.raises(ConfigError, match=r"other settings \(variants: 2 -> 3"):
        DatasetWriter(tmp_path, ALL, {**INFO, "variants": 3})


def test_a_killed_writer_leaves_no_half_sample_and_the_next_run_repairs_the_index(tmp_path, monkeypatch):
    writer = DatasetWriter(tmp_path, ALL, INFO)
    writer.write(make_sample("a"))
    writer.write(make_sample("b"))
    calls = []

    def interrupted(path, data):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(path, data)

    original = outputs._write_synced
    monkeypatch.setattr(outputs, "_write_synced", interrupted)
    with pytest.raises(KeyboardInterrupt):
        writer.write(make_sample("c"))
    monkeypatch.undo()
    assert not (tmp_path / "samples" / "c").exists()  # only its partial folder is left, as after a kill
    assert [p.name.split("-")[0] for p in (tmp_path / "samples").glob(".*")] == [".c.partial"]
    assert index_ids(tmp_path) == ["a", "b"]

    # a kill between the rename and the index line (b's line lost), a line cut short, a leftover temporary folder
    index = next((tmp_path / "index").glob("*.jsonl"))
    a_line = index.read_text().splitlines()[0]
    index.write_text(a_line + "\n" + a_line + "\n" + '{"id": "gone", "dir": "samples/gone", "prompts": ["p"]}\n'
                     + '{"id": "c", "di')
    (tmp_path / "samples" / ".c.partial-0123abcd").mkdir()
    (tmp_path / "samples" / ".c.d.partial-4567abcd").mkdir()  # another sample's (id "c.d"), in progress elsewhere
    again = DatasetWriter(tmp_path, ALL, INFO)
    assert index_ids(tmp_path) == ["a"]  # duplicates, vanished samples and the cut line are dropped
    assert not again.finished("c") and again.finished("b")
    again.adopt("b")
    assert index_ids(tmp_path) == ["a", "b"]
    again.write(make_sample("c"))
    assert index_ids(tmp_path) == ["a", "b", "c"]
    assert [p.name for p in (tmp_path / "samples").glob(".*")] == [".c.d.partial-4567abcd"]
    assert len(TrainingDataset(tmp_path, TrainStage.ss)) == 3
    record = json.loads((tmp_path / "samples" / "c" / "sample.json").read_text())
    assert record["counts"] == {"N": 5, "M": 7, "K": 2} and record["camera"] == {"azimuth_deg": 10.0}


def test_an_unreadable_dataset_json_is_an_input_error(tmp_path):
    (tmp_path / DATASET_FILE).write_text("{ not json")
    with pytest.raises(InputError, match="unreadable"):
        DatasetWriter(tmp_path, ALL, INFO)


def test_failures_are_appended_per_shard(tmp_path):
    writer = DatasetWriter(tmp_path, Shard(1, 3), INFO)
    writer.fail({"id": "x", "reason": "unreadable"})
    writer.fail({"id": "y", "reason": "no_faces"})
    lines = (tmp_path / "failures" / "shard-00001-of-00003.jsonl").read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["x", "y"]


def test_a_full_disk_is_a_write_failure_that_leaves_nothing_of_the_sample(tmp_path, monkeypatch, disk_full):
    writer = DatasetWriter(tmp_path, ALL, INFO)
    writer.write(make_sample("a"))
    disk_full(monkeypatch, tmp_path / "samples")
    with pytest.raises(WriteFailure) as caught:
        writer.write(make_sample("b"))
    assert caught.value.disk_full and "free some disk space" in str(caught.value)
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == ["a"] and index_ids(tmp_path) == ["a"]
    disk_full(monkeypatch, tmp_path / "failures")
    with pytest.raises(WriteFailure, match="cannot append to .*shard-00000-of-00001.jsonl") as caught:
        writer.fail({"id": "c", "error": "x"})
    assert caught.value.disk_full


def test_an_ss_only_sample_has_no_sc_vae_latents_and_no_n_count():
    sample = make_sample("ss")
    for name in ("shape_coords", "shape_feats", "tex_feats"):  # data.latents=ss writes none of them
        del sample.latents[name]
    check_sample(sample)
    assert sample.sample_json()["counts"] == {"M": 7, "K": 2}
    assert make_sample("full").sample_json()["counts"] == {"M": 7, "K": 2, "N": 5}
