# ColorProp for Nuke: add this folder to NUKE_PATH. Runs in GUI and terminal (farm) sessions alike.
# It only makes the client importable: the plugin/ folder above this one holds colorprop_client,
# or set COLORPROP_CLIENT_PATH to a folder that holds it (e.g. a site-wide install).
import os
import sys


def _colorprop_paths():
    try:
        here = os.path.dirname(os.path.abspath(__file__))
    except NameError:  # older Nukes run init.py without __file__: find ourselves on sys.path
        here = next((p for p in sys.path if os.path.isdir(os.path.join(p, "colorprop_nuke"))), os.getcwd())
    client = os.environ.get("COLORPROP_CLIENT_PATH") or os.path.dirname(here)
    return [here, client]


for _p in _colorprop_paths():
    if _p not in sys.path:
        sys.path.append(_p)
del _p
