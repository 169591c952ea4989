"""Regrade on real footage (docs/KEYS.md). Run from the repo root after `colorprop data fetch`:

    .venv/bin/python docs/measure/regrade_real.py pose2sim     # or dancer

A dev clip's colour plate; the key is frame 1 with a box re-tinted by a fixed ab offset. Reports, per method, over
frames 2..N: mean |Δab| of the propagated change inside the tracked box region vs
the tint (how much of the grade arrives) and the fraction of pixels far from the box that changed at all."""

import sys, json
from pathlib import Path
import numpy as np
from colorprop.colour import convert
from colorprop.engine.engine import Engine, ShotOptions
from colorprop.data.clips import load_dev_clips
from colorprop.shot.frames import ArraySink, ArraySource, KeyImage
from colorprop.shot.pipeline import run_shot

SPACE = "Linear Rec.709 (sRGB)"
engine = Engine.load()
clip = [c for c in load_dev_clips(".cache") if c.name.startswith(sys.argv[1] if len(sys.argv) > 1 else "pose2sim")][0]
frames = clip.frames_linear[:21]
h, w = frames[0].shape[:2]
lab0 = convert.linear_rec709_to_lab(frames[0])
y0, y1, x0, x1 = h // 3, h // 3 + h // 6, w // 3, w // 3 + w // 4
lab0[y0:y1, x0:x1, 1:] += np.float32([15.0, -10.0])
key = convert.lab_to_linear_rec709(lab0).astype(np.float32)
plate = {i + 1: f for i, f in enumerate(frames)}
far = np.ones((h, w), bool)
far[max(0, y0 - h // 4) : y1 + h // 4, max(0, x0 - w // 4) : x1 + w // 4] = False
out = {}
for method in ("flow", "full"):
    sink = ArraySink()
    run_shot(
        engine,
        ArraySource(plate, colorspace=SPACE),
        {1: KeyImage(key, SPACE)},
        ShotOptions(method=method, colorspace=SPACE, regrade=True),
        sink,
    )
    changed_far, in_box = [], []
    for f in range(2, len(frames) + 1):
        d = (
            convert.linear_rec709_to_lab(sink.results[f].rgb)[..., 1:]
            - convert.linear_rec709_to_lab(frames[f - 1])[..., 1:]
        )
        mag = np.hypot(d[..., 0], d[..., 1])
        changed_far.append(float((mag[far] > 0.5).mean()))
        in_box.append(float(np.median(mag[y0 + 2 : y1 - 2, x0 + 2 : x1 - 2])))
    out[method] = {
        "far_changed_fraction_mean": float(np.mean(changed_far)),
        "far_changed_fraction_max": float(np.max(changed_far)),
        "box_change_median_first5": float(np.mean(in_box[:5])),
        "tint": 18.03,
    }
    print(method, json.dumps(out[method]), flush=True)
Path("out").mkdir(exist_ok=True)
json.dump(out, open(f"out/regrade_real_{clip.name.split('@')[0]}.json", "w"), indent=1)
