"""Benchmark the preview renders of an exported asset: preview.png and turntable.webp (not a test).

The asset is `bench_mesh_export.py`'s synthetic one (a bumpy torus shaped like TRELLIS.2 decoder output, with PBR
voxels), exported as a textured GLB of `--faces` faces (xatlas atlas, `--texture-size` PNG textures) exactly as
`know3d generate` does. Then, as the pipeline calls it (`render_previews`, parsing the GLB bytes back):

- preview.png with the default face budget (`--preview-faces`: a seam-preserving decimated copy is rendered),
- preview.png of the full mesh (no decimation), for comparison,
- turntable.webp (`--frames` frames) with the default budget, and of the full mesh,

each reported with its steps (parse + decimate, render + encode). The first render in a process also creates the
OpenGL context and compiles shaders: a warm-up render of a small mesh runs first so that every line is comparable.
The OpenGL renderer string says whether it ran on the CPU (llvmpipe) or a GPU.

Example:
    PYTHONPATH=. python scripts/bench_preview.py --faces 500000 --json preview.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import time
from pathlib import Path

import torch

from bench_mesh_export import bumpy_torus, synthetic_dual_grid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export-faces-in", type=int, default=1_000_000, help="faces of the generated mesh")
    parser.add_argument("--resolution", type=int, default=1024, help="O-Voxel grid of the generated mesh")
    parser.add_argument("--faces", type=int, default=500_000, help="export.faces")
    parser.add_argument("--texture-size", type=int, default=2048, help="export.texture_size")
    parser.add_argument("--size", type=int, default=384, help="export.preview_size")
    parser.add_argument("--preview-faces", type=int, default=100_000, help="export.preview_faces")
    parser.add_argument("--frames", type=int, default=36, help="export.turntable_frames")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import trimesh

    from know3d_cli.config import ExportConfig
    from know3d_cli.export import encode_mesh, render_previews
    from know3d_cli.geometry import Asset3D
    from know3d_cli.render import RenderSettings, Renderer, cardinal_views
    from know3d_cli.trellis2.mesh import fill_small_holes, flexible_dual_grid_to_mesh

    probe = synthetic_dual_grid(bumpy_torus(0.3, 0.12), 256)["flags"].sum().item() * 2
    scale = min(1.0, math.sqrt(args.export_faces_in / (probe * (args.resolution / 256) ** 2)))
    grid = synthetic_dual_grid(bumpy_torus(0.3 * scale, 0.12 * scale, amplitude=0.012 * scale), args.resolution, 1)
    vertices, faces = flexible_dual_grid_to_mesh(grid["coords"], grid["offsets"], grid["flags"], grid["weights"],
                                                 args.resolution)
    vertices, faces = fill_small_holes(vertices, faces)
    asset = Asset3D(vertices=vertices, faces=faces, source_stage="shape", resolution=args.resolution,
                    voxel_coords=grid["coords"], voxel_attrs=grid["attrs"])
    cfg = ExportConfig(faces=args.faces, texture_size=args.texture_size, preview_size=args.size,
                       preview_faces=args.preview_faces, turntable_frames=args.frames)
    t0 = time.perf_counter()
    exported = encode_mesh(asset, cfg)
    results: dict[str, dict] = {"export_glb": {"seconds": time.perf_counter() - t0, "faces": exported.faces,
                                               "megabytes": len(exported.data) / 1e6}}

    with Renderer(trimesh.creation.icosphere(), RenderSettings(size=args.size)) as warm:  # context + shaders
        warm.render(cardinal_views())
        warm.render(cardinal_views(), kind="normal")
    runs = {
        "preview_png": cfg,
        "preview_png_full_mesh": dataclasses.replace(cfg, preview_faces=100_000_000),
        f"turntable_webp_{args.frames}": dataclasses.replace(cfg, preview=False, turntable=True),
        f"turntable_webp_{args.frames}_full_mesh": dataclasses.replace(cfg, preview=False, turntable=True,
                                                                       preview_faces=100_000_000),
    }
    for name, run_cfg in runs.items():
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        previews = render_previews(exported, run_cfg, timings)
        results[name] = {"seconds": time.perf_counter() - t0, "rendered_faces": previews.info["rendered_faces"],
                         "steps": timings, "kilobytes": sum(len(d) for d in previews.files.values()) / 1e3}

    from OpenGL import GL

    report = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
              "opengl": GL.glGetString(GL.GL_RENDERER).decode(), "platform": os.environ.get("PYOPENGL_PLATFORM"),
              "load_average": os.getloadavg()[0], "size": args.size, "preview_faces": args.preview_faces,
              "results": _rounded(results)}
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


def _rounded(value):
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    return value


if __name__ == "__main__":
    main()
