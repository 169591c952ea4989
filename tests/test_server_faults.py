"""Faults against real processes on 127.0.0.1: a client killed mid-job, SIGTERM or SIGKILL while a
client waits (and a new server at the same address), how fast a client gives up on a dead server,
CURVE with an unknown key, insecure addresses. Broker and worker faults: test_broker.py; here, what a
worker and a client behind a broker report (a worker refused for its key, a restarted in-band job)."""

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
from colorprop_client.client import (
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT_S,
    HEARTBEAT_IVL_MS,
    HEARTBEAT_TIMEOUT_MS,
    LONG_POLL_S,
    AuthenticationFailed,
    Client,
    CurveKeys,
    JobLost,
    ServerUnavailable,
    colorize_arrays,
)

from serverkit import REPO, ThreadServer, embedded, make_shot, spawn, stop_proc, wait_hello, wait_until, write_plates

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
        with Client(srv.address, timeout_s=2, retries=1) as c:  # the server is fine: it answers
            c.ping()
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


@pytest.mark.slow
def test_defaults_report_an_absent_server_within_5_s(free_port):
    assert DEFAULT_RETRIES * DEFAULT_TIMEOUT_S + LONG_POLL_S <= 5.0
    addr = f"tcp://127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    with pytest.raises(ServerUnavailable):
        with Client(addr) as c:
            c.hello()
    assert time.monotonic() - t0 <= 5.0


@pytest.mark.slow
def test_a_live_server_slower_than_the_timeout_is_waited_for():
    """A server whose connection is up (heartbeats answered) but which answers after 4 timeouts is
    slow, not dead: one try gets its answer."""
    import zmq

    ctx = zmq.Context.instance()
    router = ctx.socket(zmq.ROUTER)
    router.linger = 0
    port = router.bind_to_random_port("tcp://127.0.0.1")

    def answer_late():
        if router.poll(10_000):
            ident, header = router.recv_multipart()
            time.sleep(2.0)
            msg = P.decode([header])
            router.send_multipart([ident, *P.encode(P.PONG, msg.id)])

    t = threading.Thread(target=answer_late)
    t.start()
    try:
        with Client(f"tcp://127.0.0.1:{port}", timeout_s=0.5, retries=1) as c:
            assert c.ping() >= 2.0
    finally:
        t.join(15)
        router.close()


@pytest.mark.slow
def test_a_hung_server_is_given_up_through_heartbeats(free_port):
    """SIGSTOP: the connection stays open but nothing answers, not even ZeroMQ heartbeats; the client
    gives up after the heartbeat timeout and its remaining tries."""
    addr = f"tcp://127.0.0.1:{free_port()}"
    proc = spawn(["serve", "--bind", addr, "--log-level", "WARNING"])
    try:
        wait_hello(addr, proc)
        with Client(addr) as c:
            c.ping()  # connected
            proc.send_signal(signal.SIGSTOP)
            t0 = time.monotonic()
            with pytest.raises(ServerUnavailable):
                c.ping()
            gave_up_s = time.monotonic() - t0
    finally:
        proc.send_signal(signal.SIGCONT)
        stop_proc(proc, signal.SIGKILL)
    bound = (HEARTBEAT_IVL_MS + HEARTBEAT_TIMEOUT_MS) / 1000 + (DEFAULT_RETRIES - 1) * DEFAULT_TIMEOUT_S + 0.5
    assert gave_up_s <= bound, (gave_up_s, bound)


