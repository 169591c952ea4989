"""The shot loops on a server: ``colorize_arrays`` (in-band: frames streamed, results back) and ``colorize_paths``
(the server reads and writes EXRs on shared storage), with busy retries, the whole shot resent when the job
is lost, and the job closed on the way out."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from . import protocol as P
from .client import Client, Event, Job
from .curve_keys import CurveKeys
from .errors import JobCancelled, JobFailed, JobLost, ServerBusy, ServerError, ServerUnavailable
from .transport import DEFAULT_RETRIES, DEFAULT_TIMEOUT_S

# How long the colorize loops let the server hold a fetch when nothing has happened: short, because
# after a server dies a client notices within retries x timeout_s + this.
LONG_POLL_S = 1.0


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


class FrameWindow:
    """Which in-band frame to send next. Frames the engine asked for (a ``need`` event) go first, even if sent
    before (a restarted run); the rest go in order while fewer than ``size`` of those sent ahead await their
    result, so the server never holds more than a window of un-processed frames."""

    def __init__(self, order: Sequence[int], size: int):
        self.order, self.size = list(order), size
        self._need: list[int] = []  # asked for by the engine, oldest first
        self._ahead = list(order)  # not sent yet, in order
        self._in_window: set[int] = set()  # sent ahead (not asked for)
        self._sent: set[int] = set()
        self._answered: set[int] = set()  # frames whose result came back

    def next_frame(self) -> int | None:
        """The frame to send now, or None (nothing asked for and the window is full or everything sent)."""
        if self._need:
            return self._need[0]
        if self._ahead and len(self._in_window - self._answered) < self.size:
            return self._ahead[0]
        return None

    def sent(self, frame: int) -> None:
        """``frame``, the last :meth:`next_frame`, was taken by the server."""
        self._sent.add(frame)
        if self._need:
            self._need.pop(0)
            if frame in self._ahead:
                self._ahead.remove(frame)
        else:
            self._ahead.pop(0)
            self._in_window.add(frame)

    def asked_for(self, frame: int) -> None:
        if frame not in self._need:
            self._need.append(frame)

    def answered(self, frame: int) -> None:
        self._answered.add(frame)

    def all_sent_answered(self) -> bool:
        return self._sent <= self._answered

    def unanswered(self) -> list[int]:
        """The frames of the shot whose result has not come back, in order."""
        return [f for f in self.order if f not in self._answered]


@dataclass(frozen=True)
class _InbandRequest:
    """``colorize_arrays``' shot, as each (re)send of it needs it (its docstring says what each field does)."""

    frames: Mapping[int, np.ndarray]
    keys: Mapping[int, np.ndarray]
    options: Mapping[str, Any] | None
    channels: Sequence[str]
    colorspace: str | None
    on_progress: Callable[[Event], None] | None
    window: int
    busy_wait_s: float
    job_timeout_s: float | None
    carry_dtype: str
    on_result: Callable[[int, np.ndarray, np.ndarray], None] | None
    key_colorspaces: Mapping[int, str | None] | None
    key_mattes: Mapping[int, np.ndarray] | None


