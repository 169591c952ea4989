"""ColorProp for Blender: colour a plate from keyframes on a colorprop server (Compositor sidebar)."""

bl_info = {
    "name": "ColorProp",
    "author": "colorprop",
    "version": (0, 1, 0),
    "blender": (5, 0, 0),
    "location": "Compositor > Sidebar > ColorProp",
    "description": "Deep video colour propagation through a colorprop server",
    "category": "Compositing",
}


def register():
    import bpy

    from . import ops, ui

    for cls in ui.classes + ops.classes:
        bpy.utils.register_class(cls)
    bpy.types.Scene.colorprop = bpy.props.PointerProperty(type=ui.ColorPropSettings)


def unregister():
    import bpy

    from . import ops, ui

    del bpy.types.Scene.colorprop
    for cls in reversed(ui.classes + ops.classes):
        bpy.utils.unregister_class(cls)
