"""The requests a client sends, parsed from the wire header into typed values: pure functions (no
threads, no sockets, no session state changed), each bad field a ``ProtocolError`` naming it."""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable

import numpy as np

from colorprop_client import protocol as P
from colorprop_client.protocol import ProtocolError

from .config import ServerConfig
from .paths import AllowedRoots, PathRefused

_JOB_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
FLOAT32_BYTES = 4  # what the server holds per channel value: keys and frames are widened to float32


@dataclasses.dataclass(frozen=True)
class InbandShot:
    """An in-band shot's keys (``KeyImage`` float32, held for the job's life) and the dtype the client
    stores its results in (the engine carries the same rounding)."""

    keys: dict[int, Any]
    shape: tuple[int, int]  # (H, W) every frame must have: the keys'
    carry: type
    notes: tuple[str, ...] = ()  # from the pre-flight of the keys (a partial key's matte clamped into [0, 1])

    @property
    def key_bytes(self) -> int:
        return sum(k.pixels.nbytes + (0 if k.matte is None else k.matte.nbytes) for k in self.keys.values())


@dataclasses.dataclass(frozen=True)
class PathsShot:
    """A shared-path shot's patterns and keys (inside the allowed roots) and how it writes."""

    input: str
    output: str
    keys: dict[int, str]
    skip_existing: bool
    pixel_type: str
    key_mattes: dict[int, str] = dataclasses.field(default_factory=dict)  # --key-matte: frame -> matte image
    # The keys the client read as partial (their files' alpha, a matte); None: a version-1 client, which does not say
    partial_keys: tuple[int, ...] | None = None

    key_bytes = 0  # the keys are read in the job thread, not held from the request


@dataclasses.dataclass(frozen=True)
class OpenShot:
    job: str
    mode: str
    frames: list[int]  # sorted
    options: Any  # ShotOptions
    colorspace: str | None
    seq_base: int
    shot: InbandShot | PathsShot
    live: bool = False  # protocol 3: the session stays open for edits (live.py)
    view: int | None = None  # the frame under the playhead (live sessions)

    @property
    def key_frames(self) -> list[int]:
        return sorted(self.shot.keys)


@dataclasses.dataclass(frozen=True)
class FrameIn:
    """An in-band plate frame as received: HxWxC float16 or float32, a read-only view of the message."""

    job: str
    frame: int
    pixels: np.ndarray
    channels: tuple[str, ...]
    colorspace: str | None

    @property
    def held_bytes(self) -> int:
        """What the frame holds once taken (widened to float32)."""
        return self.pixels.size * FLOAT32_BYTES


@dataclasses.dataclass(frozen=True)
class Fetch:
    job: str
    after: int
    wait_s: float
    max_events: int


def error_code(exc: Exception) -> str:
    """The protocol's code for a core error (``remote.EXIT_FOR_CODE`` maps it back to the CLI's exit code)."""
    from colorprop.errors import ExrReadError, ExrWriteError, InputError, PixelError

    for cls, code in (
        (PixelError, P.E_PIXELS),
        (ExrReadError, P.E_UNREADABLE),
        (ExrWriteError, P.E_WRITE_FAILED),
        (InputError, P.E_BAD_INPUT),
    ):
        if isinstance(exc, cls):
            return code
    return P.E_ENGINE


def job_id(msg: P.Message) -> str:
    job = msg.get("job")
    if not isinstance(job, str) or not _JOB_ID.match(job):
        raise ProtocolError(P.E_BAD_INPUT, "job must be 1-64 characters of [A-Za-z0-9_.-]", "job")
    return job


def _colorspace(msg: P.Message) -> str | None:
    colorspace = msg.get("colorspace")
    if colorspace is not None and not isinstance(colorspace, str):
        raise ProtocolError(P.E_BAD_INPUT, "colorspace must be a string or null", "colorspace")
    return colorspace


