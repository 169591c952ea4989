"""Plain-Python parts of the Blender add-on (no bpy): sequences, orientation, output names.

What every DCC plug-in shares (address, options, the job, error lines) is ``colorprop_client.dcc``.

Orientation: Blender's ``Image.pixels`` is a flat RGBA buffer whose **first row is the bottom**
of the picture; the colorprop wire format is HxWxC with the **top row first** (as EXR stores it).
:func:`blender_to_hwc` and :func:`hwc_to_blender` are the only two places that flip.
"""

from __future__ import annotations

import glob
import os
import re

import numpy as np

from ._client import dcc

MOVIE_EXTENSIONS = {".mov", ".mp4", ".mkv", ".avi", ".webm", ".mxf", ".m4v", ".ogv"}


# -- pixels ---------------------------------------------------------------------------------------
def blender_to_hwc(flat: np.ndarray, width: int, height: int, channels: int = 4, alpha: bool = False) -> np.ndarray:
    """Blender's bottom-up flat buffer -> HxWx3 float32, top row first (HxWx4 with ``alpha`` and 4 channels)."""
    img = np.asarray(flat, dtype=np.float32).reshape(height, width, channels)
    if channels == 1:
        img = np.repeat(img, 3, axis=2)
    return np.ascontiguousarray(img[::-1, :, : 4 if alpha and channels == 4 else 3])


def hwc_to_blender(rgb: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """HxWx3 (top row first) -> flat RGBA float32, bottom row first, for ``Image.pixels``."""
    h, w, _ = rgb.shape
    rgba = np.empty((h, w, 4), np.float32)
    rgba[..., :3] = rgb
    rgba[..., 3] = alpha
    return rgba[::-1].ravel()


# -- sequences ------------------------------------------------------------------------------------
def is_movie(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in MOVIE_EXTENSIONS


def sequence_of(path: str) -> tuple[str, list[int]]:
    """One frame's file -> (pattern with ``####``, existing frame numbers), e.g.
    ``/x/plate.0007.exr`` -> ``("/x/plate.####.exr", [1, ..., 24])``."""
    folder, name = os.path.split(path)
    m = None
    for m in re.finditer(r"\d+", name):
        pass
    if m is None:
        raise dcc.ColorizeError(f"{name}: no frame number in the file name (expected e.g. plate.0001.exr)")
    head, digits, tail = name[: m.start()], m.group(), name[m.end() :]
    frames = []
    for other in glob.glob(os.path.join(glob.escape(folder), glob.escape(head) + "[0-9]*" + glob.escape(tail))):
        mid = os.path.basename(other)[len(head) : len(os.path.basename(other)) - len(tail)]
        if mid.isdigit() and len(mid) == len(digits):
            frames.append(int(mid))
    if not frames:
        raise dcc.ColorizeError(f"{path}: no such file")
    return os.path.join(folder, head + "#" * len(digits) + tail), sorted(frames)


def output_pattern(folder: str, plate_pattern_or_movie: str) -> str:
    """``<folder>/<plate name>_colorprop.####.exr``."""
    base = os.path.basename(plate_pattern_or_movie)
    stem = re.sub(r"[._-]*#+.*$", "", base) if "#" in base else os.path.splitext(base)[0]
    return os.path.join(folder, f"{stem or 'plate'}_colorprop.####.exr")


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    return np.where(x <= 0.04045, x / 12.92, ((np.maximum(x, 0) + 0.055) / 1.055) ** 2.4).astype(np.float32)
