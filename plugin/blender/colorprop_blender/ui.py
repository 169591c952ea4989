"""Settings (on the scene) and the panel in the Compositor's sidebar (N panel, tab ColorProp)."""

from __future__ import annotations

import bpy

from . import ops
from ._client import dcc

_method_items: list = []  # Blender needs the enum item strings kept alive


def _methods(self, context):
    methods, _ = dcc.method_choices(ops._caps or None)
    _method_items[:] = [(m, m, f"method {m}") for m in methods]
    return _method_items


class ColorPropKey(bpy.types.PropertyGroup):
    frame: bpy.props.IntProperty(name="Frame", description="Frame of the plate this key colours")
    path: bpy.props.StringProperty(name="Image", subtype="FILE_PATH", description="The coloured frame")


class ColorPropSuggestion(bpy.types.PropertyGroup):
    frame: bpy.props.IntProperty(name="Frame", description="A frame where a new key would help most")
    expected_error: bpy.props.FloatProperty(
        name="Expected Error",
        min=0.0,
        max=1.0,
        subtype="FACTOR",
        description="Expected share of pixels whose colour is wrong",
    )
    label: bpy.props.StringProperty(name="Label")


class ColorPropSettings(bpy.types.PropertyGroup):
    server: bpy.props.StringProperty(name="Server", default=dcc.DEFAULT_ADDRESS)
    plate: bpy.props.StringProperty(
        name="Plate",
        subtype="FILE_PATH",
        description="One frame of the image sequence (e.g. plate.0001.exr), or a movie",
    )
    keys: bpy.props.CollectionProperty(type=ColorPropKey)
    use_range: bpy.props.BoolProperty(name="Limit Frames", default=False)
    frame_start: bpy.props.IntProperty(name="Start", default=1)
    frame_end: bpy.props.IntProperty(name="End", default=250)
    method: bpy.props.EnumProperty(name="Method", items=_methods)
    quality: bpy.props.EnumProperty(
        name="Quality",
        default="standard",
        items=[(q, q.title(), f"working width {v['working_width']} px") for q, v in dcc.QUALITY_PRESETS.items()],
    )
    confidence: bpy.props.BoolProperty(
        name="Confidence Matte",
        default=False,
        description="Also write the confidence matte (white: likely right, dark: look here or add a key) as an "
        "image sequence of its own, with an Image node for it",
    )
    output_dir: bpy.props.StringProperty(
        name="Output",
        subtype="DIR_PATH",
        description="Folder for the coloured EXRs; empty: colorprop/ next to the .blend",
    )
    suggestions: bpy.props.CollectionProperty(type=ColorPropSuggestion)
    suggestions_for: bpy.props.StringProperty(
        name="Suggestions For", default="", description="The settings of the run the suggestions come from"
    )
    notes: bpy.props.StringProperty(
        name="Notes",
        default="",
        description="The server's notes on the last run (e.g. a key's alpha clamped), a line each",
    )
    status: bpy.props.StringProperty(name="Status", default="")
    live: bpy.props.BoolProperty(name="Live", default=False, description="A live session is open (colorprop.live)")
    progress: bpy.props.FloatProperty(name="Progress", min=0.0, max=1.0, subtype="FACTOR")


class ColorPropPreferences(bpy.types.AddonPreferences):
    """Who this Blender connects as: the artist's CURVE key and the server's public key (one per machine, not per
    scene). Empty: $COLORPROP_CURVE_KEYS, as every colorprop client reads it."""

    bl_idname = __package__
    client_key: bpy.props.StringProperty(
        name=dcc.CLIENT_KEY_LABEL.title(),
        subtype="FILE_PATH",
        description="This artist's CURVE key, NAME.key_secret from `colorprop keys DIR --client NAME` (a server off "
        "this machine requires one); empty: $COLORPROP_CURVE_KEYS/<$COLORPROP_CURVE_NAME or client>"
        ".key_secret, or none",
    )
    server_key: bpy.props.StringProperty(
        name=dcc.SERVER_KEY_LABEL.title(),
        subtype="FILE_PATH",
        description="The server's public key, server.key from its keys folder; empty: server.key beside the client key",
    )

    def draw(self, context):
        self.layout.prop(self, "client_key")
        self.layout.prop(self, "server_key")
        _draw_identity(self.layout, context)


def _draw_identity(layout, context) -> None:
    try:
        layout.label(text="Connects " + dcc.identity_text(ops.addon_curve_keys(context)))
    except dcc.ColorizeError as exc:
        layout.label(text=str(exc), icon="ERROR")


class COLORPROP_PT_panel(bpy.types.Panel):
    bl_label = "ColorProp"
    bl_space_type = "NODE_EDITOR"
    bl_region_type = "UI"
    bl_category = "ColorProp"

    @classmethod
    def poll(cls, context):
        return getattr(context.space_data, "tree_type", "") == "CompositorNodeTree"

    def draw(self, context):
        st = context.scene.colorprop
        col = self.layout.column()
        row = col.row(align=True)
        row.prop(st, "server")
        row.operator("colorprop.connect", text="", icon="FILE_REFRESH")
        _draw_identity(col, context)  # the keys are add-on preferences
        col.prop(st, "plate")
        col.label(text="Keyframes:")
        for i, key in enumerate(st.keys):
            row = col.row(align=True)
            row.prop(key, "frame", text="")
            row.prop(key, "path", text="")
            row.operator("colorprop.key_remove", text="", icon="X").index = i
        col.operator("colorprop.key_add", icon="ADD")
        col.prop(st, "use_range")
        if st.use_range:
            row = col.row(align=True)
            row.prop(st, "frame_start")
            row.prop(st, "frame_end")
        col.prop(st, "method")
        col.prop(st, "quality")
        col.prop(st, "confidence")
        col.prop(st, "output_dir")
        col.operator("colorprop.colorize", icon="COLOR")
        col.operator("colorprop.suggest_keys", icon="VIEWZOOM")
        row = col.row(align=True)
        row.operator("colorprop.live", text="Stop Live" if st.live else "Live", icon="PLAY", depress=st.live)
        row.operator("colorprop.live_keys", icon="FILE_REFRESH")
        if st.suggestions:
            box = col.box()
            box.label(text="Suggested keys (click to go there):")
            for suggestion in st.suggestions:
                box.operator("colorprop.goto_frame", text=suggestion.label).frame = suggestion.frame
        for note in st.notes.splitlines():
            col.label(text=dcc.note_text(note), icon="INFO")
        if st.status:
            if st.status.startswith("ERROR"):
                col.label(text=st.status, icon="ERROR")
            else:
                col.progress(factor=st.progress, text=st.status)


classes = (ColorPropPreferences, ColorPropKey, ColorPropSuggestion, ColorPropSettings, COLORPROP_PT_panel)
