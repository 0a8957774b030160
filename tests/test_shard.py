"""`--shard i/n`: parsing, and a split that is a partition, stable across runs and under added items."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from know3d_cli.errors import UsageError
from know3d_cli.shard import ALL, Shard, parse_shard, shard_of, stable_hash


def test_parse_shard():
    assert parse_shard("0/8") == Shard(0, 8) and parse_shard(" 3 / 4 ") == Shard(3, 4) and parse_shard(None) == ALL
    assert str(Shard(1, 4)) == "1/4" and Shard(1, 4).name == "shard-00001-of-00004"


@pytest.mark.parametrize("spec", ["", "1", "a/b", "1/0", "4/4", "-1/4", "1/2/3", "1.0/2"])
def test_bad_shard_specs_are_one_line_usage_errors(spec):
    with pytest.raises(UsageError) as info:
        parse_shard(spec)
    assert "--shard" in str(info.value) and "\n" not in str(info.value)


def test_shards_partition_the_keys_and_ignore_the_other_keys():
    keys = [f"asset-{i}" for i in range(400)]
    owners = {key: [i for i in range(4) if Shard(i, 4).owns(key)] for key in keys}
    assert all(len(o) == 1 for o in owners.values())  # each key in exactly one shard
    counts = [sum(o == [i] for o in owners.values()) for i in range(4)]
    assert min(counts) > 60  # roughly balanced (100 expected each)
    more = keys + [f"new-{i}" for i in range(100)]  # adding keys moves no existing one
    assert all(shard_of(key, 4) == owners[key][0] for key in more if key in owners)


def test_the_hash_is_the_same_in_every_process():
    # Python's hash() is salted per process; the shard of a key must not be
    assert stable_hash("chair") == 4431176805867683557 and shard_of("chair", 8) == 5
    code = "from know3d_cli.shard import shard_of; print(shard_of('chair', 8))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONHASHSEED": "123"})
    assert run.stdout.strip() == "5", run.stderr
