"""Everything the Nuke node does that is not Nuke: knob text parsing, server choices, the job.

Plain Python on the colorprop client (pyzmq + numpy), so it is tested without Nuke. The node
layer (``node.py``) renders the inputs to EXRs, calls :func:`run_plan` off the UI thread and shows
what it returns or raises.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

from colorprop_client import protocol as P
from colorprop_client.client import (
    CancellableClient, CancelledByUser, Client, Event, JobCancelled, ServerBusy, ServerError, ServerUnavailable, colorize_arrays, colorize_paths,
)

from .exr_io import ExrError, read_exr, write_exr

DEFAULT_ADDRESS = os.environ.get("COLORPROP_SERVER", "tcp://127.0.0.1:5557")
CONNECT_TIMEOUT_S = 2.0  # a dead server is reported within this (one try)
JOB_TIMEOUT_S = 10.0  # per request once the server has answered
MODE_LABELS = {P.MODE_INBAND: "send pixels", P.MODE_PATHS: "shared paths"}
# Quality presets map onto the server's own options; only those the server declares are sent.
QUALITY_PRESETS: dict[str, dict[str, Any]] = {
    "draft": {"working_width": 320, "upsample": "bilinear"},
    "standard": {"working_width": 480, "upsample": "guided"},
    "high": {"working_width": 960, "upsample": "guided"},
}
FALLBACK_METHODS = ["full", "local", "global", "flow"]

Progress = Callable[[float, str], None]  # (fraction 0..1, message)


class ColorizeError(Exception):
    """Anything the artist must fix; the message is shown on the node as is."""


Cancelled = CancelledByUser  # the artist pressed cancel


# -- knob text ------------------------------------------------------------------------------------
def parse_keyframes(text: str) -> list[int]:
    """``"1, 12 24"`` -> ``[1, 12, 24]`` (sorted, unique). ColorizeError on anything else."""
    frames = set()
    for tok in re.split(r"[\s,;]+", (text or "").strip()):
        if not tok:
            continue
        if not re.fullmatch(r"-?\d+", tok):
            raise ColorizeError(f"keyframes: {tok!r} is not a frame number (write e.g. '1, 12, 24')")
        frames.add(int(tok))
    return sorted(frames)


def add_keyframe(text: str, frame: int) -> str:
    """The keyframes knob text with ``frame`` added."""
    try:
        frames = parse_keyframes(text)
    except ColorizeError:
        frames = []
    return ", ".join(str(f) for f in sorted(set(frames) | {int(frame)}))


def parse_frame_range(text: str, first: int, last: int) -> list[int]:
    """``"1-24"``, ``"1-24x2"``, ``"5"``, ``"1-10,20-30"``; empty means ``first-last``."""
    text = (text or "").strip()
    if not text:
        return list(range(int(first), int(last) + 1))
    frames: set[int] = set()
    for part in re.split(r"[\s,]+", text):
        m = re.fullmatch(r"(-?\d+)(?:-(-?\d+)(?:x(\d+))?)?", part)
        if not m:
            raise ColorizeError(f"frame range: {part!r} is not like '1-24', '1-24x2' or '7'")
        a = int(m.group(1))
        b = int(m.group(2)) if m.group(2) is not None else a
        step = int(m.group(3) or 1)
        if b < a or step < 1:
            raise ColorizeError(f"frame range: {part!r} runs backwards")
        frames.update(range(a, b + 1, step))
    return sorted(frames)


def frame_path(pattern: str, frame: int) -> str:
    """``/x/plate.####.exr`` or ``/x/plate.%04d.exr`` -> the path of one frame."""
    m = re.search(r"#+", pattern)
    if m:
        return pattern[:m.start()] + f"{frame:0{len(m.group())}d}" + pattern[m.end():]
    m = re.search(r"%0?(\d*)d", pattern)
    if m:
        return pattern[:m.start()] + f"{frame:0{int(m.group(1) or 1)}d}" + pattern[m.end():]
    raise ColorizeError(f"{pattern!r} has no frame number token (#### or %04d)")


