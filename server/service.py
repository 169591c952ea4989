"""Shot sessions, fair scheduling and the request handlers: everything but the socket.

One ``Service`` lives in the socket thread (the standalone server's ROUTER loop or a worker's
DEALER loop). Each open shot is a ``Session`` (session.py) with its own thread running
``pipeline.run_shot`` (jobs.py); a ``FairGate`` (gate.py) lets exactly one of them compute at a time
and hands the turn round-robin at every frame read, so a 10-frame shot interleaves with a 500-frame
one instead of waiting behind it. The socket thread never computes: it answers pings, hello and
long-polls while a frame runs. Job threads talk back only through ``Session`` (under its lock)
and a wake-up pipe that the socket loop polls.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any, Callable

import numpy as np

from colorprop_client import protocol as P
from colorprop_client.protocol import ProtocolError

from . import gate, jobs, live, requests
from .config import ServerConfig
from .gate import FairGate
from .logs import log_event, loggable
from .metrics import ServerMetrics
from .paths import AllowedRoots
from .session import PendingFetch, Reply, Session, events_reply
from .status import job_row

log = logging.getLogger("colorprop_server")
request_log = logging.getLogger("colorprop_server.requests")


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
        self._handlers: dict[str, Callable[[P.Message, str, Reply], None]] = {
            P.PING: self._on_ping,
            P.HELLO: self._on_hello,
            P.STATUS: self._on_status,
            P.OPEN_SHOT: self._on_open_shot,
            P.FRAME: self._on_frame,
            P.FETCH: self._on_fetch,
            P.CANCEL: self._on_cancel,
            P.CLOSE: self._on_close,
            P.EDIT: self._on_edit,
            P.VIEW: self._on_view,
        }

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
            # A shared-path open refused for its paths is the client asking whether this server reaches its files
            # (it then sends the frames in-band): an answer, not an error to alert on.
            probe = info.get("type") == P.OPEN_SHOT and info.get("code") == P.E_PATH
            self.metrics.request(str(info.get("type")), None if probe else info.get("code"))
            if request_log.isEnabledFor(logging.INFO):
                info["ms"] = round((time.monotonic() - t0) * 1000, 2)
                log_event(request_log, "request", **info)
            reply(out)

        try:
            msg = P.decode(frames, self.config.max_message_bytes, expect=P.REQUEST_TYPES)
        except ProtocolError as exc:
            info.update(type="?", id=_loggable(exc.request_id), bytes=sum(_nbytes(f) for f in frames))
            logged_reply(P.error_reply(exc.request_id, exc.code, exc.message, exc.field))
            return
        # The ids a client chose go to the log escaped (a refused job id too): no terminal escapes, no forged lines.
        info.update(
            type=msg.type,
            id=_loggable(msg.id),
            job=_loggable(msg.get("job")),
            frame=msg.get("frame") if type(msg.get("frame")) is int else None,
        )
        try:
            self._handlers[msg.type](msg, client, logged_reply)
        except ProtocolError as exc:
            logged_reply(P.error_reply(msg.id, exc.code, exc.message, exc.field))
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
        return {
            "sessions": len(self.sessions),
            "active_jobs": len(self.active_jobs()),
            "waiting_for_turn": self.gate.waiting(),
        }

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
        jobs = [
            job_row(s.id, s.client, client, s.state, s.mode, s.frames_done, len(s.frames), now - s.created)
            for s in self.sessions.values()
        ]
        reply(P.encode(P.JOBS, msg.id, jobs=jobs, **self.stats()))

    def _on_open_shot(self, msg: P.Message, client: str, reply: Reply) -> None:
        job_id = requests.job_id(msg)
        existing = self.sessions.get(job_id)
        if existing is not None:  # a resend of an open we already did: same answer (idempotent)
            existing.last_seen = time.monotonic()
            reply(P.encode(P.OPENED, msg.id, **existing.opened_reply))
            return
        if self.stopping:
            raise ProtocolError(P.E_SHUTDOWN, "server is shutting down")
        req = requests.parse_open(msg, self.config, self.roots, self.engine.check_method)
        busy = gate.open_busy(self.config, self.sessions.values(), client, req.shot.key_bytes)
        if busy:
            reply(P.encode(P.BUSY, msg.id, message=busy, retry_after_s=self._retry_after()))
            return
        session = Session(job_id, client, req.mode, req.frames, req.seq_base)
        session.key_frames = req.key_frames
        if isinstance(req.shot, requests.InbandShot):
            session.shape, session.key_bytes = req.shot.shape, req.shot.key_bytes
            target, args = jobs.run_inband, (session, req.shot.keys, req.options, req.colorspace, req.shot.carry)
        if req.live:
            session.live = live.LiveState(req.shot, req.view, regrade=req.options.regrade)
            target, args = live.run_live, (session, req.options, req.colorspace)
        elif not isinstance(req.shot, requests.InbandShot):
            target, args = jobs.run_paths, (session, req.shot, req.options)
        session.opened_reply = {"job": job_id, "frames": len(req.frames), "mode": req.mode, "live": req.live}
        notes = req.shot.notes if isinstance(req.shot, requests.InbandShot) else ()
        if notes:  # (a partial key's matte clamped into [0, 1]): told in the reply, as events and in the log
            session.opened_reply["notes"] = list(notes)
            jobs.push_notes(session, notes)
        self.sessions[job_id] = session
        session.thread = threading.Thread(
            target=jobs.job_thread, args=(self, session, target, args), name=f"colorprop-job-{job_id[:8]}", daemon=True
        )
        session.thread.start()
        self.threads.append(session.thread)
        log_event(
            log,
            "job_start",
            job=job_id,
            client=client,
            mode=req.mode,
            frames=len(req.frames),
            method=req.options.method,
            notes=list(notes) or None,
        )
        self.metrics.job_started(client)
        reply(P.encode(P.OPENED, msg.id, **session.opened_reply))

    def _on_frame(self, msg: P.Message, client: str, reply: Reply) -> None:
        s = self._session(msg)
        if s.mode != P.MODE_INBAND:
            raise ProtocolError(P.E_BAD_INPUT, "frames are sent only in in-band mode", "mode")
        req = requests.parse_frame(msg, s.frame_set, s.shape)
        frame = req.frame
        # (the frame the engine waits for is always taken)
        over_budget = gate.frame_busy(self.config, self.sessions.values(), client, req.held_bytes)
        with s.cond:
            if s.live is None and frame in s.consumed and frame != s.needed:
                accepted = False  # a late resend of a frame the engine already read (a live run reads some twice)
            elif (
                frame != s.needed
                and frame not in s.inbox
                and (len(s.inbox) >= self.config.max_buffered_frames or over_budget)
            ):
                full = over_budget or f"job buffer full ({len(s.inbox)} frames)"
                reply(P.encode(P.BUSY, msg.id, message=full, retry_after_s=round(self.frame_seconds, 3)))
                return
            else:
                # float32 arrives as a read-only view of the received frame: no copy (the engine never
                # writes into its input); half floats are widened once.
                px = req.pixels if req.pixels.dtype == np.float32 else req.pixels.astype(np.float32)
                s.inbox[frame] = (px, req.channels, req.colorspace)
                accepted = True
                s.cond.notify_all()
        reply(P.encode(P.ACK, msg.id, job=s.id, frame=frame, accepted=accepted))

    def _on_fetch(self, msg: P.Message, client: str, reply: Reply) -> None:
        s = self._session(msg)
        req = requests.parse_fetch(msg, self.config)
        with s.cond:
            ready = any(seq > req.after for seq, _, _ in s.events)
        if s.pending_fetch is not None:  # superseded by a resend (the client gave up on it)
            old, s.pending_fetch = s.pending_fetch, None
            old.reply(self._events_reply(s, old.request_id, old.after, old.max_events))
        if ready or req.wait_s <= 0 or self.stopping:
            reply(self._events_reply(s, msg.id, req.after, req.max_events))
        else:
            s.pending_fetch = PendingFetch(reply, msg.id, req.after, req.max_events, time.monotonic() + req.wait_s)

    def _on_cancel(self, msg: P.Message, client: str, reply: Reply) -> None:
        s = self._session(msg)
        s.stop.set()
        with s.cond:
            s.cond.notify_all()
        reply(P.encode(P.ACK, msg.id, job=s.id, cancelled=True))

    def _on_edit(self, msg: P.Message, client: str, reply: Reply) -> None:
        """A live session's key edit: the new keys replace the old at once and the running run goes stale; a resend
        of the same request is answered the same, without another re-run."""
        s = live.check_live(msg, self.sessions.get(requests.job_id(msg)))
        s.last_seen = time.monotonic()
        if s.live.last_edit is not None and s.live.last_edit[0] == msg.id:
            reply(P.encode(P.ACK, msg.id, job=s.id, run=s.live.last_edit[1]))
            return
        shot = live.apply_edit(msg, s, self.config, self.roots)
        grown = shot.key_bytes - s.live.shot.key_bytes
        busy = gate.memory_busy(self.config, self.sessions.values(), client, grown) if grown > 0 else None
        if busy:
            reply(P.encode(P.BUSY, msg.id, message=busy, retry_after_s=self._retry_after()))
            return
        view = live.parse_view(msg.get("view"), s) if msg.get("view") is not None else s.live.view
        with s.cond:
            s.live.shot, s.live.view, s.key_bytes = shot, view, shot.key_bytes
            s.live.run += 1
            s.live.last_edit = (msg.id, s.live.run)
            s.cond.notify_all()
        log_event(log, "live_edit", job=s.id, client=client, run=s.live.run, keys=sorted(shot.keys))
        for note in getattr(shot, "notes", ()):
            s.push({"kind": P.EV_NOTE, "message": note})
        reply(P.encode(P.ACK, msg.id, job=s.id, run=s.live.run))

    def _on_view(self, msg: P.Message, client: str, reply: Reply) -> None:
        """The frame under a live session's playhead: the next run reaches it first."""
        s = live.check_live(msg, self.sessions.get(requests.job_id(msg)))
        s.last_seen = time.monotonic()
        s.live.view = live.parse_view(msg.get("frame"), s)
        reply(P.encode(P.ACK, msg.id, job=s.id, view=s.live.view))

    def _on_close(self, msg: P.Message, client: str, reply: Reply) -> None:
        s = self._session(msg)
        self._drop(s)
        reply(P.encode(P.ACK, msg.id, job=s.id, closed=True))

    # ------------------------------------------------------------------ helpers (socket thread)
    def _session(self, msg: P.Message) -> Session:
        job_id = requests.job_id(msg)
        s = self.sessions.get(job_id)
        if s is None:
            raise ProtocolError(
                P.E_UNKNOWN_JOB, f"no job {job_id} on this server (closed, timed out, or the server restarted)", "job"
            )
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

    def _retry_after(self) -> float:
        remaining = sum(len(s.frames) - s.frames_done for s in self.active_jobs())
        est = self.frame_seconds * remaining / max(1, self.config.max_jobs)
        return round(min(60.0, max(0.5, est)), 1)

    def _events_reply(self, s: Session, request_id: str, after: int, max_events: int) -> list:
        return events_reply(s, request_id, after, max_events, self.config.max_message_bytes)


def _loggable(value: Any) -> str | None:
    return loggable(value) if isinstance(value, str) else None


def _nbytes(f: Any) -> int:
    try:
        return len(f)
    except TypeError:
        return memoryview(getattr(f, "buffer", f)).nbytes
