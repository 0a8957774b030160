"""The procedural back-part family: every base x part, a held-out split, textured GLBs whose part is only behind."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from know3d_cli.data.procedural import BODIES, PARTS, AssetSpec, asset_mesh, family, held_out_split, write_family


def test_family_covers_every_base_and_part_once():
    specs = family()
    assert len(specs) == len(BODIES) * 2 * len(PARTS)
    assert len({(s.base, s.part) for s in specs}) == len(specs)
    assert family() == specs  # seeded colours


def test_held_out_split_holds_each_part_out_somewhere_and_trains_every_base():
    specs = family(parts=("handle", "pocket", "fin", "none"))
    train, test = held_out_split(specs)
    assert len(test) == 8 and len(train) == len(specs) - 8
    assert {s.part for s in test} == {"handle", "pocket", "fin", "none"}
    assert {s.base for s in train} == {s.base for s in specs}
    assert not {(s.base, s.part) for s in train} & {(s.base, s.part) for s in test}


@pytest.mark.parametrize("body", BODIES)
def test_the_part_sits_behind_the_body_inside_its_front_silhouette(body):
    scene = asset_mesh(AssetSpec(body, "tall", "handle", 0))
    body_mesh, part = scene.geometry["body"], scene.geometry["handle"]
    lo, hi = body_mesh.bounds
    assert part.bounds[0][2] < lo[2] - 0.1  # sticks out of the back (-z, glTF frame)
    assert part.bounds[1][2] < hi[2]  # nowhere near the front
    # seen from the front (+z), the part hides behind the body: its x-y extent lies inside the body's
    assert (part.bounds[0][:2] >= lo[:2] - 1e-6).all() and (part.bounds[1][:2] <= hi[:2] + 1e-6).all()
    assert len(asset_mesh(AssetSpec(body, "wide", "none", 0)).geometry) == 1


def test_written_family_loads_as_textured_assets_with_captions(tmp_path):
    from know3d_cli.config import load_config
    from know3d_cli.data import load_asset

    specs = [AssetSpec("cylinder", "wide", "fin", 2), AssetSpec("box", "tall", "none", 1)]
    manifest = write_family(specs, tmp_path)
    rows = list(csv.DictReader(manifest.open()))
    assert [(r["id"], r["caption"]) for r in rows] == [(s.id, s.caption) for s in specs]
    assert rows[0]["caption"] == "a tall thin fin" and rows[1]["caption"] == ""
    asset = load_asset(tmp_path / rows[0]["asset"], load_config([]).data.asset)
    assert len(asset.materials) == 2 and asset.uv is not None
    assert np.ptp(asset.vertices, axis=0).max() == pytest.approx(0.99999, abs=1e-4)
