"""Light client for the colorprop server: pyzmq + numpy only, safe to call from a DCC's UI thread.

:class:`Client` holds the requests (hello, status, open a shot) over the Lazy Pirate channel of
``transport.py``; a :class:`Job` is one shot session (send frames, fetch events, cancel, close). The
loops that run a whole shot are ``colorize.py``; the errors, ``errors.py``. With the defaults a dead or
absent server is reported within ``DEFAULT_RETRIES x DEFAULT_TIMEOUT_S`` (+ one long-poll) < 5 s. Every
request is idempotent on the server (job ids are chosen here, frames are keyed by number, results are
fetched "after sequence number N"), so a resend never duplicates work. This module also offers every
public name of the others (what callers import from it).

Typical use::

    results = colorize_arrays("tcp://gpu-host:5557", frames={1: rgb1, 2: rgb2},
                              keys={1: key_rgb}, options={"method": "full"})
    rgb, confidence = results[2]
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from . import protocol as P
from .curve_keys import CurveKeys
from .errors import (
    AuthenticationFailed,
    CancelledByUser,
    JobCancelled,
    JobFailed,
    JobLost,  # noqa: F401
    ProtocolError,
    ServerBusy,
    ServerError,
    ServerStopping,
    ServerUnavailable,
)
from .transport import (
    DEFAULT_RETRIES,  # noqa: F401
    DEFAULT_TIMEOUT_S,  # noqa: F401
    HEARTBEAT_IVL_MS,  # noqa: F401
    HEARTBEAT_TIMEOUT_MS,  # noqa: F401
    LIVE_WAIT_S,  # noqa: F401
    Transport,
)

__all__ = [
    "Client",
    "Job",
    "CurveKeys",
    "Event",
    "ServerError",
    "ServerUnavailable",
    "ServerStopping",
    "AuthenticationFailed",
    "ServerBusy",
    "JobFailed",
    "JobLost",
    "JobCancelled",
    "ProtocolError",
    "colorize_arrays",  # noqa: F822 (see __getattr__)
    "colorize_paths",  # noqa: F822 (see __getattr__)
]
# (importers of this module also find the defaults here: DEFAULT_TIMEOUT_S, DEFAULT_RETRIES, LIVE_WAIT_S,
# HEARTBEAT_IVL_MS, HEARTBEAT_TIMEOUT_MS, CancelledByUser; and, from colorize.py, the names below)
_FROM_COLORIZE = ("colorize_arrays", "colorize_paths", "LONG_POLL_S")


def __getattr__(name: str) -> Any:
    """``colorize_arrays``, ``colorize_paths`` and ``LONG_POLL_S`` live in colorize.py, which imports this module:
    found on first use rather than imported here (no import cycle)."""
    if name in _FROM_COLORIZE:
        from . import colorize

        return getattr(colorize, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass
class Event:
    """One progress/result/terminal event of a job."""

    kind: str
    seq: int
    frame: int | None = None
    rgb: np.ndarray | None = None  # HxWx3 float32, plate colour space
    confidence: np.ndarray | None = None  # HxW float32
    info: dict | None = None


class Client(Transport):
    """A connection to one colorprop server or broker. Not thread-safe: one per thread."""

    capabilities: dict | None = None  # the last hello's reply

    def ping(self) -> float:
        """Round-trip time in seconds."""
        t0 = time.monotonic()
        self.request(P.PING)
        return time.monotonic() - t0

    def hello(self) -> dict:
        """The server's capabilities: protocol version, methods, options with types, limits."""
        msg = self.request(P.HELLO, client="colorprop_client")
        caps = dict(msg.header)
        limits = caps.get("limits") or {}
        if isinstance(limits.get("max_message_bytes"), int):
            self.max_message_bytes = max(limits["max_message_bytes"], 1 << 20)
        self.capabilities = caps
        return caps

    capabilities_of = hello

    def status(self) -> list[dict]:
        """The jobs the server or broker holds: ``job`` (other clients' ids cut to 8 characters),
        ``client``, ``state``, ``frames_done``, ``frames``, ``age_s`` (a broker adds ``worker``)."""
        return list(self.request(P.STATUS).get("jobs") or [])

    def open_shot(
        self,
        keys: Mapping[int, Any],
        options: Mapping[str, Any] | None = None,
        frames: Sequence[int] = (),
        mode: str = P.MODE_INBAND,
        input_pattern: str | None = None,
        output_pattern: str | None = None,
        colorspace: str | None = None,
        job_id: str | None = None,
        key_mattes: Mapping[int, Any] | None = None,
        partial_keys: Sequence[int] = (),
        **extra: Any,
    ) -> "Job":
        """Open a shot session and return its :class:`Job`.

        In-band mode: ``keys`` maps frame -> HxWx3 array (plate colour space), ``frames`` lists
        every frame you will send; ``key_mattes`` frame -> HxW matte in [0, 1] makes that key a partial key.
        Paths mode: ``keys`` maps frame -> EXR path on shared storage, ``input_pattern``/``output_pattern``
        are frame patterns (``####``) under the server's allowed roots and ``frames`` the frames to colorize;
        ``key_mattes`` frame -> a matte image's path (``--key-matte``), ``partial_keys`` the key frames whose
        files hold an alpha that makes them partial. Either needs protocol ``MATTE_VERSION``: a server that
        speaks only version 1 refuses the shot (ServerError ``E_VERSION`` saying so) instead of colouring
        those keys as full keys.
        """
        job_id = job_id or P.new_id()
        fields: dict[str, Any] = {
            "job": job_id,
            "mode": mode,
            "options": dict(options or {}),
            "frames": [int(f) for f in frames],
            "colorspace": colorspace,
            **extra,
        }
        arrays = []
        key_mattes = dict(key_mattes or {})
        partial = sorted({int(f) for f in key_mattes} | {int(f) for f in partial_keys})
        if mode == P.MODE_INBAND:
            key_frames = []
            for f, img in sorted(keys.items()):
                arrays.append((f"key{int(f)}", _as_wire_array(img)))
                if f in key_mattes:
                    arrays.append((P.matte_buffer(f), _as_wire_array(key_mattes[f])))
                key_frames.append(int(f))
            fields["keys"] = key_frames
        elif mode == P.MODE_PATHS:
            fields["keys"] = {str(int(f)): os.fspath(p) for f, p in keys.items()}
            fields["input"] = input_pattern
            fields["output"] = output_pattern
            if partial:
                fields["key_mattes"] = {str(int(f)): os.fspath(p) for f, p in key_mattes.items()}
                fields["partial_keys"] = partial
        else:
            raise ValueError(f"mode must be one of {P.MODES}, not {mode!r}")
        version = P.LIVE_VERSION if extra.get("live") else P.MATTE_VERSION if partial else P.BASE_VERSION
        try:
            msg = self.request(P.OPEN_SHOT, arrays, version=version, **fields)
        except ServerError as exc:
            if exc.code != P.E_VERSION or version == P.BASE_VERSION:
                raise
            if version == P.LIVE_VERSION:
                raise ServerError(P.E_VERSION, live_version_message(self.address), "v") from None
            raise ServerError(
                P.E_VERSION,
                f"partial key(s) at frame(s) {', '.join(map(str, partial))} (a matte, or a key image's alpha) need "
                f"protocol {P.MATTE_VERSION}, which the server at {self.address} does not speak; update the server, "
                "or use full keys",
                "v",
            ) from None
        return Job(self, job_id, mode, msg.header)


