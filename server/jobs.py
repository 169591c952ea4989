"""The job threads: one per open shot, running ``pipeline.run_shot`` with the compute turn of the
service's ``FairGate``, reporting back only through its ``Session`` and the service's wake-up."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

import numpy as np

from colorprop_client import protocol as P

from .gate import Stopped
from .logs import log_event
from .paths import AllowedRoots, PathRefused
from .requests import PathsShot, error_code
from .session import Session, jsonable, suggestions

if TYPE_CHECKING:
    from .service import Service

log = logging.getLogger("colorprop_server")


def job_thread(service: Service, s: Session, target: Callable, args: tuple) -> None:
    from colorprop.errors import ColorpropError
    from colorprop.shot.run import Cancelled

    t0 = time.monotonic()
    try:
        report = target(service, *args)
        s.state = "done"
        s.push({"kind": P.EV_DONE, "report": jsonable(report), P.DONE_SUGGESTIONS: suggestions(s)})
    except (Cancelled, Stopped):
        s.state = "cancelled"
        if service.stopping and s.id in service.sessions:
            s.push({"kind": P.EV_FAILED, "code": P.E_SHUTDOWN, "message": "server shut down; resubmit the job"})
        else:
            s.push({"kind": P.EV_CANCELLED})
    except PathRefused as exc:
        s.state = "failed"
        s.push({"kind": P.EV_FAILED, "code": P.E_PATH, "message": str(exc)})
    except ColorpropError as exc:
        s.state = "failed"
        s.push({"kind": P.EV_FAILED, "code": error_code(exc), "message": str(exc)})
    except Exception as exc:
        log.exception("job %s failed", s.id)
        s.state = "failed"
        s.push({"kind": P.EV_FAILED, "code": P.E_ENGINE, "message": f"{type(exc).__name__}: {exc}"})
    finally:
        service.gate.release(s.id)
        log_event(
            log,
            "job_end",
            job=s.id,
            client=s.client,
            state=s.state,
            code=s.end_code,
            frames=s.frames_done,
            s=round(time.monotonic() - t0, 3),
        )
        service.metrics.job_finished(s.client, s.state, s.end_code)
        service.wake()


def push_notes(s: Session, notes: Iterable[str]) -> None:
    """The pre-flight's notes (a partial key's matte clamped into [0, 1]) as note events, for the artist's DCC."""
    for note in notes:
        s.push({"kind": P.EV_NOTE, "message": note})


def live_fields(s: Session) -> dict:
    """What a live session's result or written event adds: the number of the run that made it."""
    return {} if s.live is None else {"run": s.live.running}


def turn(service: Service, s: Session) -> None:
    """Give the compute turn back and queue for the next one (round-robin at every frame)."""
    service.gate.release(s.id)
    service.gate.acquire(s.id, s.halted)


def progress_of(service: Service, s: Session) -> Callable:
    def progress(ev: Any) -> None:
        s.frames_done = ev.done
        if not ev.skipped:
            service.metrics.frame_done(s.client)
        if ev.seconds > 0:
            service.frame_seconds = 0.8 * service.frame_seconds + 0.2 * ev.seconds
        s.push({"kind": P.EV_PROGRESS, **jsonable(ev)})
        service.wake()

    return progress


def wait_for_fetch(service: Service, s: Session) -> None:
    """Back-pressure: a job whose results nobody fetches waits, without holding the turn."""
    with s.cond:
        if s.undelivered_results() < service.config.max_pending_results:
            return
    service.gate.release(s.id)
    with s.cond:
        while s.undelivered_results() >= service.config.max_pending_results:
            if s.halted():
                raise Stopped()
            s.cond.wait(0.1)
    service.gate.acquire(s.id, s.halted)


