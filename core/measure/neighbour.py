"""A CPU-bound neighbour for ``colorprop bench --busy-neighbour``: another process busy on one core, as on
a render node or a shared server that is rarely idle.

The neighbour is a plain numpy loop (element-wise, one thread: no BLAS) in a child interpreter pinned to one
CPU. It says when it is running (so no measurement starts before it), stops itself after ``seconds`` (a
bench that dies never leaves it behind for long), and is stopped when the ``with`` block ends.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

# Pinned before numpy loads; one thread for every BLAS numpy might bring, so it stays on its one core.
BUSY_LOOP = """
import os, sys, time
os.sched_setaffinity(0, {int(sys.argv[1])})
import numpy as np
a = np.random.default_rng(0).random(1 << 16)
end = time.monotonic() + float(sys.argv[2])
print("busy", flush=True)
while time.monotonic() < end:
    a = np.sqrt(a * a + 1.0) - 0.5
"""
ONE_THREAD = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}


def neighbour_cpu() -> int:
    """The CPU the neighbour takes: the last one this process may run on."""
    return max(os.sched_getaffinity(0))


def _cpu_seconds(pid: int) -> float:
    """user+system CPU seconds of a running process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class BusyNeighbour:
    """``with BusyNeighbour(seconds=600) as n:`` a process busy on ``n.cpu`` for the block; afterwards
    ``n.cpu_share`` is the CPU it really got (CPU seconds / wall seconds: about 1.0 when it ran all along)."""

    def __init__(self, seconds: float, cpu: int | None = None):
        self.seconds, self.cpu = seconds, neighbour_cpu() if cpu is None else cpu
        self.proc: subprocess.Popen | None = None
        self.cpu_share: float | None = None

    def __enter__(self) -> "BusyNeighbour":
        env = {**os.environ, **ONE_THREAD}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", BUSY_LOOP, str(self.cpu), str(self.seconds)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        started = self.proc.stdout.readline()  # blocks until the loop runs, or EOF when the child failed
        if started.strip() != "busy":
            self.proc.wait()
            raise RuntimeError(f"the busy neighbour on CPU {self.cpu} did not start (exit {self.proc.returncode})")
        self._start = time.monotonic()
        return self

    def __exit__(self, *exc) -> None:
        try:
            wall = time.monotonic() - self._start
            self.cpu_share = _cpu_seconds(self.proc.pid) / wall if self.proc.poll() is None and wall > 0 else None
        except OSError:
            self.cpu_share = None
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()
