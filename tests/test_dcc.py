"""The DCC helpers both plug-ins use (plugin/colorprop_client/dcc.py), against a real server.

The server runs in this process (``ThreadServer``, method flow), reached over ``inproc://`` as well
as tcp on 127.0.0.1. Frame patterns and ranges are checked against core's own parser on one table,
so the plug-ins and ``colorprop colorize`` read the same text the same way.
"""

from __future__ import annotations

import time
import tomllib

import numpy as np
import pytest

from colorprop.errors import InputError
from colorprop.io.exr import write_exr
from colorprop.io.sequence import FramePattern, parse_frames
from colorprop_client import dcc
from colorprop_client import protocol as P
from colorprop_client.client import ServerError, colorize_arrays

from serverkit import REPO, ThreadServer, make_shot, wait_until

pytestmark = pytest.mark.usefixtures("watchdog")


@pytest.fixture(scope="module")
def inproc_server(engine, tmp_path_factory):
    root = tmp_path_factory.mktemp("shared")
    srv = ThreadServer(engine, bind="inproc://colorprop-test-dcc", allowed_roots=(str(root),))
    srv.root = root
    yield srv
    srv.stop()


@pytest.mark.parametrize(
    "pattern, frame",
    [
        ("/a/b.####.exr", 7),
        ("/a/b.%04d.exr", 7),
        ("/a/b.%d.exr", 1234),
        ("/a/b_@@@.exr", 12),
        ("/a/b.##.exr", 12345),
        ("/a/b.####.exr", -3),
        ("/x.####/b.%03d.exr", 5),
        ("rel/b.%05d.exr", 42),
    ],
)
def test_frame_path_matches_core(pattern, frame):
    assert dcc.frame_path(pattern, frame) == str(FramePattern(pattern).path(frame))


def test_frame_path_without_token_is_an_error():
    with pytest.raises(dcc.ColorizeError, match="no frame number token"):
        dcc.frame_path("/a/b.exr", 1)
    with pytest.raises(dcc.ColorizeError):
        dcc.frame_path("/shots/####/plate.exr", 1)  # the token must be in the file name, as in core


@pytest.mark.parametrize("text", ["1-24", "1-24x5", "7", "1-3,10-12", "-5--2", "3,1,2"])
def test_frame_ranges_match_core(text):
    assert dcc.parse_frame_range(text, 0, 0) == sorted(parse_frames(text))


@pytest.mark.parametrize("text", ["9-1", "1-9x0", "a-b", "1-"])
def test_bad_frame_ranges_are_refused_like_core(text):
    with pytest.raises(dcc.ColorizeError, match="frame range"):
        dcc.parse_frame_range(text, 0, 0)
    with pytest.raises(InputError):
        parse_frames(text)


def test_matte_sits_beside_the_colour_as_a_gray_image():
    assert dcc.matte_pattern("/o/sh010_colorprop.####.exr") == "/o/sh010_colorprop_confidence.####.exr"
    assert dcc.matte_pattern("rel/ColorProp1.%04d.exr") == "rel/ColorProp1_confidence.%04d.exr"
    matte = np.array([[0.0, 0.25], [1.0, 0.5]], np.float32)
    rgb = dcc.matte_rgb(matte)
    assert rgb.shape == (2, 2, 3) and all(np.array_equal(rgb[..., c], matte) for c in range(3))


def test_matte_path_is_one_frame_of_the_matte_sequence():
    assert dcc.matte_path("/o/sh010_colorprop.####.exr", 7) == "/o/sh010_colorprop_confidence.0007.exr"
    assert dcc.matte_path("rel/ColorProp1.%04d.exr", -3) == "rel/ColorProp1_confidence.-0003.exr"


