"""Decode cached clips into linear Rec.709 frames, and the train/dev/validation split (``split.json``).

Frames are numpy **HWC float32**, linear Rec.709 (the sRGB EOTF undoes the encoding of the
8-bit video; BT.709 primaries are shared by sRGB), resized to the requested width with the aspect
kept and both sides even. The split is by clip, never by frame: see ``split.json``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import cv2
import numpy as np

from colorprop.errors import ColorpropError

CLIP_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".ogg", ".webp")


class DataMissingError(ColorpropError):
    """A clip or still is not in the cache (or cannot be decoded). Says how to fetch it."""

    def __init__(self, what: str, reason: str):
        self.what = what
        self.reason = reason
        super().__init__(f"{what}: {reason}")


@dataclass
class Clip:
    """A decoded clip range. ``frames_linear``: list of HxWx3 float32, linear Rec.709."""

    name: str
    frames_linear: list[np.ndarray]
    start_frame: int = 0
    fps: float = 0.0
    report_apart: bool = False  # nearly colourless: report beside, not inside, the dev mean

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the frames."""
        h, w = self.frames_linear[0].shape[:2]
        return w, h


def default_cache_dir() -> Path:
    """``$COLORPROP_CACHE`` or ``<repo root>/.cache`` (git-ignored)."""
    env = os.environ.get("COLORPROP_CACHE")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / ".cache"


def srgb_eotf(encoded: np.ndarray) -> np.ndarray:
    """sRGB-encoded values (0..1) → linear light, the IEC 61966-2-1 piecewise curve. Same shape."""
    x = np.asarray(encoded, dtype=np.float32)
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4).astype(np.float32)


def even_size(width: int, height: int, target_width: int | None) -> tuple[int, int]:
    """(w, h) for resizing to ``target_width`` keeping aspect; both even, at least 2."""
    if target_width is None:
        tw = width
    else:
        tw = int(target_width)
    th = height * tw / width
    w = max(2, int(round(tw / 2)) * 2)
    h = max(2, int(round(th / 2)) * 2)
    return w, h


def clip_path(cache_dir: Path | str, name: str) -> Path:
    """Path of a cached clip by name (any known video extension)."""
    folder = Path(cache_dir) / "clips"
    for ext in CLIP_EXTS:
        p = folder / f"{name}{ext}"
        if p.exists():
            return p
    raise DataMissingError(
        f"clip {name!r}",
        f"not found in {folder}; run `colorprop data fetch` (or `python -m colorprop.data.fetch`) "
        "to download the footage into the cache (set COLORPROP_CACHE to use another folder)",
    )


def open_video(path: Path | str):
    """A ``cv2.VideoCapture`` of the file, or for an animated WebP (which OpenCV reads as one frame) the same
    interface over Pillow (``webp.WebPCapture``)."""
    if Path(path).suffix.lower() == ".webp":
        from colorprop.data.webp import WebPCapture

        return WebPCapture(path)
    return cv2.VideoCapture(str(path))


def clip_info(path: Path | str) -> dict:
    """{'frames', 'width', 'height', 'fps'} as reported by the container."""
    cap = open_video(path)
    try:
        if not cap.isOpened():
            raise DataMissingError(str(path), "OpenCV cannot open this video")
        return {
            "frames": int(cap.get(cv2.CAP_PROP_FRAME_COUNT)),
            "width": int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
            "height": int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            "fps": float(cap.get(cv2.CAP_PROP_FPS)),
        }
    finally:
        cap.release()


def read_frames(
    path: Path | str,
    start_frame: int = 0,
    num_frames: int | None = None,
    width: int | None = None,
    linear: bool = True,
) -> tuple[list[np.ndarray], float]:
    """Decode frames ``start_frame .. start_frame+num_frames-1`` (0-based) of a video.

    Returns (frames, fps); frames are HxWx3 float32 RGB, linear Rec.709 if ``linear`` else the
    sRGB-encoded 0..1 values. Resizing (INTER_AREA when shrinking) happens on the encoded values,
    as a video scaler would. Frames before ``start_frame`` are decoded and dropped (``grab``),
    because container seeking is not frame-exact for every codec; the ranges we use are short.
    Raises DataMissingError when the file cannot be opened or ends before the range does.
    """
    cap = open_video(path)
    if not cap.isOpened():
        raise DataMissingError(str(path), "OpenCV cannot open this video")
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS))
        for i in range(start_frame):
            if not cap.grab():
                raise DataMissingError(str(path), f"ends at frame {i}, before start frame {start_frame}")
        frames: list[np.ndarray] = []
        while num_frames is None or len(frames) < num_frames:
            ok, bgr = cap.read()
            if not ok:
                if num_frames is None:
                    break
                raise DataMissingError(
                    str(path), f"ends at frame {start_frame + len(frames)}, range needs {start_frame}+{num_frames}"
                )
            h, w = bgr.shape[:2]
            size = even_size(w, h, width)
            if size != (w, h):
                interp = cv2.INTER_AREA if size[0] < w else cv2.INTER_LINEAR
                bgr = cv2.resize(bgr, size, interpolation=interp)
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
            frames.append(srgb_eotf(rgb) if linear else rgb)
        return frames, fps
    finally:
        cap.release()


