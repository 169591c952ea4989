# ColorProp for Nuke: add this folder to NUKE_PATH. Runs in GUI and terminal (farm) sessions alike.
# It only makes the client importable: the plugin/ folder above this one holds colorprop_client,
# or set COLORPROP_CLIENT_PATH to a folder that holds it (e.g. a site-wide install). pyzmq for Nuke's
# Python goes into site-packages/ here (or COLORPROP_NUKE_SITE): see docs/DCC.md, "Install".
import os
import site
import sys


def _colorprop_paths():
    try:
        here = os.path.dirname(os.path.abspath(__file__))
    except NameError:  # older Nukes run init.py without __file__: find ourselves on sys.path
        here = next((p for p in sys.path if os.path.isdir(os.path.join(p, "colorprop_nuke"))), os.getcwd())
    client = os.environ.get("COLORPROP_CLIENT_PATH") or os.path.dirname(here)
    packages = os.environ.get("COLORPROP_NUKE_SITE") or os.path.join(here, "site-packages")
    return [here, client], packages


_paths, _packages = _colorprop_paths()
for _p in _paths:
    if _p not in sys.path:
        sys.path.append(_p)
if os.path.isdir(_packages):
    site.addsitedir(_packages)
del _p, _paths, _packages
