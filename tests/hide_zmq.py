"""A snippet for the DCC tests' child Pythons (Blender's, a stand-in Nuke's): run first, it keeps
``import zmq`` from finding the pyzmq in the venv's own site-packages, as in a stock Blender or Nuke
that has none; with the environment variable HIDE_ALL set, from anywhere. (This module holds no tests.)"""

import textwrap

HIDE_ZMQ = textwrap.dedent(r"""
    import importlib.machinery, os, sys

    class HideVenvZmq:
        venv_site = [p for p in sys.path if p.endswith("site-packages")]

        def find_spec(self, name, path=None, target=None):
            if name != "zmq":
                return None  # zmq's submodules are found inside whichever zmq package was found
            paths = [] if os.environ.get("HIDE_ALL") else [p for p in sys.path if p not in self.venv_site]
            spec = importlib.machinery.PathFinder.find_spec(name, paths)
            if spec is None:
                raise ModuleNotFoundError("No module named 'zmq'", name="zmq")
            return spec

    sys.meta_path.insert(0, HideVenvZmq())
""")
