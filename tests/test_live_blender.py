"""The Blender add-on's Live toggle in real bpy (.venv-blender, the installed extension zip) against a real
`colorprop serve` on 127.0.0.1 (method flow): Live opens the session, the results are saved as they come and the
compositor's Image node shows them; a partial key added and sent with Send Keys re-colours the shot; each run's
files equal the embedded engine's fresh run with those keys; Live again stops it. The main-thread timer is
called by the script itself (no event loop in background mode). COLORPROP_SKIP_BLENDER=1 skips."""

from __future__ import annotations

import os
import shutil
import textwrap

import numpy as np
import pytest

from hide_zmq import HIDE_ZMQ
from test_blender_addon import FRAMES, SHOT, _read, blender_python, extension_zip, run_blender, server  # noqa: F401

pytestmark = [
    pytest.mark.usefixtures("watchdog"),
    pytest.mark.skipif(os.environ.get("COLORPROP_SKIP_BLENDER") == "1", reason="COLORPROP_SKIP_BLENDER=1"),
]

LIVE_SCRIPT = HIDE_ZMQ + textwrap.dedent(r"""
    import json, os, shutil, sys, time
    import bpy

    zip_path, address, plate0, full_key, partial_key, result_json = sys.argv[-6:]
    folder = os.path.dirname(result_json)
    out = {"install": list(bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default",
                                                                   enable_on_install=True))}
    bpy.ops.wm.save_as_mainfile(filepath=os.path.join(folder, "live.blend"))
    scene = bpy.context.scene
    st = scene.colorprop
    st.server, st.plate, st.use_range, st.frame_start, st.frame_end = address, plate0, True, 1, 6
    key = st.keys.add()
    key.frame, key.path = 1, full_key
    out["connect"] = list(bpy.ops.colorprop.connect())
    st.method = "flow"
    live = next(m for n, m in sys.modules.items() if n.endswith("colorprop.live"))

    def until_run(n, copy_to):
        run = live._runs[scene.name]
        end = time.monotonic() + 120
        while time.monotonic() < end:
            run.tick()
            session = run.live.session
            if (session is not None and n in session.runs_done and run.bridge.results.empty()) or run.live.error:
                break
            time.sleep(0.02)
        run.tick()
        out[f"status{n}"] = st.status
        shutil.copytree(os.path.join(folder, "colorprop"), os.path.join(folder, copy_to))

    scene.frame_set(4)
    out["live"] = list(bpy.ops.colorprop.live())
    out["live_flag"] = st.live
    until_run(0, "run0")
    run = live._runs[scene.name]
    out["node"] = run.node.bl_idname if run.node is not None else None
    out["image_source"] = run.node.image.source if run.node is not None else None
    key = st.keys.add()
    key.frame, key.path = 4, partial_key
    out["send"] = list(bpy.ops.colorprop.live_keys())
    until_run(1, "run1")
    out["job"] = run.live.session.job.id
    out["stop"] = list(bpy.ops.colorprop.live())
    out["stopped"] = (scene.name not in live._runs, st.live, st.status)
    json.dump(out, open(result_json, "w"), indent=1)
""")


def test_live_toggle_streams_and_sends_a_partial_key(blender_python, server, extension_zip, engine, tmp_path):  # noqa: F811
    from colorprop.engine.engine import ShotOptions
    from colorprop.io.exr import write_exr
    from colorprop.shot.frames import ArraySink, ArraySource, KeyImage, load_key
    from colorprop.shot.pipeline import run_shot
    from colorprop_client.client import Client

    shot = tmp_path / "shot"
    shot.mkdir()
    for f in FRAMES:
        shutil.copy(SHOT / f"plate.{f:04d}.exr", shot)
    plate4 = _read(SHOT / "plate.0004.exr")
    alpha = np.zeros(plate4.shape[:2], np.float32)
    alpha[100:180, 180:320] = 1.0
    painted = plate4 * np.array([0.3, 0.6, 1.0], np.float32) * alpha[..., None]
    write_exr(tmp_path / "partial.exr", np.dstack([painted, alpha]), ("R", "G", "B", "A"), pixel_type="float")
    args = [str(extension_zip), server, str(shot / "plate.0001.exr"), str(SHOT / "key.0001.exr")]
    res = run_blender(blender_python, LIVE_SCRIPT, [*args, str(tmp_path / "partial.exr")], tmp_path)

    assert res["install"] == ["FINISHED"] and res["connect"] == ["FINISHED"]
    assert res["live"] == ["FINISHED"] and res["live_flag"] is True
    assert res["status0"].startswith("live: run 0 done"), res["status0"]
    assert res["node"] == "CompositorNodeImage" and res["image_source"] == "SEQUENCE"
    assert res["send"] == ["FINISHED"] and res["status1"].startswith("live: run 1 done"), res["status1"]
    assert res["stop"] == ["FINISHED"] and res["stopped"] == [True, False, "live: stopped"]
    frames = {f: _read(SHOT / f"plate.{f:04d}.exr") for f in FRAMES}
    full = KeyImage(_read(SHOT / "key.0001.exr"))
    for run, keys in (("run0", {1: full}), ("run1", {1: full, 4: load_key(tmp_path / "partial.exr", None)})):
        reference = ArraySink()
        run_shot(engine, ArraySource(frames), keys, ShotOptions(method="flow"), reference)
        for f in FRAMES:
            out = _read(tmp_path / run / f"plate_colorprop.{f:04d}.exr")
            np.testing.assert_array_equal(out, reference.results[f].rgb, err_msg=f"{run} frame {f}")
        assert not list((tmp_path / run).glob(".*"))  # no temp file left
    with Client(server) as c:
        assert res["job"] not in [row["job"] for row in c.status()]
