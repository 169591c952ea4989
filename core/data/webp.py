"""Animated WebP clips (the generated videos of the comfyui template packages), decoded with Pillow.

OpenCV's ``VideoCapture`` reads only the first frame of an animated WebP, so ``clips.open_video`` hands
``.webp`` files to ``WebPCapture``, which offers the part of the ``cv2.VideoCapture`` interface the clip
readers use (``isOpened``, ``get``, ``grab``, ``read``, ``release``; frames come out BGR uint8 as OpenCV's do).
Pillow composites each frame onto the previous ones (the WebP animation's blend and dispose rules), so a frame
is the picture a player shows.
"""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
from PIL import Image


def webp_frame_count(data: bytes) -> int:
    """Frames in an (animated) WebP file given as bytes; 1 for a still, 0 when Pillow cannot read it."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            return int(getattr(im, "n_frames", 1)) if im.format == "WEBP" else 0
    except (OSError, ValueError):
        return 0


class WebPCapture:
    """``cv2.VideoCapture``'s reading interface over an animated WebP file."""

    def __init__(self, path: Path | str):
        self._index = 0
        try:
            self._image = Image.open(path)
            self._frames = int(getattr(self._image, "n_frames", 1))
            self._image.load()  # a frame's duration is known once it is decoded: the first one's gives the rate
            duration = float(self._image.info.get("duration", 0) or 0)
            self._fps = 1000.0 / duration if duration > 0 else 0.0
        except (OSError, ValueError):
            self._image = None
            self._frames, self._fps = 0, 0.0

    def isOpened(self) -> bool:  # noqa: N802  (cv2.VideoCapture's name)
        return self._image is not None

    def get(self, prop: int) -> float:
        if self._image is None:
            return 0.0
        return {
            cv2.CAP_PROP_FRAME_COUNT: float(self._frames),
            cv2.CAP_PROP_FRAME_WIDTH: float(self._image.width),
            cv2.CAP_PROP_FRAME_HEIGHT: float(self._image.height),
            cv2.CAP_PROP_FPS: self._fps,
        }.get(prop, 0.0)

    def grab(self) -> bool:
        """Step over the next frame without converting it."""
        if self._image is None or self._index >= self._frames:
            return False
        self._index += 1
        return True

    def read(self) -> tuple[bool, np.ndarray | None]:
        """The next frame, HxWx3 uint8 BGR."""
        if self._image is None or self._index >= self._frames:
            return False, None
        self._image.seek(self._index)
        self._index += 1
        rgb = np.asarray(self._image.convert("RGB"))
        return True, np.ascontiguousarray(rgb[..., ::-1])

    def release(self) -> None:
        if self._image is not None:
            self._image.close()
            self._image = None