@pytest.mark.slow
def test_sigterm_mid_job_tells_the_waiting_client_why_and_exits_0(free_port):
    """SIGTERM while a client waits on a job: the frame in flight finishes, the job is cancelled, the
    client's next fetch (within the drain time) gets `failed`/`shutdown`, and the process exits 0."""
    addr = f"tcp://127.0.0.1:{free_port()}"
    proc = spawn(["serve", "--bind", addr, "--log-level", "WARNING"])
    frames, keys = make_shot(40, h=96, w=128, seed=21)
    first_result = threading.Event()
    rc = {}

    def terminate():
        if first_result.wait(120):
            rc["rc"] = stop_proc(proc, signal.SIGTERM, timeout=60)

    try:
        wait_hello(addr, proc)
        killer = threading.Thread(target=terminate)
        killer.start()
        with pytest.raises(JobLost) as err:
            colorize_arrays(
                addr,
                frames,
                keys,
                {"method": "flow"},
                timeout_s=5.0,
                restarts=0,
                on_progress=lambda ev: ev.kind == P.EV_RESULT and first_result.set(),
            )
        killer.join(90)
    finally:
        first_result.set()
        stop_proc(proc, signal.SIGKILL)
    assert err.value.code == P.E_SHUTDOWN, err.value
    assert rc["rc"] == 0


@pytest.mark.slow
def test_server_killed_and_restarted_while_a_client_waits(engine, free_port):
    """SIGKILL, then a new server at the same address: the client retries (Lazy Pirate) until the
    new server answers, learns the job is gone, resends the shot, and gets exactly the embedded
    engine's frames."""
    addr = f"tcp://127.0.0.1:{free_port()}"
    procs = [spawn(["serve", "--bind", addr, "--log-level", "WARNING"])]
    frames, keys = make_shot(40, h=96, w=128, seed=21)
    state: dict = {}

    def restart_on_first_result(ev):
        if ev.kind == P.EV_RESULT and "rc" not in state:
            state["rc"] = stop_proc(procs[-1], signal.SIGKILL)
            procs.append(spawn(["serve", "--bind", addr, "--log-level", "WARNING"]))

    try:
        wait_hello(addr, procs[0])
        got = colorize_arrays(
            addr,
            frames,
            keys,
            {"method": "flow"},
            timeout_s=1.0,
            retries=30,
            restarts=1,
            on_progress=restart_on_first_result,
        )
        assert state["rc"] == -signal.SIGKILL
        _identical(got, embedded(engine, frames, keys))
    finally:
        for p in procs:
            stop_proc(p, signal.SIGKILL)


@pytest.mark.slow
@pytest.mark.parametrize(
    "settings, bound_s",
    [
        ({"timeout_s": 1.0, "retries": 3}, 3 * 1.0 + 2.0),  # retries x timeout + 2 s
        ({}, 5.0),  # the defaults: a dead server reported within 5 s
    ],
    ids=["three_timeouts_plus_2_s", "defaults_5_s"],
)
def test_client_gives_up_after_kill_9(free_port, settings, bound_s):
    addr = f"tcp://127.0.0.1:{free_port()}"
    proc = spawn(["serve", "--bind", addr, "--log-level", "WARNING"])
    frames, keys = make_shot(60, h=96, w=128, seed=22)
    killed_at: list[float] = []

    def kill_on_first_result(ev):
        if ev.kind == P.EV_RESULT and not killed_at:
            stop_proc(proc, signal.SIGKILL)
            killed_at.append(time.monotonic())

    try:
        wait_hello(addr, proc)
        with pytest.raises(ServerUnavailable):
            colorize_arrays(addr, frames, keys, {"method": "flow"}, on_progress=kill_on_first_result, **settings)
        gave_up_s = time.monotonic() - killed_at[0]
    finally:
        stop_proc(proc, signal.SIGKILL)
    assert gave_up_s <= bound_s, gave_up_s


