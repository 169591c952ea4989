"""The two passes of a span between keys, kept as files: what a farm splits into a forward task, a backward
task and a blend task, and what the embedded run spills to a temporary folder (pipeline.run_shot).

A pass is one run of the engine from a key across the span (forward from the earlier key, backward from the
later one); it never reads the other pass, so the two run in parallel. Per frame it stores, at the working
size, float32 (so a run that reads them back carries exactly what it computed):

    ab.a, ab.b    the run's colour (Lab ab)
    confidence    its written matte (confidence.written_confidence or F_f's)
    carried       its carried confidence (the blend weight)
    flow.x/.y     the backward flow of the step, this frame -> the previous one of the run (absent for
                  ``global``): the blend warps the full-resolution colour along the forward pass's flow

One uncompressed EXR per frame and pass, ``<folder>/<a>-<b>/<direction>.<frame>.exr``, written to a temp name
and renamed (io/exr.write_exr); zip made them no smaller and four times slower to write and read. Each file is stamped with a fingerprint of what made it (options, weights, the span, both
keys' colour): a file left by another job is ignored and computed again, never blended.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from colorprop.errors import ColorpropError
from colorprop.io.exr import read_exr, read_exr_header, write_exr

DIRECTIONS = ("backward", "forward")  # the order the embedded run computes them in
FINGERPRINT = "colorprop:pass"  # EXR header attribute
CHANNELS = ("ab.a", "ab.b", "confidence", "carried")
FLOW_CHANNELS = ("flow.x", "flow.y")


class PassFrame(NamedTuple):
    """One frame of a pass at the working size (module docstring)."""

    ab: np.ndarray  # hxwx2
    confidence: np.ndarray  # hxw
    carried: np.ndarray  # hxw
    flow: np.ndarray | None  # hxwx2, None for global


def fingerprint(*parts) -> str:
    """A short hash of JSON-able ``parts`` and numpy arrays (the keys' colour)."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            digest.update(np.ascontiguousarray(part, np.float32).tobytes())
        else:
            digest.update(json.dumps(part, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:32]


@dataclass
class PassStore:
    """The pass files of one span ``a``-``b`` under ``root``; ``stamp``: the fingerprint (module docstring)."""

    root: Path
    a: int
    b: int
    stamp: str

    @property
    def folder(self) -> Path:
        return Path(self.root) / f"{self.a}-{self.b}"

    def path(self, direction: str, frame: int) -> Path:
        return self.folder / f"{direction}.{frame}.exr"

    def read(self, direction: str, frame: int) -> PassFrame | None:
        """The stored frame, or None when it is missing, unreadable or from another job (computed again)."""
        path = self.path(direction, frame)
        if not path.exists():
            return None
        try:
            plate = read_exr(path)
            if plate.metadata.get(FINGERPRINT) != self.stamp:
                return None
            planes = [plate.channel(name) for name in CHANNELS]
            flow = None
            if FLOW_CHANNELS[0] in plate.channels:
                flow = np.dstack([plate.channel(name) for name in FLOW_CHANNELS])
        except ColorpropError:
            return None
        return PassFrame(np.dstack(planes[:2]), planes[2], planes[3], flow)

    def has(self, direction: str, frame: int) -> bool:
        """The frame is stored by this job (its header read and its stamp checked; the pixels are read later)."""
        path = self.path(direction, frame)
        if not path.exists():
            return False
        try:
            header = read_exr_header(path)
        except ColorpropError:
            return False
        return header.metadata.get(FINGERPRINT) == self.stamp and set(CHANNELS) <= set(header.channels)

    def write(self, direction: str, frame: int, state: PassFrame) -> None:
        planes = [state.ab[..., 0], state.ab[..., 1], state.confidence, state.carried]
        channels = CHANNELS
        if state.flow is not None:
            planes += [state.flow[..., 0], state.flow[..., 1]]
            channels += FLOW_CHANNELS
        self.folder.mkdir(parents=True, exist_ok=True)
        write_exr(self.path(direction, frame), np.dstack(planes).astype(np.float32), channels, pixel_type="float",
                  extra_metadata={FINGERPRINT: self.stamp, "compression": "none"})  # float noise: zip saves ~0 %

    def remove(self) -> None:
        """Drop the span's files once its frames are written, and the root folder once it is empty."""
        shutil.rmtree(self.folder, ignore_errors=True)
        with contextlib.suppress(OSError):  # another span's files are still there
            Path(self.root).rmdir()
