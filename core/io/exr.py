"""OpenEXR plates in and out (OpenImageIO), with everything we do not touch passed through.

A ``Plate`` is the first subimage of one EXR: pixels of the *data window* as HxWxC float32,
the channel names, per-channel pixel types, both windows and all header attributes. Writing with
a template plate reproduces its windows, channel types, compression and metadata, so a comp
gets back a file that differs from its plate only in the pixels we changed.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import OpenImageIO as oiio

from colorprop.errors import ExrReadError, ExrWriteError, ImageReadError, PixelError
from colorprop.io.header_text import check_header_text
from colorprop.io.temps import create_temp, discard_temp

DEFAULT_COMPRESSION = "zip"
# Deflate effort of zip and zips output where no level is asked for ("zip:6"): OpenImageIO's default is 4. Level 2
# stores the same pixels (lossless, the same compression as far as any reader knows) in files 0.7 % larger, for 12 %
# less CPU a 4K frame written (which is a third of a frame's CPU in `full`).
ZIP_LEVEL = 2
PIXEL_TYPES = ("half", "float", "uint")
# OIIO bookkeeping that describes the file just read, not the image; the writer recomputes it.
_NOT_COPIED = frozenset({"oiio:subimages", "oiio:RowsPerChunk"})


@dataclass(frozen=True)
class SpecInfo:
    """Data window (x, y, width, height) and display window (full_*) in pixels."""

    x: int
    y: int
    width: int
    height: int
    full_x: int
    full_y: int
    full_width: int
    full_height: int

    @property
    def data_window_is_display_window(self) -> bool:
        return (self.x, self.y, self.width, self.height) == (
            self.full_x,
            self.full_y,
            self.full_width,
            self.full_height,
        )


@dataclass
class Plate:
    """One EXR image.

    pixels: HxWxC float32 covering the data window (H = spec_info.height, W = spec_info.width).
    channels: C names in file order as OIIO reports them (R, G, B, A first, then the rest).
    pixel_types: per channel, "half" / "float" / "uint".
    metadata: every header attribute by name; metadata_types keeps each attribute's OIIO type
    string ("string", "float2", "matrix", "timecode", ...) so a rewrite is type-exact.
    """

    pixels: np.ndarray | None  # None for a header read by ``read_exr_header``
    channels: tuple[str, ...]
    spec_info: SpecInfo
    pixel_types: tuple[str, ...]
    metadata: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    metadata_types: dict[str, str] = field(default_factory=dict, repr=False)

    def channel(self, name: str) -> np.ndarray:
        """HxW float32 view of channel ``name``; PixelError naming the file if it is absent."""
        if name not in self.channels:
            raise PixelError(f"{self.path}: no channel {name!r}; channels are {', '.join(self.channels)}")
        return self.pixels[..., self.channels.index(name)]

    def rgb(self) -> np.ndarray:
        """HxWx3 float32 colour: R, G, B; a plate with Y (or a single channel) replicates it; A is dropped."""
        check_colour_channels(self.channels, self.path)
        read = image_channels(self.channels)
        if len(read) == 3:
            return np.stack([self.channel(c) for c in read], axis=-1)
        return np.repeat(self.channel(read[0])[..., None], 3, axis=-1)

    @property
    def colorspace(self) -> str | None:
        """Colour space named in the header ("oiio:ColorSpace", else "colorspace"), or None."""
        for key in ("oiio:ColorSpace", "colorspace"):
            value = self.metadata.get(key)
            if isinstance(value, str) and value.strip():
                return value.strip()
        return None


def image_channels(channels: tuple[str, ...]) -> tuple[str, ...]:
    """The channels of a plate that hold its image, the only ones the engine reads: R,G,B; else Y (a gray
    plate); else the first. Every other channel passes through to the output untouched."""
    if all(c in channels for c in "RGB"):
        return ("R", "G", "B")
    return ("Y",) if "Y" in channels else channels[:1]


def check_colour_channels(channels: tuple[str, ...], path: str | Path) -> None:
    """PixelError naming ``path`` unless ``channels`` hold an image: R, G, B; else Y; else one channel alone."""
    if not (all(c in channels for c in "RGB") or "Y" in channels or len(channels) == 1):
        raise PixelError(f"{path}: no colour channels (need R, G, B or Y); channels are {', '.join(channels)}")


def read_exr(path: str | Path) -> Plate:
    """Read the first subimage of an EXR, all channels, as float32 (layout in ``Plate``).

    ExrReadError(path, reason) for a missing, empty, non-EXR, deep, or truncated file: pixels are
    read in full and OIIO's error state checked, so a short file never comes back as zeros.
    """
    return _read(Path(path), with_pixels=True)


def read_exr_header(path: str | Path) -> Plate:
    """The header of an EXR as a ``Plate`` without pixels (``pixels`` is None): channels, windows,
    metadata. The same checks and errors as ``read_exr``, except that the pixel data is not read."""
    return _read(Path(path), with_pixels=False)


def read_image(path: str | Path) -> Plate:
    """Any image OpenImageIO reads (EXR, PNG, TIFF, JPEG, DPX, ...) as a ``Plate``: pixels as float32
    (integer formats normalised to 0..1), ``pixel_types`` as stored ("uint8", "uint16", "half", ...).
    Colour with an alpha channel comes as the file stores it: a file with unassociated (straight) alpha
    (PNG, TIFF saved so) is not premultiplied on reading, as OpenImageIO otherwise does (in 8 bits, losing
    the colour under a faint alpha), and says so with ``metadata["oiio:UnassociatedAlpha"] == 1``; every
    other file with alpha (EXR, TIFF with associated alpha) holds premultiplied colour.
    ImageReadError (exit 3) names the file."""
    return _read(Path(path), with_pixels=True, exr_only=False)


def _read(path: Path, with_pixels: bool, exr_only: bool = True) -> Plate:
    error = ExrReadError if exr_only else ImageReadError
    if path.is_dir():
        raise error(path, f"is a folder, not {'an EXR file' if exr_only else 'an image'}")
    if not path.is_file():
        raise error(path, "no such file")
    if path.stat().st_size == 0:
        raise error(path, "file is empty (0 bytes)")
    if exr_only:
        inp = oiio.ImageInput.open(str(path))
    else:
        hints = oiio.ImageSpec()
        hints.attribute("oiio:UnassociatedAlpha", 1)  # straight alpha stays straight (``read_image``)
        inp = oiio.ImageInput.open(str(path), hints)
    if inp is None:
        raise error(path, _oiio_error(oiio.geterror) or "OpenImageIO could not open it")
    try:
        if exr_only and inp.format_name() != "openexr":
            raise error(path, f"not an OpenEXR file (OpenImageIO reads it as {inp.format_name()})")
        return _read_open_input(inp, path, with_pixels, error)
    except UnicodeDecodeError as err:  # a header string (channel or attribute name, value) is not text
        raise error(path, f"corrupt header: {err.reason} at byte {err.start} of a header string") from None
    finally:
        inp.close()


def _oiio_error(geterror) -> str:
    """OpenImageIO's error message; it quotes raw header bytes, which are not always valid UTF-8."""
    try:
        return geterror()
    except UnicodeDecodeError:
        return "corrupt header (OpenImageIO's message about it is not valid text)"


