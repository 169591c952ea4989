"""Small file helpers shared by the layers above (weights manifests, the footage cache, pass-file locks)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no flock; a folder of pass files is then one process's alone
    fcntl = None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def lock_file(path: Path, create: bool = True, wait: bool = True) -> int | None:
    """A descriptor holding an exclusive ``flock`` on the file at ``path`` (``os.close`` releases it; so does the
    death of this process, even by kill -9). None when ``wait`` is False and another process holds it, or when
    ``create`` is False and there is no such file.

    The lock is on the file found at ``path`` once the lock is held: a holder may unlink the file (and its
    folder) when it is done, so a file unlinked while we waited is opened again (``create``; its folder made
    again too) or reported as None."""
    flags = os.O_RDWR | getattr(os, "O_CLOEXEC", 0) | (os.O_CREAT if create else 0)
    while True:
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, flags, 0o666)
        except FileNotFoundError:
            if create:
                continue  # the folder went between mkdir and open (its last holder removed it)
            return None
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return None
        if _same_file(path, fd):
            return fd
        os.close(fd)
        if not create:
            return None


def _same_file(path: Path, fd: int) -> bool:
    try:
        at_path = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (at_path.st_dev, at_path.st_ino) == (held.st_dev, held.st_ino)
