"""Settings of `colorprop serve` and `colorprop broker`, as a TD types them: every bad value is refused
before anything listens, with exit 2 (5 for a named weights folder that is not one) and one line naming
the option and the value, never a traceback, a spinning loop or a hung read. Real processes
(`python -m colorprop_server`) for each reproduction; an in-process fuzz of config files and flags over
the same code path."""

from __future__ import annotations

import json
import math
import os
import random
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from serverkit import NO_WEIGHTS, REPO, spawn, stop_proc, wait_until

pytestmark = pytest.mark.usefixtures("watchdog")


def _run(args: list[str], timeout: float = 90) -> subprocess.CompletedProcess:
    """The command to its end; one that is still running after ``timeout`` (listening, spinning, hung
    on a read) is killed and fails the test."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", COLORPROP_WEIGHTS=NO_WEIGHTS)
    proc = subprocess.Popen(
        [sys.executable, "-m", "colorprop_server", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_proc(proc, signal.SIGKILL)
        pytest.fail(f"`{' '.join(args)}` was still running after {timeout} s instead of refusing the setting")
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def _refused(args: list[str], *words: str, code: int = 2) -> str:
    out = _run(args)
    assert out.returncode == code, out.stderr[-3000:]
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    for w in words:
        assert w in out.stderr, (w, out.stderr[-3000:])
    return out.stderr


@pytest.mark.parametrize(
    "args, words",
    [
        (["broker", "--heartbeat", "0"], ["--heartbeat", "0.0"]),  # the broker's loop spun at 97 % CPU
        (["broker", "--heartbeat", "nan"], ["--heartbeat", "nan"]),  # crashed after it already listened
        (["broker", "--heartbeat", "inf"], ["--heartbeat", "inf"]),
        (["serve", "--session-timeout", "-1"], ["--session-timeout", "-1"]),  # failed every job with unknown_job
        (["broker", "--max-jobs-per-client", "0"], ["--max-jobs-per-client", "0"]),
        (["broker", "--max-memory-mb", "-5"], ["--max-memory-mb", "-5"]),
        (["broker", "--bind", "tcp://127.0.0.1:99999"], ["--bind", "99999"]),
        (["serve", "--device", "gpu"], ["--device", "gpu"]),
    ],
    ids=[
        "heartbeat-0",
        "heartbeat-nan",
        "heartbeat-inf",
        "session-timeout",
        "per-client-0",
        "memory-negative",
        "port-out-of-range",
        "device",
    ],
)
def test_an_out_of_range_flag_exits_2_naming_the_option_and_the_value(args, words):
    _refused(args, *words)


@pytest.mark.parametrize(
    "command, text, words",
    [
        ("serve", "max_jobs = 0\n", ["--max-jobs", "`max_jobs`", "0"]),
        ("serve", "metrics_port = 70000\n", ["--metrics-port", "70000"]),  # was a traceback
        ("broker", "heartbeat = nan\n", ["--heartbeat", "nan"]),
        ("broker", "job_retries = -1\n", ["--job-retries", "-1"]),
    ],
    ids=["max-jobs-0", "metrics-port", "heartbeat-nan", "job-retries"],
)
def test_an_out_of_range_config_value_exits_2_naming_the_key(tmp_path, command, text, words):
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    _refused([command, "--config", str(cfg)], *words)


def test_a_config_file_that_is_not_utf8_exits_2(tmp_path):
    cfg = tmp_path / "latin1.toml"
    cfg.write_bytes("# r\xe9glages du serveur\nmax_jobs = 4\n".encode("latin-1"))  # was UnicodeDecodeError, exit 1
    _refused(["broker", "--config", str(cfg)], str(cfg), "not UTF-8")


def test_a_config_that_is_a_device_or_a_fifo_exits_2_at_once(tmp_path):
    """/dev/zero was read until memory ran out; a FIFO nobody writes hung the start for good."""
    _refused(["broker", "--config", "/dev/zero"], "/dev/zero", "not a regular file")
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    _refused(["broker", "--config", str(fifo)], str(fifo), "not a regular file")


def test_a_huge_config_file_is_refused_not_read(tmp_path):
    from colorprop_server.config import MAX_CONFIG_BYTES

    cfg = tmp_path / "big.toml"
    with open(cfg, "wb") as f:
        f.write(b"# " + b"x" * (MAX_CONFIG_BYTES + 10) + b"\n")
    _refused(["broker", "--config", str(cfg)], str(cfg), "larger than")


@pytest.fixture
def taken_port():
    """A port another process (here: this test) listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


