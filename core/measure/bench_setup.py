"""What ``colorprop bench`` measures on and with: the synthetic plates of a size (textured ACEScg RGBA
half-float EXRs, moving a few pixels a frame) and a record of the machine it ran on."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import numpy as np

PLATE_SPACE = "ACEScg"
PLATE_NAME = "plate.####.exr"


def synthetic_frames(width: int, height: int, count: int, seed: int = 7):
    """``count`` HxWx3 float32 linear Rec.709 frames: smooth colour regions, fine luminance texture and
    hard edges, panning 3 px right and 1 px down per frame (HDR highlights up to ~4)."""
    import cv2

    rng = np.random.default_rng(seed)
    margin = 4 * count + 8
    big_w, big_h = width + margin, height + margin
    coarse = rng.random((max(4, big_h // 96), max(4, big_w // 96), 3)).astype(np.float32)
    colour = cv2.resize(coarse, (big_w, big_h), interpolation=cv2.INTER_CUBIC)
    blocks = rng.random((max(2, big_h // 160), max(2, big_w // 160), 1)).astype(np.float32)
    edges = cv2.resize(blocks, (big_w, big_h), interpolation=cv2.INTER_NEAREST)[..., None]
    fine = cv2.GaussianBlur(rng.random((big_h, big_w)).astype(np.float32), (0, 0), 1.5)[..., None]
    big = np.clip(colour, 0.02, None) * (0.35 + 0.9 * edges) * (0.6 + 0.8 * fine)
    big[..., :] *= np.where(rng.random((big_h, big_w, 1)) > 0.9995, 4.0, 1.0).astype(np.float32)
    for i in range(count):
        x0, y0 = 4 + 3 * i, 4 + i
        yield np.ascontiguousarray(big[y0 : y0 + height, x0 : x0 + width])


def write_plates(folder: Path, width: int, height: int, count: int) -> tuple[str, str]:
    """plate.0001..count.exr (RGBA half, ACEScg) and key.exr (the true colour of frame 1)."""
    from colorprop.colour import convert
    from colorprop.io.exr import write_exr

    folder.mkdir(parents=True, exist_ok=True)
    for i, rgb in enumerate(synthetic_frames(width, height, count), start=1):
        plate = convert.from_linear_rec709(rgb, PLATE_SPACE)
        if i == 1:
            write_exr(folder / "key.exr", plate, ("R", "G", "B"), extra_metadata={"oiio:ColorSpace": PLATE_SPACE})
        y = convert.luminance(rgb)  # the plate is the gray (luminance) version, as a colorist hands it over
        gray = convert.from_linear_rec709(np.dstack([y, y, y]), PLATE_SPACE)
        alpha = np.ones((height, width, 1), np.float32)
        write_exr(
            folder / f"plate.{i:04d}.exr",
            np.dstack([gray, alpha]),
            ("R", "G", "B", "A"),
            extra_metadata={"oiio:ColorSpace": PLATE_SPACE},
        )
    return str(folder / PLATE_NAME), str(folder / "key.exr")


def machine_info() -> dict:
    import torch

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    flags = ""
    try:
        flags = next(l for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("flags"))
    except (OSError, StopIteration):
        pass
    from colorprop.engine.threads import usable_cpus

    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cpus": usable_cpus(),
        "avx512_bf16": "avx512_bf16" in flags,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "load_average_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        import cv2
        import OpenImageIO as oiio

        info["opencv"], info["openimageio"] = cv2.__version__, oiio.__version__
    except ImportError:
        pass
    return info
