"""Helpers for the server tests (fixtures live in conftest.py).

Every server here is real: a ROUTER on 127.0.0.1 with a port the OS picks, run in a thread of
the test process (:class:`ThreadServer`) or in a subprocess (:func:`spawn`,
``python -m colorprop_server``). Every wait is bounded.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import tempfile
import time
from pathlib import Path

import numpy as np

from colorprop_client.client import Client
from colorprop_server.gate import FairGate
from colorprop_server.paths import AllowedRoots

REPO = Path(__file__).resolve().parents[1]


def make_shot(n: int, h: int = 48, w: int = 64, seed: int = 0, first: int = 1) -> tuple[dict, dict]:
    """``n`` plate frames (HxWx3 float32, a moving pattern plus noise) and a colour key on the first."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    frames = {}
    for i in range(first, first + n):
        v = 0.5 + 0.35 * np.sin((x + 2 * i + seed) / 7.0) * np.cos((y + i) / 5.0)
        v = v + 0.05 * rng.random((h, w), dtype=np.float32)
        frames[i] = np.repeat(v[..., None], 3, axis=2).astype(np.float32)
    key = (frames[first] * np.array([1.0, 0.55, 0.25], np.float32)).astype(np.float32)
    return frames, {first: key}


def write_plates(folder: Path, frames: dict, key: np.ndarray) -> tuple[str, str]:
    """``frames`` as float EXRs ``plate.NNNN.exr`` and ``key`` as ``key.exr`` in ``folder``;
    returns the plate pattern and the key path."""
    from colorprop.io.exr import write_exr

    folder.mkdir(parents=True, exist_ok=True)
    for f, px in frames.items():
        write_exr(folder / f"plate.{f:04d}.exr", px, ("R", "G", "B"), pixel_type="float")
    write_exr(folder / "key.exr", key, ("R", "G", "B"), pixel_type="float")
    return str(folder / "plate.####.exr"), str(folder / "key.exr")


