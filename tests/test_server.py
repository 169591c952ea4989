"""A real server on 127.0.0.1: results identical to the embedded engine, many clients, fairness,
busy, cancel, and bad input of every kind (fuzzed too) answered with typed errors."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from colorprop_client import protocol as P
from colorprop_client.client import Client, CurveKeys, ServerBusy, ServerError, colorize_arrays, colorize_paths

from serverkit import (
    HeldRoots,
    RecordingGate,
    ThreadServer,
    embedded,
    make_shot,
    spawn,
    stop_proc,
    wait_hello,
    wait_until,
    write_plates,
)

pytestmark = pytest.mark.usefixtures("watchdog")


def _assert_identical(got: dict, ref: dict) -> None:
    assert sorted(got) == sorted(ref)
    for f in ref:
        np.testing.assert_array_equal(got[f][0], ref[f][0], err_msg=f"rgb of frame {f}")
        np.testing.assert_array_equal(got[f][1], ref[f][1], err_msg=f"confidence of frame {f}")


def test_hello_describes_methods_options_and_limits(server):
    with Client(server.address, timeout_s=2) as c:
        caps = c.hello()
    assert caps["protocol"] == P.PROTOCOL_VERSION
    assert "flow" in caps["engine"]["methods"]
    assert caps["engine"]["options"]["method"]["type"] == "str"
    assert caps["limits"]["max_message_bytes"] == 4 << 20
    assert set(caps["modes"]) == {P.MODE_INBAND, P.MODE_PATHS}


@pytest.mark.parametrize("key_frame", [1, 5, 8])
def test_results_identical_to_embedded_engine(server, engine, key_frame):
    frames, _ = make_shot(8, seed=key_frame)
    keys = {key_frame: (frames[key_frame] * np.float32(0.7) + np.float32(0.1)).astype(np.float32)}
    got = colorize_arrays(server.address, frames, keys, {"method": "flow"}, timeout_s=3)
    _assert_identical(got, embedded(engine, frames, keys))


def test_two_keys_and_window_of_one(server, engine):
    frames, keys = make_shot(9, seed=3)
    keys[9] = (frames[9] * np.float32(0.5)).astype(np.float32)
    got = colorize_arrays(server.address, frames, keys, {"method": "flow"}, window=1, timeout_s=3)
    _assert_identical(got, embedded(engine, frames, keys))


@pytest.fixture
def gated(engine, tmp_path):
    """A server with the module server's limits and an allowed root, whose compute turn records its grants."""
    srv = ThreadServer(
        engine,
        allowed_roots=(str(tmp_path),),
        max_message_bytes=4 << 20,
        max_jobs=8,
        max_jobs_per_client=8,
        max_client_buffered_frames=64,
    )
    srv.service.gate = RecordingGate()
    srv.root = tmp_path
    yield srv
    srv.stop()


def test_eight_clients_three_shots_each_identical_and_not_starved(gated, engine):
    """Eight artists, three shots each, at once: every result is identical to an embedded run, and no job waiting
    for the compute turn saw more turns go to others than there are other jobs (round-robin, counted at the turn
    itself: however slowly a loaded machine runs one client, its job is never passed over)."""
    shots = {(c, s): make_shot(6 + 2 * s + c % 3, seed=100 + 10 * c + s) for c in range(8) for s in range(3)}
    refs = {k: embedded(engine, *v) for k, v in shots.items()}
    latency: dict[int, list[float]] = {}
    errors: list[BaseException] = []

    def artist(c: int) -> None:
        try:
            with Client(gated.address, timeout_s=5, retries=3) as client:
                times = []
                for s in range(3):
                    frames, keys = shots[(c, s)]
                    t0 = time.perf_counter()
                    got = colorize_arrays(client, frames, keys, {"method": "flow"})
                    times.append(time.perf_counter() - t0)
                    _assert_identical(got, refs[(c, s)])
                latency[c] = times
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=artist, args=(c,)) for c in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert sorted(latency) == list(range(8))
    print("\nper-client latency (s):", json.dumps({c: [round(t, 3) for t in ts] for c, ts in latency.items()}))
    passed_by = gated.service.gate.passed_by
    assert len(passed_by) == 24 and max(passed_by.values()) <= 7, passed_by  # 8 jobs at most open at once


