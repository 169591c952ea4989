"""Light client for the colorprop server: pyzmq + numpy only, safe to call from a DCC's UI thread.

Lazy Pirate (zguide ch. 4): every request is sent on a DEALER socket with LINGER 0 and a fresh
request id; the reply is awaited with ``poll`` for at most ``timeout_s``; on silence the socket is
closed and reopened and the request resent, at most ``retries`` times, then
:class:`ServerUnavailable` is raised. Nothing here blocks forever.

A socket monitor watches the connection: a lost connection ends the wait at once (the request died
with it), a server whose connection is up and answers ZeroMQ heartbeats is slow, not dead, and is
waited for up to ``live_wait_s``; a CURVE handshake the server refused raises
:class:`AuthenticationFailed` instead of looking like an absent server. With the defaults a dead or
absent server is reported within ``DEFAULT_RETRIES x DEFAULT_TIMEOUT_S`` (+ one long-poll) < 5 s. Every request is idempotent
on the server (job ids are chosen here, frames are keyed by number, results are fetched "after
sequence number N"), so a resend never duplicates work.

Typical use::

    results = colorize_arrays("tcp://gpu-host:5557", frames={1: rgb1, 2: rgb2},
                              keys={1: key_rgb}, options={"method": "full"})
    rgb, confidence = results[2]
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import zmq

from . import protocol as P
from .curve_keys import CurveKeys
from .protocol import ProtocolError

__all__ = [
    "Client", "Job", "CurveKeys", "Event", "ServerError", "ServerUnavailable", "AuthenticationFailed", "ServerBusy",
    "JobFailed",
    "JobLost", "JobCancelled", "ProtocolError", "colorize_arrays", "colorize_paths",
]


# How long the colorize loops let the server hold a fetch when nothing has happened: short, because
# after a server dies a client notices within retries x timeout_s + this.
LONG_POLL_S = 1.0
# Give-up defaults (library, `colorize --server`, DCC plug-ins): a dead or absent server is reported
# within DEFAULT_RETRIES x DEFAULT_TIMEOUT_S + LONG_POLL_S = 4.6 s at most (a killed server: about
# 2 x DEFAULT_TIMEOUT_S, since the dropped connection is seen at once).
DEFAULT_TIMEOUT_S = 1.2
DEFAULT_RETRIES = 3
# A server whose connection is up and answers heartbeats is waited for this long per request (a big
# frame on a slow link, a loaded machine); a silent connection is dropped after HEARTBEAT_TIMEOUT_MS.
LIVE_WAIT_S = 60.0
HEARTBEAT_IVL_MS, HEARTBEAT_TIMEOUT_MS = 500, 1500
_LINK_EVENTS = (zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_FAILED_AUTH
                | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)


class ServerError(Exception):
    """The server answered with an error. ``code`` is one of ``protocol.E_*``."""

    def __init__(self, code: str, message: str, field: str | None = None):
        self.code = code
        self.field = field
        super().__init__(f"server error [{code}]: {message}" + (f" (field {field!r})" if field else ""))


class ServerUnavailable(ServerError):
    """No reply from the server within ``timeout_s`` after all retries."""

    def __init__(self, address: str, tries: int, timeout_s: float):
        super().__init__("unavailable", f"no reply from {address} after {tries} tries of {timeout_s:g} s")


class AuthenticationFailed(ServerError):
    """A server is there but refused this client's CURVE handshake (key not in its allow-list, wrong
    ``server.key``, or one side without CURVE). Retrying does not help: fix the keys. ``cause`` is one of
    ``KEY_NOT_LISTED``, ``CLIENT_HAS_NO_KEYS``, ``SERVER_HAS_NO_CURVE``, ``WRONG_SERVER_KEY`` (a plug-in says
    what to fix in its own words); ``curve`` the keys this client used (None: none)."""

    KEY_NOT_LISTED, CLIENT_HAS_NO_KEYS = "key_not_listed", "client_has_no_keys"
    SERVER_HAS_NO_CURVE, WRONG_SERVER_KEY = "server_has_no_curve", "wrong_server_key"

    def __init__(self, address: str, reason: str, cause: str = KEY_NOT_LISTED, curve: CurveKeys | None = None):
        self.address, self.reason, self.cause, self.curve = address, reason, cause, curve
        super().__init__("auth", f"{address} refused the connection: {reason}")


def _handshake_failure(event: int, value: int, curve: bool) -> tuple[str, str]:
    """(cause, why) a CURVE handshake failed, from the client's socket monitor event."""
    if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
        return AuthenticationFailed.KEY_NOT_LISTED, (
            f"this client's CURVE key is not in the server's authorized_clients/ (status {value}); "
            "ask for a key from `colorprop keys DIR --client NAME` on the server")
    if not curve:  # (a mechanism mismatch may also show as "no detail": the server hung up first)
        return AuthenticationFailed.CLIENT_HAS_NO_KEYS, (
            "the server uses CURVE and this client has no keys (set $COLORPROP_CURVE_KEYS), or it is not a "
            f"colorprop server (handshake event {event:#x}, {value:#x})")
    if event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL and value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
        return AuthenticationFailed.SERVER_HAS_NO_CURVE, "this client uses CURVE keys and the server does not"
    return AuthenticationFailed.WRONG_SERVER_KEY, "CURVE handshake failed: is server.key the public key of this server?"


