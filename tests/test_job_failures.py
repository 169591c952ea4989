"""A job that fails *after it started* is reported as such on every path: the frame (file) is named, the
exit code is the embedded CLI's, the frames before it are kept and none after it is written.

Two failures, both real files: a plate frame in the middle whose pixel data is truncated (its header is
intact, so the pre-flight passes and the job fails when it reaches that frame: exit 3, server code
``unreadable``), and an output frame that cannot be written because a folder holds its name (exit 4,
``write_failed``; serverkit.broken_shot). Paths here: the embedded CLI, `colorize --server` in both data
modes, the client library. Elsewhere: the Nuke node (test_nuke_plugin), a farm task under `openjd run`
(test_farm), the broker (test_broker), the DCC helpers (test_dcc).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from colorprop_client import protocol as P
from colorprop_client.client import JobFailed, ServerError, colorize_arrays, colorize_paths

from serverkit import ThreadServer, broken_shot, make_shot, written_frames

pytestmark = pytest.mark.usefixtures("watchdog")

FRAMES = list(range(1, 9))
BAD = 5  # the frame that fails


def colorize(plate: str, key: str, out: str, *extra: str) -> int:
    from colorprop.cli.main import main

    return main(
        [
            "colorize",
            "--input",
            plate,
            "--key",
            f"1={key}",
            "--output",
            out,
            "--method",
            "flow",
            "--progress",
            "none",
            *extra,
        ]
    )


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
            assert not srv.service.active_jobs()  # the failed job freed its slot
    finally:
        if srv is not None:
            srv.stop()
    err = capsys.readouterr().err
    assert str(bad) in err, err
    assert "sending the frames in-band" not in err  # shared-paths really ran on the server
    assert written_frames(out) == list(range(1, BAD)), "every frame before the bad one is kept, none after it written"
    assert not [p for p in Path(out).parent.iterdir() if ".tmp-" in p.name]


@pytest.mark.parametrize("failure, code", [("unreadable", P.E_UNREADABLE), ("write_failed", P.E_WRITE_FAILED)])
def test_client_library_raises_job_failed_with_the_code_and_the_file(engine, tmp_path, failure, code):
    plate, key, out, bad = broken_shot(tmp_path, failure)
    seen = []
    srv = ThreadServer(engine, allowed_roots=(str(tmp_path),))
    try:
        with pytest.raises(JobFailed) as err:
            colorize_paths(
                srv.address,
                plate,
                out,
                FRAMES,
                {1: key},
                {"method": "flow"},
                timeout_s=5,
                on_progress=lambda ev: seen.append((ev.kind, ev.frame)),
            )
        # the server takes the next job at once
        report = colorize_paths(
            srv.address,
            plate,
            str(tmp_path / "again" / "a.####.exr"),
            FRAMES[: BAD - 1],
            {1: key},
            {"method": "flow"},
            timeout_s=5,
        )
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
        colorize_arrays(
            server.address,
            frames,
            keys,
            {"method": "flow"},
            window=4,
            timeout_s=5,
            on_result=lambda f, rgb, conf: got.append(f),
        )
    assert err.value.code == P.E_PIXELS and f"frame {BAD}" in str(err.value)
    assert got == list(range(1, BAD))  # refused while frames 2-4 were still on the server: their results kept
