"""Shared fixtures: the CLI runner and the tiny random model set (written once per session)."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# remote-code modules (BiRefNet tests) are copied here instead of the user's ~/.cache
os.environ.setdefault("HF_MODULES_CACHE", tempfile.mkdtemp(prefix="know3d-hf-modules-"))

RELEASED_CHECKPOINTS = Path(__file__).parent / "data" / "trellis2_checkpoints.json"


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    @property
    def events(self) -> list[dict]:
        """stdout parsed as JSON lines (fails the test if any line is not JSON)."""
        return [json.loads(line) for line in self.stdout.splitlines()]


@pytest.fixture
def run_cli(capsys):
    from know3d_cli.cli import main

    def run(*argv: str) -> CliResult:
        capsys.readouterr()
        code = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return CliResult(code, out, err)

    return run


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    """The complete tiny model set, in the real on-disk layouts."""
    from know3d_cli.tiny import build_tiny_models

    return build_tiny_models(tmp_path_factory.mktemp("tiny") / "models")


@pytest.fixture(scope="session")
def released_checkpoint():
    """`released_checkpoint("TRELLIS.2-4B/ckpts/<name>")` -> {"class", "args", "num_tensors", "tensors": {key: shape}}
    of a released checkpoint (tests/data copy of the project's reference manifest)."""
    checkpoints = json.loads(RELEASED_CHECKPOINTS.read_text())["checkpoints"]
    return checkpoints.__getitem__