def parse_open(
    msg: P.Message, config: ServerConfig, roots: AllowedRoots, check_method: Callable[[str], None]
) -> OpenShot:
    """An ``open_shot`` request; ``check_method`` raises a ColorpropError for a method the engine lacks."""
    from colorprop.engine.engine import ShotOptions
    from colorprop.errors import ColorpropError

    job = job_id(msg)
    mode = msg.get("mode")
    if mode not in P.MODES:
        raise ProtocolError(P.E_BAD_INPUT, f"mode must be one of {list(P.MODES)}", "mode")
    frames = msg.get("frames")
    if (
        not isinstance(frames, list)
        or not frames
        or len(frames) > config.max_frames_per_shot
        or any(type(f) is not int or abs(f) > P.MAX_FRAME_NUMBER for f in frames)
        or len(set(frames)) != len(frames)
    ):
        raise ProtocolError(
            P.E_BAD_INPUT,
            f"frames must be 1..{config.max_frames_per_shot} distinct integers "
            f"of at most {len(str(P.MAX_FRAME_NUMBER))} digits",
            "frames",
        )
    options_in = msg.get("options", {})
    if not isinstance(options_in, dict):
        raise ProtocolError(P.E_BAD_INPUT, "options must be an object", "options")
    colorspace = _colorspace(msg)
    seq_base = msg.get("seq_base", 0)
    if type(seq_base) is not int or seq_base < 0:
        raise ProtocolError(P.E_BAD_INPUT, "seq_base must be a non-negative integer", "seq_base")
    try:
        options = ShotOptions.from_dict(options_in)
        check_method(options.method)
    except ColorpropError as exc:
        raise ProtocolError(P.E_BAD_INPUT, str(exc), "options") from None
    frames = sorted(frames)
    if msg.get("v") < P.MATTE_VERSION and (
        msg.get("key_mattes") or msg.get("partial_keys") or any(n.startswith("matte") for n in msg.arrays)
    ):
        raise ProtocolError(P.E_VERSION, f"partial keys need protocol {P.MATTE_VERSION}; the request says 1", "v")
    live, view = msg.get("live", False), msg.get("view")
    if not isinstance(live, bool) or (view is not None and (type(view) is not int or view not in frames)):
        raise ProtocolError(P.E_BAD_INPUT, "live must be true/false and view a frame of the shot", "live")
    if live and msg.get("v") < P.LIVE_VERSION:
        raise ProtocolError(P.E_VERSION, f"a live session needs protocol {P.LIVE_VERSION}", "v")
    if mode == P.MODE_INBAND:
        shot: InbandShot | PathsShot = check_inband_keys(
            parse_inband_shot(msg, set(frames), colorspace, config), options.regrade
        )
    else:
        shot = parse_paths_shot(msg, frames, roots)
    return OpenShot(job, mode, frames, options, colorspace, seq_base, shot, live, view)


def parse_inband_shot(msg: P.Message, frames: set[int], colorspace: str | None, config: ServerConfig) -> InbandShot:
    from colorprop.errors import InputError
    from colorprop.shot.preflight import check_keys_among_frames

    key_frames = msg.get("keys")
    if not isinstance(key_frames, list) or not key_frames or any(type(k) is not int for k in key_frames):
        raise ProtocolError(P.E_BAD_INPUT, "keys must be a non-empty list of frame numbers", "keys")
    mattes = {k for k in key_frames if P.matte_buffer(k) in msg.arrays}
    if set(msg.arrays) != {f"key{k}" for k in key_frames} | {P.matte_buffer(k) for k in mattes}:
        raise ProtocolError(
            P.E_BAD_INPUT,
            "one buffer 'key<frame>' per key frame is needed (and 'matte<frame>' for a partial key)",
            "buffers",
        )
    key_cs = msg.get("key_colorspaces") or {}
    if not isinstance(key_cs, dict) or any(v is not None and not isinstance(v, str) for v in key_cs.values()):
        raise ProtocolError(P.E_BAD_INPUT, "key_colorspaces must map frames to colour space names", "key_colorspaces")
    try:  # the pre-flight's check and words: a key (a partial one too) on a frame the shot does not colour
        check_keys_among_frames(key_frames, sorted(frames))
    except InputError as exc:
        raise ProtocolError(P.E_BAD_INPUT, str(exc), "keys") from None
    keys, shape = {}, None
    for k in key_frames:
        keys[k] = inband_key(msg, k, shape, key_cs.get(str(k), colorspace), config)
        shape = shape or keys[k].pixels.shape[:2]
    carry = msg.get("carry_dtype", "float32")
    if carry not in ("float32", "float16"):
        raise ProtocolError(P.E_BAD_INPUT, "carry_dtype must be float32 or float16", "carry_dtype")
    return InbandShot(keys, shape, np.float16 if carry == "float16" else np.float32)


