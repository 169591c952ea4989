"""One shot, end to end: plate frames in, keys, coloured frames out.

    read plate ─▶ linear Rec.709 ─▶ L (full res, kept) ─▶ L at working res
        ─▶ Propagator.step (local ∥ global ─▶ fusion) ─▶ ab at working res
        ─▶ ab upsampled under full-res L ─▶ Lab(L_plate, ab) ─▶ plate colour space ─▶ sink

The luminance written is the plate's own: Lab's L carries CIE Y exactly, whatever ab is.
The state carried to the next frame is the *written* colour (rounded as the sink stores it), so a
run resumed from existing output frames continues exactly as an uninterrupted one would.

Keys: each frame takes colour from its nearest key on each side: forward from the earlier key,
backward from the later one. Between two keys a forward pass and a backward pass, neither reading the
other, are stored at the working size (passes.py) and then blended per pixel by their carried confidence
(confidence.py) and brought to full resolution along the forward pass's flow, frame after frame from the
last written one. A farm runs the two passes and the blend as three tasks (docs/FARM.md); the embedded run
does the same through a temporary folder, so both give the same pixels.

Regrade (``ShotOptions.regrade``): the plate is in colour and a key is a regrade of its plate frame.
What is carried is the *change*, delta_ab = ab(key) − ab(plate frame); each frame is written as
ab(plate) + propagated delta under the plate's L, and where the delta is exactly zero the plate's own
pixels are written unchanged.
"""

from __future__ import annotations

import contextlib
import functools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from colorprop.colour import convert
from colorprop.engine.confidence import BLEND_PRIOR_POWER, blend_by_confidence, meet_confidence
from colorprop.engine.engine import Engine, ShotOptions
from colorprop.engine.flow import resize_flow, warp_backward
from colorprop.engine.propagate import Propagator, resize_hw
from colorprop.errors import ColorpropError, InputError, PixelError
from colorprop.shot.frames import (  # noqa: F401  (also imported from here by the server, eval and tests)
    RGB, ArraySink, ArraySource, ExrSequenceSink, ExrSequenceSource, FrameResult, FrameSink, FrameSource,
    KeyImage, PlateFrame, ProgressEvent, ShotReport, format_frames, load_key, overlapped_io)
from colorprop.shot.passes import DIRECTIONS, PassFrame, PassStore, fingerprint, temporary_root
from colorprop.shot.preflight import (  # noqa: F401  (working_size: also imported from here)
    check_key, check_keys_among_frames, check_plate_pixels, check_sequence_job, check_size, plate_colorspace,
    working_size)


class Cancelled(ColorpropError):
    exit_code = 130


# ---------------------------------------------------------------- colour in and out of the working space


@dataclass
class Prepared:
    """One plate frame in the working space."""

    L_full: np.ndarray  # HxW CIE L of the plate (unclipped)
    L_work: np.ndarray  # hxw
    space: str
    frame: PlateFrame


def lab_ab(rgb: np.ndarray, space: str) -> np.ndarray:
    """HxWx2 Lab ab (contiguous) of HxWx3 ``rgb`` in colour space ``space``."""
    return np.ascontiguousarray(convert.linear_rec709_to_lab(convert.to_linear_rec709(rgb, space))[..., 1:])


