"""The Nuke node (plugin/nuke) against a stand-in ``nuke`` module and a real server on 127.0.0.1.

Nuke cannot be installed here (no installer or licence on these machines or in CI), so
``tests/nuke_standin/nuke.py`` implements the few calls the node makes, as we read Foundry's Python
API reference, and records them.

Covered, with real parts: the EXR codec (checked against OpenImageIO), the client and a real
`colorprop serve` process with its engine (method flow), the knob scripts run as a PyScript_Knob
runs them, the worker thread and main-thread queue, cancel, a dead server, where the files go, the
example scripts' knobs. Not covered: that real Nuke behaves like the stand-in (knob classes and
values such as the Write's "32 bit float", ``nuke.execute`` of a Write inside a Group,
``executeInMainThread``, ``ProgressTask``), Nuke's own rendering and colour management, and that the
``.nk`` files load in Nuke. Try the node in Nuke before relying on it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHOT = ROOT / "examples" / "shot"
for p in (ROOT / "tests" / "nuke_standin", ROOT / "plugin" / "nuke", ROOT / "plugin"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import nuke  # noqa: E402  (the stand-in)
from colorprop_client import dcc  # noqa: E402
from colorprop_client import protocol as P  # noqa: E402
from colorprop_nuke import exr_io, logic  # noqa: E402
from colorprop_nuke import node as cpnode  # noqa: E402

from hide_zmq import HIDE_ZMQ  # noqa: E402
from serverkit import spawn, stop_proc, wait_hello  # noqa: E402

oiio = pytest.importorskip("OpenImageIO")


@pytest.fixture(scope="module")
def server(tmp_path_factory, free_port):
    """A real `colorprop serve` process on 127.0.0.1 (flow only) whose allowed root is a temp folder."""
    root = tmp_path_factory.mktemp("shared")
    address = f"tcp://127.0.0.1:{free_port()}"
    proc = spawn(["serve", "--bind", address, "--allow-root", str(root), "--log-level", "WARNING"])
    try:
        wait_hello(address, proc)
        yield address, root
    finally:
        stop_proc(proc)


@pytest.fixture
def standin():
    nuke.reset(gui=False, frame=1)
    yield nuke
    for flag in cpnode._cancel_flags.values():  # no worker outlives its test
        flag.set()
    for worker in cpnode._jobs.values():
        worker.join(30)
    cpnode._jobs.clear()
    cpnode._cancel_flags.clear()
    nuke.reset()


def _shot_frame(frame: int) -> np.ndarray:
    return exr_io.read_exr(SHOT / f"plate.{frame:04d}.exr").rgb()


def _key_frame(frame: int) -> np.ndarray:
    assert frame == 1, "the example shot has one key, at frame 1"
    return exr_io.read_exr(SHOT / "key.0001.exr").rgb()


def _luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb @ np.array([0.2126, 0.7152, 0.0722], np.float32)


def _make_node(address: str, work: Path | None, last: int = 6, plate_frame=_shot_frame, key_frame=_key_frame):
    plate = nuke.nodes.Read(name="Plate")
    plate.render_frame, plate.frame_range = plate_frame, (1, 24)
    key = nuke.nodes.Read(name="Key")
    key.render_frame = key_frame
    node = cpnode.create_node()
    node.setInput(0, plate)
    node.setInput(1, key)
    node["server"].setValue(address)
    node["frame_range"].setValue(f"1-{last}")
    node["work_dir"].setValue(str(work) if work is not None else "")
    return node


# -- the EXR codec (Nuke's Python has no OpenImageIO) ---------------------------------------------
def test_exr_writer_matches_openimageio_and_keeps_row_order(tmp_path):
    img = np.random.default_rng(0).normal(0, 3, (17, 23, 3)).astype(np.float32)
    img[0] = [5.0, -1.0, 100.0]  # top row marked: HDR and negative values survive
    exr_io.write_exr(tmp_path / "a.exr", img)
    back = oiio.ImageBuf(str(tmp_path / "a.exr")).get_pixels(oiio.FLOAT)
    np.testing.assert_array_equal(back, img)


@pytest.mark.parametrize("compression", ["none", "zips", "zip"])
@pytest.mark.parametrize("pixel_type", ["half", "float"])
def test_exr_reader_reads_nuke_style_files(tmp_path, compression, pixel_type):
    """RGBA, data window inside a larger display window, as Nuke's Write makes them."""
    rgb = np.random.default_rng(1).normal(0, 2, (19, 21, 3)).astype(np.float32)
    rgb[0] = 7.0
    spec = oiio.ImageSpec(21, 19, 4, oiio.HALF if pixel_type == "half" else oiio.FLOAT)
    spec.channelnames = ("R", "G", "B", "A")
    spec.x, spec.y, spec.full_x, spec.full_y, spec.full_width, spec.full_height = 2, 3, 0, 0, 30, 25
    spec["compression"] = compression
    out = oiio.ImageOutput.create(str(tmp_path / "b.exr"))
    out.open(str(tmp_path / "b.exr"), spec)
    out.write_image(np.concatenate([rgb, np.ones_like(rgb[..., :1])], axis=2))
    out.close()
    img = exr_io.read_exr(tmp_path / "b.exr")
    want = rgb.astype(np.float16).astype(np.float32) if pixel_type == "half" else rgb
    assert img.pixels.shape == (25, 30, 4)
    np.testing.assert_array_equal(img.rgb()[3:22, 2:23], want)
    assert not img.rgb()[:3].any() and not img.rgb()[:, :2].any()


