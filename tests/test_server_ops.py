"""Running the server as a pipeline TD would, against real `colorprop serve` processes on 127.0.0.1:
the config file (flags override, bad keys exit 2), the log (text and JSON lines with timestamps,
client identity, job ids, device), CURVE refusals logged by the server and reported as such to the
client (exit 7), the shipped example config."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from colorprop_client import protocol as P
from colorprop_client.client import AuthenticationFailed, Client, CurveKeys, colorize_arrays

from serverkit import REPO, connect_times, make_shot, spawn, stop_proc, wait_hello, wait_until, write_plates

pytestmark = pytest.mark.usefixtures("watchdog")

TEXT_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (DEBUG|INFO|WARNING|ERROR) (\S+)(?: (.*))?$")
FIELD = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')


def _text_records(log: str) -> list[dict]:
    """Parse the text format: every line must be a record (or a traceback line after an ERROR)."""
    records = []
    for line in log.splitlines():
        m = TEXT_LINE.match(line)
        assert m, f"not a log line: {line!r}"
        fields = {k: json.loads(v) if v.startswith('"') else v for k, v in FIELD.findall(m.group(4) or "")}
        records.append({"time": m.group(1), "level": m.group(2), "event": m.group(3), **fields})
    return records


def _serve(args: list[str], log_path: Path) -> subprocess.Popen:
    return spawn(["serve", *args], stderr=open(log_path, "w"))


def _stop(proc: subprocess.Popen, log_path: Path) -> str:
    assert stop_proc(proc, signal.SIGTERM, timeout=60) == 0
    return log_path.read_text()


# ---------------------------------------------------------------- config file


@pytest.mark.slow
def test_config_file_sets_the_options_and_command_line_flags_override_it(tmp_path, free_port):
    addr = f"tcp://127.0.0.1:{free_port()}"
    root = tmp_path / "root"
    root.mkdir()
    cfg = tmp_path / "server.toml"
    cfg.write_text(
        f'bind = "{addr}"\nallow_root = ["{root}"]\nmax_jobs = 3\nmax_jobs_per_client = 2\n'
        f'session_timeout = 30.5\nlog_format = "json"\nlog_level = "info"\ndevice = "cpu"\n'
    )
    log_path = tmp_path / "server.log"
    proc = _serve(["--config", str(cfg), "--max-jobs", "5"], log_path)
    try:
        caps = wait_hello(addr, proc)
    finally:
        log = _stop(proc, log_path)
    assert caps["limits"]["max_jobs"] == 5  # the flag beat the file's 3
    assert caps["limits"]["max_jobs_per_client"] == 2 and caps["limits"]["session_timeout_s"] == 30.5
    assert P.MODE_PATHS in caps["modes"]  # allow_root from the file
    records = [json.loads(line) for line in log.splitlines()]  # log_format = "json" from the file
    listening = [r for r in records if r.get("event") == "listening"]
    assert listening and listening[0]["endpoint"] == addr


@pytest.mark.parametrize(
    "text, message",
    [
        ("max_job = 3\n", "unknown key 'max_job'"),
        ('max_jobs = "eight"\n', "max_jobs must be an integer, got str 'eight'"),
        ("max_jobs = true\n", "max_jobs must be an integer, got bool True"),
        ('allow_root = "/data"\n', "allow_root must be a list of strings"),
        ('log_format = "xml"\n', "log_format must be one of ['text', 'json']"),
        ("bind = \n", "not valid TOML"),
    ],
    ids=["unknown", "string-for-int", "bool-for-int", "string-for-list", "bad-choice", "syntax"],
)
def test_a_bad_config_file_exits_2_naming_the_file_and_the_key(tmp_path, text, message):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    out = subprocess.run(
        [sys.executable, "-m", "colorprop_server", "serve", "--config", str(cfg)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2, out.stderr
    assert str(cfg) in out.stderr and message in out.stderr, out.stderr


def test_the_example_config_sets_every_key_it_shows(tmp_path):
    """docs/server.example.toml: valid, every key known to `serve`, and each value lands in the args."""
    import tomllib

    from colorprop.cli.main import build_parser
    from colorprop_server.cli import _apply_config_file

    example = REPO / "docs" / "server.example.toml"
    args = build_parser().parse_args(["serve", "--config", str(example), "--device", "cuda:1"])
    _apply_config_file(args)
    values = tomllib.loads(example.read_text())
    assert {"bind", "curve_keys", "allow_root", "device", "max_jobs", "log_format", "metrics_port"} <= set(values)
    for key, value in values.items():
        expected = "cuda:1" if key == "device" else value.upper() if key == "log_level" else value
        assert getattr(args, key) == expected, key


# ---------------------------------------------------------------- log


@pytest.mark.slow
def test_text_log_has_timestamps_device_client_and_job_ids(tmp_path, free_port):
    addr = f"tcp://127.0.0.1:{free_port()}"
    log_path = tmp_path / "server.log"
    proc = _serve(["--bind", addr, "--device", "cpu"], log_path)
    frames, keys = make_shot(3)
    try:
        wait_hello(addr, proc)
        with Client(addr) as c:
            colorize_arrays(c, frames, keys, {"method": "flow"})
    finally:
        log = _stop(proc, log_path)
    records = _text_records(log)
    loaded = next(r for r in records if r["event"] == "engine_loaded")
    assert loaded["device"] == "cpu" and "weights_error" in loaded  # flow-only server: says why no weights
    start = next(r for r in records if r["event"] == "job_start")
    end = next(r for r in records if r["event"] == "job_end")
    assert start["job"] == end["job"] and len(start["job"]) == 32
    assert start["client"] == end["client"] == "127.0.0.1"  # no CURVE: the peer's address
    assert end["state"] == "done" and end["frames"] == "3"
    requests = [r for r in records if r["event"] == "request" and r.get("job") == start["job"]]
    assert {r["type"] for r in requests} >= {P.OPEN_SHOT, P.FRAME, P.FETCH, P.CLOSE}
    assert records[0]["time"] <= records[-1]["time"]


@pytest.mark.slow
def test_control_characters_a_client_sends_reach_the_text_log_escaped(tmp_path, free_port):
    """A request id and a job id carrying terminal escape sequences (no spaces, so the text log would not
    quote them): the log holds no control character, and the ids are there in their escaped spelling."""
    import zmq

    addr = f"tcp://127.0.0.1:{free_port()}"
    log_path = tmp_path / "server.log"
    proc = _serve(["--bind", addr], log_path)
    rid, job = "rid\x1b]0;owned\x07", "evil\x1b[31mred\x1b[0m"
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        wait_hello(addr, proc)
        sock.connect(addr)
        sock.send_multipart(P.encode(P.FETCH, rid, job=job, after=-1))
        assert sock.poll(10_000), "no reply"
        reply = P.decode(sock.recv_multipart(), expect=P.REPLY_TYPES)
        assert reply.id == rid and reply.get("field") == "job"  # refused, the client's id echoed as sent
    finally:
        sock.close(0)
        log = _stop(proc, log_path)
    assert not any(ord(c) < 32 and c != "\n" or c == "\x7f" for c in log), repr(log[-500:])
    fetches = [r for r in _text_records(log) if r["event"] == "request" and r.get("type") == P.FETCH]
    assert [(r["id"], r["job"]) for r in fetches] == [("rid\\x1b]0;owned\\x07", "evil\\x1b[31mred\\x1b[0m")]


@pytest.mark.slow
def test_curve_server_names_clients_by_key_and_refusals_are_logged_and_reported(tmp_path, free_port):
    """A client with a listed key is logged by its key's name; an unknown key, a client without
    keys and one with another server's key are refused: each client is told so at once
    (AuthenticationFailed, not 'unavailable') and the server logs the refused key with the peer's
    address (JSON lines)."""
    from colorprop_server import generate_keys

    keys_dir, other = tmp_path / "keys", tmp_path / "other"
    generate_keys(keys_dir, ("alice",))
    generate_keys(other, ("mallory",))
    addr = f"tcp://127.0.0.1:{free_port()}"
    log_path = tmp_path / "server.log"
    proc = _serve(["--bind", addr, "--curve-keys", str(keys_dir), "--log-format", "json"], log_path)
    alice = CurveKeys.from_dir(keys_dir, "alice")
    mallory = CurveKeys.from_dir(other, "mallory")
    frames, keys = make_shot(2)
    refusals = {}
    try:
        wait_hello(addr, proc, curve=alice)
        colorize_arrays(addr, frames, keys, {"method": "flow"}, curve=alice)
        for name, curve, reason in [
            ("unknown key", CurveKeys(mallory.public, mallory.secret, alice.server_public), "authorized_clients"),
            ("no keys", None, "uses CURVE and this client has no keys"),
            ("wrong server key", CurveKeys(alice.public, alice.secret, mallory.server_public), "server.key"),
        ]:
            with pytest.raises(AuthenticationFailed) as err:
                with Client(addr, curve=curve) as c:
                    c.ping()
            assert reason in str(err.value), (name, err.value)
            refusals[name] = err.value
    finally:
        log = _stop(proc, log_path)
    records = [json.loads(line) for line in log.splitlines()]
    assert all(r["time"].endswith("Z") and r["level"] for r in records)
    ends = [r for r in records if r.get("event") == "job_end"]
    assert len(ends) == 1 and ends[0]["client"] == "alice" and ends[0]["state"] == "done"
    refused = [r for r in records if r.get("event") == "auth_failed"]
    assert any(r.get("peer") == "127.0.0.1" and "unknown CURVE key" in r["reason"] for r in refused), refused
    # The two refused before the allow-list are logged from the socket monitor when the server sees them
    # (a client that hangs up first can beat it): without the peer's address, with a reason.
    assert all(r["side"] == "clients" and r["reason"] for r in refused), refused


@pytest.mark.slow
def test_colorize_refused_by_curve_exits_7_and_says_so(tmp_path, free_port, monkeypatch, capsys):
    from colorprop.cli.main import main
    from colorprop_server import generate_keys

    generate_keys(tmp_path / "keys")
    addr = f"tcp://127.0.0.1:{free_port()}"
    log_path = tmp_path / "server.log"
    proc = _serve(["--bind", addr, "--curve-keys", str(tmp_path / "keys")], log_path)
    frames, keys = make_shot(2)
    plate, key = write_plates(tmp_path / "shot", frames, keys[1])
    try:
        wait_hello(addr, proc, curve=CurveKeys.from_dir(tmp_path / "keys"))
        generate_keys(tmp_path / "stranger")  # a client key the server has never seen, with its server.key
        (tmp_path / "stranger" / "clients" / "client" / "server.key").write_bytes(
            (tmp_path / "keys" / "server" / "server.key").read_bytes()
        )
        monkeypatch.setenv("COLORPROP_CURVE_KEYS", str(tmp_path / "stranger"))
        rc = main(
            [
                "colorize",
                "--server",
                addr,
                "--input",
                plate,
                "--key",
                f"1={key}",
                "--output",
                str(tmp_path / "o.####.exr"),
                "--method",
                "flow",
                "--progress",
                "none",
            ]
        )
    finally:
        log = _stop(proc, log_path)
    err = capsys.readouterr().err
    assert rc == 7, err
    assert "refused the connection" in err and "authorized_clients" in err and "is `colorprop serve`" not in err
    assert not list(tmp_path.glob("o.*.exr"))
    assert "auth_failed" in log and "peer=127.0.0.1" in log


# ---------------------------------------------------------------- metrics


def _scrape(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
        return r.read().decode()


def _check_exposition(text: str) -> dict:
    """``promtool check metrics`` (Debian's prometheus package) when installed, and prometheus_client's
    own parser: {(name, labels): value} of the samples."""
    import shutil

    from prometheus_client.parser import text_string_to_metric_families

    if shutil.which("promtool"):
        out = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


@pytest.mark.slow
def test_metrics_endpoint_counts_jobs_frames_errors_per_client(tmp_path, free_port):
    addr, port = f"tcp://127.0.0.1:{free_port()}", free_port()
    log_path = tmp_path / "server.log"
    proc = _serve(["--bind", addr, "--metrics-port", str(port)], log_path)
    frames, keys = make_shot(4)
    try:
        wait_hello(addr, proc)
        before = _check_exposition(_scrape(f"http://127.0.0.1:{port}/metrics"))
        with Client(addr) as c:
            colorize_arrays(c, frames, keys, {"method": "flow"})
            with pytest.raises(Exception):
                c.request(P.FETCH, job="no-such-job", after=-1)
        text = _scrape(f"http://127.0.0.1:{port}/metrics")
    finally:
        log = _stop(proc, log_path)
    m = _check_exposition(text)
    client = (("client", "127.0.0.1"),)
    assert ("colorprop_jobs_started_total", client) not in before
    assert m[("colorprop_jobs_started_total", client)] == 1
    assert m[("colorprop_jobs_finished_total", (("client", "127.0.0.1"), ("state", "done")))] == 1
    assert m[("colorprop_frames_total", client)] == 4
    assert m[("colorprop_errors_total", (("code", P.E_UNKNOWN_JOB),))] == 1
    assert m[("colorprop_requests_total", (("type", P.OPEN_SHOT),))] == 1
    assert m[("colorprop_frames_per_second", ())] == pytest.approx(4 / 60)
    assert m[("colorprop_queue_depth", ())] == 0 and m[("colorprop_jobs_running", ())] == 0
    assert f"url=http://127.0.0.1:{port}/metrics" in log


@pytest.mark.slow
def test_the_shared_path_probe_of_an_in_band_job_is_not_counted_as_an_error(tmp_path, free_port):
    """`colorize --server` first asks a server offering shared paths to read the files itself; files outside
    its roots are refused (path_refused) and the frames go in-band. That refusal is the client's question,
    answered: the metrics count the request but no error (it raised path_refused alerts)."""
    from colorprop.engine.engine import ShotOptions
    from colorprop_server.remote import colorize_via_server

    addr, port = f"tcp://127.0.0.1:{free_port()}", free_port()
    (tmp_path / "root").mkdir()
    log_path = tmp_path / "server.log"
    proc = _serve(["--bind", addr, "--allow-root", str(tmp_path / "root"), "--metrics-port", str(port)], log_path)
    frames, keys = make_shot(3, seed=12)
    plate, key = write_plates(tmp_path / "outside", frames, keys[1])
    try:
        wait_hello(addr, proc)
        report = colorize_via_server(
            addr, plate, {1: key}, str(tmp_path / "o.####.exr"), [1, 2, 3], ShotOptions.from_dict({"method": "flow"})
        )
        assert report.frames_written == [1, 2, 3]
        m = _check_exposition(_scrape(f"http://127.0.0.1:{port}/metrics"))
    finally:
        _stop(proc, log_path)
    assert m[("colorprop_requests_total", (("type", P.OPEN_SHOT),))] == 2  # the probe, then the in-band shot
    assert not [k for k in m if k[0] == "colorprop_errors_total"], m


def test_client_labels_are_bounded():
    from colorprop_server.metrics import MAX_CLIENT_LABELS, ServerMetrics

    m = ServerMetrics(lambda: {"sessions": 0, "active_jobs": 0, "waiting_for_turn": 0})
    for i in range(MAX_CLIENT_LABELS + 10):
        m.job_started(f"10.0.0.{i}")
    from prometheus_client import generate_latest

    samples = _check_exposition(generate_latest(m.registry).decode())
    started = {labels: v for (name, labels), v in samples.items() if name == "colorprop_jobs_started_total"}
    assert len(started) == MAX_CLIENT_LABELS + 1 and started[(("client", "other"),)] == 10


# ---------------------------------------------------------------- systemd unit

UNIT = REPO / "plugin" / "deploy" / "colorprop-serve.service"


def test_systemd_unit_passes_systemd_analyze_verify(tmp_path):
    """The shipped unit, its ExecStart pointed at this checkout's `colorprop`: `systemd-analyze verify`
    has nothing to say (it exits 0 even for a bad value, so its output must be empty too), and the
    command line is one `colorprop` accepts."""
    import shlex
    import shutil

    from colorprop.cli.main import build_parser

    text = UNIT.read_text()
    exec_start = next(line.split("=", 1)[1] for line in text.splitlines() if line.startswith("ExecStart="))
    argv = shlex.split(exec_start)
    assert argv[0].endswith("/colorprop")
    args = build_parser().parse_args(argv[1:])
    assert args.command == "serve" and args.config == "/etc/colorprop/server.toml"
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed here (the unit's command line was checked)")
    colorprop = Path(sys.executable).with_name("colorprop")
    assert colorprop.exists(), colorprop
    unit = tmp_path / UNIT.name
    unit.write_text(text.replace(argv[0], str(colorprop)))
    out = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and not (out.stdout + out.stderr).strip(), out.stdout + out.stderr


# ---------------------------------------------------------------- status


@pytest.mark.slow
def test_status_lists_jobs_with_client_state_frames_and_age(tmp_path, free_port, monkeypatch, capsys):
    """`colorprop status ADDRESS` against a CURVE server: alice sees her running job in full (JSON);
    bob sees it with its id cut to 8 characters (text), so he cannot fetch or cancel it."""
    from colorprop.cli.main import main
    from colorprop_server import generate_keys

    keys_dir = tmp_path / "keys"
    generate_keys(keys_dir, ("alice", "bob"))
    addr = f"tcp://127.0.0.1:{free_port()}"
    log_path = tmp_path / "server.log"
    proc = _serve(["--bind", addr, "--curve-keys", str(keys_dir)], log_path)
    alice = CurveKeys.from_dir(keys_dir, "alice")
    frames, keys = make_shot(6)
    monkeypatch.setenv("COLORPROP_CURVE_KEYS", str(keys_dir))
    try:
        wait_hello(addr, proc, curve=alice)
        with Client(addr, curve=alice) as c:
            job = c.open_shot(keys, {"method": "flow"}, list(frames))
            job.send_frame(1, frames[1])  # then the job waits for frame 2, which never comes
            assert wait_until(lambda: c.status()[0]["frames_done"] == 1, 60)
            monkeypatch.setenv("COLORPROP_CURVE_NAME", "alice")
            assert main(["status", addr, "--json"]) == 0
            mine = json.loads(capsys.readouterr().out)
            monkeypatch.setenv("COLORPROP_CURVE_NAME", "bob")
            assert main(["status", addr]) == 0
            table = capsys.readouterr().out.splitlines()
            job.close()
            assert c.status() == []
    finally:
        _stop(proc, log_path)
    assert len(mine) == 1 and mine[0]["job"] == job.id and mine[0]["client"] == "alice"
    assert mine[0]["state"] == "running" and (mine[0]["frames_done"], mine[0]["frames"]) == (1, 6)
    assert mine[0]["age_s"] > 0
    assert table[0].split() == ["JOB", "CLIENT", "STATE", "FRAMES", "AGE"]
    assert table[1].split()[:4] == [job.id[:8], "alice", "running", "1/6"] and job.id not in table[1]


@pytest.mark.slow
def test_status_of_nothing_exits_6_within_5_s(free_port, capsys, monkeypatch):
    import time

    from colorprop.cli.main import main

    connects = connect_times(monkeypatch)  # timed from the first connect, not from the command's start-up
    assert main(["status", f"tcp://127.0.0.1:{free_port()}"]) == 6
    assert connects and time.monotonic() - connects[0] <= 5.0
    assert "no reply from" in capsys.readouterr().err


def test_broker_reads_the_config_file_and_serves_its_metrics(tmp_path, free_port):
    """`colorprop broker --config`: addresses, JSON log and metrics port from the file; its metrics page
    passes promtool and counts the requests it answered itself."""
    front, back, port = (free_port() for _ in range(3))
    cfg = tmp_path / "broker.toml"
    cfg.write_text(
        f'bind = "tcp://127.0.0.1:{front}"\nbackend = "tcp://127.0.0.1:{back}"\nlog_format = "json"\n'
        f"metrics_port = {port}\n"
    )
    log_path = tmp_path / "broker.log"
    proc = spawn(["broker", "--config", str(cfg)], stderr=open(log_path, "w"))
    try:
        assert wait_until(lambda: "broker_listening" in log_path.read_text() or proc.poll() is not None, 60)
        with Client(f"tcp://127.0.0.1:{front}") as c:
            c.ping()
            assert c.status() == []
        m = _check_exposition(_scrape(f"http://127.0.0.1:{port}/metrics"))
    finally:
        log = _stop(proc, log_path)
    assert m[("colorprop_broker_workers", ())] == 0
    assert m[("colorprop_broker_requests_total", (("status", "pong"),))] == 1
    listening = [json.loads(line) for line in log.splitlines() if '"broker_listening"' in line]
    assert (
        listening[0]["frontend"] == f"tcp://127.0.0.1:{front}" and listening[0]["backend"] == f"tcp://127.0.0.1:{back}"
    )
