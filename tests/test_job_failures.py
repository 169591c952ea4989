"""A job that fails *after it started* is reported as such on every path: the frame (file) is named, the
exit code is the embedded CLI's, the frames before it are kept and none after it is written.

Two failures, both real files: a plate frame in the middle whose pixel data is truncated (its header is
intact, so the pre-flight passes and the job fails when it reaches that frame: exit 3, server code
``unreadable``), and an output frame that cannot be written because a folder holds its name (exit 4,
``write_failed``). Paths: the embedded CLI, `colorize --server` in both data modes, the client library,
the Nuke node (stand-in module, real server process), a farm task under `openjd run`.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

from colorprop_client import protocol as P
from colorprop_client.client import JobFailed, ServerError, colorize_arrays, colorize_paths

from serverkit import ThreadServer, make_shot, write_plates

pytestmark = pytest.mark.usefixtures("watchdog")

FRAMES = list(range(1, 9))
BAD = 5  # the frame that fails


def broken_shot(folder: Path, failure: str) -> tuple[str, str, str, Path]:
    """An 8-frame shot under ``folder`` broken at frame BAD: (plate pattern, key, output pattern, the file
    the error must name)."""
    frames, keys = make_shot(len(FRAMES), seed=71)
    plate, key = write_plates(folder / "shot", frames, keys[1])
    out = folder / "out"
    out.mkdir(parents=True)
    if failure == "unreadable":
        bad = folder / "shot" / f"plate.{BAD:04d}.exr"
        data = bad.read_bytes()
        bad.write_bytes(data[: len(data) * 2 // 3])  # the header stays whole: only the pixels are cut
    else:
        bad = out / f"o.{BAD:04d}.exr"
        bad.mkdir()  # the rename into place cannot replace a folder
    return plate, key, str(out / "o.####.exr"), bad


def written(out_pattern: str) -> list[int]:
    out = Path(out_pattern).parent
    return sorted(int(p.name.split(".")[1]) for p in out.glob("o.*.exr") if p.is_file())


def colorize(plate: str, key: str, out: str, *extra: str) -> int:
    from colorprop.cli.main import main

    return main(["colorize", "--input", plate, "--key", f"1={key}", "--output", out, "--method", "flow",
                 "--progress", "none", *extra])


EXIT = {"unreadable": 3, "write_failed": 4}


@pytest.mark.parametrize("failure", ["unreadable", "write_failed"])
@pytest.mark.parametrize("path", ["embedded", "in-band", "shared-paths"])
def test_colorize_exits_as_the_embedded_cli_naming_the_file(engine, tmp_path, capsys, failure, path):
    plate, key, out, bad = broken_shot(tmp_path, failure)
    extra: tuple[str, ...] = ()
    srv = None
    if path != "embedded":
        srv = ThreadServer(engine, allowed_roots=(str(tmp_path),) if path == "shared-paths" else ())
        extra = ("--server", srv.address)
    try:
        assert colorize(plate, key, out, *extra) == EXIT[failure]
        if path == "shared-paths":
            assert srv.service.stats()  # still serving; the failed job freed its slot
            assert not srv.service.active_jobs()
    finally:
        if srv is not None:
            srv.stop()
    err = capsys.readouterr().err
    assert str(bad) in err, err
    assert "sending the frames in-band" not in err  # shared-paths really ran on the server
    assert written(out) == list(range(1, BAD)), "every frame before the bad one is kept, none after it written"
    assert not [p for p in Path(out).parent.iterdir() if ".tmp-" in p.name]


@pytest.mark.parametrize("failure, code", [("unreadable", P.E_UNREADABLE), ("write_failed", P.E_WRITE_FAILED)])
def test_client_library_raises_job_failed_with_the_code_and_the_file(engine, tmp_path, failure, code):
    plate, key, out, bad = broken_shot(tmp_path, failure)
    seen = []
    srv = ThreadServer(engine, allowed_roots=(str(tmp_path),))
    try:
        with pytest.raises(JobFailed) as err:
            colorize_paths(srv.address, plate, out, FRAMES, {1: key}, {"method": "flow"}, timeout_s=5,
                           on_progress=lambda ev: seen.append((ev.kind, ev.frame)))
        # the server takes the next job at once
        report = colorize_paths(srv.address, plate, str(tmp_path / "again" / "a.####.exr"), FRAMES[: BAD - 1],
                                {1: key}, {"method": "flow"}, timeout_s=5)
    finally:
        srv.stop()
    assert err.value.code == code and str(bad) in str(err.value)
    assert [f for kind, f in seen if kind == P.EV_WRITTEN] == list(range(1, BAD))  # it had started
    assert report["frames_written"] == list(range(1, BAD))


def test_in_band_frame_of_another_size_mid_shot_is_refused_naming_the_frame(server):
    frames, keys = make_shot(len(FRAMES), seed=72)
    frames[BAD] = np.ascontiguousarray(frames[BAD][:, :-8])
    got = []
    with pytest.raises(ServerError) as err:
        colorize_arrays(server.address, frames, keys, {"method": "flow"}, window=4, timeout_s=5,
                        on_result=lambda f, rgb, conf: got.append(f))
    assert err.value.code == P.E_PIXELS and f"frame {BAD}" in str(err.value)
    assert got == list(range(1, BAD))  # refused while frames 2-4 were still on the server: their results kept


# -- the Nuke node (stand-in module, real server process) ------------------------------------------------
@pytest.mark.parametrize("mode, names", [("send pixels", f"frame {BAD} has"), ("shared paths", f"plate.{BAD:04d}.exr: plate has")])
def test_nuke_node_shows_the_failed_frame_in_its_status(tmp_path_factory, free_port, mode, names):
    """Frame 5 of the plate renders NaN (a broken upstream node): in both modes the job has started (frames
    1-4 done) and the node's status says which frame failed, in the error colour."""
    import test_nuke_plugin as T

    from serverkit import spawn, stop_proc, wait_hello

    root = tmp_path_factory.mktemp("nuke-fail")
    address = f"tcp://127.0.0.1:{free_port()}"
    proc = spawn(["serve", "--bind", address, "--allow-root", str(root), "--log-level", "WARNING"])
    T.nuke.reset(gui=False, frame=1)
    try:
        wait_hello(address, proc)

        def plate_frame(frame: int) -> np.ndarray:
            rgb = T._shot_frame(frame)
            return np.full_like(rgb, np.nan) if frame == BAD else rgb

        node = T._make_node(address, root / mode.replace(" ", "_"), last=8, plate_frame=plate_frame)
        node["connect"].execute()
        node["mode"].setValue(mode)
        node["colorize"].execute()
        status, colour = node["status"].value(), node["tile_color"].value()
        messages = T.nuke.ProgressTask.instances[-1].messages
    finally:
        stop_proc(proc)
        T.nuke.reset()
    assert status.startswith("ERROR: server error [pixels]:") and names in status and "NaN/Inf" in status, status
    assert colour == T.cpnode.ERROR_COLOR
    assert any(f"{BAD - 1}/8" in m for m in messages), messages  # it had started: frames 1-4 done