class InbandSource:
    """The shot's plates as the client sends them: a read asks for the frame (a ``need`` event) and waits for
    it without holding the compute turn."""

    def __init__(self, service: Service, s: Session, colorspace: str | None):
        self.service, self.s, self.colorspace = service, s, colorspace
        self.frames = s.frames

    def read(self, frame: int) -> Any:
        from colorprop.shot.frames import PlateFrame

        service, s = self.service, self.s
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
                    if s.halted():
                        raise Stopped()
                    s.cond.wait(0.1)
                s.needed = None
                item = s.inbox.pop(frame)
                s.consumed.add(frame)
                s.last_read = (frame, item)
        service.gate.acquire(s.id, s.halted)
        pixels, channels, cs = item
        cs = cs if cs is not None else self.colorspace
        if s.live is not None and frame not in s.live.plate_ids:
            s.live.plate_ids[frame] = plate_id(pixels, channels, cs)
        return PlateFrame(pixels, channels, cs, None, f"frame {frame}")

    def identity(self, frame: int) -> str:
        """What the shot cache knows the plate by: a hash of the pixels the client sent for it, taken at the
        session's first read of it. A live session's plates are the ones it opened with (a plate that changes is
        a new session), so a re-run finds its flows and features without the client sending every frame again."""
        plate_ids = self.s.live.plate_ids if self.s.live is not None else {}
        if frame not in plate_ids:
            item = self.read(frame)
            return plate_id(item.pixels, item.channels, item.colorspace)
        return plate_ids[frame]


def plate_id(pixels: np.ndarray, channels: tuple, colorspace: str | None) -> str:
    import hashlib

    digest = hashlib.blake2b(np.ascontiguousarray(pixels).tobytes(), digest_size=16)
    digest.update(repr((pixels.shape, str(pixels.dtype), tuple(channels), colorspace)).encode())
    return "inband:" + digest.hexdigest()


class ResultSink:
    """Results become ``result`` events the client fetches; past ``max_pending_results`` unfetched the job waits."""

    def __init__(self, service: Service, s: Session, carry: type):
        self.service, self.s = service, s
        self.pixel_dtype = carry  # the client stores results like this (half EXRs): carry the same state

    def exists(self, frame: int) -> bool:
        return False

    def read_back(self, frame: int) -> np.ndarray:  # pragma: no cover - skip_existing is never set
        raise NotImplementedError

    def held(self, frame: int) -> str | None:
        """The stamp of the result the client holds for ``frame`` (a live session's), else None."""
        return None if self.s.live is None else self.s.live.held(frame)

    def write(self, frame: int, result: Any) -> None:
        from colorprop.engine.confidence import frame_summary

        s = self.s
        if s.live is not None and s.live.unchanged(frame, result):
            return  # a live re-run's frame the client already holds, bit for bit: not sent again
        s.summaries[frame] = frame_summary(result.confidence)
        s.push(
            {"kind": P.EV_RESULT, "frame": frame, **live_fields(s)},
            [
                ("rgb", np.ascontiguousarray(result.rgb, np.float32)),
                ("confidence", np.ascontiguousarray(result.confidence, np.float32)),
            ],
        )
        self.service.wake()
        wait_for_fetch(self.service, s)


def run_inband(
    service: Service, s: Session, keys: dict, options: Any, colorspace: str | None, carry: type, **more: Any
) -> Any:
    """An in-band job's run; ``more``: a live session's ``cache`` and ``view`` for ``run_shot``."""
    from colorprop.shot.pipeline import run_shot

    service.gate.acquire(s.id, s.halted)
    return run_shot(
        service.engine,
        InbandSource(service, s, colorspace),
        keys,
        options,
        ResultSink(service, s, carry),
        progress=progress_of(service, s),
        cancel=s.halted,
        **more,
    )


def check_partial_keys_agree(keys: dict, told: tuple[int, ...]) -> None:
    """InputError unless the keys this server read as partial (a matte, or the file's alpha) are the ones the client
    read so (``partial_keys``): a key file the two sides see differently (storage out of sync) would colour
    other pixels than the artist painted."""
    from colorprop.errors import InputError
    from colorprop.shot.frames import format_frames

    here = sorted(k for k, key in keys.items() if key.is_partial)
    if here != sorted(told):
        raise InputError(
            f"the server reads key frame(s) {format_frames(here) or 'none'} as partial (alpha or --key-matte), the "
            f"client read {format_frames(list(told)) or 'none'}: do both see the same key files?"
        )


class CheckedSource:
    """The shared-path plates, each checked against the roots again and read by descriptor, one compute turn
    per frame."""

    def __init__(self, service: Service, s: Session, source: Any):
        self.service, self.s, self.source = service, s, source
        self.frames = source.frames

    def read(self, frame: int) -> Any:
        turn(self.service, self.s)
        with self.service.roots.opened_file(self.source.pattern.path(frame)) as through:
            return self.source.read(frame, through)

    def identity(self, frame: int) -> str:
        """The plate's path, size and mtime (the shot cache's identity of it), the path checked against the roots."""
        self.service.roots.check(self.source.pattern.path(frame))
        return self.source.identity(frame)