def test_exr_reader_names_the_file_on_junk(tmp_path):
    (tmp_path / "junk.exr").write_bytes(b"\x76\x2f\x31\x01" + b"\0" * 10)
    with pytest.raises(exr_io.ExrError, match="junk.exr"):
        exr_io.read_exr(tmp_path / "junk.exr")
    with pytest.raises(exr_io.ExrError, match="missing.exr"):
        exr_io.read_exr(tmp_path / "missing.exr")


# -- the plan -------------------------------------------------------------------------------------
# (knob text, options and the job loop are colorprop_client.dcc, tested in test_dcc.py)
def test_plan_checks_keys_inside_the_range():
    plan = logic.ShotPlan("tcp://127.0.0.1:1", [1, 2, 3], [5], "p.####.exr", "k.####.exr", "o.####.exr")
    with pytest.raises(dcc.ColorizeError, match=r"\[5\].*outside"):
        plan.check()


# -- init.py / menu.py ----------------------------------------------------------------------------
def test_init_and_menu_scripts(standin, monkeypatch):
    monkeypatch.setattr(sys, "path", [p for p in sys.path if not p.endswith(os.path.join("plugin", "nuke"))])
    init = ROOT / "plugin" / "nuke" / "init.py"
    exec(compile(init.read_text(), str(init), "exec"), {"__file__": str(init)})
    assert str(ROOT / "plugin" / "nuke") in sys.path and str(ROOT / "plugin") in sys.path
    menu = ROOT / "plugin" / "nuke" / "menu.py"
    exec(compile(menu.read_text(), str(menu), "exec"), {"__file__": str(menu)})
    ((name, command),) = nuke.menu("Nodes").items[0].items
    assert name == "ColorProp" and "create_node()" in command


# -- the node, headless (farm) and with a GUI -----------------------------------------------------
def test_node_knobs_and_add_key(standin):
    node = cpnode.create_node()
    for knob in ("server", "keyframes", "add_key", "frame_range", "method", "quality", "colorize", "status"):
        assert knob in node.knobs()
    nuke._frame = 17
    node["add_key"].execute()  # runs the knob's script like Nuke does
    assert node["keyframes"].value() == "1, 17"
    with node:
        assert nuke.toNode("Output1").input(0) is nuke.toNode("plate")


def test_connect_fills_choices_from_server(standin, server):
    node = cpnode.create_node()
    node["server"].setValue(server[0])
    node["connect"].execute()
    assert node["method"].values() == ["flow"] and node["method"].value() == "flow"
    assert set(node["mode"].values()) == {"send pixels", "shared paths"}
    assert node["status"].value().startswith("connected")


@pytest.mark.parametrize("mode", ["send pixels", "shared paths"])
def test_colorize_headless_renders_sends_and_wires_result(standin, server, mode):
    address, shared = server
    work = shared / mode.replace(" ", "_")
    node = _make_node(address, work)
    node["connect"].execute()
    node["mode"].setValue(mode)
    node["colorize"].execute()
    assert node["status"].value().startswith("done: 6 frames"), node["status"].value()
    # renders: the plate over the range, the key at its frame, with Write knobs set for float EXR
    executes = [c for c in nuke.calls if c[0] == "execute"]
    assert executes == [("execute", "WritePlate", 1, 6, 1), ("execute", "WriteKey", 1, 1, 1)]
    with node:
        read, out, show = nuke.toNode("Result"), nuke.toNode("Output1"), nuke.toNode("Show")
        assert nuke.toNode("WritePlate")["datatype"].value() == "32 bit float"
        assert nuke.toNode("WritePlate")["disable"].value() is True  # re-disabled after the render
    # the output: the Switch, showing the colour (the output knob's default)
    assert out.input(0) is show and show.input(0) is read and show["which"].value() == 0
    assert (read["first"].value(), read["last"].value()) == (1, 6)
    pattern = read["file"].value()
    assert pattern.startswith(str(work)) and "####" in pattern
    for f in range(1, 7):
        rgb = exr_io.read_exr(dcc.frame_path(pattern, f)).rgb()
        plate = _shot_frame(f)
        np.testing.assert_allclose(_luminance(rgb), _luminance(plate), atol=2e-3, rtol=2e-3)
        assert np.mean(rgb.max(2) - rgb.min(2)) > 0.01  # colour appeared on a gray plate
    out1, key = exr_io.read_exr(dcc.frame_path(pattern, 1)).rgb(), _key_frame(1)
    chroma = lambda x: x - _luminance(x)[..., None]  # noqa: E731
    assert np.abs(chroma(out1) - chroma(key)).mean() < 0.5 * np.abs(chroma(out1) - chroma(key[::-1])).mean()
    progress = nuke.ProgressTask.instances[-1]
    assert progress.progress == 100 and any("6/6" in m for m in progress.messages)


