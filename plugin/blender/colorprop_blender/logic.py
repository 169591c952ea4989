"""Plain-Python parts of the Blender add-on (no bpy): sequences, orientation, options, the job.

Orientation: Blender's ``Image.pixels`` is a flat RGBA buffer whose **first row is the bottom**
of the picture; the colorprop wire format is HxWxC with the **top row first** (as EXR stores it).
:func:`blender_to_hwc` and :func:`hwc_to_blender` are the only two places that flip.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Mapping
from typing import Any, Callable, Iterator

import numpy as np

try:  # inside the add-on zip the client is bundled next to this package
    from .colorprop_client import protocol as P
    from .colorprop_client.client import CancellableClient, CancelledByUser, Client, Event, JobCancelled, ServerError, ServerUnavailable, colorize_arrays
except ImportError:  # running from the repository: plugin/ is on sys.path
    from colorprop_client import protocol as P
    from colorprop_client.client import CancellableClient, CancelledByUser, Client, Event, JobCancelled, ServerError, ServerUnavailable, colorize_arrays

DEFAULT_ADDRESS = os.environ.get("COLORPROP_SERVER", "tcp://127.0.0.1:5557")
CONNECT_TIMEOUT_S = 2.0
JOB_TIMEOUT_S = 10.0
MOVIE_EXTENSIONS = {".mov", ".mp4", ".mkv", ".avi", ".webm", ".mxf", ".m4v", ".ogv"}
QUALITY_PRESETS: dict[str, dict[str, Any]] = {
    "draft": {"working_width": 320, "upsample": "bilinear"},
    "standard": {"working_width": 480, "upsample": "guided"},
    "high": {"working_width": 960, "upsample": "guided"},
}


class ColorizeError(Exception):
    """Something the artist must fix; shown in the panel and the operator report as is."""


Cancelled = CancelledByUser  # the artist pressed cancel


# -- pixels ---------------------------------------------------------------------------------------
def blender_to_hwc(flat: np.ndarray, width: int, height: int, channels: int = 4) -> np.ndarray:
    """Blender's bottom-up flat buffer -> HxWx3 float32, top row first."""
    img = np.asarray(flat, dtype=np.float32).reshape(height, width, channels)
    if channels == 1:
        img = np.repeat(img, 3, axis=2)
    return np.ascontiguousarray(img[::-1, :, :3])


