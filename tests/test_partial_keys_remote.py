"""Partial keys (a key with a matte: its image's alpha, or ``--key-matte``) on the server paths, against a real
ZeroMQ server on 127.0.0.1: in-band (the matte travels as a ``matte<frame>`` buffer) and shared paths (the server
reads the key's alpha and the matte file itself) give the embedded run's pixels bit for bit; a version-1 client
still runs its jobs and a version-1 server refuses a partial key instead of colouring it as a full key; a bad
matte is refused with the CLI's exit code (its protocol code), nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zmq

from colorprop_client import protocol as P
from colorprop_client.client import JobFailed, ServerError
from colorprop_client.colorize import colorize_arrays, colorize_paths

from serverkit import ThreadServer, make_shot

pytestmark = pytest.mark.usefixtures("watchdog")

N, H, W = 6, 48, 64
FULL, PARTIAL = 1, 4  # key frames: a full key first, a partial key (a box painted blue) later
OUTSIDE = 9  # a frame after the shot's last


def box_matte(h: int = H, w: int = W) -> np.ndarray:
    """1 inside a box, 0.5 on a ring around it (a soft edge), 0 elsewhere: HxW float32."""
    matte = np.zeros((h, w), np.float32)
    matte[14:34, 20:44] = 0.5
    matte[16:32, 22:42] = 1.0
    return matte


def shot() -> tuple[dict[int, np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """The plates, the full key's colour, the partial key's painted colour (straight) and its matte."""
    frames, keys = make_shot(N, h=H, w=W, seed=83)
    painted = (frames[PARTIAL] * np.array([0.3, 0.6, 1.0], np.float32)).astype(np.float32)
    return frames, keys[FULL], painted, box_matte()


def embedded(engine, frames, keys) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """``run_shot`` in this process, in memory: the reference every remote path must equal."""
    from colorprop.engine.engine import ShotOptions
    from colorprop.shot.frames import ArraySink, ArraySource
    from colorprop.shot.pipeline import run_shot

    sink = ArraySink()
    run_shot(engine, ArraySource(frames), keys, ShotOptions(method="flow"), sink)
    return {f: (r.rgb, r.confidence) for f, r in sink.results.items()}


def test_an_inband_partial_key_gives_the_embedded_runs_pixels(engine, server):
    from colorprop.shot.frames import KeyImage

    frames, key, painted, matte = shot()
    remote = colorize_arrays(
        server.address, frames, {FULL: key, PARTIAL: painted}, {"method": "flow"}, key_mattes={PARTIAL: matte}
    )
    reference = embedded(engine, frames, {FULL: KeyImage(key), PARTIAL: KeyImage(painted, matte=matte)})
    without = embedded(engine, frames, {FULL: KeyImage(key)})
    assert sorted(remote) == sorted(reference) == list(range(1, N + 1))
    for f in reference:
        np.testing.assert_array_equal(remote[f][0], reference[f][0], err_msg=f"frame {f}")
        np.testing.assert_array_equal(remote[f][1], reference[f][1], err_msg=f"frame {f}")
    # the matte took effect: the box changed at the partial key, the corners did not
    changed = np.abs(remote[PARTIAL][0] - without[PARTIAL][0]).max(axis=2) > 1e-3
    assert changed[20:28, 26:38].all() and not changed[:6, :6].any() and not changed[-6:, -6:].any()


def write_shot(folder: Path, source: str) -> tuple[str, list[str]]:
    """The shot as EXRs under ``folder``; returns the plate pattern and the ``--key``/``--key-matte`` arguments.
    ``source``: "alpha" (the partial key's file is RGBA, premultiplied as EXR is) or "matte" (an RGB key and a
    one-channel matte file)."""
    from colorprop.io.exr import write_exr

    frames, key, painted, matte = shot()
    folder.mkdir(parents=True, exist_ok=True)
    for f, px in frames.items():
        write_exr(folder / f"plate.{f:04d}.exr", px, ("R", "G", "B"), pixel_type="float")
    write_exr(folder / "full.exr", key, ("R", "G", "B"), pixel_type="float")
    args = ["--key", f"{FULL}={folder / 'full.exr'}", "--key", f"{PARTIAL}={folder / 'partial.exr'}"]
    if source == "alpha":
        rgba = np.dstack([painted * matte[..., None], matte])
        write_exr(folder / "partial.exr", rgba, ("R", "G", "B", "A"), pixel_type="float")
    else:
        write_exr(folder / "partial.exr", painted, ("R", "G", "B"), pixel_type="float")
        write_exr(folder / "matte.exr", matte[..., None], ("Y",), pixel_type="float")
        args += ["--key-matte", f"{PARTIAL}={folder / 'matte.exr'}"]
    return str(folder / "plate.####.exr"), args


def cli(plate: str, keys: list[str], out: str, *extra: str) -> int:
    from colorprop.cli.main import main

    return main(
        ["colorize", "--input", plate, *keys, "--output", out, "--method", "flow", "--progress", "none", *extra]
    )


def exrs(pattern: str) -> dict[int, np.ndarray]:
    from colorprop.io.exr import read_exr

    folder, prefix = Path(pattern).parent, Path(pattern).name.split("#")[0]
    return {int(p.name[len(prefix) :].split(".")[0]): read_exr(p).pixels for p in sorted(folder.glob(prefix + "*"))}


@pytest.mark.parametrize("source", ["alpha", "matte"])
@pytest.mark.parametrize("shared_paths", [False, True], ids=["in-band", "shared-paths"])
def test_colorize_server_with_a_partial_key_writes_what_the_embedded_cli_writes(engine, tmp_path, source, shared_paths):
    plate, keys = write_shot(tmp_path / "shot", source)
    srv = ThreadServer(engine, allowed_roots=(str(tmp_path),) if shared_paths else ())
    opened: list[dict] = []
    handle = srv.service._handlers[P.OPEN_SHOT]
    srv.service._handlers[P.OPEN_SHOT] = lambda msg, client, reply: (
        opened.append(msg.header) or handle(msg, client, reply)
    )
    try:
        assert cli(plate, keys, str(tmp_path / "embedded" / "c.####.exr")) == 0
        assert cli(plate, keys, str(tmp_path / "remote" / "c.####.exr"), "--server", srv.address) == 0
    finally:
        srv.stop()
    assert [(h["mode"], h["v"]) for h in opened] == [(P.MODE_PATHS if shared_paths else P.MODE_INBAND, 2)]
    if shared_paths:  # the server read the key's alpha (or the matte file) itself
        assert opened[0]["partial_keys"] == [PARTIAL] and set(opened[0]["key_mattes"]) == (
            {str(PARTIAL)} if source == "matte" else set()
        )
    local, remote = exrs(str(tmp_path / "embedded" / "c.####.exr")), exrs(str(tmp_path / "remote" / "c.####.exr"))
    assert sorted(local) == sorted(remote) == list(range(1, N + 1))
    for f in local:
        np.testing.assert_array_equal(remote[f], local[f], err_msg=f"frame {f}")


class Version1Client:
    """What a client of protocol 1 does: every request at version 1, and any reply of another version refused (its
    decoder took only its own)."""

    def __init__(self, address: str):
        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(address)

    def request(self, type: str, arrays=None, **fields) -> P.Message:
        self.sock.send_multipart(P.encode(type, None, arrays, version=1, **fields))
        assert self.sock.poll(30_000), f"no reply to {type}"
        frames = self.sock.recv_multipart()
        assert json.loads(frames[0])["v"] == 1, f"a version-1 client cannot read this {type} reply: {frames[0][:80]}"
        return P.decode(frames, expect=P.REPLY_TYPES)

    def close(self) -> None:
        self.sock.close(0)


@pytest.mark.parametrize("shared_paths", [False, True], ids=["in-band", "shared-paths"])
def test_a_version_1_client_still_runs_a_batch_job(engine, server, tmp_path, shared_paths):
    """The server speaks 3 and still answers a version-1 client's requests, at version 1, with the same pixels."""
    from colorprop.shot.frames import KeyImage

    frames, key, _, _ = shot()
    reference = embedded(engine, frames, {FULL: KeyImage(key)})
    old = Version1Client(server.address)
    try:
        hello = old.request(P.HELLO)
        assert hello.get("protocol") == P.PROTOCOL_VERSION == P.LIVE_VERSION == 3
        if shared_paths:
            from colorprop.io.exr import write_exr

            folder = server.root / tmp_path.name
            folder.mkdir()
            for f, px in frames.items():
                write_exr(folder / f"plate.{f:04d}.exr", px, ("R", "G", "B"), pixel_type="float")
            write_exr(folder / "key.exr", key, ("R", "G", "B"), pixel_type="float")
            fields = dict(mode=P.MODE_PATHS, input=str(folder / "plate.####.exr"), output=str(folder / "o.####.exr"))
            fields.update(keys={str(FULL): str(folder / "key.exr")}, pixel_type="float")
            arrays = None
        else:
            fields, arrays = dict(mode=P.MODE_INBAND, keys=[FULL]), [(f"key{FULL}", key)]
        job = f"v1-{tmp_path.name}"[-60:]
        old.request(P.OPEN_SHOT, arrays, job=job, frames=list(frames), options={"method": "flow"}, **fields)
        results, after, done = {}, -1, False
        while not done:
            for ev in (reply := old.request(P.FETCH, job=job, after=after, wait_ms=500)).get("events"):
                after = ev["seq"]
                assert ev["kind"] != P.EV_FAILED, ev
                if ev["kind"] == P.EV_NEED:
                    old.request(
                        P.FRAME, [("pixels", frames[ev["frame"]])], job=job, frame=ev["frame"], channels=["R", "G", "B"]
                    )
                elif ev["kind"] == P.EV_RESULT:
                    results[ev["frame"]] = np.array(reply.arrays[ev["rgb"]])
                done = done or ev["kind"] == P.EV_DONE
        old.request(P.CLOSE, job=job)
    finally:
        old.close()
    if shared_paths:
        results = {f: px[..., :3] for f, px in exrs(str(folder / "o.####.exr")).items()}
    assert sorted(results) == list(range(1, N + 1))
    for f, rgb in results.items():
        np.testing.assert_array_equal(rgb, reference[f][0], err_msg=f"frame {f}")


