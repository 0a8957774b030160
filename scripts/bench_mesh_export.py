"""Benchmark mesh extraction and textured GLB export on the CPU (not a test).

Inputs are synthetic but shaped like TRELLIS.2 decoder output: the voxels of a grid cut by a bumpy closed surface
(a thin shell), each with a dual vertex on the surface (one Newton step from the voxel centre), edge flags from
the sign change of the implicit function along the voxel's three owned edges, random positive split weights, and
PBR attributes (base colour, metallic, roughness, alpha) that vary smoothly in space.

1. Extraction: flexible dual grid -> mesh (+ small-hole filling) at about `--voxels` voxels on a `--resolution` grid.
2. Export: `to_glb` of a bumpy torus mesh of about `--export-faces-in` faces, decimated to `--faces` faces with a
   `--texture-size` texture, with a per-step breakdown.

Example:
    python scripts/bench_mesh_export.py --threads 2
"""

from __future__ import annotations

import argparse
import math
import platform
import time
from typing import Callable

import numpy as np
import torch

from know3d_cli.config import ExportConfig
from know3d_cli.export.glb import to_glb
from know3d_cli.trellis2.mesh import fill_small_holes, flexible_dual_grid_to_mesh
from know3d_cli.geometry import Asset3D

Implicit = Callable[[np.ndarray], np.ndarray]


def bumpy_sphere(radius: float, amplitude: float = 0.02, freq: float = 12.0) -> Implicit:
    def f(p: np.ndarray) -> np.ndarray:
        bumps = amplitude * np.sin(freq * p[:, 0]) * np.sin(freq * p[:, 1]) * np.sin(freq * p[:, 2])
        return np.linalg.norm(p, axis=1) - (radius + bumps)

    return f


def bumpy_torus(major: float, minor: float, amplitude: float = 0.012) -> Implicit:
    def f(p: np.ndarray) -> np.ndarray:
        ring = np.hypot(p[:, 0], p[:, 1]) - major
        theta = np.arctan2(p[:, 1], p[:, 0])
        phi = np.arctan2(p[:, 2], ring)
        return np.hypot(ring, p[:, 2]) - (minor + amplitude * np.sin(7 * theta) * np.cos(3 * phi))

    return f


def shell_voxels(f: Implicit, resolution: int, lipschitz: float = 1.6) -> np.ndarray:
    """(N, 3) int64 candidate voxels near the surface f = 0 (coarse-to-fine octree descent, no dense grid)."""
    level = 16
    cells = np.stack(np.meshgrid(*[np.arange(level)] * 3, indexing="ij"), -1).reshape(-1, 3)
    children = np.stack(np.meshgrid(*[np.arange(2)] * 3, indexing="ij"), -1).reshape(-1, 3)
    while True:
        h = 1.0 / level
        centre = (cells + 0.5) * h - 0.5
        keep = np.abs(f(centre)) <= lipschitz * h * (math.sqrt(3) / 2 + 1.0)
        cells = cells[keep]
        if level == resolution:
            return cells
        cells = (cells[:, None, :] * 2 + children).reshape(-1, 3)
        level *= 2