def inband_key(
    msg: P.Message, k: int, shape: tuple[int, int] | None, colorspace: str | None, config: ServerConfig
) -> Any:
    """The ``KeyImage`` of the buffer ``key<k>`` (and ``matte<k>`` when sent: a partial key), of size ``shape``
    (H, W) when given: an open's keys, or a key a live session's edit sets."""
    from colorprop.shot.frames import KeyImage

    arr = msg.arrays[f"key{k}"]
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ProtocolError(P.E_PIXELS, f"key {k}: must be HxWx3, got {list(arr.shape)}", "shape")
    if arr.shape[0] * arr.shape[1] > config.max_frame_pixels:
        raise ProtocolError(
            P.E_TOO_LARGE,
            f"key {k}: {arr.shape[1]}x{arr.shape[0]} is above the {config.max_frame_pixels}-pixel limit",
            "shape",
        )
    if shape is not None and tuple(arr.shape[:2]) != tuple(shape):
        raise ProtocolError(P.E_PIXELS, f"key {k}: size differs from the other keys", "shape")
    _check_finite(arr, f"key {k}", "keys")
    matte = msg.arrays.get(P.matte_buffer(k))
    matte = None if matte is None else inband_matte(matte, k)
    return KeyImage(np.array(arr, dtype=np.float32), colorspace, f"key {k}", matte)


def check_inband_keys(shot: InbandShot, regrade: bool) -> InbandShot:
    """The pre-flight's checks of the keys' mattes (core's ``check_key_matte``, ``check_full_key_or_regrade``), here
    at the open: a bad matte is refused before anything runs, with the code of the CLI's exit for it."""
    from colorprop.errors import ColorpropError
    from colorprop.shot.preflight import check_full_key_or_regrade, check_key_matte

    notes: list[str] = []
    try:
        for key in shot.keys.values():
            check_key_matte(key, notes)
        check_full_key_or_regrade(shot.keys, regrade)
    except ColorpropError as exc:
        raise ProtocolError(error_code(exc), str(exc), "keys") from None
    return dataclasses.replace(shot, notes=tuple(notes))


def inband_matte(arr: np.ndarray, key: int) -> np.ndarray:
    """A partial key's matte buffer as the engine takes it (HxW float32). Its size against the key's, its values
    (NaN, all transparent, outside [0, 1]) are the pre-flight's, run on the job as on every path."""
    if arr.ndim != 2:
        raise ProtocolError(
            P.E_PIXELS, f"key {key}: its matte must be HxW (one channel), got {list(arr.shape)}", P.matte_buffer(key)
        )
    return np.array(arr, dtype=np.float32)


def parse_paths_shot(msg: P.Message, frames: list[int], roots: AllowedRoots) -> PathsShot:
    """The checks that cost nothing (socket thread): field types and bounds, the patterns'
    folders and the keys inside the roots. Per-frame checks run in the job thread."""
    from colorprop.errors import ColorpropError
    from colorprop.io.sequence import FramePattern

    if not roots:
        raise ProtocolError(P.E_PATH, "shared-path mode is off on this server (no allowed roots)", "mode")
    inp, out, keys = msg.get("input"), msg.get("output"), msg.get("keys")
    for name, v in (("input", inp), ("output", out)):
        if not isinstance(v, str) or not v or len(v) > P.MAX_PATH_CHARS:
            raise ProtocolError(
                P.E_BAD_INPUT, f"{name} must be a frame pattern of 1..{P.MAX_PATH_CHARS} characters", name
            )
    if not isinstance(keys, dict) or not 0 < len(keys) <= P.MAX_KEYS:
        raise ProtocolError(P.E_BAD_INPUT, f"keys must map 1..{P.MAX_KEYS} frame numbers to EXR paths", "keys")
    key_paths = _frame_paths(keys, "keys")
    matte_paths = _frame_paths(msg.get("key_mattes") or {}, "key_mattes")
    partial = msg.get("partial_keys", []) if msg.get("v") >= P.MATTE_VERSION else None
    if partial is not None and (not isinstance(partial, list) or any(type(k) is not int for k in partial)):
        raise ProtocolError(P.E_BAD_INPUT, "partial_keys must be a list of key frames", "partial_keys")
    for name, frames_of in (("key_mattes", matte_paths), ("partial_keys", partial or [])):
        strays = sorted(set(frames_of) - set(key_paths))
        if strays:
            raise ProtocolError(P.E_BAD_INPUT, f"frame(s) {strays} have no key (--key FRAME=PATH)", name)
    try:
        in_pat, out_pat = FramePattern(inp), FramePattern(out)
    except ColorpropError as exc:
        raise ProtocolError(P.E_BAD_INPUT, str(exc), "input/output") from None
    for name, pattern in (("input", in_pat), ("output", out_pat)):
        if pattern.padding > P.MAX_FRAME_PADDING:
            raise ProtocolError(
                P.E_BAD_INPUT, f"{name}: a frame token of {pattern.padding} digits; at most {P.MAX_FRAME_PADDING}", name
            )
    try:
        for pattern in (in_pat, out_pat):
            roots.check(pattern.pattern)
            roots.check(pattern.path(frames[0]).parent)
        for path in [*key_paths.values(), *matte_paths.values()]:
            roots.check_file(path)
    except PathRefused as exc:
        raise ProtocolError(P.E_PATH, str(exc), "path") from None
    skip, pixel_type = msg.get("skip_existing", False), msg.get("pixel_type", "half")
    if not isinstance(skip, bool):
        raise ProtocolError(P.E_BAD_INPUT, "skip_existing must be true/false", "skip_existing")
    if pixel_type not in ("half", "float"):
        raise ProtocolError(P.E_BAD_INPUT, "pixel_type must be half or float", "pixel_type")
    return PathsShot(
        in_pat.pattern,
        out_pat.pattern,
        key_paths,
        skip,
        pixel_type,
        matte_paths,
        None if partial is None else tuple(sorted(partial)),
    )