class CancellableClient(Client):
    """A Client whose every request first checks ``is_cancelled`` (cancel/close still go out) and, when set,
    cancels the open job on the server and raises ``CancelledByUser``. The client loops call ``request``
    at least every few seconds, so cancel takes effect within one long-poll even while a frame computes.
    Used by the DCC plug-ins."""

    def __init__(self, *args: Any, is_cancelled: Callable[[], bool] = lambda: False, **kw: Any):
        super().__init__(*args, **kw)
        self.is_cancelled = is_cancelled
        self.job_id: str | None = None

    def request(self, type: str, arrays: Any = None, wait_s: float = 0.0, **fields: Any) -> P.Message:
        if type == P.OPEN_SHOT:
            self.job_id = fields.get("job")
        if type not in (P.CANCEL, P.CLOSE) and self.is_cancelled():
            if self.job_id is not None:
                try:
                    super().request(P.CANCEL, job=self.job_id)
                except ServerError:
                    pass
            raise CancelledByUser()
        return super().request(type, arrays, wait_s, **fields)


def live_version_message(address: str) -> str:
    return (
        f"a live session needs protocol {P.LIVE_VERSION}, which the server at {address} does not speak; update the "
        "server, or colour the shot as a batch job"
    )


def _as_wire_array(img: Any) -> np.ndarray:
    arr = np.asarray(img)
    if arr.dtype != np.float16:
        arr = arr.astype(np.float32, copy=False)
    return arr


