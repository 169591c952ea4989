"""Frame ranges and frame-numbered file patterns.

A pattern names every frame of a shot with one frame token: ``####`` (padding = number of ``#``),
``@@@@`` (same, Houdini/Nuke style), ``%04d`` or ``%d`` (printf). Frame numbers may be negative;
the sign is written before the padded digits (``-001``), as Nuke does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from colorprop.errors import InputError, SequenceError

# One chunk of a frame spec: "7", "1-100", "1-100x2", "-5--1" (negative frames allowed).
_CHUNK_RE = re.compile(r"^\s*(-?\d+)\s*(?:-\s*(-?\d+)\s*(?:x\s*(\d+))?)?\s*$")
# Frame tokens, in the order they are searched for; the first match wins.
_TOKEN_RE = re.compile(r"(#+|@+|%0?(\d*)d)")
MAX_FRAMES_PER_SHOT = 100_000  # a frame range or shot longer than this is refused, never expanded
MAX_PADDING = 16  # digits in a frame token that a job accepts (frame numbers have at most 10)
MAX_FRAME_NUMBER = 10**9 - 1  # |frame| bound (the server protocol's too): file names stay short, ints stay small


def parse_frames(spec: str) -> list[int]:
    """Frame numbers for ``spec``: ``"7"``, ``"1-100"``, ``"1-100x2"``, ``"1-10,20-30"``.

    Returns the frames in the order written, duplicates removed. Raises InputError naming the
    spec (and the bad chunk) for anything else, including an empty spec, a descending range, a
    zero step, a frame number beyond ``MAX_FRAME_NUMBER`` or more than ``MAX_FRAMES_PER_SHOT`` frames (counted
    before any list is made).
    """
    if not isinstance(spec, str) or not spec.strip():
        raise InputError(f"frame range {spec!r}: empty; expected e.g. '1-100', '1-100x2', '7' or '1-10,20-30'")
    chunks = [_parse_chunk(chunk, spec) for chunk in spec.split(",")]
    count = sum((r.stop - r.start - 1) // r.step + 1 for r in chunks)  # len() of a range past 2**63 raises
    if count > MAX_FRAMES_PER_SHOT:
        raise InputError(f"frame range {spec!r}: {count} frames; at most {MAX_FRAMES_PER_SHOT} in one shot")
    for r in chunks:
        for frame in (r.start, r[-1]):
            if abs(frame) > MAX_FRAME_NUMBER:
                raise InputError(
                    f"frame range {spec!r}: frame {frame} is outside -{MAX_FRAME_NUMBER}..{MAX_FRAME_NUMBER}"
                )
    frames: list[int] = []
    for r in chunks:
        frames.extend(r)
    return list(dict.fromkeys(frames))


def _parse_chunk(chunk: str, spec: str) -> range:
    match = _CHUNK_RE.match(chunk)
    if match is None:
        raise InputError(f"frame range {spec!r}: cannot parse {chunk.strip()!r}; expected e.g. '1-100x2'")
    first = _number(match.group(1), spec)
    last = _number(match.group(2), spec) if match.group(2) is not None else first
    step = _number(match.group(3), spec, "step") if match.group(3) is not None else 1
    if step <= 0:
        raise InputError(f"frame range {spec!r}: step in {chunk.strip()!r} must be >= 1")
    if last < first:
        raise InputError(f"frame range {spec!r}: {chunk.strip()!r} ends before it starts")
    return range(first, last + 1, step)


def _number(digits: str, spec: str, what: str = "frame") -> int:
    """``digits`` as an int; a number of hundreds of digits (which Python's int() refuses past 4300) is out of
    range whatever it is."""
    if len(digits.lstrip("-").lstrip("0")) > 100:
        raise InputError(
            f"frame range {spec!r}: {what} {_shortened(digits)} is outside -{MAX_FRAME_NUMBER}..{MAX_FRAME_NUMBER}"
        )
    return int(digits)


def _shortened(text: str, keep: int = 24) -> str:
    return text if len(text) <= keep else f"{text[:keep]}... ({len(text)} characters)"


class FramePattern:
    """A frame-numbered path such as ``plates/sh010.####.exr`` or ``out/sh010.%04d.exr``.

    ``path(frame)`` fills the token; ``existing_frames()`` lists the frames on disk.
    A string without a frame token raises SequenceError (use a plain Path for a single file); so does a frame
    token padded to more than ``MAX_PADDING`` digits, when a path is made (``check_padding``).
    """

    def __init__(self, pattern: str | Path):
        self.pattern = str(pattern)
        path = Path(self.pattern)
        match = _TOKEN_RE.search(path.name)
        if match is None:
            raise SequenceError(
                f"pattern {self.pattern!r}: no frame token in the file name; use '####', '@@@@' or '%04d'"
            )
        self._folder = path.parent
        self._prefix = path.name[: match.start()]
        self._suffix = path.name[match.end() :]
        self.token = match.group(1)
        padding = _padding(match)
        if len(padding) > 1000:  # int() refuses thousands of digits; no file name is that long
            raise self._too_wide(padding)
        self.padding = int(padding)  # as written: refused beyond MAX_PADDING by check_padding

    def check_padding(self) -> None:
        """SequenceError saying the padding read unless it is at most ``MAX_PADDING`` digits ('%099999999d' would
        make every path 100 MB long). ``path`` and ``existing_frames`` check it; the pre-flight checks it first."""
        if self.padding > MAX_PADDING:
            raise self._too_wide(str(self.padding))

    def _too_wide(self, padding: str) -> SequenceError:
        return SequenceError(
            f"pattern {self.pattern!r}: the frame token {_shortened(self.token)!r} pads frame numbers "
            f"to {_shortened(padding)} digits; at most {MAX_PADDING}"
        )

    @property
    def is_pattern(self) -> bool:
        """Always True: construction fails for strings without a frame token."""
        return True

    def path(self, frame: int) -> Path:
        """The file of ``frame``, zero-padded to ``padding`` digits (sign before the digits)."""
        self.check_padding()
        sign = "-" if frame < 0 else ""
        return self._folder / f"{self._prefix}{sign}{abs(int(frame)):0{self.padding}d}{self._suffix}"

    def existing_frames(self) -> list[int]:
        """Sorted frame numbers whose files exist in the pattern's folder.

        Files whose digit count does not fit the padding (``12`` for ``####``) are not frames of
        this pattern; wider numbers (``12345`` for ``####``) are, since padding is a minimum.
        """
        self.check_padding()
        if not self._folder.is_dir():
            return []
        regex = self._file_regex()
        frames = []
        for entry in self._folder.iterdir():
            match = regex.match(entry.name)
            if match is not None and entry.is_file():
                frames.append(int(match.group(1)))
        return sorted(frames)

    def padding_on_disk(self) -> str | None:
        """When no file matches: what the files of the same name with another frame padding are padded to, e.g.
        "3 digits (plate.001.exr ... plate.024.exr): use 'plate.###.exr'"; None when there are none."""
        if not self._folder.is_dir():
            return None
        regex = re.compile(rf"^{re.escape(self._prefix)}(-?)(\d+){re.escape(self._suffix)}$")
        found: dict[int, list[str]] = {}
        for entry in self._folder.iterdir():
            match = regex.match(entry.name)
            if match is not None and entry.is_file():
                found.setdefault(len(match.group(2)), []).append(entry.name)
        if not found:
            return None
        width, names = max(found.items(), key=lambda item: len(item[1]))  # the padding most files have
        names.sort()
        shown = names[0] if len(names) == 1 else f"{names[0]} ... {names[-1]}"
        hint = Path(self.pattern).with_name(f"{self._prefix}{'#' * width}{self._suffix}").name
        return f"{width} digits ({shown}): use '{hint}'"

    def _file_regex(self) -> re.Pattern[str]:
        digits = rf"\d{{{self.padding},}}" if self.padding > 1 else r"\d+"
        return re.compile(rf"^{re.escape(self._prefix)}(-?{digits}){re.escape(self._suffix)}$")

    def __repr__(self) -> str:
        return f"FramePattern({self.pattern!r})"

    def __str__(self) -> str:
        return self.pattern


def _padding(match: re.Match[str]) -> str:
    """The token's padding as written (text: int() refuses thousands of digits)."""
    token = match.group(1)
    if token[0] in "#@":
        return str(len(token))
    return match.group(2).lstrip("0") or "1"


def check_no_overwrite(input_pattern: FramePattern, output_pattern: FramePattern, frames: Iterable[int]) -> None:
    """Raise SequenceError if writing ``frames`` through ``output_pattern`` would replace an input.

    Paths are compared resolved (symlinks, ``..``), and every output frame is checked against
    every input frame, so ``out.####`` vs ``out.%03d`` collisions on other frames are found too.
    """
    frames = list(frames)
    inputs = {input_pattern.path(f).resolve(): f for f in frames}
    for frame in frames:
        out = output_pattern.path(frame).resolve()
        if out in inputs:
            raise SequenceError(
                f"output {output_pattern.pattern!r} frame {frame} is {out}, which is input frame "
                f"{inputs[out]} of {input_pattern.pattern!r}; choose another output path"
            )
