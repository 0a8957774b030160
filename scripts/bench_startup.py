"""Benchmark how long the instant `know3d` commands take to return (not a test).

Each command runs `--repeat` times as `python -m know3d_cli.cli ...` in a fresh process (as a user types it); the
median, minimum and maximum wall-clock seconds are reported, and whether the process imported torch, diffusers or
transformers (`-X importtime` on one extra run).

Example:
    python scripts/bench_startup.py --repeat 5 --json startup.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "diffusers", "transformers")


def commands(work: Path) -> dict[str, list[str]]:
    return {
        "know3d (bare)": [],
        "--help": ["--help"],
        "generate --help": ["generate", "--help"],
        "config show": ["config", "show"],
        "models list": ["models", "list"],
        "doctor": ["doctor", "--out", str(work / "out")],
        "config error (config show)": ["config", "show", "tap.block=abc"],
        "config error (generate)": ["generate", str(work / "missing.png"), "no_such_key=1"],
        "missing input (generate)": ["generate", str(work / "missing.png"), "--back", "x"],
    }


def run_once(args: list[str], env: dict[str, str], importtime: bool = False) -> tuple[float, int, str]:
    cmd = [sys.executable, *(["-X", "importtime"] if importtime else []), "-m", "know3d_cli.cli", *args]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    return time.perf_counter() - start, proc.returncode, proc.stderr


def heavy_imports(stderr: str) -> list[str]:
    """Top-level heavy packages in an `-X importtime` report."""
    found = set()
    for line in stderr.splitlines():
        if line.startswith("import time:"):
            name = line.rsplit("|", 1)[-1].strip()
            if name in HEAVY:
                found.add(name)
    return sorted(found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5, help="runs per command")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, argv in commands(Path(tmp)).items():
            times, codes = [], set()
            for _ in range(args.repeat):
                seconds, code, _ = run_once(argv, env)
                times.append(seconds)
                codes.add(code)
            _, _, report = run_once(argv, env, importtime=True)
            results[name] = {"median_s": round(statistics.median(times), 3), "min_s": round(min(times), 3),
                             "max_s": round(max(times), 3), "exit_codes": sorted(codes),
                             "heavy_imports": heavy_imports(report)}
            print(f"{name:32s} median {results[name]['median_s']:6.2f} s  (min {results[name]['min_s']:.2f}, "
                  f"max {results[name]['max_s']:.2f})  exit {sorted(codes)}  imports "
                  f"{', '.join(results[name]['heavy_imports']) or '-'}", flush=True)
    report = {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
              "load_average": os.getloadavg(), "repeat": args.repeat, "results": results}
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
