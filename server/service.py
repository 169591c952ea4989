"""Shot sessions, fair scheduling and the request handlers: everything but the socket.

One ``Service`` lives in the socket thread (the standalone server's ROUTER loop or a worker's
DEALER loop). Each open shot is a ``Session`` with its own thread running
``pipeline.run_shot``; a ``FairGate`` lets exactly one of them compute at a time and hands the
turn round-robin at every frame read, so a 10-frame shot interleaves with a 500-frame one
instead of waiting behind it. The socket thread never computes: it answers pings, hello and
long-polls while a frame runs. Job threads talk back only through ``Session`` (under its lock)
and a wake-up pipe that the socket loop polls.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable

import numpy as np

from colorprop_client import protocol as P
from colorprop_client.protocol import ProtocolError

from .config import ServerConfig
from .logs import log_event
from .metrics import ServerMetrics
from .paths import AllowedRoots, PathRefused
from .status import job_row

log = logging.getLogger("colorprop_server")
request_log = logging.getLogger("colorprop_server.requests")

Reply = Callable[[list], None]
_JOB_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class _Stop(Exception):
    """Raised inside a job thread when its session is cancelled or dropped."""


class FairGate:
    """One compute turn at a time, granted to waiting jobs in FIFO order (= round-robin, since a
    job that gives the turn back and asks again queues behind the others)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._holder: str | None = None
        self._waiting: deque[str] = deque()

    def acquire(self, job: str, stopped: Callable[[], bool]) -> None:
        with self._cond:
            if self._holder == job:
                return
            self._waiting.append(job)
            try:
                while not (self._holder is None and self._waiting[0] == job):
                    if stopped():
                        raise _Stop()
                    self._cond.wait(0.05)
            except BaseException:
                self._waiting.remove(job)
                self._cond.notify_all()
                raise
            self._waiting.popleft()
            self._holder = job

    def release(self, job: str) -> None:
        with self._cond:
            if self._holder == job:
                self._holder = None
                self._cond.notify_all()

    def waiting(self) -> int:
        with self._cond:
            return len(self._waiting)


@dataclasses.dataclass
class _PendingFetch:
    reply: Reply
    request_id: str
    after: int
    max_events: int
    deadline: float


class Session:
    """One shot. Fields touched by both threads are guarded by ``cond``."""

    def __init__(self, job_id: str, client: str, mode: str, frames: list[int], seq_base: int = 0):
        self.id = job_id
        self.client = client
        self.mode = mode
        self.frames = frames
        self.frame_set = set(frames)
        self.created = self.last_seen = time.monotonic()
        self.cond = threading.Condition()
        self.events: deque[tuple[int, dict, list]] = deque()  # (seq, event, [(name, array)])
        self.next_seq = seq_base
        self.acked = seq_base - 1
        self.inbox: dict[int, Any] = {}  # in-band frames received, not yet read
        self.consumed: set[int] = set()
        self.last_read: tuple[int, Any] | None = None
        self.needed: int | None = None
        self.shape: tuple[int, int] | None = None  # (H, W) of the shot
        self.stop = threading.Event()
        self.state = "running"
        self.thread: threading.Thread | None = None
        self.opened_reply: dict | None = None
        self.pending_fetch: _PendingFetch | None = None
        self.frames_done = 0
        self.key_bytes = 0
        self.terminal_seq: int | None = None  # seq of the done/failed/cancelled event, once pushed
        self.key_frames: list[int] = []
        self.summaries: dict[int, dict] = {}  # frame -> confidence.frame_summary of the frames coloured (suggestions)
        self.end_code: str | None = None  # the error code of its failed event

    # job thread side
    def push(self, event: dict, arrays: list | None = None) -> None:
        with self.cond:
            event["seq"] = self.next_seq
            if event["kind"] in P.TERMINAL_EVENTS:
                self.terminal_seq = self.next_seq
                self.end_code = event.get("code")
            self.next_seq += 1
            self.events.append((event["seq"], event, arrays or []))
            self.cond.notify_all()

    def undelivered_results(self) -> int:
        return sum(1 for _, ev, arrs in self.events if arrs)

    def held_bytes(self) -> int:
        """Pixels this session holds for its client: keys, buffered frames, results not fetched."""
        with self.cond:
            return (self.key_bytes + sum(item[0].nbytes for item in self.inbox.values())
                    + sum(a.nbytes for _, _, arrs in self.events for _, a in arrs))

    @property
    def finished(self) -> bool:
        return self.state != "running"