class ServerBusy(ServerError):
    """The server's queue is full; ``retry_after_s`` says when to try again."""

    def __init__(self, message: str, retry_after_s: float):
        self.retry_after_s = float(retry_after_s)
        super().__init__("busy", f"{message}; retry in {self.retry_after_s:g} s")


class JobFailed(ServerError):
    """The shot failed on the server (bad pixels, engine error, worker lost...)."""


class JobLost(JobFailed):
    """The job is gone: the server restarted or shut down, the session timed out, or the worker
    running it died. Resending the shot is safe (``colorize_arrays(restarts=...)`` does it)."""


class JobCancelled(ServerError):
    def __init__(self, job_id: str):
        super().__init__("cancelled", f"job {job_id} was cancelled")


def _raise_for(msg: P.Message) -> None:
    if msg.type == P.ERROR:
        code, text = str(msg.get("code", P.E_INTERNAL)), str(msg.get("message", ""))
        if code in (P.E_UNKNOWN_JOB, P.E_WORKER_LOST):
            raise JobLost(code, text, msg.get("field"))
        raise ServerError(code, text, msg.get("field"))
    if msg.type == P.BUSY:
        raise ServerBusy(str(msg.get("message", "server busy")), float(msg.get("retry_after_s", 1.0)))


@dataclass
class Event:
    """One progress/result/terminal event of a job."""

    kind: str
    seq: int
    frame: int | None = None
    rgb: np.ndarray | None = None  # HxWx3 float32, plate colour space
    confidence: np.ndarray | None = None  # HxW float32
    info: dict | None = None