def read_ranges(
    path: Path | str, ranges: list[tuple[int, int]], width: int | None = None
) -> dict[tuple[int, int], list[np.ndarray]]:
    """Decode several (start_frame, num_frames) ranges of one video in a single sequential pass.

    Cheaper than ``read_frames`` per range on long files: frames between ranges are grabbed
    (not converted) once. Returns {(start, num): linear frames}; a range past the end is dropped.
    """
    wanted: dict[int, list[tuple[int, int]]] = {}
    for start, num in ranges:
        for f in range(start, start + num):
            wanted.setdefault(f, []).append((start, num))
    out: dict[tuple[int, int], list[np.ndarray]] = {r: [] for r in ranges}
    if not wanted:
        return out
    last = max(wanted)
    cap = open_video(path)
    if not cap.isOpened():
        raise DataMissingError(str(path), "OpenCV cannot open this video")
    try:
        for index in range(last + 1):
            if index not in wanted:
                if not cap.grab():
                    break
                continue
            ok, bgr = cap.read()
            if not ok:
                break
            h, w = bgr.shape[:2]
            size = even_size(w, h, width)
            if size != (w, h):
                bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA if size[0] < w else cv2.INTER_LINEAR)
            frame = srgb_eotf(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0)
            for r in wanted[index]:
                out[r].append(frame)
    finally:
        cap.release()
    return {r: frames for r, frames in out.items() if len(frames) == r[1]}


def load_clip(
    cache_dir: Path | str, name: str, start_frame: int = 0, num_frames: int | None = None, width: int | None = None
) -> Clip:
    frames, fps = read_frames(clip_path(cache_dir, name), start_frame, num_frames, width)
    return Clip(name=name, frames_linear=frames, start_frame=start_frame, fps=fps)


def load_split() -> dict:
    """The repository's split: {'dev': [{clip, start_frame, num_frames, width, ...}], 'validation': [...],
    'train': [...], ...}."""
    text = resources.files("colorprop.data").joinpath("split.json").read_text()
    return json.loads(text)


EVAL_SPLITS = ("validation", "dev")  # validation: sources nothing learns from; dev: seen sources (split.json)


def dev_entry_name(entry: dict) -> str:
    """A unique, readable id for a dev or validation entry: ``<clip>@<start_frame>``."""
    return f"{entry['clip']}@{entry['start_frame']}"


def load_eval_clips(
    split: str = "dev", cache_dir: Path | str | None = None, include_report_apart: bool = True
) -> list[Clip]:
    """Decode every range of an evaluation split of ``split.json`` ("dev" or "validation") from the cache
    (linear Rec.709 frames).

    Entries marked ``report_apart`` (nearly colourless) are kept unless ``include_report_apart``
    is False; callers report them separately. Clip.name is ``<clip>@<start_frame>``.
    """
    if split not in EVAL_SPLITS:
        raise ValueError(f"unknown evaluation split {split!r}; choose from {', '.join(EVAL_SPLITS)}")
    if cache_dir is None:
        cache_dir = default_cache_dir()
    clips = []
    for e in load_split()[split]:
        if e.get("report_apart") and not include_report_apart:
            continue
        c = load_clip(cache_dir, e["clip"], e["start_frame"], e["num_frames"], e["width"])
        c.name = dev_entry_name(e)
        c.report_apart = bool(e.get("report_apart", False))
        clips.append(c)
    return clips


def load_dev_clips(cache_dir: Path | str | None = None, include_report_apart: bool = True) -> list[Clip]:
    """``load_eval_clips("dev", ...)``: the dev set (seen sources)."""
    return load_eval_clips("dev", cache_dir, include_report_apart)
