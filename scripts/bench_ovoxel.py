"""Benchmark asset -> O-Voxel on the CPU (not a test).

The asset is a bumpy sphere (a latitude-longitude grid, about `--faces` triangles) with UVs, a `--texture-size`
base-colour texture and a metallic-roughness texture, written as a GLB and loaded through `load_asset` like any
training asset. The conversion runs at each `--resolution`; time is wall clock (and the process's CPU time, which a busy
machine inflates less), peak memory is the process's peak
resident set size (ru_maxrss) measured in a fresh child process per resolution, minus the RSS right before the
conversion started.

Example:
    python scripts/bench_ovoxel.py --faces 500000 --resolution 1024 --threads 1
"""

from __future__ import annotations

import argparse
import cProfile
import json
import multiprocessing as mp
import platform
import pstats
import resource
import tempfile
import time
from pathlib import Path

import numpy as np


def bumpy_sphere_glb(path: Path, faces: int, texture_size: int) -> None:
    """Write a textured bumpy sphere with about `faces` triangles."""
    import trimesh
    from PIL import Image
    from trimesh.visual.material import PBRMaterial

    rows = max(4, int(round(np.sqrt(faces / 4))))
    cols = 2 * rows
    u = np.linspace(0.0, 1.0, cols + 1)
    v = np.linspace(0.0, 1.0, rows + 1)
    uu, vv = np.meshgrid(u, v)
    theta, phi = uu * 2 * np.pi, vv * np.pi
    radius = 0.4 + 0.02 * np.sin(9 * theta) * np.sin(7 * phi)
    xyz = np.stack([radius * np.sin(phi) * np.cos(theta), radius * np.cos(phi), radius * np.sin(phi) * np.sin(theta)],
                   axis=-1).reshape(-1, 3)
    idx = np.arange((rows + 1) * (cols + 1)).reshape(rows + 1, cols + 1)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, 1:], idx[1:, :-1]
    tris = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
    s = np.linspace(0, 1, texture_size)
    gx, gy = np.meshgrid(s, s)
    base = np.stack([128 + 127 * np.sin(40 * gx), 128 + 127 * np.cos(30 * gy), 255 * gx * gy, np.full_like(gx, 255)],
                    axis=-1).astype(np.uint8)
    mr = np.stack([np.zeros_like(gx), 255 * gy, 255 * gx], axis=-1).astype(np.uint8)
    material = PBRMaterial(baseColorTexture=Image.fromarray(base), metallicRoughnessTexture=Image.fromarray(mr),
                           metallicFactor=1.0, roughnessFactor=1.0)
    uv = np.stack([uu.reshape(-1), 1 - vv.reshape(-1)], axis=1)
    mesh = trimesh.Trimesh(xyz, tris, visual=trimesh.visual.TextureVisuals(uv=uv, material=material), process=False)
    mesh.export(path)


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


def _convert(path: str, resolution: int, threads: int, profile: bool, queue) -> None:
    import torch

    from know3d_cli.config import AssetConfig, OVoxelConfig
    from know3d_cli.data import asset_to_ovoxel, load_asset

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    asset = load_asset(Path(path), AssetConfig())
    load_s = time.perf_counter() - t0
    before = _rss_mb()
    t0, c0 = time.perf_counter(), time.process_time()
    profiler = cProfile.Profile() if profile else None
    if profiler:
        profiler.enable()
    ovoxel = asset_to_ovoxel(asset, OVoxelConfig(resolution=resolution))
    if profiler:
        profiler.disable()
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)
    convert_s, cpu_s = time.perf_counter() - t0, time.process_time() - c0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put({"resolution": resolution, "faces": asset.num_faces, "voxels": ovoxel.num_voxels,
               "load_s": round(load_s, 2), "convert_s": round(convert_s, 2), "convert_cpu_s": round(cpu_s, 2),
               "rss_before_mb": round(before),
               "peak_rss_mb": round(peak), "peak_extra_mb": round(peak - before)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=500_000)
    parser.add_argument("--texture-size", type=int, default=2048)
    parser.add_argument("--resolution", type=int, nargs="+", default=[1024])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--profile", action="store_true", help="print a cProfile summary of the conversion")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bumpy_sphere.glb"
        bumpy_sphere_glb(path, args.faces, args.texture_size)
        results = []
        ctx = mp.get_context("spawn")  # a fresh process per run, so ru_maxrss is that run's peak
        for resolution in args.resolution:
            queue = ctx.Queue()
            proc = ctx.Process(target=_convert, args=(str(path), resolution, args.threads, args.profile, queue))
            proc.start()
            results.append(queue.get())
            proc.join()
    report = {"machine": f"{platform.processor() or platform.machine()}, {mp.cpu_count()} CPUs",
              "threads": args.threads, "texture_size": args.texture_size, "results": results}
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
