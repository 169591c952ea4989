"""Live sessions (protocol 3) against a real server on 127.0.0.1: open, stream, edit the keys (set, partial, move,
remove, repaint), each run's frames equal to an embedded fresh run with those keys, frames a re-run does not change
not sent again; two clients' sessions at once; edits to a closed or batch job, an edit racing a close, a session
abandoned; an older server refuses a live open with the version error. Every wait is on events."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from colorprop_client import protocol as P
from colorprop_client.client import Client, JobCancelled, ServerError
from colorprop_client.live import LiveSession

from serverkit import ThreadServer, make_shot

pytestmark = pytest.mark.usefixtures("watchdog")

N, H, W = 10, 48, 64
FIRST, PARTIAL, LATER = 1, 6, 8


def box_matte() -> np.ndarray:
    matte = np.zeros((H, W), np.float32)
    matte[14:34, 20:44] = 0.5
    matte[16:32, 22:42] = 1.0
    return matte


def shot(seed: int = 91) -> tuple[dict, np.ndarray, np.ndarray]:
    frames, keys = make_shot(N, h=H, w=W, seed=seed)
    painted = (frames[PARTIAL] * np.array([0.3, 0.6, 1.0], np.float32)).astype(np.float32)
    return frames, keys[FIRST], painted


def embedded(engine, frames: dict, keys: dict, mattes: dict | None = None) -> dict:
    """A fresh ``run_shot`` in this process with ``keys`` (frame -> rgb; ``mattes`` make partial keys)."""
    from colorprop.engine.engine import ShotOptions
    from colorprop.shot.frames import ArraySink, ArraySource, KeyImage
    from colorprop.shot.pipeline import run_shot

    sink = ArraySink()
    images = {k: KeyImage(v, matte=(mattes or {}).get(k)) for k, v in keys.items()}
    run_shot(engine, ArraySource(frames), images, ShotOptions(method="flow"), sink)
    return {f: (r.rgb, r.confidence) for f, r in sink.results.items()}


def assert_shows(live: LiveSession, reference: dict) -> None:
    assert sorted(live.results) == sorted(reference)
    for f, (rgb, conf) in reference.items():
        np.testing.assert_array_equal(live.results[f][0], rgb, err_msg=f"rgb of frame {f}")
        np.testing.assert_array_equal(live.results[f][1], conf, err_msg=f"confidence of frame {f}")


@pytest.fixture
def live_server(engine):
    srv = ThreadServer(engine, max_jobs_per_client=8, session_timeout_s=30.0)
    yield srv
    srv.stop()


def test_open_stream_edit_each_run_equals_a_fresh_run(engine, live_server):
    frames, key, painted = shot()
    sent_per_run: dict[int, set] = {}

    def count(ev) -> None:
        if ev.kind == P.EV_RESULT:
            sent_per_run.setdefault(ev.info["run"], set()).add(ev.frame)

    with Client(live_server.address, timeout_s=3) as c:
        live = LiveSession(c, list(frames), {FIRST: key}, {"method": "flow"}, plates=frames, on_event=count, view=5)
        with live:
            assert live.job.opened["live"] is True
            live.wait_run(0, timeout_s=120)
            first = embedded(engine, frames, {FIRST: key})
            assert_shows(live, first)
            assert sent_per_run[0] == set(frames)

            # a partial key at frame 6 while viewing it: the frames it reaches change, the others are not sent again
            run = live.edit(set={PARTIAL: painted}, mattes={PARTIAL: box_matte()}, view=PARTIAL)
            assert run == 1
            assert live.wait_frame(PARTIAL, run, timeout_s=120) == run
            done = live.wait_run(run, timeout_s=120)
            keys = {FIRST: key, PARTIAL: painted}
            with_partial = embedded(engine, frames, keys, {PARTIAL: box_matte()})
            assert_shows(live, with_partial)
            assert sent_per_run[run] | set(done["unchanged"]) == set(frames)
            assert not sent_per_run[run] & set(done["unchanged"])
            for f in frames:  # sent again exactly when its pixels changed
                same = all(np.array_equal(a, b) for a, b in zip(with_partial[f], first[f]))
                assert same == (f in done["unchanged"]), f
            assert PARTIAL in sent_per_run[run]

            # move the partial key, repaint the first key, then remove the partial key: each run a fresh run
            run = live.edit(move={PARTIAL: LATER})
            live.wait_run(run, timeout_s=120)
            assert_shows(live, embedded(engine, frames, {FIRST: key, LATER: painted}, {LATER: box_matte()}))
            repainted = (key * np.float32(0.8)).astype(np.float32)
            run = live.edit(set={FIRST: repainted}, remove=[LATER])
            live.wait_run(run, timeout_s=120)
            assert_shows(live, embedded(engine, frames, {FIRST: repainted}))


def test_an_edit_cancels_the_running_run_and_the_rerun_ends_with_the_new_keys(engine, live_server):
    """The edit goes out while run 0 is still at its first frames (its need unanswered): run 0 never ends, run 1
    does, with the pixels of a fresh run of the new keys; then cancel ends the session."""
    frames, key, painted = shot(seed=17)
    with (
        Client(live_server.address, timeout_s=3) as c,
        LiveSession(c, list(frames), {FIRST: key}, {"method": "flow"}, plates=frames) as live,
    ):
        while live.started < 0:
            live.poll()
        repainted = (key * np.float32(0.6)).astype(np.float32)
        run = live.edit(set={FIRST: repainted})
        live.wait_run(run, timeout_s=120)
        assert 0 not in live.runs_done
        assert_shows(live, embedded(engine, frames, {FIRST: repainted}))
        # cancel ends the session (its client hears 'cancelled'); a later edit is refused as not live
        session = live_server.service.sessions[live.job.id]
        live.job.cancel()
        with pytest.raises(JobCancelled):
            live.wait_run(run + 1, timeout_s=60)
        session.thread.join(30)
        assert session.state == "cancelled" and not session.live.folder.exists()
        with pytest.raises(ServerError) as ended:
            live.edit(remove=[FIRST])
        assert ended.value.code == P.E_NOT_LIVE


def test_two_clients_live_sessions_at_once_end_with_their_embedded_pixels(engine, live_server):
    shots = [shot(seed=s) for s in (3, 4)]
    out: dict[int, dict] = {}
    errors: list[BaseException] = []

    def artist(i: int) -> None:
        frames, key, painted = shots[i]
        try:
            with (
                Client(live_server.address, timeout_s=3) as c,
                LiveSession(c, list(frames), {FIRST: key}, {"method": "flow"}, plates=frames) as live,
            ):
                live.wait_run(0, timeout_s=120)
                live.wait_run(live.edit(set={PARTIAL: painted}, mattes={PARTIAL: box_matte()}), timeout_s=120)
                out[i] = dict(live.results)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=artist, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(240)
    assert not errors, errors
    for i, (frames, key, painted) in enumerate(shots):
        ref = embedded(engine, frames, {FIRST: key, PARTIAL: painted}, {PARTIAL: box_matte()})
        assert sorted(out[i]) == sorted(ref)
        for f in ref:
            np.testing.assert_array_equal(out[i][f][0], ref[f][0], err_msg=f"artist {i} frame {f}")


def test_edits_to_a_closed_or_batch_job_get_clear_codes(live_server):
    frames, key, painted = shot(seed=5)
    with Client(live_server.address, timeout_s=3) as c:
        live = LiveSession(c, list(frames), {FIRST: key}, {"method": "flow"}, plates=frames)
        live.close()
        with pytest.raises(ServerError) as gone:
            live.edit(set={PARTIAL: painted})
        assert gone.value.code == P.E_UNKNOWN_JOB
        batch = c.open_shot({FIRST: key}, {"method": "flow"}, list(frames))
        with pytest.raises(ServerError) as batch_edit:
            c.request(P.EDIT, version=P.LIVE_VERSION, job=batch.id, edits=[{"op": "remove", "frame": FIRST}])
        assert batch_edit.value.code == P.E_NOT_LIVE
        with pytest.raises(ServerError) as old:
            c.request(P.EDIT, version=P.MATTE_VERSION, job=batch.id, edits=[{"op": "remove", "frame": FIRST}])
        assert old.value.code == P.E_VERSION
        batch.close()


@pytest.mark.parametrize(
    "edits, field",
    [
        ([{"op": "remove", "frame": FIRST}], "edits"),  # no key left
        ([{"op": "remove", "frame": PARTIAL}], "edits"),  # no key there
        ([{"op": "move", "frame": FIRST, "to": N + 5}], "edits"),  # outside the shot
        ([{"op": "set", "frame": PARTIAL}], "buffers"),  # no pixels
        ([{"op": "paint", "frame": FIRST}], "edits"),
        ("all", "edits"),
    ],
)
def test_a_bad_edit_changes_nothing(engine, live_server, edits, field):
    frames, key, _ = shot(seed=8)
    with (
        Client(live_server.address, timeout_s=3) as c,
        LiveSession(c, list(frames), {FIRST: key}, {"method": "flow"}, plates=frames) as live,
    ):
        with pytest.raises(ServerError) as bad:
            c.request(P.EDIT, version=P.LIVE_VERSION, job=live.job.id, edits=edits)
        assert bad.value.code == P.E_BAD_INPUT and bad.value.field == field
        live.wait_run(0, timeout_s=120)
        assert_shows(live, embedded(engine, frames, {FIRST: key}))


def test_an_edit_racing_a_close_one_wins_and_the_session_is_freed(live_server):
    frames, key, painted = shot(seed=12)
    with Client(live_server.address, timeout_s=3) as c, Client(live_server.address, timeout_s=3) as other:
        live = LiveSession(c, list(frames), {FIRST: key}, {"method": "flow"}, plates=frames)
        while live.started < 0:
            live.poll()
        session = live_server.service.sessions[live.job.id]
        outcome: list = []
        start = threading.Barrier(2)

        def edit() -> None:
            start.wait(10)
            try:
                msg = other.request(
                    P.EDIT,
                    [(f"key{PARTIAL}", painted)],
                    version=P.LIVE_VERSION,
                    job=live.job.id,
                    edits=[{"op": "set", "frame": PARTIAL}],
                )
                outcome.append(("edited", msg.get("run")))
            except ServerError as exc:
                outcome.append(("refused", exc.code))

        t = threading.Thread(target=edit)
        t.start()
        start.wait(10)
        live.close()
        t.join(30)
        assert outcome in ([("edited", 1)], [("refused", P.E_UNKNOWN_JOB)]), outcome
        session.thread.join(30)
        assert not session.thread.is_alive()
        assert session.live.folder is not None and not session.live.folder.exists()
        assert live.job.id not in live_server.service.sessions
        assert c.ping() < 5


def test_an_abandoned_session_is_dropped_and_its_folder_removed(engine):
    srv = ThreadServer(engine, session_timeout_s=0.5)
    try:
        frames, key, _ = shot(seed=21)
        with Client(srv.address, timeout_s=3) as c:
            live = LiveSession(c, list(frames), {FIRST: key}, {"method": "flow"}, plates=frames)
            while live.started < 0:
                live.poll()
            session = srv.service.sessions[live.job.id]
            session.thread.join(60)  # nobody polls: the server drops it after its timeout
            assert not session.thread.is_alive() and not session.live.folder.exists()
            assert live.job.id not in srv.service.sessions
            with pytest.raises(ServerError) as gone:
                live.view(3)
            assert gone.value.code == P.E_UNKNOWN_JOB
    finally:
        srv.stop()


def test_an_older_server_refuses_a_live_open_with_the_version_error(engine, monkeypatch):
    monkeypatch.setattr(P, "PROTOCOL_VERSION", 2)
    monkeypatch.setattr(P, "SUPPORTED_VERSIONS", frozenset({1, 2}))
    srv = ThreadServer(engine)
    try:
        frames, key, _ = shot(seed=2)
        with Client(srv.address, timeout_s=3) as c:
            with pytest.raises(ServerError) as refused:
                LiveSession(c, list(frames), {FIRST: key}, {"method": "flow"}, plates=frames)
            assert refused.value.code == P.E_VERSION
            assert "live session needs protocol 3" in str(refused.value) and "update the server" in str(refused.value)
    finally:
        srv.stop()


def test_a_shared_path_live_session_writes_each_run_and_rewrites_only_changed_frames(engine, tmp_path):
    """Shared paths: the server reads the plates and key files and writes the outputs; an edit naming a partial
    key's file re-runs, and a frame the edit does not change is not written again (its file untouched)."""
    from colorprop.io.exr import read_exr, write_exr

    from serverkit import write_plates

    frames, key, painted = shot(seed=44)
    plate, key_path = write_plates(tmp_path / "shot", frames, key)
    partial = tmp_path / "shot" / "partial.exr"
    matte = box_matte()
    write_exr(partial, np.dstack([painted * matte[..., None], matte]), ("R", "G", "B", "A"), pixel_type="float")
    out = str(tmp_path / "out" / "o.####.exr")
    srv = ThreadServer(engine, allowed_roots=(str(tmp_path),))
    try:
        with Client(srv.address, timeout_s=3) as c, LiveSession(
            c, list(frames), {FIRST: key_path}, {"method": "flow"}, mode=P.MODE_PATHS, input_pattern=plate,
            output_pattern=out, view=PARTIAL,
        ) as live:  # fmt: skip
            live.wait_run(0, timeout_s=120)
            assert sorted(live.written) == list(frames)
            mtimes = {f: (tmp_path / "out" / f"o.{f:04d}.exr").stat().st_mtime_ns for f in frames}
            run = live.edit(set={PARTIAL: str(partial)}, partial=[PARTIAL])
            done = live.wait_run(run, timeout_s=120)
            rewritten = {f for f in frames if live.result_run[f] == run}
            assert rewritten | set(done["unchanged"]) == set(frames) and PARTIAL in rewritten
            for f in done["unchanged"]:
                assert (tmp_path / "out" / f"o.{f:04d}.exr").stat().st_mtime_ns == mtimes[f]
        from colorprop.engine.engine import ShotOptions
        from colorprop.shot.frames import ExrSequenceSink, ExrSequenceSource, load_key
        from colorprop.shot.pipeline import run_shot

        ref = str(tmp_path / "ref" / "r.####.exr")
        keys = {FIRST: load_key(key_path, None), PARTIAL: load_key(partial, None)}
        run_shot(engine, ExrSequenceSource(plate, list(frames)), keys, ShotOptions(method="flow"),
                 ExrSequenceSink(ref, "half"))  # fmt: skip
        for f in frames:
            got, want = read_exr(out.replace("####", f"{f:04d}")), read_exr(ref.replace("####", f"{f:04d}"))
            np.testing.assert_array_equal(got.pixels, want.pixels, err_msg=f"frame {f}")
    finally:
        srv.stop()


def test_the_live_benchmark_runs_end_to_end_and_its_table_renders(tmp_path):
    """``python -m colorprop_server.bench_live`` on a tiny shot (method flow, no CLI part): its JSON says the
    live session's pixels after the edit equal the batch job's, and the docs table renders from it."""
    import json

    from colorprop_server import bench_live

    out = tmp_path / "bench_live.json"
    assert bench_live.main(["--width", "96", "--height", "64", "--frames", "8", "--edit-at", "5", "--method", "flow",
                            "--no-cli", "--json", str(out)]) == 0  # fmt: skip
    r = json.loads(out.read_text())
    assert r["identical"] is True and r["frames_sent"] + r["frames_unchanged"] == 8 and r["frames_sent"] >= 1
    assert 0 < r["edit_view_s"] <= r["edit_all_s"] and r["rerun_share"] == round(r["edit_all_s"] / r["batch_s"], 3)
    table = bench_live.format_table(r)
    assert table.splitlines()[0] == "| step | seconds | |" and "partial key at 5" in table