def _frame_paths(value: Any, field: str) -> dict[int, str]:
    """``{"<frame>": path}`` from the header as ``{frame: path}``; ProtocolError naming ``field`` otherwise."""
    try:
        paths = {
            int(k): v
            for k, v in value.items()
            if isinstance(v, str) and len(v) <= P.MAX_PATH_CHARS and str(int(k)) == k
        }
    except (ValueError, AttributeError):
        paths = None
    if paths is None or len(paths) != len(value) or len(paths) > P.MAX_KEYS:
        raise ProtocolError(P.E_BAD_INPUT, f"{field} must map frame numbers to image paths", field)
    return paths


def parse_frame(msg: P.Message, frames: set[int], shape: tuple[int, int]) -> FrameIn:
    """A ``frame`` request of an in-band shot with ``frames`` of size ``shape`` (H, W)."""
    job = job_id(msg)
    frame = msg.get("frame")
    if type(frame) is not int or frame not in frames:
        raise ProtocolError(P.E_BAD_INPUT, f"frame {frame!r} is not a frame of this shot", "frame")
    channels = msg.get("channels")
    pixels = msg.arrays.get("pixels")
    if pixels is None or len(msg.arrays) != 1:
        raise ProtocolError(P.E_BAD_INPUT, "a frame message carries exactly one buffer, 'pixels'", "buffers")
    if (
        not isinstance(channels, list)
        or not channels
        or len(channels) > 64
        or any(not isinstance(c, str) or not c or len(c) > 64 for c in channels)
    ):
        raise ProtocolError(P.E_BAD_INPUT, "channels must be a list of channel names", "channels")
    if pixels.ndim != 3 or pixels.shape[2] != len(channels):
        raise ProtocolError(
            P.E_PIXELS,
            f"frame {frame}: pixels must be HxWx{len(channels)} for channels "
            f"{channels}, got shape {list(pixels.shape)}",
            "shape",
        )
    if tuple(pixels.shape[:2]) != shape:
        raise ProtocolError(
            P.E_PIXELS,
            f"frame {frame}: size {pixels.shape[1]}x{pixels.shape[0]} differs from "
            f"the shot's {shape[1]}x{shape[0]} (the key's size)",
            "shape",
        )
    if "Y" not in channels and not {"R", "G", "B"} <= set(channels):
        raise ProtocolError(P.E_BAD_INPUT, f"frame {frame}: channels {channels} have neither R,G,B nor Y", "channels")
    _check_finite(pixels, f"frame {frame}", "pixels")
    return FrameIn(job, frame, pixels, tuple(channels), _colorspace(msg))


def _check_finite(arr: np.ndarray, what: str, field: str) -> None:
    """``protocol.check_finite`` (its message names ``what``), the error naming the request's ``field``."""
    try:
        P.check_finite(arr, what)
    except ProtocolError as exc:
        exc.field = field
        raise


def parse_fetch(msg: P.Message, config: ServerConfig) -> Fetch:
    job = job_id(msg)
    after, wait_ms, max_events = msg.get("after", -1), msg.get("wait_ms", 0), msg.get("max_events", 16)
    for name, v in (("after", after), ("wait_ms", wait_ms), ("max_events", max_events)):
        if type(v) is not int or v < (-1 if name == "after" else 0):
            raise ProtocolError(P.E_BAD_INPUT, f"{name} must be an integer", name)
    return Fetch(
        job, after, min(wait_ms, config.max_wait_ms) / 1000.0, max(1, min(max_events, config.max_events_per_fetch))
    )
