"""`colorprop suggest-keys`: where the artist should paint the next key.

The shot is propagated from the given keys exactly as `colorize` would (embedded ``run_shot``, nothing
written); each frame's written confidence (confidence.py: the probability that a pixel's colour is right)
is summarised by ``confidence.frame_summary``. A frame's expected error is its expected share of wrong
pixels, mean(1 − confidence): the weakest frames of the current result, wherever they are in the shot.

The first suggestion is the weakest frame, even next to a key. Each further one is the weakest after
discounting frames near a key or an earlier suggestion: a frame d frames away counts min(1, d / spacing)
of its expected error, spacing = the shot's length / (2 · (count + 1)), so several suggestions spread over
the shot and a frame beside a key only comes back when it is far worse than the rest.

A shot already coloured with ``--confidence`` holds that matte in its output frames: ``confidence_of_output``
summarises it from the files (``suggest-keys --from``), nothing computed again.

The command (table or JSON) is cli/suggest_keys.py; ``colorprop eval --suggest`` measures it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from colorprop.engine.confidence import frame_summary
from colorprop.engine.engine import Engine, ShotOptions
from colorprop.errors import PixelError
from colorprop.io.exr import read_exr
from colorprop.io.sequence import FramePattern
from colorprop.shot.frames import CONFIDENCE_CHANNEL
from colorprop.shot.frames import FrameResult, KeyImage
from colorprop.shot.pipeline import run_shot


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
    expected_error: float  # mean(1 − confidence): the expected share of wrong pixels
    mean_confidence: float
    low_fraction: float


def confidence_per_frame(engine: Engine, source, keys: dict[int, KeyImage], options: ShotOptions) -> dict[int, dict]:
    sink = ConfidenceSink()
    run_shot(engine, source, keys, options, sink)
    return sink.summary


def confidence_of_output(pattern: FramePattern, frames: list[int]) -> dict[int, dict]:
    """{frame: frame_summary} of the ``colorprop.confidence`` channel of each output frame of ``pattern`` (a
    ``colorize --confidence`` result); PixelError naming the file where the channel is not there."""
    summary = {}
    for f in frames:
        image = read_exr(pattern.path(f))
        if CONFIDENCE_CHANNEL not in image.channels:
            raise PixelError(
                f"{image.path}: no {CONFIDENCE_CHANNEL} channel; colour the shot with "
                "`colorize --confidence` (or run suggest-keys on the plates, without --from)"
            )
        summary[f] = frame_summary(image.channel(CONFIDENCE_CHANNEL))
    return summary


def default_spacing(frames: int, count: int) -> float:
    """Frames over which the discount near a key or an earlier suggestion fades out (module docstring)."""
    return max(2.0, frames / (2.0 * (count + 1)))


def suggest_frames(
    summary: dict[int, dict[str, float]], keys: list[int], count: int, spacing: float | None = None
) -> list[Suggestion]:
    """Up to ``count`` frames (never a key) of ``summary`` ({frame: frame_summary}), weakest first, spread
    as the module docstring says."""
    frames = sorted(summary)
    spacing = default_spacing(len(frames), count) if spacing is None else spacing
    expected = {f: 1.0 - summary[f]["mean"] for f in frames if f not in keys}
    chosen: list[int] = []
    while expected and len(chosen) < count:
        anchors = list(keys) + chosen if chosen else []

        def discounted(f: int) -> float:
            d = min((abs(f - a) for a in anchors), default=None)
            return expected[f] if d is None else expected[f] * min(1.0, d / spacing)

        best = max(sorted(expected), key=discounted)  # ties: the earliest frame
        chosen.append(best)
        del expected[best]
    return [Suggestion(f, 1.0 - summary[f]["mean"], summary[f]["mean"], summary[f]["low_fraction"]) for f in chosen]
