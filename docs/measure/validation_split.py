"""Recompute what core/data/split.json records about the validation set, from the fetched footage.

    .venv/bin/python docs/measure/validation_split.py [CACHE]      (default .cache)

For each validation range (51 frames):
1. no cut or jump between two of its frames: a cut where the 8x8x8 RGB histograms of consecutive frames differ
   by more than dev_split.CUT_L1 (L1), a jump where the mean absolute difference of consecutive gray 64x64
   thumbnails exceeds both JUMP_MIN and JUMP_RATIO x its median over the range (the generated clips cut between
   shots of the same colours, which histograms miss; film judder and fast motion stay under it);
   no black frame (a fade: mean gray < BLACK). Dissolves are not detected: the ranges were also checked on contact
   sheets (every 5th frame);
2. its colourfulness (mean sqrt(a^2+b^2) in Lab over its frames at its width) beside the recorded value;
3. the split itself: every validation range from a held-out source (``validation_sources``), no training entry
   from one (``validation.training_entries``), ranges of one clip not overlapping.
Prints a report; exits 1 if anything disagrees.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

from colorprop.colour.convert import linear_rec709_to_lab
from colorprop.data.clips import clip_path, dev_entry_name, load_clip, load_split, read_frames
from colorprop.data.validation import TRAINING_LISTS, is_validation_clip, training_entries, validation_source_keys
from colorprop.measure.metrics import colourfulness

sys.path.insert(0, str(Path(__file__).parent))
from dev_split import CUT_L1, histogram_distances  # noqa: E402

JUMP_MIN = 10.0  # gray levels of 255
JUMP_RATIO = 5.0
BLACK = 15.0


def range_changes(path, start: int, frames: int, hist_l1: list[float]) -> dict:
    """Cuts, jumps and black frames inside one range (frame numbers of the clip, 0-based); ``hist_l1``: the
    clip's ``dev_split.histogram_distances``."""
    encoded, _ = read_frames(path, start, frames, None, linear=False)
    grays = [
        cv2.resize(
            cv2.cvtColor(np.clip(f * 255.0 + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_RGB2GRAY),
            (64, 64),
            interpolation=cv2.INTER_AREA,
        ).astype(np.float32)
        for f in encoded
    ]
    inside = np.array(hist_l1[start : start + frames - 1])  # distance of frame start+1+i to its previous frame
    diff = np.array([np.abs(a - b).mean() for a, b in zip(grays[1:], grays[:-1])])
    jump_at = max(JUMP_MIN, JUMP_RATIO * float(np.median(diff)))
    return {
        "cuts": [start + 1 + int(i) for i in np.flatnonzero(inside > CUT_L1)],
        "jumps": [start + 1 + int(i) for i in np.flatnonzero(diff > jump_at)],
        "black": [start + i for i, g in enumerate(grays) if g.mean() < BLACK],
        "max_hist_l1": float(inside.max()),
        "max_diff": float(diff.max()),
        "median_diff": float(np.median(diff)),
    }


def main(cache: str) -> int:
    split = load_split()
    problems = []
    held_out = validation_source_keys(split)
    print(f"validation sources: {sorted(held_out)}")
    try:
        training_entries(split, TRAINING_LISTS)
    except Exception as e:  # the guard's own message says which clip
        problems.append(str(e))
    distances: dict[str, list[float]] = {}
    for e in split["validation"]:
        name = dev_entry_name(e)
        path = clip_path(cache, e["clip"])
        if e["clip"] not in distances:
            distances[e["clip"]] = histogram_distances(path)
        if not is_validation_clip(e["clip"], split) or e["clip"] in {
            t["clip"] for name in TRAINING_LISTS for t in split.get(name, [])
        }:
            problems.append(f"{name}: not from a held-out source")
        changes = range_changes(path, e["start_frame"], e["num_frames"], distances[e["clip"]])
        clip = load_clip(cache, e["clip"], e["start_frame"], e["num_frames"], e["width"])
        value = float(np.mean([colourfulness(linear_rec709_to_lab(f)) for f in clip.frames_linear]))
        print(
            f"  {name:52s} {clip.size[0]}x{clip.size[1]}  colourfulness {value:5.1f} / {e['colourfulness']:5.1f}  "
            f"max hist L1 {changes['max_hist_l1']:.2f}  diff median {changes['median_diff']:.2f} "
            f"max {changes['max_diff']:.2f}  cuts {changes['cuts']} jumps {changes['jumps']} black {changes['black']}"
        )
        if changes["cuts"] or changes["jumps"] or changes["black"]:
            problems.append(f"{name}: cut, jump or black frame inside")
        if abs(round(value, 1) - e["colourfulness"]) > 0.05:
            problems.append(f"colourfulness of {name}")
    for clip in {e["clip"] for e in split["validation"]}:
        spans = sorted(
            (e["start_frame"], e["start_frame"] + e["num_frames"]) for e in split["validation"] if e["clip"] == clip
        )
        if any(a1 > b0 for (_, a1), (b0, _) in zip(spans, spans[1:])):
            problems.append(f"{clip}: overlapping ranges")
    print("OK" if not problems else "DISAGREES: " + "; ".join(problems))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else ".cache"))
