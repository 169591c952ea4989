"""The bpy side of the add-on: read frames, write EXRs, add the Image node. Main thread only."""

from __future__ import annotations

import os
import re
import tempfile

import bpy
import numpy as np

from . import logic
from ._client import dcc


def load_rgb(path: str, alpha: bool = False) -> np.ndarray:
    """Any image Blender reads -> HxWx3 float32 scene-linear, top row first; with ``alpha`` HxWx4 straight RGBA
    when the image has 4 channels (a key's alpha makes a partial key: ``dcc.key_and_matte``)."""
    if not os.path.isfile(path):
        raise dcc.ColorizeError(f"{path}: no such file")
    img = bpy.data.images.load(path, check_existing=False)
    try:
        w, h = img.size
        if w == 0 or h == 0:
            raise dcc.ColorizeError(f"{path}: Blender cannot read this image")
        flat = np.empty(w * h * img.channels, np.float32)
        img.pixels.foreach_get(flat)
        rgb = logic.blender_to_hwc(flat, w, h, img.channels, alpha)
        # Float images (EXR) come scene-linear; byte images come in their own encoding (the alpha is linear).
        if not img.is_float and img.colorspace_settings.name.lower().startswith("srgb"):
            rgb[..., :3] = logic.srgb_to_linear(rgb[..., :3])
        if img.is_float and rgb.shape[2] == 4:  # Blender holds float images premultiplied (byte ones straight)
            colour, matte = dcc.key_and_matte(rgb, path, premultiplied=True)
            rgb = rgb if matte is None else np.dstack([colour, matte])
        return rgb
    finally:
        bpy.data.images.remove(img)


class ExrWriter:
    """Writes HxWx3 (top row first) as scene-linear 32-bit float EXRs.

    ``Image.save()`` encodes a generated float image into a display space (9.0 lands on disk as
    ~2.6); ``Image.save_render`` with EXR settings keeps scene-linear values. Those settings live
    on a throw-away scene so the artist's own output settings are left alone."""

    def __init__(self) -> None:
        self.scene = bpy.data.scenes.new("colorprop_exr_settings")
        fmt = self.scene.render.image_settings
        fmt.media_type = "IMAGE"  # Blender 5.0: the media type first, then the EXR format
        fmt.file_format = "OPEN_EXR"
        fmt.color_depth = "32"
        fmt.exr_codec = "ZIP"

    def save(self, path: str, rgb: np.ndarray) -> None:
        h, w, _ = rgb.shape
        img = bpy.data.images.new("colorprop_out", w, h, alpha=True, float_buffer=True)
        img.colorspace_settings.name = scene_linear_name()
        tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp-{os.getpid()}.exr")
        try:
            img.pixels.foreach_set(logic.hwc_to_blender(rgb))
            img.save_render(tmp, scene=self.scene)
            os.replace(tmp, path)  # readers never see a half-written frame
        finally:
            bpy.data.images.remove(img)
            if os.path.exists(tmp):
                os.remove(tmp)

    def close(self) -> None:
        if self.scene is not None:
            bpy.data.scenes.remove(self.scene)
            self.scene = None


def scene_linear_name() -> str:
    """The colour space name of the scene-linear role ("Linear Rec.709" in Blender's default config)."""
    names = bpy.types.ColorManagedInputColorspaceSettings.bl_rna.properties["name"].enum_items.keys()
    for candidate in ("Linear Rec.709", "Linear", "scene_linear"):
        if candidate in names:
            return candidate
    return next((n for n in names if "linear" in n.lower()), names[0])