# -- server choices -------------------------------------------------------------------------------
def method_choices(caps: Mapping[str, Any] | None) -> tuple[list[str], str]:
    """(methods, default) from a capabilities reply; a fixed list before the first connect."""
    engine = (caps or {}).get("engine") or {}
    methods = [str(m) for m in engine.get("methods") or []] or list(FALLBACK_METHODS)
    default = engine.get("default_method")
    return methods, default if default in methods else methods[0]


def quality_choices(caps: Mapping[str, Any] | None) -> list[str]:
    return list(QUALITY_PRESETS)


def mode_choices(caps: Mapping[str, Any] | None) -> list[str]:
    modes = [m for m in (caps or {}).get("modes") or [P.MODE_INBAND] if m in MODE_LABELS]
    return modes or [P.MODE_INBAND]


def build_options(caps: Mapping[str, Any] | None, method: str, quality: str) -> dict[str, Any]:
    """Options for OPEN_SHOT: the method plus the preset's values the server declares."""
    methods, _ = method_choices(caps)
    if caps and method not in methods:
        raise ColorizeError(f"method {method!r} is not offered by this server (it has {', '.join(methods)})")
    declared = ((caps or {}).get("engine") or {}).get("options") or {}
    options: dict[str, Any] = {"method": method}
    for name, value in QUALITY_PRESETS.get(quality, {}).items():
        spec = declared.get(name)
        if spec is None:
            continue
        choices = spec.get("choices")
        if choices and value not in choices:
            continue
        options[name] = value
    return options


# -- the job --------------------------------------------------------------------------------------
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
    options: dict[str, Any] = field(default_factory=dict)  # extra server options, sent as they are
    mode: str = P.MODE_INBAND
    colorspace: str | None = None
    connect_timeout_s: float = CONNECT_TIMEOUT_S
    timeout_s: float = JOB_TIMEOUT_S

    def check(self) -> None:
        if not self.frames:
            raise ColorizeError("the frame range is empty")
        if not self.keyframes:
            raise ColorizeError("no keyframes: set a frame, or press 'add current frame as key'")
        outside = [k for k in self.keyframes if k not in self.frames]
        if outside:
            raise ColorizeError(f"keyframe(s) {outside} lie outside the frame range "
                                f"{self.frames[0]}-{self.frames[-1]}")
        if self.mode not in MODE_LABELS:
            raise ColorizeError(f"unknown data mode {self.mode!r}")
        if self.quality not in QUALITY_PRESETS:
            raise ColorizeError(f"quality {self.quality!r} is not one of {', '.join(QUALITY_PRESETS)}")




