"""`colorprop example`: colour the bundled example shot and draw a contact sheet.

The shot lives in examples/shot/ (Big Buck Bunny excerpt, CC-BY 3.0): a gray plate and a colour key
at frame 1. Output: <out>/colour.####.exr and <out>/contact_sheet.png (plate | result per row).
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

from colorprop.colour import convert
from colorprop.engine.engine import Engine, ShotOptions
from colorprop.errors import InputError
from colorprop.io.exr import read_exr
from colorprop.io.sequence import FramePattern

SHEET_COLUMNS = 6


def example_shot_dir() -> Path:
    for candidate in (Path(__file__).resolve().parents[2] / "examples" / "shot", Path.cwd() / "examples" / "shot"):
        if (candidate / "key.0001.exr").exists():
            return candidate
    raise InputError("the example shot (examples/shot/) is not here: run from a checkout of the repository")


def run_example(output: str, method: str | None = None) -> int:
    from colorprop.cli.main import Progress
    from colorprop.shot.pipeline import colorize_sequence

    shot = example_shot_dir()
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    engine = Engine.load()
    method = method or ("full" if "full" in engine.methods() else "flow")
    if method == "flow" and "full" not in engine.methods():
        print(f"colorprop: no trained weights found ({engine.weights_error}); using the flow baseline",
              file=sys.stderr)
    plate = str(shot / "plate.####.exr")
    frames = FramePattern(plate).existing_frames()
    report = colorize_sequence(engine, plate, {1: str(shot / "key.0001.exr")}, str(out / "colour.####.exr"),
                               frames, ShotOptions(method=method), progress=Progress())
    sheet = contact_sheet(plate, str(out / "colour.####.exr"), frames, out / "contact_sheet.png")
    print(f"colorprop example: {len(report.frames_written)} frames with method '{method}' in "
          f"{report.seconds:.1f} s -> {out}/colour.####.exr, contact sheet {sheet}")
    return 0


def to_display_bgr8(linear_rgb: np.ndarray) -> np.ndarray:
    """Linear Rec.709 HxWx3 -> sRGB-encoded 8-bit BGR for a PNG (clipped: a preview only)."""
    srgb = convert.from_linear_rec709(linear_rgb.astype(np.float32), "sRGB Encoded Rec.709 (sRGB)")
    return (np.clip(srgb, 0, 1)[..., ::-1] * 255 + 0.5).astype(np.uint8)


def contact_sheet(plate_pattern: str, result_pattern: str, frames: list[int], path: Path,
                  columns: int = SHEET_COLUMNS, thumb_width: int = 240) -> Path:
    """Rows of (plate, result) thumbnails for evenly spaced frames; frame numbers printed on each."""
    picks = [frames[i] for i in np.linspace(0, len(frames) - 1, min(columns, len(frames))).round().astype(int)]
    rows = []
    for pattern in (plate_pattern, result_pattern):
        tiles = []
        for frame in picks:
            plate = read_exr(FramePattern(pattern).path(frame))
            rgb = plate.rgb()
            space = convert.check_colorspace(plate.colorspace or "Linear Rec.709 (sRGB)")
            tile = to_display_bgr8(convert.to_linear_rec709(rgb, space))
            h = int(round(tile.shape[0] * thumb_width / tile.shape[1]))
            tile = cv2.resize(tile, (thumb_width, h), interpolation=cv2.INTER_AREA)
            cv2.putText(tile, str(frame), (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2)
            tiles.append(tile)
        rows.append(np.concatenate(tiles, axis=1))
    sheet = np.concatenate(rows, axis=0)
    cv2.imwrite(str(path), sheet)
    return path
