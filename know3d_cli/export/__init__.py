"""Asset export: GLB with baked PBR textures, OBJ and PLY (writers return bytes; they never touch disk)."""

from .glb import to_glb
from .mesh_formats import EncodedMesh, encode_mesh, to_obj, to_ply

__all__ = ["EncodedMesh", "encode_mesh", "to_glb", "to_obj", "to_ply"]
