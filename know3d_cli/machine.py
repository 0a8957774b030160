"""This machine, as `doctor` and `metadata.json` report it: host, GPUs and their driver, torch's CUDA build.

Nothing here imports torch (seconds of start-up): GPUs are listed by `nvidia-smi`, torch's build is read from its
`version.py`. A machine without an NVIDIA driver simply has no GPUs.
"""

from __future__ import annotations

import ast
import importlib.util
import logging
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

_QUERY = "index,name,driver_version,memory.total,memory.free,compute_cap"
_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class GpuInfo:
    index: int  # as nvidia-smi numbers it (all GPUs, whatever CUDA_VISIBLE_DEVICES hides)
    name: str
    driver: str  # NVIDIA driver version, e.g. "550.54.15"
    capability: str | None  # compute capability "9.0" (None on drivers too old to report it)
    memory_total_gb: float | None
    memory_free_gb: float | None


def host_name() -> str:
    return socket.gethostname()


def gpus() -> list[GpuInfo]:
    """Every NVIDIA GPU the driver sees; [] without `nvidia-smi` or when it fails."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        done = subprocess.run([exe, f"--query-gpu={_QUERY}", "--format=csv,noheader,nounits"], capture_output=True,
                              text=True, timeout=_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        logger.debug("nvidia-smi failed: %s", exc)
        return []
    if done.returncode != 0:
        logger.debug("nvidia-smi exited with %d: %s", done.returncode, done.stderr.strip())
        return []
    return [gpu for line in done.stdout.splitlines() if (gpu := _parse_gpu(line)) is not None]


def _parse_gpu(line: str) -> GpuInfo | None:
    fields = [field.strip() for field in line.split(",")]
    if len(fields) != 6 or not fields[0].isdigit():
        return None

    def number(text: str) -> float | None:
        try:
            return round(float(text) / 1024, 2)  # MiB -> GiB
        except ValueError:
            return None

    capability = fields[5] if fields[5] and fields[5][0].isdigit() else None
    return GpuInfo(index=int(fields[0]), name=fields[1], driver=fields[2], capability=capability,
                   memory_total_gb=number(fields[3]), memory_free_gb=number(fields[4]))


def torch_cuda_build() -> str | None:
    """The CUDA version torch was built for ("12.8"), None for a CPU build or when torch is missing."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return None
    version_file = Path(list(spec.submodule_search_locations)[0]) / "version.py"
    try:
        tree = ast.parse(version_file.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return None
    for node in tree.body:
        target = node.target if isinstance(node, ast.AnnAssign) else (
            node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else None)
        if isinstance(target, ast.Name) and target.id == "cuda" and node.value is not None:
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                return None
            return value if isinstance(value, str) else None
    return None


__all__ = ["GpuInfo", "gpus", "host_name", "torch_cuda_build"]
