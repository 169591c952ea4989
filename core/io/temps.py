"""Temp files for atomic writes: every output is written under a fresh, unguessable temp name in its own folder
(created exclusively, links never followed) and renamed into place; what killed writers left is recognised and
removed."""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path
from typing import Iterable

from colorprop.errors import ExrWriteError


# A temp name: "." + stem + ".tmp-" + writer pid [+ "-" + 8 hex] + suffix.
_TEMP_RE = re.compile(r"\.(?P<stem>.+)\.tmp-(?P<pid>\d+)(?:-[0-9a-f]{8})?(?P<suffix>\.[^.]*)")
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)  # not on Windows (no symlinks planted by other users there)


def temp_name(path: Path) -> str:
    """The name write_exr gives ``path``'s temp file: ``.<stem>.tmp-<pid>-<8 hex><suffix>`` (the
    suffix is kept, OpenImageIO picks the writer from it; the random part makes it unguessable)."""
    return f".{path.stem}.tmp-{os.getpid()}-{secrets.token_hex(4)}{path.suffix or '.exr'}"


def is_temp_of(name: str, path: Path) -> int | None:
    """The writer's pid if ``name`` is a temp file write_exr made for ``path`` (this or an older
    version: ``.<stem>.tmp-<pid>[-<8 hex>]<suffix>``), else None."""
    m = _TEMP_RE.fullmatch(name)
    if m is None or (m["stem"], m["suffix"]) != (path.stem, path.suffix or ".exr"):
        return None
    return int(m["pid"])


def remove_stale_temps(paths: Iterable[str | Path]) -> list[str]:
    """Remove the temp files that killed writers left for ``paths`` (never this process's own, which
    may be in flight on another thread): one listing per folder, however many frames. Only entries
    of those folders are touched, and unlink never follows a link, so a link planted under a temp
    name is removed, not what it points to. Returns the names removed."""
    wanted: dict[Path, set[tuple[str, str]]] = {}
    for p in map(Path, paths):
        wanted.setdefault(p.parent, set()).add((p.stem, p.suffix or ".exr"))
    removed = []
    for folder, outputs in wanted.items():
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for name in names:
            m = _TEMP_RE.fullmatch(name)
            if m is None or (m["stem"], m["suffix"]) not in outputs or int(m["pid"]) == os.getpid():
                continue
            try:
                os.unlink(folder / name)
                removed.append(name)
            except OSError:
                pass  # gone already, or not ours to remove
    return removed


def create_temp(path: Path) -> tuple[Path, int]:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    for _ in range(8):
        temp = path.with_name(temp_name(path))
        try:
            return temp, os.open(temp, flags, 0o666)
        except FileExistsError:
            continue  # 32 random bits taken: someone planted that name; draw again
    raise ExrWriteError(path, "could not create a temp file with a fresh name in its folder")


def discard_temp(temp: Path | None, fd: int) -> None:
    """Close and remove the temp file; a failure here (its folder gone, read-only) must not hide the
    error that made the write fail."""
    if fd >= 0:
        os.close(fd)
    if temp is not None:
        try:
            temp.unlink(missing_ok=True)
        except OSError:
            pass