def movie_to_exrs(movie: str, out_dir: str) -> tuple[str, list[int]]:
    """Decode a movie to scene-linear EXRs with a compositor-only render in a throw-away scene."""
    clip = bpy.data.images.load(movie, check_existing=False)
    scene = bpy.data.scenes.new("colorprop_decode")
    tree = bpy.data.node_groups.new("colorprop_decode", "CompositorNodeTree")
    try:
        if clip.source != "MOVIE" or clip.frame_duration < 1:
            raise dcc.ColorizeError(f"{movie}: Blender cannot read this movie")
        n = clip.frame_duration
        scene.compositing_node_group = tree
        node = tree.nodes.new("CompositorNodeImage")
        node.image, node.frame_start, node.frame_duration = clip, 1, n
        out = tree.nodes.new("CompositorNodeOutputFile")
        out.directory, out.file_name = out_dir + os.sep, "frame."
        out.format.media_type = "IMAGE"  # Blender 5.0: choose the media type before the EXR format
        out.format.file_format = "OPEN_EXR"
        out.format.color_depth = "32"
        out.file_output_items.new("RGBA", "rgb")
        tree.links.new(node.outputs["Image"], out.inputs[0])
        scene.render.resolution_x, scene.render.resolution_y = clip.size
        scene.render.resolution_percentage = 100
        scene.frame_start, scene.frame_end = 1, n
        scene.render.filepath = os.path.join(out_dir, "unused_")
        with bpy.context.temp_override(scene=scene):
            bpy.ops.render.render(animation=True, scene=scene.name)
        return logic.sequence_of(os.path.join(out_dir, "frame.rgb0001.exr"))
    finally:
        bpy.data.scenes.remove(scene)
        bpy.data.node_groups.remove(tree)
        bpy.data.images.remove(clip)


def output_folder(chosen: str) -> str:
    """The chosen folder, else ``colorprop/`` next to the .blend, else a temp folder (unsaved file)."""
    if chosen.strip():
        return bpy.path.abspath(chosen)
    if bpy.data.filepath:
        return os.path.join(os.path.dirname(bpy.data.filepath), "colorprop")
    return os.path.join(tempfile.gettempdir(), "colorprop")


def compositor_tree(scene: "bpy.types.Scene") -> "bpy.types.NodeTree":
    """The scene's compositor tree (Blender 5.0: ``scene.compositing_node_group``), made if absent."""
    tree = scene.compositing_node_group
    if tree is None:
        tree = bpy.data.node_groups.new(f"{scene.name} Compositor", "CompositorNodeTree")
        tree.interface.new_socket("Image", in_out="OUTPUT", socket_type="NodeSocketColor")
        scene.compositing_node_group = tree
    return tree


def add_result_node(scene: "bpy.types.Scene", pattern: str, frames: list[int]) -> "bpy.types.Node":
    """An Image node reading the coloured EXR sequence, wired to a Viewer and, when nothing feeds
    it yet, to the tree's Group Output."""
    tree = compositor_tree(scene)
    first = frames[0]
    image = bpy.data.images.load(dcc.frame_path(pattern, first), check_existing=False)
    image.source = "SEQUENCE"
    image.name = re.sub(r"[._-]?#+", "", os.path.basename(pattern))
    node = tree.nodes.new("CompositorNodeImage")
    node.name = node.label = "ColorProp " + image.name
    node.image = image
    node.frame_start = first  # scene frame `first` shows file `first`
    node.frame_offset = first - 1
    node.frame_duration = frames[-1] - first + 1
    node.location = (-300, -300 * sum(1 for n in tree.nodes if n.bl_idname == "CompositorNodeImage"))
    viewer = tree.nodes.new("CompositorNodeViewer")
    viewer.location = (node.location[0] + 300, node.location[1])
    tree.links.new(node.outputs["Image"], viewer.inputs[0])
    group_out = next((n for n in tree.nodes if n.bl_idname == "NodeGroupOutput"), None)
    if group_out is None:
        group_out = tree.nodes.new("NodeGroupOutput")
        group_out.location = (400, 0)
    if len(tree.interface.items_tree) == 0:
        tree.interface.new_socket("Image", in_out="OUTPUT", socket_type="NodeSocketColor")
    if group_out.inputs and not group_out.inputs[0].is_linked:
        tree.links.new(node.outputs["Image"], group_out.inputs[0])
    return node
