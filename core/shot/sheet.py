"""Contact sheets: rows of thumbnails of EXR sequences (plate | result), for looking without a DCC."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from colorprop.colour import convert
from colorprop.io.exr import read_exr
from colorprop.io.sequence import FramePattern

SHEET_COLUMNS = 6


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