@pytest.mark.parametrize(
    "args",
    [["broker", "--bind"], ["broker", "--backend"], ["serve", "--bind"]],
    ids=["broker-front", "broker-back", "server"],
)
def test_an_address_in_use_exits_2_naming_the_option(taken_port, free_port, args):
    """Was a ZMQError traceback (exit 1: a systemd unit restarted it in a loop)."""
    other = (
        ["--backend" if args[1] == "--bind" else "--bind", f"tcp://127.0.0.1:{free_port()}"]
        if args[0] == "broker"
        else []
    )
    _refused([*args, f"tcp://127.0.0.1:{taken_port}", *other], args[1], str(taken_port), "in use")


@pytest.mark.parametrize("command", ["broker", "serve"])
def test_a_metrics_port_in_use_exits_2_naming_the_option(taken_port, free_port, command):
    """Was exit 1 without naming the option, after the server had loaded everything."""
    backend = ["--backend", f"tcp://127.0.0.1:{free_port()}"] if command == "broker" else []
    _refused(
        [command, "--bind", f"tcp://127.0.0.1:{free_port()}", *backend, "--metrics-port", str(taken_port)],
        "--metrics-port",
        str(taken_port),
        "in use",
    )


def test_a_named_weights_folder_that_holds_no_weights_exits_5(tmp_path, free_port):
    """A mistyped `weights` started a flow-only server (logged at INFO); asked for by name, it is exit 5."""
    missing = tmp_path / "wieghts"
    _refused(
        ["serve", "--bind", f"tcp://127.0.0.1:{free_port()}", "--weights", str(missing)],
        "--weights",
        str(missing),
        code=5,
    )


def test_a_named_weights_folder_with_a_corrupt_network_file_exits_5(tmp_path, free_port):
    """Its manifest reads, so the pre-flight passed it; the corrupt fusion.pt made a flow-only server that
    said so at INFO (engine_loaded weights_error=...). Asked for by name, it is exit 5 naming the file."""
    import shutil

    import colorprop.engine.weights as weights

    folder = tmp_path / "weights"
    shutil.copytree(Path(weights.__file__).parent / weights.SHIPPED, folder)
    with open(folder / "fusion.pt", "ab") as f:
        f.write(b"garbage")
    _refused(
        ["serve", "--bind", f"tcp://127.0.0.1:{free_port()}", "--weights", str(folder)],
        "--weights",
        "fusion.pt",
        "sha256",
        code=5,
    )


def test_default_weights_missing_is_a_warning_before_listening(tmp_path, free_port):
    """Without --weights the shipped (here: absent) weights missing is not fatal, but a WARNING that says
    the server offers flow only, before it listens."""
    log_path = tmp_path / "serve.log"
    proc = spawn(["serve", "--bind", f"tcp://127.0.0.1:{free_port()}"], stderr=open(log_path, "w"))
    try:
        assert wait_until(lambda: "listening" in log_path.read_text() or proc.poll() is not None, 120)
    finally:
        stop_proc(proc)
    lines = log_path.read_text().splitlines()
    warning = [i for i, line in enumerate(lines) if " WARNING weights_missing " in line]
    listening = [i for i, line in enumerate(lines) if " INFO listening " in line]
    assert warning and listening and warning[0] < listening[0], lines
    assert "flow method only" in lines[warning[0]] and NO_WEIGHTS in lines[warning[0]]


def test_missing_curve_key_files_are_named(tmp_path, free_port):
    """A worker whose keys folder lacks its key pair said 'Invalid certificate file' in a traceback,
    after loading the engine; a server's missing keys folder is named too."""
    empty = tmp_path / "keys"
    empty.mkdir()
    err = _refused(
        [
            "serve",
            "--worker",
            "--broker",
            f"tcp://127.0.0.1:{free_port()}",
            "--curve-keys",
            str(empty),
            "--curve-client-name",
            "gpu1",
        ],
        "no key pair named 'gpu1'",
        "--worker gpu1",
    )
    assert "Invalid certificate file" not in err
    _refused(
        ["serve", "--bind", f"tcp://127.0.0.1:{free_port()}", "--curve-keys", str(tmp_path / "nope")],
        str(tmp_path / "nope"),
        "colorprop keys",
    )


