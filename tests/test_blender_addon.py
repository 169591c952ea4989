"""The Blender add-on in real Blender: bpy 5.0.1 (PyPI) in its own venv, .venv-blender.

The test builds the add-on zip, then runs a script under .venv-blender's Python (Blender's numpy<2,
pyzmq, no torch) that installs and enables the add-on, builds a scene around an EXR sequence (the
example shot), runs the Colorize operator against a real `colorprop serve` on 127.0.0.1 (method
flow: no weights needed), and reports what it made. Here the files are checked with OpenImageIO:
colour appears, luminance is unchanged, nothing is flipped.

The venv is made by `make blender-venv` (~360 MB download once). COLORPROP_SKIP_BLENDER=1 skips.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from serverkit import spawn, stop_proc, wait_hello

ROOT = Path(__file__).resolve().parents[1]
SHOT = ROOT / "examples" / "shot"
BLENDER_PY = ROOT / ".venv-blender" / "bin" / "python"
FRAMES = range(1, 7)

pytestmark = pytest.mark.skipif(os.environ.get("COLORPROP_SKIP_BLENDER") == "1", reason="COLORPROP_SKIP_BLENDER=1")

SCRIPT = textwrap.dedent(r'''
    import json, os, sys, time
    import bpy, numpy, zmq

    zip_path, address, dead_address, plate0, key_path, result_json = sys.argv[-6:]
    out = {"numpy": numpy.__version__, "blender": bpy.app.version_string}

    bpy.ops.preferences.addon_install(filepath=zip_path, overwrite=True)
    bpy.ops.preferences.addon_enable(module="colorprop_blender")
    import colorprop_blender
    out["addon_file"] = colorprop_blender.__file__

    # A scene around the EXR sequence: the plate in the compositor, saved so outputs go next to it.
    scene = bpy.context.scene
    scene.frame_start, scene.frame_end = 1, 6
    tree = bpy.data.node_groups.new("Compositor", "CompositorNodeTree")
    tree.interface.new_socket("Image", in_out="OUTPUT", socket_type="NodeSocketColor")
    scene.compositing_node_group = tree
    plate_img = bpy.data.images.load(plate0)
    plate_img.source = "SEQUENCE"
    plate_node = tree.nodes.new("CompositorNodeImage")
    plate_node.image, plate_node.frame_duration = plate_img, 6
    bpy.ops.wm.save_as_mainfile(filepath=os.path.join(os.path.dirname(result_json), "shot.blend"))

    st = scene.colorprop
    st.server, st.plate = dead_address, plate0
    key = st.keys.add()
    key.frame, key.path = 1, key_path
    t0 = time.monotonic()
    try:  # an operator that reports an ERROR raises RuntimeError when called from a script
        out["dead_result"] = list(bpy.ops.colorprop.colorize())
    except RuntimeError as exc:
        out["dead_result"] = ["CANCELLED", str(exc)]
    out["dead_seconds"] = time.monotonic() - t0
    out["dead_status"] = st.status

    st.server = address
    out["connect"] = list(bpy.ops.colorprop.connect())
    st.method, st.quality = "flow", "draft"
    nodes_before = set(tree.nodes.keys())
    t0 = time.monotonic()
    out["result"] = list(bpy.ops.colorprop.colorize())
    out["seconds"] = time.monotonic() - t0
    out["status"] = st.status
    new = [tree.nodes[n] for n in tree.nodes.keys() if n not in nodes_before]
    out["new_nodes"] = [n.bl_idname for n in new]
    img_node = next(n for n in new if n.bl_idname == "CompositorNodeImage")
    out["image"] = {"filepath": bpy.path.abspath(img_node.image.filepath), "source": img_node.image.source,
                    "frame_start": img_node.frame_start, "frame_offset": img_node.frame_offset,
                    "frame_duration": img_node.frame_duration}
    out["links_from_result"] = sorted(l.to_node.bl_idname for l in tree.links if l.from_node == img_node)

    # Cancel, in Blender's Python: the client loop stops within one request once asked.
    from colorprop_blender import blender_io, logic
    from colorprop_blender._client import dcc
    out["client_file"] = dcc.__file__
    written = []
    def write(frame, rgb, confidence):
        written.append(frame)
    plate_pattern, frames = logic.sequence_of(plate0)
    shot = dcc.InbandShot(lambda f: blender_io.load_rgb(dcc.frame_path(plate_pattern, f)),
                          {1: blender_io.load_rgb(key_path)}, write)
    try:
        dcc.run_job(address, frames, shot, {"method": "flow"}, is_cancelled=lambda: len(written) >= 2)
        out["cancel"] = "not cancelled"
    except dcc.Cancelled:
        out["cancel"] = "cancelled"
    out["cancel_written"] = written
    json.dump(out, open(result_json, "w"), indent=1)
''')


@pytest.fixture(scope="module")
def blender_python() -> Path:
    if not (ROOT / ".venv-blender" / ".installed").exists():
        proc = subprocess.run(["make", "-s", "blender-venv"], cwd=ROOT, capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            pytest.fail(f"`make blender-venv` failed (bpy 5.0.1 needs PyPI):\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return BLENDER_PY


@pytest.fixture(scope="module")
def server(free_port):
    """A real `colorprop serve` process on 127.0.0.1 (flow only)."""
    address = f"tcp://127.0.0.1:{free_port()}"
    proc = spawn(["serve", "--bind", address, "--log-level", "WARNING"])
    try:
        wait_hello(address, proc)
        yield address
    finally:
        stop_proc(proc)


def _luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb @ np.array([0.2126, 0.7152, 0.0722], np.float32)


def _read(path: Path) -> np.ndarray:
    oiio = pytest.importorskip("OpenImageIO")
    buf = oiio.ImageBuf(str(path))
    px = buf.get_pixels(oiio.FLOAT)
    names = buf.spec().channelnames
    if names[:1] == ("Y",):
        return np.repeat(px[..., :1], 3, axis=2)
    return px[..., [names.index(c) for c in "RGB"]]


def test_addon_colours_an_exr_sequence_in_real_blender(blender_python, server, tmp_path, free_port):
    sys.path.insert(0, str(ROOT / "plugin" / "blender"))
    import build_extension

    zip_path = build_extension.build(tmp_path / "dist")
    shot = tmp_path / "shot"
    shot.mkdir()
    for f in FRAMES:
        shutil.copy(SHOT / f"plate.{f:04d}.exr", shot)
    shutil.copy(SHOT / "key.0001.exr", tmp_path / "key_painted.exr")
    script = tmp_path / "run_addon.py"
    script.write_text(SCRIPT)
    result_json = tmp_path / "result.json"
    env = {**os.environ, "BLENDER_USER_SCRIPTS": str(tmp_path / "user_scripts"), "PYTHONNOUSERSITE": "1"}
    env.pop("PYTHONPATH", None)  # Blender's Python must find the client only inside the add-on zip
    args = [str(zip_path), server, f"tcp://127.0.0.1:{free_port()}", str(shot / "plate.0001.exr"),
            str(tmp_path / "key_painted.exr"), str(result_json)]
    proc = subprocess.run([str(blender_python), str(script), *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and result_json.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads(result_json.read_text())

    assert res["blender"].startswith("5.0") and res["numpy"].startswith("1.")
    assert str(tmp_path / "user_scripts") in res["addon_file"]  # the installed zip, not the repo
    assert str(tmp_path / "user_scripts") in res["client_file"]  # and the client bundled in it
    # a dead server: a clear message within a few seconds
    assert res["dead_result"][0] == "CANCELLED" and res["dead_seconds"] < 6
    assert "no colorprop server answers" in res["dead_result"][1]
    assert "no colorprop server answers" in res["dead_status"]
    # the run
    assert res["connect"] == ["FINISHED"] and res["result"] == ["FINISHED"], res["status"]
    assert res["status"].startswith("done: 6 frames")
    # the scene had no Group Output yet: the add-on made one and fed it (it never replaces a used one)
    assert sorted(res["new_nodes"]) == ["CompositorNodeImage", "CompositorNodeViewer", "NodeGroupOutput"]
    assert res["links_from_result"] == ["CompositorNodeViewer", "NodeGroupOutput"]
    image = res["image"]
    assert image["source"] == "SEQUENCE" and (image["frame_start"], image["frame_duration"]) == (1, 6)
    out_dir = tmp_path / "colorprop"  # next to the saved .blend
    assert Path(image["filepath"]).parent == out_dir
    outputs = sorted(out_dir.glob("plate_colorprop.*.exr"))
    assert [p.name for p in outputs] == [f"plate_colorprop.{f:04d}.exr" for f in FRAMES]
    assert not list(out_dir.glob(".*"))  # no temp files left behind
    # the pixels
    key = _read(SHOT / "key.0001.exr")
    chroma = lambda x: x - _luminance(x)[..., None]  # noqa: E731
    for f, path in zip(FRAMES, outputs):
        rgb, plate = _read(path), _read(SHOT / f"plate.{f:04d}.exr")
        assert rgb.shape == plate.shape
        np.testing.assert_allclose(_luminance(rgb), _luminance(plate), atol=2e-3, rtol=2e-3)
        assert np.mean(rgb.max(2) - rgb.min(2)) > 0.01, f"frame {f} has no colour"
    out1 = _read(outputs[0])
    assert np.abs(chroma(out1) - chroma(key)).mean() < 0.5 * np.abs(chroma(out1) - chroma(key[::-1])).mean()
    # cancel from Blender's Python stops the job early
    assert res["cancel"] == "cancelled" and 2 <= len(res["cancel_written"]) < 24