def test_short_job_is_not_starved_by_a_long_one(gated):
    """A short shot opened while a 150-frame one runs: each frame of either waits for at most one turn of the
    other (counted at the turn), so the short one is never queued behind the long one's remaining frames."""
    long_frames, long_keys = make_shot(150, seed=7)
    short_frames, short_keys = make_shot(8, seed=8)
    progress = {"long": 0}
    errors: list[BaseException] = []

    def run_long():
        try:
            colorize_arrays(
                gated.address,
                long_frames,
                long_keys,
                {"method": "flow"},
                on_progress=lambda ev: ev.kind == P.EV_RESULT and progress.__setitem__("long", progress["long"] + 1),
            )
        except BaseException as exc:  # reported below
            errors.append(exc)

    t = threading.Thread(target=run_long)
    t.start()
    assert wait_until(lambda: progress["long"] >= 5, 60)
    (long_job,) = gated.service.gate.passed_by
    colorize_arrays(gated.address, short_frames, short_keys, {"method": "flow"})
    (short_job,) = set(gated.service.gate.passed_by) - {long_job}
    t.join(120)
    assert not t.is_alive() and not errors, errors
    passed_by = gated.service.gate.passed_by
    assert set(passed_by) == {long_job, short_job} and max(passed_by.values()) <= 1, passed_by


def test_ping_is_answered_while_a_frame_computes(gated):
    """A job holding the compute turn (held while it reads frame 3 of 6, as a frame that takes long would): the
    socket thread answers ten pings and a status meanwhile. Had it to wait for the turn or the frame, nothing
    would be answered (the hold lasts 120 s, a try 10 s)."""
    frames, keys = make_shot(6, seed=1)
    plate, key = write_plates(gated.root / "sh", frames, keys[1])
    hold = gated.service.roots = HeldRoots((str(gated.root),), "plate.0003.exr", at="open")
    try:
        with Client(gated.address, timeout_s=10, retries=1, live_wait_s=10) as c:
            job = c.open_shot(
                {1: key}, {"method": "flow"}, list(frames), P.MODE_PATHS, plate, str(gated.root / "o" / "o.####.exr")
            )
            assert hold.held.wait(60), "the job never read frame 3"
            pongs = [c.ping() for _ in range(10)]
            jobs = c.status()
            assert not hold.released.is_set() and gated.service.gate._holder == job.id  # all while it held the turn
            hold.release()
            for _ in job.events(timeout_s=60):
                pass
            job.close()
    finally:
        hold.release()
    assert len(pongs) == 10 and [(j["job"], j["frames_done"]) for j in jobs] == [(job.id, 2)], jobs
    assert hold.held_in.startswith("colorprop-job-") and job.finished.kind == P.EV_DONE, job.finished.info


def test_busy_when_queue_is_full(engine):
    srv = ThreadServer(engine, max_jobs=2)
    try:
        with Client(srv.address, timeout_s=2) as c:
            frames, keys = make_shot(4)
            jobs = [c.open_shot(keys, {"method": "flow"}, list(frames)) for _ in range(2)]
            with pytest.raises(ServerBusy) as err:
                c.open_shot(keys, {"method": "flow"}, list(frames))
            assert 0 < err.value.retry_after_s <= 60
            # Opening again with the same job id is idempotent, not a third job.
            again = c.open_shot(keys, {"method": "flow"}, list(frames), job_id=jobs[0].id)
            assert again.id == jobs[0].id
            for j in jobs:
                j.close()
            c.open_shot(keys, {"method": "flow"}, list(frames)).close()
    finally:
        srv.stop()


def test_in_band_frame_buffer_is_bounded(engine):
    srv = ThreadServer(engine, max_buffered_frames=2)
    try:
        with Client(srv.address, timeout_s=2) as c:
            frames, keys = make_shot(10, first=1)
            # Key at the last frame: the engine first asks for frame 1, then 10; 2..9 wait in the buffer.
            job = c.open_shot({10: keys[1]}, {"method": "flow"}, list(frames))
            accepted = []
            with pytest.raises(ServerBusy):
                for f in range(2, 10):
                    job.send_frame(f, frames[f])
                    accepted.append(f)
            assert len(accepted) == 2
            job.close()
    finally:
        srv.stop()