def synthetic_dual_grid(f: Implicit, resolution: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Decoder-like O-Voxel data for the surface f = 0 (inside f < 0)."""
    rng = np.random.default_rng(seed)
    cand = shell_voxels(f, resolution)
    corners = np.stack(np.meshgrid(*[np.arange(2)] * 3, indexing="ij"), -1).reshape(-1, 3)  # (8, 3)
    inside = np.empty((cand.shape[0], 8), dtype=bool)
    for k in range(8):
        inside[:, k] = f((cand + corners[k]) / resolution - 0.5) < 0
    active = inside.any(1) & ~inside.all(1)
    coords, inside = cand[active], inside[active]
    top = 7  # corner (1, 1, 1): the shared end of the three owned edges
    flags = np.stack([inside[:, 3] != inside[:, top], inside[:, 5] != inside[:, top], inside[:, 6] != inside[:, top]], 1)
    centre = (coords + 0.5) / resolution - 0.5
    eps = 1e-4
    grad = np.stack([(f(centre + eps * e) - f(centre - eps * e)) / (2 * eps) for e in np.eye(3)], 1)
    surface = centre - (f(centre) / np.maximum((grad**2).sum(1), 1e-12))[:, None] * grad
    offsets = np.clip((surface + 0.5) * resolution - coords, -0.5, 1.5)
    weights = np.log1p(np.exp(rng.normal(size=coords.shape[0])))
    attrs = np.concatenate(
        [
            0.5 + 0.45 * np.sin(np.array([9.0, 13.0, 17.0]) * centre + np.array([0.0, 1.0, 2.0])),  # base colour
            (np.sin(20 * centre[:, :1]) > 0).astype(np.float64),  # metallic
            0.5 + 0.4 * np.cos(11 * centre[:, 2:3]),  # roughness
            np.ones((coords.shape[0], 1)),  # alpha
        ],
        axis=1,
    )
    return {
        "coords": torch.from_numpy(coords).to(torch.int32),
        "offsets": torch.from_numpy(offsets).to(torch.float32),
        "flags": torch.from_numpy(flags),
        "weights": torch.from_numpy(weights).to(torch.float32),
        "attrs": torch.from_numpy(attrs).to(torch.float32),
    }


def sphere_radius_for(voxels: int, resolution: int) -> float:
    probe = 0.25
    n = synthetic_dual_grid(bumpy_sphere(probe), 256)["coords"].shape[0]
    per_area = n / (probe**2 * 256**2)  # voxels ~ per_area * r^2 * R^2
    return math.sqrt(voxels / (per_area * resolution**2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--resolution", type=int, default=1024)
    parser.add_argument("--voxels", type=int, default=1_000_000)
    parser.add_argument("--export-resolution", type=int, default=1024)
    parser.add_argument("--export-faces-in", type=int, default=1_000_000)
    parser.add_argument("--faces", type=int, default=500_000)
    parser.add_argument("--texture-size", type=int, default=2048)
    parser.add_argument("--texture-format", default="webp", choices=["webp", "png"])
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, threads {args.threads}")

    radius = sphere_radius_for(args.voxels, args.resolution)
    grid = synthetic_dual_grid(bumpy_sphere(radius), args.resolution)
    print(f"extraction input: {grid['coords'].shape[0]:,} voxels at {args.resolution}^3 (sphere r = {radius:.3f})")
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        vertices, faces = flexible_dual_grid_to_mesh(
            grid["coords"], grid["offsets"], grid["flags"], grid["weights"], args.resolution
        )
        t1 = time.perf_counter()
        vertices, faces = fill_small_holes(vertices, faces)
        t2 = time.perf_counter()
        print(
            f"  dual grid -> mesh {t1 - t0:.2f} s ({faces.shape[0]:,} faces), fill_small_holes {t2 - t1:.2f} s, "
            f"total {t2 - t0:.2f} s"
        )

    # a torus scaled so that its extracted mesh has about export_faces_in faces (faces ~ area * R^2)
    probe = synthetic_dual_grid(bumpy_torus(0.3, 0.12), 256)["flags"].sum().item() * 2
    scale = min(1.0, math.sqrt(args.export_faces_in / (probe * (args.export_resolution / 256) ** 2)))
    torus = bumpy_torus(0.3 * scale, 0.12 * scale, amplitude=0.012 * scale)
    grid = synthetic_dual_grid(torus, args.export_resolution, seed=1)
    vertices, faces = flexible_dual_grid_to_mesh(
        grid["coords"], grid["offsets"], grid["flags"], grid["weights"], args.export_resolution
    )
    vertices, faces = fill_small_holes(vertices, faces)
    asset = Asset3D(
        vertices=vertices, faces=faces, source_stage="shape", resolution=args.export_resolution,
        voxel_coords=grid["coords"], voxel_attrs=grid["attrs"],
    )
    cfg = ExportConfig(faces=args.faces, texture_size=args.texture_size, texture_format=args.texture_format)
    print(f"export input: {faces.shape[0]:,} faces, {grid['coords'].shape[0]:,} PBR voxels at {args.export_resolution}^3")
    for _ in range(args.repeat):
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        data = to_glb(asset, cfg, timings)
        total = time.perf_counter() - t0
        steps = ", ".join(f"{k} {v:.2f} s" for k, v in timings.items())
        print(f"  to_glb -> {args.faces:,} faces, {args.texture_size}^2 {args.texture_format}: {total:.2f} s ({steps}); "
              f"{len(data) / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
