"""TRELLIS.2 (clean-room): networks, sparse ops, sampler, mesh extraction, and the image-to-3D generator."""

from .conditioning import DinoV3Conditioner
from .generate import Trellis2Generator, Trellis2Stats
from ..geometry import Asset3D

__all__ = ["Asset3D", "DinoV3Conditioner", "Trellis2Generator", "Trellis2Stats"]
