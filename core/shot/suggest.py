"""`colorprop suggest-keys`: where the artist should paint the next key.

The shot is propagated from the given keys exactly as `colorize` would (embedded ``run_shot``, nothing
written); each frame's carried confidence (confidence.py) is summarised as its mean and its fraction
of low-confidence pixels. A frame is suggested where the mean confidence *drops* most from the frame
before it in propagation order (the frame nearer the key it was coloured from): a new object, a
dis-occlusion or a cut makes a step, while the slow decay along a run does not. Neighbours of a chosen
frame (± ``SPACING``) are skipped so one event is suggested once.

Prints a short table, or with ``--json`` one JSON object the DCC nodes read:
``{"method", "keys", "count", "suggestions": [{"frame", "drop", "mean_confidence", "low_fraction"}],
"frames": [{"frame", "mean_confidence", "low_fraction"}]}``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

import numpy as np

from colorprop.engine.confidence import frame_summary
from colorprop.engine.engine import Engine, ShotOptions
from colorprop.errors import InputError
from colorprop.shot.pipeline import ExrSequenceSource, FrameResult, KeyImage, load_key, run_shot

SPACING = 2  # frames on each side of a suggestion that are not suggested again


class ConfidenceSink:
    """A FrameSink that keeps only each frame's confidence summary (nothing is written)."""

    pixel_dtype = np.float16  # the carried state is rounded as colorize's default EXR sink rounds it

    def __init__(self):
        self.summary: dict[int, dict[str, float]] = {}

    def exists(self, frame: int) -> bool:
        return False

    def read_back(self, frame: int) -> np.ndarray:
        raise KeyError(frame)

    def write(self, frame: int, result: FrameResult) -> None:
        self.summary[frame] = frame_summary(result.confidence)


@dataclass
class Suggestion:
    frame: int
    drop: float  # mean confidence of the frame before (propagation order) minus this frame's
    mean_confidence: float
    low_fraction: float


def confidence_per_frame(engine: Engine, source, keys: dict[int, KeyImage], options: ShotOptions) -> dict[int, dict]:
    sink = ConfidenceSink()
    run_shot(engine, source, keys, options, sink)
    return sink.summary


def suggest_frames(summary: dict[int, dict[str, float]], keys: list[int], count: int,
                   spacing: int = SPACING) -> list[Suggestion]:
    """The ``count`` frames (never a key) whose mean confidence drops most from their predecessor in
    propagation order: the next frame for those before the first key, the previous one otherwise."""
    frames = sorted(summary)
    first_key = min(keys)
    candidates = []
    for i, f in enumerate(frames):
        if f in keys:
            continue
        j = i + 1 if f < first_key else i - 1
        if not 0 <= j < len(frames):
            continue
        prev = summary[frames[j]]
        candidates.append(Suggestion(f, prev["mean"] - summary[f]["mean"], summary[f]["mean"], summary[f]["low_fraction"]))
    candidates.sort(key=lambda s: (-s.drop, s.frame))
    chosen: list[Suggestion] = []
    for s in candidates:
        if len(chosen) == count:
            break
        if all(abs(s.frame - c.frame) > spacing for c in chosen):
            chosen.append(s)
    return chosen


def run_suggest_command(args) -> int:
    from colorprop.cli.main import parse_keys
    from colorprop.io.sequence import FramePattern, parse_frames

    if args.count < 1:
        raise InputError(f"--count {args.count}: must be at least 1")
    key_paths = parse_keys(args.key)
    frames = parse_frames(args.frames) if args.frames else FramePattern(args.input).existing_frames()
    if not frames:
        raise InputError(f"--input {args.input}: matches no file")
    engine = Engine.load(None)
    method = args.method or ("full" if engine.models is not None else "flow")
    options = ShotOptions.from_dict({"method": method, "colorspace": args.colorspace})
    keys = {f: load_key(p, args.colorspace) for f, p in key_paths.items()}
    summary = confidence_per_frame(engine, ExrSequenceSource(args.input, sorted(frames)), keys, options)
    chosen = suggest_frames(summary, sorted(keys), args.count)
    report = {
        "method": method,
        "keys": sorted(keys),
        "count": args.count,
        "suggestions": [{"frame": s.frame, "drop": round(s.drop, 4), "mean_confidence": round(s.mean_confidence, 4),
                         "low_fraction": round(s.low_fraction, 4)} for s in chosen],
        "frames": [{"frame": f, "mean_confidence": round(v["mean"], 4), "low_fraction": round(v["low_fraction"], 4)}
                   for f, v in sorted(summary.items())],
    }
    if getattr(args, "json", False):
        print(json.dumps(report, indent=1))
        return 0
    print(f"suggested key frames (method {method}, keys {', '.join(map(str, sorted(keys)))}): "
          + (", ".join(str(s.frame) for s in chosen) or "none"))
    print(f"{'frame':>6s} {'drop':>7s} {'mean conf':>9s} {'low (<0.5)':>10s}")
    for s in chosen:
        print(f"{s.frame:6d} {s.drop:7.3f} {s.mean_confidence:9.3f} {s.low_fraction:10.1%}")
    sys.stdout.flush()
    return 0
