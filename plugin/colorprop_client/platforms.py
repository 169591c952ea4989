"""The pip platform tag of each host the DCC plug-ins run on: one table for the Blender extension build
(its wheels) and the Nuke install hint (``pip install --platform``). Standard library only.

Keys are Blender's platform names. macOS tags say 11.0, the oldest macOS that Blender and Nuke still run
on; pip also takes wheels tagged for older macOS (pyzmq ships 10.15 and universal2 wheels).
"""

from __future__ import annotations

import platform
import sys

PIP_PLATFORMS = {
    "linux-x64": "manylinux_2_28_x86_64",
    "linux-arm64": "manylinux_2_28_aarch64",
    "windows-x64": "win_amd64",
    "windows-arm64": "win_arm64",
    "macos-x64": "macosx_11_0_x86_64",
    "macos-arm64": "macosx_11_0_arm64",
}


def this_platform() -> str:
    """This machine's key in PIP_PLATFORMS."""
    arm = platform.machine().lower() in ("aarch64", "arm64")
    system = "linux" if sys.platform.startswith("linux") else "windows" if sys.platform == "win32" else "macos"
    return f"{system}-{'arm64' if arm else 'x64'}"


def pip_platform() -> str:
    """The pip platform tag of this machine's Python (for ``pip install --platform``)."""
    return PIP_PLATFORMS[this_platform()]