class ShotColour:
    """Colour-space bookkeeping of one shot: plate space, working size."""

    def __init__(self, options: ShotOptions, first: PlateFrame):
        self.space = plate_colorspace(options.colorspace, first.colorspace, first.name)
        h, w = first.pixels.shape[:2]
        check_size(w, h, options.working_width, first.name)
        self.full_size = (w, h)
        self.work_size = working_size(w, h, options.working_width)
        self.upsample = options.upsample
        self.carry_full = options.carry == "full"

    def prepare(self, frame: PlateFrame) -> Prepared:
        check_plate_pixels(frame.pixels, frame.channels, frame.name)
        h, w = frame.pixels.shape[:2]
        if (w, h) != self.full_size:
            raise PixelError(f"{frame.name}: size {w}x{h} differs from the shot's {self.full_size[0]}x{self.full_size[1]}")
        # Row bands on a thread pool: per-pixel maths, the same numbers, a fraction of the time at 4K.
        L = convert.map_row_bands(lambda pixels: self._lab_l(pixels, frame.channels), frame.pixels)
        return Prepared(L, resize_hw(L, *self.work_size), self.space, frame)

    def _lab_l(self, pixels: np.ndarray, channels: tuple[str, ...]) -> np.ndarray:
        rgb = PlateFrame(pixels, channels, None).rgb()
        return convert.lab_l_from_y(convert.luminance(convert.to_linear_rec709(rgb, self.space)))

    def key_ab(self, key: KeyImage) -> np.ndarray:
        """HxWx2 Lab ab of the key at full resolution."""
        space = check_key(key, self.full_size, self.space)
        return convert.map_row_bands(functools.partial(lab_ab, space=space), key.pixels)

    def finish(self, prep: Prepared, ab_full: np.ndarray, confidence_full: np.ndarray) -> FrameResult:
        rgb = convert.map_row_bands(self._plate_rgb, prep.L_full, ab_full)
        return FrameResult(rgb.astype(np.float32, copy=False), confidence_full.astype(np.float32), prep.frame)

    def _plate_rgb(self, L: np.ndarray, ab: np.ndarray) -> np.ndarray:
        lab = np.concatenate([L[..., None], ab], axis=-1)
        return convert.from_linear_rec709(convert.lab_to_linear_rec709(lab), self.space).astype(np.float32, copy=False)

    def to_full(self, ab_work: np.ndarray, conf_work: np.ndarray, L_full: np.ndarray,
                prev_ab_full: np.ndarray | None = None, flow_work: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
        """Working-size colour and confidence at full resolution.

        With ``carry="full"``, the previous frame's written colour (``prev_ab_full`` HxWx2) and the step's
        working-size backward flow (``flow_work``): that colour is warped onto this frame at full
        resolution (the prior) and only the change the working-size step made to it is upsampled; where
        the step kept the carried colour, its full-resolution detail is kept instead of being re-made
        from the working size each frame."""
        if self.work_size == self.full_size:  # filtering at the same size would only blur, frame after frame
            return ab_work, conf_work
        conf = np.clip(resize_hw(conf_work, *self.full_size), 0.0, 1.0)
        if not self.carry_full or prev_ab_full is None or flow_work is None:  # global has no flow
            return convert.upsample_chroma(ab_work, L_full, method=self.upsample), conf
        prior = warp_backward(prev_ab_full, resize_flow(flow_work, *self.full_size))
        change = ab_work - resize_hw(prior, *self.work_size)
        return prior + convert.upsample_chroma(change, L_full, method=self.upsample), conf

    def state_ab(self, written_rgb: np.ndarray) -> np.ndarray:
        """The colour carried to the next frame (HxWx2): what was written, at full resolution."""
        return convert.map_row_bands(functools.partial(lab_ab, space=self.space), written_rgb)

    def to_work(self, ab_full: np.ndarray) -> np.ndarray:
        return resize_hw(ab_full, *self.work_size)


# ---------------------------------------------------------------- the shot


def plan_segments(frames: list[int], keys: list[int]) -> list[tuple[str, int | None, int | None, list[int]]]:
    """Split frames into runs: ("key", k, k, [k]), ("forward", a, None, [...]), ("backward", None, b, [...]),
    ("between", a, b, [...]) with frames in ascending order."""
    check_keys_among_frames(keys, frames)
    segments = []
    head = [f for f in frames if f < keys[0]]
    if head:
        segments.append(("backward", None, keys[0], head))
    for i, k in enumerate(keys):
        segments.append(("key", k, k, [k]))
        following = keys[i + 1] if i + 1 < len(keys) else None
        run = [f for f in frames if f > k and (following is None or f < following)]
        if run:
            segments.append(("forward", k, None, run) if following is None else ("between", k, following, run))
    return segments


@dataclass
class KeySegment:
    """Frames a farm task can colour alone: one key, the frames up to the next key (and, for the first
    key, the frames before it). ``keys`` are the keys it reads (the next one too, for the blend)."""

    key: int
    frames: list[int]
    keys: list[int]

    def to_json(self) -> dict:
        return {"key": self.key, "frames": format_range(self.frames), "first": self.frames[0],
                "last": self.frames[-1], "count": len(self.frames), "keys": self.keys}


def key_segments(frames: list[int], keys: list[int]) -> list[KeySegment]:
    """Group ``plan_segments`` by owning key. Each group depends only on the plate and the key images,
    never on another group's output, so groups run as independent tasks with identical results."""
    groups: list[KeySegment] = []
    head: list[int] = []
    for kind, a, b, run in plan_segments(frames, sorted(keys)):
        if kind == "backward":
            head = list(run)
        elif kind == "key":
            groups.append(KeySegment(a, head + [a], [a]))
            head = []
        else:
            groups[-1].frames.extend(run)
            if kind == "between":
                groups[-1].keys.append(b)
    return groups


def key_segment(frames: list[int], keys: list[int], key: int) -> KeySegment | None:
    """The ``key_segments`` entry of key frame ``key``, or None when ``key`` is not a key."""
    return next((s for s in key_segments(frames, keys) if s.key == key), None)


def run_shot(engine: Engine, source: FrameSource, keys: dict[int, KeyImage], options: ShotOptions,
             sink: FrameSink, progress: Callable[[ProgressEvent], None] | None = None,
             cancel: Callable[[], bool] | None = None, skip_existing: bool = False,
             segment: int | None = None, blend=None, state_dir: Path | None = None,
             direction: str | None = None) -> ShotReport:
    """Colour every frame of ``source`` from ``keys`` and hand each result to ``sink``.

    ``segment``: a key frame; only that key's KeySegment is coloured (a farm task).
    Between two keys, a forward and a backward pass are stored (passes.py) and then blended: under
    ``state_dir`` (kept until the span's frames are written; a killed run resumes from them), else in a
    temporary folder. ``direction`` ("forward" | "backward", with ``segment``): run only that pass of the
    segment's span between keys and store it, writing no output frame (a farm task; the segment's run with
    ``state_dir`` then blends what the two pass tasks stored).
    ``blend(ab_f, carried_f, ab_b, carried_b, t) -> ab``: how two runs meet between keys (``t`` = 0 at
    the earlier key, 1 at the later); default: ``blend_by_confidence`` with the method's prior power;
    eval swaps in ``confidence.blend_crossfade`` as the baseline.
    """
    engine.check_method(options.method)
    if blend is None:
        blend = functools.partial(blend_by_confidence, power=BLEND_PRIOR_POWER[options.method])
    frames = list(source.frames)
    order = sorted(keys)
    segments = plan_segments(frames, order)
    if segment is not None:
        if segment not in keys:
            raise InputError(f"--segment {segment}: not a key frame (keys: {format_frames(order)})")
        chosen = set(key_segment(frames, order, segment).frames)
        segments = [s for s in segments if s[3][0] in chosen]
    if direction is not None:
        if segment is None or state_dir is None or direction not in DIRECTIONS:
            raise InputError(f"--direction {direction}: needs --segment, --state-dir and one of "
                             f"{', '.join(DIRECTIONS)}")
        segments = [s for s in segments if s[0] == "between"]  # none after the last key: nothing to do
    run = ShotRun(engine, source, keys, options, sink, progress, cancel, skip_existing, blend, direction,
                  total=sum(len(s[3]) for s in segments))
    start = time.perf_counter()
    for kind, a, b, frames_of in segments:
        run.check_cancel()
        if kind == "key":
            run.key_frame(a)
        elif kind == "between":
            run.between_keys(a, b, frames_of, state_dir)
        else:
            run.one_way(kind, a, b, frames_of)
    run.report.seconds = time.perf_counter() - start
    return run.report


class ShotRun:
    """The state of one ``run_shot``: the shot's colour bookkeeping, the keys' colour, what was reported.
    Its three segment kinds are ``key_frame``, ``between_keys`` (two stored passes, blended) and ``one_way``
    (before the first key or after the last: one run, frame after frame)."""

    def __init__(self, engine: Engine, source: FrameSource, keys: dict[int, KeyImage], options: ShotOptions,
                 sink: FrameSink, progress: Callable[[ProgressEvent], None] | None,
                 cancel: Callable[[], bool] | None, skip_existing: bool, blend, direction_only: str | None,
                 total: int):
        self.engine, self.source, self.options, self.sink = engine, source, options, sink
        self.progress, self.cancel, self.skip_existing, self.blend = progress, cancel, skip_existing, blend
        self.direction_only, self.total, self.done = direction_only, total, 0
        self.report = ShotReport()
        self.shot = shot = ShotColour(options, source.read(next(iter(source.frames))))
        self.key_ab_full = {k: shot.key_ab(img) for k, img in keys.items()}
        if options.regrade:  # carry the change the key made to its plate frame, not the colour
            self.key_ab_full = {k: regrade_change(ab, plate_ab(source.read(k), shot))
                                for k, ab in self.key_ab_full.items()}
        self._last_prepared: tuple[int, Prepared] | None = None  # a pass and the blend of a frame share it
        self._key_work: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    # ---------------------------------------------------------------- reporting

    def emit(self, frame: int, result: FrameResult | None, seconds: float) -> None:
        if result is not None:
            self.sink.write(frame, result)
        self.count(frame, result is not None, seconds)

    def count(self, frame: int, written: bool, seconds: float) -> None:
        """A frame done (an output frame, or a pass frame with ``direction``): reported and shown."""
        self.done += 1
        (self.report.frames_written if written else self.report.frames_skipped).append(frame)
        if self.progress is not None:
            self.progress(ProgressEvent(frame, self.done, self.total, seconds, skipped=not written))

    def check_cancel(self) -> None:
        if self.cancel is not None and self.cancel():
            raise Cancelled("cancelled by request")

    # ---------------------------------------------------------------- one frame's colour

    def prepared(self, frame: int) -> Prepared:
        if self._last_prepared is None or self._last_prepared[0] != frame:
            self._last_prepared = (frame, self.shot.prepare(self.source.read(frame)))
        return self._last_prepared[1]

    def carried_state(self, frame: int, result: FrameResult | None, prep: Prepared) -> np.ndarray:
        """The written colour, rounded as the sink stores it (read back when the frame was skipped);
        with regrade, its change from the plate rounded alike (exactly 0 where the plate was kept)."""
        sink, shot = self.sink, self.shot
        rgb = sink.read_back(frame) if result is None else result.rgb.astype(sink.pixel_dtype).astype(np.float32)
        if not self.options.regrade:
            return shot.state_ab(rgb)
        return shot.state_ab(rgb) - shot.state_ab(prep.frame.rgb().astype(sink.pixel_dtype).astype(np.float32))

    def finish(self, prep: Prepared, ab_full: np.ndarray, conf_full: np.ndarray) -> FrameResult:
        if not self.options.regrade:
            return self.shot.finish(prep, ab_full, conf_full)
        result = self.shot.finish(prep, plate_ab(prep.frame, self.shot) + ab_full, conf_full)
        unchanged = np.all(ab_full == 0, axis=-1)[..., None]
        result.rgb = np.where(unchanged, prep.frame.rgb(), result.rgb).astype(np.float32)
        return result

    def new_propagator(self, key: int, other: int | None = None) -> Propagator:
        """A run from ``key``; with ``other`` (the key at the far end of a between-keys segment) the global
        branch matches against both keys (+0.06 to +0.11 dB at every N on the dev clips, docs/KEYS.md)."""
        others = [self.key_work(other)] if other is not None else []
        return Propagator(self.options.method, *self.key_work(key), self.engine.models,
                          change_only=self.options.regrade, other_keys=others)

    def key_work(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """A key's luminance and colour at working resolution, read once per shot (a key starts one run and
        is the far key of another)."""
        if k not in self._key_work:
            self._key_work[k] = self.prepared(k).L_work, self.shot.to_work(self.key_ab_full[k])
        return self._key_work[k]

    # ---------------------------------------------------------------- the three kinds of segment

    def key_frame(self, a: int) -> None:
        t0 = time.perf_counter()
        result = None
        if not (self.skip_existing and self.sink.exists(a)):
            prep = self.prepared(a)
            result = self.finish(prep, self.key_ab_full[a], np.ones(prep.L_full.shape, np.float32))
        self.emit(a, result, time.perf_counter() - t0)

    def one_way(self, kind: str, a: int | None, b: int | None, run: list[int]) -> None:
        """Before the first key (``kind`` "backward", from ``b``) or after the last (forward from ``a``)."""
        shot = self.shot
        propagator = self.new_propagator(b, None) if kind == "backward" else self.new_propagator(a, b)
        prev_full = self.key_ab_full[b if kind == "backward" else a]  # the last written colour, full resolution
        for frame in (reversed(run) if kind == "backward" else run):
            self.check_cancel()
            t0 = time.perf_counter()
            prep = shot.prepare(self.source.read(frame))
            if self.skip_existing and self.sink.exists(frame):
                # Already written (resume): its colour is read back, its carried confidence recomputed
                # by flow alone (exactly what the uninterrupted run carried), no networks.
                prev_full = self.carried_state(frame, None, prep)
                pending = propagator.carried_only(prep.L_work)
                self.emit(frame, None, 0.0)
                propagator.accept(pending, shot.to_work(prev_full))
                continue
            pending = propagator.step(prep.L_work)
            ab, confidence, _ = pending.colour
            result = self.finish(prep, *shot.to_full(ab, confidence, prep.L_full, prev_full, pending.flow))
            self.emit(frame, result, time.perf_counter() - t0)
            prev_full = self.carried_state(frame, result, prep)
            propagator.accept(pending, shot.to_work(prev_full))

    def between_keys(self, a: int, b: int, run: list[int], state_dir: Path | None) -> None:
        """The span between keys ``a`` and ``b``: its passes stored under ``state_dir`` (else a temporary
        folder of this run's own), then blended; with ``direction_only`` just that pass (a farm task). Tasks
        sharing ``state_dir`` take turns on the span (passes.py): what is already written is looked at once
        the turn is ours, so a second blend of a span another one just finished finds it written (or, without
        ``skip_existing``, makes it again), never a pass file half gone."""
        with contextlib.ExitStack() as stack:
            root = state_dir or stack.enter_context(temporary_root())
            store = PassStore(root, a, b, self.pass_stamp(a, b, run), self.shot.work_size,
                              flow=self.options.method != "global")
            if self.direction_only is not None:
                if self.skip_existing and all(self.sink.exists(f) for f in run):
                    return  # every frame is written: no pass is needed (nor its lock file)
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
        weights = self.engine.describe()["weights"]
        return fingerprint(self.options.to_dict(), weights and weights["version"], a, b, run,
                           self.shot.to_work(self.key_ab_full[a]), self.shot.to_work(self.key_ab_full[b]))

    @staticmethod
    def stored(store: PassStore, direction: str, frame: int) -> PassFrame:
        state = store.read(direction, frame)
        if state is None:  # sound when this task checked it, under its lock: changed by hand since; never guess
            raise ColorpropError(f"frame {frame}: the {direction} pass file {store.path(direction, frame)} was "
                                 "changed or removed while this task used it (by something other than colorprop); "
                                 "run the task again")
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
                L = self.prepared(frame).L_work
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
            if frame in written:
                if store is not None:  # a later frame is made from its colour
                    prev_full = self.carried_state(frame, None, prep)
                self.emit(frame, None, 0.0)
                continue
            k = self.stored(store, "backward", frame)
            ab = self.blend(f.ab, f.carried, k.ab, k.carried, (frame - a) / (b - a))
            confidence = meet_confidence(ab, f.ab, f.confidence, k.ab, k.confidence)
            result = self.finish(prep, *self.shot.to_full(ab, confidence, prep.L_full, prev_full, f.flow))
            self.emit(frame, result, time.perf_counter() - t0)
            prev_full = self.carried_state(frame, result, prep)


# ---------------------------------------------------------------- the CLI's job on EXR sequences


def plate_ab(frame: PlateFrame, shot: ShotColour) -> np.ndarray:
    """HxWx2 Lab ab of a colour plate frame (regrade); a gray plate has no colour to regrade."""
    if not all(c in frame.channels for c in RGB):
        raise InputError(f"{frame.name}: --regrade needs a colour plate (R, G, B), this one has "
                         f"{', '.join(frame.channels)}")
    return lab_ab(frame.rgb(), shot.space)


REGRADE_UNCHANGED = 0.01  # Lab ab units: a smaller change is colour-conversion noise, not a grade


def regrade_change(key_ab: np.ndarray, plate_ab_: np.ndarray) -> np.ndarray:
    """HxWx2 delta the key made to its plate frame; exactly 0 where it made none (so the plate is kept)."""
    delta = (key_ab - plate_ab_).astype(np.float32)
    delta[np.hypot(delta[..., 0], delta[..., 1]) < REGRADE_UNCHANGED] = 0.0
    return delta


def colorize_sequence(engine: Engine, input_pattern: str, keys: dict[int, str], output_pattern: str,
                      frames: list[int], options: ShotOptions, progress=None, cancel=None,
                      skip_existing: bool = False, pixel_type: str = "half",
                      segment: int | None = None, key_colorspace: str | None = None,
                      state_dir: Path | None = None, direction: str | None = None) -> ShotReport:
    """The embedded job: the pre-flight (preflight.py) checks everything before the first frame is
    written; then the shot runs with reading ahead and writing behind. ``state_dir``, ``direction``: the
    passes between keys as files (``run_shot``; docs/FARM.md)."""
    engine.check_method(options.method)
    checked = check_sequence_job(input_pattern, keys, output_pattern, frames, options, key_colorspace=key_colorspace)
    with overlapped_io(checked.source(), checked.sink(pixel_type)) as (source, sink):  # I/O overlaps the compute
        report = run_shot(engine, source, checked.keys, options, sink, progress, cancel, skip_existing, segment,
                          state_dir=state_dir, direction=direction)
    report.notes = checked.notes
    return report


def format_range(frames: list[int]) -> str:
    """Ascending frames as a spec ``parse_frames`` reads back: ``[1, 2, 3, 7]`` -> ``"1-3,7"``."""
    chunks: list[str] = []
    start = prev = frames[0]
    for f in frames[1:] + [None]:
        if f is not None and f == prev + 1:
            prev = f
            continue
        chunks.append(str(start) if start == prev else f"{start}-{prev}")
        if f is not None:
            start = prev = f
    return ",".join(chunks)
