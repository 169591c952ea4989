"""The one pre-flight: what is checked before the first frame of a sequence is written.

Every path that colours an EXR sequence calls ``check_sequence_job`` before it reads a pixel or writes
a byte: the embedded CLI (farm tasks included: ``colorize --segment``), ``colorize --server`` in both
data modes (on the client, before anything is sent), the server itself when it opens a shared-path
job, and ``suggest-keys`` (which writes nothing). If any check fails nothing on disk has changed;
when all pass, the output folders are created and nothing else.

Checks, cheapest first:

1. frames: 1 to ``MAX_FRAMES_PER_SHOT`` of them;
2. patterns: input and output are frame patterns (a frame token of at most ``MAX_PADDING`` digits), the
   output an OpenEXR one (``.exr``);
3. keys: at least one, every key frame among the frames (partial keys too); a separate matte only for a key;
4. the output never overwrites an input frame, a key or a key's matte (paths compared resolved);
5. plates: every frame is an EXR file (not missing, not a folder) whose header reads, with colour
   channels (R,G,B or Y) and the first frame's size;
6. sizes: at least ``MIN_SIDE`` pixels on each side, at plate size and at the working size;
7. colour spaces: ``--colorspace``, else the plate's metadata; each key's;
8. keys: readable images (EXR, PNG, TIFF, JPEG, DPX, ...), the plate's size, finite; a partial key's matte
   (its alpha, or ``key_mattes``) the key's size, finite, not 0 everywhere, clamped into [0, 1] with a note;
   without ``options.regrade``, at least one full key;
9. output folders: folders (not files) that can be written, or can be created (exit 4 otherwise).

The checks a frame's pixels need (NaN/Inf in the channels the engine reads, the size of each frame
in memory) run in ``working.ShotColour`` with the functions below, on every path, in-band included.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ContextManager, Iterable

import numpy as np

from colorprop.colour import convert
from colorprop.engine.engine import DEFAULT_WORKING_WIDTH
from colorprop.errors import ExrWriteError, InputError, PixelError, SequenceError
from colorprop.io.exr import Plate, check_colour_channels, check_finite, image_channels, read_exr_header
from colorprop.io.sequence import MAX_FRAMES_PER_SHOT, FramePattern, check_no_overwrite
from colorprop.shot.frames import (
    ExrSequenceSink,
    ExrSequenceSource,
    KeyImage,
    format_frames,
    load_key,
    load_matte,
    output_layout,
)

# OpenCV's DIS optical flow fails below this many pixels on a side (an error after the first frame, or
# a crash for some sizes: 64x12 and 128x15 crash, 16 on each side works at every width up to 8192).
MIN_SIDE = 16

PathCheck = Callable[[Path], Path]  # e.g. the server's allowed-roots check; returns the resolved path
FileOpener = Callable[[Path], ContextManager[Path]]  # e.g. the server's read-by-descriptor (AllowedRoots.opened_file)


@dataclass
class CheckedShot:
    """A sequence job that passed the pre-flight: what it reads, with the keys already loaded."""

    input: FramePattern
    output: FramePattern | None
    frames: list[int]
    keys: dict[int, KeyImage]
    headers: dict[int, Plate]  # every plate frame's header (no pixels)
    colorspace: str  # the plate's, canonical
    write_confidence: bool = False
    notes: list[str] = field(default_factory=list)  # worth telling the user, not errors

    def source(self) -> ExrSequenceSource:
        return ExrSequenceSource(self.input.pattern, self.frames)

    def sink(self, pixel_type: str = "half") -> ExrSequenceSink:
        """The output sequence: frames checked on resume (``expected_output``), the colour space stamped."""
        return ExrSequenceSink(
            self.output.pattern,
            pixel_type,
            self.write_confidence,
            expect=self.expected_output,
            colorspace=self.colorspace,
        )

    def expected_output(self, frame: int) -> tuple[tuple[int, int], tuple[str, ...]]:
        """((width, height), channels) of a complete output frame ``frame`` (for ``--skip-existing``)."""
        header = self.headers[frame]
        return (
            (header.spec_info.width, header.spec_info.height),
            output_layout(header.channels, self.write_confidence)[1],
        )


def check_sequence_job(
    input_pattern: str,
    keys: dict[int, str],
    output_pattern: str | None,
    frames: Iterable[int],
    options,
    allow: PathCheck | None = None,
    key_colorspace: str | None = None,
    open_file: FileOpener | None = None,
    key_mattes: dict[int, str] | None = None,
) -> CheckedShot:
    """Run every check of the module docstring; ``output_pattern`` None: nothing will be written.

    ``options``: a ``ShotOptions`` (colorspace, working_width, write_confidence). ``allow(path)`` is
    called on every path the job will read or write before it is touched (the server passes its
    allowed-roots check). ``key_colorspace``: the keys' colour space (``frames.load_key``). ``open_file(path)``:
    a context manager giving a path that names the opened file, through which a key is read (the server's
    ``AllowedRoots.opened_file``: what is read is what was checked). ``key_mattes``: frame -> a separate
    matte image for the key at that frame (--key-matte; ``frames.load_matte``), read like the keys."""
    allow = allow or (lambda path: path)
    frames = check_frames(frames)
    inp = check_pattern(input_pattern, "--input")
    out = check_pattern(output_pattern, "--output") if output_pattern is not None else None
    if out is not None:
        check_output_is_exr(out)
    check_keys_among_frames(keys, frames)
    check_mattes_have_keys(key_mattes or {}, keys)
    key_paths = {k: allow(Path(p)) for k, p in keys.items()}
    matte_paths = {k: allow(Path(p)) for k, p in (key_mattes or {}).items()}
    if out is not None:
        check_output_overwrites_nothing(inp, out, frames, key_paths, allow, matte_paths)
    check_plates_exist(inp, frames, allow)
    headers = {f: read_plate_header(inp.path(f)) for f in frames}
    first = headers[frames[0]]
    width, height = first.spec_info.width, first.spec_info.height
    for f, header in headers.items():
        if (header.spec_info.width, header.spec_info.height) != (width, height):
            raise PixelError(
                f"{header.path}: size {header.spec_info.width}x{header.spec_info.height} differs from "
                f"frame {frames[0]}'s {width}x{height}"
            )
    check_size(width, height, options.working_width, str(first.path))
    notes = []
    if options.working_width > width and options.working_width != DEFAULT_WORKING_WIDTH:  # asked for, not the default
        notes.append(
            f"--working-width {options.working_width} is above the plate width {width}: the networks run "
            f"at the plate's {width}x{height}"
        )
    space = plate_colorspace(options.colorspace, first.colorspace, str(first.path))
    loaded = {
        k: read_key(path, options.colorspace, key_colorspace, open_file, matte_paths.get(k))
        for k, path in key_paths.items()
    }
    for key in loaded.values():
        check_key(key, (width, height), space, notes)
    check_full_key_or_regrade(loaded, options.regrade)
    if out is not None:
        make_output_folders(out, frames)  # inside what ``allow`` allows: its output frame paths were
    return CheckedShot(inp, out, frames, loaded, headers, space, options.write_confidence, notes)


def check_frames(frames: Iterable[int]) -> list[int]:
    frames = list(frames)
    if not frames:
        raise SequenceError("no frames to colour")
    if len(frames) > MAX_FRAMES_PER_SHOT:
        raise SequenceError(f"{len(frames)} frames: at most {MAX_FRAMES_PER_SHOT} in one shot")
    return frames


def check_output_is_exr(out: FramePattern) -> None:
    """colorprop writes scene-linear OpenEXR only: every plate channel kept, HDR unclipped, the colour
    space stamped; an 8-bit PNG/JPEG/TIFF would clip and quantise what a comp reads back."""
    if out.path(0).suffix.lower() != ".exr":
        raise SequenceError(
            f"--output {out.pattern!r}: colorprop writes OpenEXR sequences only ('.exr'); to look at "
            "a result as PNG/JPEG, draw a contact sheet with `colorprop preview`"
        )


def check_pattern(pattern: str, name: str) -> FramePattern:
    """``pattern`` as a FramePattern; its SequenceError (no frame token, too much padding) names option ``name``."""
    try:
        checked = FramePattern(pattern)
        checked.check_padding()
    except SequenceError as err:
        raise SequenceError(f"{name}: {err}") from None
    return checked


def check_keys_among_frames(keys: Iterable[int], frames: list[int]) -> None:
    keys = sorted(keys)
    if not keys:
        raise InputError("at least one key frame is needed (--key FRAME=PATH)")
    present = set(frames)
    missing = [k for k in keys if k not in present]
    if missing:
        raise InputError(
            f"key frame(s) {format_frames(missing)} are not among the frames to process "
            f"({format_frames(frames)}); include them in --frames"
        )


def check_mattes_have_keys(key_mattes: Iterable[int], keys: Iterable[int]) -> None:
    """InputError naming the frames of a separate matte (--key-matte) that have no key (--key)."""
    orphans = sorted(set(key_mattes) - set(keys))
    if orphans:
        raise InputError(
            f"--key-matte for frame(s) {format_frames(orphans)}: no --key at that frame; a matte says where "
            "a key colours, give the key too (--key FRAME=PATH)"
        )


def check_output_overwrites_nothing(
    inp: FramePattern,
    out: FramePattern,
    frames: list[int],
    key_paths: dict[int, Path],
    allow: PathCheck,
    matte_paths: dict[int, Path] | None = None,
) -> None:
    check_no_overwrite(inp, out, frames)
    outputs = {allow(out.path(f)).resolve(): f for f in frames}
    named = [("key", k, p) for k, p in sorted(key_paths.items())]
    named += [("key matte", k, p) for k, p in sorted((matte_paths or {}).items())]
    for what, key_frame, key_path in named:
        hit = outputs.get(Path(key_path).resolve())
        if hit is not None:
            raise SequenceError(
                f"--output {out.pattern!r} frame {hit} would overwrite the {what} {key_path} "
                f"(frame {key_frame}); choose another output path"
            )


def check_plates_exist(inp: FramePattern, frames: list[int], allow: PathCheck) -> None:
    """SequenceError listing the frames whose file is missing, or is a folder."""
    paths = {f: allow(inp.path(f)) for f in frames}
    missing = [f for f, p in paths.items() if not p.exists()]
    if len(missing) == len(frames):
        on_disk = inp.padding_on_disk()
        raise SequenceError(
            f"{inp.pattern}: matches no file for frames {format_frames(frames)}"
            + (f"; the files of that name are padded to {on_disk}" if on_disk else "")
        )
    if missing:
        raise SequenceError(
            f"{inp.pattern}: missing frame(s) {format_frames(missing)} (first missing file: {inp.path(missing[0])})"
        )
    folders = [f for f, p in paths.items() if p.is_dir()]
    if folders:
        raise SequenceError(
            f"{inp.pattern}: frame(s) {format_frames(folders)} are folders, not EXR files "
            f"(first: {inp.path(folders[0])})"
        )


def read_plate_header(path: Path) -> Plate:
    """The header of one plate frame: ExrReadError for a missing file, a folder or an unreadable EXR;
    PixelError for a plate without colour channels."""
    header = read_exr_header(path)
    check_colour_channels(header.channels, path)
    return header


def read_key(
    path: Path,
    colorspace: str | None,
    key_colorspace: str | None,
    open_file: FileOpener | None,
    matte_path: Path | None = None,
) -> KeyImage:
    """``load_key``, through ``open_file`` when there is one; with ``matte_path`` (--key-matte), the matte
    read from that image (``load_matte``) replaces the key's own alpha, and the key's name (what messages
    say) names both files."""
    opened = open_file or contextlib.nullcontext  # nullcontext(path) gives the path itself
    with opened(path) as through:
        key = load_key(path, colorspace, key_colorspace, through)
    if matte_path is not None:
        with opened(matte_path) as through:
            key.matte = load_matte(matte_path, through)
        key.name = f"{path} with matte {matte_path}"
    return key


def working_size(width: int, height: int, working_width: int) -> tuple[int, int]:
    """(w, h) at which the networks run: never larger than the plate, even dimensions."""
    if width <= working_width:
        return width, height
    h = max(2, int(round(height * working_width / width / 2)) * 2)
    return working_width, h


def check_size(width: int, height: int, working_width: int, name: str) -> None:
    """PixelError naming ``name`` unless the plate and its working size have ``MIN_SIDE`` px on each side."""
    if min(width, height) < MIN_SIDE:
        raise PixelError(f"{name}: the plate is {width}x{height}; colorprop needs at least {MIN_SIDE} px on each side")
    w, h = working_size(width, height, working_width)
    if min(w, h) < MIN_SIDE:
        raise PixelError(
            f"{name}: at the working width {working_width} the {width}x{height} plate would be {w}x{h}, "
            f"under {MIN_SIDE} px on a side; raise --working-width"
        )


def plate_colorspace(chosen: str | None, metadata: str | None, name: str) -> str:
    """The plate's canonical colour space: ``chosen`` (--colorspace), else the file's metadata, else the
    config's linear Rec.709 (whatever $OCIO calls it). ColorSpaceError (exit 2) says where an unknown name
    came from."""
    if not (chosen or metadata):
        return convert.linear_rec709()
    try:
        return convert.check_colorspace(chosen or metadata)
    except InputError as err:
        origin = "--colorspace" if chosen else f"metadata of {name}"
        raise type(err)(f"{err} (from {origin}; override with --colorspace)") from None


def check_key(key: KeyImage, size: tuple[int, int], plate_space: str, notes: list[str] | None = None) -> str:
    """The key's canonical colour space, after checking its size against the plate's, its pixels and, for a
    partial key, its matte (``check_key_matte``, which may append a note to ``notes``). Every path calls it
    for every key, in-band keys included (``ShotColour.key_ab``)."""
    h, w = key.pixels.shape[:2]
    if (w, h) != size:
        raise PixelError(f"{key.name}: key is {w}x{h} but the plate is {size[0]}x{size[1]}")
    check_finite(key.pixels, key.name, "key")
    check_key_matte(key, notes)
    return convert.check_colorspace(key.colorspace or plate_space)


def check_key_matte(key: KeyImage, notes: list[str] | None = None) -> None:
    """A partial key's matte (a full key passes): the key's size (PixelError, exit 3, naming both sizes),
    finite (PixelError, exit 3, as the key's colour), not 0 everywhere (InputError, exit 2: it would colour
    nothing). Values outside [0, 1] (a float alpha of 1.3 or -0.2) are clamped: ``key.matte`` is replaced by
    a clamped copy (the caller's array is never written to) and a note saying so is appended to ``notes``.
    Running it again changes nothing."""
    matte = key.matte
    if matte is None:
        return
    h, w = key.pixels.shape[:2]
    if matte.shape != (h, w):
        size = "x".join(map(str, matte.shape[::-1]))  # WxH, as every size in a message
        raise PixelError(f"{key.name}: the matte is {size} but the key is {w}x{h}; they must be the same size")
    check_finite(matte, key.name, "matte (alpha)")
    low, high = float(matte.min()), float(matte.max())
    if high <= 0.0:
        raise InputError(
            f"{key.name}: the matte (alpha) is 0 everywhere, so the key would colour nothing; paint where it "
            "applies, or give it without alpha (a full key)"
        )
    if low < 0.0 or high > 1.0:
        key.matte = np.clip(matte, 0.0, 1.0)
        if notes is not None:
            notes.append(f"{key.name}: matte (alpha) values from {low:g} to {high:g} clamped to [0, 1]")


def check_full_key_or_regrade(keys: dict[int, KeyImage], regrade: bool) -> None:
    """InputError (exit 2) when every key is partial and ``regrade`` is off: the partial keys are laid over
    the colour the full keys give (or, with --regrade, the plate's own), and there would be none."""
    if keys and not regrade and all(key.is_partial for key in keys.values()):
        raise InputError(
            "a partial key colours only where it is painted: give a full key too, or --regrade to correct a "
            f"colour plate (partial keys: {', '.join(f'{k} {keys[k].name}' for k in sorted(keys))})"
        )


@np.errstate(over="ignore", invalid="ignore")  # a sum past float32 (or inf - inf) is the exact check's case
def check_plate_pixels(pixels: np.ndarray, channels: tuple[str, ...], name: str, row_sums=None) -> None:
    """NaN/Inf only in the channels the engine reads; other channels (a depth pass at +inf) pass through. A finite
    sum of the whole frame (read in place, or ``row_sums``: each row's, made by the caller; any NaN or Inf makes it
    NaN or Inf) passes it without copying the read channels; otherwise (a pass-through +inf, a NaN, a sum past
    float32's range) the exact check decides."""
    if np.isfinite(np.sum(pixels) if row_sums is None else np.sum(row_sums)):
        return
    read = image_channels(channels)
    check_finite(pixels[..., [channels.index(c) for c in read]], name, "plate", read)


def make_output_folders(out: FramePattern, frames: list[int]) -> None:
    """Create the output folder, or ExrWriteError (exit 4) naming the real cause: a file where a folder
    should be, a read-only file system, no permission."""
    first = out.path(frames[0])
    folder = first.parent  # the frame token is in the file name: every frame's folder
    problem = _unwritable(folder)
    if problem is None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            problem = f"cannot create the output folder {folder}: {err.strerror or err}"
    if problem is not None:
        raise ExrWriteError(first, problem)


def _unwritable(folder: Path) -> str | None:
    """Why files cannot be made in ``folder`` (or in the nearest existing folder above it), or None."""
    probe = folder
    while not probe.exists() and not probe.is_symlink() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is not a folder" + (" (it is a file)" if probe.is_file() else "")
    if os.statvfs(probe).f_flag & os.ST_RDONLY:
        return f"the output folder {folder} is on a read-only file system ({probe})"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"no permission to write in {probe}"
    return None
