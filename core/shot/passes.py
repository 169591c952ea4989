"""The two passes of a span between keys, kept as files: what a farm splits into a forward task, a backward
task and a blend task, and what the embedded run spills to a temporary folder (pipeline.run_shot).

A pass is one run of the engine from a key across the span (forward from the earlier key, backward from the
later one); it never reads the other pass, so the two run in parallel. Per frame it stores, at the working
size, float32 (so a run that reads them back carries exactly what it computed):

    ab.a, ab.b    the run's colour (Lab ab)
    confidence    its written matte (confidence.written_confidence or F_f's)
    carried       its carried confidence (the blend weight)
    flow.x/.y     the backward flow of the step, this frame -> the previous one of the run (absent for
                  ``global``): the blend warps the full-resolution colour along the forward pass's flow

One uncompressed EXR per frame and pass, ``<folder>/<a>-<b>/<direction>.<frame>.exr``, written to a temp name
and renamed (io/exr.write_exr); zip made them no smaller and four times slower to write and read. Each file is stamped
with a fingerprint of what made it (options, weights, the span, both
keys' colour): a file left by another job is ignored and computed again, never blended. A file is used only
when it is sound, checked as a plate is: read in full, the stamp, the channels, the working size, every value
finite (``PassStore.read``); any other is computed again.

Tasks that share a folder take turns per span and direction (``PassStore.locked``: a lock file
``<folder>/.<a>-<b>.<direction>.lock`` each): a pass task holds its direction, a blend both, so a blend
never removes files another task is reading or writing. An embedded run keeps its passes in a folder of its
own under $TMPDIR (``temporary_root``), removed on every exit; one left by a killed process is removed by the
next run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple

import numpy as np

from colorprop.errors import ColorpropError
from colorprop.io.exr import read_exr, write_exr
from colorprop.io.files import lock_file

DIRECTIONS = ("backward", "forward")  # the order the embedded run computes them in, and takes their locks in
FINGERPRINT = "colorprop:pass"  # EXR header attribute
CHANNELS = ("ab.a", "ab.b", "confidence", "carried")
FLOW_CHANNELS = ("flow.x", "flow.y")
MATTE_CHANNELS = ("matte",)
TEMP_PREFIX = "colorprop-passes-"  # an embedded run's folder under $TMPDIR
OWNER_LOCK = ".owner.lock"  # held by the process whose temporary folder it is


class PassFrame(NamedTuple):
    """One frame of a pass at the working size (module docstring)."""

    ab: np.ndarray  # hxwx2
    confidence: np.ndarray  # hxw
    carried: np.ndarray  # hxw
    flow: np.ndarray | None  # hxwx2, None for global
    matte: np.ndarray | None = None  # hxw, a partial key's layer only (layers.py): where its colour applies


def fingerprint(*parts) -> str:
    """A short hash of JSON-able ``parts`` and numpy arrays (the keys' colour)."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            digest.update(np.ascontiguousarray(part, np.float32).tobytes())
        else:
            digest.update(json.dumps(part, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:32]


@dataclass
class PassStore:
    """The pass files of one span ``a``-``b`` under ``root``; ``stamp``: the fingerprint (module docstring);
    ``size``: the working size (width, height) every file must have; ``flow``: whether they hold a flow;
    ``name``: the folder's name (default ``<a>-<b>``; a partial key's layer: ``layer.<frame>``, with a matte)."""

    root: Path
    a: int
    b: int
    stamp: str
    size: tuple[int, int]
    flow: bool
    name: str | None = None
    matte: bool = False

    @property
    def folder(self) -> Path:
        return Path(self.root) / (self.name or f"{self.a}-{self.b}")

    @property
    def channels(self) -> tuple[str, ...]:
        return CHANNELS + (FLOW_CHANNELS if self.flow else ()) + (MATTE_CHANNELS if self.matte else ())

    def path(self, direction: str, frame: int) -> Path:
        return self.folder / f"{direction}.{frame}.exr"

    def read(self, direction: str, frame: int) -> PassFrame | None:
        """The stored frame, or None unless it is sound (module docstring): missing, unreadable or truncated,
        from another job, with other channels, of another size, or not finite: computed again, never used."""
        path = self.path(direction, frame)
        if not path.exists():
            return None
        try:
            plate = read_exr(path)
        except ColorpropError:
            return None
        channels = self.channels
        if (
            plate.metadata.get(FINGERPRINT) != self.stamp
            or sorted(plate.channels) != sorted(channels)
            or (plate.spec_info.width, plate.spec_info.height) != self.size
            or not np.isfinite(plate.pixels).all()
        ):
            return None
        plane = plate.channel
        flow = np.dstack([plane(name) for name in FLOW_CHANNELS]) if self.flow else None
        return PassFrame(
            np.dstack([plane("ab.a"), plane("ab.b")]),
            plane("confidence"),
            plane("carried"),
            flow,
            plane("matte") if self.matte else None,
        )

    def first_unsound(self, direction: str, order: list[int]) -> int:
        """The index in ``order`` of the first frame not stored soundly (``len(order)``: all are)."""
        return next((i for i, f in enumerate(order) if self.read(direction, f) is None), len(order))

    def write(self, direction: str, frame: int, state: PassFrame) -> None:
        planes = [state.ab[..., 0], state.ab[..., 1], state.confidence, state.carried]
        if self.flow:
            planes += [state.flow[..., 0], state.flow[..., 1]]
        if self.matte:
            planes.append(state.matte)
        self.folder.mkdir(parents=True, exist_ok=True)
        write_exr(
            self.path(direction, frame),
            np.dstack(planes).astype(np.float32),
            self.channels,
            pixel_type="float",
            extra_metadata={FINGERPRINT: self.stamp, "compression": "none"},
        )  # float noise: zip saves ~0 %

    @contextlib.contextmanager
    def locked(self, directions: Iterable[str]) -> Iterator[None]:
        """Hold the span's lock of each of ``directions`` (in ``DIRECTIONS`` order, so two tasks never wait on
        each other) for the block: a pass task its own, a blend both (module docstring)."""
        with contextlib.ExitStack() as held:
            for direction in sorted(set(directions), key=DIRECTIONS.index):
                fd = lock_file(self._lock_path(direction))
                held.callback(os.close, fd)
            yield

    def _lock_path(self, direction: str) -> Path:
        return Path(self.root) / f".{self.folder.name}.{direction}.lock"

    def remove(self) -> None:
        """Drop the span's files once its frames are written, and the root folder once it is empty; call it
        holding both locks (``locked(DIRECTIONS)``): the lock files go too, a task waiting on one takes a new one."""
        shutil.rmtree(self.folder, ignore_errors=True)
        for direction in DIRECTIONS:
            with contextlib.suppress(FileNotFoundError):
                self._lock_path(direction).unlink()
        with contextlib.suppress(OSError):  # another span's files are still there
            Path(self.root).rmdir()


@contextlib.contextmanager
def temporary_root() -> Iterator[Path]:
    """A folder of this process's own under $TMPDIR for an embedded run's passes, removed when the block ends
    however it ends. Folders that killed runs left there (kill -9: their owner lock is free) are removed first."""
    remove_abandoned_roots()
    root = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX))
    owner = lock_file(root / OWNER_LOCK)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)
        os.close(owner)


def remove_abandoned_roots() -> list[Path]:
    """Remove the ``temporary_root`` folders under $TMPDIR whose owner is gone (its lock can be taken);
    a live run's folder is left alone. Returns the folders removed."""
    removed = []
    for folder in Path(tempfile.gettempdir()).glob(TEMP_PREFIX + "*"):
        try:  # only this user's folders ($TMPDIR may be /tmp): another's are not ours to judge, nor readable
            if folder.is_symlink() or not folder.is_dir() or folder.stat().st_uid != os.getuid():
                continue
            owner = lock_file(folder / OWNER_LOCK, create=False, wait=False)
        except OSError:
            continue
        if owner is None:
            with contextlib.suppress(OSError):  # empty: its run died before it took its lock; else held: alive
                folder.rmdir()
                removed.append(folder)
            continue
        try:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
        finally:
            os.close(owner)
    return removed
