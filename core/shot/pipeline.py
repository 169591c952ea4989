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

Partial keys (a key with a matte) are layers laid over what the full keys give (layers.py): the plan above is
the full keys'; a pixel no layer reaches is written as if there were no partial key.

With a shot cache (cache.py, rerun.py) what no key changes is computed once per shot, and a re-run after a key
edit runs only the segments and layer passes the edit changes and writes only the frames whose result changes.
"""

from __future__ import annotations

import contextlib
import functools
import time
from pathlib import Path
from typing import Callable

from colorprop.engine.confidence import BLEND_PRIOR_POWER, blend_by_confidence
from colorprop.engine.engine import Engine, ShotOptions
from colorprop.shot.frames import (
    FrameSink,
    FrameSource,
    KeyImage,
    ProgressEvent,
    ShotReport,
)
from colorprop.shot.overlap import overlapped_io
from colorprop.shot.cache import ShotCache
from colorprop.shot.passes import temporary_root
from colorprop.shot.preflight import check_full_key_or_regrade, check_keys_among_frames, check_sequence_job
from colorprop.shot.run import ShotJob, ShotRun
from colorprop.shot.segments import Segment, check_segment_request, key_segment, plan_segments


def run_shot(
    engine: Engine,
    source: FrameSource,
    keys: dict[int, KeyImage],
    options: ShotOptions,
    sink: FrameSink,
    *,
    progress: Callable[[ProgressEvent], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    skip_existing: bool = False,
    segment: int | None = None,
    blend=None,
    state_dir: Path | None = None,
    direction: str | None = None,
    cache: ShotCache | None = None,
    view: int | None = None,
) -> ShotReport:
    """Colour every frame of ``source`` from ``keys`` and hand each result to ``sink`` (held as a ``ShotJob``).

    ``segment``: a key frame; only that key's KeySegment is coloured (a farm task).
    Between two keys, a forward and a backward pass are stored (passes.py) and then blended: under
    ``state_dir`` (kept until the span's frames are written; a killed run resumes from them), else in a
    temporary folder. ``direction`` ("forward" | "backward", with ``segment``): run only that pass of the
    segment's span between keys and store it, writing no output frame (a farm task; the segment's run with
    ``state_dir`` then blends what the two pass tasks stored).
    ``blend(ab_f, carried_f, ab_b, carried_b, t) -> ab``: how two runs meet between keys (``t`` = 0 at
    the earlier key, 1 at the later); default: ``blend_by_confidence`` with the method's prior power;
    eval swaps in ``confidence.blend_crossfade`` as the baseline.
    Partial keys (``KeyImage.matte``) are layers over what the full keys give (layers.py): the segments are the
    full keys'; each layer's passes are stored under ``state_dir`` (else a temporary folder) as far as the
    frames this run colours need them, and laid over those frames. With ``regrade`` and no full key, what they
    are laid over is the plate's own colour.
    ``cache``: a ``ShotCache`` (cache.py): what no key changes is kept there and taken again, and a re-run after a
    key edit computes only what the edit changes (rerun.py); each result carries a stamp, and a frame whose stamp
    the sink already holds is not written again (``ShotReport.frames_unchanged``); the pixels are bit for bit
    those without it. ``view``: a frame; the segment and the layers' passes that reach it go first.
    """
    engine.check_method(options.method)
    job = ShotJob(source, keys, options, sink, skip_existing, segment, state_dir, direction, blend, cache, view)
    if blend is None:
        blend = functools.partial(blend_by_confidence, power=BLEND_PRIOR_POWER[options.method])
    frames = list(source.frames)
    order = sorted(k for k, key in keys.items() if not key.is_partial)  # partial keys are no segment boundaries
    check_keys_among_frames(sorted(keys), frames)
    check_full_key_or_regrade(keys, options.regrade)
    segments = plan_segments(frames, order) if order else [Segment("plate", None, None, frames)]
    check_segment_request(segment, direction, state_dir, order)
    if segment is not None:
        chosen = set(key_segment(frames, order, segment).frames)
        segments = [s for s in segments if s.frames[0] in chosen]
    if direction is not None:
        segments = [s for s in segments if s.kind == "between"]  # none after the last key: nothing to do
    run = ShotRun(engine, job, blend, sum(len(s.frames) for s in segments), progress, cancel)
    start = time.perf_counter()
    with contextlib.ExitStack() as stack:
        stack.callback(run.close)
        if cache is not None:
            stack.callback(cache.flush)  # every entry on disk when the run ends, however it ends
        if run.layers.layers and direction is None and segments:  # a pass task writes no frame: no layer
            kept = cache.layers_root() if cache is not None else None
            root = state_dir or kept or stack.enter_context(temporary_root())
            run.layers.carry(root, frames, [f for s in segments for f in s.frames])
            if cache is not None:
                cache.in_use.update(store.folder for store in run.layers.stores.values())
            stack.callback(run.layers.close)
            if view is None:  # the layers' passes first; with a view each frame's just before it (layers.py)
                run.layers.carry_into()
        for kind, a, b, frames_of in view_first(segments, view):
            run.check_cancel()
            if run.rerun is not None and direction is None:
                run.rerun.segment(kind, a, b, frames_of)
                if run.rerun.replay(frames_of, view):
                    continue
            if kind == "key":
                run.key_frame(a)
            elif kind == "between":
                run.between_keys(a, b, frames_of, state_dir)
            elif kind == "plate":
                run.plate_only(frames_of)
            else:
                run.one_way(kind, a, b, frames_of)
    run.report.seconds = time.perf_counter() - start
    if cache is not None:
        run.report.notes.extend(cache.notes)
    return run.report


def view_first(segments: list[Segment], view: int | None) -> list[Segment]:
    """``segments`` with the one holding frame ``view`` first (the rest in order)."""
    first = [s for s in segments if view is not None and view in s.frames]
    return first + [s for s in segments if s not in first]


def colorize_sequence(
    engine: Engine,
    input_pattern: str,
    keys: dict[int, str],
    output_pattern: str,
    frames: list[int],
    options: ShotOptions,
    *,
    progress: Callable[[ProgressEvent], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    skip_existing: bool = False,
    pixel_type: str = "half",
    segment: int | None = None,
    key_colorspace: str | None = None,
    state_dir: Path | None = None,
    direction: str | None = None,
    key_mattes: dict[int, str] | None = None,
    cache: ShotCache | None = None,
    view: int | None = None,
) -> ShotReport:
    """The embedded job: the pre-flight (preflight.py) checks everything before the first frame is
    written; then the shot runs with reading ahead and writing behind. What is read, from where to where,
    comes by position; how the run goes, by name (the same names as ``run_shot``'s): ``pixel_type`` and
    ``key_colorspace`` for the files, ``state_dir`` and ``direction`` for the passes between keys as files
    (docs/FARM.md), ``key_mattes`` {frame: path} for a key's separate matte (--key-matte: a partial key),
    ``cache`` and ``view`` as ``run_shot``'s (--cache)."""
    engine.check_method(options.method)
    checked = check_sequence_job(
        input_pattern, keys, output_pattern, frames, options, key_colorspace=key_colorspace, key_mattes=key_mattes
    )
    with overlapped_io(checked.source(), checked.sink(pixel_type)) as (source, sink):  # I/O overlaps the compute
        report = run_shot(
            engine,
            source,
            checked.keys,
            options,
            sink,
            progress=progress,
            cancel=cancel,
            skip_existing=skip_existing,
            segment=segment,
            state_dir=state_dir,
            direction=direction,
            cache=cache,
            view=view,
        )
    report.notes = checked.notes + report.notes
    return report
