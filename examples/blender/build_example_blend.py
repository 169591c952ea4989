"""Build a .blend for the example shot: the plate sequence in the compositor and the ColorProp
settings filled in (plate, key at frame 1, method flow).

    .venv-blender/bin/python examples/blender/build_example_blend.py [--out out/example_blender/shot.blend]
        [--server ADDRESS] [--colorize]
    # or with a Blender install:  blender -b -P examples/blender/build_example_blend.py -- --colorize

The extension must be installed (plugin/blender/build_extension.py makes the zip); when it is not,
the script builds it and installs it into Blender's user extensions. ``--colorize`` runs the operator
(needs `colorprop serve`); the coloured EXRs land in colorprop/ next to the .blend.
"""

from __future__ import annotations

import argparse
import os
import sys

import bpy

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHOT = os.path.join(REPO, "examples", "shot")


MODULE = "bl_ext.user_default.colorprop"  # the extension's module once installed in the user repository


def ensure_addon() -> None:
    """Install the freshly built extension (plugin/blender/build_extension.py) unless it is installed."""
    if MODULE in bpy.context.preferences.addons:
        return
    # Load the builder by path: plugin/blender on sys.path would make the source folder importable
    # (without the bundled client and wheels) instead of the installed extension.
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "build_extension", os.path.join(REPO, "plugin", "blender", "build_extension.py")
    )
    build_extension = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build_extension)
    zip_path = build_extension.build(os.path.join(REPO, "dist"))
    bpy.ops.extensions.package_install_files(filepath=str(zip_path), repo="user_default", enable_on_install=True)


def build(out: str, server: str) -> None:
    scene = bpy.context.scene
    scene.frame_start, scene.frame_end = 1, 24
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 480, 270, 100
    tree = scene.compositing_node_group
    if tree is None:
        tree = bpy.data.node_groups.new("Compositor", "CompositorNodeTree")
        tree.interface.new_socket("Image", in_out="OUTPUT", socket_type="NodeSocketColor")
        scene.compositing_node_group = tree
    plate = bpy.data.images.load(os.path.join(SHOT, "plate.0001.exr"))
    plate.source = "SEQUENCE"
    node = tree.nodes.new("CompositorNodeImage")
    node.image, node.frame_start, node.frame_duration, node.label = plate, 1, 24, "Plate (gray)"
    node.location = (-300, 200)
    st = scene.colorprop
    st.server = server
    st.plate = os.path.join(SHOT, "plate.0001.exr")
    key = st.keys.add()
    key.frame, key.path = 1, os.path.join(SHOT, "key.0001.exr")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    bpy.ops.wm.save_as_mainfile(filepath=os.path.abspath(out))


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(REPO, "out", "example_blender", "colorprop_example.blend"))
    ap.add_argument("--server", help="default: $COLORPROP_SERVER, else tcp://127.0.0.1:5557")
    ap.add_argument("--colorize", action="store_true")
    args = ap.parse_args(argv)
    ensure_addon()
    import importlib

    dcc = importlib.import_module(MODULE + "._client").dcc

    build(args.out, args.server or dcc.DEFAULT_ADDRESS)
    if args.colorize:
        bpy.ops.colorprop.connect()
        bpy.context.scene.colorprop.method = "flow"
        bpy.ops.colorprop.colorize()
        bpy.ops.wm.save_mainfile()
    print(bpy.context.scene.colorprop.status or f"saved {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else sys.argv[1:]))
