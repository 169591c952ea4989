"""Faults against real processes on 127.0.0.1: a client killed mid-job, the server restarted
while a client waits, SIGTERM, CURVE with an unknown key, and workers SIGKILLed mid-job behind a
broker (the job is retried elsewhere or fails with a clear error; no half-written EXR)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from colorprop_client import protocol as P
from colorprop_client.client import (Client, CurveKeys, JobLost, ServerUnavailable, colorize_arrays,
                                     colorize_paths)

from serverkit import REPO, ThreadServer, embedded, make_shot, spawn, stop_proc, wait_hello, wait_until

pytestmark = pytest.mark.usefixtures("watchdog")


def _identical(got, ref):
    assert sorted(got) == sorted(ref)
    for f in ref:
        np.testing.assert_array_equal(got[f][0], ref[f][0], err_msg=f"frame {f}")


# ---------------------------------------------------------------- client killed


def test_client_killed_mid_job_has_its_session_dropped(engine):
    srv = ThreadServer(engine, session_timeout_s=1.0)
    code = (
        "import sys, time, numpy as np\n"
        "from colorprop_client.client import Client\n"
        "c = Client(sys.argv[1], timeout_s=2)\n"
        "f = {i: np.full((48, 64, 3), 0.1 * i, np.float32) for i in range(1, 41)}\n"
        "job = c.open_shot({1: f[1]}, {'method': 'flow'}, list(f))\n"
        "job.send_frame(1, f[1]); job.send_frame(2, f[2])\n"
        "print(job.id, flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, srv.address], stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        job_id = proc.stdout.readline().strip()
        assert job_id and job_id in srv.service.sessions
        proc.kill()
        proc.wait(10)
        assert wait_until(lambda: job_id not in srv.service.sessions, 10), "session not dropped"
        assert wait_until(lambda: not srv.service.threads_alive(), 10), "job thread still running"
        with Client(srv.address, timeout_s=2) as c:  # the server is fine
            assert c.ping() < 1.0
    finally:
        if proc.poll() is None:
            proc.kill()
        srv.stop()


# ---------------------------------------------------------------- server restarted / down


def test_no_server_raises_server_unavailable_within_seconds(free_port):
    addr = f"tcp://127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    with pytest.raises(ServerUnavailable):
        with Client(addr, timeout_s=0.5, retries=3) as c:
            c.ping()
    assert time.monotonic() - t0 < 3.0


def test_server_restarted_while_a_client_waits(engine, free_port):
    addr = f"tcp://127.0.0.1:{free_port()}"
    procs = [spawn(["serve", "--bind", addr, "--log-level", "WARNING"])]
    frames, keys = make_shot(40, h=96, w=128, seed=21)
    state: dict = {}

    def restart_on_first_result(sig):
        def hook(ev):
            if ev.kind == P.EV_RESULT and "rc" not in state:
                state["rc"] = stop_proc(procs[-1], sig)
                procs.append(spawn(["serve", "--bind", addr, "--log-level", "WARNING"]))
        return hook

    try:
        wait_hello(addr, procs[0])
        # 1. SIGTERM: the server finishes the frame in flight, cancels the job and exits 0; the
        #    waiting client gets a clear error (no automatic resend asked for).
        with pytest.raises(JobLost) as err:
            colorize_arrays(addr, frames, keys, {"method": "flow"}, timeout_s=1.0, retries=30, restarts=0,
                            on_progress=restart_on_first_result(signal.SIGTERM))
        assert state["rc"] == 0
        assert err.value.code in (P.E_SHUTDOWN, P.E_UNKNOWN_JOB)
        # 2. SIGKILL: the client retries (Lazy Pirate) until the new server answers, learns the job
        #    is gone, resends the shot, and gets exactly the embedded engine's frames.
        state.clear()
        got = colorize_arrays(addr, frames, keys, {"method": "flow"}, timeout_s=1.0, retries=30, restarts=1,
                              on_progress=restart_on_first_result(signal.SIGKILL))
        assert state["rc"] == -signal.SIGKILL
        _identical(got, embedded(engine, frames, keys))
    finally:
        for p in procs:
            stop_proc(p, signal.SIGKILL)


# ---------------------------------------------------------------- security


def test_curve_allows_listed_keys_and_refuses_others(engine, tmp_path):
    from colorprop_server import generate_keys

    keys_dir = tmp_path / "keys"
    generate_keys(keys_dir)
    assert oct(os.stat(keys_dir / "server.key_secret").st_mode & 0o777) == "0o600"
    srv = ThreadServer(engine, curve_keys=str(keys_dir))
    try:
        good = CurveKeys.from_dir(keys_dir, "client")
        with Client(srv.address, timeout_s=2, curve=good) as c:
            assert c.hello()["protocol"] == P.PROTOCOL_VERSION
            frames, k = make_shot(3)
            assert sorted(colorize_arrays(c, frames, k, {"method": "flow"})) == [1, 2, 3]
        generate_keys(tmp_path / "other", ("client",))
        stranger = CurveKeys.from_dir(tmp_path / "other", "client")
        unknown = CurveKeys(stranger.public, stranger.secret, good.server_public)
        t0 = time.monotonic()
        with pytest.raises(ServerUnavailable):
            with Client(srv.address, timeout_s=0.5, retries=2, curve=unknown) as c:
                c.ping()
        with pytest.raises(ServerUnavailable):
            with Client(srv.address, timeout_s=0.5, retries=2) as c:  # plain text to a CURVE server
                c.ping()
        assert time.monotonic() - t0 < 5.0
    finally:
        srv.stop()


def test_non_loopback_bind_refused_without_curve(engine):
    from colorprop_server import ServerConfig
    from colorprop_server.broker import Broker
    from colorprop_server.security import SecurityError, is_loopback
    from colorprop_server.server import Server

    for addr in ("tcp://127.0.0.1:5557", "tcp://127.3.4.5:1", "tcp://localhost:5557", "tcp://[::1]:5557",
                 "ipc:///tmp/x", "inproc://x"):
        assert is_loopback(addr), addr
    for addr in ("tcp://0.0.0.0:5557", "tcp://*:5557", "tcp://10.0.0.5:5557", "tcp://eth0:5557",
                 "tcp://render-01:5557", "udp://127.0.0.1:1"):
        assert not is_loopback(addr), addr
    # The check runs before any socket is bound.
    with pytest.raises(SecurityError, match="CURVE"):
        Server(ServerConfig(bind="tcp://0.0.0.0:5557", engine=engine)).run()
    with pytest.raises(SecurityError, match="CURVE"):
        Broker(ServerConfig(bind="tcp://127.0.0.1:0", backend_bind="tcp://*:5558")).run()
    with pytest.raises(ValueError, match="CURVE"):
        Server(ServerConfig(broker="tcp://render-01:5558", engine=engine)).run()


# ---------------------------------------------------------------- broker + workers


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from colorprop_server import ServerConfig
    from colorprop_server.broker import Broker

    root = tmp_path_factory.mktemp("farm")
    broker = Broker(ServerConfig(bind="tcp://127.0.0.1:0", backend_bind="tcp://127.0.0.1:0", heartbeat_s=0.2,
                                 liveness=3, session_timeout_s=5.0))
    thread = threading.Thread(target=broker.run, daemon=True)
    thread.start()
    assert broker.ready.wait(10)
    workers = [spawn(["serve", "--worker", "--broker", broker.backend_endpoint, "--allow-root", str(root),
                      "--heartbeat", "0.2", "--max-jobs", "2", "--log-level", "WARNING"]) for _ in range(3)]
    try:
        assert wait_until(lambda: len(broker.workers) == 3, 60), "workers did not register"
        broker.root = root
        yield broker
    finally:
        for w in workers:
            stop_proc(w, signal.SIGKILL)
        broker.stop()
        thread.join(10)


def _kill_worker_of_only_job(broker) -> int:
    (route,) = list(broker.routes.values())
    pid = broker.workers[route.worker].caps["worker"]["pid"]
    os.kill(pid, signal.SIGKILL)
    return pid


def test_worker_killed_mid_paths_job_is_retried_elsewhere(cluster, engine, tmp_path):
    from colorprop.engine.engine import ShotOptions
    from colorprop.io.exr import read_exr, write_exr
    from colorprop.shot.pipeline import colorize_sequence

    frames, keys = make_shot(60, h=96, w=128, seed=31)
    shot = cluster.root / "sh010"
    shot.mkdir()
    for f, px in frames.items():
        write_exr(shot / f"plate.{f:04d}.exr", px, ("R", "G", "B"), pixel_type="float")
    write_exr(shot / "key.exr", keys[1], ("R", "G", "B"), pixel_type="float")
    out = shot / "out"
    killed = []

    def hook(ev):
        if ev.kind == P.EV_WRITTEN and not killed:
            killed.append(_kill_worker_of_only_job(cluster))

    with Client(cluster.frontend_endpoint, timeout_s=2, retries=5) as c:
        assert c.hello()["broker"]["workers"] == 3
        report = colorize_paths(c, str(shot / "plate.####.exr"), str(out / "col.####.exr"), list(frames),
                                {1: str(shot / "key.exr")}, {"method": "flow"}, on_progress=hook)
    assert killed and cluster.jobs_retried == 1
    assert sorted(report["frames_written"]) == list(frames)
    colorize_sequence(engine, str(shot / "plate.####.exr"), {1: str(shot / "key.exr")},
                      str(tmp_path / "ref.####.exr"), list(frames), ShotOptions(method="flow"))
    for f in frames:  # every output complete, readable and equal to the embedded run
        np.testing.assert_array_equal(read_exr(out / f"col.{f:04d}.exr").pixels,
                                      read_exr(tmp_path / f"ref.{f:04d}.exr").pixels)
    assert sorted(p.name for p in out.iterdir()) == [f"col.{f:04d}.exr" for f in frames]  # no temp files


def test_worker_killed_mid_inband_job(cluster, engine):
    frames, keys = make_shot(40, h=96, w=128, seed=41)
    ref = embedded(engine, frames, keys)
    for restarts in (1, 0):
        killed = []

        def hook(ev):
            if ev.kind == P.EV_RESULT and not killed:
                killed.append(_kill_worker_of_only_job(cluster))

        if restarts:  # the client library resends the shot to a live worker: same frames
            got = colorize_arrays(cluster.frontend_endpoint, frames, keys, {"method": "flow"}, timeout_s=2,
                                  restarts=1, on_progress=hook)
            _identical(got, ref)
        else:  # asked not to resend: a clear error naming the cause
            with pytest.raises(JobLost) as err:
                colorize_arrays(cluster.frontend_endpoint, frames, keys, {"method": "flow"}, timeout_s=2,
                                restarts=0, on_progress=hook)
            assert err.value.code == P.E_WORKER_LOST and "worker" in str(err.value)
        assert killed
    assert wait_until(lambda: len(cluster.workers) == 0, 5)
