"""Asset export: GLB with baked PBR textures, OBJ + MTL + textures and PLY, placed for DCCs (writers return bytes;
they never touch disk), and the preview renders of the exported model (`export.preview`)."""

from .glb import to_glb
from .mesh_formats import EncodedMesh, encode_mesh, to_ply
from .obj import to_obj
from .placement import Placement
from .preview import PREVIEW_FILE, TURNTABLE_FILE, Previews, render_previews

__all__ = ["EncodedMesh", "PREVIEW_FILE", "Placement", "Previews", "TURNTABLE_FILE", "encode_mesh", "render_previews",
           "to_glb", "to_obj", "to_ply"]
