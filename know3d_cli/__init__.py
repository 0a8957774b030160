"""know3d: one photo plus a sentence about its hidden back side -> a textured 3D asset."""

__version__ = "0.1.0"
__all__ = ["__version__"]
