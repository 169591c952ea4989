"""The layering the design promises: core never imports zmq/nuke/bpy; the DCC client never imports torch/OIIO."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import colorprop

CORE = Path(colorprop.__file__).parent


def imported_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys; print(' '.join(sys.modules))"],
                         capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_core_never_imports_zmq_nuke_or_bpy():
    modules = [m.name for m in pkgutil.walk_packages([str(CORE)], "colorprop.") if not m.name.endswith("__main__")]
    assert "colorprop.shot.pipeline" in modules and "colorprop.engine.nets.fusion_net" in modules
    loaded = imported_after("import importlib\n" + "\n".join(f"importlib.import_module({m!r})" for m in modules)
                            + "\nimport colorprop.cli.main as c; c.build_parser()")
    assert not {"zmq", "nuke", "bpy"} & loaded
    for path in CORE.rglob("*.py"):
        text = path.read_text()
        assert "import zmq" not in text and "from zmq" not in text, path


def test_client_imports_without_torch_or_openimageio():
    loaded = imported_after("import colorprop_client.client, colorprop_client.protocol")
    assert "zmq" in loaded
    assert not {"torch", "OpenImageIO", "cv2", "colorprop"} & loaded
