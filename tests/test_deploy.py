"""The shipped deployment files agree with each other and with the commands: each systemd unit in
plugin/deploy/ runs the command line its example config (docs/*.example.toml) names, that config loads
through the command's own options and settings checks, the folders the unit lets it write are the
config's allowed roots, and `systemd-analyze verify` has nothing to say about the unit."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from serverkit import REPO

DEPLOY = REPO / "plugin" / "deploy"
PAIRS = [
    ("colorprop-serve.service", "server.example.toml", "server"),
    ("colorprop-broker.service", "broker.example.toml", "broker"),
    ("colorprop-worker@.service", "worker.example.toml", "worker"),
]
INSTANCE = "0"  # the template unit's %i in these checks


def _unit(name: str) -> dict[str, list[str]]:
    """key -> values of a unit file (a key may repeat), with the template's %i filled in."""
    values: dict[str, list[str]] = {}
    for line in (DEPLOY / name).read_text().splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            values.setdefault(key.strip(), []).append(value.strip().replace("%i", INSTANCE))
    return values


@pytest.mark.parametrize("unit_name, example_name, role", PAIRS, ids=[p[2] for p in PAIRS])
def test_unit_and_example_config_agree(unit_name, example_name, role):
    from colorprop.cli.main import build_parser
    from colorprop_server.cli import _start, command_config
    from colorprop_server.config import check_settings

    unit = _unit(unit_name)
    example = REPO / "docs" / example_name
    argv = shlex.split(unit["ExecStart"][0])
    assert argv[0].endswith("/colorprop")
    header = example.read_text().splitlines()[0]
    assert shlex.split(header.lstrip("# ").replace("gpu0", f"gpu{INSTANCE}")) == ["colorprop", *argv[1:]], (
        "the example's first line is the unit's command"
    )
    args = build_parser().parse_args(argv[1:])
    assert args.config.startswith("/etc/colorprop/")
    args.config = str(example)  # what the unit reads, once installed
    _start(args)
    got_role, config = command_config(args)
    assert got_role == role
    check_settings(config)
    # The unit lets the process write exactly where the config lets shared-path jobs write.
    writable = " ".join(unit.get("ReadWritePaths", [])).split()
    assert sorted(writable) == sorted(config.allowed_roots)
    assert config.allowed_roots or role == "broker"
    # A bad config (exit 2) or weights (exit 5) is not retried in a loop.
    assert set(unit["RestartPreventExitStatus"][0].split()) == ({"2"} if role == "broker" else {"2", "5"})
    if role == "worker":
        assert config.curve_client_name == f"gpu{INSTANCE}" and config.broker
        assert f"CUDA_VISIBLE_DEVICES={INSTANCE}" in unit["Environment"][0].split()


def test_the_broker_refuses_a_server_config_and_names_its_own_example(capsys):
    """The broker rejected the server's TOML keys without saying what it takes instead."""
    from colorprop.cli.main import main

    assert main(["broker", "--config", str(REPO / "docs" / "server.example.toml")]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'allow_root'" in err and "docs/broker.example.toml" in err


@pytest.mark.parametrize("unit_name", [p[0] for p in PAIRS])
def test_units_pass_systemd_analyze_verify(tmp_path, unit_name):
    """`systemd-analyze verify` on each unit (the template as instance 0), its ExecStart pointed at this
    checkout's `colorprop`: nothing to say (it exits 0 even for a bad value, so its output must be empty)."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed here (the units' command lines were checked)")
    colorprop = Path(sys.executable).with_name("colorprop")
    assert colorprop.exists(), colorprop
    text = (DEPLOY / unit_name).read_text()
    argv0 = shlex.split(_unit(unit_name)["ExecStart"][0])[0]
    unit = tmp_path / unit_name.replace("@.", f"@{INSTANCE}.")
    unit.write_text(text.replace(argv0, str(colorprop)))
    out = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and not (out.stdout + out.stderr).strip(), out.stdout + out.stderr
