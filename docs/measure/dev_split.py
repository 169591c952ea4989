"""Recompute what core/data/split.json records about the dev set, from the fetched footage.

    .venv/bin/python docs/measure/dev_split.py [CACHE]      (default .cache)

1. Big Buck Bunny shot cuts (8x8x8 RGB histograms of the decoded frames, a cut where the L1 distance
   between consecutive normalised histograms exceeds 0.5), then for each shot in ``bbb_dev_shots``:
   that it runs cut to cut, holds a dev range, and that no training excerpt touches it; and that every
   training excerpt starts 3 frames after a cut.
2. The colourfulness of each dev range (mean sqrt(a^2+b^2) in Lab over its 51 frames at its width),
   beside the value split.json records.
Prints a report; exits 1 if anything disagrees.
"""

from __future__ import annotations

import sys

import cv2
import numpy as np

from colorprop.colour.convert import linear_rec709_to_lab
from colorprop.data.clips import clip_path, dev_entry_name, load_clip, load_split, open_video
from colorprop.measure.metrics import colourfulness

CUT_L1 = 0.5


def histogram_distances(path) -> list[float]:
    """Per frame after the first, the L1 distance between its normalised 8x8x8 RGB histogram and the previous
    frame's (any clip ``clips.open_video`` reads, animated WebP included)."""
    cap = open_video(path)
    distances, previous = [], None
    try:
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            hist = cv2.calcHist([bgr], [0, 1, 2], None, [8, 8, 8], [0, 256] * 3).ravel()
            hist /= hist.sum()
            if previous is not None:
                distances.append(float(np.abs(hist - previous).sum()))
            previous = hist
    finally:
        cap.release()
    return distances


def shot_cuts(path) -> tuple[list[int], int]:
    """Frame indices that start a new shot (histogram L1 > CUT_L1 to the previous frame), and the frame count."""
    distances = histogram_distances(path)
    return [i + 1 for i, d in enumerate(distances) if d > CUT_L1], len(distances) + 1


def main(cache: str) -> int:
    split = load_split()
    problems = []

    cuts, frames = shot_cuts(clip_path(cache, "bbb"))
    bounds = set(cuts) | {0, frames}
    (bbb,) = [e for e in split["train"] if e["clip"] == "bbb"]
    dev_bbb = [(e["start_frame"], e["start_frame"] + e["num_frames"]) for e in split["dev"] if e["clip"] == "bbb"]
    print(f"bbb: {frames} frames, {len(cuts)} cuts")
    for s0, s1 in split["bbb_dev_shots"]:
        inner = [c for c in cuts if s0 < c < s1]
        ranges = [r for r in dev_bbb if s0 <= r[0] and r[1] <= s1]
        touching = [x for x in bbb["excerpts"] if x[0] < s1 and x[0] + x[1] > s0]
        print(
            f"  dev shot {s0}-{s1} ({s1 - s0} frames): dev ranges {ranges}, cuts inside {inner}, "
            f"training excerpts touching it {touching}"
        )
        if s0 not in bounds or s1 not in bounds or inner or not ranges or touching:
            problems.append(f"bbb dev shot {s0}-{s1}")
    late = [x for x in bbb["excerpts"] if x[0] - 3 not in bounds]
    if late:
        problems.append(f"bbb excerpts not 3 frames after a cut: {late}")

    print("colourfulness (recomputed / split.json):")
    for e in split["dev"]:
        clip = load_clip(cache, e["clip"], e["start_frame"], e["num_frames"], e["width"])
        value = float(np.mean([colourfulness(linear_rec709_to_lab(f)) for f in clip.frames_linear]))
        print(f"  {dev_entry_name(e):24s} {clip.size[0]}x{clip.size[1]}  {value:5.1f} / {e['colourfulness']:5.1f}")
        if abs(round(value, 1) - e["colourfulness"]) > 0.05:
            problems.append(f"colourfulness of {dev_entry_name(e)}")

    print("OK" if not problems else "DISAGREES: " + "; ".join(problems))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else ".cache"))
