"""How many threads colorprop computes with, decided in one place for torch, OpenCV, OpenImageIO and our
own row-band pool, from the CPUs this process may really use.

``os.cpu_count()`` is the machine's CPUs; a render node's job or a container usually gets fewer: its
affinity mask (``taskset``, a scheduler's cpuset) and its cgroup CPU quota (Docker ``--cpus``, Kubernetes
limits, systemd ``CPUQuota``). More compute threads than that only queue behind each other and behind the
throttle. The count is, first found: ``--threads N`` (or the server's ``threads`` setting), then
``$COLORPROP_THREADS``, then the usable CPUs.

OpenMP (torch's intra-op pool, libgomp or Intel's libiomp) by default keeps its idle workers spinning for a
while after each parallel region, to start the next one sooner. On an idle machine that costs nothing; beside
a busy neighbour, or between torch ops while our own threads (OpenCV, OpenImageIO, the row bands, reading
ahead and writing behind) have work, the spinning workers take the CPU those threads need, and a frame took
2-4x its idle time. ``OMP_WAIT_POLICY=PASSIVE`` (and ``KMP_BLOCKTIME=0`` for Intel's OpenMP) make idle
workers sleep at once. OpenMP reads them once, when its library loads, which is at the first ``import
torch``: so ``quiet_openmp`` must run before that (the CLI calls it first thing in ``main``, and
``apply_thread_policy`` calls it before importing torch). Values already set in the environment are kept.
OpenCV's own pool (resize, remap, DIS) does the same: after each job its workers spin and yield 2,000 times, and
the caller 10,000, before sleeping; with hundreds of jobs a 4K frame that spinning took the CPU that the writer
and the row bands needed (4K `full` end to end 1.15/1.20 -> 1.08/1.10 s a frame, CPU 2.03/2.13 -> 1.91/1.94 s).
``OPENCV_THREAD_POOL_ACTIVE_WAIT_*`` 0 make them sleep at once; OpenCV reads them when ``cv2`` loads, which is
after ``quiet_openmp`` on the same paths.

Freed memory is kept for the next frame (``keep_freed_memory``): glibc's malloc gives each block over its mmap
threshold (at most 32 MiB: one float32 plane of a 4K frame is 33 MiB) pages of its own and returns them on free,
and trims the heap's free top beyond 128 KiB; so every frame's arrays, and the row bands' temporaries, were
faulted in and zeroed by the kernel again, frame after frame: at 4K that was 30-60 % of the CPU time of
reading, colour in and upsampling. Blocks now come from the heap, and up to ``KEEP_FREED_BYTES`` of its free
top stay mapped. The price is the heap's holes: 4K `full` peaked at 2.8 GiB instead of 2.5 (ru_maxrss).
Every thread allocates from that one heap (``M_ARENA_MAX`` 1): a thread other than the first gets an arena of its
own, whose heaps hold at most 64 MiB, and glibc maps a larger block there with pages of its own whatever the mmap
settings say, and unmaps it on free. The helper threads' frames (reading ahead: a 4K RGBA plate is 127 MiB of
float32; writing behind: its 63 MiB of half floats, and OpenImageIO's buffers) were so zeroed again each frame: at
4K 49,000 page faults and 0.17 s of system time a frame, none with the one heap (peak RSS lower too).
"""

from __future__ import annotations

import ctypes
import math
import os
from dataclasses import dataclass
from pathlib import Path

from colorprop.errors import InputError

THREADS_ENV = "COLORPROP_THREADS"
QUIET_OPENMP = {"OMP_WAIT_POLICY": "PASSIVE", "KMP_BLOCKTIME": "0"}
QUIET_OPENCV = {
    f"OPENCV_THREAD_POOL_ACTIVE_WAIT_{name}": "0" for name in ("WORKER", "MAIN", "PAUSE_LIMIT")
}  # spins of its workers, of the caller, and how many of them pause rather than yield
# glibc's mallopt parameters (malloc.h); the environment's own malloc settings, which win when set.
M_TRIM_THRESHOLD, M_MMAP_MAX, M_ARENA_MAX = -1, -4, -8
MALLOC_ENVIRONMENT = (
    "MALLOC_MMAP_MAX_",
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_ARENA_MAX",
    "GLIBC_TUNABLES",
)
KEEP_FREED_BYTES = 1 << 30
CGROUP_ROOT = Path("/sys/fs/cgroup")


def quiet_openmp(environ=os.environ) -> None:
    """Idle OpenMP and OpenCV workers sleep instead of spinning (see the module doc); only where not set already."""
    for name, value in {**QUIET_OPENMP, **QUIET_OPENCV}.items():
        environ.setdefault(name, value)


def keep_freed_memory(environ=os.environ, libc: ctypes.CDLL | None = None) -> bool:
    """Large blocks from the heap, one heap for every thread, and a free heap top of up to ``KEEP_FREED_BYTES``
    kept (see the module doc). Call it before other threads allocate: a thread that already has an arena keeps
    it. False, changing nothing, where the C library has no glibc ``mallopt`` (macOS, musl) or the environment
    sets malloc's own knobs (``MALLOC_*``, ``GLIBC_TUNABLES``): a studio's choice is kept."""
    if any(environ.get(name) for name in MALLOC_ENVIRONMENT) or not os.uname().sysname == "Linux":
        return False
    try:
        mallopt = (libc or ctypes.CDLL(None)).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # musl's mallopt is a stub that returns 0; glibc returns 1 for each setting it took.
    return all(
        mallopt(param, value) == 1
        for param, value in ((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, KEEP_FREED_BYTES), (M_ARENA_MAX, 1))
    )