def test_idle_metrics_connections_are_closed(monkeypatch):
    """A connection that sends nothing held a thread of the metrics server for good."""
    import logging
    import urllib.request

    from colorprop_server import metrics

    monkeypatch.setattr(metrics, "READ_TIMEOUT_S", 0.5, raising=False)
    m = metrics.BrokerMetrics(lambda: {"colorprop_broker_workers": ("workers", 0)})
    port = m.serve("127.0.0.1", 0, logging.getLogger("test"))
    try:
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(5)]
        for s in idle:
            s.settimeout(60)
            assert s.recv(1) == b"", "the server answered a request nobody sent"  # closed, not held
            s.close()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as page:
            assert b"colorprop_broker_workers 0.0" in page.read()
    finally:
        m.close()


# ---------------------------------------------------------------- fuzz

_VALUES = [
    0,
    -1,
    1,
    2,
    7,
    65535,
    65536,
    2**62,
    -(2**62),
    0.0,
    0.01,
    0.5,
    1.5,
    1e308,
    -1e308,
    math.nan,
    math.inf,
    -math.inf,
    True,
    False,
    "",
    "x",
    "8",
    "nan",
    "tcp://127.0.0.1:0",
    "tcp://*:5557",
    "tcp://256.1.1.1:5",
    "ipc:///tmp/x",
    "tcp://127.0.0.1",
    "..",
    ".",
    "cuda:1",
    "cpu",
    "\u00e9\u0000",
    [],
    ["/tmp"],
    ["", "/"],
    [1],
    {"a": 1},
]


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value) if isinstance(value, str) else repr(value)


def _outcome(argv: list[str]):
    """What the command's start makes of ``argv``: a checked ServerConfig, or the refusal's exit code and
    message. Anything else (a traceback) fails the test."""
    from colorprop.cli.main import build_parser
    from colorprop.errors import ColorpropError
    from colorprop_server.cli import _settings, _start

    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:  # argparse: its usage line and exit 2
        return stop.code, "argparse"
    try:
        _start(args)
    except ColorpropError as err:
        return err.exit_code, str(err)
    try:
        return _settings(args)
    except ColorpropError as err:
        assert str(err).strip() and "\n" not in str(err), repr(str(err))
        return err.exit_code, str(err)


def test_fuzzed_settings_never_give_a_traceback(tmp_path, free_port, capsys):
    """Random config files and flags (types, ranges, NaN, huge numbers, odd strings) through the commands'
    own start: each is refused with exit 2 (5: weights) and one line, or gives settings within range."""
    from colorprop_server.cli import _config_schema
    from colorprop.cli.main import build_parser

    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    rng = random.Random(2027)
    outcomes = {"refused": 0, "started": 0}
    for i in range(300):
        command = rng.choice(["serve", "broker"])
        schema = _config_schema(subparsers.choices[command])
        keys = rng.sample(sorted(schema), rng.randint(1, 4))
        values = {k: rng.choice(_VALUES) for k in keys}
        # Keep every process off the default ports, so a server the test machine runs does not matter.
        ports = {"bind": f"tcp://127.0.0.1:{free_port()}", "backend": f"tcp://127.0.0.1:{free_port()}"}
        lines = [f"{k} = {_toml(v)}" for k, v in values.items()]
        lines += [f'{k} = "{v}"' for k, v in ports.items() if k not in values and k in schema]
        if command == "serve" and "weights" not in values:
            lines.append(f'weights = "{tmp_path / "no-weights"}"')  # exit 5 if it were read; not the point
        cfg = tmp_path / f"fuzz{i}.toml"
        cfg.write_text("\n".join(lines) + "\n")
        flags = []
        if rng.random() < 0.3:
            flag = rng.choice(["--heartbeat", "--max-jobs", "--session-timeout", "--metrics-port", "--max-message-mb"])
            flags = [flag, str(rng.choice(_VALUES))]
        got = _outcome([command, "--config", str(cfg), *flags])
        if isinstance(got, tuple):
            code, message = got
            assert code in (2, 5), (lines, flags, got)
            outcomes["refused"] += 1
        else:
            from colorprop_server.config import check_settings

            assert check_settings(got) is got and math.isfinite(got.heartbeat_s) and got.heartbeat_s > 0
            outcomes["started"] += 1
    capsys.readouterr()
    assert outcomes["refused"] > 100 and outcomes["started"] > 0, outcomes


@pytest.mark.parametrize("address", ["foo", "tcp://render-01", "tcp://127.0.0.1:70000"])
def test_status_of_a_malformed_address_exits_2_naming_it(address):
    """`colorprop status foo` was a ZMQError traceback."""
    _refused(["status", address], "ADDRESS", repr(address))
