"""``ShotRun``: the state of one ``run_shot`` and its three kinds of segment (a key frame, one way from a
key, the span between two keys: two stored passes and their blend)."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from colorprop.engine.confidence import meet_confidence
from colorprop.engine.engine import Engine, ShotOptions
from colorprop.engine.propagate import Propagator
from colorprop.errors import ColorpropError
from colorprop.shot.ahead import LookAhead
from colorprop.shot.frames import FrameResult, FrameSink, FrameSource, KeyImage, PlateFrame, ProgressEvent, ShotReport
from colorprop.shot.cache import ShotCache
from colorprop.shot.layers import ShotLayers
from colorprop.shot.passes import DIRECTIONS, PassFrame, PassStore, fingerprint, temporary_root
from colorprop.shot.rerun import Rerun
from colorprop.shot.working import Prepared, ShotColour, plate_ab, regrade_change


class Cancelled(ColorpropError):
    exit_code = 130


@dataclass(frozen=True)
class ShotJob:
    """What one ``run_shot`` colours, and how (``run_shot``'s docstring says what each option does)."""

    source: FrameSource
    keys: dict[int, KeyImage]
    options: ShotOptions
    sink: FrameSink
    skip_existing: bool = False
    segment: int | None = None  # a key frame: only its KeySegment (a farm task)
    state_dir: Path | None = None  # the passes between keys kept there (resumable)
    direction: str | None = None  # "forward" | "backward": only that pass of the segment's span
    blend: Callable | None = None  # how two passes meet between keys (None: by confidence)
    cache: ShotCache | None = None  # what is kept between runs of the shot (cache.py, rerun.py)
    view: int | None = None  # the frame looked at: the runs reaching it go first


class ShotRun:
    """The state of one ``run_shot``: the shot's colour bookkeeping, the keys' colour, what was reported.
    Its three segment kinds are ``key_frame``, ``between_keys`` (two stored passes, blended) and ``one_way``
    (before the first key or after the last: one run, frame after frame); with regrade and only partial keys,
    ``plate_only``. Each frame goes out through ``output``, the partial keys' ``layers`` laid over it.
    ``blend`` is the job's, resolved."""

    def __init__(
        self,
        engine: Engine,
        job: ShotJob,
        blend: Callable,
        total: int,
        progress: Callable[[ProgressEvent], None] | None = None,
        cancel: Callable[[], bool] | None = None,
    ):
        source, keys, options = job.source, job.keys, job.options
        self.engine, self.job, self.source, self.options, self.sink = engine, job, source, options, job.sink
        self.progress, self.cancel, self.skip_existing, self.blend = progress, cancel, job.skip_existing, blend
        self.direction_only, self.total, self.done = job.direction, total, 0
        self.report = ShotReport()
        first = next(iter(source.frames))
        self._first_plate: tuple[int, PlateFrame] | None = (first, source.read(first))  # taken by ``prepared``
        self.shot = shot = ShotColour(options, self._first_plate[1])
        self.key_ab_full = {k: shot.key_ab(img) for k, img in keys.items()}
        if options.regrade:  # carry the change the key made to its plate frame, not the colour
            self.key_ab_full = {
                k: regrade_change(ab, plate_ab(source.read(k), shot)) for k, ab in self.key_ab_full.items()
            }
        self._last_prepared: tuple[int, Prepared] | None = None  # a pass and the blend of a frame share it
        self._key_work: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.layers = ShotLayers(self, keys)  # layers.py
        self.plates: str | None = None  # with a cache: what the plates and the engine are (rerun.py), in stamps
        self.rerun = None if job.cache is None else Rerun(self, job.cache)
        # The next frame's networks computed during this frame's plate-size work (ahead.py), where that applies.
        self.ahead = LookAhead() if LookAhead.applies(options.method, engine.models, source, job.cache) else None

    # ---------------------------------------------------------------- reporting

    def emit(self, frame: int, result: FrameResult | None, seconds: float) -> None:
        if result is not None:
            self.sink.write(frame, result)
        self.count(frame, result is not None, seconds)

    def count(self, frame: int, written: bool, seconds: float) -> None:
        """A frame done (an output frame, or a pass frame with ``direction``): reported and shown."""
        (self.report.frames_written if written else self.report.frames_skipped).append(frame)
        self.tick(frame, seconds, skipped=not written)

    def tick(self, frame: int, seconds: float, skipped: bool) -> None:
        """One step of ``total`` done (a frame counted, or a frame of a partial key's layer: layers.py): shown.
        ``total`` is the frames counted plus the layer frames the passes may reach, less those they stop short
        of, so ``done`` ends at ``total``."""
        self.done += 1
        if self.progress is not None:
            self.progress(ProgressEvent(frame, self.done, self.total, seconds, skipped=skipped))

    def check_cancel(self) -> None:
        if self.cancel is not None and self.cancel():
            raise Cancelled("cancelled by request")

    # ---------------------------------------------------------------- one frame's colour

    def prepared(self, frame: int) -> Prepared:
        """The plate frame in the working space (with a cache, its luminance kept there: rerun.py)."""
        if self._last_prepared is None or self._last_prepared[0] != frame:
            # The plate read for the shot's colour space and size serves its frame once, if that comes first (the
            # key at the start of most shots): a 4K plate is not read twice.
            first, self._first_plate = self._first_plate, None
            prep = None if self.rerun is None else self.rerun.prepared(frame)
            if prep is None:
                plate = first[1] if first is not None and first[0] == frame else self.source.read(frame)
                prep = self.shot.prepare(plate)
                if self.rerun is not None:
                    self.rerun.keep_L(frame, prep)
            self._last_prepared = (frame, prep)
        return self._last_prepared[1]

    def prepared_early(self, frame: int) -> np.ndarray | None:
        """``prepared(frame).L_work`` before the frame ahead of it is out (the look-ahead), or None where that fails:
        its error is raised when the run reaches ``frame`` (read again), after the frames before it are written."""
        with contextlib.suppress(Exception):
            return self.prepared(frame).L_work
        return None

    def working_L(self, frame: int) -> np.ndarray:
        """A frame's luminance at the working size (all a pass needs of it): with a cache, kept there, so a pass
        over frames the blend or a layer reads again reads no plate twice."""
        return self.prepared(frame).L_work if self.rerun is None else self.rerun.working_L(frame)

    def carried_state(self, frame: int, rgb: np.ndarray | None, prep: Prepared) -> np.ndarray:
        """The base's colour ``rgb`` (None: read back, a skipped frame no layer touches), rounded as the sink
        stores it; with regrade, its change from the plate rounded alike (exactly 0 where the plate was kept)."""
        sink, shot = self.sink, self.shot
        rgb = sink.read_back(frame) if rgb is None else rgb
        stored = sink.pixel_dtype
        if not self.options.regrade:
            return shot.state_ab(rgb, stored)
        return shot.state_ab(rgb, stored) - shot.state_ab(prep.frame.rgb(), stored)

    def finish(self, prep: Prepared, ab_full: np.ndarray, conf_full: np.ndarray) -> FrameResult:
        if not self.options.regrade:
            return self.shot.finish(prep, ab_full, conf_full)
        result = self.shot.finish(prep, plate_ab(prep.frame, self.shot) + ab_full, conf_full)
        unchanged = np.all(ab_full == 0, axis=-1)[..., None]
        result.rgb = np.where(unchanged, prep.frame.rgb(), result.rgb).astype(np.float32)
        return result

    def output(
        self, frame: int, prep: Prepared, ab_full: np.ndarray, conf_full: np.ndarray, t0: float, written: bool = False
    ) -> FrameResult:
        """Write the base's colour at ``frame`` with the partial keys' layers that touch it laid over (layers.py);
        ``written``: already on disk (a resumed frame a layer touches), not written again. Returns the base's
        own result: what the base carries on, never the composite. With a cache the base is kept there."""
        base = self.finish(prep, ab_full, conf_full)
        if self.rerun is not None and not written:
            self.rerun.keep(frame, ab_full, conf_full)
        self.deliver(frame, prep, ab_full, conf_full, t0, written, base)
        return base

    def deliver(
        self,
        frame: int,
        prep: Prepared,
        ab_full: np.ndarray,
        conf_full: np.ndarray,
        t0: float,
        written: bool = False,
        base: FrameResult | None = None,
    ) -> None:
        """``output``'s write, from the base's colour and confidence (``base``: their result, when made). With a
        cache, the result carries its stamp (rerun.py) and a frame whose stamp the sink holds is not written."""
        stamp = self.rerun.frame_stamp(frame) if self.rerun is not None and not written else ""
        if written or (stamp and stamp == self.rerun.held(frame)):
            if stamp:
                self.report.frames_unchanged.append(frame)
            self.emit(frame, None, 0.0)
            return
        if self.layers.touches(frame):
            base = self.finish(prep, *self.layers.over(frame, prep.L_full, ab_full, conf_full))
        elif base is None:
            base = self.finish(prep, ab_full, conf_full)
        base.stamp = stamp
        self.emit(frame, base, time.perf_counter() - t0)

    def new_propagator(self, key: int, other: int | None = None, ahead: LookAhead | None = None) -> Propagator:
        """A run from ``key``; with ``other`` (the key at the far end of a between-keys segment) the global
        branch matches against both keys (+0.06 to +0.11 dB at every N on the dev clips, docs/KEYS.md).
        ``ahead``: its stores are the Propagator's (else the shot cache's, with one)."""
        others = [self.key_work(other)] if other is not None else []
        return Propagator(
            self.options.method,
            *self.key_work(key),
            self.engine.models,
            change_only=self.options.regrade,
            other_keys=others,
            **(self.stores() if ahead is None else ahead.stores),
        )

    def close(self) -> None:
        if self.ahead is not None:
            self.ahead.close()

    def stores(self) -> dict:
        """A Propagator's stores of what no key changes (DIS flows, F_s's features; cache.py), with a cache."""
        return {} if self.rerun is None else {"flows": self.rerun.flows, "features": self.rerun.features}

    def key_work(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """A key's luminance and colour at working resolution, read once per shot (a key starts one run and
        is the far key of another)."""
        if k not in self._key_work:
            self._key_work[k] = self.working_L(k), self.shot.to_work(self.key_ab_full[k])
        return self._key_work[k]

    # ---------------------------------------------------------------- the three kinds of segment

    def key_frame(self, a: int) -> None:
        t0 = time.perf_counter()
        if self.skip_existing and self.sink.exists(a):
            self.emit(a, None, 0.0)
            return
        prep = self.prepared(a)
        self.output(a, prep, self.key_ab_full[a], np.ones(prep.L_full.shape, np.float32), t0)

    def plate_only(self, run: list[int]) -> None:
        """Regrade without a full key: the base is the plate's own colour (no change), under the layers."""
        for frame in run:
            self.check_cancel()
            t0 = time.perf_counter()
            if self.skip_existing and self.sink.exists(frame):
                self.emit(frame, None, 0.0)
                continue
            prep = self.prepared(frame)
            no_change = np.zeros((*prep.L_full.shape, 2), np.float32)
            self.output(frame, prep, no_change, np.ones(prep.L_full.shape, np.float32), t0)

    def one_way(self, kind: str, a: int | None, b: int | None, run: list[int]) -> None:
        """Before the first key (``kind`` "backward", from ``b``) or after the last (forward from ``a``)."""
        shot = self.shot
        ahead = self.ahead
        propagator = self.new_propagator(b, None, ahead) if kind == "backward" else self.new_propagator(a, b, ahead)
        prev_full = self.key_ab_full[b if kind == "backward" else a]  # the last written colour, full resolution
        order = list(reversed(run)) if kind == "backward" else run
        exists = [self.skip_existing and self.sink.exists(frame) for frame in order]
        todo = max((i + 1 for i, e in enumerate(exists) if not e), default=0)  # after: written, and nothing needs them
        # With a cache, the frames a run cut short (cancelled) kept from its key on: carried on as a resume does.
        kept = self.rerun.kept(order[:todo]) if self.rerun is not None and self.options.method != "global" else 0
        for i, (frame, written) in enumerate(zip(order[:todo], exists)):
            self.check_cancel()
            t0 = time.perf_counter()
            prep = self.prepared(frame)
            stored = self.rerun.base(frame) if i < kept else None
            if stored is not None:  # its colour from the cache, its carried confidence by flow alone, no networks
                pending = propagator.carried_only(prep.L_work)
                base = self.finish(prep, *stored)
                self.deliver(frame, prep, *stored, t0, written, base)
                prev_full = self.carried_state(frame, base.rgb, prep)
                propagator.accept(pending, shot.to_work(prev_full))
                continue
            kept = min(kept, i)  # (an entry gone bad: computed from here on)
            if written and not self.layers.touches(frame):
                # Already written (resume): its colour is read back, its carried confidence recomputed
                # by flow alone (exactly what the uninterrupted run carried), no networks. A frame a layer
                # touched (or may have) is not the base's colour: its step runs again, the frame is not rewritten.
                prev_full = self.carried_state(frame, None, prep)
                pending = propagator.carried_only(prep.L_work)
                self.emit(frame, None, 0.0)
                propagator.accept(pending, shot.to_work(prev_full))
                continue
            if ahead is not None:
                ahead.wait()
            pending = propagator.step(prep.L_work)
            if ahead is not None and i + 1 < todo:
                ahead.start(propagator, prep.L_work, self.prepared_early(order[i + 1]))
            ab, confidence, _ = pending.colour
            full = shot.to_full(ab, confidence, prep.L_full, prev_full, pending.flow, prep.L_work)
            base = self.output(frame, prep, *full, t0, written)
            prev_full = self.carried_state(frame, base.rgb, prep)
            propagator.accept(pending, shot.to_work(prev_full))
        for frame in order[todo:]:
            self.emit(frame, None, 0.0)

    def between_keys(self, a: int, b: int, run: list[int], state_dir: Path | None) -> None:
        """The span between keys ``a`` and ``b``: its passes stored under ``state_dir`` (else a temporary
        folder of this run's own), then blended; with ``direction_only`` just that pass (a farm task). Tasks
        sharing ``state_dir`` take turns on the span (passes.py): what is already written is looked at once
        the turn is ours, so a second blend of a span another one just finished finds it written (or, without
        ``skip_existing``, makes it again), never a pass file half gone."""
        with contextlib.ExitStack() as stack:
            kept = None if self.rerun is None else self.rerun.spans_root()  # a cut-short run's passes: resumed
            root = state_dir or kept or stack.enter_context(temporary_root())
            store = PassStore(
                root, a, b, self.pass_stamp(a, b, run), self.shot.work_size, flow=self.options.method != "global"
            )
            if kept is not None:
                self.rerun.cache.in_use.add(store.folder)
            if self.direction_only is not None:
                if self.skip_existing and all(self.sink.exists(f) for f in run):
                    for f in run:  # every frame is written: no pass is needed (nor its lock file)
                        self.count(f, False, 0.0)
                    return
                with store.locked([self.direction_only]):
                    for _ in self.pass_frames(self.direction_only, a, b, run, store):
                        pass
                return
            with store.locked(DIRECTIONS):
                written = {f for f in run if self.sink.exists(f)} if self.skip_existing else set()
                self.blend_span(a, b, run, store if len(written) < len(run) else None, written)
                store.remove()

    # ---------------------------------------------------------------- between keys: passes and their blend

    def pass_stamp(self, a: int, b: int, run: list[int]) -> str:
        """What made a span's pass files: a file with another stamp is computed again (passes.py)."""
        return self.stamp(a, b, run, self.shot.to_work(self.key_ab_full[a]), self.shot.to_work(self.key_ab_full[b]))

    def stamp(self, *parts) -> str:
        """The fingerprint of stored passes made by this run's options and weights from ``parts``."""
        weights = self.engine.describe()["weights"]
        plates = () if self.plates is None else (self.plates,)  # with a cache: the plates and the engine too
        return fingerprint(self.options.to_dict(), weights and weights["version"], *plates, *parts)

    @staticmethod
    def stored(store: PassStore, direction: str, frame: int) -> PassFrame:
        state = store.read(direction, frame)
        if state is None:  # sound when this task checked it, under its lock: changed by hand since; never guess
            raise ColorpropError(
                f"frame {frame}: the {direction} pass file {store.path(direction, frame)} was "
                "changed or removed while this task used it (by something other than colorprop); "
                "run the task again"
            )
        return state

    def pass_frames(self, direction: str, a: int, b: int, run: list[int], store: PassStore) -> Iterator[PassFrame]:
        """One pass over the frames between keys ``a`` and ``b`` (forward from ``a`` or backward from ``b``; the
        global branch matches against both keys), frame by frame in its order, each frame stored as it is made.
        A pass already stored is read back; one stored in part (a killed task, or a file gone bad: every file is
        checked in full first, ``PassStore.read``) is replayed by flow alone (``Propagator.carried_only``) with
        the stored colour up to its first frame not stored soundly and computed from there, so the run carries on
        exactly as an uninterrupted one."""
        forward = direction == "forward"
        order = run if forward else run[::-1]
        todo = store.first_unsound(direction, order)
        propagator = None
        if todo < len(order):
            propagator = self.new_propagator(a, b) if forward else self.new_propagator(b, a)
        for i, frame in enumerate(order):
            self.check_cancel()
            t0 = time.perf_counter()
            if propagator is None:
                state = self.stored(store, direction, frame)
            else:
                L = self.working_L(frame)
                if i < todo:
                    pending = propagator.carried_only(L)
                    state = self.stored(store, direction, frame)
                else:
                    pending = propagator.step(L)
                    state = PassFrame(*pending.colour, pending.flow)
                    store.write(direction, frame, state)
                propagator.accept(pending, state.ab, state.carried)
            if self.direction_only is not None:
                self.count(frame, i >= todo, time.perf_counter() - t0)
            yield state

    def blend_span(self, a: int, b: int, run: list[int], store: PassStore | None, written: set[int]) -> None:
        """The frames between keys ``a`` and ``b``: the backward pass (stored first), then the forward pass frame
        by frame, each frame blended with the backward one as it comes (``blend``), its written matte where they
        meet (``meet_confidence``), and brought to full resolution along the forward pass's flow from the last
        written frame (``ShotColour.to_full``). ``written``: frames already written (resume); ``store`` None: all
        of them."""
        forward = None
        if store is not None:
            for _ in self.pass_frames("backward", a, b, run, store):
                pass
            forward = self.pass_frames("forward", a, b, run, store)
        prev_full = self.key_ab_full[a]  # the last written colour, full resolution
        for frame in run:
            f = next(forward) if forward is not None else None  # the forward chain runs through every frame
            self.check_cancel()
            t0 = time.perf_counter()
            prep = self.prepared(frame)
            if frame in written and (store is None or not self.layers.touches(frame)):
                if store is not None:  # a later frame is made from its colour
                    prev_full = self.carried_state(frame, None, prep)
                self.emit(frame, None, 0.0)
                continue
            k = self.stored(store, "backward", frame)
            ab = self.blend(f.ab, f.carried, k.ab, k.carried, (frame - a) / (b - a))
            confidence = meet_confidence(ab, f.ab, f.confidence, k.ab, k.confidence)
            full = self.shot.to_full(ab, confidence, prep.L_full, prev_full, f.flow, prep.L_work)
            base = self.output(frame, prep, *full, t0, frame in written)
            prev_full = self.carried_state(frame, base.rgb, prep)