def test_a_version_1_server_refuses_a_partial_key_and_still_runs_full_keys(engine, tmp_path, monkeypatch):
    """A server of protocol 1 (this one, made to speak only 1) answers a partial key's open with 'version': the
    client says what it cannot carry; ``colorize --server`` exits 2 with nothing written. Full keys still run."""
    from colorprop_client import dcc

    monkeypatch.setattr(P, "PROTOCOL_VERSION", 1)
    monkeypatch.setattr(P, "SUPPORTED_VERSIONS", frozenset({1}))
    frames, key, painted, matte = shot()
    srv = ThreadServer(engine)
    try:
        with pytest.raises(ServerError) as refused:
            colorize_arrays(
                srv.address, frames, {FULL: key, PARTIAL: painted}, {"method": "flow"}, key_mattes={PARTIAL: matte}
            )
        assert refused.value.code == P.E_VERSION
        text = dcc.describe_error(refused.value)
        assert f"partial key(s) at frame(s) {PARTIAL}" in text and "update the server" in text, text
        assert len(colorize_arrays(srv.address, frames, {FULL: key}, {"method": "flow"})) == N
        plate, keys = write_shot(tmp_path / "shot", "alpha")
        assert cli(plate, keys, str(tmp_path / "out" / "c.####.exr"), "--server", srv.address) == 2
    finally:
        srv.stop()
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def bad_keys(case: str) -> tuple[dict, dict, dict]:
    """(keys, key_mattes, options) of an in-band shot whose partial key the pre-flight refuses."""
    frames, key, painted, matte = shot()
    keys, options = {FULL: key, PARTIAL: painted}, {"method": "flow"}
    if case == "wrong-size":
        matte = box_matte(H // 2, W // 2)
    elif case == "transparent":
        matte = np.zeros_like(matte)
    elif case == "nan":
        matte = matte.copy()
        matte[0, 0] = np.nan
    elif case == "partial-only":
        keys = {PARTIAL: painted}
    elif case == "outside":  # a partial key on a frame the shot does not colour
        return {FULL: key, OUTSIDE: painted}, {OUTSIDE: matte}, options
    return keys, {PARTIAL: matte}, options


# case -> (the protocol's code, the embedded CLI's exit code, words of the message)
BAD = {
    "wrong-size": (P.E_PIXELS, 3, f"the matte is {W // 2}x{H // 2} but the key is {W}x{H}"),
    "transparent": (P.E_BAD_INPUT, 2, "0 everywhere"),
    "nan": (P.E_PIXELS, 3, "NaN"),
    "partial-only": (P.E_BAD_INPUT, 2, "give a full key too, or --regrade"),
    "outside": (P.E_BAD_INPUT, 2, f"{OUTSIDE} are not among the"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_inband_matte_is_refused_at_the_open_with_the_clis_code(server, case):
    frames, _, _, _ = shot()
    keys, mattes, options = bad_keys(case)
    code, _, words = BAD[case]
    with pytest.raises(ServerError) as refused:
        colorize_arrays(server.address, frames, keys, options, key_mattes=mattes)
    assert refused.value.code == code and words in str(refused.value), str(refused.value)
    assert not isinstance(refused.value, JobFailed)  # refused at the open, before any frame ran


def write_bad_shot(folder: Path, case: str) -> tuple[str, list[str]]:
    """``write_shot``'s shot (a separate matte) made bad as ``bad_keys`` makes the in-band one."""
    from colorprop.io.exr import write_exr

    plate, args = write_shot(folder, "matte")
    _, mattes, _ = bad_keys(case)
    write_exr(folder / "matte.exr", mattes.get(PARTIAL, mattes.get(OUTSIDE))[..., None], ("Y",), pixel_type="float")
    if case == "partial-only":
        args = args[2:]  # no full key
    elif case == "outside":
        args = [a.replace(f"{PARTIAL}={folder}", f"{OUTSIDE}={folder}") for a in args]
    return plate, args


@pytest.mark.parametrize("case", sorted(BAD))
@pytest.mark.parametrize("shared_paths", [False, True], ids=["in-band", "shared-paths"])
def test_colorize_server_refuses_a_bad_matte_with_the_embedded_exit_code(engine, tmp_path, case, shared_paths, capsys):
    plate, keys = write_bad_shot(tmp_path / "shot", case)
    _, exit_code, words = BAD[case]
    assert cli(plate, keys, str(tmp_path / "embedded" / "c.####.exr")) == exit_code
    embedded_error = capsys.readouterr().err
    srv = ThreadServer(engine, allowed_roots=(str(tmp_path),) if shared_paths else ())
    try:
        assert cli(plate, keys, str(tmp_path / "remote" / "c.####.exr"), "--server", srv.address) == exit_code
    finally:
        srv.stop()
    remote_error = capsys.readouterr().err
    assert words in embedded_error and words in remote_error, (embedded_error, remote_error)
    for out in ("embedded", "remote"):
        assert not (tmp_path / out).exists() or not any((tmp_path / out).iterdir()), out


@pytest.mark.parametrize("case", ["wrong-size", "transparent"])
def test_the_server_runs_the_preflight_on_a_shared_path_matte_itself(server, tmp_path, case):
    """A client that skips the pre-flight (not ``colorize --server``) gets the same refusal from the server's own."""
    folder = server.root / f"{tmp_path.name}-{case}"
    plate, args = write_bad_shot(folder, case)
    out = folder / "out" / "o.####.exr"
    with pytest.raises(JobFailed) as failed:
        colorize_paths(
            server.address,
            plate,
            str(out),
            list(range(1, N + 1)),
            {FULL: str(folder / "full.exr"), PARTIAL: str(folder / "partial.exr")},
            {"method": "flow"},
            key_mattes={PARTIAL: str(folder / "matte.exr")},
            partial_keys=[PARTIAL],
        )
    code, _, words = BAD[case]
    assert failed.value.code == code and words in str(failed.value), str(failed.value)
    assert not out.parent.exists() or not any(out.parent.iterdir())


def test_shared_paths_refuse_a_key_the_two_sides_read_differently(server, tmp_path):
    """The client read key 4 as partial; the server reads a full key there (storage out of sync): refused."""
    folder = server.root / tmp_path.name
    plate, _ = write_shot(folder, "matte")
    with pytest.raises(JobFailed) as failed:
        colorize_paths(
            server.address,
            plate,
            str(folder / "out" / "o.####.exr"),
            list(range(1, N + 1)),
            {FULL: str(folder / "full.exr"), PARTIAL: str(folder / "partial.exr")},
            {"method": "flow"},
            partial_keys=[PARTIAL],
        )
    assert failed.value.code == P.E_BAD_INPUT and "reads key frame(s) none as partial" in str(failed.value)


def test_a_matte_for_a_frame_without_a_key_or_of_the_wrong_shape_is_refused_at_the_open(server, tmp_path):
    from colorprop_client.client import Client

    frames, key, painted, matte = shot()
    with Client(server.address) as c:
        with pytest.raises(ServerError) as flat:
            c.open_shot(
                {FULL: key, PARTIAL: painted}, {"method": "flow"}, list(frames), key_mattes={PARTIAL: matte[..., None]}
            )
        assert flat.value.code == P.E_PIXELS and "matte must be HxW" in str(flat.value)
        folder = server.root / tmp_path.name
        plate, _ = write_shot(folder, "matte")
        with pytest.raises(ServerError) as stray:
            c.open_shot(
                {FULL: str(folder / "full.exr")},
                {"method": "flow"},
                list(frames),
                P.MODE_PATHS,
                plate,
                str(folder / "o.####.exr"),
                key_mattes={PARTIAL: str(folder / "matte.exr")},
            )
        assert stray.value.code == P.E_BAD_INPUT and stray.value.field == "key_mattes"


def test_an_inband_matte_outside_0_1_is_clamped_with_a_note_as_the_cli_clamps_it(engine, server):
    """A float alpha of 1.3 and -0.2 (a paint app's overshoot): clamped into [0, 1] as the pre-flight clamps it, the
    note in the opened reply, and the shot coloured as the embedded run with the clamped matte colours it."""
    from colorprop_client.client import Client
    from colorprop.shot.frames import KeyImage

    frames, key, painted, matte = shot()
    over = np.where(matte > 0, matte * 1.3, -0.2).astype(np.float32)
    with Client(server.address) as c:
        job = c.open_shot({FULL: key, PARTIAL: painted}, {"method": "flow"}, list(frames), key_mattes={PARTIAL: over})
        job.close()
    note = f"key {PARTIAL}: matte (alpha) values from -0.2 to 1.3 clamped to [0, 1]"
    assert job.opened["notes"] == [note]
    seen: list = []
    remote = colorize_arrays(
        server.address,
        frames,
        {FULL: key, PARTIAL: painted},
        {"method": "flow"},
        key_mattes={PARTIAL: over},
        on_progress=seen.append,
    )
    # also a note event, first of the job's (colorize_arrays does not act on the kind: it hands it on)
    assert seen[0].kind == P.EV_NOTE and seen[0].info["message"] == note
    assert [ev for ev in seen if ev.kind == P.EV_NOTE] == seen[:1]
    clamped = np.clip(over, 0, 1)
    reference = embedded(engine, frames, {FULL: KeyImage(key), PARTIAL: KeyImage(painted, matte=clamped)})
    for f in reference:
        np.testing.assert_array_equal(remote[f][0], reference[f][0], err_msg=f"frame {f}")


@pytest.mark.parametrize("shared_paths", [False, True], ids=["in-band", "shared-paths"])
def test_a_dcc_run_with_a_key_alpha_outside_0_1_shows_the_note_and_colours_as_the_embedded_run(
    engine, server, tmp_path, capsys, shared_paths
):
    """An RGBA key whose alpha reaches 1.3 and -0.2, through the DCC's job (dcc.run_job, as both hosts run it): the
    server's pre-flight note reaches the artist in either data mode, shown through progress and returned, naming
    the key as the embedded run names it; the pixels are the embedded run's with the matte clamped."""
    from colorprop.engine.engine import ShotOptions
    from colorprop.io.exr import read_exr, write_exr
    from colorprop.shot.frames import ArraySink, ArraySource, KeyImage, load_key
    from colorprop.shot.pipeline import run_shot
    from colorprop.shot.preflight import check_key_matte
    from colorprop_client import dcc

    frames, key, painted, matte = shot()
    alpha = np.where(matte > 0, matte * 1.3, -0.2).astype(np.float32)
    folder = server.root / f"overshoot-{tmp_path.name}"  # under the server's allowed root
    plate, _ = write_shot(folder, "alpha")  # then the partial key's file again, with the overshooting alpha
    write_exr(
        folder / "partial.exr", np.dstack([painted * alpha[..., None], alpha]), ("R", "G", "B", "A"), pixel_type="float"
    )
    key_paths = {FULL: str(folder / "full.exr"), PARTIAL: str(folder / "partial.exr")}
    seen: list[str] = []
    if shared_paths:
        out = folder / "remote" / "c.####.exr"
        job = dcc.PathsShot(plate, key_paths, str(out), [PARTIAL])
        named = key_paths[PARTIAL]  # the server read the file: the note names it, as the embedded CLI's does
    else:
        written: dict[int, np.ndarray] = {}
        rgba = read_exr(folder / "partial.exr").pixels  # the host's key, premultiplied as the file holds it
        job = dcc.InbandShot(
            lambda f: frames[f], {FULL: key, PARTIAL: rgba}, lambda f, rgb, c: written.update({f: rgb})
        )
        named = f"key {PARTIAL}"
    report = dcc.run_job(server.address, sorted(frames), job, {"method": "flow"}, lambda f, msg: seen.append(msg))
    note = f"{named}: matte (alpha) values from -0.2 to 1.3 clamped to [0, 1]"
    assert report.notes == [note] and dcc.note_text(note) in seen, (report.notes, seen)
    if shared_paths:  # the embedded CLI on the same files: the same note, the same files
        keys = ["--key", f"{FULL}={key_paths[FULL]}", "--key", f"{PARTIAL}={key_paths[PARTIAL]}"]
        assert cli(plate, keys, str(folder / "embedded" / "c.####.exr")) == 0
        assert f"colorprop: note: {note}" in capsys.readouterr().err
        local, remote = exrs(str(folder / "embedded" / "c.####.exr")), exrs(str(out))
    else:  # the embedded run on the key as core's load_key reads the file, clamped by the pre-flight
        partial, notes = load_key(folder / "partial.exr", None), []
        check_key_matte(partial, notes)
        assert notes == [f"{folder / 'partial.exr'}: matte (alpha) values from -0.2 to 1.3 clamped to [0, 1]"]
        sink = ArraySink()
        run_shot(engine, ArraySource(frames), {FULL: KeyImage(key), PARTIAL: partial}, ShotOptions(method="flow"), sink)
        local, remote = {f: r.rgb for f, r in sink.results.items()}, written
    assert sorted(local) == sorted(remote) == list(range(1, N + 1))
    for f in local:
        np.testing.assert_array_equal(remote[f], local[f], err_msg=f"frame {f}")
