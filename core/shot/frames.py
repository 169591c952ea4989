"""Frames in and out of a shot: plate frames, keys, results, and where they come from and go to
(in memory, or EXR sequences; read ahead and written behind on helper threads: overlap.py)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Protocol

import numpy as np

from colorprop.errors import ColorpropError, ExrWriteError
from colorprop.colour.convert import SRGB_DISPLAY
from colorprop.io.exr import (
    Plate,
    copy_converted,
    image_channels,
    read_exr,
    read_exr_header,
    read_image,
    stored_types,
    write_exr,
)
from colorprop.io.sequence import FramePattern
from colorprop.shot.overlap import BackgroundSink, PrefetchingSource, overlapped_io  # noqa: F401  (their old home)

CONFIDENCE_CHANNEL = "colorprop.confidence"
RESULT_STAMP = "colorprop:result"  # EXR header attribute: the stamp of the result written (FrameResult.stamp)
RGB = ("R", "G", "B")


@dataclass
class PlateFrame:
    pixels: np.ndarray  # HxWxC float32 (data window)
    channels: tuple[str, ...]
    colorspace: str | None
    template: Plate | None = None  # EXR header to copy (windows, metadata, extra channels)
    name: str = ""  # file path or "frame N", for messages

    def rgb(self) -> np.ndarray:
        """HxWx3: R,G,B; a one-channel (Y) plate is replicated."""
        index = {c: i for i, c in enumerate(self.channels)}
        read = image_channels(self.channels)
        if read == RGB:
            return self.pixels[..., [index[c] for c in RGB]]
        return np.repeat(self.pixels[..., index[read[0]], None], 3, axis=2)


@dataclass
class KeyImage:
    pixels: np.ndarray  # HxWx3 float32 in its colour space
    colorspace: str | None = None
    name: str = ""
    # A partial key's matte: HxW float32 in [0, 1] at the key's size, where its colour applies (softly at the
    # edges); None: a full key, its colour everywhere (docs/KEYS.md, "Partial keys").
    matte: np.ndarray | None = None

    @property
    def is_partial(self) -> bool:
        return self.matte is not None


@dataclass
class FrameResult:
    rgb: np.ndarray  # HxWx3 float32, plate colour space
    confidence: np.ndarray  # HxW float32 in [0, 1]
    source: PlateFrame
    stamp: str = ""  # with a shot cache: a fingerprint of all its pixels depend on (rerun.py); "" without


class FrameSource(Protocol):
    frames: list[int]

    def read(self, frame: int) -> PlateFrame: ...


class FrameSink(Protocol):
    pixel_dtype: type  # what the sink stores (np.float16 or np.float32): the carried state is rounded alike

    def exists(self, frame: int) -> bool: ...

    def read_back(self, frame: int) -> np.ndarray: ...  # HxWx3 rgb already written (resume)

    def write(self, frame: int, result: FrameResult) -> None: ...

    # Optional: ``held(frame) -> str | None``, the stamp of the result it holds for the frame (rerun.py).


@dataclass
class ProgressEvent:
    frame: int
    done: int
    total: int
    seconds: float  # wall time of this frame
    skipped: bool = False


@dataclass
class ShotReport:
    frames_written: list[int] = field(default_factory=list)
    frames_skipped: list[int] = field(default_factory=list)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)  # from the pre-flight (e.g. --working-width clamped)
    frames_unchanged: list[int] = field(default_factory=list)  # skipped: the sink held their stamp (``held``)


class ArraySource:
    """Frames held in memory (the server's in-band mode, eval, tests)."""

    def __init__(self, frames: dict[int, np.ndarray], channels=RGB, colorspace: str | None = None):
        self.frames = sorted(frames)
        self._pixels = frames
        self.channels = tuple(channels)
        self.colorspace = colorspace

    def read(self, frame: int) -> PlateFrame:
        return PlateFrame(
            np.asarray(self._pixels[frame], np.float32), self.channels, self.colorspace, None, f"frame {frame}"
        )


class ArraySink:
    pixel_dtype = np.float32

    def __init__(self):
        self.results: dict[int, FrameResult] = {}

    def exists(self, frame: int) -> bool:
        return False

    def held(self, frame: int) -> str | None:
        result = self.results.get(frame)
        return result.stamp or None if result is not None else None

    def read_back(self, frame: int) -> np.ndarray:
        return self.results[frame].rgb

    def write(self, frame: int, result: FrameResult) -> None:
        self.results[frame] = result


class ExrSequenceSource:
    """Plate frames of an EXR sequence (checked beforehand by ``preflight.check_sequence_job``)."""

    def __init__(self, pattern: str, frames: Iterable[int]):
        self.pattern = FramePattern(pattern)
        self.frames = list(frames)

    def read(self, frame: int, through: Path | None = None) -> PlateFrame:
        """``through``: a path naming the already opened file (the server reads by descriptor)."""
        path = self.pattern.path(frame)
        plate = read_exr(through or path)
        return PlateFrame(plate.pixels, plate.channels, plate.colorspace, plate, str(path))

    def identity(self, frame: int) -> str:
        """The plate file's path, size and mtime_ns: what a shot cache knows it by (cache.py)."""
        path = self.pattern.path(frame)
        stat = path.stat()
        return f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"


class ExrSequenceSink:
    """Writes R,G,B (+ the plate's other channels, + confidence) atomically, as half floats by default.

    ``expect(frame) -> ((width, height), channels)``: what a complete output frame holds (from
    ``CheckedShot.expected_output``); an existing frame that differs is not complete (``exists`` is
    False) and is computed again. ``colorspace``: the space the pixels are in, stamped in the header
    (``oiio:ColorSpace`` and ``colorspace``) over whatever the plate's header said."""

    def __init__(
        self,
        pattern: str,
        pixel_type: str = "half",
        write_confidence: bool = False,
        expect: Callable[[int], tuple[tuple[int, int], tuple[str, ...]]] | None = None,
        colorspace: str | None = None,
    ):
        self.pattern = FramePattern(pattern)
        self.pixel_type = pixel_type
        self.pixel_dtype = np.float16 if pixel_type == "half" else np.float32
        self.write_confidence = write_confidence
        self.expect = expect
        self.colorspace = colorspace
        # oiio:ColorSpace: OpenImageIO writes it as the EXR's colorInteropID, for the spaces that have one
        # (ACEScg, lin_rec709_scene, ...); "colorspace": the config's own name, for every space.
        self.stamp = {"oiio:ColorSpace": colorspace, "colorspace": colorspace} if colorspace else None

    def retarget(self, pattern: str) -> "ExrSequenceSink":
        """The same sink (pixel type, channels, colour space, expectations) writing through ``pattern``."""
        return ExrSequenceSink(pattern, self.pixel_type, self.write_confidence, self.expect, self.colorspace)

    def exists(self, frame: int, through: Path | None = None) -> bool:
        """A complete, readable output frame (a half-written one never has the final name) of the
        expected size and channels. ``through``: as in ``ExrSequenceSource.read``."""
        path = through or self.pattern.path(frame)
        if not path.exists():
            return False
        try:
            plate = read_exr(path)
        except ColorpropError:
            return False
        return self._expected(frame, plate)

    def _expected(self, frame: int, plate: Plate) -> bool:
        """Whether an output frame (or its header) has the size and channels ``expect`` says."""
        if self.expect is None:
            return True
        size, channels = self.expect(frame)
        return (plate.spec_info.width, plate.spec_info.height) == size and set(plate.channels) == set(channels)

    def held(self, frame: int, through: Path | None = None) -> str | None:
        """The stamp (``RESULT_STAMP``) of the output frame on disk, when it has the expected size and channels."""
        try:
            plate = read_exr_header(through or self.pattern.path(frame))
        except (ColorpropError, OSError):
            return None
        return (plate.metadata.get(RESULT_STAMP) or None) if self._expected(frame, plate) else None

    def read_back(self, frame: int, through: Path | None = None) -> np.ndarray:
        plate = read_exr(through or self.pattern.path(frame))
        return PlateFrame(plate.pixels, plate.channels, None, plate).rgb()

    def write(self, frame: int, result: FrameResult) -> None:
        channels = output_layout(result.source.channels, self.write_confidence)[1]
        half = set(stored_types(channels, result.source.template, self.pixel_type)) == {"half"}
        pixels, _ = output_channels(result, self.write_confidence, np.float16 if half else np.float32)
        path = self.pattern.path(frame)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ExrWriteError(path, f"cannot create the folder {path.parent}: {err.strerror or err}") from None
        write_exr(
            path,
            pixels,
            channels,
            template=result.source.template,
            pixel_type=self.pixel_type,
            extra_metadata={**(self.stamp or {}), RESULT_STAMP: result.stamp} if result.stamp else self.stamp,
        )


def output_channels(
    result: FrameResult, write_confidence: bool, dtype: type = np.float32
) -> tuple[np.ndarray, tuple[str, ...]]:
    """R,G,B first, then every other plate channel untouched (a plate's Y is replaced by RGB), as one HxWxC
    frame of ``dtype``: np.float16 where every channel is stored as half, converted plane by plane straight
    into it (the half frame is the one copy: no float32 frame beside it)."""
    src = result.source
    keep, channels = output_layout(src.channels, write_confidence)
    planes = [src.pixels[..., i] for i in keep] + ([result.confidence] if write_confidence else [])
    frame = np.empty(result.rgb.shape[:2] + (3 + len(planes),), dtype)
    copy_converted(frame[..., :3], result.rgb)  # the three at once: half the time of three planes
    for i, plane in enumerate(planes, start=3):
        copy_converted(frame[..., i], plane)
    return frame, channels


def output_layout(plate_channels: tuple[str, ...], write_confidence: bool) -> tuple[list[int], tuple[str, ...]]:
    """(indices of the plate channels passed through, channel names of the output frame)."""
    image = set(RGB) | set(image_channels(plate_channels)) | {CONFIDENCE_CHANNEL}
    keep = [i for i, c in enumerate(plate_channels) if c not in image]
    channels = RGB + tuple(plate_channels[i] for i in keep)
    return keep, channels + ((CONFIDENCE_CHANNEL,) if write_confidence else ())


# An integer file's alpha at or above this is opaque: 1 less the smallest 16-bit step (what a 16-bit
# paint export's "opaque" may round to); a float file's alpha is opaque only at 1 (or above) exactly.
OPAQUE_INTEGER_ALPHA = 1.0 - 1.0 / 65535
FLOAT_PIXEL_TYPES = ("half", "float", "double")


def load_key(
    path: str | os.PathLike, colorspace: str | None, key_colorspace: str | None = None, through: Path | None = None
) -> KeyImage:
    """A key from any image OpenImageIO reads. Its colour space: ``key_colorspace`` (--key-colorspace)
    when given; else display-referred sRGB for integer files (PNG, JPEG, 8/16-bit TIFF, DPX: what a
    paint app saves); else, for float files (EXR, float TIFF), ``colorspace`` (--colorspace), the
    file's metadata, or (None) the plate's space. ``through``: as in ``ExrSequenceSource.read``.

    Its alpha (channel A) is the key's matte (a partial key, ``KeyImage.matte``),
    unless it is opaque everywhere: then the key is full, exactly as the same file without alpha.
    Premultiplied colour (EXR by convention, TIFF saved with associated alpha) is un-premultiplied where
    alpha > 0; straight colour (PNG, TIFF with unassociated alpha: ``read_image``) is taken as it is.
    Alpha is not checked here (outside [0, 1], NaN, 0 everywhere): ``preflight.check_key`` does that."""
    image = read_image(through or path)
    frame = PlateFrame(image.pixels, image.channels, image.colorspace, image, str(path))
    integer = not any(t in FLOAT_PIXEL_TYPES for t in image.pixel_types)
    space = key_colorspace or (SRGB_DISPLAY if integer else colorspace or image.colorspace)
    rgb, matte = frame.rgb(), None
    at = alpha_channel(image.channels)
    if at is not None:
        alpha = image.pixels[..., at]
        matte = matte_of(alpha, image.pixel_types[at])
        if matte is not None and image.metadata.get("oiio:UnassociatedAlpha") != 1:
            np.divide(rgb, alpha[..., None], out=rgb, where=alpha[..., None] > 0)  # rgb is a copy of the pixels
    return KeyImage(rgb, space, str(path), matte)


def load_matte(path: str | os.PathLike, through: Path | None = None) -> np.ndarray | None:
    """A separate matte image (--key-matte): its alpha when it has one that is not opaque everywhere, else its
    first channel (a gray or black-and-white mask, in RGB or RGBA with an opaque alpha); HxW float32, or None
    when it is 1 everywhere (the key is full). Integer files are taken as stored (0..1), with no colour
    conversion: a matte is coverage, not colour. ``through``: as in ``ExrSequenceSource.read``."""
    image = read_image(through or path)
    at = alpha_channel(image.channels)
    if at is not None:
        matte = matte_of(image.pixels[..., at], image.pixel_types[at])
        if matte is not None:
            return matte
    return matte_of(image.pixels[..., 0], image.pixel_types[0])


def alpha_channel(channels: tuple[str, ...]) -> int | None:
    """The index of an image's alpha channel, named A (as OpenImageIO names it in PNG and TIFF too); None. A
    fourth channel by another name (Z, a depth or a mask pass) is never taken for alpha."""
    return channels.index("A") if "A" in channels else None


def matte_of(alpha: np.ndarray, pixel_type: str) -> np.ndarray | None:
    """HxW float32 ``alpha`` (a channel stored as ``pixel_type``), or None when it is opaque everywhere
    (``OPAQUE_INTEGER_ALPHA``). NaN is never opaque: the pre-flight refuses it."""
    opaque = 1.0 if pixel_type in FLOAT_PIXEL_TYPES else OPAQUE_INTEGER_ALPHA
    if float(np.min(alpha)) >= opaque:
        return None
    return np.array(alpha, np.float32)


def format_frames(frames: list[int], limit: int = 8) -> str:
    shown = ", ".join(map(str, frames[:limit]))
    return shown + (f", … ({len(frames)} in all)" if len(frames) > limit else "")
