"""Asset export: GLB with baked PBR textures, OBJ + MTL + textures and PLY, placed for DCCs (writers return bytes;
they never touch disk)."""

from .glb import to_glb
from .mesh_formats import FORMATS, ExportedModel, export_asset, to_ply
from .obj import to_obj
from .placement import ORIGINS, Placement

__all__ = ["FORMATS", "ORIGINS", "ExportedModel", "Placement", "export_asset", "to_glb", "to_obj", "to_ply"]
