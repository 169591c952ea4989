"""The plan of a shot: its frames cut into segments around the keys, and the groups a farm task colours."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from colorprop.errors import InputError
from colorprop.shot.frames import format_frames
from colorprop.shot.passes import DIRECTIONS
from colorprop.shot.preflight import check_keys_among_frames


class Segment(NamedTuple):
    """A piece of the plan: ``kind`` "key" (a=b=the key, frames [key]), "forward" (from key a to the shot's end),
    "backward" (from the shot's start up to key b) or "between" (the span between keys a and b); ``frames``
    ascending, the keys themselves excluded but for "key"."""

    kind: str
    a: int | None
    b: int | None
    frames: list[int]


def plan_segments(frames: list[int], keys: list[int]) -> list[Segment]:
    """The shot's frames in segments, in order: the frames before the first key, then per key the key and the
    frames up to the next key (or the shot's end)."""
    check_keys_among_frames(keys, frames)
    segments = []
    head = [f for f in frames if f < keys[0]]
    if head:
        segments.append(Segment("backward", None, keys[0], head))
    for i, k in enumerate(keys):
        segments.append(Segment("key", k, k, [k]))
        following = keys[i + 1] if i + 1 < len(keys) else None
        run = [f for f in frames if f > k and (following is None or f < following)]
        if run:
            kind = "forward" if following is None else "between"
            segments.append(Segment(kind, k, following, run))
    return segments


@dataclass
class KeySegment:
    """Frames a farm task can colour alone: one key, the frames up to the next key (and, for the first
    key, the frames before it). ``keys`` are the keys it reads (the next one too, for the blend)."""

    key: int
    frames: list[int]
    keys: list[int]

    def to_json(self) -> dict:
        return {
            "key": self.key,
            "frames": format_range(self.frames),
            "first": self.frames[0],
            "last": self.frames[-1],
            "count": len(self.frames),
            "keys": self.keys,
        }


def key_segments(frames: list[int], keys: list[int]) -> list[KeySegment]:
    """Group ``plan_segments`` by owning key. Each group depends only on the plate and the key images,
    never on another group's output, so groups run as independent tasks with identical results."""
    groups: list[KeySegment] = []
    head: list[int] = []
    for kind, a, b, run in plan_segments(frames, sorted(keys)):
        if kind == "backward":
            head = list(run)
        elif kind == "key":
            groups.append(KeySegment(a, head + [a], [a]))
            head = []
        else:
            groups[-1].frames.extend(run)
            if kind == "between":
                groups[-1].keys.append(b)
    return groups


def key_segment(frames: list[int], keys: list[int], key: int) -> KeySegment | None:
    """The ``key_segments`` entry of key frame ``key``, or None when ``key`` is not a key."""
    return next((s for s in key_segments(frames, keys) if s.key == key), None)


def format_range(frames: list[int]) -> str:
    """Ascending frames as a spec ``parse_frames`` reads back: ``[1, 2, 3, 7]`` -> ``"1-3,7"``."""
    chunks: list[str] = []
    start = prev = frames[0]
    for f in frames[1:] + [None]:
        if f is not None and f == prev + 1:
            prev = f
            continue
        chunks.append(str(start) if start == prev else f"{start}-{prev}")
        if f is not None:
            start = prev = f
    return ",".join(chunks)


def check_segment_request(
    segment: int | None, direction: str | None, state_dir: object | None, full_keys: list[int]
) -> None:
    """A farm task's ``--segment KEY`` [``--direction D --state-dir DIR``] against the shot's full keys (partial
    keys cut no segment): InputError (exit 2) naming the option. The CLI calls it before the output folder is
    made, ``run_shot`` again for its other callers; one check, one message."""
    if direction is not None and (segment is None or state_dir is None or direction not in DIRECTIONS):
        raise InputError(
            f"--direction {direction}: needs --segment KEY, --state-dir DIR (the pass is stored there) and one of "
            f"{', '.join(DIRECTIONS)}"
        )
    if segment is not None and segment not in full_keys:
        raise InputError(f"--segment {segment}: not a full key frame (full keys: {format_frames(full_keys) or 'none'})")
