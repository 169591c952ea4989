"""The partial-key picture in the README and docs/KEYS.md: one object of the example shot (examples/shot, Big Buck
Bunny, CC-BY: examples/shot/ATTRIBUTION.md) recoloured by a partial key, before and after. From the repo root:

    nice -n 15 .venv/bin/python docs/measure/partial_picture.py [--method full] [--out docs/partial_key.png]

1. colours the shot from its key at frame 1 (before);
2. paints a partial key at frame 12 as an artist recolouring one object would: the bunny cut out of the coloured
   frame (OpenCV's GrabCut inside a box chosen by eye, the dark burrow behind it held out), its edge blurred into a
   soft matte, its colour turned golden brown (Lab ab + TINT); written as an RGBA EXR (colour premultiplied, as EXR
   is) in a temporary folder;
3. colours the shot again from key 1 and that partial key (after), its layer's passes kept in the temporary folder;
4. draws one column per frame: before | what changed (|after - before| in Lab ab, white = |TINT|) | after, and
   writes <out>.json: per frame the share of pixels that changed, the share the layer's carried matte reaches, and
   the largest change outside that matte (0 by design: a pixel no layer reaches is bitwise the run without it).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from colorprop.colour import convert
from colorprop.data.example import example_shot_dir
from colorprop.engine.engine import Engine, ShotOptions
from colorprop.engine.propagate import resize_hw
from colorprop.io.exr import read_exr, write_exr
from colorprop.io.sequence import FramePattern
from colorprop.shot.layers import LAYER_FOLDER, floor_matte
from colorprop.shot.pipeline import colorize_sequence
from colorprop.shot.sheet import labelled, to_display_rgb8

KEY_FRAME = 12
BOX = (80, 2, 262, 228)  # x0, y0, x1, y1 at frame 12 (480x270): the bunny, arms and head, chosen by eye
BURROW_L = 12.0  # Lab L below this is the dark burrow behind the bunny: never the bunny
EDGE_SIGMA = 2.0  # px: the matte's soft edge
TINT = np.float32([15.0, 45.0])  # Lab ab added inside the matte: the gray-blue fur turns golden brown
COLUMNS = (1, 6, 12, 18, 24)
TILE_WIDTH = 150  # five columns in 750 px: the PNG stays under 300 KB


def bunny_matte(rgb: np.ndarray) -> np.ndarray:
    """HxW float32 soft matte of the bunny in the coloured frame ``rgb`` (linear Rec.709)."""
    image = to_display_rgb8(rgb)[..., ::-1].copy()  # BGR, as GrabCut's colour models take it
    mask = np.full(image.shape[:2], cv2.GC_BGD, np.uint8)
    x0, y0, x1, y1 = BOX
    mask[y0:y1, x0:x1] = cv2.GC_PR_FGD
    mask[convert.linear_rec709_to_lab(rgb)[..., 0] < BURROW_L] = cv2.GC_BGD
    models = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.grabCut(image, mask, None, *models, 8, cv2.GC_INIT_WITH_MASK)
    inside = np.isin(mask, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(inside, connectivity=8)
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))  # the bunny; crumbs of grass go
    return cv2.GaussianBlur((labels == largest).astype(np.float32), (0, 0), EDGE_SIGMA)


def paint_partial_key(before: Path, path: Path) -> np.ndarray:
    """Writes the partial key at ``KEY_FRAME`` (RGBA EXR, premultiplied) from the coloured frame ``before``;
    returns its matte."""
    plate = read_exr(before)
    rgb = plate.pixels[..., :3]
    lab = convert.linear_rec709_to_lab(rgb)
    lab[..., 1:] += TINT
    matte = bunny_matte(rgb)
    painted = convert.lab_to_linear_rec709(lab) * matte[..., None]
    write_exr(path, np.dstack([painted, matte]).astype(np.float32), ("R", "G", "B", "A"), plate, "float")
    return matte


def colour(engine: Engine, shot: Path, keys: dict[int, str], out: Path, frames: list[int], method: str, **kw):
    report = colorize_sequence(
        engine, str(shot / "plate.####.exr"), keys, str(out), frames, ShotOptions(method=method), **kw
    )
    print(f"{sorted(keys)}: {len(report.frames_written)} frames in {report.seconds:.1f} s", file=sys.stderr)


def carried_matte(state: Path, frame: int, matte: np.ndarray) -> np.ndarray:
    """The layer's matte at ``frame`` at full resolution, as the composite lays it (layers.ShotLayers.over):
    the painted matte at the key frame, else the stored pass's, resized and floored; 0 where no pass went."""
    if frame == KEY_FRAME:
        return floor_matte(matte)
    direction = "backward" if frame < KEY_FRAME else "forward"
    path = state / LAYER_FOLDER.format(frame=KEY_FRAME) / f"{direction}.{frame}.exr"
    if not path.exists():
        return np.zeros_like(matte)
    h, w = matte.shape
    return floor_matte(np.clip(resize_hw(read_exr(path).channel("matte"), w, h), 0.0, 1.0))


