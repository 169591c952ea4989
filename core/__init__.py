"""colorprop engine: EXR plates in, three networks, colour out.

Import names: ``colorprop`` (this folder, core/), ``colorprop_server`` (server/),
``colorprop_client`` (plugin/colorprop_client). This package never imports zmq, nuke or bpy.
"""

__version__ = "0.1.0"
