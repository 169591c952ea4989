"""The Blender extension in real Blender: bpy 5.0.1 (PyPI) in its own venv, .venv-blender.

The test builds the extension zip (plugin/blender/build_extension.py: pyzmq wheels for every platform
from PyPI, cached in build/blender-wheels/), then runs scripts under .venv-blender's Python (Blender's
numpy<2, no torch) in which ``zmq`` cannot be imported from the venv's own site-packages (a finder on
sys.meta_path hides it, although the shared venv has pyzmq), as in a stock Blender.

1. Install the zip with Blender's extension installer (offline, from disk) and enable it: pyzmq must
   now come from the wheel the extension brought. Build a scene around an EXR sequence (the example
   shot), run the Colorize operator against a real `colorprop serve` on 127.0.0.1 (method flow: no
   weights needed), and report what it made; here the files are checked with OpenImageIO: colour
   appears, luminance is unchanged, nothing is flipped. A dead server and cancel too.
2. With zmq hidden everywhere (no wheel fits), enabling must fail with a message that names pyzmq and
   the fix, not a missing colorprop_client.

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

from colorprop.engine.confidence import frame_summary
from colorprop.shot.suggest import suggest_frames
from colorprop_client.protocol import SUGGEST_COUNT
from hide_zmq import HIDE_ZMQ
from serverkit import spawn, stop_proc, wait_hello

ROOT = Path(__file__).resolve().parents[1]
SHOT = ROOT / "examples" / "shot"
BLENDER_PY = ROOT / ".venv-blender" / "bin" / "python"
FRAMES = range(1, 7)

pytestmark = pytest.mark.skipif(os.environ.get("COLORPROP_SKIP_BLENDER") == "1", reason="COLORPROP_SKIP_BLENDER=1")

SCRIPT = HIDE_ZMQ + textwrap.dedent(r"""
    import json, time
    import bpy, numpy

    zip_path, address, dead_address, plate0, key_path, result_json = sys.argv[-6:]
    out = {"numpy": numpy.__version__, "blender": bpy.app.version_string}
    try:
        import zmq
        out["zmq_before"] = zmq.__file__
    except ModuleNotFoundError as exc:
        out["zmq_before"] = str(exc)

    out["install"] = list(bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default",
                                                                   enable_on_install=True))
    import zmq
    out["zmq_after"] = zmq.__file__
    import bl_ext.user_default.colorprop as colorprop_ext
    out["addon_file"] = colorprop_ext.__file__
    out["enabled"] = "bl_ext.user_default.colorprop" in bpy.context.preferences.addons

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
    st.method, st.quality, st.confidence = "flow", "draft", True
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
    matte_node = [n for n in new if n.bl_idname == "CompositorNodeImage"][1]
    out["matte_image"] = bpy.path.abspath(matte_node.image.filepath)

    # Key suggestions: listed by the run; Suggest Keys with unchanged settings lists them again without a run;
    # a suggestion's button makes its frame the current one; changed settings run the shot again.
    out["suggestions"] = [[s.frame, s.expected_error, s.label] for s in st.suggestions]
    nodes_before_suggest = len(tree.nodes)
    out["suggest_again"] = list(bpy.ops.colorprop.suggest_keys())
    out["suggest_again_status"] = st.status
    out["suggest_again_new_nodes"] = len(tree.nodes) - nodes_before_suggest
    out["goto"] = list(bpy.ops.colorprop.goto_frame(frame=st.suggestions[1].frame))
    out["frame_current"] = scene.frame_current
    st.output_dir = "//colorprop_rerun/"  # another output: the first run's mattes stay for the check
    out["suggest_rerun"] = list(bpy.ops.colorprop.suggest_keys())
    out["suggest_rerun_status"] = st.status
    out["suggest_rerun_new_nodes"] = len(tree.nodes) - nodes_before_suggest

    # Cancel, in Blender's Python, once 2 frames are written: the client loop stops at its next request.
    from bl_ext.user_default.colorprop import blender_io, logic
    from bl_ext.user_default.colorprop._client import dcc
    out["client_file"] = dcc.__file__
    written, cancel_seen_at = [], []
    def write(frame, rgb, confidence):
        written.append(frame)
    def is_cancelled():
        if len(written) >= 2 and not cancel_seen_at:
            cancel_seen_at.append(len(written))  # what was written when the loop first saw the cancel
        return len(written) >= 2
    plate_pattern, frames = logic.sequence_of(plate0)
    shot = dcc.InbandShot(lambda f: blender_io.load_rgb(dcc.frame_path(plate_pattern, f)),
                          {1: blender_io.load_rgb(key_path)}, write)
    try:
        dcc.run_job(address, frames, shot, {"method": "flow"}, is_cancelled=is_cancelled)
        out["cancel"] = "not cancelled"
    except dcc.Cancelled:
        out["cancel"] = "cancelled"
    out["cancel_frames"], out["cancel_written"], out["cancel_seen_at"] = frames, written, cancel_seen_at
    json.dump(out, open(result_json, "w"), indent=1)
