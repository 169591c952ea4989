"""The broker and its workers, as real processes on 127.0.0.1 (the in-process broker of the first
tests is the same code the `colorprop broker` command runs): workers SIGKILLed mid-job (the job is
retried elsewhere or fails with a clear error; no half-written EXR), refused opens that must not
leak slots, a client key that must not register as a worker, a broker restart the workers survive.

Every test starts from the state it needs (three live workers, or its own processes), so the tests
pass in any order and alone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading

import numpy as np
import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

from colorprop_client import protocol as P
from colorprop_client.client import Client, CurveKeys, JobFailed, JobLost, colorize_arrays, colorize_paths

from serverkit import broken_shot, embedded, make_shot, spawn, stop_proc, wait_until, write_plates, written_frames

pytestmark = pytest.mark.usefixtures("watchdog")

WORKERS = 3
# Dead after 3 missed heartbeats: 1.5 s. Shorter ones declare live peers dead when the 2 shared cores
# are loaded and a process waits that long for its turn.
HEARTBEAT_S = 0.5


def _identical(got, ref):
    assert sorted(got) == sorted(ref)
    for f in ref:
        np.testing.assert_array_equal(got[f][0], ref[f][0], err_msg=f"frame {f}")


def _spawn_worker(backend: str, *extra: str) -> subprocess.Popen:
    return spawn(
        ["serve", "--worker", "--broker", backend, "--heartbeat", str(HEARTBEAT_S), "--log-level", "WARNING", *extra]
    )


@pytest.fixture(scope="module")
def farm(tmp_path_factory):
    """An in-process broker (so tests can look at its routes) and the worker processes behind it."""
    from colorprop_server import ServerConfig
    from colorprop_server.broker import Broker

    root = tmp_path_factory.mktemp("farm")
    broker = Broker(
        ServerConfig(
            bind="tcp://127.0.0.1:0",
            backend_bind="tcp://127.0.0.1:0",
            heartbeat_s=HEARTBEAT_S,
            liveness=3,
            session_timeout_s=5.0,
        )
    )
    thread = threading.Thread(target=broker.run, daemon=True)
    thread.start()
    assert broker.ready.wait(10)
    broker.root = root
    broker.procs = []
    try:
        yield broker
    finally:
        for w in broker.procs:
            stop_proc(w, signal.SIGKILL)
        broker.stop()
        thread.join(10)


@pytest.fixture
def cluster(farm):
    """The module's broker with exactly WORKERS live workers (replacing those an earlier test killed)."""
    farm.procs = [p for p in farm.procs if p.poll() is None]
    while len(farm.procs) < WORKERS:
        farm.procs.append(_spawn_worker(farm.backend_endpoint, "--allow-root", str(farm.root), "--max-jobs", "2"))
    live = {p.pid for p in farm.procs}
    assert wait_until(lambda: {w.caps.get("worker", {}).get("pid") for w in farm.workers.values()} == live, 90), (
        "workers did not register"
    )
    return farm


def _kill_worker_of_only_job(broker) -> int:
    (route,) = [r for r in broker.routes.values() if not r.finished]
    pid = broker.workers[route.worker].caps["worker"]["pid"]
    os.kill(pid, signal.SIGKILL)
    return pid


def test_worker_killed_mid_paths_job_is_retried_elsewhere(cluster, engine, tmp_path):
    from colorprop.engine.engine import ShotOptions
    from colorprop.io.exr import read_exr
    from colorprop.shot.pipeline import colorize_sequence

    frames, keys = make_shot(60, h=96, w=128, seed=31)
    shot = cluster.root / "sh010"
    plate, key = write_plates(shot, frames, keys[1])
    out = shot / "out"
    killed = []
    retried_before = cluster.jobs_retried

    def hook(ev):
        if ev.kind == P.EV_WRITTEN and not killed:
            killed.append(_kill_worker_of_only_job(cluster))

    with Client(cluster.frontend_endpoint, timeout_s=2, retries=5) as c:
        assert c.hello()["broker"]["workers"] == WORKERS
        report = colorize_paths(
            c, plate, str(out / "col.####.exr"), list(frames), {1: key}, {"method": "flow"}, on_progress=hook
        )
    assert killed and cluster.jobs_retried == retried_before + 1
    assert sorted(report["frames_written"]) == list(frames)
    colorize_sequence(engine, plate, {1: key}, str(tmp_path / "ref.####.exr"), list(frames), ShotOptions(method="flow"))
    for f in frames:  # every output complete, readable and equal to the embedded run
        np.testing.assert_array_equal(
            read_exr(out / f"col.{f:04d}.exr").pixels, read_exr(tmp_path / f"ref.{f:04d}.exr").pixels
        )
    assert sorted(p.name for p in out.iterdir()) == [f"col.{f:04d}.exr" for f in frames]  # no temp files