class Service:
    """Transport-independent request handling. Call ``handle`` and ``tick`` from one thread."""

    def __init__(self, config: ServerConfig, engine: Any, wake: Callable[[], None]):
        self.config = config
        self.engine = engine
        self.wake = wake
        self.roots = AllowedRoots(config.allowed_roots)
        self.sessions: dict[str, Session] = {}
        self.gate = FairGate()
        self.stopping = False
        self.frame_seconds = 0.5  # running mean, for "retry in N s"
        self.threads: list[threading.Thread] = []
        self._describe = engine.describe()
        self.metrics = ServerMetrics(self.stats)

    # ------------------------------------------------------------------ entry points
    def handle(self, frames: list, client: str, reply: Reply) -> None:
        """Decode one request and answer it (now, or later for a long-poll fetch)."""
        t0 = time.monotonic()
        info: dict[str, Any] = {"client": client}

        def logged_reply(out: list) -> None:
            try:
                head = json.loads(bytes(out[0]))
                info.update(status=head.get("type"), code=head.get("code"))
                if head.get("type") == P.EVENTS:
                    info["events"] = len(head.get("events", []))
            except Exception:  # pragma: no cover - our own encoder made it
                pass
            self.metrics.request(str(info.get("type")), info.get("code"))
            if request_log.isEnabledFor(logging.INFO):
                info["ms"] = round((time.monotonic() - t0) * 1000, 2)
                log_event(request_log, "request", **info)
            reply(out)

        try:
            msg = P.decode(frames, self.config.max_message_bytes, expect=P.REQUEST_TYPES)
        except ProtocolError as exc:
            info.update(type="?", id=exc.request_id, bytes=sum(_nbytes(f) for f in frames))
            logged_reply(P.error_reply(exc.request_id, exc.code, str(exc), exc.field))
            return
        info.update(type=msg.type, id=msg.id, job=msg.get("job") if isinstance(msg.get("job"), str) else None,
                    frame=msg.get("frame") if type(msg.get("frame")) is int else None)
        try:
            getattr(self, "_on_" + msg.type)(msg, client, logged_reply)
        except ProtocolError as exc:
            logged_reply(P.error_reply(msg.id, exc.code, str(exc), exc.field))
        except Exception as exc:  # never let one request take the server down
            log.exception("internal error handling %s", msg.type)
            logged_reply(P.error_reply(msg.id, P.E_INTERNAL, f"{type(exc).__name__}: {exc}"))

    def tick(self) -> None:
        """Answer long-polls that have events or have waited long enough; drop dead sessions."""
        now = time.monotonic()
        for s in list(self.sessions.values()):
            pf = s.pending_fetch
            if pf is not None:
                with s.cond:
                    ready = any(seq > pf.after for seq, _, _ in s.events)
                if ready or now >= pf.deadline or self.stopping:
                    s.pending_fetch = None
                    pf.reply(self._events_reply(s, pf.request_id, pf.after, pf.max_events))
            if s.pending_fetch is None and now - s.last_seen > self.config.session_timeout_s:
                log_event(log, "session_timeout", job=s.id, client=s.client)
                self._drop(s)

    def next_deadline(self) -> float | None:
        deadlines = [s.pending_fetch.deadline for s in self.sessions.values() if s.pending_fetch is not None]
        return min(deadlines) if deadlines else None

    def active_jobs(self) -> list[Session]:
        return [s for s in self.sessions.values() if not s.finished]

    def shutdown(self) -> None:
        """Stop accepting work and cancel every job (the frame in flight finishes first)."""
        self.stopping = True
        for s in self.sessions.values():
            s.stop.set()
        self.wake()

    def cancel_all(self, reason: str) -> None:
        for s in list(self.sessions.values()):
            log_event(log, "job_dropped", job=s.id, reason=reason)
            self._drop(s)

    def all_told(self) -> bool:
        """Every session's client has fetched its terminal event (or closed the session)."""
        return all(s.terminal_seq is not None and s.acked >= s.terminal_seq for s in self.sessions.values())

    def threads_alive(self) -> bool:
        self.threads = [t for t in self.threads if t.is_alive()]
        return bool(self.threads)

    def stats(self) -> dict[str, Any]:
        return {"sessions": len(self.sessions), "active_jobs": len(self.active_jobs()),
                "waiting_for_turn": self.gate.waiting()}

    def capabilities(self) -> dict[str, Any]:
        return {
            "protocol": P.PROTOCOL_VERSION,
            "server": "colorprop_server",
            "engine": self._describe,
            "modes": [P.MODE_INBAND] + ([P.MODE_PATHS] if self.roots else []),
            "dtypes": sorted(P.DTYPES),
            "limits": self.config.limits(),
        }

    # ------------------------------------------------------------------ handlers
    def _on_ping(self, msg: P.Message, client: str, reply: Reply) -> None:
        reply(P.encode(P.PONG, msg.id, time=time.time(), **self.stats()))

    def _on_hello(self, msg: P.Message, client: str, reply: Reply) -> None:
        reply(P.encode(P.CAPABILITIES, msg.id, **self.capabilities()))

    def _on_status(self, msg: P.Message, client: str, reply: Reply) -> None:
        now = time.monotonic()
        jobs = [job_row(s.id, s.client, client, s.state, s.mode, s.frames_done, len(s.frames), now - s.created)
                for s in self.sessions.values()]
        reply(P.encode(P.JOBS, msg.id, jobs=jobs, **self.stats()))

    def _on_open_shot(self, msg: P.Message, client: str, reply: Reply) -> None:
        from colorprop.engine.engine import ShotOptions
        from colorprop.errors import ColorpropError

        job_id = _job_id(msg)
        existing = self.sessions.get(job_id)
        if existing is not None:  # a resend of an open we already did: same answer (idempotent)
            existing.last_seen = time.monotonic()
            reply(P.encode(P.OPENED, msg.id, **existing.opened_reply))
            return
        if self.stopping:
            raise ProtocolError(P.E_SHUTDOWN, "server is shutting down")
        mode = msg.get("mode")
        if mode not in P.MODES:
            raise ProtocolError(P.E_BAD_INPUT, f"mode must be one of {list(P.MODES)}", "mode")
        busy = self._open_budget(client, sum(a.nbytes for a in msg.arrays.values()))
        if busy:
            reply(P.encode(P.BUSY, msg.id, message=busy, retry_after_s=self._retry_after()))
            return
        frames = msg.get("frames")
        if (not isinstance(frames, list) or not frames or len(frames) > self.config.max_frames_per_shot
                or any(type(f) is not int or abs(f) > P.MAX_FRAME_NUMBER for f in frames)
                or len(set(frames)) != len(frames)):
            raise ProtocolError(P.E_BAD_INPUT, f"frames must be 1..{self.config.max_frames_per_shot} distinct integers "
                                f"of at most {len(str(P.MAX_FRAME_NUMBER))} digits", "frames")
        options_in = msg.get("options", {})
        if not isinstance(options_in, dict):
            raise ProtocolError(P.E_BAD_INPUT, "options must be an object", "options")
        colorspace = msg.get("colorspace")
        if colorspace is not None and not isinstance(colorspace, str):
            raise ProtocolError(P.E_BAD_INPUT, "colorspace must be a string or null", "colorspace")
        seq_base = msg.get("seq_base", 0)
        if type(seq_base) is not int or seq_base < 0:
            raise ProtocolError(P.E_BAD_INPUT, "seq_base must be a non-negative integer", "seq_base")
        try:
            options = ShotOptions.from_dict(options_in)
            self.engine.check_method(options.method)
        except ColorpropError as exc:
            raise ProtocolError(P.E_BAD_INPUT, str(exc), "options") from None
        frames = sorted(frames)
        session = Session(job_id, client, mode, frames, seq_base)
        if mode == P.MODE_INBAND:
            keys = self._inband_keys(msg, session, colorspace)
            session.key_bytes = sum(k.pixels.nbytes for k in keys.values())
            carry = msg.get("carry_dtype", "float32")
            if carry not in ("float32", "float16"):
                raise ProtocolError(P.E_BAD_INPUT, "carry_dtype must be float32 or float16", "carry_dtype")
            target = self._run_inband
            session.key_frames = sorted(keys)
            args = (session, keys, options, colorspace, np.float16 if carry == "float16" else np.float32)
        else:
            plan = self._paths_plan(msg, frames)
            skip, pixel_type = msg.get("skip_existing", False), msg.get("pixel_type", "half")
            if not isinstance(skip, bool):
                raise ProtocolError(P.E_BAD_INPUT, "skip_existing must be true/false", "skip_existing")
            if pixel_type not in ("half", "float"):
                raise ProtocolError(P.E_BAD_INPUT, "pixel_type must be half or float", "pixel_type")
            plan.update(skip_existing=skip, pixel_type=pixel_type)
            target = self._run_paths
            session.key_frames = sorted(plan["keys"])
            args = (session, plan, options)
        session.opened_reply = {"job": job_id, "frames": len(frames), "mode": mode}
        self.sessions[job_id] = session
        session.thread = threading.Thread(target=self._job_thread, args=(session, target, args),
                                          name=f"colorprop-job-{job_id[:8]}", daemon=True)
        session.thread.start()
        self.threads.append(session.thread)
        log_event(log, "job_start", job=job_id, client=client, mode=mode, frames=len(frames), method=options.method)
        self.metrics.job_started(client)
        reply(P.encode(P.OPENED, msg.id, **session.opened_reply))

    def _on_frame(self, msg: P.Message, client: str, reply: Reply) -> None:
        s = self._session(msg)
        if s.mode != P.MODE_INBAND:
            raise ProtocolError(P.E_BAD_INPUT, "frames are sent only in in-band mode", "mode")
        frame = msg.get("frame")
        if type(frame) is not int or frame not in s.frame_set:
            raise ProtocolError(P.E_BAD_INPUT, f"frame {frame!r} is not a frame of this shot", "frame")
        channels = msg.get("channels")
        pixels = msg.arrays.get("pixels")
        if pixels is None or len(msg.arrays) != 1:
            raise ProtocolError(P.E_BAD_INPUT, "a frame message carries exactly one buffer, 'pixels'", "buffers")
        if (not isinstance(channels, list) or not channels or len(channels) > 64
                or any(not isinstance(c, str) or not c or len(c) > 64 for c in channels)):
            raise ProtocolError(P.E_BAD_INPUT, "channels must be a list of channel names", "channels")
        if pixels.ndim != 3 or pixels.shape[2] != len(channels):
            raise ProtocolError(P.E_PIXELS, f"frame {frame}: pixels must be HxWx{len(channels)} for channels "
                                f"{channels}, got shape {list(pixels.shape)}", "shape")
        if tuple(pixels.shape[:2]) != s.shape:
            raise ProtocolError(P.E_PIXELS, f"frame {frame}: size {pixels.shape[1]}x{pixels.shape[0]} differs from "
                                f"the shot's {s.shape[1]}x{s.shape[0]} (the key's size)", "shape")
        if "Y" not in channels and not {"R", "G", "B"} <= set(channels):
            raise ProtocolError(P.E_BAD_INPUT, f"frame {frame}: channels {channels} have neither R,G,B nor Y",
                                "channels")
        try:
            P.check_finite(pixels, f"frame {frame}")
        except ProtocolError as exc:
            exc.field = "pixels"
            raise
        colorspace = msg.get("colorspace")
        if colorspace is not None and not isinstance(colorspace, str):
            raise ProtocolError(P.E_BAD_INPUT, "colorspace must be a string or null", "colorspace")
        over_budget = self._frame_budget(client, pixels.size * 4)  # (the frame the engine waits for is always taken)
        with s.cond:
            if frame in s.consumed and frame != s.needed:
                accepted = False  # a late resend of a frame the engine already read
            elif frame != s.needed and frame not in s.inbox and (len(s.inbox) >= self.config.max_buffered_frames
                                                                 or over_budget):
                full = over_budget or f"job buffer full ({len(s.inbox)} frames)"
                reply(P.encode(P.BUSY, msg.id, message=full, retry_after_s=round(self.frame_seconds, 3)))
                return
            else:
                # float32 arrives as a read-only view of the received frame: no copy (the engine never
                # writes into its input); half floats are widened once.
                px = pixels if pixels.dtype == np.float32 else pixels.astype(np.float32)
                s.inbox[frame] = (px, tuple(channels), colorspace)
                accepted = True
                s.cond.notify_all()
        reply(P.encode(P.ACK, msg.id, job=s.id, frame=frame, accepted=accepted))

    def _on_fetch(self, msg: P.Message, client: str, reply: Reply) -> None:
        s = self._session(msg)
        after, wait_ms, max_events = msg.get("after", -1), msg.get("wait_ms", 0), msg.get("max_events", 16)
        for name, v in (("after", after), ("wait_ms", wait_ms), ("max_events", max_events)):
            if type(v) is not int or v < (-1 if name == "after" else 0):
                raise ProtocolError(P.E_BAD_INPUT, f"{name} must be an integer", name)
        max_events = max(1, min(max_events, self.config.max_events_per_fetch))
        wait_s = min(wait_ms, self.config.max_wait_ms) / 1000.0
        with s.cond:
            ready = any(seq > after for seq, _, _ in s.events)
        if s.pending_fetch is not None:  # superseded by a resend (the client gave up on it)
            old, s.pending_fetch = s.pending_fetch, None
            old.reply(self._events_reply(s, old.request_id, old.after, old.max_events))
        if ready or wait_s <= 0 or self.stopping:
            reply(self._events_reply(s, msg.id, after, max_events))
        else:
            s.pending_fetch = _PendingFetch(reply, msg.id, after, max_events, time.monotonic() + wait_s)

    def _on_cancel(self, msg: P.Message, client: str, reply: Reply) -> None:
        s = self._session(msg)
        s.stop.set()
        with s.cond:
            s.cond.notify_all()
        reply(P.encode(P.ACK, msg.id, job=s.id, cancelled=True))

    def _on_close(self, msg: P.Message, client: str, reply: Reply) -> None:
        s = self._session(msg)
        self._drop(s)
        reply(P.encode(P.ACK, msg.id, job=s.id, closed=True))

    # ------------------------------------------------------------------ helpers (socket thread)
    def _session(self, msg: P.Message) -> Session:
        job_id = _job_id(msg)
        s = self.sessions.get(job_id)
        if s is None:
            raise ProtocolError(P.E_UNKNOWN_JOB, f"no job {job_id} on this server (closed, timed out, or the "
                                "server restarted)", "job")
        s.last_seen = time.monotonic()
        return s

    def _drop(self, s: Session) -> None:
        s.stop.set()
        with s.cond:
            s.cond.notify_all()
        if s.pending_fetch is not None:
            pf, s.pending_fetch = s.pending_fetch, None
            pf.reply(self._events_reply(s, pf.request_id, pf.after, pf.max_events))
        self.sessions.pop(s.id, None)

    def _open_budget(self, client: str, key_bytes: int) -> str | None:
        """Why a new shot must wait (``busy``), or None: all slots taken, this client's share taken,
        or its keys would not fit in the memory budget."""
        active = self.active_jobs()
        if len(active) >= self.config.max_jobs:
            return f"{self.config.max_jobs} shots already running"
        mine = sum(1 for s in active if s.client == client)
        if mine >= self.config.max_jobs_per_client:
            return f"client {client} already has {mine} shots running (the per-client limit)"
        return self._memory_busy(key_bytes)

    def _frame_budget(self, client: str, nbytes: int) -> str | None:
        """Why an in-band frame must wait (``busy``), or None: this client's buffered frames, or the
        memory budget."""
        mine = sum(len(s.inbox) for s in self.sessions.values() if s.client == client)
        if mine >= self.config.max_client_buffered_frames:
            return f"client {client} has {mine} frames waiting (the per-client limit)"
        return self._memory_busy(nbytes)

    def _memory_busy(self, nbytes: int) -> str | None:
        """Why ``nbytes`` more pixels must wait (the memory budget is full), or None."""
        if sum(s.held_bytes() for s in self.sessions.values()) + nbytes > self.config.max_memory_bytes:
            return f"the server's memory budget ({self.config.max_memory_bytes >> 20} MiB) is full"
        return None

    def _retry_after(self) -> float:
        remaining = sum(len(s.frames) - s.frames_done for s in self.active_jobs())
        est = self.frame_seconds * remaining / max(1, self.config.max_jobs)
        return round(min(60.0, max(0.5, est)), 1)

    def _events_reply(self, s: Session, request_id: str, after: int, max_events: int) -> list:
        """Events after ``after`` (acknowledging and forgetting the ones at or before it)."""
        budget = max(1, self.config.max_message_bytes // 2)
        events, arrays, size = [], [], 0
        with s.cond:
            while s.events and s.events[0][0] <= after:
                s.events.popleft()
            s.acked = max(s.acked, after)
            s.cond.notify_all()  # a job waiting for its results to be fetched may go on
            for seq, ev, arrs in s.events:
                if len(events) >= max_events:
                    break
                nbytes = sum(a.nbytes for _, a in arrs)
                if arrs and events and size + nbytes > budget:
                    break
                ev = dict(ev)
                for name, a in arrs:
                    key = f"{name}{seq}"
                    ev[name] = key
                    arrays.append((key, a))
                size += nbytes
                events.append(ev)
        return P.encode(P.EVENTS, request_id, arrays, job=s.id, state=s.state, events=events)

    def _inband_keys(self, msg: P.Message, s: Session, colorspace: str | None) -> dict:
        from colorprop.shot.pipeline import KeyImage

        key_frames = msg.get("keys")
        if not isinstance(key_frames, list) or not key_frames or any(type(k) is not int for k in key_frames):
            raise ProtocolError(P.E_BAD_INPUT, "keys must be a non-empty list of frame numbers", "keys")
        if set(msg.arrays) != {f"key{k}" for k in key_frames}:
            raise ProtocolError(P.E_BAD_INPUT, "one buffer 'key<frame>' per key frame is needed", "buffers")
        key_cs = msg.get("key_colorspaces") or {}
        if not isinstance(key_cs, dict) or any(v is not None and not isinstance(v, str) for v in key_cs.values()):
            raise ProtocolError(P.E_BAD_INPUT, "key_colorspaces must map frames to colour space names", "key_colorspaces")
        keys = {}
        for k in key_frames:
            if k not in s.frame_set:
                raise ProtocolError(P.E_BAD_INPUT, f"key frame {k} is not among the shot's frames", "keys")
            arr = msg.arrays[f"key{k}"]
            if arr.ndim != 3 or arr.shape[2] != 3:
                raise ProtocolError(P.E_PIXELS, f"key {k}: must be HxWx3, got {list(arr.shape)}", "shape")
            if arr.shape[0] * arr.shape[1] > self.config.max_frame_pixels:
                raise ProtocolError(P.E_TOO_LARGE, f"key {k}: {arr.shape[1]}x{arr.shape[0]} is above the "
                                    f"{self.config.max_frame_pixels}-pixel limit", "shape")
            if s.shape is None:
                s.shape = tuple(arr.shape[:2])
            elif tuple(arr.shape[:2]) != s.shape:
                raise ProtocolError(P.E_PIXELS, f"key {k}: size differs from the other keys", "shape")
            try:
                P.check_finite(arr, f"key {k}")
            except ProtocolError as exc:
                exc.field = "keys"
                raise
            keys[k] = KeyImage(np.array(arr, dtype=np.float32), key_cs.get(str(k), colorspace), f"key {k}")
        return keys

    def _paths_plan(self, msg: P.Message, frames: list[int]) -> dict:
        """The checks that cost nothing (socket thread): field types and bounds, the patterns'
        folders and the keys inside the roots. Per-frame checks run in the job thread."""
        from colorprop.errors import ColorpropError
        from colorprop.io.sequence import FramePattern

        if not self.roots:
            raise ProtocolError(P.E_PATH, "shared-path mode is off on this server (no allowed roots)", "mode")
        inp, out, keys = msg.get("input"), msg.get("output"), msg.get("keys")
        for name, v in (("input", inp), ("output", out)):
            if not isinstance(v, str) or not v or len(v) > P.MAX_PATH_CHARS:
                raise ProtocolError(P.E_BAD_INPUT, f"{name} must be a frame pattern of 1..{P.MAX_PATH_CHARS} "
                                    "characters", name)
        if not isinstance(keys, dict) or not 0 < len(keys) <= P.MAX_KEYS:
            raise ProtocolError(P.E_BAD_INPUT, f"keys must map 1..{P.MAX_KEYS} frame numbers to EXR paths", "keys")
        try:
            key_paths = {int(k): v for k, v in keys.items()
                         if isinstance(v, str) and len(v) <= P.MAX_PATH_CHARS and str(int(k)) == k}
        except ValueError:
            key_paths = {}
        if len(key_paths) != len(keys):
            raise ProtocolError(P.E_BAD_INPUT, "keys must map frame numbers to EXR paths", "keys")
        try:
            in_pat, out_pat = FramePattern(inp), FramePattern(out)
        except ColorpropError as exc:
            raise ProtocolError(P.E_BAD_INPUT, str(exc), "input/output") from None
        for name, pattern in (("input", in_pat), ("output", out_pat)):
            if pattern.padding > P.MAX_FRAME_PADDING:
                raise ProtocolError(P.E_BAD_INPUT, f"{name}: a frame token of {pattern.padding} digits; at most "
                                    f"{P.MAX_FRAME_PADDING}", name)
        try:
            for pattern in (in_pat, out_pat):
                self.roots.check(pattern.pattern)
                self.roots.check(pattern.path(frames[0]).parent)
            for path in key_paths.values():
                self.roots.check_file(path)
        except PathRefused as exc:
            raise ProtocolError(P.E_PATH, str(exc), "path") from None
        return {"input": in_pat.pattern, "output": out_pat.pattern, "keys": key_paths}

    # ------------------------------------------------------------------ job threads
    def _job_thread(self, s: Session, target: Callable, args: tuple) -> None:
        from colorprop.errors import ColorpropError, ExrReadError, ExrWriteError, InputError, PixelError
        from colorprop.shot.pipeline import Cancelled

        t0 = time.monotonic()
        try:
            report = target(*args)
            s.state = "done"
            s.push({"kind": P.EV_DONE, "report": _jsonable(report), P.DONE_SUGGESTIONS: _suggestions(s)})
        except (Cancelled, _Stop):
            s.state = "cancelled"
            if self.stopping and s.id in self.sessions:
                s.push({"kind": P.EV_FAILED, "code": P.E_SHUTDOWN, "message": "server shut down; resubmit the job"})
            else:
                s.push({"kind": P.EV_CANCELLED})
        except PathRefused as exc:
            s.state = "failed"
            s.push({"kind": P.EV_FAILED, "code": P.E_PATH, "message": str(exc)})
        except ColorpropError as exc:
            s.state = "failed"
            code = (P.E_PIXELS if isinstance(exc, PixelError) else
                    P.E_UNREADABLE if isinstance(exc, ExrReadError) else
                    P.E_WRITE_FAILED if isinstance(exc, ExrWriteError) else
                    P.E_BAD_INPUT if isinstance(exc, InputError) else P.E_ENGINE)
            s.push({"kind": P.EV_FAILED, "code": code, "message": str(exc)})
        except Exception as exc:
            log.exception("job %s failed", s.id)
            s.state = "failed"
            s.push({"kind": P.EV_FAILED, "code": P.E_ENGINE, "message": f"{type(exc).__name__}: {exc}"})
        finally:
            self.gate.release(s.id)
            log_event(log, "job_end", job=s.id, client=s.client, state=s.state, code=s.end_code,
                      frames=s.frames_done, s=round(time.monotonic() - t0, 3))
            self.metrics.job_finished(s.client, s.state, s.end_code)
            self.wake()

    def _turn(self, s: Session) -> None:
        """Give the compute turn back and queue for the next one (round-robin at every frame)."""
        self.gate.release(s.id)
        self.gate.acquire(s.id, s.stop.is_set)

    def _progress(self, s: Session) -> Callable:
        def progress(ev: Any) -> None:
            s.frames_done = ev.done
            if not ev.skipped:
                self.metrics.frame_done(s.client)
            if ev.seconds > 0:
                self.frame_seconds = 0.8 * self.frame_seconds + 0.2 * ev.seconds
            s.push({"kind": P.EV_PROGRESS, **_jsonable(ev)})
            self.wake()
        return progress

    def _wait_for_fetch(self, s: Session) -> None:
        """Back-pressure: a job whose results nobody fetches waits, without holding the turn."""
        with s.cond:
            if s.undelivered_results() < self.config.max_pending_results:
                return
        self.gate.release(s.id)
        with s.cond:
            while s.undelivered_results() >= self.config.max_pending_results:
                if s.stop.is_set():
                    raise _Stop()
                s.cond.wait(0.1)
        self.gate.acquire(s.id, s.stop.is_set)

    def _run_inband(self, s: Session, keys: dict, options: Any, colorspace: str | None, carry: type) -> Any:
        from colorprop.engine.confidence import frame_summary
        from colorprop.shot.pipeline import PlateFrame, run_shot

        service = self

        class InbandSource:
            frames = s.frames

            def read(self, frame: int) -> PlateFrame:
                service.gate.release(s.id)
                with s.cond:
                    if s.last_read is not None and s.last_read[0] == frame:
                        item = s.last_read[1]
                    else:
                        if frame not in s.inbox:
                            s.needed = frame
                            s.push({"kind": P.EV_NEED, "frame": frame})
                            service.wake()
                        while frame not in s.inbox:
                            if s.stop.is_set():
                                raise _Stop()
                            s.cond.wait(0.1)
                        s.needed = None
                        item = s.inbox.pop(frame)
                        s.consumed.add(frame)
                        s.last_read = (frame, item)
                service.gate.acquire(s.id, s.stop.is_set)
                pixels, channels, cs = item
                return PlateFrame(pixels, channels, cs if cs is not None else colorspace, None, f"frame {frame}")

        class ResultSink:
            pixel_dtype = carry  # the client stores results like this (half EXRs): carry the same state

            def exists(self, frame: int) -> bool:
                return False

            def read_back(self, frame: int) -> np.ndarray:  # pragma: no cover - skip_existing is never set
                raise NotImplementedError

            def write(self, frame: int, result: Any) -> None:
                s.summaries[frame] = frame_summary(result.confidence)
                s.push({"kind": P.EV_RESULT, "frame": frame},
                       [("rgb", np.ascontiguousarray(result.rgb, np.float32)),
                        ("confidence", np.ascontiguousarray(result.confidence, np.float32))])
                service.wake()
                service._wait_for_fetch(s)

        self.gate.acquire(s.id, s.stop.is_set)
        return run_shot(self.engine, InbandSource(), keys, options, ResultSink(), self._progress(s), s.stop.is_set)

    def _run_paths(self, s: Session, plan: dict, options: Any) -> Any:
        """Shared-path job: the pre-flight every path runs (shot/preflight.py: overwrites, plates, sizes,
        keys, colour space, output folder), here in the job thread, with every path it touches checked
        against the roots; then every path is checked again when it is used, and writes go through the
        output folder opened and verified by descriptor (``AllowedRoots.pinned_dir``); reads go through the
        file opened and verified by descriptor (``AllowedRoots.opened_file``)."""
        from colorprop.engine.confidence import frame_summary
        from colorprop.errors import ExrReadError, ExrWriteError
        from colorprop.io.exr import remove_stale_temps
        from colorprop.shot.pipeline import run_shot
        from colorprop.shot.preflight import check_sequence_job

        service, roots = self, self.roots

        def allowed(path: Path) -> Path:  # a 20,000-frame shot takes a while: stay cancellable
            if s.stop.is_set():
                raise _Stop()
            return roots.check(path)  # the pre-flight opens only regular files; reads check again (opened_file)

        checked = check_sequence_job(plan["input"], plan["keys"], plan["output"], s.frames, options, allow=allowed,
                                     open_file=roots.opened_file)
        self.gate.acquire(s.id, s.stop.is_set)
        source, sink = checked.source(), checked.sink(plan["pixel_type"])
        out_dir, out_name = sink.pattern.path(s.frames[0]).parent, Path(plan["output"]).name
        with roots.pinned_dir(out_dir, create=True) as pinned:  # a killed writer's temp files: ours now
            remove_stale_temps(pinned / sink.pattern.path(f).name for f in s.frames)
        keys = checked.keys

        class CheckedSource:
            frames = source.frames

            def read(self, frame: int) -> Any:
                service._turn(s)
                with roots.opened_file(source.pattern.path(frame)) as through:  # checked again, read by descriptor
                    return source.read(frame, through)

        class CheckedSink:
            pixel_dtype = sink.pixel_dtype

            def exists(self, frame: int) -> bool:
                try:
                    with roots.opened_file(sink.pattern.path(frame)) as through:
                        return sink.exists(frame, through)
                except ExrReadError:  # nothing there
                    return False

            def read_back(self, frame: int) -> np.ndarray:
                with roots.opened_file(sink.pattern.path(frame)) as through:
                    return sink.read_back(frame, through)

            def write(self, frame: int, result: Any) -> None:
                path = sink.pattern.path(frame)
                with roots.pinned_dir(out_dir, create=True) as pinned:
                    into = sink.retarget(str(pinned / out_name))
                    try:
                        into.write(frame, result)
                    except ExrWriteError as err:  # name the file, not the descriptor path
                        raise ExrWriteError(path, err.reason.replace(str(pinned), str(out_dir))) from None
                s.summaries[frame] = frame_summary(result.confidence)
                s.push({"kind": P.EV_WRITTEN, "frame": frame, "path": str(path)})

        return run_shot(self.engine, CheckedSource(), keys, options, CheckedSink(), self._progress(s), s.stop.is_set,
                        skip_existing=plan["skip_existing"])


def _suggestions(s: Session) -> list[dict]:
    """The done event's ``DONE_SUGGESTIONS``: where a new key would help most, from the confidence of the frames
    this job coloured (frames kept by skip_existing have none), as ``colorprop suggest-keys`` decides."""
    from colorprop.shot.suggest import suggest_frames

    return [{"frame": x.frame, "expected_error": round(x.expected_error, 4)}
            for x in suggest_frames(s.summaries, s.key_frames, P.SUGGEST_COUNT)]


def _job_id(msg: P.Message) -> str:
    job = msg.get("job")
    if not isinstance(job, str) or not _JOB_ID.match(job):
        raise ProtocolError(P.E_BAD_INPUT, "job must be 1-64 characters of [A-Za-z0-9_.-]", "job")
    return job


def _nbytes(f: Any) -> int:
    try:
        return len(f)
    except TypeError:
        return memoryview(getattr(f, "buffer", f)).nbytes


def _jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = dataclasses.asdict(obj)
    return json.loads(json.dumps(obj, default=str)) if obj is not None else {}