@pytest.mark.slow
def test_per_client_job_budget_answers_busy_and_leaves_room_for_others(engine, tmp_path):
    """Clients are told apart by their CURVE key names: alice's third shot waits, bob's first does not."""
    from colorprop_server import generate_keys

    generate_keys(tmp_path / "keys", ("alice", "bob"), ())
    srv = ThreadServer(engine, curve_keys=str(tmp_path / "keys"), max_jobs=8, max_jobs_per_client=2)
    alice, bob = (CurveKeys.from_dir(tmp_path / "keys", n) for n in ("alice", "bob"))
    try:
        with Client(srv.address, timeout_s=2, curve=alice) as a, Client(srv.address, timeout_s=2, curve=bob) as b:
            frames, keys = make_shot(4)
            jobs = [a.open_shot(keys, {"method": "flow"}, list(frames)) for _ in range(2)]
            with pytest.raises(ServerBusy, match="client alice already has 2 shots running"):
                a.open_shot(keys, {"method": "flow"}, list(frames))
            b.open_shot(keys, {"method": "flow"}, list(frames)).close()
            jobs[0].close()
            a.open_shot(keys, {"method": "flow"}, list(frames)).close()
            jobs[1].close()
    finally:
        srv.stop()


def test_memory_budget_answers_busy_but_takes_the_frame_the_engine_waits_for(engine):
    frame_bytes = 48 * 64 * 3 * 4
    srv = ThreadServer(engine, max_memory_bytes=5 * frame_bytes, max_buffered_frames=16)
    try:
        with Client(srv.address, timeout_s=2) as c:
            frames, keys = make_shot(10)
            job = c.open_shot({10: keys[1]}, {"method": "flow"}, list(frames))  # holds one key
            assert wait_until(lambda: any(ev.kind == P.EV_NEED for ev in job.fetch(wait_s=0.5)), 10)
            accepted = []
            with pytest.raises(ServerBusy, match="memory budget"):
                for f in range(2, 10):
                    job.send_frame(f, frames[f])
                    accepted.append(f)
            assert accepted == [2, 3, 4, 5]  # key + 4 frames = the budget
            assert job.send_frame(1, frames[1])["accepted"]  # the engine waits for frame 1: never refused
            job.close()
    finally:
        srv.stop()


