"""Build the ColorProp Blender extension: one zip that installs offline on Linux, Windows and macOS.

    python plugin/blender/build_extension.py --out dist/

The zip holds the add-on (``colorprop_blender/``), the colorprop client bundled inside it
(``colorprop_client/``), ``blender_manifest.toml`` and, under ``wheels/``, pyzmq wheels for every
platform the manifest lists and for Blender's Pythons (3.11: Blender 5.0; the stable-ABI wheel for
3.12 and later). The wheels are downloaded from PyPI with ``pip download --only-binary :all:`` the
first time and kept in a cache folder (default ``build/blender-wheels/``), never committed.
Blender installs the wheels that fit its platform and Python when the extension is installed
(*Edit > Preferences > Get Extensions > Install from Disk*, or ``blender --command extension install-file``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ADDON = HERE / "colorprop_blender"
CLIENT = HERE.parent / "colorprop_client"
MANIFEST = ADDON / "blender_manifest.toml"
DEFAULT_CACHE = HERE.parents[1] / "build" / "blender-wheels"

sys.path.insert(0, str(CLIENT.parent))
from colorprop_client.platforms import PIP_PLATFORMS  # noqa: E402  (Blender platform -> pip tag)

PYZMQ = "pyzmq==27.3.0"  # one version for every platform: the same client everywhere
PYTHONS = ("3.11", "3.12")  # 3.12: pyzmq's abi3 wheel, which Blender also takes for 3.13 and later


class BuildError(Exception):
    """The extension could not be built; the message says why and what to do."""


def _sources(folder: Path):
    for path in sorted(folder.rglob("*.py")):
        if "__pycache__" not in path.parts:
            yield path


def download_wheels(platforms: list[str], cache: Path, requirement: str = PYZMQ) -> list[Path]:
    """The wheels of ``requirement`` (and its dependencies) for ``platforms`` x ``PYTHONS``, from the
    cache or else from PyPI. Each (Python, platform) has its own folder, filled once."""
    wheels: list[Path] = []
    for platform in platforms:
        for python in PYTHONS:
            folder = cache / requirement.replace("==", "-") / f"py{python}-{PIP_PLATFORMS[platform]}"
            if not any(folder.glob("*.whl")):
                folder.mkdir(parents=True, exist_ok=True)
                cmd = [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--quiet",
                    "--disable-pip-version-check",
                    "--only-binary",
                    ":all:",
                    "--python-version",
                    python,
                    "--platform",
                    PIP_PLATFORMS[platform],
                    "--dest",
                    str(folder),
                    requirement,
                ]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode != 0 or not any(folder.glob("*.whl")):
                    raise BuildError(
                        f"could not download {requirement} for {platform}, Python {python} from PyPI "
                        f"({' '.join(cmd)}):\n{proc.stderr.strip()[-2000:]}\nWith no network, put the "
                        f"wheels in {folder} yourself"
                    )
            wheels += sorted(folder.glob("*.whl"))
    return sorted({w.name: w for w in wheels}.values(), key=lambda p: p.name)  # universal2 serves two platforms


def manifest_text(wheels: list[Path], platforms: list[str]) -> str:
    """The committed manifest with ``platforms`` and the ``wheels`` list of this build."""
    lines = []
    for line in MANIFEST.read_text().splitlines():
        if line.startswith("platforms ="):
            line = "platforms = [" + ", ".join(f'"{p}"' for p in platforms) + "]"
        lines.append(line)
    at = next(i for i, line in enumerate(lines) if line.startswith("[permissions]"))
    listed = ["wheels = ["] + [f'  "./wheels/{w.name}",' for w in wheels] + ["]", ""]
    return "\n".join(lines[:at] + listed + lines[at:]) + "\n"


def build(out_dir: str | Path, platforms: list[str] | None = None, cache: str | Path = DEFAULT_CACHE) -> Path:
    """Write ``colorprop-<version>.zip`` into ``out_dir`` and return its path."""
    manifest = tomllib.loads(MANIFEST.read_text())
    platforms = list(platforms or manifest["platforms"])
    unknown = sorted(set(platforms) - set(PIP_PLATFORMS))
    if unknown:
        raise BuildError(f"unknown platform(s) {', '.join(unknown)}; choose from {', '.join(PIP_PLATFORMS)}")
    wheels = download_wheels(platforms, Path(cache))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{manifest['id']}-{manifest['version']}.zip"
    tmp = target.with_name(f".{target.name}.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("blender_manifest.toml", manifest_text(wheels, platforms))
        for path in _sources(ADDON):
            zf.write(path, path.relative_to(ADDON).as_posix())
        for path in _sources(CLIENT):
            zf.write(path, (Path("colorprop_client") / path.relative_to(CLIENT)).as_posix())
        for wheel in wheels:
            zf.write(wheel, f"wheels/{wheel.name}")
    tmp.replace(target)
    return target


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="dist", help="folder for the zip (default: dist/)")
    ap.add_argument(
        "--platforms",
        help="comma-separated Blender platforms (default: all the manifest lists: " + ", ".join(PIP_PLATFORMS) + ")",
    )
    ap.add_argument(
        "--wheel-cache",
        default=str(DEFAULT_CACHE),
        help="where downloaded wheels are kept (default: build/blender-wheels/)",
    )
    args = ap.parse_args(argv)
    try:
        print(build(args.out, args.platforms.split(",") if args.platforms else None, args.wheel_cache))
    except BuildError as exc:
        print(f"build_extension: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