def test_gui_colorize_runs_off_the_main_thread_and_cancels(standin, server, tmp_path, monkeypatch):
    """The artist presses cancel on the progress bar as it shows the 2nd of 24 frames done (in the worker's own
    progress call, so at a known frame however the threads are scheduled): the worker stops at its next request,
    having written at most the rest of that fetch's results (2 + the client's window of 4), and within seconds."""
    cancelled_at: list[float] = []

    class CancelAtSecondFrame(nuke.ProgressTask):
        def setMessage(self, message: str) -> None:
            super().setMessage(message)
            if ": 2/24 " in message and not self.cancelled:
                self.cancelled = True
                cancelled_at.append(time.monotonic())

    monkeypatch.setattr(nuke, "ProgressTask", CancelAtSecondFrame)
    nuke.reset(gui=True)
    node = _make_node(server[0], tmp_path, last=24)
    node["method"].setValues(["flow"])
    node["method"].setValue("flow")
    node["colorize"].execute()
    # the knob returned after the renders, with the network work still running in its own thread
    worker = cpnode._jobs[node.name()]
    assert worker is not threading.current_thread() and worker.is_alive()
    worker.join(120)
    assert not worker.is_alive() and len(cancelled_at) == 1
    assert time.monotonic() - cancelled_at[0] < 10
    # the worker queued its status changes for the main thread instead of making them itself
    assert node["status"].value() == "rendering plate and keys..."
    assert nuke.run_main_queue() > 0
    assert node["status"].value() == "cancelled"
    done = list((tmp_path / "colorized").glob("*.exr"))
    assert 2 <= len(done) <= 2 + 4, sorted(p.name for p in done)


@pytest.mark.slow
def test_dead_server_is_reported_on_the_node_within_seconds(standin, tmp_path, free_port):
    node = _make_node(f"tcp://127.0.0.1:{free_port()}", tmp_path)
    node["method"].setValues(["flow"])
    t0 = time.monotonic()
    node["colorize"].execute()
    assert time.monotonic() - t0 < 6  # one connect try of 2 s; nothing rendered first
    status = node["status"].value()
    assert status.startswith("ERROR: no colorprop server answers at tcp://127.0.0.1:"), status
    assert node["tile_color"].value() == cpnode.ERROR_COLOR
    assert not [c for c in nuke.calls if c[0] == "execute"]


@pytest.mark.parametrize("mode, names", [("send pixels", "frame 5 has"), ("shared paths", "plate.0005.exr: plate has")])
def test_a_job_failing_mid_run_shows_the_frame_on_the_node(standin, server, mode, names):
    """Frame 5 of the plate renders NaN (a broken upstream node): the job has started (frames 1-4 done) and
    the node's status names the frame (its file, in shared paths), in the error colour."""
    address, shared = server

    def plate_frame(frame: int) -> np.ndarray:
        rgb = _shot_frame(frame)
        return np.full_like(rgb, np.nan) if frame == 5 else rgb

    node = _make_node(address, shared / ("fails_" + mode.replace(" ", "_")), last=8, plate_frame=plate_frame)
    node["connect"].execute()
    node["mode"].setValue(mode)
    node["colorize"].execute()
    status = node["status"].value()
    assert status.startswith("ERROR: server error [pixels]:") and names in status and "NaN/Inf" in status, status
    assert node["tile_color"].value() == cpnode.ERROR_COLOR
    messages = nuke.ProgressTask.instances[-1].messages
    assert any("4/8" in m for m in messages), messages  # it had started: frames 1-4 done


def test_missing_inputs_are_reported_before_rendering(standin, tmp_path):
    node = cpnode.create_node()
    node["colorize"].execute()
    assert "connect a plate" in node["status"].value()
    assert not [c for c in nuke.calls if c[0] == "execute"]


# -- where the files go, regrade, confidence -------------------------------------------------------
def test_results_go_next_to_the_saved_script_not_the_temp_folder(standin, server, tmp_path):
    script = tmp_path / "comp" / "sh010_comp_v001.nk"
    script.parent.mkdir()
    nuke.reset(script=str(script))
    node = _make_node(server[0], None, last=3)
    node["connect"].execute()  # the server offers flow only
    node["colorize"].execute()
    assert node["status"].value().startswith("done: 3 frames"), node["status"].value()
    work = tmp_path / "comp" / "colorprop" / "sh010_comp_v001" / "ColorProp1"
    with node:
        assert nuke.toNode("Result")["file"].value() == str(work / "colorized" / "ColorProp1.####.exr")
    assert sorted(p.name for p in (work / "colorized").iterdir()) == [f"ColorProp1.{f:04d}.exr" for f in (1, 2, 3)]
    assert sorted(p.name for p in (work / "plate").iterdir()) == [f"plate.{f:04d}.exr" for f in (1, 2, 3)]


def test_an_unsaved_script_without_work_folder_is_refused_before_rendering(standin, server):
    nuke.reset(script="Root")  # what Nuke names the root of a script never saved
    node = _make_node(server[0], None)
    node["colorize"].execute()
    assert node["status"].value() == "ERROR: save the script first (the results go next to it), or set the work folder"
    assert not [c for c in nuke.calls if c[0] == "execute"]


def _colour_plate(frame: int) -> np.ndarray:
    """The example plate tinted: a colour plate, as a regrade starts from."""
    return (_shot_frame(frame) * np.array([1.0, 0.8, 0.55], np.float32)).astype(np.float32)