def broken_shot(folder: Path, failure: str, n: int = 8, bad: int = 5) -> tuple[str, str, str, Path]:
    """An ``n``-frame shot under ``folder`` that fails *after it started*, at frame ``bad``: "unreadable" cuts
    that plate's pixel data (its header stays whole, so the pre-flight passes); "write_failed" puts a folder
    at that output frame's name (the rename into place cannot replace it). Returns the plate pattern, the
    key, the output pattern (``folder/out/o.####.exr``) and the file the error must name."""
    frames, keys = make_shot(n, seed=71)
    plate, key = write_plates(folder / "shot", frames, keys[1])
    out = folder / "out"
    out.mkdir(parents=True)
    if failure == "unreadable":
        broken = folder / "shot" / f"plate.{bad:04d}.exr"
        data = broken.read_bytes()
        broken.write_bytes(data[: len(data) * 2 // 3])
    else:
        broken = out / f"o.{bad:04d}.exr"
        broken.mkdir()
    return plate, key, str(out / "o.####.exr"), broken


def written_frames(out_pattern: str) -> list[int]:
    """The frame numbers of the complete files ``<name>.NNNN.exr`` next to ``out_pattern``."""
    prefix = Path(out_pattern).name.split("#")[0]
    return sorted(
        int(p.name[len(prefix) :].split(".")[0]) for p in Path(out_pattern).parent.glob(prefix + "*.exr") if p.is_file()
    )


def embedded(engine, frames: dict, keys: dict, method: str = "flow") -> dict:
    """The reference: ``run_shot`` in this process with in-memory source and sink."""
    from colorprop.engine.engine import ShotOptions
    from colorprop.shot.frames import ArraySink, ArraySource, KeyImage
    from colorprop.shot.pipeline import run_shot

    sink = ArraySink()
    run_shot(
        engine,
        ArraySource(frames),
        {k: KeyImage(v) for k, v in keys.items()},
        ShotOptions.from_dict({"method": method}),
        sink,
    )
    return {f: (r.rgb, r.confidence) for f, r in sink.results.items()}


class HeldRoots(AllowedRoots):
    """A server's allowed roots, made to stop one job at a known point: the first roots check (``at="check"``) or
    read (``at="open"``) of a file named ``name``, in whatever thread the server does it, sets ``held``, records
    ``held_in`` (that thread's name) and waits until the test calls ``release`` (at most ``limit_s``). A test then
    looks at the server while that job stands there (checking a long shot's paths, or reading a frame with the
    compute turn held, as a frame that takes long would) instead of sampling it from outside and guessing how
    long each state lasts."""

    def __init__(self, roots, name: str, at: str = "check", limit_s: float = 120.0):
        super().__init__(roots)
        self.name, self.at, self.limit_s = name, at, limit_s
        self.held, self.released, self.held_in = threading.Event(), threading.Event(), None
        self._lock = threading.Lock()

    def check(self, path):
        self._hold_at("check", path)
        return super().check(path)

    def opened_file(self, path):
        self._hold_at("open", path)
        return super().opened_file(path)

    def release(self) -> None:
        self.released.set()

    def _hold_at(self, at: str, path) -> None:
        with self._lock:
            if at != self.at or Path(path).name != self.name or self.held.is_set():
                return
            self.held_in = threading.current_thread().name
            self.held.set()
        self.released.wait(self.limit_s)


class RecordingGate(FairGate):
    """The server's compute turn, recording each grant: ``passed_by[job]`` is the most turns other jobs were
    granted while ``job`` waited for one. Round-robin keeps it below the number of other jobs however slowly
    any thread runs, so a starved job shows as a count here, not as a time."""

    def __init__(self) -> None:
        super().__init__()
        self.grants: list[str] = []  # job ids, in grant order
        self.passed_by: dict[str, int] = {}

    def acquire(self, job, stopped) -> None:
        with self._cond:  # re-entrant: FairGate's waits release it, so grants are recorded in their true order
            start, held_already = len(self.grants), self._holder == job
            super().acquire(job, stopped)
            if not held_already:
                self.passed_by[job] = max(self.passed_by.get(job, 0), sum(j != job for j in self.grants[start:]))
                self.grants.append(job)


class ThreadServer:
    def __init__(self, engine, **config):
        from colorprop_server import ServerConfig
        from colorprop_server.server import Server

        config.setdefault("bind", "tcp://127.0.0.1:0")
        self.server = Server(ServerConfig(engine=engine, **config))
        self.thread = threading.Thread(target=self.server.run, name="test-server", daemon=True)
        self.thread.start()
        assert self.server.ready.wait(10), "server did not start"
        self.address = self.server.endpoint

    @property
    def service(self):
        return self.server.service

    def stop(self) -> None:
        self.server.stop()
        self.thread.join(15)
        assert not self.thread.is_alive(), "server thread did not stop"


def connect_times(monkeypatch) -> list[float]:
    """The ``time.monotonic()`` of every connect a client makes from now on (each try opens a socket): a time
    bound on giving up on a server is measured from the first, not from a command's start-up on a loaded
    machine."""
    from colorprop_client.transport import Transport

    times: list[float] = []
    connect = Transport._connect
    monkeypatch.setattr(Transport, "_connect", lambda self: times.append(time.monotonic()) or connect(self))
    return times


def wait_until(pred, timeout: float = 10.0, step: float = 0.05) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return pred()


NO_WEIGHTS = os.path.join(tempfile.gettempdir(), "colorprop-tests-no-weights")  # never created: flow-only servers


def spawn(args: list[str], **kw) -> subprocess.Popen:
    """A server process without networks (these tests use method flow; loading networks only slows them)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", COLORPROP_WEIGHTS=NO_WEIGHTS)
    return subprocess.Popen(
        [sys.executable, "-m", "colorprop_server", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=kw.pop("stderr", subprocess.DEVNULL),
        **kw,
    )


def wait_hello(address: str, proc: subprocess.Popen | None = None, timeout: float = 60.0, curve=None) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server process exited with {proc.returncode}")
        try:
            with Client(address, timeout_s=0.5, retries=1, curve=curve) as c:
                return c.hello()
        except Exception:
            time.sleep(0.1)
    raise TimeoutError(f"no server at {address}")


def stop_proc(proc: subprocess.Popen, sig=signal.SIGTERM, timeout: float = 20.0) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode
