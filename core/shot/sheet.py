"""Contact sheets: rows of thumbnails of EXR sequences (plate | result | matte), for looking without a DCC.

`colorprop example` draws plate and result; `colorprop preview` any sequence, with its confidence matte, and
keys with their mattes (a partial key's colour over a checkerboard where it does not colour).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import OpenImageIO as oiio

from colorprop.colour import convert
from colorprop.errors import ImageWriteError
from colorprop.io.exr import Plate, read_exr
from colorprop.io.sequence import FramePattern
from colorprop.shot.frames import KeyImage
from colorprop.shot.preflight import plate_colorspace

SHEET_COLUMNS = 6
THUMB_WIDTH = 240


@dataclass(frozen=True)
class SheetRow:
    """One row: a sequence's image (``channel`` None: R,G,B or Y through its colour space to sRGB), or
    one of its channels as a gray matte (0..1, e.g. ``colorprop.confidence``)."""

    pattern: str
    channel: str | None = None
    colorspace: str | None = None  # None: the file's metadata, else linear Rec.709


def to_display_rgb8(linear_rgb: np.ndarray) -> np.ndarray:
    """Linear Rec.709 HxWx3 -> sRGB-encoded 8-bit RGB (clipped: a preview only)."""
    srgb = convert.from_linear_rec709(linear_rgb.astype(np.float32), convert.SRGB_DISPLAY)
    return (np.clip(srgb, 0, 1) * 255 + 0.5).astype(np.uint8)


def thumbnail(row: SheetRow, image: Plate, frame: int, width: int) -> np.ndarray:
    """HxWx3 uint8 RGB tile of ``image`` (``row``'s ``frame``), ``width`` px wide, its frame number printed on it."""
    if row.channel is None:
        space = plate_colorspace(row.colorspace, image.colorspace, str(image.path))
        tile = to_display_rgb8(convert.to_linear_rec709(image.rgb(), space))
    else:
        matte = np.clip(np.nan_to_num(image.channel(row.channel)), 0, 1)
        tile = np.repeat((matte * 255 + 0.5).astype(np.uint8)[..., None], 3, axis=2)
    h = max(1, int(round(tile.shape[0] * width / tile.shape[1])))
    return labelled(np.ascontiguousarray(cv2.resize(tile, (width, h), interpolation=cv2.INTER_AREA)), str(frame))


CHECKER_PX, CHECKER_GRAYS = 8, (96, 160)  # the checkerboard a compositor's viewer shows behind transparency


def key_tile(key: KeyImage, frame: int, size: tuple[int, int]) -> np.ndarray:
    """HxWx3 uint8 RGB tile of a key at ``size`` (W, H: the frames' tiles), labelled "key FRAME": its colour
    (in its colour space, else linear Rec.709) laid by its matte over a checkerboard, so where a partial key
    does not colour shows as transparency does in a viewer, softly at the matte's edges; a full key is its
    colour alone."""
    space = plate_colorspace(key.colorspace, None, key.name)
    colour = to_display_rgb8(convert.to_linear_rec709(np.nan_to_num(key.pixels), space))
    tile = cv2.resize(colour, size, interpolation=cv2.INTER_AREA)
    if key.matte is not None:
        matte = cv2.resize(np.clip(np.nan_to_num(key.matte), 0, 1), size, interpolation=cv2.INTER_AREA)
        y, x = np.mgrid[0 : size[1], 0 : size[0]] // CHECKER_PX
        checker = np.where((x + y) % 2 == 0, *CHECKER_GRAYS)[..., None]
        m = matte[..., None]
        tile = (tile * m + checker * (1 - m) + 0.5).astype(np.uint8)
    return labelled(np.ascontiguousarray(tile), f"key {frame}")


def labelled(tile: np.ndarray, text: str) -> np.ndarray:
    """``tile`` with ``text`` printed in its top left corner, outlined: readable on a white matte too."""
    for colour, thickness in (((0, 0, 0), 4), ((255, 255, 255), 2)):
        cv2.putText(tile, text, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, colour, thickness)
    return tile


def contact_sheet(
    rows: list[SheetRow],
    frames: list[int],
    path: Path,
    columns: int = SHEET_COLUMNS,
    thumb_width: int = THUMB_WIDTH,
    keys: dict[int, KeyImage] | None = None,
) -> Path:
    """One row of thumbnails per ``rows`` entry, for ``columns`` evenly spaced ``frames``, then a row of the
    ``keys`` (``key_tile``, in frame order; the shorter row is padded); written as an 8-bit image (PNG,
    JPEG, ... by the extension of ``path``)."""
    picks = [frames[i] for i in np.linspace(0, len(frames) - 1, min(columns, len(frames))).round().astype(int)]
    columns_of_tiles = []
    for f in picks:  # each file read once, for all the rows it feeds (image and matte)
        images = {
            pattern: read_exr(FramePattern(pattern).path(f)) for pattern in dict.fromkeys(r.pattern for r in rows)
        }
        columns_of_tiles.append(np.concatenate([thumbnail(r, images[r.pattern], f, thumb_width) for r in rows], axis=0))
    sheet = np.concatenate(columns_of_tiles, axis=1)
    if keys:
        size = (thumb_width, sheet.shape[0] // len(rows))  # the frames' tiles: the rows are one sequence's
        key_row = np.concatenate([key_tile(keys[k], k, size) for k in sorted(keys)], axis=1)
        width = max(sheet.shape[1], key_row.shape[1])
        pad = [((0, 0), (0, width - part.shape[1]), (0, 0)) for part in (sheet, key_row)]
        sheet = np.concatenate([np.pad(sheet, pad[0]), np.pad(key_row, pad[1])], axis=0)
    out = oiio.ImageBuf(np.ascontiguousarray(sheet))
    if not out.write(str(path), oiio.UINT8):
        raise ImageWriteError(path, out.geterror() or oiio.geterror() or "OpenImageIO could not write it")
    return Path(path)
