"""The thread policy (engine/threads.py): the CPUs a process may use, from synthetic cgroup files; the order
of --threads, $COLORPROP_THREADS and the usable CPUs; and, in fresh interpreters (so this process's own
torch does not matter), that torch, OpenCV, OpenImageIO and the row-band pool get the decided count and that
OpenMP loads with passive waiting."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from colorprop.engine import threads
from colorprop.errors import InputError


def cgroup_files(root, files: dict[str, str]):
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text + "\n")


def test_cgroup_v2_quota(tmp_path):
    proc = tmp_path / "proc-cgroup"
    proc.write_text("0::/job\n")
    cgroup_files(tmp_path / "fs", {"job/cpu.max": "150000 100000", "cpu.max": "max 100000"})
    assert threads.cgroup_cpu_quota(tmp_path / "fs", proc) == 1.5
    assert threads.usable_cpus(tmp_path / "fs", proc) == 1  # rounded down: 2 threads on 1.5 CPUs are throttled
    (tmp_path / "fs/job/cpu.max").write_text("max 100000\n")
    assert threads.cgroup_cpu_quota(tmp_path / "fs", proc) is None
    assert threads.usable_cpus(tmp_path / "fs", proc) == len(os.sched_getaffinity(0))


def test_cgroup_v1_quota_tightest_on_the_way_up(tmp_path):
    proc = tmp_path / "proc-cgroup"
    proc.write_text("4:memory:/farm/job\n3:cpu,cpuacct:/farm/job\n0::/\n")
    cgroup_files(
        tmp_path / "fs",
        {
            "cpu,cpuacct/farm/job/cpu.cfs_quota_us": "-1",
            "cpu,cpuacct/farm/job/cpu.cfs_period_us": "100000",
            "cpu,cpuacct/farm/cpu.cfs_quota_us": "300000",
            "cpu,cpuacct/farm/cpu.cfs_period_us": "100000",
            "cpu,cpuacct/cpu.cfs_quota_us": "-1",
            "cpu,cpuacct/cpu.cfs_period_us": "100000",
            "memory/farm/job/cpu.cfs_quota_us": "50000",
            "memory/farm/job/cpu.cfs_period_us": "100000",
        },
    )  # not cpu's
    assert threads.cgroup_cpu_quota(tmp_path / "fs", proc) == 3.0


def test_cgroup_in_a_container_reads_the_namespace_root(tmp_path):
    # without a cgroup namespace the path is the host's, which does not exist under the container's mount
    proc = tmp_path / "proc-cgroup"
    proc.write_text("2:cpu:/docker/0123abcd\n")
    cgroup_files(tmp_path / "fs", {"cpu/cpu.cfs_quota_us": "100000", "cpu/cpu.cfs_period_us": "100000"})
    assert threads.cgroup_cpu_quota(tmp_path / "fs", proc) == 1.0
    assert threads.usable_cpus(tmp_path / "fs", proc) == 1


def test_no_cgroup_files_no_quota(tmp_path):
    assert threads.cgroup_cpu_quota(tmp_path / "nothing", tmp_path / "no-proc-cgroup") is None
    (tmp_path / "garbled").write_text("0::/\n")
    cgroup_files(tmp_path, {"cpu.max": "lots 100000"})
    assert threads.cgroup_cpu_quota(tmp_path, tmp_path / "garbled") is None


def test_override_order():
    env = {threads.THREADS_ENV: "5"}
    two = lambda: 2  # noqa: E731 the usable CPUs of a 2-core machine
    assert threads.decide_threads(3, environ=env, cpus=two) == threads.ThreadChoice(3, "--threads")
    assert threads.decide_threads(None, environ=env, cpus=two) == threads.ThreadChoice(5, "$COLORPROP_THREADS")
    assert threads.decide_threads(None, environ={threads.THREADS_ENV: " "}, cpus=two).count == 2
    assert threads.decide_threads(None, environ={}, cpus=two) == threads.ThreadChoice(2, "usable CPUs")
    assert threads.decide_threads(4, "threads (server config)", environ={}).source == "threads (server config)"


def test_bad_counts_name_where_they_came_from():
    with pytest.raises(InputError, match=r"\$COLORPROP_THREADS: 'two'"):
        threads.decide_threads(None, environ={threads.THREADS_ENV: "two"})
    with pytest.raises(InputError, match="--threads: 0; at least 1"):
        threads.decide_threads(0, environ={})
    with pytest.raises(InputError, match="threads .server config.: -2"):
        threads.decide_threads(-2, "threads (server config)", environ={})


# What a fresh `colorprop` process ends up with, reported by a stand-in for the example command.
PROBE = """
import json, os, sys
from colorprop.cli import example
assert "torch" not in sys.modules and "cv2" not in sys.modules  # both read their pools' settings as they load