@pytest.mark.slow
def test_regrade_and_confidence_reach_the_server_and_the_files(standin, server, tmp_path):
    """Regrade with a key equal to its plate frame changes nothing, so every output equals the plate
    (without regrade the colour is re-propagated and differs); the matte channel is written, 1 at the key."""
    outputs = {}
    for regrade in (True, False):
        node = _make_node(
            server[0], tmp_path / f"regrade_{regrade}", last=4, plate_frame=_colour_plate, key_frame=_colour_plate
        )
        node["name"].setValue(f"ColorProp{int(regrade)}")
        node["connect"].execute()  # the server offers flow only
        node["regrade"].setValue(regrade)
        node["confidence"].setValue(True)
        node["colorize"].execute()
        assert node["status"].value().startswith("done: 4 frames"), node["status"].value()
        with node:
            outputs[regrade] = nuke.toNode("Result")["file"].value()
    for f in range(1, 5):
        img = exr_io.read_exr(dcc.frame_path(outputs[True], f))
        assert img.channels == ("B", "G", "R", "colorprop.confidence")
        np.testing.assert_array_equal(img.rgb(), _colour_plate(f))
        matte = img.pixels[..., 3]
        assert matte.min() >= 0 and matte.max() <= 1 and (f > 1 or matte.min() == 1)
        # the matte again as an image of its own (gray RGB), what the node's matte output reads
        np.testing.assert_array_equal(
            exr_io.read_exr(dcc.frame_path(dcc.matte_pattern(outputs[True]), f)).rgb(),
            np.repeat(matte[..., None], 3, axis=2),
        )
    assert not np.array_equal(exr_io.read_exr(dcc.frame_path(outputs[False], 3)).rgb(), _colour_plate(3))


def test_confidence_in_shared_paths_mode_is_written_by_the_server(standin, server):
    address, shared = server
    node = _make_node(address, shared / "confidence_paths", last=3)
    node["connect"].execute()
    node["mode"].setValue("shared paths")
    node["confidence"].setValue(True)
    node["colorize"].execute()
    assert node["status"].value().startswith("done: 3 frames"), node["status"].value()
    with node:
        pattern = nuke.toNode("Result")["file"].value()
        assert nuke.toNode("Matte")["file"].value() == dcc.matte_pattern(pattern)
    img = exr_io.read_exr(dcc.frame_path(pattern, 2))
    matte = exr_io.read_exr(dcc.frame_path(dcc.matte_pattern(pattern), 2)).rgb()
    np.testing.assert_array_equal(matte[..., 0], img.pixels[..., img.channels.index("colorprop.confidence")])


def test_output_knob_switches_between_colour_and_matte(standin, server, tmp_path):
    """'output: confidence matte' alone writes the matte; the internal Switch follows the knob by its
    expression, both before and after a change (no re-run)."""
    node = _make_node(server[0], tmp_path, last=3)
    node["connect"].execute()
    node["output"].setValue("confidence matte")
    node["colorize"].execute()
    assert node["status"].value().startswith("done: 3 frames"), node["status"].value()
    with node:
        show, out = nuke.toNode("Show"), nuke.toNode("Output1")
        assert out.input(0) is show
        assert [show.input(0), show.input(1)] == [nuke.toNode("Result"), nuke.toNode("Matte")]
        assert show["which"].value() == 1
        node["output"].setValue("colour")
        assert show["which"].value() == 0
        matte_files = sorted(Path(nuke.toNode("Matte")["file"].value()).parent.glob("*_confidence.*.exr"))
    assert [p.name for p in matte_files] == [f"ColorProp1_confidence.{f:04d}.exr" for f in (1, 2, 3)]


# -- pyzmq for Nuke's Python ----------------------------------------------------------------------
INIT_AND_IMPORT = HIDE_ZMQ + textwrap.dedent(r"""
    import json
    standin, init, result = sys.argv[1:4]
    sys.path.insert(0, standin)
    import nuke  # the stand-in: Nuke has imported its own module before init.py runs
    exec(compile(open(init).read(), init, "exec"), {"__file__": init})
    try:
        from colorprop_client import dcc
        import zmq
        out = {"zmq": zmq.__file__, "dcc": dcc.__file__}
    except ModuleNotFoundError as exc:
        out = {"error": str(exc)}
    json.dump(out, open(result, "w"))
""")


@pytest.mark.network  # pip installs pyzmq from PyPI
def test_pyzmq_installed_as_docs_dcc_says_is_found_through_init_py(tmp_path):
    """docs/DCC.md's install line (pip --target for Nuke's Python version and platform) into a copy of
    plugin/nuke/site-packages, then a Python without pyzmq runs init.py and imports the client. Checks
    our layout and init.py; Nuke's own Python is not here."""
    site_dir = tmp_path / "site-packages"
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--target",
        str(site_dir),
        "--only-binary",
        ":all:",
        "--python-version",
        f"{sys.version_info.major}.{sys.version_info.minor}",
        "--platform",
        dcc.pip_platform(),
        "pyzmq==27.3.0",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    script = tmp_path / "init_and_import.py"
    script.write_text(INIT_AND_IMPORT)
    env = {**os.environ, "PYTHONNOUSERSITE": "1", "COLORPROP_NUKE_SITE": str(site_dir)}
    env.pop("PYTHONPATH", None)
    args = [
        sys.executable,
        str(script),
        str(ROOT / "tests" / "nuke_standin"),
        str(ROOT / "plugin" / "nuke" / "init.py"),
    ]
    subprocess.run([*args, str(tmp_path / "found.json")], env=env, check=True, timeout=120)
    found = json.loads((tmp_path / "found.json").read_text())
    assert found.get("zmq", "").startswith(str(site_dir)), found
    assert found["dcc"] == str(ROOT / "plugin" / "colorprop_client" / "dcc.py")
    # without it, the message names pyzmq and the Nuke fix
    env["COLORPROP_NUKE_SITE"] = str(tmp_path / "nothing-here")
    subprocess.run([*args, str(tmp_path / "missing.json")], env=env, check=True, timeout=120)
    error = json.loads((tmp_path / "missing.json").read_text())["error"]
    assert error.startswith("colorprop cannot talk to its server: pyzmq (module zmq) is not installed"), error
    assert "plugin/nuke/site-packages" in error and f"--platform {dcc.pip_platform()} pyzmq" in error