class Client:
    """A connection to one colorprop server or broker. Not thread-safe: one per thread."""

    def __init__(
        self,
        address: str = P.DEFAULT_ADDRESS,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        retries: int = DEFAULT_RETRIES,
        curve: CurveKeys | None = None,
        context: zmq.Context | None = None,
        live_wait_s: float = LIVE_WAIT_S,
    ):
        self.address = address
        self.timeout_s = float(timeout_s)
        self.retries = max(1, int(retries))
        self.live_wait_s = max(float(live_wait_s), self.timeout_s)
        self.curve = curve
        self._ctx = context or zmq.Context.instance()
        self._sock: zmq.Socket | None = None
        self._monitor: zmq.Socket | None = None
        self._link_up = False  # handshake done and no disconnect since (the monitor says)
        self._resets_in_handshake = 0  # "no detail" handshake failures since the last good handshake
        self._try_reset_in_handshake = False  # this try ended in such a reset
        self.max_message_bytes = P.DEFAULT_MAX_MESSAGE_BYTES
        self.capabilities: dict | None = None

    # -- Lazy Pirate core -------------------------------------------------------------------
    def _connect(self) -> zmq.Socket:
        s = self._ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        if self.curve is not None:
            s.curve_publickey = self.curve.public
            s.curve_secretkey = self.curve.secret
            s.curve_serverkey = self.curve.server_public
        s.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
        s.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
        self._monitor = s.get_monitor_socket(_LINK_EVENTS)
        self._link_up = False
        s.connect(self.address)
        return s

    def _drop_socket(self) -> None:
        if self._sock is not None:
            self._sock.disable_monitor()
            self._sock.close(linger=0)
            self._sock = None
        if self._monitor is not None:
            self._monitor.close(linger=0)
            self._monitor = None

    def _link_events(self) -> bool:
        """Read the monitor's events; False when the connection was lost (the request died with it).
        Raises AuthenticationFailed when the server refused the handshake."""
        from zmq.utils.monitor import recv_monitor_message

        lost = False
        while self._monitor is not None and self._monitor.poll(0, zmq.POLLIN):
            ev = recv_monitor_message(self._monitor)
            kind, value = ev["event"], ev["value"]
            if kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._link_up, self._resets_in_handshake = True, 0
            elif kind == zmq.EVENT_DISCONNECTED:
                lost, self._link_up = lost or self._link_up, False
            elif kind == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL and self._resets_in_handshake == 0:
                # A connection reset mid-handshake (a server killed while its kernel still accepted, a
                # restart) looks like this once; a server that refuses us does it on every connect.
                self._resets_in_handshake += 1
                self._try_reset_in_handshake = lost = True
            else:
                self._drop_socket()
                cause, reason = _handshake_failure(kind, value, self.curve is not None)
                raise AuthenticationFailed(self.address, reason, cause, self.curve)
        return not lost

    def request(
        self,
        type: str,
        arrays: Mapping[str, np.ndarray] | Sequence[tuple[str, np.ndarray]] | None = None,
        wait_s: float = 0.0,
        **fields: Any,
    ) -> P.Message:
        """Send one request and return the decoded reply. ``wait_s`` extends the reply timeout
        for long-polls (``wait_ms`` in ``fields``); a resend after silence does not long-poll, so a
        dead server is given up within ``retries x timeout_s + wait_s``. A lost connection ends a try
        at once; a connection that is up (heartbeats answered) is waited on up to ``live_wait_s``.
        Raises ServerUnavailable after ``retries`` silent tries, AuthenticationFailed when the server
        refuses the CURVE handshake, ServerBusy or ServerError for busy/error replies, ProtocolError
        for a malformed reply."""
        rid = P.new_id()
        frames = P.encode(type, rid, arrays, **fields)
        for attempt in range(self.retries + 1):
            if attempt == self.retries and not self._try_reset_in_handshake:
                break
            # (a last try that ended in a reset mid-handshake gets one more: a server refusing the handshake
            # does that on every connect, a restarting one does not; that try ended at once, so a dead server
            # is still given up within retries x timeout_s)
            self._try_reset_in_handshake = False
            if attempt == 1 and wait_s > 0 and "wait_ms" in fields:
                wait_s = 0.0
                frames = P.encode(type, rid, arrays, **dict(fields, wait_ms=0))
            if self._sock is None:
                self._sock = self._connect()
            if not self._send(frames):
                continue
            start = time.monotonic()
            end, live_end = start + self.timeout_s + wait_s, start + self.live_wait_s + wait_s
            poller = zmq.Poller()
            poller.register(self._sock, zmq.POLLIN)
            poller.register(self._monitor, zmq.POLLIN)
            while True:
                if not self._link_events():
                    break  # the connection dropped: this request is lost with it
                now = time.monotonic()
                left = (live_end if self._link_up else end) - now
                if left <= 0:
                    break
                ready = dict(poller.poll(int(min(left, 0.25) * 1000) + 1))
                if self._sock not in ready:
                    continue
                reply = self._sock.recv_multipart(copy=False)
                try:
                    msg = P.decode(reply, max_message_bytes=self.max_message_bytes, expect=P.REPLY_TYPES)
                except ProtocolError as exc:
                    if exc.request_id not in (rid, None):
                        continue  # a stale reply to an earlier, abandoned request
                    raise
                if msg.id != rid:
                    continue  # stale reply from a previous try: discard (Lazy Pirate)
                _raise_for(msg)
                return msg
            # Silence: the socket may hold a half-sent request or a dead connection; start over.
            self._drop_socket()
        raise ServerUnavailable(self.address, self.retries, self.timeout_s)

    def _send(self, frames: list) -> bool:
        """Queue a request without ever blocking: a DEALER with no connection to hand it to (a refused
        handshake, a reconnect in progress) would wait in ``send`` forever. False (socket dropped) when
        nothing took it within ``timeout_s``: a silent try. A refused handshake raises AuthenticationFailed."""
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLOUT)
        poller.register(self._monitor, zmq.POLLIN)  # a refused handshake is told at once, not after timeout_s
        end = time.monotonic() + self.timeout_s
        while (left := end - time.monotonic()) > 0:
            ready = dict(poller.poll(int(left * 1000) + 1))
            self._link_events()
            if ready.get(self._sock, 0) & zmq.POLLOUT:
                try:
                    self._sock.send_multipart(frames, copy=len(frames) == 1, flags=zmq.NOBLOCK)
                    return True
                except zmq.Again:
                    pass
        self._link_events()
        self._drop_socket()
        return False

    def close(self) -> None:
        self._drop_socket()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- requests ---------------------------------------------------------------------------
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
        **extra: Any,
    ) -> "Job":
        """Open a shot session and return its :class:`Job`.

        In-band mode: ``keys`` maps frame -> HxWx3 array (plate colour space), ``frames`` lists
        every frame you will send. Paths mode: ``keys`` maps frame -> EXR path on shared storage,
        ``input_pattern``/``output_pattern`` are frame patterns (``####``) under the server's
        allowed roots and ``frames`` the frames to colorize.
        """
        job_id = job_id or P.new_id()
        fields: dict[str, Any] = {
            "job": job_id, "mode": mode, "options": dict(options or {}),
            "frames": [int(f) for f in frames], "colorspace": colorspace, **extra,
        }
        arrays = []
        if mode == P.MODE_INBAND:
            key_frames = []
            for f, img in sorted(keys.items()):
                arr = _as_wire_array(img)
                arrays.append((f"key{int(f)}", arr))
                key_frames.append(int(f))
            fields["keys"] = key_frames
        elif mode == P.MODE_PATHS:
            fields["keys"] = {str(int(f)): os.fspath(p) for f, p in keys.items()}
            fields["input"] = input_pattern
            fields["output"] = output_pattern
        else:
            raise ValueError(f"mode must be one of {P.MODES}, not {mode!r}")
        msg = self.request(P.OPEN_SHOT, arrays, **fields)
        return Job(self, job_id, mode, msg.header)



