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

import os
import sys
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
from colorprop_nuke import exr_io, logic  # noqa: E402
from colorprop_nuke import node as cpnode  # noqa: E402

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
    nuke.reset()


def _shot_frame(frame: int) -> np.ndarray:
    return exr_io.read_exr(SHOT / f"plate.{frame:04d}.exr").rgb()


def _key_frame(frame: int) -> np.ndarray:
    assert frame == 1, "the example shot has one key, at frame 1"
    return exr_io.read_exr(SHOT / "key.0001.exr").rgb()


def _luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb @ np.array([0.2126, 0.7152, 0.0722], np.float32)


def _make_node(address: str, work: Path, last: int = 6):
    plate = nuke.nodes.Read(name="Plate")
    plate.render_frame, plate.frame_range = _shot_frame, (1, 24)
    key = nuke.nodes.Read(name="Key")
    key.render_frame = _key_frame
    node = cpnode.create_node()
    node.setInput(0, plate)
    node.setInput(1, key)
    node["server"].setValue(address)
    node["frame_range"].setValue(f"1-{last}")
    node["work_dir"].setValue(str(work))
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
    (name, command), = nuke.menu("Nodes").items[0].items
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
        read, out = nuke.toNode("Result"), nuke.toNode("Output1")
        assert nuke.toNode("WritePlate")["datatype"].value() == "32 bit float"
        assert nuke.toNode("WritePlate")["disable"].value() is True  # re-disabled after the render
    assert out.input(0) is read and (read["first"].value(), read["last"].value()) == (1, 6)
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


def test_gui_colorize_runs_off_the_main_thread_and_cancels(standin, server, tmp_path):
    nuke.reset(gui=True)
    node = _make_node(server[0], tmp_path, last=24)
    node["method"].setValues(["flow"])
    node["method"].setValue("flow")
    t0 = time.monotonic()
    node["colorize"].execute()
    assert time.monotonic() - t0 < 5  # only the renders ran on this thread; the network work did not
    worker = cpnode._jobs[node.name()]
    assert worker is not threading.current_thread()
    end = time.monotonic() + 60
    while not nuke.ProgressTask.instances or not any("frame" in m for m in nuke.ProgressTask.instances[-1].messages):
        assert time.monotonic() < end, "no progress within 60 s"
        time.sleep(0.05)
    nuke.ProgressTask.instances[-1].cancelled = True  # the artist presses cancel on the progress bar
    t_cancel = time.monotonic()
    worker.join(30)
    assert not worker.is_alive() and time.monotonic() - t_cancel < 10
    # the worker queued its status changes for the main thread instead of making them itself
    assert node["status"].value() == "rendering plate and keys..."
    assert nuke.run_main_queue() > 0
    assert node["status"].value() == "cancelled"
    done = list((tmp_path / "colorized").glob("*.exr"))
    assert len(done) < 24


def test_dead_server_is_reported_on_the_node_within_seconds(standin, tmp_path, free_port):
    node = _make_node(f"tcp://127.0.0.1:{free_port()}", tmp_path)
    node["method"].setValues(["flow"])
    t0 = time.monotonic()
    node["colorize"].execute()
    assert time.monotonic() - t0 < 6
    status = node["status"].value()
    assert status.startswith("ERROR: no colorprop server answers at tcp://127.0.0.1:"), status
    assert node["tile_color"].value() == cpnode.ERROR_COLOR


def test_missing_inputs_are_reported_before_rendering(standin, tmp_path):
    node = cpnode.create_node()
    node["colorize"].execute()
    assert "connect a plate" in node["status"].value()
    assert not [c for c in nuke.calls if c[0] == "execute"]


# -- examples/nuke --------------------------------------------------------------------------------
def test_example_builder_and_hand_written_script_match_the_node(standin, server, tmp_path, monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_example", ROOT / "examples" / "nuke" / "build_example.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    node = example.build(server[0])
    assert node.input(0)["file"].value().endswith("plate.####.exr")
    nk = (ROOT / "examples" / "nuke" / "colorprop_example.nk").read_text()
    user_knobs = [k for k, v in node.knobs().items() if v.label is not None and k not in
                  ("name", "tile_color", "label")]
    for knob in user_knobs:
        if knob != "colorprop":
            assert f" {knob}" in nk, f"colorprop_example.nk lacks the {knob!r} knob"
    for inner in ("WritePlate", "WriteKey", "Result", "Output1"):
        assert f"name {inner}" in nk
