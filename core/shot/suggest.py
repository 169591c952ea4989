"""`colorprop suggest-keys`: where the artist should paint the next key.

The shot is propagated from the given keys exactly as `colorize` would (embedded ``run_shot``, nothing
written); each frame's carried confidence (confidence.py) is summarised as its mean and its fraction
of low-confidence pixels. A frame is suggested where the mean confidence *drops* most from the frame
before it in propagation order (the frame nearer the key it was coloured from): a new object, a
dis-occlusion or a cut makes a step, while the slow decay along a run does not. Neighbours of a chosen
frame (± ``SPACING``) are skipped so one event is suggested once.

The command (table or JSON) is cli/suggest_keys.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from colorprop.engine.confidence import frame_summary
from colorprop.engine.engine import Engine, ShotOptions
from colorprop.shot.pipeline import FrameResult, KeyImage, run_shot

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
