"""ColorProp for Blender: colour a plate from keyframes on a colorprop server (Compositor sidebar).

A Blender extension: blender_manifest.toml holds its name, version and the bundled pyzmq wheels
(plugin/blender/build_extension.py builds it)."""


def register():
    import bpy

    from . import live, ops, ui

    for cls in ui.classes + ops.classes + live.classes:
        bpy.utils.register_class(cls)
    bpy.types.Scene.colorprop = bpy.props.PointerProperty(type=ui.ColorPropSettings)


def unregister():
    import bpy

    from . import live, ops, ui

    for run in list(live._runs.values()):
        run.stop()
    del bpy.types.Scene.colorprop
    for cls in reversed(ui.classes + ops.classes + live.classes):
        bpy.utils.unregister_class(cls)
