"""Two keys (first, last) on dev clips (default: the 5 of docs/KEYS.md's two-key table): mean Lab-PSNR over the first N
scored frames, per method,
through the product's pipeline (``run_shot``). Used to measure the independent forward/backward passes that
the farm split needs against the forward run that carried the blend (docs/FARM.md):

    .venv/bin/python docs/measure/two_key_split.py --methods full,flow --json out/two_key_split.json
"""

import argparse
import json
import time

import numpy as np

from colorprop.colour import convert
from colorprop.data.clips import load_dev_clips
from colorprop.engine.engine import Engine
from colorprop.measure.evaluate import colorize_clip
from colorprop.measure.metrics import lab_psnr

p = argparse.ArgumentParser()
p.add_argument("--methods", default="full,flow")
p.add_argument("--json", default="out/two_key_split.json")
p.add_argument(
    "--clips",
    default="dancer@1380,pose2sim_t2_cam01@0,carphone@0,bbb@4340,franck@1080",
    help="dev clips (default: the 5 of docs/KEYS.md's two-key table)",
)
args = p.parse_args()
engine = Engine.load()
wanted = args.clips.split(",")
clips = sorted((c for c in load_dev_clips(None) if c.name in wanted), key=lambda c: wanted.index(c.name))
ns = (10, 20, 30, 40, 49)
out = {}
for method in args.methods.split(","):
    per_clip = {}
    for clip in clips:
        t0 = time.perf_counter()
        truth = [convert.linear_rec709_to_lab(f) for f in clip.frames_linear]
        last = len(truth) - 1
        pred = colorize_clip(engine, clip.frames_linear, [0, last], method)
        psnr = [lab_psnr(pred[i], truth[i]) for i in range(1, last)]
        per_clip[clip.name] = {str(n): float(np.mean(psnr[:n])) for n in ns}
        print(
            method,
            clip.name,
            {n: round(v, 3) for n, v in per_clip[clip.name].items()},
            f"{time.perf_counter() - t0:.0f} s",
            flush=True,
        )
    mean = {str(n): float(np.mean([c[str(n)] for c in per_clip.values()])) for n in ns}
    print(method, "mean", {n: round(v, 3) for n, v in mean.items()}, flush=True)
    out[method] = {"per_clip": per_clip, "mean": mean}
with open(args.json, "w") as f:
    json.dump(out, f, indent=1)
