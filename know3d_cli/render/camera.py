"""Orbit cameras around a model in glTF's frame (+Y up, the asset's front facing +Z).

Azimuth turns around +Y: 0 puts the camera on +Z looking at the front, 90 on +X, 180 behind (-Z), 270 on -X.
Elevation lifts the camera above the horizontal plane. Cameras look at the framed centre and keep +Y up on screen;
poses are OpenGL camera-to-world matrices (the camera looks down its -Z axis).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

UNIT_CUBE_RADIUS = math.sqrt(3) / 2  # bounding sphere of TRELLIS.2's normalised [-0.5, 0.5]^3


@dataclass(frozen=True)
class OrbitView:
    azimuth: float  # degrees around +Y; 0 = camera on +Z (front), 90 = on +X, 180 = behind
    elevation: float = 0.0  # degrees above the horizontal plane (|elevation| < 90)


@dataclass(frozen=True)
class Framing:
    center: tuple[float, float, float]  # point the cameras look at
    radius: float  # radius of the sphere that must stay in view


def orbit_pose(view: OrbitView, center: np.ndarray, distance: float) -> np.ndarray:
    """(4, 4) float64 camera-to-world pose of `view` at `distance` from `center`."""
    az, el = math.radians(view.azimuth), math.radians(view.elevation)
    back = np.array([math.sin(az) * math.cos(el), math.sin(el), math.cos(az) * math.cos(el)])  # camera +Z
    right = np.array([math.cos(az), 0.0, -math.sin(az)])  # horizontal, so +Y stays up on screen
    up = np.cross(back, right)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2] = right, up, back
    pose[:3, 3] = np.asarray(center, dtype=np.float64) + distance * back
    return pose


def cardinal_views(elevation: float = 0.0) -> list[OrbitView]:
    """Front, right (+X), back and left (-X) views at one elevation."""
    return [OrbitView(azimuth, elevation) for azimuth in (0.0, 90.0, 180.0, 270.0)]


def turntable_views(frames: int, elevation: float = 15.0, start: float = 0.0) -> list[OrbitView]:
    """`frames` views evenly spaced over a full turn (a loop: the last frame stops short of the first)."""
    return [OrbitView(start + 360.0 * i / frames, elevation) for i in range(frames)]


__all__ = ["Framing", "OrbitView", "UNIT_CUBE_RADIUS", "cardinal_views", "orbit_pose", "turntable_views"]
