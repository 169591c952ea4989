"""Just enough OpenEXR for the Nuke node, in numpy + zlib (Nuke's Python has no OpenImageIO).

Reads single-part scanline EXRs with NONE, ZIPS or ZIP compression and half/float/uint channels
(the node's own Write renders exactly that), and writes float RGB with ZIPS compression. Arrays are
**HWC float32, top row first**: EXR stores scanlines top-down (y grows downwards), so no flip is
needed here, unlike pixels taken from Nuke's or Blender's bottom-up image buffers.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass

import numpy as np

MAGIC = 20000630
NONE, RLE, ZIPS, ZIP = 0, 1, 2, 3
LINES_PER_BLOCK = {NONE: 1, ZIPS: 1, ZIP: 16}
PIXEL_DTYPES = {0: np.dtype("<u4"), 1: np.dtype("<f2"), 2: np.dtype("<f4")}


class ExrError(Exception):
    """An EXR this module cannot read or write; the message names the file."""


@dataclass
class ExrImage:
    pixels: np.ndarray  # HxWxC float32 over the display window, top row first
    channels: tuple[str, ...]
    data_window: tuple[int, int, int, int]  # xmin, ymin, xmax, ymax (inclusive)
    display_window: tuple[int, int, int, int]

    def rgb(self) -> np.ndarray:
        """HxWx3: R,G,B (Y replicated for luminance-only files)."""
        names = list(self.channels)
        if all(c in names for c in "RGB"):
            return self.pixels[..., [names.index(c) for c in "RGB"]]
        if "Y" in names:
            return np.repeat(self.pixels[..., names.index("Y"), None], 3, axis=2)
        raise ExrError(f"no R,G,B or Y channels (has {', '.join(names)})")

    def rgba(self) -> np.ndarray:
        """HxWx4 R,G,B,A when the file has an alpha channel (A), else HxWx3 as :meth:`rgb`."""
        if "A" not in self.channels:
            return self.rgb()
        return np.dstack([self.rgb(), self.pixels[..., self.channels.index("A")]])


def _read_cstr(buf: bytes, pos: int) -> tuple[str, int]:
    end = buf.index(b"\0", pos)
    return buf[pos:end].decode("latin-1"), end + 1


def _undo_zip(data: bytes, raw_size: int) -> bytes:
    if len(data) == raw_size:  # stored uncompressed when compression did not help
        return data
    d = np.frombuffer(zlib.decompress(data), dtype=np.uint8).astype(np.int64)
    d[1:] -= 128
    t = (np.cumsum(d) & 0xFF).astype(np.uint8)
    half = (len(t) + 1) // 2
    out = np.empty_like(t)
    out[0::2], out[1::2] = t[:half], t[half:]
    return out.tobytes()


def _do_zip(raw: bytes) -> bytes:
    r = np.frombuffer(raw, dtype=np.uint8)
    t = np.concatenate([r[0::2], r[1::2]]).astype(np.int16)
    d = t.copy()
    d[1:] = (t[1:] - t[:-1] + 128) & 0xFF
    packed = zlib.compress(d.astype(np.uint8).tobytes(), 6)
    return packed if len(packed) < len(raw) else raw


def read_exr(path: str | os.PathLike) -> ExrImage:
    path = os.fspath(path)
    try:
        with open(path, "rb") as fh:
            buf = fh.read()
    except OSError as exc:
        raise ExrError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        return _parse(buf, path)
    except ExrError:
        raise
    except (ValueError, struct.error, IndexError, KeyError, zlib.error) as exc:
        raise ExrError(f"{path}: truncated or corrupt EXR ({type(exc).__name__}: {exc})") from None


def _parse(buf: bytes, path: str) -> ExrImage:
    magic, version = struct.unpack_from("<ii", buf, 0)
    if magic != MAGIC:
        raise ExrError(f"{path}: not an OpenEXR file")
    if version & 0x1200:  # tiled or multi-part
        raise ExrError(f"{path}: tiled or multi-part EXR; render scanline EXRs")
    pos, attrs = 8, {}
    while buf[pos] != 0:
        name, pos = _read_cstr(buf, pos)
        typ, pos = _read_cstr(buf, pos)
        (size,) = struct.unpack_from("<i", buf, pos)
        attrs[name] = (typ, buf[pos + 4 : pos + 4 + size])
        pos += 4 + size
    pos += 1
    chans, p, raw = [], 0, attrs["channels"][1]
    while raw[p] != 0:
        cname, p = _read_cstr(raw, p)
        ptype, _linear, xs, ys = struct.unpack_from("<iB3xii", raw, p)
        p += 16
        if xs != 1 or ys != 1:
            raise ExrError(f"{path}: subsampled channel {cname!r} is not supported")
        chans.append((cname, PIXEL_DTYPES[ptype]))
    comp = attrs["compression"][1][0]
    if comp not in LINES_PER_BLOCK:
        raise ExrError(f"{path}: compression {comp} is not supported; use none or zip (1 or 16 scanlines)")
    dw = struct.unpack("<iiii", attrs["dataWindow"][1])
    disp = struct.unpack("<iiii", attrs["displayWindow"][1])
    width, height = dw[2] - dw[0] + 1, dw[3] - dw[1] + 1
    lpb = LINES_PER_BLOCK[comp]
    nblocks = (height + lpb - 1) // lpb
    offsets = struct.unpack_from(f"<{nblocks}Q", buf, pos)
    row_bytes = [width * dt.itemsize for _, dt in chans]
    data = np.zeros((height, width, len(chans)), np.float32)
    for off in offsets:
        y, size = struct.unpack_from("<ii", buf, off)
        lines = min(lpb, dw[3] - y + 1)
        raw_size = lines * sum(row_bytes)
        block = buf[off + 8 : off + 8 + size]
        if len(block) != size:
            raise ExrError(f"{path}: truncated EXR (scanline {y})")
        if comp != NONE:
            block = _undo_zip(block, raw_size)
        if len(block) != raw_size:
            raise ExrError(f"{path}: scanline block {y} has {len(block)} bytes, expected {raw_size}")
        q = 0
        for line in range(lines):
            row = y - dw[1] + line
            for c, (_, dt) in enumerate(chans):
                data[row, :, c] = np.frombuffer(block, dtype=dt, count=width, offset=q)
                q += row_bytes[c]
    # Place the data window inside the display window (outside: zeros; overscan is cropped).
    dwidth, dheight = disp[2] - disp[0] + 1, disp[3] - disp[1] + 1
    out = np.zeros((dheight, dwidth, len(chans)), np.float32)
    x0, y0 = max(dw[0], disp[0]), max(dw[1], disp[1])
    x1, y1 = min(dw[2], disp[2]), min(dw[3], disp[3])
    if x0 <= x1 and y0 <= y1:
        out[y0 - disp[1] : y1 - disp[1] + 1, x0 - disp[0] : x1 - disp[0] + 1] = data[
            y0 - dw[1] : y1 - dw[1] + 1, x0 - dw[0] : x1 - dw[0] + 1
        ]
    return ExrImage(out, tuple(n for n, _ in chans), dw, disp)


def _attr(name: str, typ: str, value: bytes) -> bytes:
    return name.encode() + b"\0" + typ.encode() + b"\0" + struct.pack("<i", len(value)) + value


def write_exr(path: str | os.PathLike, pixels: np.ndarray, channels: tuple[str, ...] = ("R", "G", "B")) -> None:
    """Write HxWxC float32 (top row first) as a ZIPS-compressed float EXR, atomically."""
    path = os.fspath(path)
    pixels = np.asarray(pixels, dtype=np.float32)
    if pixels.ndim != 3 or pixels.shape[2] != len(channels):
        raise ExrError(f"{path}: pixels must be HxWx{len(channels)}, got {pixels.shape}")
    h, w, _ = pixels.shape
    order = sorted(range(len(channels)), key=lambda i: channels[i])  # EXR stores channels by name
    chlist = b"".join(channels[i].encode() + b"\0" + struct.pack("<iB3xii", 2, 0, 1, 1) for i in order) + b"\0"
    box = struct.pack("<iiii", 0, 0, w - 1, h - 1)
    header = b"".join(
        [
            struct.pack("<ii", MAGIC, 2),
            _attr("channels", "chlist", chlist),
            _attr("compression", "compression", bytes([ZIPS])),
            _attr("dataWindow", "box2i", box),
            _attr("displayWindow", "box2i", box),
            _attr("lineOrder", "lineOrder", b"\0"),
            _attr("pixelAspectRatio", "float", struct.pack("<f", 1.0)),
            _attr("screenWindowCenter", "v2f", struct.pack("<ff", 0.0, 0.0)),
            _attr("screenWindowWidth", "float", struct.pack("<f", 1.0)),
            b"\0",
        ]
    )
    planar = np.ascontiguousarray(pixels[..., order].transpose(0, 2, 1))  # per row: channel after channel
    blocks, offset = [], len(header) + 8 * h
    offsets = []
    for y in range(h):
        data = _do_zip(planar[y].astype("<f4").tobytes())
        offsets.append(offset)
        blocks.append(struct.pack("<ii", y, len(data)) + data)
        offset += 8 + len(data)
    tmp = os.path.join(os.path.dirname(path) or ".", f".{os.path.basename(path)}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(header + struct.pack(f"<{h}Q", *offsets) + b"".join(blocks))
        os.replace(tmp, path)
    except OSError as exc:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise ExrError(f"{path}: cannot write ({exc.strerror})") from None
