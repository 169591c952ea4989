"""A live session (protocol 3): a shot kept open on the server while the artist edits its keys.

Typical use::

    with LiveSession(client, frames, {1: key_rgb}, {"method": "full"}, plates=load_plate, view=60) as live:
        live.wait_run()                          # run 0: every frame, frame 60's run first
        run = live.edit(set={60: painted}, mattes={60: matte})   # a partial key at 60
        live.wait_frame(60, run)                 # frame 60 with the new key
        live.wait_run(run)                       # every frame the edit changes
        rgb, confidence = live.results[42]

Each :meth:`poll` fetches the session's events once: it answers the server's ``need`` events with the plate
(``plates``: frame -> HxWxC pixels, a mapping or a callable), keeps the newest result of every frame in
``results`` (``written`` with shared paths) and hands every event to ``on_event``. A frame the re-run does not
change is not sent again: ``results`` keeps what came before. A dead server is reported by :meth:`poll` within the
client's Lazy-Pirate bounds (``ServerUnavailable``, < 5 s with the defaults); nothing half-received is kept.
Pyzmq and numpy only (a DCC's Python).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from . import protocol as P
from .client import Client, Event, Job, _as_wire_array
from .colorize import LONG_POLL_S, _raise_terminal
from .errors import ServerBusy, ServerError, ServerUnavailable

PREFETCH = 2  # plates sent ahead of the server's 'need', in the direction its run goes


class LiveSession:
    """One live session on the server; not thread-safe (one thread polls, edits and closes)."""

    def __init__(
        self,
        client: Client,
        frames: Sequence[int],
        keys: Mapping[int, Any],
        options: Mapping[str, Any] | None = None,
        *,
        plates: Mapping[int, np.ndarray] | Callable[[int], np.ndarray] | None = None,
        key_mattes: Mapping[int, Any] | None = None,
        channels: Sequence[str] = ("R", "G", "B"),
        colorspace: str | None = None,
        view: int | None = None,
        mode: str = P.MODE_INBAND,
        input_pattern: str | None = None,
        output_pattern: str | None = None,
        partial_keys: Sequence[int] = (),
        on_event: Callable[[Event], None] | None = None,
        job_id: str | None = None,
        prefetch: int = PREFETCH,
    ):
        self.client, self.plates, self.channels, self.colorspace = client, plates, tuple(channels), colorspace
        self.on_event = on_event or (lambda ev: None)
        self.frames, self.prefetch = sorted(int(f) for f in frames), prefetch
        self._last_need: int | None = None
        self._ahead: set[int] = set()  # plates sent before the server asked for them, not asked for yet
        self.results: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # frame -> (rgb HxWx3, confidence HxW), newest
        self.written: dict[int, str] = {}  # shared paths: frame -> the output file the server wrote
        self.result_run: dict[int, int] = {}  # frame -> the run its newest result came from
        self.runs_done: dict[int, dict] = {}  # run -> its run_done event (report, unchanged)
        self.started: int = -1  # the newest run the server said it started
        fields: dict[str, Any] = {"live": True}
        if view is not None:
            fields["view"] = int(view)
        self.job: Job = client.open_shot(
            keys,
            options,
            frames,
            mode,
            input_pattern,
            output_pattern,
            colorspace,
            job_id,
            key_mattes,
            partial_keys,
            **fields,
        )
        self.run = 0  # the newest run asked for: 0 at the open, the ack of each edit
        self.closed = False

    # ------------------------------------------------------------------ requests
    def edit(
        self,
        set: Mapping[int, Any] | None = None,
        mattes: Mapping[int, Any] | None = None,
        remove: Sequence[int] = (),
        move: Mapping[int, int] | None = None,
        view: int | None = None,
        partial: Sequence[int] = (),
    ) -> int:
        """Change the keys: ``set`` frame -> key (in-band HxWx3 pixels, with ``mattes`` frame -> HxW for a partial
        key; shared paths a file path, ``mattes`` a matte file, ``partial`` the keys whose files' alpha makes them
        partial), ``remove`` key frames, ``move`` key frame -> new frame; ``view`` the frame under the playhead.
        Returns the number of the re-run that colours the new keys (wait for it with :meth:`wait_run`)."""
        ops: list[dict] = []
        arrays = []
        mattes = dict(mattes or {})
        for f, key in sorted((set or {}).items()):
            op: dict[str, Any] = {"op": P.EDIT_SET, "frame": int(f)}
            if self.job.mode == P.MODE_INBAND:
                arrays.append((f"key{int(f)}", _as_wire_array(key)))
                if f in mattes:
                    arrays.append((P.matte_buffer(f), _as_wire_array(mattes[f])))
            else:
                op.update(path=str(key), partial=int(f) in {int(p) for p in partial})
                if f in mattes:
                    op["matte"] = str(mattes[f])
            ops.append(op)
        ops += [{"op": P.EDIT_REMOVE, "frame": int(f)} for f in remove]
        ops += [{"op": P.EDIT_MOVE, "frame": int(a), "to": int(b)} for a, b in (move or {}).items()]
        fields: dict[str, Any] = {"job": self.job.id, "edits": ops, "colorspace": self.colorspace}
        if view is not None:
            fields["view"] = int(view)
        msg = self.client.request(P.EDIT, arrays, version=P.LIVE_VERSION, **fields)
        self.run = int(msg.get("run"))
        return self.run

    def view(self, frame: int) -> None:
        """The frame under the playhead: the next run reaches it first."""
        self.client.request(P.VIEW, version=P.LIVE_VERSION, job=self.job.id, frame=int(frame))

    def poll(self, wait_s: float = LONG_POLL_S) -> list[Event]:
        """Fetch the events that came (waiting at most ``wait_s`` server-side), act on them and return them.
        Raises JobFailed/JobLost/JobCancelled when the session ended, ServerUnavailable when the server is gone."""
        events = self.job.fetch(wait_s=wait_s)
        for ev in events:
            info = ev.info or {}
            if ev.kind == P.EV_NEED:
                self._send_plate(int(ev.frame))
            elif ev.kind == P.EV_RESULT:
                self.results[int(ev.frame)] = (np.array(ev.rgb), np.array(ev.confidence))
                self.result_run[int(ev.frame)] = int(info.get("run", self.started))
            elif ev.kind == P.EV_WRITTEN:
                self.written[int(ev.frame)] = str(info.get("path"))
                self.result_run[int(ev.frame)] = int(info.get("run", self.started))
            elif ev.kind == P.EV_RUN:
                self.started = int(info.get("run", 0))
            elif ev.kind == P.EV_RUN_DONE:
                self.runs_done[int(info.get("run", 0))] = info
            self.on_event(ev)
            if ev.kind in P.TERMINAL_EVENTS:
                _raise_terminal(self.job, ev)
        return events

    def wait_run(self, run: int | None = None, timeout_s: float | None = None) -> dict:
        """Poll until run ``run`` (default: the newest asked for) has coloured every frame; its run_done event."""
        run = self.run if run is None else run
        end = None if timeout_s is None else time.monotonic() + timeout_s
        while run not in self.runs_done:
            if self.run > run and self.started > run:
                raise RuntimeError(f"run {run} was superseded by an edit (run {self.started})")
            _check_time(end, f"run {run}")
            self.poll()
        return self.runs_done[run]

    def wait_frame(self, frame: int, run: int | None = None, timeout_s: float | None = None) -> int:
        """Poll until ``frame`` shows run ``run`` (default: the newest asked for): its result of that run came, or
        the run ended without changing it. Returns the run its result is from."""
        run = self.run if run is None else run
        end = None if timeout_s is None else time.monotonic() + timeout_s
        while self.result_run.get(frame, -1) < run and run not in self.runs_done:
            _check_time(end, f"frame {frame} of run {run}")
            self.poll()
        return self.result_run.get(frame, -1)

    def close(self) -> None:
        """Close the session (the server frees its memory and cache); idempotent, quiet when the server is gone."""
        if self.closed:
            return
        self.closed = True
        try:
            self.job.close()
        except (ServerError, ServerUnavailable):
            pass

    def __enter__(self) -> LiveSession:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ helpers
    def _send_plate(self, frame: int) -> None:
        """The plate the server asks for, then up to ``prefetch`` more in the direction its run goes (a run reads
        consecutive frames), so that the next reads find them there instead of waiting for a round trip."""
        if self.plates is None:
            raise ValueError("an in-band live session needs plates (frame -> pixels)")
        step = 0 if self._last_need is None else (frame > self._last_need) - (frame < self._last_need)
        self._last_need = frame
        self._ahead.discard(frame)
        if not self._send(frame):
            return
        if step and self.prefetch:
            i = self.frames.index(frame) if frame in self.frames else -1
            for j in range(i + step, i + step * (self.prefetch + 1), step):
                if i < 0 or not 0 <= j < len(self.frames):
                    break
                if self.frames[j] not in self._ahead:
                    if not self._send(self.frames[j]):
                        break  # the server's buffer is full: it asks when it needs one
                    self._ahead.add(self.frames[j])

    def _send(self, frame: int) -> bool:
        pixels = self.plates(frame) if callable(self.plates) else self.plates[frame]
        try:
            self.job.send_frame(frame, pixels, self.channels, self.colorspace)
            return True
        except ServerBusy:
            return False  # a stale need (an edit started another run), or a full buffer: asked again when needed


def _check_time(end: float | None, what: str) -> None:
    if end is not None and time.monotonic() > end:
        raise TimeoutError(f"{what} did not come in time")
