"""What an artist types into a DCC plug-in, read the same way in every host: key frames, frame ranges, frame
patterns (``####``, ``@@@@``, ``%04d``, as ``colorprop.io.sequence`` reads them; ``tests/test_dcc.py`` checks
both against one table), the server address, where the confidence matte goes, and the status lines of a run
(frames done, key suggestions, the server's notes). ``ColorizeError`` is what the artist must fix. Standard
library and numpy only (``dcc`` offers every name here)."""

from __future__ import annotations

import os
import re
import time
from typing import Any, Iterable

import numpy as np

from . import protocol as P

_TOKEN_RE = re.compile(r"(#+|@+|%0?(\d*)d)")  # as colorprop.io.sequence: the first match in the file name wins


class ColorizeError(Exception):
    """Something the artist must fix; the host shows the message as it is."""


def parse_keyframes(text: str) -> list[int]:
    """``"1, 12 24"`` -> ``[1, 12, 24]`` (sorted, unique). ColorizeError on anything else."""
    frames = set()
    for tok in re.split(r"[\s,;]+", (text or "").strip()):
        if not tok:
            continue
        if not re.fullmatch(r"-?\d+", tok):
            raise ColorizeError(f"keyframes: {tok!r} is not a frame number (write e.g. '1, 12, 24')")
        frames.add(int(tok))
    return sorted(frames)


def add_keyframe(text: str, frame: int) -> str:
    """The keyframes text with ``frame`` added (unreadable text is replaced)."""
    try:
        frames = parse_keyframes(text)
    except ColorizeError:
        frames = []
    return ", ".join(str(f) for f in sorted(set(frames) | {int(frame)}))


def parse_frame_range(text: str, first: int, last: int) -> list[int]:
    """``"1-24"``, ``"1-24x2"``, ``"5"``, ``"1-10,20-30"`` (sorted, unique); empty means ``first-last``."""
    text = (text or "").strip()
    if not text:
        return list(range(int(first), int(last) + 1))
    frames: set[int] = set()
    for part in re.split(r"[\s,]+", text):
        m = re.fullmatch(r"(-?\d+)(?:-(-?\d+)(?:x(\d+))?)?", part)
        if not m:
            raise ColorizeError(f"frame range: {part!r} is not like '1-24', '1-24x2' or '7'")
        a = int(m.group(1))
        b = int(m.group(2)) if m.group(2) is not None else a
        step = int(m.group(3) or 1)
        if b < a or step < 1:
            raise ColorizeError(f"frame range: {part!r} runs backwards or has a zero step")
        frames.update(range(a, b + 1, step))
    return sorted(frames)


def frame_path(pattern: str, frame: int) -> str:
    """The path of one frame: ``/x/plate.####.exr``, ``.@@@@.``, ``.%04d.`` or ``.%d.`` filled with
    ``frame`` (zero-padded; a negative frame's sign comes before the digits, as Nuke writes it)."""
    folder, name = os.path.split(pattern)
    m = _TOKEN_RE.search(name)
    if m is None:
        raise ColorizeError(f"{pattern!r} has no frame number token (####, @@@@ or %04d)")
    token = m.group(1)
    padding = len(token) if token[0] in "#@" else int(m.group(2) or 1)
    sign = "-" if frame < 0 else ""
    return os.path.join(folder, f"{name[: m.start()]}{sign}{abs(int(frame)):0{padding}d}{name[m.end() :]}")


def matte_pattern(output_pattern: str) -> str:
    """Where the confidence matte goes as an image of its own, beside the colour:
    ``<dir>/<name>.####.exr`` -> ``<dir>/<name>_confidence.####.exr``."""
    folder, name = os.path.split(output_pattern)
    stem, dot, rest = name.partition(".")
    return os.path.join(folder, f"{stem}_confidence{dot}{rest}")


def matte_path(output_pattern: str, frame: int) -> str:
    """The confidence matte file of one frame: :func:`frame_path` of :func:`matte_pattern`."""
    return frame_path(matte_pattern(output_pattern), frame)


def matte_rgb(confidence: np.ndarray) -> np.ndarray:
    """HxW confidence in [0, 1] -> HxWx3 gray float32, what a viewer shows as it is."""
    return np.repeat(np.asarray(confidence, np.float32)[..., None], 3, axis=2)


def check_address(address: str) -> str:
    """The address stripped, or ColorizeError when it is not a ZeroMQ endpoint we can connect to."""
    address = (address or "").strip()
    if not P.is_address(address):
        raise ColorizeError(
            f"server address {address!r} should look like {P.DEFAULT_ADDRESS} (or ipc://PATH, inproc://NAME)"
        )
    return address


def check_frames(frames: list[int], keyframes: list[int]) -> None:
    """The frames to colour are not empty and hold every key frame."""
    if not frames:
        raise ColorizeError("the frame range is empty")
    if not keyframes:
        raise ColorizeError("no keyframes: add at least one frame with its coloured image")
    outside = sorted(set(keyframes) - set(frames))
    if outside:
        raise ColorizeError(f"keyframe(s) {outside} lie outside the frames {frames[0]}-{frames[-1]}")


# ---- suggested key frames: the list an artist picks from and the status lines


NO_SUGGESTIONS = "(none yet: press suggest keys)"


def suggestion_labels(suggestions: list[dict]) -> list[str]:
    """One line per suggested frame, weakest first, for a list the artist picks from:
    ``"frame 12: ~31% of pixels likely wrong"``; :func:`suggestion_frame` reads the frame back."""
    return [f"frame {int(s['frame'])}: ~{float(s['expected_error']):.0%} of pixels likely wrong" for s in suggestions]


def suggested_frames_text(frames: Iterable[int]) -> str:
    """The suggested frames for a status line, weakest first: ``"12, 40"``, or ``"none"``."""
    return ", ".join(str(int(f)) for f in frames) or "none"


def last_run_suggestions_status(frames: Iterable[int]) -> str:
    """The status line of Suggest Keys when the settings are unchanged since the run that made them."""
    return f"suggested keys from the last run: {suggested_frames_text(frames)}"


def done_status(
    count: int, output_pattern: str, suggestions: list[dict] | None = None, notes: Iterable[str] = ()
) -> str:
    """The status line once a run's results are written: ``"done: 6 frames -> /o/x.####.exr"``, and with
    ``suggestions`` (a host that lists them) ``"; suggested keys: 12, 40"`` (``none`` for an empty list), then
    ``"; note: ..."`` for each of the job's notes (:func:`note_text`)."""
    text = f"done: {count} frames -> {output_pattern}"
    if suggestions is not None:
        text += f"; suggested keys: {suggested_frames_text(s['frame'] for s in suggestions)}"
    return "; ".join([text, *map(note_text, notes)])


def note_text(note: str) -> str:
    """A note of the server's pre-flight (``protocol.EV_NOTE``: it stopped nothing) for a status line."""
    return f"note: {note}"


class FrameCounter:
    """Frames done of a job, as (fraction, message) for a progress bar."""

    def __init__(self, total: int):
        self.total, self.done, self.started = total, 0, time.monotonic()

    def count(self, frame: Any) -> tuple[float, str]:
        self.done = min(self.total, self.done + 1)
        rate = (time.monotonic() - self.started) / self.done
        return self.done / self.total, f"frame {frame}: {self.done}/{self.total} ({rate:.1f} s/frame)"

    def finished(self) -> str:
        return f"done: {self.total} frames in {time.monotonic() - self.started:.1f} s"


def suggestion_frame(label: str) -> int | None:
    """The frame of a :func:`suggestion_labels` line (None for anything else, e.g. ``NO_SUGGESTIONS``)."""
    m = re.match(r"frame (-?\d+):", label or "")
    return int(m.group(1)) if m else None
