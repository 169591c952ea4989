"""Re-runs through a shot cache (cache.py): after a key edit only what the edit changes is computed again, and
the result is bit for bit that of a fresh run with the new keys.

Stamps (fingerprints, passes.fingerprint) say what a result was made from:

    a segment's    its kind, keys and frames, both keys' colour at full resolution, the blend, what the sink
                   stores (the colour carried on is rounded alike), the options, the weights, and (``plates``)
                   every plate's identity and the engine (version, source hash, weights manifest, device, precision)
    a frame's      its segment's stamp, and each layer that reaches it (its pass stamp and direction; at the
                   partial key's own frame, its painted colour and matte at full resolution)

A segment whose stamp has every frame's base result in the cache is not run: each frame is laid over (layers)
and written from there (``replay``), the frame looked at first. A frame whose stamp is the one the sink already
holds (``sink.held(frame)``) is not written again (``ShotReport.frames_unchanged``). So adding, moving, removing
or repainting a full key runs again only the segments bounded by it; a partial key's edit carries only its
layer's passes (stored under the cache, layers.py) and lays them over the frames they reach."""

from __future__ import annotations

import functools
import time
from pathlib import Path

import cv2
import numpy as np

from colorprop.shot.cache import (
    SPANS,
    FlowEntries,
    NetworkEntries,
    ShotCache,
    array_digest,
    code_digest,
    file_digest,
    plate_identity,
)
from colorprop.shot.passes import fingerprint
from colorprop.shot.working import Prepared


def describe_callable(f) -> object:
    """A JSON-able name of a function (a ``functools.partial`` with its arguments): the same in every process."""
    if isinstance(f, functools.partial):
        return [describe_callable(f.func), list(f.args), sorted(f.keywords.items())]
    return f"{getattr(f, '__module__', '')}.{getattr(f, '__qualname__', repr(f))}"


class Rerun:
    """A ``ShotRun``'s use of its cache (module docstring). ``flows`` and ``features``: the Propagators' stores."""

    def __init__(self, run, cache: ShotCache):
        self.run, self.cache = run, cache
        frames = list(run.source.frames)
        identities = [plate_identity(run.source, f) for f in frames]
        self.identities = dict(zip(frames, identities))
        about = run.engine.describe()
        weights = about["weights"]
        engine = {
            "version": about["version"],
            "code": code_digest(),
            "weights": weights and weights["version"],
            "manifest": weights and file_digest(Path(weights["folder"]) / "manifest.json"),
            "device": about["device"],
            "precision": about["precision"],
        }
        cache.open(fingerprint(frames, identities), {"engine": engine, "options": run.options.to_dict()})
        run.plates = fingerprint(identities, engine)
        self.flows = FlowEntries(cache, fingerprint("flow", cv2.__version__))
        self.features = NetworkEntries(cache, fingerprint("features", engine))
        self.segment_stamp = ""
        self._colour: dict[int, str] = {}

    def key_colour(self, k: int | None) -> str | None:
        if k is None:
            return None
        if k not in self._colour:
            self._colour[k] = array_digest(self.run.key_ab_full[k])
        return self._colour[k]

    def segment(self, kind: str, a: int | None, b: int | None, frames: list[int]) -> None:
        """The segment about to be coloured: its stamp, for the frames' stamps and the base results kept."""
        run = self.run
        self.segment_stamp = run.stamp(
            "base",
            kind,
            a,
            b,
            frames,
            self.key_colour(a),
            self.key_colour(b),
            describe_callable(run.blend),
            np.dtype(run.sink.pixel_dtype).str,
        )

    def frame_stamp(self, frame: int) -> str:
        layers = self.run.layers
        layers.carry_to(frame)  # (what reaches the frame is known once its passes got there)
        parts = []
        for layer in layers.layers:
            if layer.frame == frame:
                parts.append((frame, array_digest(layer.ab_full), array_digest(layer.matte_full)))
            elif frame in layer.reach:
                parts.append((layer.frame, layers.stores[layer.frame].stamp, layer.reach[frame]))
        return fingerprint(self.segment_stamp, frame, parts)

    def _L_key(self, frame: int) -> str:
        shot = self.run.shot
        return fingerprint("L", self.identities[frame], shot.space, shot.work_size)

    def working_L(self, frame: int) -> np.ndarray:
        """The frame's luminance at the working size (``Prepared.L_work``), kept by its plate's identity."""
        stored = self.cache.get("L", self._L_key(frame))
        return stored["L"] if stored is not None else self.run.prepared(frame).L_work  # (which keeps it)

    def prepared(self, frame: int) -> Prepared | None:
        """The frame prepared with its luminance (full and working size) from the cache: the plate is read, its
        L not made again; None unless both are kept. The plate was checked when they were kept (its identity)."""
        key = self._L_key(frame)
        full = self.cache.get("L_full", key) if self.cache.has("L", key) else None
        work = self.cache.get("L", key) if full is not None else None
        if work is None:
            return None
        return Prepared(full["L"], work["L"], self.run.shot.space, self.run.source.read(frame))

    def keep_L(self, frame: int, prep: Prepared) -> None:
        key = self._L_key(frame)
        for kind, L in (("L", prep.L_work), ("L_full", prep.L_full)):
            if not self.cache.has(kind, key):
                self.cache.put(kind, key, L=L)

    def held(self, frame: int) -> str | None:
        held = getattr(self.run.sink, "held", None)
        return None if held is None else held(frame)

    def _base_key(self, frame: int) -> str:
        return fingerprint(self.segment_stamp, frame)

    def keep(self, frame: int, ab_full: np.ndarray, conf_full: np.ndarray) -> None:
        """The base result of ``frame`` (what ``ShotRun.output`` received), kept for a re-run."""
        self.cache.put("base", self._base_key(frame), ab=ab_full, confidence=conf_full)

    def kept(self, frames: list[int]) -> int:
        """How many of ``frames`` (a run's, in its order) have their base result kept, from the first on."""
        return next((i for i, f in enumerate(frames) if not self.cache.has("base", self._base_key(f))), len(frames))

    def base(self, frame: int) -> tuple[np.ndarray, np.ndarray] | None:
        """The base result kept for ``frame`` (ab, confidence at full resolution), or None."""
        entry = self.cache.get("base", self._base_key(frame))
        return None if entry is None else (entry["ab"], entry["confidence"])

    def spans_root(self) -> Path | None:
        """Where the passes between keys are kept while their span runs (a run cut short resumes them)."""
        return self.cache.folder / SPANS if self.cache.folder is not None and self.cache.writable else None

    def replay(self, frames: list[int], view: int | None) -> bool:
        """The segment's frames from the base results kept (module docstring), nearest ``view`` first; False
        (nothing done) unless every frame's is there. A result that turns out unreadable midway leaves the rest
        to a run of the segment (the frames already written are not written again: their stamps are held)."""
        run = self.run
        if not all(self.cache.has("base", self._base_key(f)) for f in frames):
            return False
        order = frames if view is None else sorted(frames, key=lambda f: (abs(f - view), f))
        for i, frame in enumerate(order):
            run.check_cancel()
            t0 = time.perf_counter()
            if self.frame_stamp(frame) == self.held(frame):
                run.report.frames_unchanged.append(frame)
                run.emit(frame, None, 0.0)
                continue
            if run.skip_existing and run.sink.exists(frame):  # kept as it is, as a run of the segment keeps it
                run.emit(frame, None, 0.0)
                continue
            base = self.base(frame)
            if base is None:
                run.total += i  # the run of the segment counts these frames again
                return False
            run.deliver(frame, run.prepared(frame), *base, t0)
        return True