@dataclass(frozen=True)
class _PathsRequest:
    """``colorize_paths``' shot, as each (re)send of it needs it."""

    input_pattern: str
    output_pattern: str
    frames: Sequence[int]
    keys: Mapping[int, str | os.PathLike]
    options: Mapping[str, Any] | None
    colorspace: str | None
    on_progress: Callable[[Event], None] | None
    busy_wait_s: float
    job_timeout_s: float | None
    skip_existing: bool
    pixel_type: str
    key_mattes: Mapping[int, str | os.PathLike] | None
    partial_keys: Sequence[int]


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
    key_mattes: Mapping[int, np.ndarray] | None = None,
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Colorize in-band frames on a server: ``{frame: (rgb HxWx3, confidence HxW)}``.

    Frames are streamed with at most ``window`` un-processed frames on the server. If the job is
    lost (server restarted, worker died) the whole shot is resent up to ``restarts`` times;
    propagation is deterministic, so the result equals a single run. ``carry_dtype="float16"``
    when you store the results as half floats: the colour carried between frames is then rounded
    the same way, exactly as the embedded engine does with a half-float EXR sink.
    ``frames`` may be any mapping (e.g. one that reads files lazily). With ``on_result`` each
    result is handed over as it arrives and not kept (the returned dict is then empty).
    ``key_mattes``: frame -> HxW matte in [0, 1] of a partial key (it colours only where its matte is above 0);
    a server that speaks only protocol 1 refuses such a shot (``ServerError`` ``E_VERSION``).
    """
    request = _InbandRequest(
        frames,
        keys,
        options,
        channels,
        colorspace,
        on_progress,
        window,
        busy_wait_s,
        job_timeout_s,
        carry_dtype,
        on_result,
        key_colorspaces,
        key_mattes,
    )
    return _with_restarts(
        address,
        timeout_s,
        retries,
        curve,
        restarts,
        lambda client: _colorize_arrays_once(client, request),
    )


def _with_restarts(
    address: str | Client,
    timeout_s: float,
    retries: int,
    curve: CurveKeys | None,
    restarts: int,
    once: Callable[[Client], Any],
) -> Any:
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


def _colorize_arrays_once(client: Client, r: _InbandRequest) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    order = sorted(int(f) for f in r.frames)
    deadline = time.monotonic() + r.busy_wait_s
    key_spaces = {str(int(k)): v for k, v in (r.key_colorspaces or {}).items()}
    job = _retry_busy(
        lambda: client.open_shot(
            r.keys,
            r.options,
            order,
            P.MODE_INBAND,
            colorspace=r.colorspace,
            carry_dtype=r.carry_dtype,
            key_colorspaces=key_spaces,
            key_mattes=r.key_mattes,
        ),
        deadline,
    )
    results: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    flight = FrameWindow(order, r.window)
    # A frame ``frames`` could not give (an unreadable file) or the server refused (NaN, wrong size): raised once
    # the results of the frames sent before it are back, so they are not lost.
    unreadable: Exception | None = None
    end = None if r.job_timeout_s is None else time.monotonic() + r.job_timeout_s
    try:
        while job.finished is None:
            if end is not None and time.monotonic() > end:
                raise TimeoutError(f"job {job.id} did not finish within {r.job_timeout_s} s")
            while unreadable is None and (nxt := flight.next_frame()) is not None:
                try:
                    pixels = r.frames[nxt]
                except Exception as exc:  # e.g. an unreadable file: keep the results of the frames before it
                    unreadable = exc
                    break
                try:
                    job.send_frame(nxt, pixels, r.channels, r.colorspace)
                except ServerBusy:
                    break
                except ServerError as exc:
                    if exc.code != P.E_PIXELS:
                        raise
                    unreadable = exc
                    break
                flight.sent(nxt)
            for ev in job.fetch(wait_s=LONG_POLL_S):
                if ev.kind == P.EV_RESULT:
                    flight.answered(ev.frame)
                    if r.on_result is not None:
                        r.on_result(ev.frame, ev.rgb, ev.confidence)
                    else:
                        results[ev.frame] = (ev.rgb, ev.confidence)
                elif ev.kind == P.EV_NEED and ev.frame is not None and int(ev.frame) in r.frames:
                    if unreadable is not None:
                        raise unreadable  # the engine waits for a frame we cannot give: nothing more will come
                    flight.asked_for(int(ev.frame))
                elif ev.kind in P.TERMINAL_EVENTS:
                    _raise_terminal(job, ev)
                if r.on_progress is not None:
                    r.on_progress(ev)
            if unreadable is not None and flight.all_sent_answered():
                raise unreadable
    finally:
        _close_quietly(job)
    missing = flight.unanswered()
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
    key_mattes: Mapping[int, str | os.PathLike] | None = None,
    partial_keys: Sequence[int] = (),
) -> dict:
    """Colorize EXR frames on shared storage; the server reads and writes the files (atomically).
    Returns the ``done`` event's report. A lost job (server restarted, worker stopped) is
    resubmitted up to ``restarts`` times. ``key_mattes``: frame -> the path of a partial key's matte image
    (``--key-matte``); ``partial_keys``: the key frames whose own files are partial (their alpha), so that a
    server that speaks only protocol 1 refuses the shot rather than colour them as full keys."""
    request = _PathsRequest(
        input_pattern,
        output_pattern,
        frames,
        keys,
        options,
        colorspace,
        on_progress,
        busy_wait_s,
        job_timeout_s,
        skip_existing,
        pixel_type,
        key_mattes,
        tuple(partial_keys),
    )
    return _with_restarts(
        address,
        timeout_s,
        retries,
        curve,
        restarts,
        lambda client: _colorize_paths_once(client, request),
    )


def _colorize_paths_once(client: Client, r: _PathsRequest) -> dict:
    deadline = time.monotonic() + r.busy_wait_s
    job = _retry_busy(
        lambda: client.open_shot(
            r.keys,
            r.options,
            r.frames,
            P.MODE_PATHS,
            r.input_pattern,
            r.output_pattern,
            r.colorspace,
            skip_existing=r.skip_existing,
            pixel_type=r.pixel_type,
            key_mattes=r.key_mattes,
            partial_keys=r.partial_keys,
        ),
        deadline,
    )
    try:
        for ev in job.events(timeout_s=r.job_timeout_s, wait_s=LONG_POLL_S):
            if ev.kind in P.TERMINAL_EVENTS:
                _raise_terminal(job, ev)
            if r.on_progress is not None:
                r.on_progress(ev)
        return dict((job.finished.info or {}).get("report") or {})
    finally:
        _close_quietly(job)
