"""``ShotCache``: what a shot's runs can take again instead of computing it, kept in a folder (``--cache DIR``).

Never needed for correctness: every entry is found by a fingerprint of everything it was made from, so an
entry of another shot, plate, engine version, weights, device, precision or options is never found (it is
recomputed); a missing, unreadable or corrupt entry is recomputed; the folder may be deleted at any time.

    <root>/<shot>/shot.json          what this shot's entries were made from: each plate's identity (an EXR's
                                     path, size and mtime_ns; the pixels' hash for frames in memory), the
                                     engine (version, its source files' hash ``code_digest``, the weights'
                                     version and manifest hash, device, precision) and the options; when the
                                     folder held entries made from others, a note says so (they age out)
    <root>/<shot>/<kind>/<key>.npz   one entry (numpy arrays, and its ``key``, checked when read)
    <root>/<shot>/layers/layer.<p>/  a partial key's stored passes (``passes.PassStore``, layers.py)
    <root>/<shot>/spans/<a>-<b>/     a span's passes while it runs (run.py; a run cut short resumes them)

``<shot>`` is a fingerprint of where the plates come from and the frame list. The kinds:

    flow      DIS flow both ways between two working-size luminance images and the consistency of each way
              (engine/flow.py ``flow_step``), found by the two 8-bit images themselves: the base's runs and the
              layers', forward and backward, all find it
    features  F_s's backbone features of a frame's working luminance (``GlobalBranch.features``): what F_s
              computes before it looks at a key
    match     F_s's match of a frame against the key(s) (``GlobalBranch.match``): made from the frame's and the
              keys' luminance alone, so a run from a repainted key finds it
    L, L_full a frame's luminance at the working size (``Prepared.L_work``: a pass reads no plate) and at full
              size (the plate is read for its other channels and header, its L is not made again), by the
              plate's identity
    base      one frame's base result, what ``ShotRun.output`` receives (ab and written confidence at full
              resolution, float32), found by its segment's stamp (run.py): a segment whose stamp did not change
              is not run again; its frames come from here

Every entry is written (on a helper thread, behind the run) to a temporary name in its folder and renamed, so a
reader (another process too) finds a whole entry or none, and a cancelled or killed run leaves only whole
entries. The folder is bounded: once the
files under ``root`` pass ``max_bytes``, the least recently used (mtime, touched on each read) go until 90 % is
left, never a layer folder this run is using. A cache that cannot be written (read-only, no space, a file
where the folder should be) leaves the run uncached from there on, with a note; it never fails a job.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
import threading
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from colorprop.shot.passes import fingerprint

DEFAULT_MAX_BYTES = 8 * 1024**3
ENTRY_SUFFIX = ".npz"
LAYERS = "layers"  # a shot's partial-key passes (layers.py), kept as PassStore folders
SPANS = "spans"  # the passes between keys while their span runs (run.py; removed once its frames are written)
FOLDERS = (LAYERS, SPANS)  # each PassStore folder under these is evicted whole
RECORD = "shot.json"
EVICT_TO = 0.9  # of max_bytes, once passed
WRITES_AHEAD = 3  # entries written behind the run at most (a 720p frame's base result: 11 MB)


@functools.cache
def code_digest() -> str:
    """A hash of this colorprop's own source files (the package's .py files, read once per process): part of the
    engine's identity, so a cache made by other code is never used even where the version string is the same (a
    development install between releases)."""
    package = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:32]


def file_digest(path: str | os.PathLike | None) -> str | None:
    """A hash of one file's bytes (a weights manifest, which lists each network's sha256), None if it is not there."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:32] if path is not None else None
    except OSError:
        return None


def array_digest(a: np.ndarray) -> str:
    """A hash of an array's dtype, shape and bytes (no conversion: 8-bit images stay 8-bit)."""
    a = np.ascontiguousarray(a)
    digest = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    digest.update(a.data)
    return digest.hexdigest()[:32]


def plate_identity(source, frame: int) -> str:
    """What names a plate frame's content: the source's own ``identity(frame)`` when it has one (an EXR
    sequence: path, size, mtime_ns), else a hash of the pixels, channels and colour space it reads."""
    own = getattr(source, "identity", None)
    if own is not None:
        return own(frame)
    plate = source.read(frame)
    return f"pixels:{array_digest(plate.pixels)}:{','.join(plate.channels)}:{plate.colorspace}"


