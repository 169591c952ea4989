"""The colorprop wire protocol: the one place that defines what goes over ZeroMQ.

A message is a multipart ZeroMQ message::

    [header (UTF-8 JSON object), buffer 0, buffer 1, ...]

The header always carries ``v`` (protocol version), ``type`` (one of the message types below),
``id`` (request id, chosen by the client and echoed in the reply) and ``buffers``: one descriptor
per raw buffer frame that follows (``name``, ``shape``, ``dtype``, ``nbytes``), plus
``total_bytes``, the declared sum of all buffer sizes. Pixel buffers are raw C-order arrays of a
little-endian float dtype (HWC for images, HW for confidence). No Python object serialisation and
no evaluation: a header is plain JSON, a buffer is only ever read with ``numpy.frombuffer``.

Decoding is strict and checks, in this order: frame count, header size, JSON object, version,
message type, buffer descriptors (names, dtypes, shapes), ``shape x itemsize == nbytes`` for each
buffer, the declared ``total_bytes`` against the limit *and* against the sum of the descriptors,
and finally the actual length of every buffer frame. Every failure is a :class:`ProtocolError`
with a machine-readable ``code``.

This module imports only the standard library and numpy (1.x or 2.x), so it runs in Nuke's and
Blender's Python.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

# Versions. A message goes out at the lowest version that carries everything it holds (``BASE_VERSION`` unless a
# field below needs more), so a side that speaks only version 1 reads every message a shot of full keys sends,
# and refuses (E_VERSION) one it would misread. What each version added:
#   2: an open_shot may carry partial keys: in-band a ``matte<frame>`` buffer (HxW, [0, 1]) beside ``key<frame>``;
#      with shared paths ``key_mattes`` ({frame: path}) and ``partial_keys`` (the key frames whose files the
#      client read as partial, alpha included: a version-1 server would read them as full keys).
#   3: live sessions: an open_shot with ``live: true`` stays open after its run; ``edit`` changes its keys (the
#      running run is cancelled, a re-run starts) and ``view`` names the frame under the playhead; their events
#      ``run`` and ``run_done`` (docs/SERVER.md, "Live sessions"). Batch jobs are unchanged.
PROTOCOL_VERSION = 3  # the newest this side speaks (CAPABILITIES ``protocol``)
BASE_VERSION = 1
MATTE_VERSION = 2
LIVE_VERSION = 3
SUPPORTED_VERSIONS = frozenset(range(BASE_VERSION, PROTOCOL_VERSION + 1))

# Where a server listens and a client connects when nobody says otherwise (the broker's front end too).
DEFAULT_ADDRESS = "tcp://127.0.0.1:5557"

# A ZeroMQ endpoint we bind or connect: tcp://HOST:PORT (port 1-65535, or * to bind any), ipc://PATH or
# inproc://NAME. The one rule for the server's settings, `colorize --server` and the DCC's address field.
ADDRESS_FORMS = "tcp://HOST:PORT (port 1-65535), ipc://PATH or inproc://NAME"
_ADDRESS = re.compile(r"tcp://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.*-]+):(\d{1,5}|\*)|ipc://.+|inproc://.+")


def is_address(address: Any) -> bool:
    """True for a ZeroMQ endpoint of one of the forms ``ADDRESS_FORMS`` names."""
    m = _ADDRESS.fullmatch(address) if isinstance(address, str) else None
    return m is not None and (m.group(2) in (None, "*") or 0 < int(m.group(2)) <= 65535)


# Message types. Client -> server requests:
HELLO = "hello"  # -> CAPABILITIES
PING = "ping"  # -> PONG
OPEN_SHOT = "open_shot"  # -> OPENED | BUSY | ERROR
FRAME = "frame"  # in-band pixels for one frame -> ACK | BUSY | ERROR
FETCH = "fetch"  # long-poll for progress/result events after a sequence number -> EVENTS
CANCEL = "cancel"  # -> ACK
CLOSE = "close"  # -> ACK (the session and its undelivered results are dropped)
STATUS = "status"  # -> JOBS: the jobs a server or broker holds (added within version 1: an older
#                    server answers ERROR/E_PROTOCOL "unknown message type")
EDIT = "edit"  # version 3, a live session: ``edits`` [{op, frame, to?, path?, matte?}] (EDIT_OPS) -> ACK ``run``
VIEW = "view"  # version 3, a live session: ``frame`` under the playhead, run first from the next run on -> ACK
# Server -> client replies:
CAPABILITIES = "capabilities"
PONG = "pong"
OPENED = "opened"
ACK = "ack"
EVENTS = "events"
JOBS = "jobs"  # ``jobs``: [{job, client, state, frames_done, frames, age_s}]; other clients' ids cut to 8 chars
BUSY = "busy"
ERROR = "error"

REQUEST_TYPES = frozenset({HELLO, PING, OPEN_SHOT, FRAME, FETCH, CANCEL, CLOSE, STATUS, EDIT, VIEW})
REPLY_TYPES = frozenset({CAPABILITIES, PONG, OPENED, ACK, EVENTS, JOBS, BUSY, ERROR})
SHORT_JOB_ID = 8  # characters of another client's job id a status reply shows (a full id can fetch or cancel)
MESSAGE_TYPES = REQUEST_TYPES | REPLY_TYPES

# Event kinds inside an EVENTS reply.
EV_PROGRESS = "progress"  # a frame finished (frame, done, total, seconds)
EV_RESULT = "result"  # pixels of one frame: buffers "rgb" (HxWx3) and "confidence" (HxW)
EV_NEED = "need"  # the engine waits for this in-band frame (send it next)
EV_DONE = "done"  # the shot finished; ``report`` holds the summary
EV_FAILED = "failed"  # the shot failed; ``code`` and ``message`` say why
EV_CANCELLED = "cancelled"
EV_RETRIED = "retried"  # the job restarted on another worker (broker mode)
EV_WRITTEN = "written"  # shared-path mode: an output frame is in place (frame, path)
# Something the artist should know that stopped nothing (``message``: one line): each note of the server's
# pre-flight, e.g. a partial key's matte clamped into [0, 1], in either data mode (in-band also in the OPENED
# reply's ``notes``). Added within protocol 2, in replies of any version: a client that does not know the kind
# passes it by (the colorize loops hand every event they do not act on to ``on_progress``).
EV_NOTE = "note"
# A live session's runs (protocol 3): ``run`` (``run``: 0 for the open's, +1 per edit; ``keys``, ``view``), its
# ``result``/``written`` events (with ``run``; a frame the run does not change is not sent again), ``run_done``
# (``run``, ``report``, ``unchanged``). An edit cancels the running run (no run_done); the session ends at close.
EV_RUN = "run"
EV_RUN_DONE = "run_done"
TERMINAL_EVENTS = frozenset({EV_DONE, EV_FAILED, EV_CANCELLED})
# Optional field of the EV_DONE event: where a new key would help most, weakest frame first,
# ``[{"frame": int, "expected_error": float}]`` (expected_error: the expected share of wrong pixels,
# mean(1 - confidence), colorprop.shot.suggest). Added within protocol 1: a client that does not know it
# ignores it, and one that does reads an older server's done event (no field) as no suggestions.
DONE_SUGGESTIONS = "suggestions"
SUGGEST_COUNT = 3  # how many frames the server suggests

# The ops of an EDIT: ``set`` a key at ``frame`` (add or repaint; in-band the buffers ``key<frame>`` and, for a
# partial key, ``matte<frame>``; shared paths ``path`` and ``matte``), ``remove`` the key at ``frame``, ``move``
# the key at ``frame`` to ``to``.
EDIT_SET, EDIT_REMOVE, EDIT_MOVE = "set", "remove", "move"
EDIT_OPS = (EDIT_SET, EDIT_REMOVE, EDIT_MOVE)
MAX_EDITS = 64  # ops in one edit

# Data modes for OPEN_SHOT.
MODE_INBAND = "inband"
MODE_PATHS = "paths"
MODES = (MODE_INBAND, MODE_PATHS)

# Error codes carried in ERROR replies and FAILED events.
E_PROTOCOL = "protocol"  # malformed message
E_VERSION = "version"  # unsupported protocol version
E_TOO_LARGE = "too_large"  # declared or actual size above the limits
E_BAD_INPUT = "bad_input"  # valid message, invalid content (options, keys, shapes)
E_PIXELS = "pixels"  # NaN/Inf pixels or a size that does not match the shot
E_UNREADABLE = "unreadable"  # shared-path mode: a plate or key that cannot be read (missing, truncated, corrupt)
E_WRITE_FAILED = "write_failed"  # shared-path mode: an output frame that cannot be written
E_PATH = "path_refused"  # a path outside the allowed roots
E_UNKNOWN_JOB = "unknown_job"  # the server has no such job (closed, timed out, server restarted)
E_NOT_LIVE = "not_live"  # an edit or view for a job that is not an open live session (a batch job, or one that ended)
E_WORKER_LOST = "worker_lost"  # a worker died and the job cannot be retried
E_ENGINE = "engine"  # the engine raised while processing
E_INTERNAL = "internal"
E_SHUTDOWN = "shutdown"  # the server is stopping

DTYPES = {"float32": np.dtype("<f4"), "float16": np.dtype("<f2")}

# Defaults; the server announces its own values in CAPABILITIES.
MAX_HEADER_BYTES = 256 * 1024  # holds a frame list of MAX_FRAMES_PER_SHOT numbers
MAX_BUFFERS = 16
MAX_NDIM = 3
MAX_DIM = 32768
DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024 * 1024
# What one request may ask for; the server refuses anything beyond with E_BAD_INPUT naming the field.
MAX_FRAMES_PER_SHOT = 20_000
MAX_FRAME_NUMBER = 10**9 - 1  # |frame| bound, so a frame's file name stays short
MAX_KEYS = 256
MAX_PATH_CHARS = 4096  # a path or frame pattern (shared-path mode)
MAX_NAME_CHARS = 255  # one component of a path
MAX_FRAME_PADDING = 16  # digits of a frame token: '%099999999d' would build 100 MB of zeros per path


class ProtocolError(Exception):
    """A message that breaks the protocol. ``code`` is one of the ``E_*`` codes; ``field`` names
    the offending header field when there is one; ``request_id`` is set when it could be read."""

    def __init__(self, code: str, message: str, field: str | None = None, request_id: str | None = None):
        self.code = code
        self.message = message  # without the field: an error reply carries the field apart
        self.field = field
        self.request_id = request_id
        super().__init__(f"{message} (field {field!r})" if field else message)


@dataclass
class Message:
    """A decoded message: the header dict and named numpy arrays (read-only views of the frames)."""

    type: str
    id: str
    header: dict[str, Any]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        return self.header.get(key, default)


def matte_buffer(frame: int) -> str:
    """The name of an in-band partial key's matte buffer (HxW) beside its ``key<frame>`` pixels."""
    return f"matte{int(frame)}"