# -- examples/nuke --------------------------------------------------------------------------------
def test_example_builder_and_hand_written_script_match_the_node(standin, server, tmp_path, monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_example", ROOT / "examples" / "nuke" / "build_example.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    node = example.build(server[0])
    assert node.input(0)["file"].value().endswith("plate.####.exr")
    nk = (ROOT / "examples" / "nuke" / "colorprop_example.nk").read_text()
    user_knobs = [
        k for k, v in node.knobs().items() if v.label is not None and k not in ("name", "tile_color", "label")
    ]
    for knob in user_knobs:
        if knob != "colorprop":
            assert f" {knob}" in nk, f"colorprop_example.nk lacks the {knob!r} knob"
    for inner in ("WritePlate", "WriteKey", "Result", "Matte", "Show", "Output1"):
        assert f"name {inner}" in nk


def read_nk(text: str) -> dict[str, dict]:
    """Wire a .nk script as Nuke reads one, to check its structure (not Nuke itself): each node pops its
    ``inputs`` (default 1; top of the stack = input 0) and pushes itself; ``push $v``, ``push 0`` and
    ``set v [stack 0]``; a Group's nodes follow it, with a stack of their own, until ``end_group``.
    Returns {"Group.Node": {"class", "inputs": [names], "knobs": {name: raw value}}}."""
    nodes: dict[str, dict] = {}
    contexts = [("", [], {})]  # (group prefix, stack, variables)
    current = None
    for line in text.splitlines():
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        prefix, stack, variables = contexts[-1]
        if current is not None:
            if s == "}":
                name = prefix + current["knobs"].get("name", current["class"])
                n_inputs = int(current["knobs"].get("inputs", 1))
                popped = [stack.pop() for _ in range(n_inputs)]
                current["inputs"] = popped
                if current["class"] != "Root":
                    stack.append(name)
                    nodes[name] = current
                if current["class"] == "Group":
                    contexts.append((name + ".", [], {}))
                current = None
            else:
                key, _, value = s.partition(" ")
                current["knobs"].setdefault(key, value.strip('"'))
        elif s.endswith("{") and s[:-1].strip().isidentifier():
            current = {"class": s[:-1].strip(), "knobs": {}}
        elif s == "end_group":
            contexts.pop()
        elif s.startswith("push "):
            ref = s.split()[1]
            stack.append(None if ref == "0" else variables[ref.lstrip("$")])
        elif s.startswith("set ") and s.endswith("[stack 0]"):
            variables[s.split()[1]] = stack[-1]
        elif s.split()[0] == "version":
            continue
        else:
            raise AssertionError(f"unexpected line in .nk: {line!r}")
    return nodes


def test_example_script_opens_as_a_script_and_wires_the_node():
    """No clipboard-paste syntax; plate into input 0 and key into input 1; the shot found from the file."""
    path = ROOT / "examples" / "nuke" / "colorprop_example.nk"
    text = path.read_text()
    assert "cut_paste_input" not in text
    nodes = read_nk(text)
    assert nodes["ColorProp1"]["inputs"] == ["Plate", "Key"]
    assert nodes["ColorProp1.WritePlate"]["inputs"] == ["ColorProp1.plate"]
    assert nodes["ColorProp1.WriteKey"]["inputs"] == ["ColorProp1.key"]
    assert nodes["ColorProp1.Output1"]["inputs"] == ["ColorProp1.plate"]
    assert nodes["ColorProp1.Show"]["inputs"] == ["ColorProp1.Result", "ColorProp1.Matte"]
    assert nodes["ColorProp1.Show"]["knobs"]["which"] == "{{parent.output}}"
    assert nodes["ColorProp1.key"]["knobs"]["number"] == "1"
    assert nodes["Viewer1"]["inputs"] == ["ColorProp1"]
    assert nodes["ColorProp1"]["knobs"].get("work_dir", "") == ""  # results next to the script
    for read, first in (("Plate", "plate.0001.exr"), ("Key", "key.0001.exr")):
        pattern = nodes[read]["knobs"]["file"]
        assert pattern.startswith("\\[file dirname \\[value root.name]]/"), pattern
        resolved = (path.parent / pattern.split("]]/", 1)[1]).resolve()
        assert (resolved.parent / first).exists(), resolved


@pytest.mark.slow
def test_suggest_keys_lists_the_weakest_frames_and_goes_to_one(standin, server, tmp_path):
    """'suggest keys' on a node never run colorizes and lists the server's suggestions (what shot.suggest makes of
    the mattes written); pressed again with the same settings it lists them without a run; 'go to frame' makes
    the picked one the current frame (nuke.frame(f) in the stand-in); changed settings run the shot again."""
    from colorprop.engine.confidence import frame_summary
    from colorprop.shot.suggest import suggest_frames

    node = _make_node(server[0], tmp_path / "suggest", last=8)
    node["connect"].execute()
    node["confidence"].setValue(True)
    assert node["suggested"].values() == [dcc.NO_SUGGESTIONS]
    node["goto"].execute()
    assert nuke.frame() == 1 and "no suggested frame yet" in node["status"].value()
    node["suggest"].execute()
    assert node["status"].value().startswith("done: 8 frames"), node["status"].value()
    with node:
        pattern = nuke.toNode("Result")["file"].value()
    summary = {
        f: frame_summary(exr_io.read_exr(dcc.frame_path(dcc.matte_pattern(pattern), f)).rgb()[..., 0])
        for f in range(1, 9)
    }
    expected = suggest_frames(summary, [1], P.SUGGEST_COUNT)
    labels = node["suggested"].values()
    assert [dcc.suggestion_frame(label) for label in labels] == [x.frame for x in expected]
    assert len(expected) == P.SUGGEST_COUNT and node["suggested"].value() == labels[0]
    assert node["status"].value().endswith("suggested keys: " + ", ".join(str(x.frame) for x in expected))

    renders = len([c for c in nuke.calls if c[0] == "execute"])
    node["suggest"].execute()  # unchanged settings: the last run's list, no render, no run
    assert len([c for c in nuke.calls if c[0] == "execute"]) == renders
    assert node["status"].value().startswith("suggested keys from the last run")

    node["suggested"].setValue(labels[1])
    node["goto"].execute()
    assert nuke.frame() == expected[1].frame and ("frame", expected[1].frame) in nuke.calls

    node["frame_range"].setValue("1-6")  # another shot: suggest runs it
    node["suggest"].execute()
    assert node["status"].value().startswith("done: 6 frames")
    assert all(dcc.suggestion_frame(label) <= 6 for label in node["suggested"].values())


# -- a server that requires CURVE keys ------------------------------------------------------------
@pytest.fixture(scope="module")
def curve_server(tmp_path_factory, free_port):
    """A real `colorprop serve` on 127.0.0.1 that requires CURVE, with keys from ``colorprop keys``: alice is
    listed; ``stranger`` is another keys folder (its alice is a key the server does not list)."""
    from colorprop_server.security import generate_keys

    keys = tmp_path_factory.mktemp("curve") / "keys"
    generate_keys(keys, clients=("alice",), workers=())
    stranger = keys.parent / "stranger"
    generate_keys(stranger, clients=("alice",), workers=())
    address = f"tcp://127.0.0.1:{free_port()}"
    proc = spawn(["serve", "--bind", address, "--curve-keys", str(keys), "--log-level", "WARNING"])
    try:
        wait_hello(address, proc, curve=dcc.CurveKeys.from_dir(keys, "alice"))
        yield address, keys, stranger
    finally:
        stop_proc(proc)


def _renders() -> list:
    return [c for c in nuke.calls if c[0] == "execute"]


@pytest.mark.slow
def test_curve_listed_key_colours_as_the_embedded_engine(standin, curve_server, engine, tmp_path, monkeypatch):
    """The node's client key / server key knobs reach a CURVE server: connect shows who it connects as, and
    the results equal the embedded engine's on the same frames. With the knobs empty, $COLORPROP_CURVE_KEYS
    and $COLORPROP_CURVE_NAME are the default."""
    from colorprop_client.keyfiles import find_key_files
    from serverkit import embedded

    address, keys, _ = curve_server
    monkeypatch.delenv("COLORPROP_CURVE_KEYS", raising=False)
    alice_files = find_key_files(keys, "alice")
    node = _make_node(address, tmp_path / "knobs", last=5)
    node["client_key"].setValue(str(alice_files.secret))
    node["server_key"].setValue(str(alice_files.server_public))
    node["connect"].execute()
    alice = dcc.CurveKeys.from_dir(keys, "alice")
    assert alice.name == "alice"
    assert node["status"].value() == f"connected as {alice.identity}: flow on cpu", node["status"].value()
    node["colorize"].execute()
    assert node["status"].value().startswith("done: 5 frames"), node["status"].value()
    assert any(m.endswith(f"as {alice.identity}") for m in nuke.ProgressTask.instances[-1].messages)
    with node:
        pattern = nuke.toNode("Result")["file"].value()
    frames = {f: _shot_frame(f) for f in range(1, 6)}
    reference = embedded(engine, frames, {1: _key_frame(1)})
    for f in frames:
        np.testing.assert_array_equal(exr_io.read_exr(dcc.frame_path(pattern, f)).rgb(), reference[f][0])

    monkeypatch.setenv("COLORPROP_CURVE_KEYS", str(keys))
    monkeypatch.setenv("COLORPROP_CURVE_NAME", "alice")
    env_node = _make_node(address, tmp_path / "env", last=2)
    env_node["connect"].execute()
    assert env_node["status"].value().startswith(f"connected as {alice.identity}"), env_node["status"].value()
    env_node["colorize"].execute()
    assert env_node["status"].value().startswith("done: 2 frames"), env_node["status"].value()


def test_curve_refused_key_says_what_to_fix_before_rendering(standin, curve_server, tmp_path, monkeypatch):
    """An unlisted key, no key and another server's key: each refused at connect, one line naming the knob to
    fix (what `colorize --server` reports with exit 7), the node red, nothing rendered."""
    from colorprop_client.keyfiles import find_key_files

    address, keys, stranger = curve_server
    monkeypatch.delenv("COLORPROP_CURVE_KEYS", raising=False)
    listed, unlisted = find_key_files(keys, "alice"), find_key_files(stranger, "alice")
    cases = [
        (
            (unlisted.secret, listed.server_public),
            f"ERROR: {address} refused {dcc.CurveKeys.from_files(*unlisted).identity}: the key is not in the "
            "server's authorized_clients/; ask its admin to add alice.key there (`colorprop keys DIR --client "
            f"NAME`), or set 'client key' ({unlisted.secret}) to a key it lists",
        ),
        (
            ("", ""),
            f"ERROR: {address} requires CURVE keys and none are set: set 'client key' (NAME.key_secret) and "
            "'server key' (server.key) from the server's admin, or $COLORPROP_CURVE_KEYS",
        ),
        (
            (listed.secret, unlisted.server_public),
            f"ERROR: {address} refused the CURVE handshake: 'server key' ({unlisted.server_public}) is not this "
            "server's public key; get server.key from the server's keys folder",
        ),
    ]
    for (client_key, server_key), expected in cases:
        node = _make_node(address, tmp_path / "refused")
        node["client_key"].setValue(str(client_key))
        node["server_key"].setValue(str(server_key))
        for button in ("connect", "colorize"):
            node[button].execute()
            assert node["status"].value() == expected, (button, node["status"].value())
            assert node["tile_color"].value() == cpnode.ERROR_COLOR
    assert not _renders()


def test_missing_key_files_are_named_with_the_knob_they_come_from(standin, tmp_path, monkeypatch, free_port):
    """A key file that is not there is named (and where the path came from) before anything connects."""
    from colorprop_client.keyfiles import find_key_files
    from colorprop_client.transport import Transport
    from colorprop_server.security import generate_keys

    keys = tmp_path / "keys"
    generate_keys(keys, clients=("alice",), workers=())
    alice = find_key_files(keys, "alice")
    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / "alice.key_secret").write_bytes(alice.secret.read_bytes())
    monkeypatch.delenv("COLORPROP_CURVE_KEYS", raising=False)
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens: a key error must come first
    connects: list[str] = []
    connect = Transport._connect
    monkeypatch.setattr(Transport, "_connect", lambda self: connects.append(self.address) or connect(self))
    nowhere = tmp_path / "nowhere"
    cases = [
        (
            (nowhere / "bob.key_secret", alice.server_public),
            {},
            f"ERROR: CURVE client key: {nowhere / 'bob.key_secret'}: no such key file",
        ),
        (
            (alice.secret, nowhere / "server.key"),
            {},
            f"ERROR: CURVE server key: {nowhere / 'server.key'}: no such key file",
        ),
        (
            (alone / "alice.key_secret", ""),
            {},
            "ERROR: CURVE server key (not set: server.key beside the client key): "
            f"{alone / 'server.key'}: no such key file",
        ),
        (
            (alice.secret.with_suffix(".key"), ""),
            {},
            f"ERROR: CURVE client key: {alice.secret.with_suffix('.key')}: holds no secret key: give the client "
            "NAME.key_secret",
        ),
        (
            ("", ""),
            {"COLORPROP_CURVE_KEYS": str(tmp_path / "artist")},
            f"ERROR: client key not set, and $COLORPROP_CURVE_KEYS: CURVE keys folder {tmp_path / 'artist'} does not "
            "exist",
        ),
        (
            ("", ""),
            {"COLORPROP_CURVE_KEYS": str(keys), "COLORPROP_CURVE_NAME": "bob"},
            f"ERROR: client key not set, and $COLORPROP_CURVE_KEYS: CURVE keys in {keys}: no key pair named 'bob'",
        ),
    ]
    for (client_key, server_key), env, expected in cases:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        node = _make_node(address, tmp_path / "work")
        node["client_key"].setValue(str(client_key))
        node["server_key"].setValue(str(server_key))
        for button in ("connect", "colorize"):
            node[button].execute()
            assert node["status"].value().startswith(expected), (button, node["status"].value())
    assert not connects and not _renders()  # the key error came first: no connect was tried


