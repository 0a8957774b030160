"""Benchmark offscreen rendering of a large textured asset (not a test).

The asset is the bumpy textured sphere of `bench_ovoxel.py` (about `--faces` triangles, `--texture-size` textures),
loaded from GLB with trimesh like an exported asset. Reported: the GLB load, the first colour view (context, scene
upload, shader compile), one more colour view, one normals view, and a `--frames` turntable (colour), all at
`--size` pixels. The OpenGL renderer string says whether it ran on the CPU (llvmpipe) or a GPU.

Example:
    python scripts/bench_render.py --faces 500000 --size 512 --frames 24
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from bench_ovoxel import bumpy_sphere_glb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=500_000)
    parser.add_argument("--texture-size", type=int, default=2048)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    import trimesh

    from know3d_cli.render import OrbitView, RenderSettings, Renderer, cardinal_views, turntable_views

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bumpy_sphere.glb"
        bumpy_sphere_glb(path, args.faces, args.texture_size)
        t0 = time.perf_counter()
        model = trimesh.load(path)
        results["load_glb_s"] = time.perf_counter() - t0
    faces = sum(len(g.faces) for g in model.geometry.values())
    t0 = time.perf_counter()
    with Renderer(model, RenderSettings(size=args.size)) as renderer:
        renderer.render([OrbitView(0.0, 15.0)])
        results["first_view_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        renderer.render([OrbitView(30.0, 15.0)])
        results["color_view_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        renderer.render([OrbitView(30.0, 15.0)], kind="normal")
        results["first_normal_view_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        renderer.render(cardinal_views(15.0), kind="normal")
        results["normal_view_s"] = (time.perf_counter() - t0) / 4
        t0 = time.perf_counter()
        renderer.render(turntable_views(args.frames, elevation=15.0))
        results[f"turntable_{args.frames}_s"] = time.perf_counter() - t0
        from OpenGL import GL

        gl_renderer = GL.glGetString(GL.GL_RENDERER).decode()
    report = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
              "opengl": gl_renderer, "platform": os.environ.get("PYOPENGL_PLATFORM"), "faces": faces,
              "size": args.size, "results": {k: round(v, 3) for k, v in results.items()}}
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
