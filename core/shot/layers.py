"""Partial keys: each one a LAYER laid over what the full keys give (docs/KEYS.md, "Partial keys").

A partial key (``KeyImage.matte``) paints one region of one frame. Its layer is (colour, matte) at the working
size, carried both ways from its frame by a Propagator of its own keyed on the painted colour (with regrade: the
change it makes to its plate frame), frame by frame:

    matte_t = floor(shape_t · opacity(carried_t))   shape_t = the key's matte warped along the same backward flows
                                                    as the colour; carried_t = that run's carried confidence (1 at
                                                    the key); opacity = √(smooth(c) · c), its local mean
                                                    (Gaussian, ``LAYER_SMOOTH_SIGMA``) held down where the pixel's
                                                    own tracking is lost

``floor`` sets it to exactly 0 below ``LAYER_FLOOR``. A pass stops at the first frame whose matte is 0
everywhere, and before the first full key it meets (a full key states its whole frame; the nearer key in time
wins): no frame beyond gets the layer. ``full`` and ``global`` carry a layer by the flow chain (``flow``):
their global branch would match the frame against the key's unpainted pixels too, whose colour is not the
layer's. The passes are stored like the passes between keys (passes.py, a ``PassStore`` named
``layer.<frame>`` with a ``matte`` channel; stamped, resumed from what is stored) because a backward one is
needed before the base run reaches its frames.

At a frame, the layers touching it are laid over the base's colour and written confidence at full resolution,
farthest key in time first (ties: the earlier key first), ``x = x·(1−m) + x_layer·m`` only where m > 0: a
pixel no layer reaches stays bitwise the base's. The base carries its own colour on, never this composite."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np

from colorprop.engine.flow import warp_backward
from colorprop.engine.propagate import Propagator, resize_hw
from colorprop.shot.frames import KeyImage
from colorprop.shot.passes import PassFrame, PassStore

LAYER_FLOOR = 1.0 / 255.0  # a carried matte below this is exactly 0: the layer has left the pixel
# The carried confidence is a product of per-pixel cues and turns blotchy a few frames from the key; a layer fades
# by the geometric mean of its local mean (Gaussian sigma, working pixels) and the pixel's own value. The local mean
# alone gained most on the validation ranges but lost 0.62 dB on a dev range (bbb@5374: it kept the layer on pixels
# whose tracking was lost, next to tracked ones); the geometric mean loses on no range of either split
# (`colorprop eval --split validation|dev --methods flow --partial`; the table in docs/KEYS.md).
LAYER_SMOOTH_SIGMA = 5.0
LAYER_FOLDER = "layer.{frame}"  # a partial key's passes under the run's pass folder (PassStore.name)


def layer_method(method: str) -> str:
    """The method that carries a layer: the shot's, but for the two that match against the whole key image."""
    return method if method in ("flow", "local") else "flow"


def opacity(carried: np.ndarray) -> np.ndarray:
    """HxW carried confidence -> a layer's opacity: √(local mean · own value) (comment at ``LAYER_SMOOTH_SIGMA``)."""
    carried = np.asarray(carried, np.float32)
    local = cv2.GaussianBlur(carried, (0, 0), LAYER_SMOOTH_SIGMA)
    return np.sqrt(np.maximum(local * carried, 0.0))


def floor_matte(matte: np.ndarray) -> np.ndarray:
    """HxW float32 matte with every value below ``LAYER_FLOOR`` (and every NaN) exactly 0."""
    matte = np.asarray(matte, np.float32)
    return np.where(matte >= LAYER_FLOOR, matte, np.float32(0.0))


