"""A DCC node's "live" switch, for both hosts (Nuke's node, Blender's add-on): the shot stays open on the server
(a ``LiveSession``, protocol 3); each result is written by the host as it comes and the host is told, so its image
(Nuke's Read, Blender's image node) reloads; a key edit in the node goes out as an edit, the server re-runs what it
makes stale and sends only the frames that change. The host's layer only renders, writes and reloads.

One thread polls (:meth:`LiveNode.run`, the host's worker thread); key edits and the playhead come from the UI
thread through :meth:`edit_keys` and :meth:`view`, queued for the polling thread (the client is one thread's). A
server that dies is reported within the client's Lazy-Pirate bounds (< 5 s) through ``on_status`` and the loop
ends; the host writes every result whole (temp name + rename), so nothing is left half-written.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Mapping

import numpy as np

from . import protocol as P
from .client import CancellableClient, Event
from .dcc import JOB_TIMEOUT_S, ColorizeError, InbandShot, PathsShot, describe_error, key_and_matte, note_text
from .errors import CancelledByUser, ServerError, ServerUnavailable
from .live import LiveSession

POLL_S = 0.25  # a long-poll's length: an edit or a stop waits at most this long for the polling thread


class LiveNode:
    """One node's live session. ``on_frame(frame, run)``: a result of run ``run`` is written (reload the image);
    ``on_status(text, error)``: a line for the node's status."""

    def __init__(
        self,
        address: str,
        frames: list[int],
        shot: InbandShot | PathsShot,
        options: Mapping[str, Any],
        on_frame: Callable[[int, int], None],
        on_status: Callable[[str, bool], None],
        *,
        colorspace: str | None = None,
        view: int | None = None,
        curve: Any = None,
        timeout_s: float = JOB_TIMEOUT_S,
    ):
        self.address, self.frames, self.shot, self.options = address, list(frames), shot, dict(options)
        self.on_frame, self.on_status = on_frame, on_status
        self.colorspace, self.first_view, self.curve, self.timeout_s = colorspace, view, curve, timeout_s
        self._todo: queue.Queue = queue.Queue()  # ("edit", kwargs) | ("view", frame), for the polling thread
        self._stop = threading.Event()
        self.sent_keys: dict[int, tuple[np.ndarray, np.ndarray | None] | str] = {}  # what the server has
        self.session: LiveSession | None = None
        self.error: str | None = None
        self.opened = threading.Event()  # set once the session is open (or failed to open)

    # ------------------------------------------------------------------ the UI thread
    def edit_keys(self, keys: Mapping[int, Any]) -> None:
        """The node's keys now (in-band: frame -> HxWx3 or RGBA pixels as the host read them; shared paths:
        frame -> path): the difference from what the server has goes out as one edit."""
        self._todo.put(("keys", dict(keys)))

    def view(self, frame: int) -> None:
        self._todo.put(("view", int(frame)))

    def stop(self) -> None:
        self._stop.set()

    # ------------------------------------------------------------------ the polling thread
    def run(self) -> None:
        """Open the session and poll until :meth:`stop` or a failure (told through ``on_status``); closes it."""
        client = CancellableClient(self.address, timeout_s=self.timeout_s, curve=self.curve)
        gone = False  # the server is gone: closing would wait for it again
        try:
            self._open(client)
            self.opened.set()
            self.on_status(f"live: colouring {len(self.frames)} frames", False)
            while not self._stop.is_set():
                self._do_todo()
                self.session.poll(wait_s=POLL_S)
        except CancelledByUser:  # the host stopped it while a plate was being read
            pass
        except (ServerError, ServerUnavailable, TimeoutError, P.ProtocolError, ColorizeError) as exc:
            gone = isinstance(exc, ServerUnavailable)
            self.error = exc.args[0] if isinstance(exc, ColorizeError) else describe_error(exc)
            self.on_status(f"live stopped: {self.error}", True)
        finally:
            self.opened.set()
            if self.session is not None and not gone:
                self.session.close()
            client.close()

    def _open(self, client: CancellableClient) -> None:
        common = dict(options=self.options, colorspace=self.colorspace, view=self.first_view, on_event=self._event)
        if isinstance(self.shot, InbandShot):
            keys = self._inband_keys(self.shot.keys)
            self.session = LiveSession(
                client,
                self.frames,
                {k: rgb for k, (rgb, _) in keys.items()},
                plates=self.shot.load_frame,
                key_mattes={k: m for k, (_, m) in keys.items() if m is not None},
                **common,
            )
            self.sent_keys = dict(keys)
        else:
            self.session = LiveSession(
                client,
                self.frames,
                self.shot.key_paths,
                mode=P.MODE_PATHS,
                input_pattern=self.shot.plate_pattern,
                output_pattern=self.shot.output_pattern,
                partial_keys=self.shot.partial_keys,
                **common,
            )
            self.sent_keys = dict(self.shot.key_paths)

    def _inband_keys(self, keys: Mapping[int, Any]) -> dict[int, tuple[np.ndarray, np.ndarray | None]]:
        premultiplied = getattr(self.shot, "premultiplied", True)
        return {int(k): key_and_matte(px, f"key {k}", premultiplied) for k, px in keys.items()}

    def _do_todo(self) -> None:
        while True:
            try:
                what, value = self._todo.get_nowait()
            except queue.Empty:
                return
            if what == "view":
                self.session.view(value)
            else:
                self._send_keys(value)

    def _send_keys(self, keys: Mapping[int, Any]) -> None:
        new = (
            self._inband_keys(keys) if isinstance(self.shot, InbandShot) else {int(k): str(p) for k, p in keys.items()}
        )
        changed = {k: v for k, v in new.items() if not _same(self.sent_keys.get(k), v)}
        removed = [k for k in self.sent_keys if k not in new]
        if not changed and not removed:
            return
        if isinstance(self.shot, InbandShot):
            sets = {k: rgb for k, (rgb, _) in changed.items()}
            mattes = {k: m for k, (_, m) in changed.items() if m is not None}
            run = self.session.edit(set=sets, mattes=mattes, remove=removed)
        else:
            run = self.session.edit(set=changed, remove=removed, partial=self.shot.partial_keys)
        self.sent_keys = new
        self.on_status(f"live: keys {', '.join(map(str, sorted(new)))} sent (run {run})", False)

    def _event(self, ev: Event) -> None:
        info = ev.info or {}
        if ev.kind == P.EV_RESULT and isinstance(self.shot, InbandShot):
            self.shot.write_result(int(ev.frame), ev.rgb, ev.confidence)
            self.on_frame(int(ev.frame), int(info.get("run", 0)))
        elif ev.kind == P.EV_WRITTEN:
            self.on_frame(int(ev.frame), int(info.get("run", 0)))
        elif ev.kind == P.EV_RUN_DONE:
            unchanged = len(info.get("unchanged") or ())
            self.on_status(
                f"live: run {info.get('run')} done ({unchanged} frame(s) unchanged); waiting for edits", False
            )
        elif ev.kind == P.EV_NOTE:
            self.on_status(note_text(str(info.get("message", ""))), False)


def _same(a: Any, b: Any) -> bool:
    """A key the server has (``a``) equals the node's (``b``): the same path, or the same pixels and matte."""
    if a is None or isinstance(a, str) or isinstance(b, str):
        return a == b
    return all(
        (x is None and y is None) or (x is not None and y is not None and np.array_equal(x, y)) for x, y in zip(a, b)
    )