@pytest.mark.slow
def test_a_client_filling_the_memory_budget_does_not_lock_out_another(engine, tmp_path, free_port):
    """alice fills a real server's memory budget with large keys on shots she never feeds; bob's shot
    still gets in and completes, identical to the embedded engine, while alice, now over her share (half
    the budget: two clients have work), is the one told busy."""
    import math

    from colorprop_server import generate_keys

    generate_keys(tmp_path / "keys", ("alice", "bob"), ())
    alice, bob = (CurveKeys.from_dir(tmp_path / "keys", n) for n in ("alice", "bob"))
    addr, budget_mb = f"tcp://127.0.0.1:{free_port()}", 64
    proc = spawn(
        [
            "serve",
            "--bind",
            addr,
            "--curve-keys",
            str(tmp_path / "keys"),
            "--max-memory-mb",
            str(budget_mb),
            "--max-jobs-per-client",
            "4",
            "--log-level",
            "WARNING",
        ]
    )
    frames, keys = make_shot(6, seed=41)
    bob_key_bytes = keys[1].size * 4
    # Three keys that leave less room than bob's key: the budget is full for him under a global count.
    side = math.isqrt((budget_mb << 20) // (3 * 3 * 4))
    assert (budget_mb << 20) - 3 * side * side * 12 < bob_key_bytes
    big = np.full((side, side, 3), 0.25, np.float32)
    try:
        wait_hello(addr, proc, curve=bob)
        with Client(addr, timeout_s=5, curve=alice) as a:
            hog = [a.open_shot({1: big}, {"method": "flow"}, [1, 2, 3]) for _ in range(3)]
            with pytest.raises(ServerBusy, match="memory budget"):
                a.open_shot({1: big}, {"method": "flow"}, [1, 2, 3])
            refused = []

            def alice_tries_again(frame, rgb, confidence):  # while bob has work: alice is over her share
                if not refused:
                    with pytest.raises(
                        ServerBusy, match=rf"client alice would hold .* its share \({budget_mb // 2} MiB"
                    ):
                        a.open_shot({1: big[:64, :64]}, {"method": "flow"}, [1, 2])
                    refused.append(frame)
                got[frame] = (rgb, confidence)

            got: dict = {}
            colorize_arrays(
                addr,
                frames,
                keys,
                {"method": "flow"},
                curve=bob,
                timeout_s=5,
                busy_wait_s=5,
                on_result=alice_tries_again,
            )
            assert refused
            for job in hog:
                job.close()
    finally:
        stop_proc(proc)
    _assert_identical(got, embedded(engine, frames, keys))


# ---------------------------------------------------------------- bad input


def _raw(server, frames, timeout=3.0):
    ctx = zmq.Context.instance()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(server.address)
    try:
        s.send_multipart(frames)
        if not s.poll(int(timeout * 1000)):
            return None
        return P.decode(s.recv_multipart(), expect=P.REPLY_TYPES)
    finally:
        s.close(0)


def test_wrong_protocol_version_gets_typed_error(server):
    head = json.loads(P.encode(P.PING, "rid-1")[0])
    head["v"] = 999
    reply = _raw(server, [json.dumps(head).encode()])
    assert reply.type == P.ERROR and reply.get("code") == P.E_VERSION and reply.id == "rid-1"
    assert "999" in reply.get("message")


def test_wrong_size_and_dtype_frames_are_refused(server):
    with Client(server.address, timeout_s=2) as c:
        frames, keys = make_shot(4)
        job = c.open_shot(keys, {"method": "flow"}, list(frames))
        with pytest.raises(ServerError) as err:
            job.send_frame(2, np.zeros((40, 64, 3), np.float32))
        assert err.value.code == P.E_PIXELS and "frame 2" in str(err.value)
        with pytest.raises(ServerError) as err:
            job.send_frame(2, np.zeros((48, 64, 4), np.float32))  # 4 planes for R,G,B
        assert err.value.code == P.E_PIXELS
        with pytest.raises(ServerError) as err:
            job.send_frame(99, frames[2])
        assert err.value.code == P.E_BAD_INPUT and err.value.field == "frame"
        assert str(err.value).count("(field 'frame')") == 1  # named once, not again by the server's own text
        # dtype float64 declared, and a buffer shorter than declared: both refused at decode.
        good = P.encode(P.FRAME, "r2", [("pixels", frames[2])], job=job.id, frame=2, channels=["R", "G", "B"])
        head = json.loads(good[0])
        head["buffers"][0]["dtype"] = "float64"
        head["buffers"][0]["nbytes"] *= 2
        head["total_bytes"] *= 2
        reply = _raw(server, [json.dumps(head).encode(), bytes(good[1]) * 2])
        assert reply.get("code") == P.E_BAD_INPUT and reply.get("field") == "buffers[0].dtype"
        reply = _raw(server, [good[0], bytes(good[1])[:-4]])
        assert reply.get("code") == P.E_BAD_INPUT
        job.send_frame(2, frames[2].astype(np.float16))  # half floats are fine
        job.close()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_pixels_get_a_clear_error(server, bad):
    with Client(server.address, timeout_s=2) as c:
        frames, keys = make_shot(3)
        job = c.open_shot(keys, {"method": "flow"}, list(frames))
        plate = frames[2].copy()
        plate[5, 6, 1] = bad
        with pytest.raises(ServerError) as err:
            job.send_frame(2, plate)
        assert err.value.code == P.E_PIXELS and "frame 2" in str(err.value) and "NaN/Inf" in str(err.value)
        job.close()
        key = keys[1].copy()
        key[0, 0, 0] = bad
        with pytest.raises(ServerError) as err:
            c.open_shot({1: key}, {"method": "flow"}, list(frames))
        assert err.value.code == P.E_PIXELS and "key 1" in str(err.value)


def test_bad_options_name_the_field(server):
    with Client(server.address, timeout_s=2) as c:
        frames, keys = make_shot(3)
        with pytest.raises(ServerError) as err:
            c.open_shot(keys, {"method": "flow", "working_width": "wide"}, list(frames))
        assert err.value.code == P.E_BAD_INPUT and "working_width" in str(err.value)
        with pytest.raises(ServerError) as err:
            c.open_shot(keys, {"method": "full"}, list(frames))  # no weights in the test engine
        assert err.value.code == P.E_BAD_INPUT


def test_oversize_is_refused_declared_and_actual(server):
    limit = 4 << 20
    n = limit // 12 + 1024
    desc = {"name": "pixels", "shape": [n, 1, 3], "dtype": "float32", "nbytes": n * 12}
    head = json.loads(P.encode(P.FRAME, "big-1")[0])
    head.update(buffers=[desc], total_bytes=n * 12, job="x", frame=1, channels=["R", "G", "B"])
    reply = _raw(server, [json.dumps(head).encode()])  # declared only: refused from the header
    assert reply.get("code") == P.E_TOO_LARGE and reply.id == "big-1"
    # Actually sending more than the limit: the transport drops it (MAXMSGSIZE); the server lives on.
    assert (
        _raw(server, [json.dumps(head).encode(), b"\0" * (limit + P.MAX_HEADER_BYTES + (64 << 10))], timeout=1.0)
        is None
    )
    with Client(server.address, timeout_s=2, retries=1) as c:
        c.ping()  # answered (it raises otherwise)


_valid = P.encode(
    P.FRAME, "fz", [("pixels", np.zeros((2, 3, 3), np.float32))], job="j", frame=1, channels=["R", "G", "B"]
)
_valid = [bytes(f) for f in _valid]
_header = json.loads(_valid[0])

_json_leaves = (
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=20)
)
_json_values = (
    _json_leaves | st.lists(_json_leaves, max_size=4) | st.dictionaries(st.text(max_size=8), _json_leaves, max_size=3)
)