@pytest.mark.parametrize("restarts", [1, 0], ids=["resent", "not-resent"])
def test_worker_killed_mid_inband_job(cluster, engine, restarts):
    frames, keys = make_shot(40, h=96, w=128, seed=41)
    killed = []

    def hook(ev):
        if ev.kind == P.EV_RESULT and not killed:
            killed.append(_kill_worker_of_only_job(cluster))

    if restarts:  # the client library resends the shot to a live worker: same frames
        got = colorize_arrays(
            cluster.frontend_endpoint, frames, keys, {"method": "flow"}, timeout_s=2, restarts=1, on_progress=hook
        )
        _identical(got, embedded(engine, frames, keys))
    else:  # asked not to resend: a clear error naming the cause
        with pytest.raises(JobLost) as err:
            colorize_arrays(
                cluster.frontend_endpoint, frames, keys, {"method": "flow"}, timeout_s=2, restarts=0, on_progress=hook
            )
        assert err.value.code == P.E_WORKER_LOST and "worker" in str(err.value)
    assert len(killed) == 1


def test_a_live_session_through_the_broker_edits_and_is_never_replayed_with_old_keys(cluster, engine, tmp_path):
    """A live session (protocol 3) through the broker: its edit reaches the worker and the re-run equals the
    embedded run of the new key; when its worker dies it is not restarted elsewhere with the keys it opened with
    (its edits lived on that worker): the client hears worker_lost."""
    from colorprop.engine.engine import ShotOptions
    from colorprop.io.exr import read_exr, write_exr
    from colorprop.shot.pipeline import colorize_sequence
    from colorprop_client.live import LiveSession

    frames, keys = make_shot(20, h=96, w=128, seed=53)
    shot = cluster.root / "live"
    plate, key = write_plates(shot, frames, keys[1])
    repainted = shot / "repainted.exr"
    write_exr(repainted, (keys[1] * np.float32(0.6)).astype(np.float32), ("R", "G", "B"), pixel_type="float")
    out = shot / "out"
    with Client(cluster.frontend_endpoint, timeout_s=2, retries=5) as c:
        live = LiveSession(c, list(frames), {1: key}, {"method": "flow"}, mode=P.MODE_PATHS, input_pattern=plate,
                           output_pattern=str(out / "o.####.exr"))  # fmt: skip
        live.wait_run(0, timeout_s=120)
        run = live.edit(set={1: str(repainted)})
        live.wait_run(run, timeout_s=120)
        ref = tmp_path / "ref"
        colorize_sequence(engine, plate, {1: str(repainted)}, str(ref / "r.####.exr"), list(frames),
                          ShotOptions(method="flow"))  # fmt: skip
        for f in frames:
            np.testing.assert_array_equal(
                read_exr(out / f"o.{f:04d}.exr").pixels, read_exr(ref / f"r.{f:04d}.exr").pixels
            )
        retried_before = cluster.jobs_retried
        _kill_worker_of_only_job(cluster)
        with pytest.raises(JobLost) as lost:
            live.wait_run(run + 1, timeout_s=60)
        assert lost.value.code == P.E_WORKER_LOST and cluster.jobs_retried == retried_before
        live.close()


# ---------------------------------------------------------------- broker processes


def _pong(address: str, curve=None) -> dict:
    with Client(address, timeout_s=2, retries=3, curve=curve) as c:
        return c.request(P.PING).header


