"""Build the Blender add-on zip: colorprop_blender/ with colorprop_client bundled inside it.

    python plugin/blender/build_extension.py --out dist/

Install in Blender with Edit > Preferences > Add-ons > Install from Disk (the zip).
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ADDON = HERE / "colorprop_blender"
CLIENT = HERE.parent / "colorprop_client"


def _files(folder: Path):
    for path in sorted(folder.rglob("*.py")):
        if "__pycache__" not in path.parts:
            yield path


def build(out_dir: str | Path) -> Path:
    out_dir = Path(out_dir)
    version = ".".join(map(str, ast.literal_eval(re.search(r'"version": (\([^)]*\))', (ADDON / "__init__.py").read_text()).group(1))))
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"colorprop_blender-{version}.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in _files(ADDON):
            zf.write(path, Path("colorprop_blender") / path.relative_to(ADDON))
        for path in _files(CLIENT):
            zf.write(path, Path("colorprop_blender") / "colorprop_client" / path.relative_to(CLIENT))
    return target


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="dist", help="folder for the zip (default: dist/)")
    print(build(Path(ap.parse_args(argv).out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
