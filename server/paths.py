"""Shared-path mode: every path a client names must stay inside the configured allowed roots,
checked when the job opens *and* again at the moment each file is used.

Reads (plates, keys, the existence check and read-back of output frames) go through
:meth:`AllowedRoots.opened_file`: the file is opened without following a link at its name, in its
folder opened and verified by descriptor, checked to be a regular file, and read through that very
descriptor (``/proc/self/fd/N``), so what is read is exactly what was checked. Writes go through a
directory opened and verified by its file descriptor (:meth:`AllowedRoots.pinned_dir`), into a temp
file created exclusively without following links (``colorprop.io.exr.write_exr``), renamed into
place: a link or a swapped folder cannot send a write outside the roots.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path, PurePath

from colorprop.errors import ExrReadError, ImageReadError, PixelError

from colorprop_client import protocol as P

_PROC_FD = "/proc/self/fd"
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
# A file to read: never through a link at its final name; non-blocking so a FIFO cannot hold the open.
_FILE_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)


class PathRefused(Exception):
    def __init__(self, path: str, reason: str):
        self.path = path
        super().__init__(f"path {path!r} refused: {reason}")


class AllowedRoots:
    """Resolved allowed root folders. ``check`` refuses relative paths, ``..`` components, paths
    longer than the wire bounds and anything whose fully resolved location (symlinks followed) is
    outside every root."""

    def __init__(self, roots: tuple[str, ...] | list[str]):
        self.roots = tuple(Path(r).resolve() for r in roots)

    def __bool__(self) -> bool:
        return bool(self.roots)

    def inside(self, real: Path) -> bool:
        return any(real == root or real.is_relative_to(root) for root in self.roots)

    def check(self, path: str | os.PathLike) -> Path:
        text = os.fspath(path)
        if not isinstance(text, str) or not text or "\x00" in text:
            raise PathRefused(str(text), "not a path")
        if len(text) > P.MAX_PATH_CHARS:
            raise PathRefused(text[:64] + "…", f"longer than {P.MAX_PATH_CHARS} characters")
        if not self.roots:
            raise PathRefused(text, "this server has no allowed roots (shared-path mode is off)")
        pure = PurePath(text)
        if not pure.is_absolute():
            raise PathRefused(text, "must be absolute")
        if ".." in pure.parts:
            raise PathRefused(text, "'..' is not allowed")
        if any(len(part) > P.MAX_NAME_CHARS for part in pure.parts):
            raise PathRefused(text, f"a name is longer than {P.MAX_NAME_CHARS} characters")
        # Resolve then check: a symlink anywhere on the way that leads outside is caught here.
        real = Path(text).resolve()
        if not self.inside(real):
            raise PathRefused(text, "outside the allowed roots")
        return real

    def check_file(self, path: str | os.PathLike) -> Path:
        """``check`` at the moment of use, for a file about to be read (or tested for existence):
        where something exists under that name it must be a regular file (a FIFO would block the
        reader, a device is never an image). Returns the resolved path."""
        real = self.check(path)
        try:
            mode = os.stat(real).st_mode
        except FileNotFoundError:
            return real
        except OSError as err:
            raise PathRefused(os.fspath(path), err.strerror or str(err)) from None
        if not stat.S_ISREG(mode):
            raise PathRefused(os.fspath(path), "not a regular file")
        return real

    @contextlib.contextmanager
    def opened_file(self, path: str | os.PathLike) -> Iterator[Path]:
        """Open the file at ``path`` for reading and yield a path that names the opened file itself
        (``/proc/self/fd/N``): the folder is opened and verified by descriptor (``pinned_dir``), the
        file opened in it without following a link at its name and required to be a regular file.
        A link swapped in after the roots check is refused, not followed; a missing file is an
        ExrReadError (ImageReadError unless it is named .exr). A read error inside the block names
        ``path``, not the descriptor.
        Without /proc: ``check_file`` and the resolved path (a narrow check-then-open window;
        docs/SERVER.md)."""
        real = self.check_file(path)
        missing = (ExrReadError if real.suffix.lower() == ".exr" else ImageReadError)(os.fspath(path), "no such file")
        if not os.path.isdir(_PROC_FD):
            if not real.exists():
                raise missing
            yield real
            return
        with self.pinned_dir(real.parent) as folder:
            try:
                fd = os.open(folder / real.name, _FILE_FLAGS)
            except FileNotFoundError:
                raise missing from None
            except OSError as err:  # ELOOP: a link at the name since the check
                reason = "a link (changed while in use)" if err.errno == errno.ELOOP else err.strerror or str(err)
                raise PathRefused(os.fspath(path), reason) from None
        through = f"{_PROC_FD}/{fd}"
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise PathRefused(os.fspath(path), "not a regular file")
            try:
                yield Path(through)
            except ExrReadError as err:
                raise type(err)(os.fspath(path), err.reason.replace(through, os.fspath(path))) from None
            except PixelError as err:  # e.g. a plate without colour channels, named by the file it came from
                raise PixelError(str(err).replace(through, os.fspath(path))) from None
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def pinned_dir(self, folder: str | os.PathLike, create: bool = False) -> Iterator[Path]:
        """Open ``folder`` (created first when ``create``), verify that the directory actually opened
        lies inside the roots, and yield a path naming that very directory (``/proc/self/fd/N``
        where it exists): names joined to it cannot be redirected by swapping a folder on the way
        for a link after the check."""
        real = self.check(folder)
        if create:
            try:
                real.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise PathRefused(os.fspath(folder), f"cannot create the folder: {err.strerror or err}") from None
            real = self.check(folder)
        try:
            fd = os.open(real, _DIR_FLAGS)
        except OSError as err:
            raise PathRefused(os.fspath(folder), f"cannot open the folder: {err.strerror or err}") from None
        try:
            if os.path.isdir(_PROC_FD):
                opened = Path(os.readlink(f"{_PROC_FD}/{fd}"))
                if not self.inside(opened):
                    raise PathRefused(os.fspath(folder), "outside the allowed roots (changed while in use)")
                yield Path(f"{_PROC_FD}/{fd}")
            else:  # no /proc: the resolved path, checked just now
                yield real
        finally:
            os.close(fd)