def new_id() -> str:
    return uuid.uuid4().hex


def _dtype_name(arr: np.ndarray) -> str:
    for name, dt in DTYPES.items():
        if arr.dtype == dt or arr.dtype == dt.newbyteorder("="):
            return name
    raise ProtocolError(E_BAD_INPUT, f"unsupported dtype {arr.dtype}; use float32 or float16", "dtype")


def encode(
    type: str,
    id: str | None = None,
    arrays: Mapping[str, np.ndarray] | Sequence[tuple[str, np.ndarray]] | None = None,
    max_message_bytes: int | None = None,
    version: int = BASE_VERSION,
    **fields: Any,
) -> list[bytes | memoryview]:
    """Build the frames of one message. ``arrays`` become buffer frames in the given order; ``version``: the
    lowest protocol version that carries the message (``MATTE_VERSION`` for partial keys)."""
    if type not in MESSAGE_TYPES:
        raise ProtocolError(E_PROTOCOL, f"unknown message type {type!r}", "type")
    items = list(arrays.items()) if isinstance(arrays, Mapping) else list(arrays or [])
    descs, bufs = [], []
    for name, arr in items:
        arr = np.asarray(arr)
        dname = _dtype_name(arr)
        arr = np.ascontiguousarray(arr, dtype=DTYPES[dname])
        descs.append(
            {"name": str(name), "shape": [int(s) for s in arr.shape], "dtype": dname, "nbytes": int(arr.nbytes)}
        )
        bufs.append(memoryview(arr).cast("B"))
    total = sum(d["nbytes"] for d in descs)
    if max_message_bytes is not None and total > max_message_bytes:
        raise ProtocolError(E_TOO_LARGE, f"message of {total} bytes exceeds the limit of {max_message_bytes}")
    header = dict(fields)
    header.update({"v": version, "type": type, "id": id or new_id(), "buffers": descs, "total_bytes": total})
    return [json.dumps(header, separators=(",", ":"), allow_nan=False).encode("utf-8"), *bufs]