@pytest.mark.slow
def test_colorize_server_exits_6_within_5_s_after_kill_9(tmp_path, free_port):
    """`colorprop colorize --server ADDR` (default timeout), the server SIGKILLed once the first output
    frame is written: the error is on stderr within 5 s, and the exit code is 6."""
    addr = f"tcp://127.0.0.1:{free_port()}"
    server = spawn(["serve", "--bind", addr, "--log-level", "WARNING"])
    frames, keys = make_shot(60, h=96, w=128, seed=23)
    plate, key = write_plates(tmp_path / "shot", frames, keys[1])
    out = tmp_path / "out"
    cli = None
    try:
        wait_hello(addr, server)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        cli = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "colorprop",
                "colorize",
                "--server",
                addr,
                "--input",
                plate,
                "--key",
                f"1={key}",
                "--output",
                str(out / "o.####.exr"),
                "--method",
                "flow",
                "--progress",
                "none",
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert wait_until(lambda: (out / "o.0002.exr").exists() or cli.poll() is not None, 120)
        stop_proc(server, signal.SIGKILL)
        killed_at = time.monotonic()
        line = cli.stderr.readline()  # the error line comes when the client gives up
        gave_up_s = time.monotonic() - killed_at
        rc = cli.wait(60)
    finally:
        stop_proc(server, signal.SIGKILL)
        if cli is not None:
            stop_proc(cli, signal.SIGKILL)
    assert rc == 6, line
    assert "no reply from" in line and gave_up_s <= 5.0, (gave_up_s, line)


# ---------------------------------------------------------------- security


@pytest.mark.slow
def test_curve_allows_listed_keys_and_refuses_others(engine, tmp_path):
    from colorprop_server import generate_keys

    keys_dir = tmp_path / "keys"
    generate_keys(keys_dir)
    assert oct(os.stat(keys_dir / "server" / "server.key_secret").st_mode & 0o777) == "0o600"
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
        # Told at once, both of them, not after a try's silence: a try here waits 20 s, so the bound is one try's
        # wait, far from what a loaded machine needs for two handshakes.
        t0 = time.monotonic()
        with pytest.raises(AuthenticationFailed, match="authorized_clients"):
            with Client(srv.address, timeout_s=20.0, retries=2, curve=unknown) as c:
                c.ping()
        with pytest.raises(AuthenticationFailed, match="uses CURVE and this client has no keys"):
            with Client(srv.address, timeout_s=20.0, retries=2) as c:  # plain text to a CURVE server
                c.ping()
        assert time.monotonic() - t0 < 20.0
    finally:
        srv.stop()


def test_non_loopback_bind_refused_without_curve(engine):
    from colorprop_server import ServerConfig
    from colorprop_server.broker import Broker
    from colorprop_server.security import SecurityError, is_loopback
    from colorprop_server.server import Server

    for addr in (
        "tcp://127.0.0.1:5557",
        "tcp://127.3.4.5:1",
        "tcp://localhost:5557",
        "tcp://[::1]:5557",
        "ipc:///tmp/x",
        "inproc://x",
    ):
        assert is_loopback(addr), addr
    for addr in (
        "tcp://0.0.0.0:5557",
        "tcp://*:5557",
        "tcp://10.0.0.5:5557",
        "tcp://eth0:5557",
        "tcp://render-01:5557",
        "udp://127.0.0.1:1",
    ):
        assert not is_loopback(addr), addr
    # The check runs before any socket is bound.
    with pytest.raises(SecurityError, match="CURVE"):
        Server(ServerConfig(bind="tcp://0.0.0.0:5557", engine=engine)).run()
    with pytest.raises(SecurityError, match="CURVE"):
        Broker(ServerConfig(bind="tcp://127.0.0.1:0", backend_bind="tcp://*:5558")).run()
    with pytest.raises(SecurityError, match="refusing to connect to tcp://render-01:5558 without CURVE"):
        Server(ServerConfig(broker="tcp://render-01:5558", engine=engine)).run()


# ---------------------------------------------------------------- behind a broker: what the worker and the client
# report


def _broker(**config):
    """An in-process broker (tests look at its routes and workers) on ports the OS picks."""
    from colorprop_server import ServerConfig
    from colorprop_server.broker import Broker

    broker = Broker(
        ServerConfig(bind="tcp://127.0.0.1:0", backend_bind="tcp://127.0.0.1:0", heartbeat_s=0.5, liveness=3, **config)
    )
    thread = threading.Thread(target=broker.run, daemon=True)
    thread.start()
    assert broker.ready.wait(10), "broker did not start"
    return broker, thread


