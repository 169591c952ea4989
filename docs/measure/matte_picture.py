"""The picture in docs/KEYS.md: a frame of dev clips coloured from their frame 1, beside the confidence matte
and where the colour is really wrong, one row per clip:

    .venv/bin/python docs/measure/matte_picture.py [--shots bbb@4340:31,dancer@1380:41] [--method flow] \
        [--out docs/matte.png]

Tiles (each 200 px wide): the written colour | the `colorprop.confidence` matte (white = surely right) |
the truth | pixels whose ab is more than 4 Lab units from the truth (red, over the gray plate).
"""

from __future__ import annotations

import argparse
import sys
import cv2
import numpy as np

from colorprop.colour import convert
from colorprop.data.clips import load_dev_clips
from colorprop.engine.engine import Engine
from colorprop.measure.evaluate import colorize_clip_with_confidence
from colorprop.measure.matte import WITHIN_AB
from colorprop.shot.sheet import to_display_rgb8

TILE_WIDTH = 200


def tile(rgb8: np.ndarray, label: str) -> np.ndarray:
    h = int(round(rgb8.shape[0] * TILE_WIDTH / rgb8.shape[1]))
    out = cv2.resize(rgb8, (TILE_WIDTH, h), interpolation=cv2.INTER_AREA)
    cv2.putText(out, label, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3)
    cv2.putText(out, label, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1)
    return out


def row(clip, frame: int, method: str) -> np.ndarray:
    frames = clip.frames_linear[:frame]
    pred, conf = colorize_clip_with_confidence(Engine.load(None), frames, [0], method)
    lab, truth = pred[-1], convert.linear_rec709_to_lab(frames[-1])
    wrong = np.hypot(*(lab[..., 1:] - truth[..., 1:]).transpose(2, 0, 1)) > WITHIN_AB
    marked = to_display_rgb8(np.repeat(convert.luminance(frames[-1])[..., None], 3, axis=2))
    marked[wrong] = (230, 0, 0)
    matte = (np.clip(conf[-1], 0, 1) * 255 + 0.5).astype(np.uint8)
    print(
        f"{clip.name} frame {frame}: mean confidence {conf[-1].mean():.2f}, share within 4 ab {1 - wrong.mean():.2f}",
        file=sys.stderr,
    )
    return np.concatenate(
        [
            tile(to_display_rgb8(convert.lab_to_linear_rec709(lab)), f"{clip.name} {method} {frame}"),
            tile(np.repeat(matte[..., None], 3, axis=2), "confidence"),
            tile(to_display_rgb8(frames[-1]), "truth"),
            tile(marked, "ab off by > 4"),
        ],
        axis=1,
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shots", default="bbb@4340:31,dancer@1380:41", help="CLIP:FRAME,... (frame 1 = the key)")
    p.add_argument("--method", default="flow")
    p.add_argument("--out", default="docs/matte.png")
    args = p.parse_args()
    clips = {c.name: c for c in load_dev_clips()}
    shots = [s.rsplit(":", 1) for s in args.shots.split(",")]
    picture = np.concatenate([row(clips[name], int(frame), args.method) for name, frame in shots], axis=0)
    cv2.imwrite(args.out, np.ascontiguousarray(picture[..., ::-1]), [cv2.IMWRITE_PNG_COMPRESSION, 9])  # RGB -> BGR
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