def connect(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> dict:
    """The server's capabilities, or ColorizeError with a message an artist can act on."""
    if not re.fullmatch(r"(tcp|ipc|inproc)://\S+", address or ""):
        raise ColorizeError(f"server address {address!r} should look like tcp://127.0.0.1:5557")
    client = Client(address, timeout_s=timeout_s, retries=1)
    try:
        return client.hello()
    except ServerUnavailable:
        raise ColorizeError(f"no colorprop server answers at {address} (waited {timeout_s:g} s). "
                            "Is `colorprop serve` running there, and is the address right?") from None
    except ServerError as exc:
        raise ColorizeError(describe_error(exc)) from None
    finally:
        client.close()


class _LazyFrames(Mapping):
    """frame -> HxWx3 pixels read from the rendered EXRs only when the client sends them."""

    def __init__(self, pattern: str, frames: list[int]):
        self.pattern, self.frames = pattern, frames

    def __getitem__(self, frame: int) -> np.ndarray:
        if frame not in self.frames:
            raise KeyError(frame)
        return read_exr(frame_path(self.pattern, frame)).rgb()

    def __iter__(self) -> Iterator[int]:
        return iter(self.frames)

    def __len__(self) -> int:
        return len(self.frames)


def run_plan(plan: ShotPlan, progress: Progress | None = None,
             is_cancelled: Callable[[], bool] = lambda: False) -> list[str]:
    """Colorize the rendered plate through the server; return the output file paths.

    Raises ColorizeError (message for the node), Cancelled."""
    plan.check()
    progress = progress or (lambda f, m: None)
    progress(0.0, f"connecting to {plan.address}")
    caps = connect(plan.address, plan.connect_timeout_s)
    if plan.mode not in mode_choices(caps):
        raise ColorizeError("this server has no shared-path mode (it was started without allowed roots); "
                            "use 'send pixels'")
    options = {**build_options(caps, plan.method or method_choices(caps)[1], plan.quality), **plan.options}
    os.makedirs(os.path.dirname(plan.output_pattern) or ".", exist_ok=True)
    total, done = len(plan.frames), [0]
    outputs = [frame_path(plan.output_pattern, f) for f in plan.frames]
    started = time.monotonic()

    # In-band, a frame counts when its result is written here; with shared paths, when the server
    # reports it written.
    counted = P.EV_RESULT if plan.mode == P.MODE_INBAND else P.EV_PROGRESS

    def on_event(ev: Event) -> None:
        if ev.kind == P.EV_RESULT and ev.rgb is not None:
            write_exr(frame_path(plan.output_pattern, int(ev.frame)), ev.rgb)
        if ev.kind == counted:
            done[0] = min(total, done[0] + 1)
            rate = (time.monotonic() - started) / done[0]
            progress(done[0] / total, f"frame {ev.frame}: {done[0]}/{total} ({rate:.1f} s/frame)")
        elif ev.kind == P.EV_RETRIED:
            progress(done[0] / total, "a server worker was lost; the job restarted on another")

    client = CancellableClient(plan.address, timeout_s=plan.timeout_s, retries=3, is_cancelled=is_cancelled)
    try:
        progress(0.0, f"colorizing {total} frames ({options['method']})")
        if plan.mode == P.MODE_INBAND:
            keys = {k: read_exr(frame_path(plan.key_pattern, k)).rgb() for k in plan.keyframes}
            colorize_arrays(client, _LazyFrames(plan.plate_pattern, plan.frames), keys, options,
                            colorspace=plan.colorspace, on_progress=on_event)
        else:
            keys = {k: frame_path(plan.key_pattern, k) for k in plan.keyframes}
            colorize_paths(client, plan.plate_pattern, plan.output_pattern, plan.frames, keys, options,
                           colorspace=plan.colorspace, on_progress=on_event)
    except (Cancelled, JobCancelled):
        raise Cancelled() from None
    except ExrError as exc:
        raise ColorizeError(str(exc)) from None
    except (ServerError, TimeoutError, P.ProtocolError) as exc:
        raise ColorizeError(describe_error(exc)) from None
    finally:
        client.close()
    missing = [p for p in outputs if not os.path.exists(p)]
    if missing:
        raise ColorizeError(f"the server finished but {len(missing)} output file(s) are missing, e.g. {missing[0]}")
    progress(1.0, f"done: {total} frames in {time.monotonic() - started:.1f} s")
    return outputs


def describe_error(exc: BaseException) -> str:
    """One line for the node's status: what happened and what to do."""
    if isinstance(exc, ServerUnavailable):
        return f"the server stopped answering ({exc}); is it still running?"
    if isinstance(exc, ServerBusy):
        return f"the server is busy with other shots; retry in {exc.retry_after_s:g} s"
    if isinstance(exc, ServerError):
        hints = {
            P.E_PATH: " (shared paths must lie under the server's allowed roots; or use 'send pixels')",
            P.E_PIXELS: " (NaN/Inf pixels in the plate or keys, or keys of another size than the plate)",
            P.E_VERSION: " (update the plugin or the server so both speak the same protocol)",
        }
        return str(exc) + hints.get(exc.code, "")
    if isinstance(exc, TimeoutError):
        return f"timed out: {exc}"
    return f"{type(exc).__name__}: {exc}"
