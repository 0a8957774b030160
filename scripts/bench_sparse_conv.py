"""Benchmark the pure-PyTorch submanifold 3x3x3 convolution (not a test).

Coordinates: the voxels cut by a sphere's surface (exact voxel/sphere intersection test), one batch item, rows in
lexicographic order. This is the kind of set the TRELLIS.2 decoders convolve at their last levels (a thin shell,
about 9-13 of the 27 neighbour slots filled). The radius is chosen so the shell has about the requested count.

Reports, per size: neighbour-map build time, conv time for each algorithm, and a dense `F.conv3d(padding=1)` over the
shell's bounding grid when that grid fits in `--dense-budget-gb` (otherwise it says so; the smaller size gives the
sparse/dense ratio). Times are the minimum over `--repeat` runs.

Example:
    python scripts/bench_sparse_conv.py --voxels 100000 1000000 --channels 64 --threads 2
"""

from __future__ import annotations

import argparse
import math
import platform
import time

import torch
import torch.nn.functional as F

from know3d_cli.trellis2.sparse.conv_torch import submanifold_conv3d
from know3d_cli.trellis2.sparse.neighbors import build_neighbor_map


def sphere_shell(radius: float) -> torch.Tensor:
    """(N, 4) int32 `(0, x, y, z)` of the voxels [i, i+1)^3 that the sphere of `radius` cuts, lexicographic order."""
    side = int(math.ceil(2 * radius)) + 2
    centre = side / 2.0
    axis = torch.arange(side, dtype=torch.float64) + 0.5 - centre  # voxel centres relative to the sphere centre
    ay, az = torch.meshgrid(axis, axis, indexing="ij")
    chunks = []
    for ix in range(side):  # one x-slab at a time keeps memory at side^2
        d = torch.stack([torch.full_like(ay, float(axis[ix])), ay, az], dim=-1).abs()
        near = (d - 0.5).clamp(min=0).norm(dim=-1)
        far = (d + 0.5).norm(dim=-1)
        hit = ((near <= radius) & (far >= radius)).nonzero()
        if hit.numel():
            chunks.append(torch.cat([torch.full((hit.shape[0], 1), ix, dtype=torch.int64), hit], dim=1))
    xyz = torch.cat(chunks)
    return torch.cat([torch.zeros(xyz.shape[0], 1, dtype=torch.int64), xyz], dim=1).to(torch.int32)


def shell_with_about(voxels: int) -> torch.Tensor:
    probe = 40.0
    per_r2 = sphere_shell(probe).shape[0] / probe**2
    return sphere_shell(math.sqrt(voxels / per_r2))


def best_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--voxels", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--channels", type=int, default=64, help="input and output channels")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--algorithms", nargs="+", default=["offset", "gemm"], choices=["offset", "gemm"])
    parser.add_argument("--dense-budget-gb", type=float, default=6.0, help="skip the dense oracle above this")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    c = args.channels
    print(f"# torch {torch.__version__}, {args.threads} threads, {platform.processor() or platform.machine()}, fp32")
    for target in args.voxels:
        coords = shell_with_about(target)
        n = coords.shape[0]
        grid = (coords[:, 1:].amax(0) + 1).tolist()
        feats = torch.randn(n, c)
        weight = torch.randn(c, 3, 3, 3, c) / math.sqrt(27 * c)
        bias = torch.randn(c)

        t_map = best_time(lambda: build_neighbor_map(coords), args.repeat)
        nbr = build_neighbor_map(coords)
        fill = float((nbr >= 0).sum(1).double().mean())
        print(f"\nvoxels {n:,} (target {target:,}); bounding grid {grid}; mean filled slots {fill:.2f}/27")
        print(f"  neighbour map          {t_map:8.3f} s")
        conv_times = {}
        for algo in args.algorithms:
            conv_times[algo] = best_time(
                lambda: submanifold_conv3d(feats, nbr, weight, bias, algorithm=algo), args.repeat
            )
            total = t_map + conv_times[algo]
            print(f"  conv [{algo:6s}]          {conv_times[algo]:8.3f} s   map + conv {total:.3f} s")

        dense_bytes = 2 * c * math.prod(grid) * 4
        if dense_bytes > args.dense_budget_gb * 2**30:
            print(f"  dense F.conv3d         skipped: input + output grid would need {dense_bytes / 2**30:.1f} GiB")
            continue
        dense = torch.zeros(1, c, *grid)
        cl = coords.long()
        dense[0, :, cl[:, 1], cl[:, 2], cl[:, 3]] = feats.t()
        w_dense = weight.permute(0, 4, 1, 2, 3).contiguous()
        t_dense = best_time(lambda: F.conv3d(dense, w_dense, bias, padding=1), max(1, args.repeat - 1))
        ref = F.conv3d(dense, w_dense, bias, padding=1)[0, :, cl[:, 1], cl[:, 2], cl[:, 3]].t()
        err = (submanifold_conv3d(feats, nbr, weight, bias) - ref).abs().max().item()
        best = min(conv_times.values())
        print(f"  dense F.conv3d         {t_dense:8.3f} s   (sparse map+conv is {t_dense / (t_map + best):.1f}x faster;"
              f" max |sparse - dense| {err:.1e})")


if __name__ == "__main__":
    main()
