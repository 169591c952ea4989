"""Shared-path mode: every path a client names must stay inside the configured allowed roots."""

from __future__ import annotations

import os
from pathlib import Path, PurePath


class PathRefused(Exception):
    def __init__(self, path: str, reason: str):
        self.path = path
        super().__init__(f"path {path!r} refused: {reason}")


class AllowedRoots:
    """Resolved allowed root folders. ``check`` refuses relative paths, ``..`` components and
    anything whose fully resolved location (symlinks followed) is outside every root."""

    def __init__(self, roots: tuple[str, ...] | list[str]):
        self.roots = tuple(Path(r).resolve() for r in roots)

    def __bool__(self) -> bool:
        return bool(self.roots)

    def check(self, path: str | os.PathLike) -> Path:
        text = os.fspath(path)
        if not isinstance(text, str) or not text or "\x00" in text:
            raise PathRefused(str(text), "not a path")
        if not self.roots:
            raise PathRefused(text, "this server has no allowed roots (shared-path mode is off)")
        pure = PurePath(text)
        if not pure.is_absolute():
            raise PathRefused(text, "must be absolute")
        if ".." in pure.parts:
            raise PathRefused(text, "'..' is not allowed")
        # Resolve then check: a symlink anywhere on the way that leads outside is caught here.
        real = Path(text).resolve()
        if not any(real == root or real.is_relative_to(root) for root in self.roots):
            raise PathRefused(text, "outside the allowed roots")
        return real
