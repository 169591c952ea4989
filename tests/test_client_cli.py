"""`colorprop colorize --server`, `colorprop keys`: same EXRs as the embedded engine, both data modes."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest

from colorprop_client import protocol as P
from colorprop_client.client import Client

from serverkit import ThreadServer, connect_times, make_shot

pytestmark = pytest.mark.usefixtures("watchdog")


def _plates(folder, n=6, seed=51, h=48, w=64):
    from colorprop.io.exr import write_exr

    frames, keys = make_shot(n, h=h, w=w, seed=seed)
    folder.mkdir(parents=True, exist_ok=True)
    for f, px in frames.items():
        alpha = np.full(px.shape[:2] + (1,), 0.25 * (f % 4), np.float32)
        write_exr(
            folder / f"plate.{f:04d}.exr", np.concatenate([px, alpha], -1), ("R", "G", "B", "A"), pixel_type="half"
        )
    write_exr(folder / "key.exr", keys[1], ("R", "G", "B"), pixel_type="float")
    return str(folder / "plate.####.exr"), str(folder / "key.exr"), list(frames)


def _colorize(plate, key, out, *extra):
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


def _same_exrs(a_pattern, b_pattern, frames):
    from colorprop.io.exr import read_exr

    for f in frames:
        a, b = read_exr(a_pattern.replace("####", f"{f:04d}")), read_exr(b_pattern.replace("####", f"{f:04d}"))
        assert a.channels == b.channels == ("R", "G", "B", "A")
        np.testing.assert_array_equal(a.pixels, b.pixels, err_msg=f"frame {f}")


@pytest.mark.parametrize("shared_paths", [False, True], ids=["in-band", "shared-paths"])
def test_colorize_with_server_writes_what_the_embedded_cli_writes(engine, tmp_path, shared_paths):
    plate, key, frames = _plates(tmp_path / "shot")
    roots = (str(tmp_path),) if shared_paths else ()
    srv = ThreadServer(engine, allowed_roots=roots)
    try:
        assert _colorize(plate, key, str(tmp_path / "embedded" / "c.####.exr")) == 0
        assert _colorize(plate, key, str(tmp_path / "remote" / "c.####.exr"), "--server", srv.address) == 0
        with Client(srv.address) as c:
            assert (P.MODE_PATHS in c.hello()["modes"]) == shared_paths
    finally:
        srv.stop()
    _same_exrs(str(tmp_path / "embedded" / "c.####.exr"), str(tmp_path / "remote" / "c.####.exr"), frames)


def test_colorize_with_server_outside_roots_falls_back_to_in_band(engine, tmp_path):
    plate, key, frames = _plates(tmp_path / "shot")
    srv = ThreadServer(engine, allowed_roots=(str(tmp_path / "elsewhere"),))
    try:
        assert _colorize(plate, key, str(tmp_path / "remote" / "c.####.exr"), "--server", srv.address) == 0
    finally:
        srv.stop()
    assert _colorize(plate, key, str(tmp_path / "embedded" / "c.####.exr")) == 0
    _same_exrs(str(tmp_path / "embedded" / "c.####.exr"), str(tmp_path / "remote" / "c.####.exr"), frames)


def test_colorize_without_server_exits_6_quickly(tmp_path, free_port, monkeypatch):
    plate, key, _ = _plates(tmp_path / "shot", n=2)
    connects = connect_times(monkeypatch)  # timed from the first connect: the command's start-up is not the wait
    rc = _colorize(
        plate, key, str(tmp_path / "o.####.exr"), "--server", f"tcp://127.0.0.1:{free_port()}", "--timeout", "0.5"
    )
    assert rc == 6 and connects and time.monotonic() - connects[0] < 5.0


@pytest.mark.slow
def test_colorize_without_server_exits_6_within_5_s_by_default(tmp_path, free_port, monkeypatch):
    plate, key, _ = _plates(tmp_path / "shot", n=2)
    connects = connect_times(monkeypatch)
    rc = _colorize(plate, key, str(tmp_path / "o.####.exr"), "--server", f"tcp://127.0.0.1:{free_port()}")
    assert rc == 6 and connects and time.monotonic() - connects[0] <= 5.0


@pytest.mark.slow
def test_server_stopped_with_sigterm_mid_job_exits_6_not_1(tmp_path, free_port, capsys, monkeypatch):
    """SIGTERM to a real `colorprop serve` as the client reports its first frame written (from the CLI's progress
    call, so at a known frame however the processes are scheduled): the job ends with `shutdown`, and the client's
    resend is refused by the stopping server, which still drains another artist's job (one that has not fetched why
    it ended). That is a server unavailable (exit 6, a farm retries later), not a failed job (exit 1, "[shutdown]")."""
    import signal

    from colorprop.cli.common import Progress
    from serverkit import spawn, stop_proc, wait_hello, written_frames

    plate, key, frames = _plates(tmp_path / "shot", n=60, h=96, w=128)
    out = str(tmp_path / "o" / "c.####.exr")
    addr = f"tcp://127.0.0.1:{free_port()}"
    proc = spawn(["serve", "--bind", addr, "--log-level", "WARNING"])
    report_progress, signalled_at = Progress.__call__, []

    def terminate_at_first_frame(self, event) -> None:
        report_progress(self, event)
        if not signalled_at:
            signalled_at.append(event.done)
            proc.send_signal(signal.SIGTERM)

    monkeypatch.setattr(Progress, "__call__", terminate_at_first_frame)
    other = None
    try:
        wait_hello(addr, proc)
        other = Client(addr)  # another artist's open shot: the stopping server waits for it to hear why it ended
        other_frames, other_keys = make_shot(4, seed=52)
        other.open_shot(other_keys, {"method": "flow"}, list(other_frames))
        rc = _colorize(plate, key, out, "--server", addr)
        server_rc = proc.wait(60)
    finally:
        stop_proc(proc, signal.SIGKILL)
        if other is not None:
            other.close()
    err = capsys.readouterr().err
    assert signalled_at == [1] and 1 <= len(written_frames(out)) < len(frames)
    assert rc == 6 and "shutting down" in err, err
    assert server_rc == 0


def test_keys_command_writes_server_client_and_worker_keys(tmp_path, capsys):
    from colorprop.cli.main import main

    assert main(["keys", str(tmp_path / "k"), "--client", "alice", "--client", "farm", "--worker", "gpu1"]) == 0
    names = sorted(p.name for p in (tmp_path / "k").iterdir())
    assert names == ["clients", "server", "workers"]  # the whole layout: tests/test_curve_keys.py
    assert sorted(p.name for p in (tmp_path / "k" / "clients").iterdir()) == ["alice", "farm"]
    assert sorted(p.name for p in (tmp_path / "k" / "workers").iterdir()) == ["gpu1"]
    assert sorted(p.name for p in (tmp_path / "k" / "server" / "authorized_clients").iterdir()) == [
        "alice.key",
        "farm.key",
    ]
    assert sorted(p.name for p in (tmp_path / "k" / "server" / "authorized_workers").iterdir()) == ["gpu1.key"]
    capsys.readouterr()
    # A name is a client or a worker, never both; a name is never a path.
    assert main(["keys", str(tmp_path / "k"), "--worker", "alice"]) == 2
    assert "alice" in capsys.readouterr().err
    assert main(["keys", str(tmp_path / "k"), "--client", "../evil"]) == 2
    assert not (tmp_path / "evil.key").exists()
    assert sorted(p.name for p in (tmp_path / "k" / "server" / "authorized_workers").iterdir()) == ["gpu1.key"]


def test_help_lists_the_server_commands_that_colorprop_server_registers(capsys):
    """core's parser gets serve/broker/keys from the ``colorprop.cli`` entry point, not by importing the server."""
    from importlib.metadata import entry_points

    from colorprop.cli.main import main

    assert [ep.value for ep in entry_points(group="colorprop.cli")] == ["colorprop_server.cli:add_cli"]
    assert main(["--help"]) == 0
    listed = capsys.readouterr().out
    for command in ("colorize", "example", "suggest-keys", "serve", "broker", "keys"):
        assert re.search(rf"^    {command}\s", listed, re.M), command