def _read_open_input(inp: oiio.ImageInput, path: Path, with_pixels: bool, error) -> Plate:
    spec = inp.spec()
    if spec.deep:
        raise error(path, "deep images are not supported")
    if spec.width <= 0 or spec.height <= 0 or spec.nchannels <= 0:
        raise error(path, f"empty image ({spec.width}x{spec.height}, {spec.nchannels} channels)")
    pixels = None
    if with_pixels:
        # An all-half file is read as it is stored and widened by copy_converted (exact): OpenImageIO's own
        # conversion to float took twice the time of a 4K read.
        all_half = set(_channel_types(spec)) == {"half"}
        pixels = inp.read_image(0, 0, 0, spec.nchannels, "half" if all_half else "float")
        message = _oiio_error(inp.geterror)
        if pixels is None or message:
            raise error(path, f"pixel data unreadable (truncated or corrupt?): {message or 'no data'}")
        pixels = np.asarray(pixels).reshape(spec.height, spec.width, spec.nchannels)
        if all_half:
            widened = np.empty(pixels.shape, np.float32)
            copy_converted(widened, pixels)
            pixels = widened
        else:
            pixels = np.ascontiguousarray(pixels, dtype=np.float32)
    metadata, metadata_types = _metadata_of(spec)
    check_header_text(spec.channelnames, metadata, path, error)
    return Plate(
        pixels=pixels,
        channels=tuple(spec.channelnames),
        spec_info=SpecInfo(
            spec.x, spec.y, spec.width, spec.height, spec.full_x, spec.full_y, spec.full_width, spec.full_height
        ),
        pixel_types=_channel_types(spec),
        metadata=metadata,
        path=path,
        metadata_types=metadata_types,
    )


