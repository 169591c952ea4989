"""The Nuke node's job, without Nuke: what one press of Colorize sends, and where the files go.

Everything a DCC plug-in shares (knob text, server choices, the job loop, error lines) lives in
``colorprop_client.dcc``; this module adds only what is Nuke's: the rendered EXRs (read and written
with ``exr_io``, since Nuke's Python has no OpenImageIO). The node layer (``node.py``) renders the
inputs, calls :func:`run_plan` off the UI thread and shows what it returns or raises.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from colorprop_client import dcc
from colorprop_client import protocol as P

from .exr_io import ExrError, read_exr, write_exr


CONFIDENCE_CHANNEL = "colorprop.confidence"  # the channel `colorprop colorize --confidence` writes


@dataclass
class ShotPlan:
    """What one press of Colorize does. Patterns use ``####``."""

    address: str
    frames: list[int]
    keyframes: list[int]
    plate_pattern: str  # rendered plate EXRs
    key_pattern: str  # rendered key EXRs (the key input at the key frames)
    output_pattern: str  # where the coloured frames go
    method: str | None = None  # None: the server's default
    quality: str = "standard"
    options: dict[str, Any] = field(default_factory=dict)  # more server options, which it must declare
    mode: str = P.MODE_INBAND
    colorspace: str | None = None
    confidence: bool = False  # also write the colorprop.confidence matte into the results
    caps: dict[str, Any] | None = None  # the server's capabilities, when already asked (else run_plan asks)
    curve: dcc.CurveKeys | None = None  # CURVE keys (dcc.curve_keys); None: a plain connection (loopback servers)
    timeout_s: float = dcc.JOB_TIMEOUT_S

    def check(self) -> None:
        dcc.check_frames(self.frames, self.keyframes)
        if self.mode not in dcc.MODE_LABELS:
            raise dcc.ColorizeError(f"unknown data mode {self.mode!r}")


def write_result(pattern: str, frame: int, rgb: np.ndarray, confidence: np.ndarray | None) -> None:
    """One coloured frame as a float EXR: R, G, B and, when given, the confidence matte (also written as the
    gray matte sequence, as it arrives)."""
    path = dcc.frame_path(pattern, frame)
    if confidence is None:
        write_exr(path, rgb)
    else:
        write_exr(path, np.dstack([rgb, confidence]), ("R", "G", "B", CONFIDENCE_CHANNEL))
        write_matte(pattern, frame, confidence)


def write_matte(output_pattern: str, frame: int, confidence: np.ndarray) -> None:
    """One frame's HxW confidence as the gray matte EXR beside the colour (:func:`dcc.matte_path`)."""
    write_exr(dcc.matte_path(output_pattern, frame), dcc.matte_rgb(confidence))


def write_mattes(output_pattern: str, frames: list[int]) -> None:
    """The colorprop.confidence channel of each result the server wrote, written again as a gray RGB sequence
    (what a Viewer shows as is)."""
    for f in frames:
        img = read_exr(dcc.frame_path(output_pattern, f))
        if CONFIDENCE_CHANNEL not in img.channels:
            raise dcc.ColorizeError(f"{dcc.frame_path(output_pattern, f)} has no {CONFIDENCE_CHANNEL} channel")
        matte = img.pixels[..., img.channels.index(CONFIDENCE_CHANNEL)]
        write_matte(output_pattern, f, matte)


def plan_options(plan: ShotPlan, caps: dict[str, Any]) -> dict[str, Any]:
    """The options the server gets: the method and quality preset, and the plan's own."""
    extra = dict(plan.options)
    if plan.confidence and plan.mode == P.MODE_PATHS:
        extra["write_confidence"] = True  # the server writes the files; in-band the matte comes with each result
    return dcc.build_options(caps, plan.method, plan.quality, **extra)


def read_keys(plan: ShotPlan) -> dict[int, np.ndarray]:
    """The rendered keys, RGBA when the key input has an alpha (a partial key). Raises ExrError."""
    return {k: read_exr(dcc.frame_path(plan.key_pattern, k)).rgba() for k in plan.keyframes}


def plan_shot(plan: ShotPlan) -> dcc.InbandShot | dcc.PathsShot:
    """The shot as the client library takes it (the rendered plate and keys; where the results go). Raises
    ExrError for a rendered file it cannot read."""
    keys = read_keys(plan)
    if plan.mode == P.MODE_INBAND:
        return dcc.InbandShot(
            load_frame=lambda f: read_exr(dcc.frame_path(plan.plate_pattern, f)).rgb(),
            keys=keys,
            write_result=lambda f, rgb, conf: write_result(
                plan.output_pattern, f, rgb, conf if plan.confidence else None
            ),
        )
    return dcc.PathsShot(
        plan.plate_pattern,
        {k: dcc.frame_path(plan.key_pattern, k) for k in plan.keyframes},
        plan.output_pattern,
        [k for k, pixels in keys.items() if dcc.key_and_matte(pixels, f"key {k}", True)[1] is not None],
    )


def run_plan(
    plan: ShotPlan, progress: dcc.Progress | None = None, is_cancelled: Callable[[], bool] = lambda: False
) -> dcc.JobReport:
    """Colorize the rendered plate through the server into ``plan.output_pattern`` (one file per frame of
    ``plan.frames``); return the server's key suggestions and notes (``dcc.run_job``).

    Raises dcc.ColorizeError (message for the node), dcc.Cancelled."""
    plan.check()
    progress = progress or (lambda f, m: None)
    caps = plan.caps
    if caps is None:
        progress(0.0, f"connecting to {plan.address} {dcc.identity_text(plan.curve)}")
        caps = dcc.connect(plan.address, curve=plan.curve)
    options = plan_options(plan, caps)
    os.makedirs(os.path.dirname(plan.output_pattern) or ".", exist_ok=True)
    try:
        shot = plan_shot(plan)
        report = dcc.run_job(
            plan.address,
            plan.frames,
            shot,
            options,
            progress,
            is_cancelled,
            plan.colorspace,
            caps,
            plan.timeout_s,
            plan.curve,
        )
    except ExrError as exc:
        raise dcc.ColorizeError(str(exc)) from None
    outputs = [dcc.frame_path(plan.output_pattern, f) for f in plan.frames]
    missing = [p for p in outputs if not os.path.exists(p)]
    if missing:
        raise dcc.ColorizeError(f"the server finished but {len(missing)} output file(s) are missing, e.g. {missing[0]}")
    if plan.confidence and plan.mode == P.MODE_PATHS:  # in-band, write_result wrote them
        try:
            write_mattes(plan.output_pattern, plan.frames)
        except ExrError as exc:
            raise dcc.ColorizeError(str(exc)) from None
    return report