def tile(rgb8: np.ndarray, label: str) -> np.ndarray:
    h = int(round(rgb8.shape[0] * TILE_WIDTH / rgb8.shape[1]))
    out = np.ascontiguousarray(cv2.resize(rgb8, (TILE_WIDTH, h), interpolation=cv2.INTER_AREA))
    return labelled(out, label) if label else out


def column(frame: int, rows: list[tuple[str, np.ndarray]]) -> np.ndarray:
    """One frame's tiles, top to bottom; the first column names its rows, the top row its frame (the bunny's
    head stays uncovered elsewhere)."""
    first = frame == COLUMNS[0]
    labels = [f"{name} {frame}" if first else (str(frame) if i == 0 else "") for i, (name, _) in enumerate(rows)]
    return np.concatenate([tile(image, label) for label, (_, image) in zip(labels, rows)], axis=0)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--method", default=None, help="default: full when the weights are shipped, else flow")
    p.add_argument("--out", default="docs/partial_key.png")
    args = p.parse_args()
    engine = Engine.load()
    method = args.method or ("full" if "full" in engine.methods() else "flow")  # as `colorprop example`
    shot = example_shot_dir()
    frames = FramePattern(str(shot / "plate.####.exr")).existing_frames()
    columns, stats = [], []
    with tempfile.TemporaryDirectory(prefix="partial-picture-") as tmp:
        tmp = Path(tmp)
        before, after = FramePattern(str(tmp / "before.####.exr")), FramePattern(str(tmp / "after.####.exr"))
        colour(engine, shot, {1: str(shot / "key.0001.exr")}, before.pattern, frames, method)
        key = tmp / f"bunny.{KEY_FRAME:04d}.exr"
        matte = paint_partial_key(before.path(KEY_FRAME), key)
        keys = {1: str(shot / "key.0001.exr"), KEY_FRAME: str(key)}
        colour(engine, shot, keys, after.pattern, frames, method, state_dir=tmp / "passes")
        for f in frames:
            was, now = read_exr(before.path(f)).pixels[..., :3], read_exr(after.path(f)).pixels[..., :3]
            reached = carried_matte(tmp / "passes", f, matte) > 0
            d_ab = np.hypot(
                *(convert.linear_rec709_to_lab(now) - convert.linear_rec709_to_lab(was))[..., 1:].transpose(2, 0, 1)
            )
            stats.append(
                {
                    "frame": f,
                    "changed_share": round(float((now != was).any(axis=2).mean()), 4),
                    "carried_share": round(float(reached.mean()), 4),
                    "max_change_outside_carried": float(np.abs(now - was)[~reached].max(initial=0.0)),
                    "max_change_ab": round(float(d_ab.max()), 2),
                }
            )
            print(json.dumps(stats[-1]), file=sys.stderr)
            if f in COLUMNS:
                change = np.clip(d_ab / np.hypot(*TINT), 0, 1)
                gray = np.repeat((change * 255 + 0.5).astype(np.uint8)[..., None], 3, axis=2)
                columns.append(
                    column(f, [("before", to_display_rgb8(was)), ("changed", gray), ("after", to_display_rgb8(now))])
                )
    picture = np.concatenate(columns, axis=1)
    cv2.imwrite(args.out, np.ascontiguousarray(picture[..., ::-1]), [cv2.IMWRITE_PNG_COMPRESSION, 9])  # RGB -> BGR
    summary = {
        "command": "nice -n 15 .venv/bin/python docs/measure/partial_picture.py",
        "method": method,
        "key": {
            "frame": KEY_FRAME,
            "tint_ab": TINT.tolist(),
            "matte_share": round(float((floor_matte(matte) > 0).mean()), 4),
        },
        "frames": stats,
    }
    Path(args.out).with_suffix(".json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"wrote {args.out} ({Path(args.out).stat().st_size // 1024} KB) and its .json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
