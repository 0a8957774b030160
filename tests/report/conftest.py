"""A small output folder as `know3d batch` leaves it: finished assets (real exports and previews, one GLB with a
turntable, one OBJ) and a results file with a failure, built without running the models."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh
from PIL import Image

from know3d_cli import metadata
from know3d_cli.config import ExportConfig, ExportFormat
from know3d_cli.export import encode_mesh, render_previews
from know3d_cli.geometry import Asset3D
from know3d_cli.outputs import RESULTS_FILE, write_asset

FAILURE = "image not found: photos/missing.png"


def _picture(colour: tuple[int, int, int]) -> Image.Image:
    image = np.full((64, 64, 4), 0, np.uint8)
    image[12:52, 16:48] = (*colour, 255)
    return Image.fromarray(image)


def solid(mesh: trimesh.Trimesh, colour: tuple[float, float, float], resolution: int = 16) -> Asset3D:
    """`mesh` (TRELLIS.2 frame, inside the unit cube) as a generated asset whose every voxel has `colour`."""
    grid = torch.stack(torch.meshgrid(*[torch.arange(resolution)] * 3, indexing="ij"), -1).reshape(-1, 3)
    attrs = torch.tensor([*colour, 0.0, 0.6, 1.0]).expand(grid.shape[0], 6).clone()
    return Asset3D(torch.as_tensor(mesh.vertices, dtype=torch.float32), torch.as_tensor(mesh.faces),
                   "shape", resolution, voxel_coords=grid.to(torch.int32), voxel_attrs=attrs)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def finished_asset(out: Path, asset_id: str, cfg: ExportConfig, asset: Asset3D) -> dict:
    """A finished asset folder as the pipeline writes it (`outputs.write_asset`): model files, previews,
    input.png, back.png and metadata.json last."""
    exported = encode_mesh(asset, cfg)
    previews = render_previews(exported, cfg)
    rgb = tuple(int(255 * c) for c in asset.voxel_attrs[0, :3].tolist())
    files = {**exported.files, **previews.files, "input.png": _png(_picture(rgb)),
             "back.png": _png(_picture(tuple(255 - c for c in rgb)))}
    meta = {"schema_version": metadata.SCHEMA_VERSION, "id": asset_id, "back": f"the back of {asset_id}",
            "mode": {"requested": "auto", "used": "multiview"}, "seed": 7,
            "input": {"path": f"photos/{asset_id}.png"}, "trellis2": {"pipeline_type": "1024_cascade"},
            "export": {"format": cfg.format, **exported.summary(), "preview": previews.info},
            "geometry": {"vertices": exported.vertices, "faces": exported.faces},
            "timings_s": {"editor": 1.5, "trellis2": 2.0}, "warnings": ["a <b>warning</b> & more"],
            "files": sorted(files) + [metadata.METADATA_FILE]}
    out.mkdir(parents=True, exist_ok=True)
    write_asset(out, asset_id, {**files, metadata.METADATA_FILE: metadata.to_json_bytes(meta)})
    return meta


@pytest.fixture(scope="session")
def gallery_folder(tmp_path_factory) -> Path:
    """out/: `red` (a ball: GLB + turntable), `blue` (a box: OBJ), a failed `missing` row, and a torn last line in
    results.jsonl."""
    out = tmp_path_factory.mktemp("gallery") / "out"
    common = {"faces": 1500, "texture_size": 64, "preview_size": 96}
    ball = trimesh.creation.icosphere(subdivisions=3, radius=0.35)
    box = trimesh.creation.box(extents=(0.5, 0.3, 0.7))
    finished_asset(out, "red", ExportConfig(**common, turntable=True, turntable_frames=4), solid(ball, (0.9, 0.1, 0.1)))
    finished_asset(out, "blue", ExportConfig(**common, format=ExportFormat.obj), solid(box, (0.1, 0.2, 0.9)))
    events = [{"event": "asset", "id": "red", "status": "ok", "line": 2, "image": "photos/red.png"},
              {"event": "asset", "id": "missing", "status": "failed", "line": 3, "image": "photos/missing.png",
               "error": FAILURE, "code": "bad_input"},
              {"event": "asset", "id": "blue", "status": "ok", "line": 4, "image": "photos/blue.png"}]
    lines = [json.dumps(event) for event in events] + ['{"event": "asset", "id": "tor']
    (out / RESULTS_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out