# -- partial keys: the key input's alpha ----------------------------------------------------------
PARTIAL_BOX = (slice(100, 180), slice(180, 320))  # rows, columns of the region painted at frame 4


def _rgba_key_frame(frame: int, alpha_at_4: float = 1.0, alpha_around: float = 0.0) -> np.ndarray:
    """The key input with an alpha: frame 1 the example's key, opaque (a full key); frame 4 a box of the plate
    painted blue, premultiplied as Nuke's streams are, alpha ``alpha_at_4`` inside the box and ``alpha_around``
    elsewhere."""
    if frame == 1:
        rgb = exr_io.read_exr(SHOT / "key.0001.exr").rgb()
        return np.dstack([rgb, np.ones(rgb.shape[:2], np.float32)])
    assert frame == 4, "keys at frames 1 and 4"
    alpha = np.full(_shot_frame(4).shape[:2], alpha_around, np.float32)
    alpha[PARTIAL_BOX] = alpha_at_4
    painted = _shot_frame(4) * np.array([0.3, 0.6, 1.0], np.float32)
    return np.dstack([painted * alpha[..., None], alpha])


@pytest.mark.slow  # a whole shot through the server, each mode
@pytest.mark.parametrize("mode", ["send pixels", "shared paths"])
def test_a_key_inputs_alpha_makes_a_partial_key_coloured_as_the_embedded_engine(standin, server, engine, mode):
    """The key input carries an alpha: the node renders the key RGBA, and frame 4's key (alpha in a box) colours
    only that box, exactly as the embedded engine colours the same rendered files (keys read by core's load_key)."""
    from colorprop.engine.engine import ShotOptions
    from colorprop.shot.frames import ArraySink, ExrSequenceSink, ExrSequenceSource, load_key
    from colorprop.shot.pipeline import run_shot

    address, shared = server
    work = shared / ("partial_" + mode.replace(" ", "_"))
    node = _make_node(address, work, last=6, key_frame=_rgba_key_frame)
    node["keyframes"].setValue("1, 4")
    node["connect"].execute()
    node["mode"].setValue(mode)
    node["colorize"].execute()
    assert node["status"].value().startswith("done: 6 frames"), node["status"].value()
    with node:
        assert nuke.toNode("WriteKey")["channels"].value() == "rgba"
        pattern = nuke.toNode("Result")["file"].value()
    keys = {k: load_key(work / "key" / f"key.{k:04d}.exr", None) for k in (1, 4)}
    assert keys[1].matte is None and keys[4].matte is not None  # frame 1 opaque: a full key
    plates = ExrSequenceSource(str(work / "plate" / "plate.####.exr"), range(1, 7))
    if mode == "send pixels":  # the node writes the server's float results
        sink = ArraySink()
        run_shot(engine, plates, keys, ShotOptions(method="flow"), sink)
        reference = {f: r.rgb for f, r in sink.results.items()}
    else:  # the server wrote half-float EXRs
        run_shot(engine, plates, keys, ShotOptions(method="flow"), ExrSequenceSink(str(work / "ref.####.exr"), "half"))
        reference = {f: exr_io.read_exr(work / f"ref.{f:04d}.exr").rgb() for f in range(1, 7)}
    without = ArraySink()
    run_shot(engine, plates, {1: keys[1]}, ShotOptions(method="flow"), without)
    for f in range(1, 7):
        np.testing.assert_array_equal(exr_io.read_exr(dcc.frame_path(pattern, f)).rgb(), reference[f])
    changed = np.abs(reference[4] - without.results[4].rgb).max(axis=2) > 1e-3
    assert changed[PARTIAL_BOX].mean() > 0.9 and not changed[:50].any()  # the box, not the rest


