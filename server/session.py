"""One open shot on a server: its frames, its events (numbered, fetched by long-poll), its in-band
inbox and the pixels it holds; shared by the socket thread and the shot's job thread under ``cond``."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections import deque
from typing import Any, Callable

from colorprop_client import protocol as P

Reply = Callable[[list], None]


@dataclasses.dataclass
class PendingFetch:
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
        self.pending_fetch: PendingFetch | None = None
        self.frames_done = 0
        self.key_bytes = 0
        self.terminal_seq: int | None = None  # seq of the done/failed/cancelled event, once pushed
        self.key_frames: list[int] = []
        self.summaries: dict[int, dict] = {}  # frame -> confidence.frame_summary of the frames coloured (suggestions)
        self.end_code: str | None = None  # the error code of its failed event
        self.live: Any = None  # live.LiveState of a live session (protocol 3), else None

    def halted(self) -> bool:
        """True once the job's run must stop: the session is cancelled or dropped, or (a live session) an edit
        made the running run stale. Every wait of the job thread and ``run_shot``'s ``cancel`` ask this."""
        return self.stop.is_set() or (self.live is not None and self.live.stale())

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
            return (
                self.key_bytes
                + sum(item[0].nbytes for item in self.inbox.values())
                + sum(a.nbytes for _, _, arrs in self.events for _, a in arrs)
            )

    @property
    def finished(self) -> bool:
        return self.state != "running"


def events_reply(s: Session, request_id: str, after: int, max_events: int, max_message_bytes: int) -> list:
    """Events after ``after`` (acknowledging and forgetting the ones at or before it)."""
    budget = max(1, max_message_bytes // 2)
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


def suggestions(s: Session) -> list[dict]:
    """The done event's ``DONE_SUGGESTIONS``: where a new key would help most, from the confidence of the frames
    this job coloured (frames kept by skip_existing have none), as ``colorprop suggest-keys`` decides."""
    from colorprop.shot.suggest import suggest_frames

    return [
        {"frame": x.frame, "expected_error": round(x.expected_error, 4)}
        for x in suggest_frames(s.summaries, s.key_frames, P.SUGGEST_COUNT)
    ]


def jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = dataclasses.asdict(obj)
    return json.loads(json.dumps(obj, default=str)) if obj is not None else {}