def report(output, method):
    import cv2, OpenImageIO as oiio, torch
    from colorprop.colour import convert
    print("PROBE " + json.dumps({"torch": torch.get_num_threads(), "interop": torch.get_num_interop_threads(),
          "cv2": cv2.getNumThreads(), "oiio": oiio.get_int_attribute("threads"),
          "exr": oiio.get_int_attribute("exr_threads"),
          "bands": convert._band_pool()._max_workers, "wait": os.environ.get("OMP_WAIT_POLICY"),
          "cv2_wait": os.environ.get("OPENCV_THREAD_POOL_ACTIVE_WAIT_WORKER")}))

example.run_example = report
from colorprop.cli.main import main
sys.exit(main(["example"] + sys.argv[1:]))
"""


def probe(args: list[str], **env: str) -> tuple[dict, str]:
    environ = {
        k: v
        for k, v in os.environ.items()
        if k not in ("OMP_WAIT_POLICY", "KMP_BLOCKTIME", "OMP_NUM_THREADS", threads.THREADS_ENV, *threads.QUIET_OPENCV)
    }
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**environ, "OMP_DISPLAY_ENV": "verbose", **env},
    )  # libgomp prints what it read
    assert proc.returncode == 0, proc.stderr
    line = next(l for l in proc.stdout.splitlines() if l.startswith("PROBE "))
    return json.loads(line[len("PROBE ") :]), proc.stderr


def test_cli_gives_every_library_the_decided_count_and_quiet_openmp():
    got, stderr = probe(["--threads", "3"], COLORPROP_THREADS="5")
    expected = {"torch": 3, "interop": 3, "cv2": 3, "oiio": 3, "exr": 3, "bands": 3, "wait": "PASSIVE"}
    assert got == {**expected, "cv2_wait": "0"}  # OpenCV's idle workers sleep at once too
    # what OpenMP itself read when torch loaded it: idle workers never spin (unset, they spin 300000 times)
    assert "GOMP_SPINCOUNT = '0'" in stderr


def test_cli_takes_the_environment_then_the_usable_cpus():
    got, _ = probe([], COLORPROP_THREADS="1")
    assert {got[k] for k in ("torch", "interop", "cv2", "oiio", "exr", "bands")} == {1}
    got, stderr = probe([], OMP_WAIT_POLICY="ACTIVE")
    assert {got[k] for k in ("torch", "interop", "cv2", "oiio", "exr", "bands")} == {threads.usable_cpus()}
    assert got["wait"] == "ACTIVE" and "OMP_WAIT_POLICY = 'ACTIVE'" in stderr  # a value already set is kept
    got, _ = probe([], OPENCV_THREAD_POOL_ACTIVE_WAIT_WORKER="2000")
    assert got["cv2_wait"] == "2000" and got["wait"] == "PASSIVE"
    assert "GOMP_SPINCOUNT = '0'" not in stderr


def test_a_bad_thread_count_is_a_usage_error(capsys):
    from colorprop.cli.main import main

    assert main(["example", "--threads", "0"]) == 2
    assert "--threads: 0; at least 1" in capsys.readouterr().err


# `serve` decides after reading its config file: the file's `threads`, unless --threads is given.
SERVE_PROBE = """
import json, sys
import colorprop_server.cli as cli

