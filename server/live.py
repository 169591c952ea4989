"""Live sessions (protocol 3): a shot kept open after its run, whose keys the artist edits while it runs.

The session's job thread (``run_live``) runs the shot, then waits for an edit; an edit (``apply_edit``, in the
socket thread) swaps the session's keys and bumps its run number, which makes the running run stale
(``Session.halted``): it stops at its next frame or wait, and the thread starts the re-run with the new keys.
The shot's cache (``colorprop.shot.cache.ShotCache``, where the core has it) lives in a folder of the session's
own, removed when the thread ends (close, timeout, shutdown). A frame whose result equals, bit for bit, what the
session already sent (or wrote) is not sent again (``LiveState.unchanged``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from colorprop_client import protocol as P
from colorprop_client.protocol import ProtocolError

from . import jobs
from .gate import Stopped
from .requests import InbandShot, PathsShot, check_inband_keys, inband_key, job_id
from .session import jsonable

if TYPE_CHECKING:
    from .config import ServerConfig
    from .paths import AllowedRoots
    from .service import Service
    from .session import Session

log = logging.getLogger("colorprop_server")


@dataclasses.dataclass
class LiveState:
    """A live session's keys and runs. ``run``: the newest run asked for (0 at the open, +1 per edit), set by the
    socket thread under the session's ``cond``; ``running``: the one the job thread runs."""

    shot: InbandShot | PathsShot
    view: int | None = None
    regrade: bool = False  # the shot's option: an edit may leave it without a full key
    run: int = 0
    running: int = -1
    last_edit: tuple[str, int] | None = None  # (request id, run) of the last edit: a resend is answered the same
    sent: dict[int, tuple[str | None, bytes]] = dataclasses.field(default_factory=dict)  # frame -> (stamp, digest)
    skipped: set[int] = dataclasses.field(default_factory=set)  # frames of the running run not sent again
    plate_ids: dict[int, str] = dataclasses.field(default_factory=dict)  # in-band: frame -> hash of its pixels
    folder: Path | None = None

    def stale(self) -> bool:
        return self.running != self.run

    def held(self, frame: int) -> str | None:
        return self.sent.get(frame, (None, b""))[0]

    def unchanged(self, frame: int, result: Any) -> bool:
        """True when ``result`` is what the client holds for ``frame`` (then nothing goes out); else remember it
        as what it will hold."""
        digest = hashlib.blake2b(digest_size=16)
        for a in (result.rgb, result.confidence):
            digest.update(np.ascontiguousarray(a, np.float32).tobytes())
        got = (getattr(result, "stamp", None), digest.digest())
        if self.sent.get(frame, (None, b""))[1] == got[1]:
            self.skipped.add(frame)
            return True
        self.sent[frame] = got
        return False


def run_live(service: Service, s: Session, options: Any, colorspace: str | None) -> Any:
    """The live session's job thread: a run per edit, until the session stops (Stopped: it ends cancelled)."""
    from colorprop.shot.run import Cancelled

    live: LiveState = s.live
    live.folder = Path(tempfile.mkdtemp(prefix=f"colorprop-live-{s.id[:16]}-"))
    try:
        cache = open_cache(live.folder / "cache")
        while True:
            with s.cond:
                live.running, shot, view = live.run, live.shot, live.view
                live.skipped = set()
                s.consumed.clear()  # the re-run reads its frames again: the client sends them on 'need'
                s.key_frames = sorted(shot.keys)
            s.push({"kind": P.EV_RUN, "run": live.running, "keys": s.key_frames, "view": view})
            service.wake()
            try:
                report = one_run(service, s, shot, options, colorspace, cache=cache, view=view)
            except (Cancelled, Stopped):
                if s.stop.is_set():
                    raise
                continue  # an edit: the re-run starts with its keys
            finally:
                service.gate.release(s.id)
            unchanged = sorted(live.skipped | set(getattr(report, "frames_unchanged", ()) or ()))
            s.push({"kind": P.EV_RUN_DONE, "run": live.running, "report": jsonable(report), "unchanged": unchanged})
            service.wake()
            with s.cond:
                s.inbox.clear()  # frames sent ahead for the run that ended: the next run asks again
                while not s.halted():
                    s.cond.wait(0.5)
            if s.stop.is_set():
                raise Stopped()
    finally:
        shutil.rmtree(live.folder, ignore_errors=True)


def one_run(service: Service, s: Session, shot: Any, options: Any, colorspace: str | None, **more: Any) -> Any:
    """One run of the shot with its keys of now (``more``: the session's ``cache`` and ``view`` for ``run_shot``)."""
    if isinstance(shot, InbandShot):
        return jobs.run_inband(service, s, shot.keys, options, colorspace, shot.carry, **more)
    return jobs.run_paths(service, s, shot, options, **more)


def open_cache(folder: Path) -> Any:
    """The session's shot cache in ``folder`` (a cache that cannot be made leaves the runs uncached, with a note)."""
    from colorprop.shot.cache import ShotCache

    return ShotCache(folder)