class CheckedSink:
    """The shared-path outputs, written through the output folder opened and verified by descriptor."""

    def __init__(self, roots: AllowedRoots, s: Session, sink: Any, out_dir: Path, out_name: str):
        self.roots, self.s, self.sink, self.out_dir, self.out_name = roots, s, sink, out_dir, out_name
        self.pixel_dtype = sink.pixel_dtype

    def exists(self, frame: int) -> bool:
        from colorprop.errors import ExrReadError

        try:
            with self.roots.opened_file(self.sink.pattern.path(frame)) as through:
                return self.sink.exists(frame, through)
        except ExrReadError:  # nothing there
            return False

    def read_back(self, frame: int) -> np.ndarray:
        with self.roots.opened_file(self.sink.pattern.path(frame)) as through:
            return self.sink.read_back(frame, through)

    def held(self, frame: int) -> str | None:
        """The stamp of what this live session wrote at ``frame``, else None."""
        return None if self.s.live is None else self.s.live.held(frame)

    def write(self, frame: int, result: Any) -> None:
        from colorprop.engine.confidence import frame_summary
        from colorprop.errors import ExrWriteError

        if self.s.live is not None and self.s.live.unchanged(frame, result):
            return  # a live re-run's frame this session wrote already, bit for bit: not written again
        path = self.sink.pattern.path(frame)
        with self.roots.pinned_dir(self.out_dir, create=True) as pinned:
            into = self.sink.retarget(str(pinned / self.out_name))
            try:
                into.write(frame, result)
            except ExrWriteError as err:  # name the file, not the descriptor path
                raise ExrWriteError(path, err.reason.replace(str(pinned), str(self.out_dir))) from None
        self.s.summaries[frame] = frame_summary(result.confidence)
        self.s.push({"kind": P.EV_WRITTEN, "frame": frame, "path": str(path), **live_fields(self.s)})


def run_paths(service: Service, s: Session, shot: PathsShot, options: Any, **more: Any) -> Any:
    """Shared-path job: the pre-flight every path runs (shot/preflight.py: overwrites, plates, sizes,
    keys, colour space, output folder), here in the job thread, with every path it touches checked
    against the roots; then every path is checked again when it is used, and writes go through the
    output folder opened and verified by descriptor (``AllowedRoots.pinned_dir``); reads go through the
    file opened and verified by descriptor (``AllowedRoots.opened_file``)."""
    from colorprop.io.temps import remove_stale_temps
    from colorprop.shot.pipeline import run_shot
    from colorprop.shot.preflight import check_sequence_job

    roots = service.roots

    def allowed(path: Path) -> Path:  # a 20,000-frame shot takes a while: stay cancellable
        if s.halted():
            raise Stopped()
        return roots.check(path)  # the pre-flight opens only regular files; reads check again (opened_file)

    checked = check_sequence_job(
        shot.input,
        shot.keys,
        shot.output,
        s.frames,
        options,
        allow=allowed,
        open_file=roots.opened_file,
        key_mattes=shot.key_mattes,
    )
    if shot.partial_keys is not None:
        check_partial_keys_agree(checked.keys, shot.partial_keys)
    for note in checked.notes:
        log_event(log, "job_note", job=s.id, note=note)
    push_notes(s, checked.notes)
    service.wake()
    service.gate.acquire(s.id, s.halted)
    source, sink = checked.source(), checked.sink(shot.pixel_type)
    out_dir, out_name = sink.pattern.path(s.frames[0]).parent, Path(shot.output).name
    with roots.pinned_dir(out_dir, create=True) as pinned:  # a killed writer's temp files: ours now
        remove_stale_temps(pinned / sink.pattern.path(f).name for f in s.frames)
    return run_shot(
        service.engine,
        CheckedSource(service, s, source),
        checked.keys,
        options,
        CheckedSink(roots, s, sink, out_dir, out_name),
        progress=progress_of(service, s),
        cancel=s.halted,
        skip_existing=shot.skip_existing,
        **more,
    )
