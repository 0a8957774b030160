"""Run by a Python that has Blender's `bpy` module (not the test environment): import each model file with
Blender's own importers and write what Blender sees as JSON.

    python blender_import.py OUT.json model.glb model.obj model.ply

Per file: every mesh object's face count, world bounding box (Blender's frame: Z up) and, per material, the links
of its node tree as (from node type, image name, image size, from socket, to socket). PLY has no axis convention;
it is imported with Up Axis = Y, as the README tells Blender users.
"""

import json
import sys

import bpy
from mathutils import Vector


def import_file(path: str) -> None:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    if path.endswith((".glb", ".gltf")):
        bpy.ops.import_scene.gltf(filepath=path)
    elif path.endswith(".obj"):
        bpy.ops.wm.obj_import(filepath=path)
    elif path.endswith(".ply"):
        bpy.ops.wm.ply_import(filepath=path, forward_axis="NEGATIVE_Z", up_axis="Y")
    else:
        raise SystemExit(f"unsupported file {path}")


def describe() -> list[dict]:
    objects = []
    for obj in bpy.data.objects:
        if obj.type != "MESH":
            continue
        corners = [obj.matrix_world @ Vector(corner) for corner in obj.bound_box]
        materials = []
        for slot in obj.material_slots:
            material = slot.material
            links = []
            if material is not None and material.node_tree is not None:
                for link in material.node_tree.links:
                    image = getattr(link.from_node, "image", None)
                    links.append([link.from_node.bl_idname, image.name if image else None,
                                  list(image.size) if image else None, link.from_socket.name, link.to_socket.name])
            materials.append({"name": material.name if material else None, "links": links})
        objects.append({"name": obj.name, "faces": len(obj.data.polygons),
                        "min": [min(c[i] for c in corners) for i in range(3)],
                        "max": [max(c[i] for c in corners) for i in range(3)], "materials": materials})
    return objects


def main() -> None:
    out, paths = sys.argv[1], sys.argv[2:]
    report = {}
    for path in paths:
        import_file(path)
        report[path] = describe()
    with open(out, "w") as fh:
        json.dump(report, fh)


main()