def _channel_types(spec: oiio.ImageSpec) -> tuple[str, ...]:
    # channelformats is empty when every channel shares spec.format.
    formats = spec.channelformats or (spec.format,) * spec.nchannels
    return tuple(str(t) for t in formats)


def _metadata_of(spec: oiio.ImageSpec) -> tuple[dict[str, Any], dict[str, str]]:
    values, types = {}, {}
    for param in spec.extra_attribs:
        if param.name in _NOT_COPIED:
            continue
        values[param.name] = param.value
        types[param.name] = str(param.type)
    return values, types


def write_exr(
    path: str | Path,
    pixels: np.ndarray,
    channels: tuple[str, ...] | list[str],
    template: Plate | None = None,
    pixel_type: str = "half",
    extra_metadata: dict[str, Any] | None = None,
) -> Path:
    """Write ``pixels`` (HxWxC float32, the data window; or float16 where every channel is stored as half) as an
    EXR, atomically.

    With a template: its data/display windows, compression and every metadata attribute are
    copied, and each channel that also exists in the template keeps the template's pixel type;
    other channels use ``pixel_type``. ``extra_metadata`` (name -> str/int/float/tuple) is
    applied last and wins. Without a template the image sits at (0, 0) with data = display
    window and zip compression.

    The file is written to a temp name in the same folder (:func:`temp_name`: ``.<stem>.tmp-<pid>-<random>.exr``),
    created exclusively and without following a link planted there (``O_CREAT|O_EXCL|O_NOFOLLOW``;
    OpenImageIO writes through that very file where ``/proc/self/fd`` exists), then moved over
    ``path`` with os.replace (which replaces a link at ``path`` rather than writing through it), so
    readers never see half a frame and nothing outside the folder is ever written. Any failure
    removes the temp file and raises ExrWriteError(path, reason). Returns ``path``.
    """
    path = Path(path)
    channels = tuple(channels)
    try:
        spec = _spec_for(pixels, channels, template, pixel_type, extra_metadata or {})
    except (ValueError, TypeError) as err:
        raise ExrWriteError(path, str(err)) from err
    temp, fd = None, -1
    try:
        temp, fd = create_temp(path)
        _write_spec_and_pixels(temp, spec, pixels, fd)
        os.close(fd)
        fd = -1
        os.replace(temp, path)
    except Exception as err:
        discard_temp(temp, fd)
        reason = err.reason if isinstance(err, ExrWriteError) else f"{type(err).__name__}: {err}"
        raise ExrWriteError(path, reason) from err
    except BaseException:
        discard_temp(temp, fd)
        raise
    return path


def _spec_for(
    pixels: np.ndarray,
    channels: tuple[str, ...],
    template: Plate | None,
    pixel_type: str,
    extra_metadata: dict[str, Any],
) -> oiio.ImageSpec:
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if pixels.ndim != 3 or pixels.shape[2] != len(channels):
        raise ValueError(f"pixels shape {pixels.shape} does not match {len(channels)} channels {channels}")
    if len(set(channels)) != len(channels):
        raise ValueError(f"duplicate channel names in {channels}")
    if pixel_type not in PIXEL_TYPES:
        raise ValueError(f"pixel_type {pixel_type!r}: expected one of {', '.join(PIXEL_TYPES)}")
    height, width = pixels.shape[:2]
    spec = oiio.ImageSpec(width, height, len(channels), oiio.TypeDesc(pixel_type))
    spec.channelnames = channels
    spec.attribute("compression", DEFAULT_COMPRESSION)
    if template is not None:
        _apply_template(spec, template, channels, pixel_type)
    if "oiio:ColorSpace" in extra_metadata and "colorInteropID" not in extra_metadata:
        # OIIO writes oiio:ColorSpace as colorInteropID; a stale copied id would win on reading.
        spec.erase_attribute("colorInteropID")
    for name, value in extra_metadata.items():
        spec.attribute(name, value)
    compression = spec.get_string_attribute("compression")
    if compression in ("zip", "zips"):
        spec.attribute("compression", f"{compression}:{ZIP_LEVEL}")
    return spec


def stored_types(channels: tuple[str, ...], template: Plate | None, pixel_type: str) -> tuple[str, ...]:
    """The pixel type ``write_exr`` stores each of ``channels`` as: the template's for its channels, else
    ``pixel_type``."""
    types = dict(zip(template.channels, template.pixel_types)) if template is not None else {}
    return tuple(types.get(c, pixel_type) for c in channels)