def test_refused_opens_leave_every_slot_free(tmp_path, free_port):
    """The issue's reproduction: each open a worker refuses used to hold a slot for 240 s, so the
    9th plain `colorize --server BROKER` (shared-path open refused, then in-band) found every worker
    full. Now 50 refused opens in a row leave no job behind, and 9 runs in a row succeed."""
    from colorprop.cli.main import main

    front, back = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    root = tmp_path / "root"
    root.mkdir()
    broker = spawn(
        ["broker", "--bind", front, "--backend", back, "--heartbeat", str(HEARTBEAT_S), "--log-level", "WARNING"]
    )
    worker = _spawn_worker(back, "--allow-root", str(root), "--max-jobs", "2")
    try:
        assert wait_until(lambda: _pong(front).get("workers") == 1, 90), "worker did not register"
        frames, keys = make_shot(3, seed=71)
        plate, key = write_plates(tmp_path / "shot", frames, keys[1])  # outside the worker's root
        with Client(front, timeout_s=2) as c:
            for i in range(50):
                with pytest.raises(Exception) as err:
                    c.open_shot(
                        {1: key},
                        {"method": "flow"},
                        list(frames),
                        P.MODE_PATHS,
                        plate,
                        str(tmp_path / "o.####.exr"),
                        job_id=f"refused-{i}",
                    )
                assert getattr(err.value, "code", None) == P.E_PATH, err.value
        assert _pong(front)["jobs"] == 0
        for run in range(9):
            rc = main(
                [
                    "colorize",
                    "--server",
                    front,
                    "--input",
                    plate,
                    "--key",
                    f"1={key}",
                    "--output",
                    str(tmp_path / f"run{run}" / "o.####.exr"),
                    "--method",
                    "flow",
                    "--progress",
                    "none",
                    "--timeout",
                    "5",
                ]
            )
            assert rc == 0, f"run {run + 1} of 9"
            assert sorted(p.name for p in (tmp_path / f"run{run}").iterdir()) == [f"o.{f:04d}.exr" for f in frames]
    finally:
        stop_proc(worker, signal.SIGKILL)
        stop_proc(broker, signal.SIGKILL)


def test_client_key_cannot_register_as_a_worker(tmp_path, free_port):
    """`colorprop keys K --client alice --client bob --worker w1`: alice's key, presented on the
    broker's worker side with a READY, registers nothing and receives none of bob's requests; the
    real worker key does and serves bob."""
    from colorprop_server import generate_keys

    keys = tmp_path / "keys"
    generate_keys(keys, ("alice", "bob"), ("w1",))
    front, back = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    broker = spawn(
        [
            "broker",
            "--bind",
            front,
            "--backend",
            back,
            "--curve-keys",
            str(keys),
            "--heartbeat",
            str(HEARTBEAT_S),
            "--log-level",
            "WARNING",
        ],
        stderr=subprocess.PIPE,
    )
    bob = CurveKeys.from_dir(keys, "bob")
    alice = CurveKeys.from_dir(keys, "alice")
    ctx = zmq.Context.instance()
    fake = ctx.socket(zmq.DEALER)
    fake.setsockopt(zmq.LINGER, 0)
    fake.curve_publickey, fake.curve_secretkey, fake.curve_serverkey = alice.public, alice.secret, alice.server_public
    worker = None
    try:
        assert wait_until(lambda: _try(lambda: _pong(front, bob)) is not None, 90), "broker did not start"
        from colorprop_server import framing as W

        refusals = fake.get_monitor_socket(zmq.EVENT_HANDSHAKE_FAILED_AUTH)
        fake.connect(back)
        caps = {
            "protocol": P.PROTOCOL_VERSION,
            "limits": {"max_jobs": 8},
            "modes": [P.MODE_INBAND],
            "engine": {"methods": ["flow"]},
            "worker": {"pid": 1},
        }
        # READY, as a worker would: queued on the socket until its handshake completes, which it never does
        fake.send_multipart([W.WORKER_PROTO, W.READY, json.dumps(caps).encode()], flags=zmq.NOBLOCK)
        # the broker's worker side refused the key itself (its ZAP domain lists workers only), so no READY of
        # alice's can ever reach the broker: wait for that refusal instead of sending READY for a while
        assert refusals.poll(60_000), "alice's key was not refused on the broker's worker side"
        assert recv_monitor_message(refusals)["event"] == zmq.EVENT_HANDSHAKE_FAILED_AUTH
        fake.disable_monitor()
        refusals.close(0)
        assert _pong(front, bob)["workers"] == 0
        worker = _spawn_worker(back, "--curve-keys", str(keys), "--curve-client-name", "w1")
        assert wait_until(lambda: _pong(front, bob)["workers"] == 1, 90), "the real worker did not register"
        frames, k = make_shot(3, seed=72)
        assert sorted(colorize_arrays(front, frames, k, {"method": "flow"}, curve=bob, timeout_s=3)) == [1, 2, 3]
        assert not fake.poll(200), "the client key received a request meant for a worker"
    finally:
        fake.close(0)
        if worker is not None:
            stop_proc(worker, signal.SIGKILL)
        stop_proc(broker)
    log = broker.stderr.read().decode()
    assert "auth_failed" in log and "a client key, not a worker key" in log, log[-2000:]


def _try(call):
    try:
        return call()
    except Exception:
        return None


