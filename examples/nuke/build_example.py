"""Set up the example shot in Nuke: plate and key Reads feeding a ColorProp node.

    nuke -t examples/nuke/build_example.py [--server ADDRESS] [--colorize] [--save out.nk]

With NUKE_PATH=plugin/nuke. ``--colorize`` runs the node headless (as on the farm) and waits;
``--save`` writes the script (default: out/example_nuke/colorprop_example.nk).
examples/nuke/colorprop_example.nk is the same set-up, written by hand for opening in the GUI.
"""

from __future__ import annotations

import argparse
import os
import sys

import nuke

import colorprop_nuke.node as cpnode
from colorprop_client import dcc

SHOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "shot")


def build(server: str) -> "nuke.Node":
    plate = nuke.nodes.Read(name="Plate", file=os.path.join(SHOT, "plate.####.exr"), first=1, last=24, raw=True)
    key = nuke.nodes.Read(name="Key", file=os.path.join(SHOT, "key.####.exr"), first=1, last=1, raw=True)
    node = cpnode.create_node()
    node.setInput(0, plate)
    node.setInput(1, key)
    node["server"].setValue(server)
    node["keyframes"].setValue("1")
    node["frame_range"].setValue("1-24")
    return node


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", default=dcc.DEFAULT_ADDRESS)
    ap.add_argument("--colorize", action="store_true")
    ap.add_argument("--save", default=os.path.join("out", "example_nuke", "colorprop_example.nk"))
    args = ap.parse_args(argv)
    node = build(args.server)
    if args.colorize:
        cpnode.on_connect(node)
        cpnode.on_colorize(node)  # no GUI: runs in this thread
        print(node["status"].value())
    if args.save and hasattr(nuke, "scriptSaveAs"):
        os.makedirs(os.path.dirname(args.save) or ".", exist_ok=True)
        nuke.scriptSaveAs(args.save, overwrite=1)
    return 1 if node["status"].value().startswith("ERROR") else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
