"""The colorprop client the add-on uses: the copy bundled inside the installed add-on, else (running
from the repository, plugin/ on sys.path) the one there. Decided by what is on disk, not by catching
ImportError, so a missing pyzmq is reported as that (``dcc`` says how to fix it)."""

import os

if os.path.isdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), "colorprop_client")):
    from .colorprop_client import dcc, dcc_live, protocol  # noqa: F401
else:
    from colorprop_client import dcc, dcc_live, protocol  # noqa: F401
