"""Export fixtures: small blob assets with a known PBR voxel shell (the validator fixture is in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Optional

import pytest
import torch

from know3d_cli.trellis2.mesh import occupancy_to_mesh
from know3d_cli.geometry import Asset3D

# base colour (1, 0, 0), metallic 0.25, roughness 0.75, alpha 1
RED_PBR = (1.0, 0.0, 0.0, 0.25, 0.75, 1.0)


def blob_asset(
    centre: tuple[float, float, float] = (0.0, 0.0, 0.0),
    radius: float = 0.35,
    resolution: int = 32,
    pbr: Optional[tuple[float, ...]] = RED_PBR,
) -> Asset3D:
    """A ball surface (marching cubes) in TRELLIS.2's frame with, unless `pbr` is None, a shell of voxels around
    the surface that all carry the 6 attributes `pbr`."""
    g = (torch.arange(resolution) + 0.5) / resolution - 0.5
    x, y, z = torch.meshgrid(g, g, g, indexing="ij")
    distance = torch.sqrt((x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2)
    vertices, faces = occupancy_to_mesh((radius - distance) * resolution)
    if pbr is None:
        return Asset3D(vertices, faces, source_stage="ss", resolution=resolution)
    shell = (distance - radius).abs() < 2.0 / resolution
    coords = shell.nonzero().to(torch.int32)
    attrs = torch.tensor(pbr, dtype=torch.float32).expand(coords.shape[0], 6).clone()
    return Asset3D(vertices, faces, "ss", resolution, voxel_coords=coords, voxel_attrs=attrs)


@pytest.fixture(scope="session")
def make_blob() -> Callable[..., Asset3D]:
    """`blob_asset(centre, radius, resolution, pbr)`."""
    return blob_asset


@pytest.fixture(scope="session")
def red_sphere() -> Asset3D:
    """Textured ball of radius 0.35 at the origin (about 4.7k faces), every voxel RED_PBR."""
    return blob_asset()