# ----------------------------------------------------------------------------- the CPUs we may use


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _quota_v2(folder: Path) -> float | None:
    """``cpu.max`` is ``QUOTA PERIOD`` or ``max PERIOD`` (no limit)."""
    fields = (_read(folder / "cpu.max") or "").split()
    if len(fields) != 2 or fields[0] == "max":
        return None
    try:
        quota, period = int(fields[0]), int(fields[1])
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _quota_v1(folder: Path) -> float | None:
    """``cpu.cfs_quota_us`` is -1 when there is no limit."""
    try:
        quota = int(_read(folder / "cpu.cfs_quota_us") or "-1")
        period = int(_read(folder / "cpu.cfs_period_us") or "0")
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _own_cgroups(proc_cgroup: Path) -> list[tuple[str, str]]:
    """(controller folder under the cgroup root, this process's path in it) from /proc/self/cgroup: ``0::/p``
    for v2 (the folder is the root itself), ``N:cpu,cpuacct:/p`` for v1."""
    found = []
    for line in (_read(proc_cgroup) or "").splitlines():
        _, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if controllers == "":
            found.append(("", path))
        elif "cpu" in controllers.split(","):
            found.append((controllers, path))
    return found


def cgroup_cpu_quota(root: Path = CGROUP_ROOT, proc_cgroup: Path = Path("/proc/self/cgroup")) -> float | None:
    """The CPUs (possibly fractional) this process's cgroup quota allows, or None without a quota.

    The tightest quota on the way from this process's cgroup up to the root counts (a parent's limit binds
    its children). Inside a container the process's cgroup is usually the namespace's root, so the root's own
    files are read too. Both v2 (``cpu.max``) and v1 (``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``, in a
    ``cpu`` or ``cpu,cpuacct`` folder) are understood."""
    limits = []
    for controllers, own in _own_cgroups(proc_cgroup) or [("", "/"), ("cpu", "/")]:
        reader = _quota_v2 if controllers == "" else _quota_v1
        base = root / controllers if controllers else root
        mine = base / own.strip("/")
        folders = [mine] + [f for f in mine.parents if f.is_relative_to(base)]
        limits += [q for q in map(reader, folders) if q is not None]
    return min(limits) if limits else None


def usable_cpus(root: Path = CGROUP_ROOT, proc_cgroup: Path = Path("/proc/self/cgroup")) -> int:
    """The CPUs this process may run on (its affinity), bounded by its cgroup quota rounded down (at least
    1): threads beyond a quota are throttled together, which is worse than fewer threads."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cpus = os.cpu_count() or 1
    quota = cgroup_cpu_quota(root, proc_cgroup)
    if quota is not None:
        cpus = min(cpus, max(1, math.floor(quota)))
    return max(1, cpus)


# ----------------------------------------------------------------------------- the decision


@dataclass(frozen=True)
class ThreadChoice:
    count: int
    source: str  # what decided it: the option, the environment variable, or "usable CPUs"


def parse_thread_count(value, where: str) -> int:
    """A positive whole number of threads; InputError naming ``where`` (the option, variable or setting)."""
    try:
        count = int(str(value).strip())
    except ValueError:
        raise InputError(f"{where}: {value!r} is not a number of threads (a whole number, at least 1)") from None
    if count < 1:
        raise InputError(f"{where}: {count}; at least 1 thread")
    return count


def decide_threads(
    requested: int | None = None, requested_by: str = "--threads", environ=os.environ, cpus=usable_cpus
) -> ThreadChoice:
    """``requested`` (the command's option or the server's setting) over ``$COLORPROP_THREADS`` over the
    usable CPUs (``cpus()``)."""
    if requested is not None:
        return ThreadChoice(parse_thread_count(requested, requested_by), requested_by)
    if environ.get(THREADS_ENV, "").strip():
        return ThreadChoice(parse_thread_count(environ[THREADS_ENV], f"${THREADS_ENV}"), f"${THREADS_ENV}")
    return ThreadChoice(cpus(), "usable CPUs")


def apply_thread_policy(requested: int | None = None, requested_by: str = "--threads") -> ThreadChoice:
    """Decide the thread count and give it to torch (intra-op and inter-op), OpenCV, OpenImageIO (and OpenEXR's
    pool under it) and the row-band pool, and keep freed memory for the next frame. Call once at the start of a
    command that runs the engine, before anything computes."""
    choice = decide_threads(requested, requested_by)
    quiet_openmp()
    keep_freed_memory()
    import cv2
    import OpenImageIO as oiio
    import torch

    from colorprop.colour.convert import set_band_threads

    torch.set_num_threads(choice.count)
    if torch.get_num_interop_threads() != choice.count:
        try:
            torch.set_num_interop_threads(choice.count)
        except RuntimeError:  # once per process, before inter-op work: a second command in one process keeps it
            pass
    cv2.setNumThreads(choice.count)
    oiio.attribute("threads", choice.count)
    oiio.attribute("exr_threads", choice.count)  # OpenEXR's own pool (zip in and out): the hardware's CPUs unless told
    set_band_threads(choice.count)
    return choice