class CancelledByUser(Exception):
    """The artist pressed cancel (raised by ``CancellableClient``)."""


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

    def send_frame(self, frame: int, pixels: np.ndarray, channels: Sequence[str] = ("R", "G", "B"),
                   colorspace: str | None = None) -> dict:
        """Send one in-band frame (HxWxC). Raises ServerBusy when the job's buffer is full."""
        msg = self.client.request(
            P.FRAME, [("pixels", _as_wire_array(pixels))], job=self.id, frame=int(frame),
            channels=list(channels), colorspace=colorspace,
        )
        return msg.header

    def fetch(self, wait_s: float = 1.0, max_events: int = 16) -> list[Event]:
        """Long-poll for events after the last one received (at most ``wait_s`` server-side)."""
        msg = self.client.request(
            P.FETCH, wait_s=wait_s, job=self.id, after=self.after, wait_ms=int(wait_s * 1000), max_events=max_events,
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


def _close_quietly(job: Job) -> None:
    """Close the job on the way out, unless the server is what failed: a dead server would make the
    close wait another ``retries x timeout_s`` before the caller hears why."""
    if isinstance(sys.exc_info()[1], ServerUnavailable):
        return
    try:
        job.close()
    except ServerError:
        pass


def _raise_terminal(job: Job, ev: Event) -> None:
    if ev.kind == P.EV_CANCELLED:
        raise JobCancelled(job.id)
    if ev.kind == P.EV_FAILED:
        info = ev.info or {}
        code = str(info.get("code", P.E_ENGINE))
        cls = JobLost if code in (P.E_UNKNOWN_JOB, P.E_WORKER_LOST, P.E_SHUTDOWN) else JobFailed
        raise cls(code, str(info.get("message", "job failed")), info.get("field"))


def _retry_busy(call: Callable[[], Any], deadline: float) -> Any:
    while True:
        try:
            return call()
        except ServerBusy as exc:
            if time.monotonic() + min(exc.retry_after_s, 0.05) > deadline:
                raise
            time.sleep(min(exc.retry_after_s, 0.25))


def colorize_arrays(
    address: str | Client,
    frames: Mapping[int, np.ndarray],
    keys: Mapping[int, np.ndarray],
    options: Mapping[str, Any] | None = None,
    channels: Sequence[str] = ("R", "G", "B"),
    colorspace: str | None = None,
    on_progress: Callable[[Event], None] | None = None,
    window: int = 4,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    retries: int = DEFAULT_RETRIES,
    curve: CurveKeys | None = None,
    restarts: int = 1,
    busy_wait_s: float = 60.0,
    job_timeout_s: float | None = None,
    carry_dtype: str = "float32",
    on_result: Callable[[int, np.ndarray, np.ndarray], None] | None = None,
    key_colorspaces: Mapping[int, str | None] | None = None,
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Colorize in-band frames on a server: ``{frame: (rgb HxWx3, confidence HxW)}``.

    Frames are streamed with at most ``window`` un-processed frames on the server. If the job is
    lost (server restarted, worker died) the whole shot is resent up to ``restarts`` times;
    propagation is deterministic, so the result equals a single run. ``carry_dtype="float16"``
    when you store the results as half floats: the colour carried between frames is then rounded
    the same way, exactly as the embedded engine does with a half-float EXR sink.
    ``frames`` may be any mapping (e.g. one that reads files lazily). With ``on_result`` each
    result is handed over as it arrives and not kept (the returned dict is then empty).
    """
    return _with_restarts(address, timeout_s, retries, curve, restarts, lambda client: _colorize_arrays_once(
        client, frames, keys, options, channels, colorspace, on_progress, window, busy_wait_s, job_timeout_s,
        carry_dtype, on_result, key_colorspaces))


def _with_restarts(address: str | Client, timeout_s: float, retries: int, curve: CurveKeys | None, restarts: int,
                   once: Callable[[Client], Any]) -> Any:
    """``once(client)``, run again (the whole shot resent) up to ``restarts`` times while the job is lost; a
    client made here from an address is closed on the way out."""
    own = not isinstance(address, Client)
    client = Client(address, timeout_s, retries, curve) if own else address
    try:
        for attempt in range(restarts):
            try:
                return once(client)
            except JobLost:
                pass
        return once(client)
    finally:
        if own:
            client.close()


def _colorize_arrays_once(client, frames, keys, options, channels, colorspace, on_progress, window,
                          busy_wait_s, job_timeout_s, carry_dtype, on_result, key_colorspaces):
    order = sorted(int(f) for f in frames)
    deadline = time.monotonic() + busy_wait_s
    job = _retry_busy(lambda: client.open_shot(keys, options, order, P.MODE_INBAND, colorspace=colorspace,
                                               carry_dtype=carry_dtype,
                                               key_colorspaces={str(int(k)): v for k, v in (key_colorspaces or {}).items()}),
                      deadline)
    results: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    got: set[int] = set()
    need: list[int] = []  # frames the engine is waiting for: sent first, even if sent before
    ahead = list(order)  # the rest, sent in order while fewer than `window` await their result
    in_window: set[int] = set()
    sent: set[int] = set()
    # A frame ``frames`` could not give (an unreadable file) or the server refused (NaN, wrong size): raised once
    # the results of the frames sent before it are back, so they are not lost.
    unreadable: Exception | None = None
    end = None if job_timeout_s is None else time.monotonic() + job_timeout_s
    try:
        while job.finished is None:
            if end is not None and time.monotonic() > end:
                raise TimeoutError(f"job {job.id} did not finish within {job_timeout_s} s")
            while unreadable is None and (need or (ahead and len(in_window - got) < window)):
                nxt = need[0] if need else ahead[0]
                try:
                    pixels = frames[nxt]
                except Exception as exc:  # e.g. an unreadable file: keep the results of the frames before it
                    unreadable = exc
                    break
                try:
                    job.send_frame(nxt, pixels, channels, colorspace)
                except ServerBusy:
                    break
                except ServerError as exc:
                    if exc.code != P.E_PIXELS:
                        raise
                    unreadable = exc
                    break
                sent.add(nxt)
                if need:
                    need.pop(0)
                    if nxt in ahead:
                        ahead.remove(nxt)
                else:
                    ahead.pop(0)
                    in_window.add(nxt)
            for ev in job.fetch(wait_s=LONG_POLL_S):
                if ev.kind == P.EV_RESULT:
                    got.add(ev.frame)
                    if on_result is not None:
                        on_result(ev.frame, ev.rgb, ev.confidence)
                    else:
                        results[ev.frame] = (ev.rgb, ev.confidence)
                elif ev.kind == P.EV_NEED and ev.frame is not None and int(ev.frame) in frames:
                    if unreadable is not None:
                        raise unreadable  # the engine waits for a frame we cannot give: nothing more will come
                    if int(ev.frame) not in need:
                        need.append(int(ev.frame))
                elif ev.kind in P.TERMINAL_EVENTS:
                    _raise_terminal(job, ev)
                if on_progress is not None:
                    on_progress(ev)
            if unreadable is not None and sent <= got:
                raise unreadable
    finally:
        _close_quietly(job)
    missing = [f for f in order if f not in got]
    if missing:
        raise JobFailed(P.E_INTERNAL, f"job {job.id} finished without results for frames {missing[:10]}")
    return results


def colorize_paths(
    address: str | Client,
    input_pattern: str,
    output_pattern: str,
    frames: Sequence[int],
    keys: Mapping[int, str | os.PathLike],
    options: Mapping[str, Any] | None = None,
    colorspace: str | None = None,
    on_progress: Callable[[Event], None] | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    retries: int = DEFAULT_RETRIES,
    curve: CurveKeys | None = None,
    busy_wait_s: float = 60.0,
    job_timeout_s: float | None = None,
    skip_existing: bool = False,
    pixel_type: str = "half",
    restarts: int = 1,
) -> dict:
    """Colorize EXR frames on shared storage; the server reads and writes the files (atomically).
    Returns the ``done`` event's report. A lost job (server restarted, worker stopped) is
    resubmitted up to ``restarts`` times."""
    return _with_restarts(address, timeout_s, retries, curve, restarts, lambda client: _colorize_paths_once(
        client, input_pattern, output_pattern, frames, keys, options, colorspace, on_progress, busy_wait_s,
        job_timeout_s, skip_existing, pixel_type))


def _colorize_paths_once(client, input_pattern, output_pattern, frames, keys, options, colorspace, on_progress,
                         busy_wait_s, job_timeout_s, skip_existing, pixel_type):
    deadline = time.monotonic() + busy_wait_s
    job = _retry_busy(lambda: client.open_shot(keys, options, frames, P.MODE_PATHS, input_pattern,
                                               output_pattern, colorspace, skip_existing=skip_existing,
                                               pixel_type=pixel_type), deadline)
    try:
        for ev in job.events(timeout_s=job_timeout_s, wait_s=LONG_POLL_S):
            if ev.kind in P.TERMINAL_EVENTS:
                _raise_terminal(job, ev)
            if on_progress is not None:
                on_progress(ev)
        return dict((job.finished.info or {}).get("report") or {})
    finally:
        _close_quietly(job)