@pytest.mark.parametrize("shared_paths", [False, True], ids=["in-band", "shared-paths"])
def test_a_server_that_stays_busy_exits_6(engine, tmp_path, monkeypatch, shared_paths):
    """No free job slot for longer than the client retries: exit 6 (server unavailable), nothing written."""
    import colorprop_server.remote as remote

    monkeypatch.setattr(remote, "BUSY_WAIT_S", 1.0)
    plate, key, _ = _plates(tmp_path / "shot", n=2)
    srv = ThreadServer(engine, max_jobs=0, allowed_roots=(str(tmp_path),) if shared_paths else ())
    connects = connect_times(monkeypatch)
    try:
        assert _colorize(plate, key, str(tmp_path / "o" / "c.####.exr"), "--server", srv.address) == 6
        assert connects and time.monotonic() - connects[0] < 10
    finally:
        srv.stop()
    assert not list((tmp_path / "o").glob("*.exr"))


@pytest.mark.parametrize("address", ["foo", "tcp://host", "tcp://127.0.0.1:70000", "http://127.0.0.1:5557"])
def test_colorize_with_a_server_that_is_no_address_exits_2_naming_it(tmp_path, capsys, address):
    plate, key, _ = _plates(tmp_path / "in")
    assert _colorize(plate, key, str(tmp_path / "out" / "o.####.exr"), "--server", address) == 2
    err = capsys.readouterr().err
    assert f"--server {address!r}: not a server address" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_one_address_rule_for_the_server_settings_the_cli_and_the_dcc():
    from colorprop_client import dcc_text

    good = [
        "tcp://127.0.0.1:5557",
        "tcp://[::1]:5557",
        "tcp://*:5557",
        "tcp://render-07:1",
        "ipc:///tmp/cp",
        "inproc://x",
    ]
    bad = ["foo", "tcp://host", "tcp://h:0", "tcp://h:65536", "udp://h:1", "", None, 5557]
    assert [P.is_address(a) for a in good] == [True] * len(good)
    assert [P.is_address(a) for a in bad] == [False] * len(bad)
    for a in bad[:-2]:
        with pytest.raises(dcc_text.ColorizeError, match="should look like"):
            dcc_text.check_address(a)
