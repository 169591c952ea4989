# ColorProp for Nuke: the node menu (GUI sessions only; init.py set up the paths).
import nuke

_toolbar = nuke.menu("Nodes")
_menu = _toolbar.addMenu("ColorProp")
_menu.addCommand("ColorProp", "import colorprop_nuke.node; colorprop_nuke.node.create_node()")