def working_colour(
    ab_full: np.ndarray, matte_full: np.ndarray, to_work: Callable[[np.ndarray], np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """A painted colour (HxWx2) and its matte (HxW) at the working size. The colour is averaged over painted
    pixels only (weighted by the matte), and where nothing is painted it is the paint's mean colour: the key
    image's colour there (black, in a paint export) never bleeds in where warping and upsampling mix neighbours."""
    matte = to_work(matte_full)
    painted = to_work(ab_full * matte_full[..., None])
    inside = (matte > 0)[..., None]
    mean = (ab_full * matte_full[..., None]).sum(axis=(0, 1)) / max(float(matte_full.sum()), 1e-12)
    ab = np.where(inside, painted / np.maximum(matte, 1e-12)[..., None], mean)
    return ab.astype(np.float32), np.clip(matte, 0.0, 1.0).astype(np.float32)


def lay_over(
    ab: np.ndarray, confidence: np.ndarray, layer_ab: np.ndarray, layer_confidence: np.ndarray, matte: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``ab`` (HxWx2) and ``confidence`` (HxW) with a layer laid over them by ``matte`` (HxW in [0, 1]); where the
    matte is 0 the values are the very ones given (no arithmetic touches them). The arithmetic runs over the box
    around the touched pixels only, pixel by pixel as over the whole frame."""
    ab, confidence = ab.astype(np.float32), np.asarray(confidence).astype(np.float32)
    rows, cols = np.flatnonzero((matte > 0).any(axis=1)), np.flatnonzero((matte > 0).any(axis=0))
    if rows.size == 0:
        return ab, confidence
    box = slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)
    m = matte[box]
    touched = m > 0
    layer_ab = np.broadcast_to(layer_ab, ab.shape)[box]
    layer_confidence = np.broadcast_to(layer_confidence, confidence.shape)[box]
    mixed = ab[box] * (1.0 - m[..., None]) + layer_ab * m[..., None]
    ab[box] = np.where(touched[..., None], mixed, ab[box])
    mixed = confidence[box] * (1.0 - m) + layer_confidence * m
    confidence[box] = np.where(touched, mixed, confidence[box])
    return ab, confidence


@dataclass
class PlannedPass:
    """One pass of a layer (``ShotLayers.carry``): ``steps`` once started, frame by frame (``carry_to``)."""

    layer: "Layer"
    store: PassStore
    direction: str
    order: list[int]
    steps: Iterator[int] | None = None
    carried: int = 0  # how many of ``order`` it has carried (each one it reached, in order)


@dataclass
class Layer:
    """One partial key: its frame, its colour and matte at full resolution (as painted) and at the working size,
    and ``reach``: each frame its passes reach (matte > 0 somewhere) with the direction that reaches it."""

    frame: int
    ab_full: np.ndarray
    matte_full: np.ndarray
    ab_work: np.ndarray
    matte_work: np.ndarray
    span: tuple[int | None, int | None]  # the nearest full keys before and after it (None: none); never reached
    reach: dict[int, str] = field(default_factory=dict)
    unknown: set[int] = field(default_factory=set)  # written frames no pass went to (resume): maybe reached

    def ways(self, frames: list[int]) -> tuple[tuple[str, list[int]], tuple[str, list[int]]]:
        """Its two passes over the shot's ``frames``, each from the key outward as far as the full key beyond."""
        before, after = self.span
        backward = [f for f in frames if f < self.frame and (before is None or f > before)][::-1]
        forward = [f for f in frames if f > self.frame and (after is None or f < after)]
        return ("backward", backward), ("forward", forward)


class ShotLayers:
    """The layers of one ``run_shot``: carried (``carry``), then laid over the base frame by frame (``over``).
    ``run``: the ``ShotRun`` (run.py) that owns them: its shot, options, engine, keys' colour, frames and stamps."""

    def __init__(self, run, keys: dict[int, KeyImage]):
        self.run = run
        shot = run.shot
        full = sorted(k for k, key in keys.items() if not key.is_partial)
        self.layers = []
        for k in sorted(k for k, key in keys.items() if key.is_partial):
            matte_full = floor_matte(np.clip(keys[k].matte, 0.0, 1.0))
            ab_work, matte_work = working_colour(run.key_ab_full[k], matte_full, shot.to_work)
            span = max((f for f in full if f < k), default=None), min((f for f in full if f > k), default=None)
            self.layers.append(Layer(k, run.key_ab_full[k], matte_full, ab_work, matte_work, span))
        self.stores: dict[int, PassStore] = {}
        self.pending: list[PlannedPass] = []  # passes planned (``carry``), not carried to their end

    def touches(self, frame: int) -> bool:
        """Whether a layer reaches ``frame``, or may have (a written frame no pass went to: its base colour is
        made again rather than read back, which gives the same colour where no layer was laid over it)."""
        self.carry_to(frame)
        return any(layer.frame == frame or frame in layer.reach or frame in layer.unknown for layer in self.layers)

    def carry(self, root: Path, frames: list[int], needed: list[int]) -> None:
        """Plan every layer's passes over the shot's ``frames`` as far as the ``needed`` frames go (all of them in
        an embedded run, a farm task's own frames) that are still to be written (with ``skip_existing``: a pass
        whose frames are all written is not carried), stored under ``root``; ``carry_into`` carries them all, or
        ``carry_to`` each as far as a frame (computed, or read where stored). Each frame a pass may reach
        is one more step of the run's progress (``ShotRun.tick``), shown as it goes; the frames a pass stops short
        of leave the total."""
        run = self.run
        wanted = {f for f in needed if not (run.skip_existing and run.sink.exists(f))}
        self.pending = []
        for layer in self.layers:
            stamp = run.stamp("layer", layer.frame, frames, layer.ab_work, layer.matte_work)
            store = PassStore(
                root,
                layer.frame,
                layer.frame,
                stamp,
                run.shot.work_size,
                False,
                LAYER_FOLDER.format(frame=layer.frame),
                True,
            )
            self.stores[layer.frame] = store
            for direction, way in layer.ways(frames):
                order = way[: max((i + 1 for i, f in enumerate(way) if f in wanted), default=0)]  # to the last needed
                layer.unknown.update(set(way[len(order) :]) & set(needed))
                if order:
                    self.pending.append(PlannedPass(layer, store, direction, order))
        run.total += sum(len(planned.order) for planned in self.pending)

    def carry_into(self) -> None:
        """Carry every planned pass to its end, in the order planned (a run without a viewed frame: all first)."""
        for planned in list(self.pending):
            for _ in self._steps(planned):
                pass
            self.pending.remove(planned)

    def carry_to(self, frame: int) -> None:
        """Carry the planned passes that may reach ``frame`` as far as it, no further (a run with a viewed frame:
        each frame's layers just before it is laid over, so the viewed frame waits for its own passes only)."""
        for planned in list(self.pending):
            if frame in planned.order[planned.carried :]:
                for carried in self._steps(planned):
                    planned.carried += 1
                    if carried == frame:
                        break
                else:
                    self.pending.remove(planned)

    def close(self) -> None:
        """Let go of the passes left part way (their locks), however the run ends."""
        for planned in self.pending:
            if planned.steps is not None:
                planned.steps.close()

    def _steps(self, planned: PlannedPass) -> Iterator[int]:
        if planned.steps is None:
            planned.steps = self._locked(planned)
        return planned.steps

    def _locked(self, planned: PlannedPass) -> Iterator[int]:
        with planned.store.locked([planned.direction]):
            yield from self._carry(planned.layer, planned.store, planned.direction, planned.order)

    def _carry(self, layer: Layer, store: PassStore, direction: str, order: list[int]) -> Iterator[int]:
        """One pass of ``layer`` along ``order`` (from its key outward), stopped where its matte is 0 everywhere;
        each frame it reaches is yielded once carried.
        Frames stored soundly from the start are replayed by flow alone (``Propagator.carried_only``) with the
        stored colour, as ``ShotRun.pass_frames`` does, so a resumed pass goes on as an uninterrupted one."""
        run = self.run
        stored, ended = 0, False
        for frame in order:
            state = store.read(direction, frame)
            if state is None:
                break
            stored += 1
            ended = not state.matte.any()
            if ended:  # the pass stopped here: nothing more to compute
                break
        propagator, shape = None, layer.matte_work
        if stored < len(order) and not ended:
            key_L = run.working_L(layer.frame)
            method = layer_method(run.options.method)
            propagator = Propagator(
                method, key_L, layer.ab_work, run.engine.models, change_only=run.options.regrade, **run.stores()
            )
        for i, frame in enumerate(order):
            run.check_cancel()
            t0 = time.perf_counter()
            if propagator is None or i < stored:
                state = run.stored(store, direction, frame)
                if propagator is not None:  # replayed: the flow, the carried confidence and the shape move on
                    pending = propagator.carried_only(run.working_L(frame))
                    shape = warp_backward(shape, pending.flow)
                    propagator.accept(pending, state.ab, state.carried)
            else:
                pending = propagator.step(run.working_L(frame))
                shape = warp_backward(shape, pending.flow)
                ab, confidence, carried = pending.colour
                state = PassFrame(ab, confidence, carried, None, floor_matte(shape * opacity(carried)))
                store.write(direction, frame, state)
                propagator.accept(pending, state.ab, state.carried)
            run.tick(frame, time.perf_counter() - t0, skipped=propagator is None or i < stored)
            if not state.matte.any():
                run.total -= len(order) - 1 - i
                return
            layer.reach[frame] = direction
            yield frame

    def over(
        self, frame: int, L_full: np.ndarray, ab: np.ndarray, confidence: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The base's colour (HxWx2) and written confidence (HxW) at ``frame`` with the layers touching it laid
        over, farthest key first; a layer's working-size colour goes to full resolution under the plate's L
        (``ShotColour.to_full``), its matte by resizing (floored again)."""
        shot = self.run.shot
        self.carry_to(frame)
        touching = [layer for layer in self.layers if layer.frame == frame or frame in layer.reach]
        for layer in sorted(touching, key=lambda layer: (-abs(frame - layer.frame), layer.frame)):
            if layer.frame == frame:
                layer_ab, layer_confidence, matte = layer.ab_full, np.float32(1.0), layer.matte_full
            else:
                state = self.run.stored(self.stores[layer.frame], layer.reach[frame], frame)
                layer_ab, layer_confidence = shot.to_full(state.ab, state.confidence, L_full)
                matte = floor_matte(np.clip(resize_hw(state.matte, *shot.full_size), 0.0, 1.0))
            ab, confidence = lay_over(ab, confidence, layer_ab, layer_confidence, matte)
        return ab, confidence
