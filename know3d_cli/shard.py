"""`--shard i/n`: a deterministic, stable split of work items across machines, by item key.

An item belongs to shard `stable_hash(key) % n`. The hash depends on the key alone (not on the other items or their
order), so adding items later never moves a finished one to another shard, and any scheduler (a Slurm array, a
Kubernetes indexed job) can run shard i of n with nothing but i and n.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from .errors import UsageError

_SPEC = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")


def stable_hash(key: str) -> int:
    """A 64-bit hash of `key` that is the same on every machine, process and Python version (unlike `hash`)."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big")


def shard_of(key: str, count: int) -> int:
    """The shard (0 to count - 1) that owns `key`."""
    if count < 1:
        raise ValueError(f"shard count must be >= 1, got {count}")
    return stable_hash(key) % count


@dataclass(frozen=True)
class Shard:
    index: int  # 0-based, < count
    count: int  # number of shards (1 = everything)

    @property
    def name(self) -> str:
        """File stem for this shard's own files (`shard-00001-of-00004`)."""
        return f"shard-{self.index:05d}-of-{self.count:05d}"

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def owns(self, key: str) -> bool:
        return shard_of(key, self.count) == self.index


ALL = Shard(0, 1)


def parse_shard(spec: str | None) -> Shard:
    """`"i/n"` -> `Shard(i, n)`; None -> the whole set. A malformed spec is a one-line `UsageError` (exit 2)."""
    if spec is None:
        return ALL
    match = _SPEC.fullmatch(spec)
    if match is None:
        raise UsageError(f"invalid --shard {spec!r}; expected i/n with 0 <= i < n, e.g. --shard 0/8")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1 or index >= count:
        raise UsageError(f"invalid --shard {spec!r}: need n >= 1 and 0 <= i < n (shards are numbered from 0)")
    return Shard(index, count)


__all__ = ["ALL", "Shard", "parse_shard", "shard_of", "stable_hash"]
