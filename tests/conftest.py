"""Shared fixtures: the CLI runner and the tiny random model set (written once per session)."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# One thread, here and in every subprocess a test starts: the tiny networks gain nothing from threads, and OpenMP
# threads slow down up to 40x on a busy 2-core machine (writing the tiny TRELLIS.2 set: 3 s with one, 70 s with two).
os.environ.setdefault("OMP_NUM_THREADS", "1")
# remote-code modules (BiRefNet tests) are copied here instead of the user's ~/.cache
if "HF_MODULES_CACHE" not in os.environ:
    os.environ["HF_MODULES_CACHE"] = tempfile.mkdtemp(prefix="know3d-hf-modules-")
    atexit.register(shutil.rmtree, os.environ["HF_MODULES_CACHE"], ignore_errors=True)

RELEASED_CHECKPOINTS = Path(__file__).parent / "data" / "trellis2_checkpoints.json"
REPO_ROOT = Path(__file__).resolve().parents[1]
VALIDATOR_PACKAGE = REPO_ROOT / ".ci" / "node" / "node_modules" / "gltf-validator"
VALIDATE_SCRIPT = Path(__file__).parent / "export" / "validate_gltf.js"
VALIDATOR_INSTALL = "npm install --no-save --prefix .ci/node gltf-validator@2.0.0-dev.3.10"

# the cheapest complete run: plain TRELLIS.2, stage 1 only, one sampler step, a small image, mesh and preview
SMALLEST = ("mode=trellis", "trellis2.pipeline_type=ss", "trellis2.ss.steps=1", "export.faces=2000",
            "preprocess.max_side=64", "export.preview_size=64")


def tiny(root: Path, *extra: str) -> list[str]:
    """Overrides that point every model at the session's tiny set (`tiny_root`)."""
    return ["preset=tiny", f"models.tiny_root={root}", *extra]


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


def forked(target: Callable[[], object], *, stdout: Path | None = None, stderr: Path | int | None = None) -> int:
    """Run `target()` in a forked child (no interpreter start-up: a subprocess in milliseconds); return its pid.

    The child exits with 0 when `target` returns, 1 when it raises; `stdout` / `stderr` (a file path, or a file
    descriptor for stderr) replace its streams. Reap it with `os.waitpid`.
    """
    pid = os.fork()
    if pid != 0:
        return pid
    code = 1
    try:
        import sys

        if stdout is not None:
            fd = os.open(stdout, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(fd, 1)
            sys.stdout = open(1, "w", encoding="utf-8", closefd=False)
        if stderr is not None:
            fd = stderr if isinstance(stderr, int) else os.open(stderr, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(fd, 2)
            sys.stderr = open(2, "w", encoding="utf-8", closefd=False)
        result = target()
        code = result if isinstance(result, int) else 0
    except BaseException:  # noqa: BLE001 - the child must never return into pytest
        import traceback

        traceback.print_exc()
    finally:
        os._exit(code)


def simulate_disk_full(monkeypatch, folder: Path) -> None:
    """Make every file under `folder` fail with ENOSPC when flushed to disk (`os.fsync`), as on a full filesystem."""
    import errno

    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").startswith(str(folder)):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)


@pytest.fixture
def disk_full() -> Callable[..., None]:
    """`disk_full(monkeypatch, folder)`: see `simulate_disk_full`."""
    return simulate_disk_full


@pytest.fixture
def fork() -> Callable[..., int]:
    """`fork(target, stdout=..., stderr=...)` -> pid: see `forked`."""
    return forked


@pytest.fixture(scope="session", autouse=True)
def single_threaded_session():
    """Torch computes on one thread for the whole session (see OMP_NUM_THREADS above)."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for the module, also where a test changed it: results that are hashed or compared bit for
    bit depend on the thread count."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    """The complete tiny model set, in the real on-disk layouts: one per test run, shared by its xdist workers
    (the first writes it, under the set's own lock; the others wait and reuse it)."""
    from know3d_cli.tiny import build_tiny_models

    if os.environ.get("PYTEST_XDIST_WORKER"):
        return build_tiny_models(tmp_path_factory.getbasetemp().parent / "tiny-models")
    return build_tiny_models(tmp_path_factory.mktemp("tiny") / "models")


@pytest.fixture(scope="session")
def released_checkpoint():
    """`released_checkpoint("TRELLIS.2-4B/ckpts/<name>")` -> {"class", "args", "num_tensors", "tensors": {key: shape}}
    of a released checkpoint (tests/data copy of the project's reference manifest)."""
    checkpoints = json.loads(RELEASED_CHECKPOINTS.read_text())["checkpoints"]
    return checkpoints.__getitem__


@pytest.fixture
def validate_glb(tmp_path) -> Callable[[bytes], dict]:
    """Write GLB bytes under tmp_path and run the Khronos glTF validator on them; an error or warning fails the test.

    Call it last in a test: without node or the validator package the test is skipped at that point.
    """

    def validate(data: bytes, name: str = "asset.glb") -> dict:
        path = tmp_path / name
        path.write_bytes(data)
        node = shutil.which("node")
        if node is None or not VALIDATOR_PACKAGE.is_dir():
            pytest.skip(f"Khronos glTF validator not installed (needs node and `{VALIDATOR_INSTALL}`)")
        run = subprocess.run(
            [node, str(VALIDATE_SCRIPT), str(VALIDATOR_PACKAGE), str(path)], capture_output=True, text=True, timeout=120
        )
        assert run.returncode == 0, f"validator failed to run: {run.stderr}"
        (report,) = json.loads(run.stdout)
        assert report["numErrors"] == 0 and report["numWarnings"] == 0, f"{path.name}: {report['messages']}"
        return report

    return validate