@st.composite
def _garbage(draw):
    kind = draw(st.integers(0, 4))
    if kind == 0:  # random bytes
        return draw(st.lists(st.binary(max_size=300), min_size=1, max_size=6))
    if kind == 1:  # a valid message truncated (frames dropped or cut short)
        cut = draw(st.integers(0, len(_valid[0]) - 1))
        return [_valid[0][:cut]] if draw(st.booleans()) else [_valid[0], _valid[1][: draw(st.integers(0, 71))]]
    if kind == 2:  # a header with one field replaced by any JSON value
        h = dict(_header)
        h[draw(st.sampled_from(sorted(h) + ["extra"]))] = draw(_json_values)
        return [json.dumps(h).encode(), _valid[1]]
    if kind == 3:  # declared sizes inflated (oversize) or shapes inconsistent
        h = json.loads(json.dumps(_header))
        h["buffers"][0]["shape"] = draw(st.lists(st.integers(-5, 1 << 24), min_size=0, max_size=5))
        h["buffers"][0]["nbytes"] = draw(st.integers(-1, 1 << 40))
        h["total_bytes"] = draw(st.integers(-1, 1 << 40))
        return [json.dumps(h).encode(), _valid[1]]
    # a valid header of a random type with random extra fields and random buffers
    h = dict(_header, type=draw(st.sampled_from(sorted(P.MESSAGE_TYPES) + ["nope"])))
    h.update(
        draw(
            st.dictionaries(
                st.sampled_from(
                    [
                        "job",
                        "frame",
                        "after",
                        "wait_ms",
                        "mode",
                        "keys",
                        "frames",
                        "options",
                        "channels",
                        "input",
                        "output",
                    ]
                ),
                _json_values,
                max_size=4,
            )
        )
    )
    h["wait_ms"] = 0
    return [json.dumps(h).encode(), *draw(st.lists(st.binary(max_size=80), max_size=3))]


@pytest.mark.slow
def test_fuzz_ten_thousand_malformed_messages_then_a_valid_ping(server):
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(server.address)
    counts = {"sent": 0, "error": 0}

    # 2,000 examples of 5 messages each (hypothesis' per-example cost dominates otherwise).
    @settings(max_examples=2_000, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(_garbage(), min_size=5, max_size=5))
    def one(batch):
        for frames in batch:
            sock.send_multipart(frames)
        for frames in batch:
            assert sock.poll(3000), f"no reply to {frames!r}"
            reply = P.decode(sock.recv_multipart(), expect=P.REPLY_TYPES)
            counts["sent"] += 1
            counts["error"] += reply.type == P.ERROR

    try:
        one()
    finally:
        sock.close(0)
    assert counts["sent"] >= 10_000
    assert counts["error"] >= 0.9 * counts["sent"]
    with Client(server.address, timeout_s=2) as c:
        assert c.hello()["protocol"] == P.PROTOCOL_VERSION  # still answering
    for s in list(server.service.sessions.values()):  # fuzzed opens that happened to be valid
        s.stop.set()