class Job:
    """One shot session on the server."""

    def __init__(self, client: Client, job_id: str, mode: str, opened: dict):
        self.client = client
        self.id = job_id
        self.mode = mode
        self.opened = opened
        self.after = -1  # highest event sequence number received
        self.finished: Event | None = None
        self.suggestions: list[dict] = []  # from the done event: [{"frame", "expected_error"}], weakest first

    def send_frame(
        self, frame: int, pixels: np.ndarray, channels: Sequence[str] = ("R", "G", "B"), colorspace: str | None = None
    ) -> dict:
        """Send one in-band frame (HxWxC). Raises ServerBusy when the job's buffer is full."""
        msg = self.client.request(
            P.FRAME,
            [("pixels", _as_wire_array(pixels))],
            job=self.id,
            frame=int(frame),
            channels=list(channels),
            colorspace=colorspace,
        )
        return msg.header

    def fetch(self, wait_s: float = 1.0, max_events: int = 16) -> list[Event]:
        """Long-poll for events after the last one received (at most ``wait_s`` server-side)."""
        msg = self.client.request(
            P.FETCH,
            wait_s=wait_s,
            job=self.id,
            after=self.after,
            wait_ms=int(wait_s * 1000),
            max_events=max_events,
        )
        out = []
        for ev in msg.get("events", []):
            if not isinstance(ev, dict) or type(ev.get("seq")) is not int:
                raise ProtocolError(P.E_PROTOCOL, "malformed event in reply", "events")
            seq = ev["seq"]
            if seq <= self.after:
                continue
            self.after = seq
            e = Event(kind=str(ev.get("kind")), seq=seq, frame=ev.get("frame"), info=ev)
            if e.kind == P.EV_RESULT:
                e.rgb = msg.arrays.get(ev.get("rgb"))
                e.confidence = msg.arrays.get(ev.get("confidence"))
                if e.rgb is None:
                    raise ProtocolError(P.E_PROTOCOL, f"result for frame {e.frame} has no pixels", "events")
            if e.kind in P.TERMINAL_EVENTS:
                self.finished = e
            if e.kind == P.EV_DONE:
                self.suggestions = P.parse_suggestions(ev)
            out.append(e)
        return out

    def events(self, timeout_s: float | None = None, wait_s: float = 1.0) -> Iterator[Event]:
        """Iterate events until the job finishes (or ``timeout_s`` passes: TimeoutError)."""
        end = None if timeout_s is None else time.monotonic() + timeout_s
        while self.finished is None:
            if end is not None and time.monotonic() > end:
                raise TimeoutError(f"job {self.id} did not finish within {timeout_s} s")
            yield from self.fetch(wait_s=wait_s)

    def cancel(self) -> None:
        self.client.request(P.CANCEL, job=self.id)

    def close(self) -> None:
        """Drop the session on the server (idempotent; an unknown job is fine)."""
        try:
            self.client.request(P.CLOSE, job=self.id)
        except JobLost:
            pass