# -- a farm task ----------------------------------------------------------------------------------------
def test_openjd_task_fails_with_exit_3_naming_the_frame(tmp_path):
    import test_farm as F

    if not F.OPENJD.exists():
        pytest.skip("openjd-cli not installed (pip install -e '.[test]')")
    plate, key, out, bad = broken_shot(tmp_path, "unreadable")
    params = {"PlateDirectory": Path(plate).parent, "PlateName": "plate.####.exr", "KeyDirectory": Path(key).parent,
              "KeyName": "key.exr", "KeyFrames": "1", "Frames": f"{FRAMES[0]}-{FRAMES[-1]}",
              "OutputDirectory": Path(out).parent, "OutputName": "o.####.exr", "Method": "flow",
              "ExistingFrames": "overwrite", "ColorpropEnvironment": Path(sys.executable).parent.parent}
    run = F.openjd("run", str(F.TEMPLATE), *[a for k, v in params.items() for a in ("-p", f"{k}={v}")])
    log = F.finish(run)
    assert run.returncode != 0, log
    assert f"cannot read EXR {bad}" in log, log
    assert re.search(r"exited with code: 3 \(unsigned\)", log), log  # the task's exit code (docs/FARM.md)
    assert "ERROR executing action: 'Run Step 'Colorize'" in log
    assert written(out) == list(range(1, BAD))