def test_keyframe_text():
    assert dcc.parse_keyframes("12, 1 24;1") == [1, 12, 24]
    assert dcc.add_keyframe("1, 24", 12) == "1, 12, 24"
    assert dcc.add_keyframe("junk", 5) == "5"
    with pytest.raises(dcc.ColorizeError, match="'x'"):
        dcc.parse_keyframes("1, x")
    assert dcc.parse_frame_range("", 3, 6) == [3, 4, 5, 6]


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:5557", "ipc:///tmp/cp.sock", "inproc://cp", " tcp://h:1 "])
def test_addresses_accepted(address):
    assert dcc.check_address(address) == address.strip()


@pytest.mark.parametrize("address", ["", "127.0.0.1:5557", "http://127.0.0.1:5557", "tcp://", "udp://h:1"])
def test_addresses_refused(address):
    with pytest.raises(dcc.ColorizeError, match="should look like tcp://"):
        dcc.check_address(address)


def test_keys_must_lie_inside_the_frames():
    with pytest.raises(dcc.ColorizeError, match=r"\[5\].*outside"):
        dcc.check_frames([1, 2, 3], [5])
    with pytest.raises(dcc.ColorizeError, match="no keyframes"):
        dcc.check_frames([1, 2, 3], [])


def test_options_follow_the_servers_capabilities():
    caps = {
        "engine": {
            "methods": ["flow"],
            "default_method": "flow",
            "options": {
                "method": {"choices": ["full", "flow"]},
                "working_width": {"choices": None},
                "upsample": {"choices": ["guided"]},
                "regrade": {"type": "bool"},
            },
        }
    }
    assert dcc.method_choices(caps) == (["flow"], "flow")
    assert dcc.build_options(caps, "flow", "draft") == {"method": "flow", "working_width": 320}
    assert dcc.build_options(caps, None, "high", regrade=True) == {
        "method": "flow",
        "working_width": 960,
        "upsample": "guided",
        "regrade": True,
    }
    with pytest.raises(dcc.ColorizeError, match="not offered"):
        dcc.build_options(caps, "full", "standard")
    with pytest.raises(dcc.ColorizeError, match="no option 'write_confidence'"):
        dcc.build_options(caps, "flow", "standard", write_confidence=True)
    assert dcc.method_choices(None)[0] == dcc.FALLBACK_METHODS


def test_connect_over_inproc(inproc_server):
    caps = dcc.connect(inproc_server.address)
    assert inproc_server.address.startswith("inproc://")
    assert "flow" in dcc.method_choices(caps)[0]
    assert {"regrade", "write_confidence"} <= set(dcc.declared_options(caps))


def test_connect_to_nobody_says_so_within_the_timeout(free_port):
    t0 = time.monotonic()
    with pytest.raises(dcc.ColorizeError, match="no colorprop server answers at tcp://127.0.0.1:"):
        dcc.connect(f"tcp://127.0.0.1:{free_port()}", timeout_s=0.5)
    assert time.monotonic() - t0 < 3