# ---------------------------------------------------------------------------------------------- edits (socket thread)
def check_live(msg: P.Message, s: Session | None) -> Session:
    """The live session an edit or view is for; ProtocolError otherwise (version, not live, ended)."""
    if msg.get("v") < P.LIVE_VERSION:
        raise ProtocolError(P.E_VERSION, f"{msg.type} needs protocol {P.LIVE_VERSION}", "v")
    if s is None:
        raise ProtocolError(
            P.E_UNKNOWN_JOB,
            f"no job {job_id(msg)} on this server (closed, timed out, or the server restarted): open it again",
            "job",
        )
    if s.live is None or s.finished:
        what = "is not a live session (open it with live: true)" if s.live is None else f"has ended ({s.state})"
        raise ProtocolError(P.E_NOT_LIVE, f"job {s.id} {what}", "job")
    return s


def parse_view(frame: Any, s: Session) -> int | None:
    if frame is not None and (type(frame) is not int or frame not in s.frame_set):
        raise ProtocolError(P.E_BAD_INPUT, f"view {frame!r} is not a frame of this shot", "frame")
    return frame


def apply_edit(msg: P.Message, s: Session, config: ServerConfig, roots: AllowedRoots) -> Any:
    """The session's shot with the ``edits`` of ``msg`` applied, each checked as an open checks its keys (a bad
    one refuses the whole edit: nothing changes). Pure: the caller swaps it in."""
    from colorprop.errors import ColorpropError
    from colorprop.shot.preflight import check_keys_among_frames

    edits = msg.get("edits")
    if not isinstance(edits, list) or not 0 < len(edits) <= P.MAX_EDITS or not all(isinstance(e, dict) for e in edits):
        raise ProtocolError(P.E_BAD_INPUT, f"edits must be a list of 1..{P.MAX_EDITS} objects", "edits")
    shot = s.live.shot
    keys = dict(shot.keys)
    mattes = dict(shot.key_mattes) if isinstance(shot, PathsShot) else {}
    partial = set(shot.partial_keys or ()) if isinstance(shot, PathsShot) else set()
    sets = set()
    for e in edits:
        op, frame, to = e.get("op"), e.get("frame"), e.get("to")
        if op not in P.EDIT_OPS or type(frame) is not int or frame not in s.frame_set:
            raise ProtocolError(
                P.E_BAD_INPUT, f"an edit needs op in {list(P.EDIT_OPS)} and a frame of the shot", "edits"
            )
        if op != P.EDIT_SET and frame not in keys:
            raise ProtocolError(P.E_BAD_INPUT, f"no key at frame {frame} to {op}", "edits")
        if op == P.EDIT_MOVE:
            if type(to) is not int or to not in s.frame_set or (to in keys and to != frame):
                raise ProtocolError(P.E_BAD_INPUT, "move: 'to' must be a frame of the shot without a key", "edits")
            keys[to] = keys.pop(frame)
            if isinstance(shot, InbandShot):
                keys[to] = dataclasses.replace(keys[to], name=f"key {to}")
            if frame in mattes:
                mattes[to] = mattes.pop(frame)
            if frame in partial:
                partial = (partial - {frame}) | {to}
        elif op == P.EDIT_REMOVE:
            keys.pop(frame)
            mattes.pop(frame, None)
            partial.discard(frame)
        elif isinstance(shot, InbandShot):
            if f"key{frame}" not in msg.arrays:
                raise ProtocolError(P.E_BAD_INPUT, f"set: the buffer key{frame} is missing", "buffers")
            keys[frame] = inband_key(msg, frame, shot.shape, msg.get("colorspace"), config)
            sets.add(frame)
        else:
            keys[frame], mattes[frame] = set_path(e, roots), e.get("matte")
            if mattes[frame] is None:
                del mattes[frame]
            else:
                set_path({"path": mattes[frame]}, roots)
            partial = (partial | {frame}) if e.get("partial") or frame in mattes else partial - {frame}
    if isinstance(shot, InbandShot):
        named = {f"key{f}" for f in sets} | {P.matte_buffer(f) for f in sets if P.matte_buffer(f) in msg.arrays}
        if set(msg.arrays) != named:
            raise ProtocolError(
                P.E_BAD_INPUT, "buffers must be key<frame> (and matte<frame>) of the set ops", "buffers"
            )
    try:
        check_keys_among_frames(sorted(keys), s.frames)
    except ColorpropError as exc:
        raise ProtocolError(P.E_BAD_INPUT, str(exc), "edits") from None
    if isinstance(shot, InbandShot):
        return check_inband_keys(dataclasses.replace(shot, keys=keys, notes=()), s.live.regrade)
    return dataclasses.replace(shot, keys=keys, key_mattes=mattes, partial_keys=tuple(sorted(partial)))


def set_path(e: dict, roots: AllowedRoots) -> str:
    from .paths import PathRefused

    path = e.get("path")
    if not isinstance(path, str) or not path or len(path) > P.MAX_PATH_CHARS:
        raise ProtocolError(P.E_BAD_INPUT, "set: a key's path is needed (shared paths)", "edits")
    try:
        roots.check_file(path)
    except PathRefused as exc:
        raise ProtocolError(P.E_PATH, str(exc), "path") from None
    return path