# ---------------------------------------------------------------- shared-path mode


def test_paths_mode_writes_the_same_exrs_as_the_embedded_cli(server, engine, tmp_path):
    from colorprop.engine.engine import ShotOptions
    from colorprop.io.exr import read_exr
    from colorprop.shot.pipeline import colorize_sequence

    frames, keys = make_shot(6, seed=11)
    plate, key = write_plates(server.root / "shot1", frames, keys[1])
    out = str(server.root / "shot1" / "out" / "col.####.exr")
    report = colorize_paths(server.address, plate, out, list(frames), {1: key}, {"method": "flow"}, timeout_s=3)
    assert report["frames_written"] == list(frames)
    ref_dir = tmp_path / "ref"
    colorize_sequence(engine, plate, {1: key}, str(ref_dir / "col.####.exr"), list(frames), ShotOptions(method="flow"))
    for f in frames:
        np.testing.assert_array_equal(
            read_exr(out.replace("####", f"{f:04d}")).pixels, read_exr(ref_dir / f"col.{f:04d}.exr").pixels
        )


def test_paths_outside_allowed_roots_are_refused(server, tmp_path):
    frames, keys = make_shot(3, seed=12)
    outside_plate, outside_key = write_plates(tmp_path / "outside", frames, keys[1])
    inside_plate, inside_key = write_plates(server.root / "shot2", frames, keys[1])
    out = str(server.root / "shot2" / "out.####.exr")
    (server.root / "escape").symlink_to(tmp_path / "outside")
    (server.root / "shot2" / "key_link.exr").symlink_to(outside_key)
    dotdot = str(server.root / ".." / tmp_path.name / "outside" / "plate.####.exr")
    cases = {
        "outside input": (outside_plate, out, inside_key),
        "outside output": (inside_plate, str(tmp_path / "o.####.exr"), inside_key),
        "outside key": (inside_plate, out, outside_key),
        "dotdot": (dotdot, out, inside_key),
        "symlinked folder": (str(server.root / "escape" / "plate.####.exr"), out, inside_key),
        "symlinked key file": (inside_plate, out, str(server.root / "shot2" / "key_link.exr")),
        "relative": ("plate.####.exr", out, inside_key),
    }
    with Client(server.address, timeout_s=2) as c:
        for name, (inp, outp, key) in cases.items():
            with pytest.raises(ServerError) as err:
                c.open_shot({1: key}, {"method": "flow"}, list(frames), P.MODE_PATHS, inp, outp)
            assert err.value.code == P.E_PATH, name
    assert not list((tmp_path / "outside").glob("o.*")) and not list(tmp_path.glob("o.*"))
    assert not list((server.root / "shot2").glob("out.*"))


def test_paths_mode_is_off_without_allowed_roots(engine, tmp_path):
    srv = ThreadServer(engine)
    try:
        with Client(srv.address, timeout_s=2) as c:
            assert c.hello()["modes"] == [P.MODE_INBAND]
            with pytest.raises(ServerError) as err:
                c.open_shot(
                    {1: str(tmp_path / "k.exr")},
                    {"method": "flow"},
                    [1],
                    P.MODE_PATHS,
                    str(tmp_path / "p.####.exr"),
                    str(tmp_path / "o.####.exr"),
                )
            assert err.value.code == P.E_PATH
    finally:
        srv.stop()


def test_request_log_is_one_record_with_fields_per_request(server, caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="colorprop_server.requests"):
        with Client(server.address, timeout_s=2) as c:
            c.ping()
            c.hello()
            with pytest.raises(ServerError):
                c.request(P.FETCH, job="nope", after=-1)
        assert wait_until(lambda: len([r for r in caplog.records if r.name == "colorprop_server.requests"]) >= 3, 30)
    lines = [r.colorprop_fields for r in caplog.records if r.name == "colorprop_server.requests"]
    assert all(r.getMessage() == "request" for r in caplog.records if r.name == "colorprop_server.requests")
    assert [l["type"] for l in lines[-3:]] == [P.PING, P.HELLO, P.FETCH]
    assert lines[-1]["status"] == P.ERROR and lines[-1]["code"] == P.E_UNKNOWN_JOB
    assert all("ms" in l and "client" in l for l in lines)