def test_run_job_inband_gives_the_clients_pixels_and_reports_progress(inproc_server):
    frames, keys = make_shot(6, seed=4)
    written: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    seen: list[tuple[float, str]] = []
    shot = dcc.InbandShot(lambda f: frames[f], keys, lambda f, rgb, conf: written.__setitem__(f, (rgb, conf)))
    dcc.run_job(
        inproc_server.address,
        sorted(frames),
        shot,
        {"method": "flow"},
        progress=lambda frac, msg: seen.append((frac, msg)),
    )
    reference = colorize_arrays(inproc_server.address, frames, keys, {"method": "flow"})
    assert sorted(written) == sorted(frames)
    for f in frames:
        np.testing.assert_array_equal(written[f][0], reference[f][0])
        np.testing.assert_array_equal(written[f][1], reference[f][1])
    fractions = [frac for frac, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any("6/6" in msg for _, msg in seen) and seen[-1][1].startswith("done: 6 frames")


def test_run_job_cancel_stops_early(inproc_server):
    """Cancel once 2 frames are back: the loop stops at its next request (at most the frames of that fetch,
    so 2 + the client's window of 4), and the job is stopped on the server, not left waiting for frames."""
    frames, keys = make_shot(20, seed=5)
    written: list[int] = []
    shot = dcc.InbandShot(lambda f: frames[f], keys, lambda f, rgb, conf: written.append(f))
    with pytest.raises(dcc.Cancelled):
        dcc.run_job(
            inproc_server.address, sorted(frames), shot, {"method": "flow"}, is_cancelled=lambda: len(written) >= 2
        )
    assert 2 <= len(written) <= 6, written
    assert wait_until(lambda: not inproc_server.service.active_jobs(), 30)  # not left waiting (it would: 120 s)


def test_a_job_that_fails_mid_run_is_reported(inproc_server):
    """Shared paths, plate frame 4's pixel data truncated on disk: the server writes frames 1-3, then fails the job
    when it reads frame 4; the artist gets the file and the reason, and no frame 4 or later exists."""
    folder = inproc_server.root / "fails_mid_run"
    folder.mkdir()
    frames, keys = make_shot(6, seed=6)
    for f, rgb in frames.items():
        write_exr(folder / f"plate.{f:04d}.exr", rgb, ("R", "G", "B"))
    write_exr(folder / "key.0001.exr", keys[1], ("R", "G", "B"))
    plate4 = folder / "plate.0004.exr"
    data = plate4.read_bytes()
    plate4.write_bytes(data[: len(data) // 2])  # header intact (it passes the pre-flight), pixel data cut
    seen: list[str] = []
    shot = dcc.PathsShot(
        str(folder / "plate.####.exr"), {1: str(folder / "key.0001.exr")}, str(folder / "out.####.exr")
    )
    with pytest.raises(dcc.ColorizeError, match="plate.0004.exr") as err:
        dcc.run_job(
            inproc_server.address, sorted(frames), shot, {"method": "flow"}, progress=lambda frac, msg: seen.append(msg)
        )
    assert "cannot read EXR" in str(err.value)
    assert sorted(p.name for p in folder.glob("out.*.exr")) == [f"out.{f:04d}.exr" for f in (1, 2, 3)]
    assert any("3/6" in msg for msg in seen)  # progress came in before the failure


def test_paths_mode_needs_a_server_with_allowed_roots(engine, tmp_path):
    srv = ThreadServer(engine)
    try:
        shot = dcc.PathsShot(str(tmp_path / "p.####.exr"), {1: str(tmp_path / "k.exr")}, str(tmp_path / "o.####.exr"))
        with pytest.raises(dcc.ColorizeError, match="no shared-path mode"):
            dcc.run_job(srv.address, [1, 2], shot, {"method": "flow"})
    finally:
        srv.stop()


def test_error_lines_say_what_to_do():
    assert dcc.describe_error(ServerError(P.E_PATH, "/x is outside")).endswith("or use 'send pixels')")
    assert "update the plug-in or the server" in dcc.describe_error(ServerError(P.E_VERSION, "v2"))
    assert dcc.describe_error(ServerError(P.E_BAD_INPUT, "bad")) == "server error [bad_input]: bad"


def test_run_job_returns_the_servers_key_suggestions_in_both_modes(inproc_server):
    """The done event's suggestions are what shot.suggest makes of the confidence of the frames the job wrote
    (in-band: the results' mattes; shared paths: the colorprop.confidence channel the server wrote); the labels
    the nodes list read back to their frames."""
    from colorprop.engine.confidence import frame_summary
    from colorprop.io.exr import read_exr
    from colorprop.shot.suggest import suggest_frames

    frames, keys = make_shot(9, seed=8)
    mattes: dict[int, np.ndarray] = {}
    shot = dcc.InbandShot(lambda f: frames[f], keys, lambda f, rgb, conf: mattes.__setitem__(f, conf))
    report = dcc.run_job(inproc_server.address, sorted(frames), shot, {"method": "flow"})
    assert report.notes == []  # full keys: the pre-flight has nothing to tell
    got = report.suggestions
    expected = suggest_frames({f: frame_summary(c) for f, c in mattes.items()}, [1], P.SUGGEST_COUNT)
    assert len(expected) == P.SUGGEST_COUNT
    assert [s["frame"] for s in got] == [x.frame for x in expected]
    assert [s["expected_error"] for s in got] == [round(x.expected_error, 4) for x in expected]
    assert [dcc.suggestion_frame(label) for label in dcc.suggestion_labels(got)] == [x.frame for x in expected]
    assert dcc.suggestion_frame(dcc.NO_SUGGESTIONS) is None

    folder = inproc_server.root / "suggest_paths"
    folder.mkdir()
    for f, rgb in frames.items():
        write_exr(folder / f"plate.{f:04d}.exr", rgb, ("R", "G", "B"))
    write_exr(folder / "key.0001.exr", keys[1], ("R", "G", "B"))
    paths = dcc.PathsShot(str(folder / "plate.####.exr"), {1: str(folder / "key.0001.exr")}, str(folder / "o.####.exr"))
    got = dcc.run_job(
        inproc_server.address, sorted(frames), paths, {"method": "flow", "write_confidence": True}
    ).suggestions
    summary = {f: frame_summary(read_exr(folder / f"o.{f:04d}.exr").channel("colorprop.confidence")) for f in frames}
    assert [s["frame"] for s in got] == [x.frame for x in suggest_frames(summary, [1], P.SUGGEST_COUNT)]


def test_suggested_frames_status_text():
    """The one status text both hosts show for a suggestion list: frames weakest first, 'none' when empty."""
    assert dcc.suggested_frames_text([12, -3, 40]) == "12, -3, 40"
    assert dcc.suggested_frames_text([]) == "none"
    assert dcc.last_run_suggestions_status(iter([7])) == "suggested keys from the last run: 7"


def test_done_status_text():
    """The line each host shows when a run is written: Blender without suggestions, Nuke with them."""
    assert dcc.done_status(6, "/o/x.####.exr") == "done: 6 frames -> /o/x.####.exr"
    suggestions = [{"frame": 12, "expected_error": 0.3}, {"frame": 40, "expected_error": 0.1}]
    assert dcc.done_status(6, "/o/x.####.exr", suggestions) == "done: 6 frames -> /o/x.####.exr; suggested keys: 12, 40"
    assert dcc.done_status(3, "o.%04d.exr", []) == "done: 3 frames -> o.%04d.exr; suggested keys: none"
    notes = ["key 4: matte (alpha) values from -0.2 to 1.3 clamped to [0, 1]", "another"]
    assert dcc.done_status(3, "o.%04d.exr", None, notes) == (
        "done: 3 frames -> o.%04d.exr; note: key 4: matte (alpha) values from -0.2 to 1.3 clamped to [0, 1]; "
        "note: another"
    )
    assert dcc.done_status(3, "o.%04d.exr", [], notes[1:]) == (
        "done: 3 frames -> o.%04d.exr; suggested keys: none; note: another"
    )


def test_suggestions_field_is_optional_and_checked():
    """An older server's done event has no suggestions (none, not an error); a malformed one names the field."""
    assert P.parse_suggestions({"kind": P.EV_DONE, "report": {}}) == []
    assert P.parse_suggestions({P.DONE_SUGGESTIONS: [{"frame": 7, "expected_error": 0.25}]}) == [
        {"frame": 7, "expected_error": 0.25}
    ]
    for bad in (
        "7",
        [{"frame": "7", "expected_error": 0.2}],
        [{"frame": 7}],
        [{"frame": 7, "expected_error": True}],
        [{"frame": 7, "expected_error": float("nan")}],
        [7],
    ):
        with pytest.raises(P.ProtocolError, match="suggestions"):
            P.parse_suggestions({P.DONE_SUGGESTIONS: bad})


@pytest.mark.slow
def test_run_job_reports_a_server_killed_mid_job_within_5_s(free_port):
    """The DCC helper's defaults: a `colorprop serve` process SIGKILLed once the first result is written
    is reported to the artist (one line, ColorizeError) within 5 s."""
    import signal

    from serverkit import spawn, stop_proc, wait_hello

    addr = f"tcp://127.0.0.1:{free_port()}"
    proc = spawn(["serve", "--bind", addr, "--log-level", "WARNING"])
    frames, keys = make_shot(40, h=96, w=128, seed=25)
    killed_at: list[float] = []

    def write_result(frame, rgb, confidence):
        if not killed_at:
            stop_proc(proc, signal.SIGKILL)
            killed_at.append(time.monotonic())

    try:
        caps = dcc.connect(wait_hello(addr, proc) and addr)
        with pytest.raises(dcc.ColorizeError, match="stopped answering") as err:
            dcc.run_job(
                addr,
                sorted(frames),
                dcc.InbandShot(lambda f: frames[f], keys, write_result),
                {"method": "flow"},
                caps=caps,
            )
        gave_up_s = time.monotonic() - killed_at[0]
    finally:
        stop_proc(proc, signal.SIGKILL)
    assert gave_up_s <= 5.0, (gave_up_s, str(err.value))


@pytest.mark.parametrize(
    "sys_platform, machine, key",
    [
        ("linux", "x86_64", "linux-x64"),
        ("linux", "aarch64", "linux-arm64"),
        ("win32", "AMD64", "windows-x64"),
        ("win32", "ARM64", "windows-arm64"),
        ("darwin", "x86_64", "macos-x64"),
        ("darwin", "arm64", "macos-arm64"),
    ],
)
def test_each_host_gets_the_pip_tag_the_blender_extension_is_built_with(monkeypatch, sys_platform, machine, key):
    """One table for the Nuke install hint and the extension's wheels (they once disagreed on Intel macOS)."""
    from colorprop_client import platforms

    monkeypatch.setattr(platforms.sys, "platform", sys_platform)
    monkeypatch.setattr(platforms.platform, "machine", lambda: machine)
    assert platforms.this_platform() == key
    assert dcc.pip_platform() == platforms.PIP_PLATFORMS[key]
    assert (
        key in tomllib.loads((REPO / "plugin/blender/colorprop_blender/blender_manifest.toml").read_text())["platforms"]
    )


def test_key_and_matte_reads_a_keys_alpha_as_cores_load_key_reads_the_file(tmp_path):
    """The plug-ins' one reading of a key's alpha gives core's ``load_key`` values bit for bit: an EXR's premultiplied
    colour divided by its alpha where it is above 0, the alpha as the matte; an opaque alpha a full key."""
    from colorprop.io.exr import read_exr
    from colorprop.shot.frames import load_key

    rng = np.random.default_rng(5)
    rgb = rng.random((20, 24, 3), dtype=np.float32)
    alpha = np.zeros((20, 24), np.float32)
    alpha[4:16, 6:18], alpha[2:4, 6:18] = 1.0, 0.37
    for name, a in (("partial", alpha), ("opaque", np.ones_like(alpha))):
        write_exr(
            tmp_path / f"{name}.exr", np.dstack([rgb * a[..., None], a]), ("R", "G", "B", "A"), pixel_type="float"
        )
        stored = read_exr(tmp_path / f"{name}.exr")
        rgba = stored.pixels[..., [stored.channels.index(c) for c in "RGBA"]]
        colour, matte = dcc.key_and_matte(rgba, name, premultiplied=True)
        core = load_key(tmp_path / f"{name}.exr", None)
        np.testing.assert_array_equal(colour, core.pixels)
        assert (matte is None) == (core.matte is None) == (name == "opaque")
        if matte is not None:
            np.testing.assert_array_equal(matte, core.matte)
    straight, matte = dcc.key_and_matte(np.dstack([rgb, alpha]), "png", premultiplied=False)
    np.testing.assert_array_equal(straight, rgb)  # straight colour (PNG) as it is
    assert dcc.key_and_matte(rgb, "rgb", premultiplied=True)[1] is None
    with pytest.raises(dcc.ColorizeError, match="key 3: a key must be HxW RGB or RGBA"):
        dcc.key_and_matte(rgb[..., :2], "key 3", premultiplied=True)