class ShotCache:
    """A cache folder (module docstring); ``max_bytes`` bounds it (default ``DEFAULT_MAX_BYTES``). ``notes``:
    what the last run (``open``) did not use or keep, and why. One ``run_shot`` at a time uses it; several
    processes may share the folder."""

    def __init__(self, root: str | os.PathLike, max_bytes: int | None = None):
        self.root = Path(root)
        self.max_bytes = DEFAULT_MAX_BYTES if max_bytes is None else int(max_bytes)
        self.notes: list[str] = []
        self.folder: Path | None = None  # this shot's, once opened
        self.writable = True
        self.in_use: set[Path] = set()  # layer folders this run reads: never evicted under it
        self.hits: dict[str, int] = {}  # per kind, in the last run: entries found
        self.misses: dict[str, int] = {}  # ... and not found (or damaged)
        self._bytes: int | None = None  # the files under root, counted at the first write
        self._lock = threading.Lock()
        self._writer: ThreadPoolExecutor | None = None  # entries are written behind the run (``flush``)
        self._writing: dict[Path, dict[str, np.ndarray]] = {}  # ... and found there until they are on disk
        self._ahead = threading.BoundedSemaphore(WRITES_AHEAD)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    # ---------------------------------------------------------------- the shot's folder

    def open(self, shot: str, record: dict) -> None:
        """Use the folder of ``shot`` (a fingerprint); ``record``: what its entries are made from (shot.json).
        A folder that cannot be made leaves the cache off for this run (a note)."""
        self.flush()
        self.folder, self.writable, self.in_use, self.notes, self.hits, self.misses = None, True, set(), [], {}, {}
        self._bytes = None  # counted again: other processes may have written since
        folder = self.root / shot
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if not folder.is_dir():
                raise NotADirectoryError(str(folder))
        except OSError as err:
            self.note(f"the cache {self.root} cannot be used ({reason(err)}): this run is not cached")
            return
        self.folder = folder
        try:
            previous = json.loads((folder / RECORD).read_text())
        except (OSError, ValueError):
            previous = None
        if isinstance(previous, dict) and previous != record:
            changed = [name for name in record if previous.get(name) != record[name]]
            self.note(
                f"the cache {self.root} held entries of this shot made from other {', '.join(changed) or 'inputs'}: "
                "not used (recomputed)"
            )
        elif previous is None:
            others = [p.name for p in self._shots() if p != folder]
            if others:
                self.note(f"the cache {self.root} holds entries of {len(others)} other shot(s) only: not used")
        self._write(folder / RECORD, lambda f: f.write(json.dumps(record, sort_keys=True, indent=1).encode()))

    def layers_root(self) -> Path | None:
        """Where this shot's partial-key passes are kept (None: the cache is off or cannot be written)."""
        return self.folder / LAYERS if self.folder is not None and self.writable else None

    # ---------------------------------------------------------------- entries

    def get(self, kind: str, key: str) -> dict[str, np.ndarray] | None:
        """The entry ``key`` of ``kind``, or None: missing, or unreadable, truncated or another's (removed)."""
        if self.folder is None:
            return None
        path = self._path(kind, key)
        with self._lock:
            writing = self._writing.get(path)
        if writing is not None:
            self.hits[kind] = self.hits.get(kind, 0) + 1
            return dict(writing)
        try:
            with np.load(path, allow_pickle=False) as stored:
                if str(stored["key"]) != key:
                    raise ValueError("another entry's key")
                arrays = {name: stored[name] for name in stored.files if name != "key"}
        except FileNotFoundError:
            self.misses[kind] = self.misses.get(kind, 0) + 1
            return None
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            self.note(f"a damaged cache entry ({kind}) was recomputed")
            with contextlib.suppress(OSError):
                path.unlink()
            self.misses[kind] = self.misses.get(kind, 0) + 1
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # used: the last to be evicted
        self.hits[kind] = self.hits.get(kind, 0) + 1
        return arrays

    def has(self, kind: str, key: str) -> bool:
        if self.folder is None:
            return False
        path = self._path(kind, key)
        with self._lock:
            if path in self._writing:
                return True
        return path.is_file()

    def put(self, kind: str, key: str, **arrays: np.ndarray) -> None:
        """Keep ``arrays`` as entry ``key`` of ``kind`` (replaced whole: temporary name, then rename), written on
        a helper thread while the run goes on (``WRITES_AHEAD`` at most; ``get`` finds it meanwhile). The arrays
        must not change afterwards."""
        if self.folder is None or not self.writable:
            return
        path = self._path(kind, key)
        self._ahead.acquire()
        with self._lock:
            self._writing[path] = arrays
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="colorprop-cache")
        self._writer.submit(self._put_now, path, key, arrays)

    def _put_now(self, path: Path, key: str, arrays: dict[str, np.ndarray]) -> None:
        try:
            if self._write(path, lambda f: np.savez(f, key=np.array(key), **arrays)):
                self._grow(path)
        finally:
            with self._lock:
                self._writing.pop(path, None)
            self._ahead.release()

    def flush(self) -> None:
        """Wait for every entry being written (``run_shot`` calls it as the run ends, however it ends)."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.shutdown(wait=True)

    def _path(self, kind: str, key: str) -> Path:
        return self.folder / kind / f"{key}{ENTRY_SUFFIX}"

    def _write(self, path: Path, write) -> bool:
        temp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(temp, "wb") as f:
                write(f)
            os.replace(temp, path)
            return True
        except OSError as err:
            with contextlib.suppress(OSError):
                temp.unlink()
            self.writable = False
            self.note(f"the cache {self.root} cannot be written ({reason(err)}): the rest of this run is not cached")
            return False

    # ---------------------------------------------------------------- bounded size

    def _shots(self) -> list[Path]:
        with contextlib.suppress(OSError):
            return [p for p in self.root.iterdir() if p.is_dir() and not p.is_symlink()]
        return []

    def _units(self) -> list[tuple[float, int, Path]]:
        """(last use, bytes, path) of each thing eviction may remove: an entry file, or a layer folder whole."""
        units = []
        for shot in self._shots():
            for path in _walk(shot):
                if path.name == RECORD and path.parent == shot:
                    continue
                try:
                    rel = path.relative_to(shot).parts
                    unit = shot / rel[0] / rel[1] if rel[0] in FOLDERS and len(rel) > 2 else path
                    stat = path.stat()
                except (OSError, ValueError):
                    continue
                units.append((stat.st_mtime, stat.st_size, unit))
        merged: dict[Path, tuple[float, int]] = {}
        for when, size, unit in units:
            last, total = merged.get(unit, (0.0, 0))
            merged[unit] = (max(last, when), total + size)
        return [(when, size, unit) for unit, (when, size) in merged.items()]

    def _grow(self, path: Path) -> None:
        with self._lock:
            if self._bytes is None:
                self._bytes = sum(size for _, size, _ in self._units())
            else:
                with contextlib.suppress(OSError):
                    self._bytes += path.stat().st_size
            if self._bytes > self.max_bytes:
                self._evict(path)

    def _evict(self, written: Path) -> None:
        units = sorted(self._units(), key=lambda u: u[0])
        total = sum(size for _, size, _ in units)
        for _, size, unit in units:
            if total <= EVICT_TO * self.max_bytes:
                break
            if unit in self.in_use:
                continue
            with contextlib.suppress(OSError):
                shutil.rmtree(unit) if unit.is_dir() else unit.unlink()
                total -= size
        self._bytes = total
        if not written.exists() or total > self.max_bytes:
            self.note(f"the cache {self.root} is full ({self.max_bytes / 1024**2:.0f} MiB): not everything is kept")


def _walk(folder: Path) -> Iterable[Path]:
    for parent, _, names in os.walk(folder):
        for name in names:
            yield Path(parent) / name


def reason(err: OSError) -> str:
    return err.strerror or type(err).__name__


class FlowEntries:
    """The ``flow`` entries as engine/flow.py's ``flow_step`` asks for them: DIS both ways between two 8-bit
    images (found whichever comes first) and the consistency of each way that a run has used."""

    def __init__(self, cache: ShotCache, salt: str):
        self.cache, self.salt = cache, salt

    def _key(self, a: np.ndarray, b: np.ndarray) -> tuple[str, bool]:
        da, db = array_digest(a), array_digest(b)
        return fingerprint(self.salt, *sorted((da, db))), da > db

    def get(self, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None] | None:
        """(flow a -> b, flow b -> a, the consistency of a -> b or None), or None."""
        key, swapped = self._key(a, b)
        entry = self.cache.get("flow", key)
        if entry is None:
            return None
        first, second = ("ba", "ab") if swapped else ("ab", "ba")
        return entry[first], entry[second], entry.get(f"c_{first}")

    def put(self, a: np.ndarray, b: np.ndarray, ab: np.ndarray, ba: np.ndarray, consistency: np.ndarray) -> None:
        """Keep the pair with the consistency of a -> b (and the other way's, when the entry has it)."""
        key, swapped = self._key(a, b)
        first, second = ("ba", "ab") if swapped else ("ab", "ba")
        entry = self.cache.get("flow", key) or {}
        arrays = {first: ab, second: ba, f"c_{first}": consistency}
        if f"c_{second}" in entry:
            arrays[f"c_{second}"] = entry[f"c_{second}"]
        self.cache.put("flow", key, **arrays)


class NetworkEntries:
    """The ``features`` and ``match`` entries as the Propagator asks for them (``Propagator.key_match``): F_s's
    features of a frame's working luminance ``L``, and its match against the key(s) (``key``: a digest of their
    features), tensors kept bit for bit (bfloat16 as its 16 bits)."""

    def __init__(self, cache: ShotCache, salt: str):
        self.cache, self.salt = cache, salt

    @staticmethod
    def digest(tensors) -> str:
        return fingerprint(*(array_digest(_array(t)) for t in tensors))

    def get(self, kind: str, L: np.ndarray, device: torch.device, key: str = "") -> tuple[torch.Tensor, ...] | None:
        entry = self.cache.get(kind, fingerprint(self.salt, array_digest(L), key))
        if entry is None:
            return None
        return tuple(_tensor(entry[f"t{i}"], str(entry[f"d{i}"])).to(device) for i in range(len(entry) // 2))

    def put(self, kind: str, L: np.ndarray, tensors, key: str = "") -> None:
        arrays = {}
        for i, t in enumerate(tensors):
            arrays[f"t{i}"], arrays[f"d{i}"] = _array(t), np.array(str(t.dtype))
        self.cache.put(kind, fingerprint(self.salt, array_digest(L), key), **arrays)


def _array(t: torch.Tensor) -> np.ndarray:
    t = t.detach().cpu().contiguous()
    return (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy()


def _tensor(array: np.ndarray, dtype: str) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(array))
    return t.view(torch.bfloat16) if dtype == str(torch.bfloat16) else t
