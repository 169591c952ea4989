"""Small synthetic shots on real EXR sequences made in a test's tmp folder (tests of keys, confidence, suggestions)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from colorprop.colour import convert
from colorprop.io.exr import write_exr

W, H = 96, 64
SPACE = "Linear Rec.709 (sRGB)"
RED = np.float32([0.8, 0.02, 0.03])  # linear; luminance ~0.19, far from the background's


def background(n: int, shift: float = 1.0, seed: int = 5) -> list[np.ndarray]:
    """HxWx3 linear frames of a smooth colourful texture sliding left by ``shift`` px per frame."""
    rng = np.random.default_rng(seed)
    big = cv2.GaussianBlur(rng.random((H + 8, W + 8 + int(shift * n) + 8, 3)).astype(np.float32), (0, 0), 4)
    big = (big - big.min()) / (big.max() - big.min()) * 0.6 + 0.3
    return [
        cv2.warpAffine(
            big, np.float32([[1, 0, 4 + i * shift], [0, 1, 4]]), (W, H), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        )
        for i in range(n)
    ]


def with_object(
    frames: list[np.ndarray], boxes: dict[int, tuple[int, int, int, int]]
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Paint a red box (x0, y0, x1, y1) into frame index i for each entry; returns (frames, masks)."""
    out, masks = [], []
    for i, f in enumerate(frames):
        f = f.copy()
        m = np.zeros((H, W), bool)
        if i in boxes:
            x0, y0, x1, y1 = boxes[i]
            m[y0:y1, max(x0, 0) : min(x1, W)] = True
            f[m] = RED
        out.append(f)
        masks.append(m)
    return out, masks


def write_plate(folder: Path, frames: list[np.ndarray], keys: list[int]) -> tuple[str, list[str]]:
    """Gray plate.####.exr (frames 1..n, RGB = luminance) and key.<frame>.exr in colour."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames, start=1):
        y = convert.luminance(f)
        write_exr(
            folder / f"plate.{i:04d}.exr",
            np.dstack([y, y, y]),
            ("R", "G", "B"),
            extra_metadata={"oiio:ColorSpace": SPACE},
        )
    specs = []
    for k in keys:
        write_exr(
            folder / f"key.{k:04d}.exr", frames[k - 1], ("R", "G", "B"), extra_metadata={"oiio:ColorSpace": SPACE}
        )
        specs += ["--key", f"{k}={folder / f'key.{k:04d}.exr'}"]
    return str(folder / "plate.####.exr"), specs