@pytest.mark.slow
def test_a_worker_started_with_a_client_key_logs_that_the_broker_refused_it(tmp_path):
    """Not broker_lost or "reply dropped" forever: the worker says its key was refused and what to do."""
    from colorprop_server import generate_keys

    generate_keys(tmp_path / "keys", ("alice",), ("w1",))
    broker, thread = _broker(curve_keys=str(tmp_path / "keys"))
    log_path = tmp_path / "worker.log"
    # alice's folder as `colorprop keys` hands it to the artist: her secret key and the broker's public key.
    worker = spawn(
        [
            "serve",
            "--worker",
            "--broker",
            broker.backend_endpoint,
            "--heartbeat",
            "0.5",
            "--curve-keys",
            str(tmp_path / "keys" / "clients" / "alice"),
            "--curve-client-name",
            "alice",
        ],
        stderr=open(log_path, "w"),
    )
    try:
        assert wait_until(lambda: "worker_refused" in log_path.read_text() or worker.poll() is not None, 90), (
            log_path.read_text()[-2000:]
        )
        assert not broker.workers
    finally:
        stop_proc(worker)
        broker.stop()
        thread.join(10)
    log = log_path.read_text()
    refused = next(line for line in log.splitlines() if "worker_refused" in line)
    assert "ERROR" in refused and "'alice'" in refused and "not one of its worker keys" in refused, refused
    assert "broker_lost" not in log and "reply dropped" not in log, log[-2000:]


@pytest.mark.slow
def test_an_in_band_job_restarted_after_its_worker_died_counts_each_frame_once(engine, tmp_path):
    """`colorize --server BROKER`, in-band; the worker is killed at the first result, the client resends the
    shot to the other worker, which sends every result again: written once each, 20 frames for 20."""
    from colorprop.engine.engine import ShotOptions
    from colorprop.io.exr import read_exr
    from colorprop.shot.pipeline import colorize_sequence
    from colorprop_server.remote import colorize_via_server

    frames, keys = make_shot(20, seed=23)
    plate, key = write_plates(tmp_path / "shot", frames, keys[1])
    broker, thread = _broker()
    workers = [
        spawn(
            ["serve", "--worker", "--broker", broker.backend_endpoint, "--heartbeat", "0.5", "--log-level", "WARNING"]
        )
        for _ in range(2)
    ]
    killed, progress = [], []

    def on_progress(ev):
        progress.append(ev.done)
        if not killed:
            (route,) = [r for r in broker.routes.values() if not r.finished]
            killed.append(broker.workers[route.worker].caps["worker"]["pid"])
            os.kill(killed[0], signal.SIGKILL)

    try:
        assert wait_until(lambda: len(broker.workers) == 2, 90), "workers did not register"
        report = colorize_via_server(
            broker.frontend_endpoint,
            plate,
            {1: key},
            str(tmp_path / "o.####.exr"),
            list(frames),
            ShotOptions(method="flow"),
            progress=on_progress,
            timeout_s=2,
        )
    finally:
        for w in workers:
            stop_proc(w, signal.SIGKILL)
        broker.stop()
        thread.join(10)
    assert killed and broker.jobs_retried == 0  # an in-band job: resent by the client, not the broker
    assert report.frames_written == list(frames) and report.frames_skipped == []
    assert progress == list(range(1, len(frames) + 1))
    colorize_sequence(engine, plate, {1: key}, str(tmp_path / "ref.####.exr"), list(frames), ShotOptions(method="flow"))
    for f in frames:
        np.testing.assert_array_equal(
            read_exr(tmp_path / f"o.{f:04d}.exr").pixels, read_exr(tmp_path / f"ref.{f:04d}.exr").pixels
        )
