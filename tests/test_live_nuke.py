"""The Nuke node's live knob (plugin/nuke/colorprop_nuke/live.py) on the stand-in ``nuke`` module against a real
`colorprop serve` process on 127.0.0.1: live on, frames written as they come and the Read reloaded; a repainted
key and a new partial key sent as edits, every frame then equal to the embedded engine's fresh run of the same
rendered keys; live off closes the session on the server; a server killed mid-session is on the node within 5 s,
no half-written file left. (What the stand-in does not show: tests/test_nuke_plugin.py's docstring.)"""

from __future__ import annotations

import os
import signal
import sys
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
from colorprop_client.client import Client  # noqa: E402
from colorprop_nuke import exr_io  # noqa: E402
from colorprop_nuke import live as cplive  # noqa: E402
from colorprop_nuke import node as cpnode  # noqa: E402

from serverkit import spawn, stop_proc, wait_hello, wait_until  # noqa: E402

pytestmark = pytest.mark.usefixtures("watchdog")
LAST = 6
BOX = (slice(100, 180), slice(150, 300))


@pytest.fixture
def server(free_port):
    address = f"tcp://127.0.0.1:{free_port()}"
    proc = spawn(["serve", "--bind", address, "--log-level", "WARNING"])
    try:
        wait_hello(address, proc)
        yield address, proc
    finally:
        stop_proc(proc)


@pytest.fixture
def standin():
    nuke.reset(gui=False, frame=4)
    yield nuke
    for name in list(cplive._live):
        cplive._live[name][0].stop()
        cplive._live[name][1].join(30)
    cplive._live.clear()
    nuke.reset()


def plate(frame: int) -> np.ndarray:
    return exr_io.read_exr(SHOT / f"plate.{frame:04d}.exr").rgb()


class KeyInput:
    """The key input: frame 1 the example's key (scaled by ``gain``), frame 4 a blue box with an alpha."""

    def __init__(self) -> None:
        self.gain = 1.0

    def __call__(self, frame: int) -> np.ndarray:
        if frame == 1:
            rgb = exr_io.read_exr(SHOT / "key.0001.exr").rgb() * np.float32(self.gain)
            return np.dstack([rgb, np.ones(rgb.shape[:2], np.float32)]).astype(np.float32)
        alpha = np.zeros(plate(4).shape[:2], np.float32)
        alpha[BOX] = 1.0
        return np.dstack([plate(4) * np.array([0.3, 0.6, 1.0], np.float32) * alpha[..., None], alpha])


def make_node(address: str, work: Path, keys: KeyInput):
    src = nuke.nodes.Read(name="Plate")
    src.render_frame, src.frame_range = plate, (1, 24)
    key = nuke.nodes.Read(name="Key")
    key.render_frame = keys
    node = cpnode.create_node()
    node.setInput(0, src)
    node.setInput(1, key)
    node["server"].setValue(address)
    node["frame_range"].setValue(f"1-{LAST}")
    node["keyframes"].setValue("1")
    node["work_dir"].setValue(str(work))
    node["method"].setValues(["flow"])
    node["method"].setValue("flow")
    return node


def reference(engine, work: Path, key_frames: list[int]) -> dict:
    """The embedded engine's fresh run on the node's rendered plate and keys."""
    from colorprop.engine.engine import ShotOptions
    from colorprop.shot.frames import ArraySink, ExrSequenceSource, load_key
    from colorprop.shot.pipeline import run_shot

    keys = {k: load_key(work / "key" / f"key.{k:04d}.exr", None) for k in key_frames}
    sink = ArraySink()
    run_shot(engine, ExrSequenceSource(str(work / "plate" / "plate.####.exr"), range(1, LAST + 1)), keys,
             ShotOptions(method="flow"), sink)  # fmt: skip
    return {f: r.rgb for f, r in sink.results.items()}


def run_done(node, run: int) -> bool:
    """Run ``run`` of the node's live session has ended (or the session stopped: the assertion shows why)."""
    entry = cplive._live.get(node.name())
    if entry is None or node["status"].value().startswith("ERROR"):
        return True
    return entry[0].session is not None and run in entry[0].session.runs_done


def shows(node, ref: dict) -> None:
    with node:
        pattern = nuke.toNode("Result")["file"].value()
    for f, rgb in ref.items():
        np.testing.assert_array_equal(exr_io.read_exr(dcc.frame_path(pattern, f)).rgb(), rgb, err_msg=f"frame {f}")


def test_live_knob_streams_edits_and_closes(standin, server, engine, tmp_path):
    address, _ = server
    keys = KeyInput()
    node = make_node(address, tmp_path / "work", keys)
    nuke.artist_sets(node, "live", True)
    assert wait_until(lambda: run_done(node, 0), 120)
    assert node["status"].value().startswith("live: run 0 done"), node["status"].value()
    shows(node, reference(engine, tmp_path / "work", [1]))
    reloads = [c for c in nuke.calls if c[:3] == ("knob.execute", "Result", "reload")]
    assert len(reloads) >= LAST  # the Read picked up every frame as it came

    keys.gain = 0.7  # the artist repaints the key: "send keys"
    node["live_keys"].execute()
    assert wait_until(lambda: run_done(node, 1), 120)
    assert node["status"].value().startswith("live: run 1 done"), node["status"].value()
    shows(node, reference(engine, tmp_path / "work", [1]))

    nuke.artist_sets(node, "keyframes", "1, 4")  # a partial key at the current frame
    assert wait_until(lambda: run_done(node, 2), 120)
    shows(node, reference(engine, tmp_path / "work", [1, 4]))
    assert node["status"].value().startswith("live: run 2 done"), node["status"].value()

    job = cplive._live[node.name()][0].session.job.id
    nuke.artist_sets(node, "live", False)
    assert node.name() not in cplive._live
    with Client(address) as c:
        assert job not in [row["job"] for row in c.status()]


def test_a_server_killed_mid_session_is_on_the_node_within_5_s(standin, server, tmp_path):
    address, proc = server
    node = make_node(address, tmp_path / "work", KeyInput())
    nuke.artist_sets(node, "live", True)
    live = cplive._live[node.name()][0]
    assert wait_until(lambda: live.session is not None and live.session.results, 120)
    os.kill(proc.pid, signal.SIGKILL)
    t0 = time.monotonic()
    assert wait_until(lambda: node["status"].value().startswith("ERROR"), 10), node["status"].value()
    assert time.monotonic() - t0 < 5, node["status"].value()
    assert "stopped answering" in node["status"].value()
    assert node["live"].value() is False
    out = tmp_path / "work" / "colorized"
    assert not [p for p in out.iterdir() if ".tmp-" in p.name]  # every result whole
    for p in out.iterdir():
        exr_io.read_exr(p)