""")

CURVE_SCRIPT = HIDE_ZMQ + textwrap.dedent(r"""
    import json
    import bpy

    zip_path, address, plate0, key_path, keys_dir, listed, server_public, unlisted, result_json = sys.argv[-9:]
    out = {"install": list(bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default",
                                                                   enable_on_install=True))}
    from bl_ext.user_default.colorprop import ops
    from bl_ext.user_default.colorprop._client import dcc
    prefs = bpy.context.preferences.addons["bl_ext.user_default.colorprop"].preferences
    bpy.ops.wm.save_as_mainfile(filepath=os.path.join(os.path.dirname(result_json), "curve.blend"))
    st = bpy.context.scene.colorprop
    st.server, st.plate, st.use_range, st.frame_start, st.frame_end = address, plate0, True, 1, 4
    key = st.keys.add()
    key.frame, key.path = 1, key_path

    def run(name, operator):
        try:  # an operator that reports an ERROR raises RuntimeError when called from a script
            out[name] = list(operator())
        except RuntimeError as exc:
            out[name] = ["CANCELLED", str(exc)]
        out[name + "_status"] = st.status

    os.environ.pop("COLORPROP_CURVE_KEYS", None)
    prefs.client_key, prefs.server_key = listed, server_public  # the add-on's preferences
    out["identity"] = dcc.identity_text(ops.addon_curve_keys(bpy.context))
    run("connect", bpy.ops.colorprop.connect)
    st.method = "flow"
    run("listed", bpy.ops.colorprop.colorize)
    prefs.client_key = unlisted
    run("unlisted", bpy.ops.colorprop.colorize)
    prefs.client_key = os.path.join(keys_dir, "nowhere", "alice.key_secret")
    run("missing", bpy.ops.colorprop.colorize)
    prefs.client_key = prefs.server_key = ""
    run("no_keys", bpy.ops.colorprop.connect)
    os.environ["COLORPROP_CURVE_KEYS"], os.environ["COLORPROP_CURVE_NAME"] = keys_dir, "alice"
    run("env_connect", bpy.ops.colorprop.connect)
    json.dump(out, open(result_json, "w"), indent=1)
""")


NO_PYZMQ_SCRIPT = HIDE_ZMQ + textwrap.dedent(r"""
    import json
    import bpy
    import addon_utils

    zip_path, result_json = sys.argv[-2:]
    out = {"install": list(bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default",
                                                                     enable_on_install=False))}
    errors = []
    addon_utils.enable("bl_ext.user_default.colorprop", default_set=True, handle_error=errors.append)
    out["errors"] = [f"{type(e).__name__}: {e}" for e in errors]
    out["enabled"] = "bl_ext.user_default.colorprop" in bpy.context.preferences.addons
    json.dump(out, open(result_json, "w"), indent=1)
