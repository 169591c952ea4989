"""The bundled example shot (examples/shot/: Big Buck Bunny excerpt, CC-BY 3.0): a gray plate and a
colour key at frame 1. `colorprop example` colours it; training uses it as a tiny smoke clip."""

from __future__ import annotations

from pathlib import Path

from colorprop.errors import InputError


def example_shot_dir() -> Path:
    for candidate in (Path(__file__).resolve().parents[2] / "examples" / "shot", Path.cwd() / "examples" / "shot"):
        if (candidate / "key.0001.exr").exists():
            return candidate
    raise InputError("the example shot (examples/shot/) is not here: run from a checkout of the repository")
