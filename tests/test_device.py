"""GPU readiness without a GPU: `--device cuda` (serve, colorize, bench) on a machine or torch build without it
is one line and exit 2 before anything is read, written or listened on; the CUDA install path (`make
venv-cuda`) pins the CPU line's torch from the CUDA wheel index, then installs the project; the prepared GPU
bench script refuses a machine without a GPU with one clear line. Real `colorprop` processes."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from colorprop.engine.devices import check_device
from colorprop.errors import InputError

from serverkit import NO_WEIGHTS, REPO
from test_preflight import good_shot

COLORPROP = str(Path(sys.executable).parent / "colorprop")
needs_cpu_torch = pytest.mark.skipif(
    torch.backends.cuda.is_built(), reason="this torch has CUDA: the refusal of a CPU-only build cannot be seen here"
)


def _colorprop(args: list[str], env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """The command to its end; still running after ``timeout`` (a server listening) fails the test."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    try:
        return subprocess.run([COLORPROP, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"`colorprop {' '.join(args)}` was still running after {timeout} s instead of refusing --device")


def _refused(out: subprocess.CompletedProcess, value: str) -> None:
    assert out.returncode == 2, out.stderr[-3000:]
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    assert f"--device {value}: this torch ({torch.__version__}) was built without CUDA" in out.stderr, out.stderr
    assert "docs/SERVER.md, 'A GPU server'" in out.stderr


@pytest.mark.slow  # a CLI process each (torch imported afresh)
@needs_cpu_torch
@pytest.mark.parametrize("value", ["cuda", "cuda:1"])
def test_serve_on_a_cpu_torch_refuses_cuda_before_it_listens(free_port, value):
    """Was: the weights loaded, then 'AssertionError: Torch not compiled with CUDA enabled', exit 1."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    out = _colorprop(["serve", "--bind", address, "--device", value])
    _refused(out, value)
    assert '"listening"' not in out.stderr and "listening" not in out.stdout
    with socket.socket() as s:  # the port it was given is still free: nothing bound it
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))


@pytest.mark.slow  # a CLI process each (torch imported afresh)
@needs_cpu_torch
@pytest.mark.parametrize("weights", ["shipped", "none"])
def test_colorize_on_a_cpu_torch_refuses_cuda_and_writes_nothing(tmp_path, weights):
    """Was: a traceback (exit 1) with the shipped weights; exit 0 on the CPU without weights (flow only),
    the --device silently ignored."""
    s = good_shot(tmp_path / "shot")
    env = {"COLORPROP_WEIGHTS": NO_WEIGHTS} if weights == "none" else {}
    out = _colorprop(
        [
            "colorize",
            "-i",
            s.input,
            "--key",
            f"1={s.keys[1]}",
            "--method",
            "flow",
            "--progress",
            "none",
            "-o",
            str(tmp_path / "out" / "o.####.exr"),
            "--device",
            "cuda",
        ],
        env,
    )
    _refused(out, "cuda")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # a CLI process each (torch imported afresh)
@needs_cpu_torch
def test_bench_on_a_cpu_torch_refuses_cuda_and_writes_no_json(tmp_path):
    out = _colorprop(
        ["bench", "--sizes", "64x48", "--repeats", "1", "--device", "cuda", "--json", str(tmp_path / "b.json")]
    )
    _refused(out, "cuda")
    assert not (tmp_path / "b.json").exists()


def test_a_device_name_that_is_none_of_the_forms_is_refused_naming_the_option():
    for value in ("gpu", "cuda:", "cuda:x", "CUDA", "", None):
        with pytest.raises(InputError, match=r"--device .*: must be auto, cpu, cuda, cuda:N or mps"):
            check_device(value)
    for value in ("auto", "cpu"):
        assert check_device(value) == value


def test_the_cuda_messages_say_what_is_missing(monkeypatch):
    """The branches a CPU-only torch cannot reach: a CUDA build that sees no device, an index past the last."""
    monkeypatch.setattr(torch.backends.cuda, "is_built", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(
        InputError, match=re.escape("--device cuda: no CUDA device is visible (torch.cuda.device_count() == 0)")
    ):
        check_device("cuda")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(InputError, match=re.escape("--device cuda:3: only 1 CUDA device (cuda:0)")):
        check_device("cuda:3")
    assert check_device("cuda:0") == "cuda:0"


def _make_dry_run(*args: str) -> list[str]:
    # Under `make test` the outer make's variables would make this one print "Entering/Leaving directory".
    env = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
    out = subprocess.run(
        ["make", "--no-print-directory", "-n", *args], cwd=REPO, capture_output=True, text=True, timeout=60, env=env
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def _torch_pins(lines: list[str]) -> list[str]:
    return [pin for line in lines if " pip install " in line for pin in re.findall(r"\btorch==\S+", line)]


def test_make_venv_cuda_installs_the_cpu_lines_torch_from_the_cuda_index_then_the_project():
    """Dry run only (no CUDA wheel is downloaded): the pip lines `make venv-cuda` would run."""
    cpu_pins = _torch_pins(_make_dry_run("-B", "venv"))
    lines = _make_dry_run("venv-cuda", "CUDA=cu128")
    torch_lines = [i for i, line in enumerate(lines) if " pip install " in line and "torch==" in line]
    project = [i for i, line in enumerate(lines) if " pip install " in line and "-e '.[test]'" in line]
    uninstall = [i for i, line in enumerate(lines) if " pip uninstall " in line and line.split()[-1] == "torch"]
    assert len(cpu_pins) == 1 and _torch_pins(lines) == cpu_pins, (cpu_pins, lines)
    assert len(torch_lines) == 1 and len(project) == 1 and len(uninstall) == 1, lines
    assert "--index-url https://download.pytorch.org/whl/cu128 " in lines[torch_lines[0]], lines
    assert uninstall[0] < torch_lines[0] < project[0], lines  # a CPU torch of that version would count as installed
    assert lines[-1].endswith("touch .venv/.installed")  # `make test` then reuses this venv as it is


@pytest.mark.slow  # a CLI process (torch imported afresh)
@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here: the script would measure it")
def test_the_gpu_bench_script_refuses_a_machine_without_a_gpu_in_one_line(tmp_path):
    script = REPO / "tools" / "gpu_bench.sh"
    out = subprocess.run(
        ["bash", str(script)],
        cwd=tmp_path,
        env=dict(os.environ, OUT=str(tmp_path / "gpu"), PYTHON=sys.executable),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("gpu_bench: no GPU rows can be measured here: --device cuda: "), lines
    assert "make venv-cuda" in lines[0] or "no CUDA device is visible" in lines[0], lines
    assert not (tmp_path / "gpu").exists()