def _frame_len(f: Any) -> int:
    if isinstance(f, (bytes, bytearray)):
        return len(f)
    mv = f if isinstance(f, memoryview) else memoryview(getattr(f, "buffer", f))
    return mv.nbytes


def _as_bytes(f: Any) -> bytes | memoryview:
    if isinstance(f, (bytes, bytearray, memoryview)):
        return f
    return memoryview(getattr(f, "buffer", f))


def peek_request_id(frame0: Any) -> str | None:
    """Best-effort request id from a header frame that failed to decode (for the error reply)."""
    try:
        if _frame_len(frame0) > MAX_HEADER_BYTES:
            return None
        h = json.loads(bytes(_as_bytes(frame0)).decode("utf-8"))
        rid = h.get("id") if isinstance(h, dict) else None
        return rid if isinstance(rid, str) and 0 < len(rid) <= 64 else None
    except Exception:
        return None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-finite number {name} in header")


def decode(
    frames: Sequence[Any],
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    expect: frozenset[str] | None = None,
) -> Message:
    """Validate and decode the frames of one message (bytes, memoryviews or ``zmq.Frame``s).

    ``expect`` restricts the accepted message types (the server passes ``REQUEST_TYPES``).
    Raises :class:`ProtocolError`; never evaluates anything from the message.
    """
    if not frames:
        raise ProtocolError(E_PROTOCOL, "empty message")
    if len(frames) > MAX_BUFFERS + 1:
        raise ProtocolError(E_TOO_LARGE, f"{len(frames) - 1} buffer frames; at most {MAX_BUFFERS}")
    if _frame_len(frames[0]) > MAX_HEADER_BYTES:
        raise ProtocolError(E_TOO_LARGE, f"header of {_frame_len(frames[0])} bytes; at most {MAX_HEADER_BYTES}")
    try:
        text = bytes(_as_bytes(frames[0])).decode("utf-8")
        header = json.loads(text, parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ProtocolError(E_PROTOCOL, f"header is not valid JSON: {exc}") from None
    if not isinstance(header, dict):
        raise ProtocolError(E_PROTOCOL, "header is not a JSON object")
    rid = header.get("id")
    if not isinstance(rid, str) or not 0 < len(rid) <= 64:
        raise ProtocolError(E_PROTOCOL, "missing or invalid request id", "id")
    version = header.get("v")
    if type(version) is not int:
        raise ProtocolError(E_PROTOCOL, "missing or invalid protocol version", "v", rid)
    if version not in SUPPORTED_VERSIONS:
        raise ProtocolError(
            E_VERSION,
            f"protocol version {version} not supported; this side speaks {BASE_VERSION} to {PROTOCOL_VERSION}",
            "v",
            rid,
        )
    mtype = header.get("type")
    if not isinstance(mtype, str) or mtype not in (expect or MESSAGE_TYPES):
        raise ProtocolError(E_PROTOCOL, f"unknown message type {mtype!r}", "type", rid)
    descs = header.get("buffers", [])
    if not isinstance(descs, list) or len(descs) > MAX_BUFFERS:
        raise ProtocolError(
            E_PROTOCOL, "buffers must be a list of at most %d descriptors" % MAX_BUFFERS, "buffers", rid
        )
    total = header.get("total_bytes", 0)
    if type(total) is not int or total < 0:
        raise ProtocolError(E_PROTOCOL, "total_bytes must be a non-negative integer", "total_bytes", rid)
    if total > max_message_bytes:
        raise ProtocolError(
            E_TOO_LARGE, f"declared {total} bytes exceeds the limit of {max_message_bytes}", "total_bytes", rid
        )
    parsed = []
    names = set()
    for i, d in enumerate(descs):
        where = f"buffers[{i}]"
        if not isinstance(d, dict):
            raise ProtocolError(E_PROTOCOL, "buffer descriptor is not an object", where, rid)
        name, shape, dname, nbytes = d.get("name"), d.get("shape"), d.get("dtype"), d.get("nbytes")
        if not isinstance(name, str) or not 0 < len(name) <= 64 or name in names:
            raise ProtocolError(E_PROTOCOL, "buffer name missing, too long or repeated", where + ".name", rid)
        names.add(name)
        if not isinstance(dname, str) or dname not in DTYPES:
            raise ProtocolError(
                E_BAD_INPUT, f"dtype {dname!r} not supported; use one of {sorted(DTYPES)}", where + ".dtype", rid
            )
        if (
            not isinstance(shape, list)
            or not 1 <= len(shape) <= MAX_NDIM
            or any(type(s) is not int or not 0 < s <= MAX_DIM for s in shape)
        ):
            raise ProtocolError(
                E_PROTOCOL, f"shape must be 1..{MAX_NDIM} positive ints <= {MAX_DIM}", where + ".shape", rid
            )
        if type(nbytes) is not int or nbytes != math.prod(shape) * DTYPES[dname].itemsize:
            raise ProtocolError(E_BAD_INPUT, "nbytes does not equal shape x dtype size", where + ".nbytes", rid)
        parsed.append((name, tuple(shape), DTYPES[dname], nbytes))
    if sum(p[3] for p in parsed) != total:
        raise ProtocolError(E_PROTOCOL, "total_bytes does not equal the sum of the buffer sizes", "total_bytes", rid)
    if len(frames) - 1 != len(parsed):
        raise ProtocolError(
            E_PROTOCOL, f"header declares {len(parsed)} buffers, message has {len(frames) - 1}", "buffers", rid
        )
    arrays = {}
    for (name, shape, dt, nbytes), f in zip(parsed, frames[1:]):
        actual = _frame_len(f)
        if actual != nbytes:
            raise ProtocolError(
                E_BAD_INPUT, f"buffer {name!r} has {actual} bytes, header declares {nbytes}", "buffers", rid
            )
        arrays[name] = np.frombuffer(_as_bytes(f), dtype=dt).reshape(shape)
    return Message(mtype, rid, header, arrays)


def error_reply(request_id: str | None, code: str, message: str, field: str | None = None, **extra: Any) -> list:
    """Frames of an ERROR reply."""
    fields = {"code": code, "message": message}
    if field:
        fields["field"] = field
    fields.update(extra)
    return encode(ERROR, request_id or "-", **fields)


def parse_suggestions(done_event: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The ``DONE_SUGGESTIONS`` of a done event as ``[{"frame": int, "expected_error": float}]`` (empty when the
    server sent none); ProtocolError naming the field when it is malformed."""
    items = done_event.get(DONE_SUGGESTIONS)
    if items is None:
        return []
    if not isinstance(items, list) or len(items) > MAX_FRAMES_PER_SHOT:
        raise ProtocolError(E_PROTOCOL, "suggestions must be a list", DONE_SUGGESTIONS)
    out = []
    for item in items:
        frame = item.get("frame") if isinstance(item, dict) else None
        error = item.get("expected_error") if isinstance(item, dict) else None
        if (
            type(frame) is not int
            or abs(frame) > MAX_FRAME_NUMBER
            or isinstance(error, bool)
            or not isinstance(error, (int, float))
            or not math.isfinite(error)
        ):
            raise ProtocolError(
                E_PROTOCOL,
                f"malformed suggestion {item!r}: needs an integer frame and a finite expected_error",
                DONE_SUGGESTIONS,
            )
        out.append({"frame": frame, "expected_error": float(error)})
    return out


def check_finite(arr: np.ndarray, what: str) -> None:
    """Raise ProtocolError(E_PIXELS) naming ``what`` when ``arr`` holds NaN or Inf."""
    if not np.isfinite(arr).all():
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ProtocolError(E_PIXELS, f"{what} has {bad} NaN/Inf values; colorprop needs finite pixels")