""")


@pytest.fixture(scope="module")
def blender_python() -> Path:
    if not (ROOT / ".venv-blender" / ".installed").exists():
        proc = subprocess.run(["make", "-s", "blender-venv"], cwd=ROOT, capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            pytest.fail(
                f"`make blender-venv` failed (bpy 5.0.1 needs PyPI):\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
            )
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


@pytest.fixture(scope="module")
def extension_zip(tmp_path_factory) -> Path:
    """The extension as a studio builds it (the wheels come from PyPI once, then from build/blender-wheels/)."""
    sys.path.insert(0, str(ROOT / "plugin" / "blender"))
    import build_extension

    return build_extension.build(tmp_path_factory.mktemp("dist"))


def test_extension_zip_has_a_pyzmq_wheel_for_every_platform_and_python(extension_zip):
    import tomllib
    import zipfile

    with zipfile.ZipFile(extension_zip) as zf:
        names = set(zf.namelist())
        manifest = tomllib.loads(zf.read("blender_manifest.toml").decode())
    client = {
        f"colorprop_client/{m}.py"
        for m in (
            "client",
            "colorize",
            "curve_keys",
            "dcc",
            "dcc_text",
            "errors",
            "keyfiles",
            "platforms",
            "protocol",
            "transport",
        )
    }
    assert {"__init__.py", "_client.py"} | client <= names
    assert manifest["id"] == "colorprop" and manifest["blender_version_min"] == "5.0.0"
    wheels = [w.removeprefix("./") for w in manifest["wheels"]]
    assert set(wheels) == {n for n in names if n.endswith(".whl")}
    tags = {
        "linux-x64": "x86_64",
        "linux-arm64": "aarch64",
        "windows-x64": "win_amd64",
        "windows-arm64": "win_arm64",
        "macos-x64": "universal2",
        "macos-arm64": "universal2",
    }
    assert sorted(manifest["platforms"]) == sorted(tags)
    for platform, tag in tags.items():
        for python in ("-cp311-cp311-", "-cp312-abi3-"):  # Blender 5.0's Python 3.11; 3.12 and later
            assert [w for w in wheels if python in w and w.endswith(f"{tag}.whl")], (platform, python)


def run_blender(blender_python: Path, script: str, args: list[str], tmp_path: Path, **env_extra: str) -> dict:
    """``script`` under Blender's Python with its own user folders (extensions land there); its JSON result."""
    path = tmp_path / "script.py"
    path.write_text(script)
    result_json = tmp_path / "result.json"
    env = {**os.environ, "BLENDER_USER_RESOURCES": str(tmp_path / "blender_user"), "PYTHONNOUSERSITE": "1", **env_extra}
    env.pop("PYTHONPATH", None)  # Blender's Python must find the client only inside the extension
    proc = subprocess.run(
        [str(blender_python), str(path), *args, str(result_json)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0 and result_json.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    return {**json.loads(result_json.read_text()), "stdout": proc.stdout}  # (operator reports print there)


def test_extension_installs_offline_and_colours_an_exr_sequence(
    blender_python, server, extension_zip, tmp_path, free_port
):
    shot = tmp_path / "shot"
    shot.mkdir()
    for f in FRAMES:
        shutil.copy(SHOT / f"plate.{f:04d}.exr", shot)
    shutil.copy(SHOT / "key.0001.exr", tmp_path / "key_painted.exr")
    args = [
        str(extension_zip),
        server,
        f"tcp://127.0.0.1:{free_port()}",
        str(shot / "plate.0001.exr"),
        str(tmp_path / "key_painted.exr"),
    ]
    res = run_blender(blender_python, SCRIPT, args, tmp_path)

    # pyzmq: hidden before the install, then the extension's own wheel
    assert res["zmq_before"] == "No module named 'zmq'"
    assert res["install"] == ["FINISHED"] and res["enabled"]
    user = str(tmp_path / "blender_user" / "extensions")
    assert res["zmq_after"].startswith(os.path.join(user, ".local")), res["zmq_after"]
    assert res["blender"].startswith("5.0") and res["numpy"].startswith("1.")
    assert res["addon_file"].startswith(os.path.join(user, "user_default", "colorprop"))  # installed, not the repo
    assert res["client_file"].startswith(os.path.join(user, "user_default", "colorprop", "colorprop_client"))
    # a dead server: a clear message within a few seconds
    assert res["dead_result"][0] == "CANCELLED" and res["dead_seconds"] < 6
    assert "no colorprop server answers" in res["dead_result"][1]
    assert "no colorprop server answers" in res["dead_status"]
    # the run
    assert res["connect"] == ["FINISHED"] and res["result"] == ["FINISHED"], res["status"]
    assert res["status"].startswith("done: 6 frames")
    # the scene had no Group Output yet: the add-on made one and fed it (it never replaces a used one)
    # and with the confidence matte asked for, a second Image node (and Viewer) for it
    assert sorted(res["new_nodes"]) == [
        "CompositorNodeImage",
        "CompositorNodeImage",
        "CompositorNodeViewer",
        "CompositorNodeViewer",
        "NodeGroupOutput",
    ]
    assert res["links_from_result"] == ["CompositorNodeViewer", "NodeGroupOutput"]
    image = res["image"]
    assert image["source"] == "SEQUENCE" and (image["frame_start"], image["frame_duration"]) == (1, 6)
    out_dir = tmp_path / "colorprop"  # next to the saved .blend
    assert Path(image["filepath"]).parent == out_dir
    outputs = sorted(out_dir.glob("plate_colorprop.*.exr"))
    assert [p.name for p in outputs] == [f"plate_colorprop.{f:04d}.exr" for f in FRAMES]
    assert not list(out_dir.glob(".*"))  # no temp files left behind
    mattes = sorted(out_dir.glob("plate_colorprop_confidence.*.exr"))
    assert [p.name for p in mattes] == [f"plate_colorprop_confidence.{f:04d}.exr" for f in FRAMES]
    assert Path(res["matte_image"]).parent == out_dir and Path(res["matte_image"]).name.startswith(
        "plate_colorprop_conf"
    )
    for f, path in zip(FRAMES, mattes):
        matte = _read(path)
        assert np.array_equal(matte[..., 0], matte[..., 1]) and np.array_equal(matte[..., 0], matte[..., 2])
        assert matte.min() >= 0 and matte.max() <= 1 and (f > 1 or matte.min() == 1), f  # 1 at the key
    assert _read(mattes[-1]).mean() < 1  # and not a blank image
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
    # key suggestions: exactly what shot.suggest makes of the mattes the add-on wrote (the server's confidence)
    summary = {f: frame_summary(_read(path)[..., 0]) for f, path in zip(FRAMES, mattes)}
    expected = suggest_frames(summary, [1], SUGGEST_COUNT)
    assert [s[0] for s in res["suggestions"]] == [x.frame for x in expected] and len(expected) == SUGGEST_COUNT
    for (frame, error, label), x in zip(res["suggestions"], expected):
        assert abs(error - x.expected_error) < 1e-3 and label.startswith(f"frame {frame}: ")
    assert res["suggest_again"] == ["FINISHED"] and res["suggest_again_new_nodes"] == 0
    assert res["suggest_again_status"] == "suggested keys from the last run: " + ", ".join(
        str(x.frame) for x in expected
    )
    assert res["goto"] == ["FINISHED"] and res["frame_current"] == expected[1].frame
    assert res["suggest_rerun"] == ["FINISHED"] and res["suggest_rerun_status"].startswith("done: 6 frames")
    assert res["suggest_rerun_new_nodes"] > 0  # settings changed: the shot ran again
    # cancel from Blender's Python stops the job at the loop's next request: nothing is written after the loop saw
    # it, and what was written, in order, is at most the results of the fetch that brought the 2nd frame: of the
    # frames sent by then, 1 already back and the client's window of 4 (so never all 6)
    written, frames = res["cancel_written"], res["cancel_frames"]
    assert res["cancel"] == "cancelled" and frames == list(FRAMES)
    assert res["cancel_seen_at"] == [len(written)] and 2 <= len(written) <= 1 + 4, written
    assert written == frames[: len(written)]


def test_without_pyzmq_enabling_says_so_and_how_to_fix_it(blender_python, extension_zip, tmp_path):
    """No wheel fits (zmq hidden everywhere): the error names pyzmq and the fix, not colorprop_client."""
    res = run_blender(blender_python, NO_PYZMQ_SCRIPT, [str(extension_zip)], tmp_path, HIDE_ALL="1")
    assert res["install"] == ["FINISHED"] and not res["enabled"]
    (error,) = res["errors"]
    assert error.startswith(
        "ModuleNotFoundError: colorprop cannot talk to its server: pyzmq (module zmq) is not installed in this Python"
    ), error
    assert "build_extension.py" in error and "-m pip install pyzmq" in error
    assert "colorprop_client" not in error


@pytest.fixture(scope="module")
def curve_server(tmp_path_factory, free_port):
    """A real `colorprop serve` on 127.0.0.1 that requires CURVE: alice listed; ``stranger`` another keys folder."""
    from colorprop_client.curve_keys import CurveKeys
    from colorprop_server.security import generate_keys

    keys = tmp_path_factory.mktemp("curve") / "keys"
    generate_keys(keys, clients=("alice",), workers=())
    generate_keys(keys.parent / "stranger", clients=("alice",), workers=())
    address = f"tcp://127.0.0.1:{free_port()}"
    proc = spawn(["serve", "--bind", address, "--curve-keys", str(keys), "--log-level", "WARNING"])
    try:
        wait_hello(address, proc, curve=CurveKeys.from_dir(keys, "alice"))
        yield address, keys, keys.parent / "stranger"
    finally:
        stop_proc(proc)


def test_add_on_preferences_reach_a_curve_server(blender_python, curve_server, extension_zip, engine, tmp_path):
    """The add-on's client key / server key preferences against a server that requires CURVE: the listed key
    colours the shot exactly as the embedded engine does and says who it connects as; an unlisted key is refused
    saying what to fix (`colorize --server`'s exit 7); a missing key file is named; no keys is told as such;
    with the preferences empty, $COLORPROP_CURVE_KEYS is the default."""
    from colorprop_client.curve_keys import CurveKeys
    from colorprop_client.keyfiles import find_key_files
    from serverkit import embedded

    address, keys, stranger = curve_server
    shot = tmp_path / "shot"
    shot.mkdir()
    for f in range(1, 5):
        shutil.copy(SHOT / f"plate.{f:04d}.exr", shot)
    shutil.copy(SHOT / "key.0001.exr", tmp_path / "key_painted.exr")
    listed, unlisted = find_key_files(keys, "alice"), find_key_files(stranger, "alice")
    args = [
        str(extension_zip),
        address,
        str(shot / "plate.0001.exr"),
        str(tmp_path / "key_painted.exr"),
        str(keys),
        str(listed.secret),
        str(listed.server_public),
        str(unlisted.secret),
    ]
    res = run_blender(blender_python, CURVE_SCRIPT, args, tmp_path)

    alice = CurveKeys.from_files(*listed)
    assert res["install"] == ["FINISHED"] and res["identity"] == f"as {alice.identity}"
    assert res["connect"] == ["FINISHED"] and res["connect_status"] == f"connected as {alice.identity}: flow on cpu"
    assert res["listed"] == ["FINISHED"] and res["listed_status"].startswith("done: 4 frames"), res["listed_status"]
    frames = {f: _read(SHOT / f"plate.{f:04d}.exr") for f in range(1, 5)}
    reference = embedded(engine, frames, {1: _read(SHOT / "key.0001.exr")})
    for f in frames:
        np.testing.assert_array_equal(_read(tmp_path / "colorprop" / f"plate_colorprop.{f:04d}.exr"), reference[f][0])
    stranger_alice = CurveKeys.from_files(*unlisted)
    refused = (
        f"{address} refused {stranger_alice.identity}: the key is not in the server's authorized_clients/; "
        f"ask its admin to add alice.key there (`colorprop keys DIR --client NAME`), or set 'client key' "
        f"({unlisted.secret}) to a key it lists"
    )
    assert res["unlisted"] == ["CANCELLED", f"Error: {refused}\n"] and res["unlisted_status"] == f"ERROR: {refused}"
    missing = f"ERROR: CURVE client key: {keys / 'nowhere' / 'alice.key_secret'}: no such key file"
    assert res["missing"][0] == "CANCELLED" and res["missing_status"].startswith(missing), res["missing_status"]
    assert res["no_keys"][0] == "CANCELLED" and f"{address} requires CURVE keys and none are set" in res["no_keys"][1]
    assert res["env_connect"] == ["FINISHED"] and res["env_connect_status"].startswith(f"connected as {alice.identity}")


PARTIAL_SCRIPT = HIDE_ZMQ + textwrap.dedent(r"""
    import json
    import bpy

    zip_path, address, plate0, full_key, partial_key, transparent_key, overshoot_key, result_json = sys.argv[-8:]
    out = {"install": list(bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default",
                                                                   enable_on_install=True))}
    bpy.ops.wm.save_as_mainfile(filepath=os.path.join(os.path.dirname(result_json), "partial.blend"))
    st = bpy.context.scene.colorprop
    st.server, st.plate, st.use_range, st.frame_start, st.frame_end = address, plate0, True, 1, 6
    for frame, path in ((1, full_key), (4, partial_key)):
        key = st.keys.add()
        key.frame, key.path = frame, path

    def run(name):
        try:  # an operator that reports an ERROR raises RuntimeError when called from a script
            out[name] = list(bpy.ops.colorprop.colorize())
        except RuntimeError as exc:
            out[name] = ["CANCELLED", str(exc)]
        out[name + "_status"], out[name + "_notes"] = st.status, st.notes

    out["connect"] = list(bpy.ops.colorprop.connect())
    st.method = "flow"
    run("partial")
    st.keys[1].path, st.output_dir = overshoot_key, "//overshoot/"
    run("overshoot")
    st.keys[1].path, st.output_dir = transparent_key, "//transparent/"
    run("transparent")
    json.dump(out, open(result_json, "w"), indent=1)
""")


def test_a_key_images_alpha_makes_a_partial_key_coloured_as_the_embedded_engine(
    blender_python, server, extension_zip, engine, tmp_path
):
    """Real bpy: frame 4's key image is RGBA (a blue box, alpha 0 around it, premultiplied as EXR is): the add-on
    sends it as a partial key and the shot equals the embedded engine's with core's load_key of the same file; an
    alpha of 1.3 and -0.2 is clamped as the CLI clamps it, its note in the status line, the panel and a warning
    report; a key transparent everywhere is one line in the panel (the CLI's bad input), nothing written."""
    from colorprop.engine.engine import ShotOptions
    from colorprop.io.exr import write_exr
    from colorprop.shot.frames import ArraySink, ArraySource, KeyImage, load_key
    from colorprop.shot.pipeline import run_shot
    from colorprop.shot.preflight import check_key_matte

    shot = tmp_path / "shot"
    shot.mkdir()
    for f in FRAMES:
        shutil.copy(SHOT / f"plate.{f:04d}.exr", shot)
    plate4 = _read(SHOT / "plate.0004.exr")
    alpha = np.zeros(plate4.shape[:2], np.float32)
    alpha[100:180, 180:320] = 1.0
    alpha[96:100, 180:320] = 0.5  # a soft top edge
    painted = plate4 * np.array([0.3, 0.6, 1.0], np.float32) * alpha[..., None]
    write_exr(tmp_path / "partial.exr", np.dstack([painted, alpha]), ("R", "G", "B", "A"), pixel_type="float")
    write_exr(tmp_path / "clear.exr", np.dstack([painted, 0 * alpha]), ("R", "G", "B", "A"), pixel_type="float")
    over = np.where(alpha > 0, alpha * 1.3, -0.2).astype(np.float32)  # a paint's overshoot
    over_rgba = np.dstack([plate4 * np.array([0.3, 0.6, 1.0], np.float32) * over[..., None], over])
    write_exr(tmp_path / "over.exr", over_rgba, ("R", "G", "B", "A"), pixel_type="float")
    args = [str(extension_zip), server, str(shot / "plate.0001.exr"), str(SHOT / "key.0001.exr")]
    keys_args = [str(tmp_path / name) for name in ("partial.exr", "clear.exr", "over.exr")]
    res = run_blender(blender_python, PARTIAL_SCRIPT, args + keys_args, tmp_path)

    assert res["install"] == ["FINISHED"] and res["connect"] == ["FINISHED"]
    assert res["partial"] == ["FINISHED"] and res["partial_status"].startswith("done: 6 frames"), res["partial_status"]
    frames = {f: _read(SHOT / f"plate.{f:04d}.exr") for f in FRAMES}
    keys = {1: KeyImage(_read(SHOT / "key.0001.exr")), 4: load_key(tmp_path / "partial.exr", None)}
    assert keys[4].matte is not None
    reference, without = ArraySink(), ArraySink()
    run_shot(engine, ArraySource(frames), keys, ShotOptions(method="flow"), reference)
    run_shot(engine, ArraySource(frames), {1: keys[1]}, ShotOptions(method="flow"), without)
    for f in FRAMES:
        out = _read(tmp_path / "colorprop" / f"plate_colorprop.{f:04d}.exr")
        np.testing.assert_array_equal(out, reference.results[f].rgb, err_msg=f"frame {f}")
    changed = np.abs(reference.results[4].rgb - without.results[4].rgb).max(axis=2) > 1e-3
    assert changed[100:180, 180:320].mean() > 0.9 and not changed[:60].any()
    assert res["partial_notes"] == ""

    note = "key 4: matte (alpha) values from -0.2 to 1.3 clamped to [0, 1]"
    assert res["overshoot"] == ["FINISHED"] and res["overshoot_notes"] == note
    assert res["overshoot_status"].startswith("done: 6 frames") and res["overshoot_status"].endswith(f"; note: {note}")
    assert f"Warning: ColorProp: note: {note}" in res["stdout"]
    keys[4] = load_key(tmp_path / "over.exr", None)
    clamped: list[str] = []
    check_key_matte(keys[4], clamped)  # the pre-flight's clamp, as the server ran it
    assert clamped == [f"{tmp_path / 'over.exr'}: matte (alpha) values from -0.2 to 1.3 clamped to [0, 1]"]
    reference = ArraySink()
    run_shot(engine, ArraySource(frames), keys, ShotOptions(method="flow"), reference)
    for f in FRAMES:
        out = _read(tmp_path / "overshoot" / f"plate_colorprop.{f:04d}.exr")
        np.testing.assert_array_equal(out, reference.results[f].rgb, err_msg=f"frame {f}")

    assert res["transparent"][0] == "CANCELLED" and res["transparent_notes"] == ""
    status = res["transparent_status"]
    assert status.startswith("ERROR: server error [bad_input]: key 4: ") and "0 everywhere" in status, status
    assert not (tmp_path / "transparent").exists() or not list((tmp_path / "transparent").glob("*.exr"))