def _apply_template(spec: oiio.ImageSpec, template: Plate, channels: tuple[str, ...], pixel_type: str) -> None:
    info = template.spec_info
    if (spec.width, spec.height) != (info.width, info.height):
        raise ValueError(
            f"pixels are {spec.width}x{spec.height} but the template's data window is {info.width}x{info.height}"
        )
    spec.x, spec.y = info.x, info.y
    spec.full_x, spec.full_y = info.full_x, info.full_y
    spec.full_width, spec.full_height = info.full_width, info.full_height
    spec.channelformats = tuple(oiio.TypeDesc(t) for t in stored_types(channels, template, pixel_type))
    for name, value in template.metadata.items():
        type_name = template.metadata_types.get(name)
        if type_name is None:
            spec.attribute(name, value)
        else:
            spec.attribute(name, oiio.TypeDesc(type_name), value)


def _write_spec_and_pixels(temp: Path, spec: oiio.ImageSpec, pixels: np.ndarray, fd: int) -> None:
    """Write into the temp file opened as ``fd``: through ``/proc/self/fd/<fd>`` where it exists, so
    the bytes go to the file we created even if its name was swapped for a link meanwhile."""
    data = np.asarray(pixels).reshape(spec.height, spec.width, spec.nchannels)
    if ({str(t) for t in spec.channelformats} or {str(spec.format)}) == {"half"}:
        if data.dtype != np.float16:
            half = np.empty(data.shape, np.float16)
            copy_converted(half, data)
            data = half
    else:  # float and uint channels: OpenImageIO converts from float32, losing nothing a float holds
        data = np.ascontiguousarray(data, dtype=np.float32)
    out = oiio.ImageOutput.create(str(temp))
    if out is None:
        raise ExrWriteError(temp, oiio.geterror() or "no EXR writer")
    through = f"/proc/self/fd/{fd}" if os.path.isdir("/proc/self/fd") else str(temp)
    written = out.open(through, spec) and out.write_image(data)
    # close() flushes the last chunks; a failure there (disk full) is a write failure too.
    closed = out.close()
    if not (written and closed):
        raise ExrWriteError(temp, out.geterror() or "OpenImageIO reported a failure without a message")


def copy_converted(target: np.ndarray, source: np.ndarray) -> None:
    """``target[...] = source`` (same shape; views of any strides), converted to ``target``'s dtype in torch's
    vectorised kernel: float32 to float16 rounds to nearest even as OpenImageIO rounds what it writes as half
    (bit for bit, tests/test_exr.py), at a tenth of the time of OpenImageIO's or numpy's conversion (those took a
    fifth of a 4K frame's write)."""
    import torch

    with warnings.catch_warnings():  # a read-only source is only read
        warnings.filterwarnings("ignore", "The given NumPy array is not writable")
        torch.from_numpy(target).copy_(torch.from_numpy(np.asarray(source)))


def as_stored(pixels: np.ndarray, dtype: type) -> np.ndarray:
    """float32 ``pixels`` as a file storing them as ``dtype`` gives them back: rounded to half exactly as
    ``write_exr`` rounds them for np.float16 (in ``copy_converted``'s kernel), unchanged for np.float32."""
    if np.dtype(dtype) == np.float32:
        return np.asarray(pixels, dtype=np.float32)
    stored = np.empty(pixels.shape, dtype)
    copy_converted(stored, pixels)
    back = np.empty(pixels.shape, np.float32)
    copy_converted(back, stored)
    return back


def check_finite(
    pixels: np.ndarray, path: str | Path | None, what: str = "pixels", channels: tuple[str, ...] | None = None
) -> None:
    """Raise PixelError if ``pixels`` (HxW or HxWxC) holds NaN or Inf.

    The message names the file, ``what`` (e.g. "plate", "key frame 1001"), how many pixels are
    affected and the first one as (x, y) in array coordinates (row-major scan order); with
    ``channels`` (the C names), also the channels that hold them.
    """
    bad = ~np.isfinite(pixels)
    per_channel = bad.reshape(-1, bad.shape[2]).any(axis=0) if bad.ndim == 3 else None
    if bad.ndim == 3:
        bad = bad.any(axis=2)
    count = int(bad.sum())
    if count == 0:
        return
    y, x = np.unravel_index(int(np.argmax(bad)), bad.shape)
    where = ""
    if channels is not None and per_channel is not None:
        names = [c for c, hit in zip(channels, per_channel) if hit]
        where = f" in channel{'s' if len(names) > 1 else ''} {', '.join(names)}"
    raise PixelError(f"{path}: {what} has {count} pixel(s) with NaN/Inf{where}; first at (x={int(x)}, y={int(y)})")