def hwc_to_blender(rgb: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """HxWx3 (top row first) -> flat RGBA float32, bottom row first, for ``Image.pixels``."""
    h, w, _ = rgb.shape
    rgba = np.empty((h, w, 4), np.float32)
    rgba[..., :3] = rgb
    rgba[..., 3] = alpha
    return rgba[::-1].ravel()


# -- sequences ------------------------------------------------------------------------------------
def is_movie(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in MOVIE_EXTENSIONS


def sequence_of(path: str) -> tuple[str, list[int]]:
    """One frame's file -> (pattern with ``####``, existing frame numbers), e.g.
    ``/x/plate.0007.exr`` -> ``("/x/plate.####.exr", [1, ..., 24])``."""
    folder, name = os.path.split(path)
    m = None
    for m in re.finditer(r"\d+", name):
        pass
    if m is None:
        raise ColorizeError(f"{name}: no frame number in the file name (expected e.g. plate.0001.exr)")
    head, digits, tail = name[:m.start()], m.group(), name[m.end():]
    frames = []
    for other in glob.glob(os.path.join(glob.escape(folder), glob.escape(head) + "[0-9]*" + glob.escape(tail))):
        mid = os.path.basename(other)[len(head):len(os.path.basename(other)) - len(tail)]
        if mid.isdigit() and len(mid) == len(digits):
            frames.append(int(mid))
    if not frames:
        raise ColorizeError(f"{path}: no such file")
    return os.path.join(folder, head + "#" * len(digits) + tail), sorted(frames)


def frame_path(pattern: str, frame: int) -> str:
    m = re.search(r"#+", pattern)
    if not m:
        raise ColorizeError(f"{pattern!r} has no #### frame token")
    return pattern[:m.start()] + f"{frame:0{len(m.group())}d}" + pattern[m.end():]


def output_pattern(folder: str, plate_pattern_or_movie: str) -> str:
    """``<folder>/<plate name>_colorprop.####.exr``."""
    base = os.path.basename(plate_pattern_or_movie)
    stem = re.sub(r"[._-]*#+.*$", "", base) if "#" in base else os.path.splitext(base)[0]
    return os.path.join(folder, f"{stem or 'plate'}_colorprop.####.exr")


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    return np.where(x <= 0.04045, x / 12.92, ((np.maximum(x, 0) + 0.055) / 1.055) ** 2.4).astype(np.float32)


# -- server ---------------------------------------------------------------------------------------
def connect(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> dict:
    if not re.fullmatch(r"(tcp|ipc)://\S+", address or ""):
        raise ColorizeError(f"server address {address!r} should look like tcp://127.0.0.1:5557")
    client = Client(address, timeout_s=timeout_s, retries=1)
    try:
        return client.hello()
    except ServerUnavailable:
        raise ColorizeError(f"no colorprop server answers at {address} (waited {timeout_s:g} s). "
                            "Is `colorprop serve` running there, and is the address right?") from None
    except ServerError as exc:
        raise ColorizeError(str(exc)) from None
    finally:
        client.close()


def method_choices(caps: Mapping[str, Any] | None) -> tuple[list[str], str]:
    engine = (caps or {}).get("engine") or {}
    methods = [str(m) for m in engine.get("methods") or []] or ["full", "local", "global", "flow"]
    default = engine.get("default_method")
    return methods, default if default in methods else methods[0]


def build_options(caps: Mapping[str, Any], method: str, quality: str) -> dict[str, Any]:
    methods, default = method_choices(caps)
    method = method or default
    if method not in methods:
        raise ColorizeError(f"method {method!r} is not offered by this server (it has {', '.join(methods)})")
    declared = ((caps or {}).get("engine") or {}).get("options") or {}
    options: dict[str, Any] = {"method": method}
    for name, value in QUALITY_PRESETS.get(quality, {}).items():
        spec = declared.get(name)
        if spec is not None and (not spec.get("choices") or value in spec["choices"]):
            options[name] = value
    return options




class LazyFrames(Mapping):
    """frame -> HxWx3, loaded by ``load(frame)`` only when the client is about to send it."""

    def __init__(self, frames: list[int], load: Callable[[int], np.ndarray]):
        self.frames, self.load = list(frames), load

    def __getitem__(self, frame: int) -> np.ndarray:
        if frame not in self.frames:
            raise KeyError(frame)
        return self.load(frame)

    def __iter__(self) -> Iterator[int]:
        return iter(self.frames)

    def __len__(self) -> int:
        return len(self.frames)


def run_job(
    address: str,
    frames: list[int],
    load_frame: Callable[[int], np.ndarray],
    keys: dict[int, np.ndarray],
    options: dict[str, Any],
    write_result: Callable[[int, np.ndarray], None],
    progress: Callable[[float, str], None] = lambda f, m: None,
    is_cancelled: Callable[[], bool] = lambda: False,
    colorspace: str | None = None,
    timeout_s: float = JOB_TIMEOUT_S,
) -> None:
    """Send the frames in-band, hand every result to ``write_result(frame, rgb HxWx3)``.
    Raises ColorizeError or Cancelled."""
    if not frames:
        raise ColorizeError("no frames to colour")
    outside = sorted(set(keys) - set(frames))
    if not keys or outside:
        raise ColorizeError(f"keyframe(s) {outside} lie outside the frames {frames[0]}-{frames[-1]}"
                            if outside else "add at least one keyframe image")
    total, done = len(frames), [0]

    def on_event(ev: Event) -> None:
        if ev.kind == P.EV_RESULT and ev.rgb is not None:
            write_result(int(ev.frame), ev.rgb)
            done[0] += 1
            progress(done[0] / total, f"frame {ev.frame}: {done[0]}/{total}")

    client = CancellableClient(address, timeout_s=timeout_s, retries=3, is_cancelled=is_cancelled)
    try:
        colorize_arrays(client, LazyFrames(frames, load_frame), keys, options, colorspace=colorspace,
                        on_progress=on_event)
    except (Cancelled, JobCancelled):
        raise Cancelled() from None
    except (ServerError, TimeoutError, P.ProtocolError) as exc:
        raise ColorizeError(str(exc)) from None
    finally:
        client.close()