@pytest.mark.slow  # a whole shot through the server, each mode
@pytest.mark.parametrize("mode", ["send pixels", "shared paths"])
def test_a_key_alpha_outside_0_1_is_clamped_and_its_note_is_on_the_node(standin, server, engine, mode):
    """Frame 4's key alpha is 1.3 in the box and -0.2 around it (a paint's overshoot): the server clamps it as the
    CLI's pre-flight does, its note naming the key reaches the node's progress and, after the run, its status line
    (an in-band key is named by its frame, a shared-path one by its file, as the CLI names it); the frames are the
    embedded engine's with the clamped matte."""
    from colorprop.engine.engine import ShotOptions
    from colorprop.shot.frames import ArraySink, ExrSequenceSink, ExrSequenceSource, load_key
    from colorprop.shot.pipeline import run_shot
    from colorprop.shot.preflight import check_key_matte

    address, shared = server
    work = shared / ("overshoot_" + mode.replace(" ", "_"))
    node = _make_node(address, work, last=6, key_frame=lambda f: _rgba_key_frame(f, 1.3, -0.2))
    node["keyframes"].setValue("1, 4")
    node["connect"].execute()
    node["mode"].setValue(mode)
    node["colorize"].execute()
    key_file = work / "key" / "key.0004.exr"
    named = "key 4" if mode == "send pixels" else str(key_file)
    note = f"{named}: matte (alpha) values from -0.2 to 1.3 clamped to [0, 1]"
    status = node["status"].value()
    assert status.startswith("done: 6 frames") and status.endswith(f"; note: {note}"), status
    assert f"note: {note}" in nuke.ProgressTask.instances[-1].messages  # shown while the job ran
    assert node["tile_color"].value() == cpnode.OK_COLOR
    with node:
        pattern = nuke.toNode("Result")["file"].value()
    keys = {k: load_key(work / "key" / f"key.{k:04d}.exr", None) for k in (1, 4)}
    notes: list[str] = []
    check_key_matte(keys[4], notes)  # the pre-flight's clamp, as the server ran it
    assert notes == [f"{key_file}: matte (alpha) values from -0.2 to 1.3 clamped to [0, 1]"]
    plates = ExrSequenceSource(str(work / "plate" / "plate.####.exr"), range(1, 7))
    if mode == "send pixels":
        sink = ArraySink()
        run_shot(engine, plates, keys, ShotOptions(method="flow"), sink)
        reference = {f: r.rgb for f, r in sink.results.items()}
    else:
        run_shot(engine, plates, keys, ShotOptions(method="flow"), ExrSequenceSink(str(work / "ref.####.exr"), "half"))
        reference = {f: exr_io.read_exr(work / f"ref.{f:04d}.exr").rgb() for f in range(1, 7)}
    for f in range(1, 7):
        np.testing.assert_array_equal(exr_io.read_exr(dcc.frame_path(pattern, f)).rgb(), reference[f])


@pytest.mark.parametrize("mode, names", [("send pixels", "key 4: "), ("shared paths", "key.0004.exr: ")])
def test_a_key_alpha_transparent_everywhere_is_one_line_on_the_node(standin, server, mode, names):
    """Frame 4's key is transparent everywhere: refused as the CLI refuses it (exit 2's bad input), one line on the
    node naming the key, nothing coloured."""
    address, shared = server
    work = shared / ("transparent_" + mode.replace(" ", "_"))
    node = _make_node(address, work, last=6, key_frame=lambda f: _rgba_key_frame(f, alpha_at_4=0.0))
    node["keyframes"].setValue("1, 4")
    node["connect"].execute()
    node["mode"].setValue(mode)
    node["colorize"].execute()
    status = node["status"].value()
    assert status.startswith("ERROR: server error [bad_input]: ") and names in status, status
    assert "0 everywhere" in status and "\n" not in status, status
    assert node["tile_color"].value() == cpnode.ERROR_COLOR
    assert not (work / "colorized").exists() or not any((work / "colorized").iterdir())