def test_workers_reconnect_after_a_broker_restart(tmp_path, free_port):
    front, back = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    args = ["broker", "--bind", front, "--backend", back, "--heartbeat", str(HEARTBEAT_S), "--log-level", "WARNING"]
    brokers = [spawn(args)]
    worker = _spawn_worker(back)
    frames, keys = make_shot(4, seed=73)
    try:
        assert wait_until(lambda: (_try(lambda: _pong(front)) or {}).get("workers") == 1, 90)
        assert sorted(colorize_arrays(front, frames, keys, {"method": "flow"}, timeout_s=3)) == [1, 2, 3, 4]
        stop_proc(brokers[0], signal.SIGKILL)
        brokers.append(spawn(args))
        # The worker misses 3 heartbeats, drops its socket and reconnects with back-off (at most 32 heartbeats).
        assert wait_until(lambda: (_try(lambda: _pong(front)) or {}).get("workers") == 1, 60), (
            "the worker did not come back to the new broker"
        )
        assert sorted(colorize_arrays(front, frames, keys, {"method": "flow"}, timeout_s=3)) == [1, 2, 3, 4]
        assert worker.poll() is None  # the same worker process throughout
    finally:
        stop_proc(worker, signal.SIGKILL)
        for b in brokers:
            stop_proc(b, signal.SIGKILL)


def test_worker_refuses_a_remote_broker_without_keys_with_exit_2():
    proc = spawn(["serve", "--worker", "--broker", "tcp://192.0.2.1:5558"], stderr=subprocess.PIPE)
    try:
        _, err = proc.communicate(timeout=120)
    finally:
        stop_proc(proc, signal.SIGKILL)
    err = err.decode()
    assert proc.returncode == 2, err
    assert "refusing to connect to tcp://192.0.2.1:5558 without CURVE" in err and "Traceback" not in err


def test_a_job_failing_mid_run_on_a_worker_reaches_the_client_and_frees_its_slot(cluster, tmp_path):
    """Frame 4's pixels are cut off (its header is whole, so the job starts): the client hears `unreadable`
    naming that file through the broker, frames 1-3 are in place, and the broker's slot is free again."""
    plate, key, out, bad = broken_shot(cluster.root / "sh-broken", "unreadable", n=6, bad=4)
    with Client(cluster.frontend_endpoint, timeout_s=2, retries=5) as c:
        with pytest.raises(JobFailed) as err:
            colorize_paths(c, plate, out, list(range(1, 7)), {1: key}, {"method": "flow"})
    assert err.value.code == P.E_UNREADABLE and str(bad) in str(err.value)
    assert written_frames(out) == [1, 2, 3]
    assert wait_until(lambda: not any(w.jobs for w in cluster.workers.values()), 10)


def test_broker_status_lists_routed_jobs_with_their_worker(cluster):
    frames, keys = make_shot(6, seed=33)
    with Client(cluster.frontend_endpoint, timeout_s=2) as c:
        job = c.open_shot(keys, {"method": "flow"}, list(frames))
        try:
            job.send_frame(1, frames[1])
            assert wait_until(lambda: any(ev.kind == P.EV_PROGRESS for ev in job.fetch(wait_s=0.5)), 60)
            (listed,) = [j for j in c.status() if j["job"] == job.id]
        finally:
            job.close()
        assert job.id not in [j["job"] for j in c.status()]
    route_worker = listed["worker"]
    assert listed["client"] == "127.0.0.1" and listed["state"] == "running"
    assert (listed["frames_done"], listed["frames"]) == (1, 6) and listed["age_s"] >= 0
    assert route_worker in {w.ident.hex()[:16] for w in cluster.workers.values()}


def test_the_per_client_job_limit_holds_across_workers(cluster):
    """Each worker counted only its own share: with 3 workers a client ran up to 3 x its limit at once.
    The broker (limit 4) refuses the 5th open of one client however many workers have room, and takes
    it again once one of the four ends."""
    from colorprop_client.client import ServerBusy

    limit = cluster.config.max_jobs_per_client
    capacity = sum(w.capacity for w in cluster.workers.values())
    assert limit < capacity  # the workers alone would take more
    frames, keys = make_shot(2, seed=34)
    with Client(cluster.frontend_endpoint, timeout_s=2) as c:
        jobs = [c.open_shot(keys, {"method": "flow"}, list(frames)) for _ in range(limit)]
        try:
            assert len({cluster.routes[j.id].worker for j in jobs}) > 1  # spread over the workers
            with pytest.raises(ServerBusy, match="per-client limit"):
                c.open_shot(keys, {"method": "flow"}, list(frames))
            jobs.pop().close()
            jobs.append(c.open_shot(keys, {"method": "flow"}, list(frames)))
        finally:
            for j in jobs:
                j.close()
    assert wait_until(lambda: not any(w.jobs for w in cluster.workers.values()), 10)