def report(args):
    import cv2, torch
    print("PROBE " + json.dumps({"torch": torch.get_num_threads(), "cv2": cv2.getNumThreads()}))
    raise SystemExit(0)

cli._settings = report  # stop where the server would load the engine and listen
from colorprop_server.__main__ import main
sys.exit(main(["serve"] + sys.argv[1:]))
"""


def test_serve_takes_threads_from_its_config_file_and_the_command_line_wins(tmp_path):
    config = tmp_path / "server.toml"
    config.write_text("threads = 3\n")
    for args, expected in ((["--config", str(config)], 3), (["--config", str(config), "--threads", "1"], 1)):
        proc = subprocess.run(
            [sys.executable, "-c", SERVE_PROBE, *args],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, threads.THREADS_ENV: "2"},
        )
        assert proc.returncode == 0, proc.stderr
        line = next(l for l in proc.stdout.splitlines() if l.startswith("PROBE "))
        assert json.loads(line[len("PROBE ") :]) == {"torch": expected, "cv2": expected}
    config.write_text("threads = 0\n")
    proc = subprocess.run(
        [sys.executable, "-c", SERVE_PROBE, "--config", str(config)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 2 and f"{config}: threads: 0; at least 1" in proc.stderr


# glibc: a block over malloc's mmap threshold is mapped on its own (mallinfo2's hblks counts them) and unmapped
# on free, so its pages are faulted in and zeroed again by the next frame's array of the same size.
MEMORY_PROBE = """
import ctypes, json, sys, threading
import numpy as np
from colorprop.engine.threads import apply_thread_policy

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
apply_thread_policy(1)
before = libc.mallinfo2().hblks  # blocks mapped on their own while modules loaded
frame = np.ones((2160, 3840, 3), np.float32)  # a 4K frame's colour, 95 MiB
mapped = libc.mallinfo2().hblks - before
del frame
kept = libc.mallinfo2().fordblks
helper = {}

def read_ahead():  # a helper thread's frame (a 4K RGBA plate read ahead, 127 MiB): from the same heap
    plate = np.ones((2160, 3840, 4), np.float32)
    helper["mapped"] = libc.mallinfo2().hblks - before

thread = threading.Thread(target=read_ahead)
thread.start()
thread.join()
print("PROBE " + json.dumps({"mapped_blocks": mapped, "kept_after_free": kept, "mapped_by_helper": helper["mapped"]}))
"""


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's malloc")
def test_the_policy_keeps_a_frames_memory_for_the_next_and_a_studios_malloc_settings_win():
    def run(**env: str) -> dict:
        environ = {k: v for k, v in os.environ.items() if k not in threads.MALLOC_ENVIRONMENT}
        proc = subprocess.run(
            [sys.executable, "-c", MEMORY_PROBE], capture_output=True, text=True, timeout=300, env={**environ, **env}
        )
        assert proc.returncode == 0, proc.stderr
        return json.loads(next(l for l in proc.stdout.splitlines() if l.startswith("PROBE "))[len("PROBE ") :])

    kept = run()
    assert kept["mapped_blocks"] == 0  # the frame came from the heap ...
    assert kept["kept_after_free"] >= 2160 * 3840 * 3 * 4  # ... and stays there, free, for the next frame
    assert kept["mapped_by_helper"] == 0  # a helper thread's too (an arena of its own would have mapped it)
    for studio in ({"MALLOC_MMAP_THRESHOLD_": str(1 << 20)}, {"MALLOC_ARENA_MAX": "8"}):
        assert run(**studio)["mapped_blocks"] >= 1  # the environment's setting is kept: the policy changed nothing
