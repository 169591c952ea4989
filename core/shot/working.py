"""Colour in and out of the working space: a plate frame's luminance at full and working size, a key's
colour, the result back in the plate's space; the regrade's change."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from colorprop.colour import convert, plate_lab
from colorprop.colour.upsample import upsample_chroma
from colorprop.engine.engine import ShotOptions
from colorprop.engine.flow import resize_flow, warp_backward
from colorprop.engine.propagate import resize_hw
from colorprop.errors import InputError, PixelError
from colorprop.io.exr import as_stored, image_channels
from colorprop.shot.frames import RGB, FrameResult, KeyImage, PlateFrame
from colorprop.shot.preflight import check_key, check_plate_pixels, check_size, plate_colorspace, working_size


@dataclass
class Prepared:
    """One plate frame in the working space."""

    L_full: np.ndarray  # HxW CIE L of the plate (unclipped)
    L_work: np.ndarray  # hxw
    space: str
    frame: PlateFrame


def lab_ab(rgb: np.ndarray, space: str) -> np.ndarray:
    """HxWx2 Lab ab (contiguous, float32) of HxWx3 ``rgb`` in colour space ``space``."""
    return plate_lab.ab_of_plate(rgb, space)


def _stored_ab(rgb: np.ndarray, space: str, stored_as: type) -> np.ndarray:
    return lab_ab(as_stored(rgb, stored_as), space)


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
        # Row bands on a thread pool: per-pixel maths, the same numbers, a fraction of the time at 4K; the
        # pre-flight's sums made in the same bands. L of a frame the check refuses is never used.
        L, sums = convert.map_row_bands(lambda pixels: self._lab_l(pixels, frame.channels), frame.pixels)
        check_plate_pixels(frame.pixels, frame.channels, frame.name, sums)
        h, w = frame.pixels.shape[:2]
        if (w, h) != self.full_size:
            raise PixelError(
                f"{frame.name}: size {w}x{h} differs from the shot's {self.full_size[0]}x{self.full_size[1]}"
            )
        return Prepared(L, resize_hw(L, *self.work_size), self.space, frame)

    @np.errstate(over="ignore", invalid="ignore")  # a frame with NaN or Inf: check_plate_pixels names it
    def _lab_l(self, pixels: np.ndarray, channels: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        read = image_channels(channels)
        rgb_index = tuple(channels.index(c) for c in read * (3 // len(read)))
        return plate_lab.lab_l_of_plate(pixels, rgb_index, self.space), pixels.sum(axis=(1, 2))  # each row's

    def key_ab(self, key: KeyImage) -> np.ndarray:
        """HxWx2 Lab ab of the key at full resolution."""
        space = check_key(key, self.full_size, self.space)
        return convert.map_row_bands(functools.partial(lab_ab, space=space), key.pixels)

    def finish(self, prep: Prepared, ab_full: np.ndarray, confidence_full: np.ndarray) -> FrameResult:
        rgb = convert.map_row_bands(self._plate_rgb, prep.L_full, ab_full)
        # The confidence as given, not copied (a 4K plane): the result shares it, so no caller writes into it after.
        return FrameResult(rgb.astype(np.float32, copy=False), np.asarray(confidence_full, np.float32), prep.frame)

    def _plate_rgb(self, L: np.ndarray, ab: np.ndarray) -> np.ndarray:
        return plate_lab.plate_from_lab(L, ab, self.space)

    def to_full(
        self,
        ab_work: np.ndarray,
        conf_work: np.ndarray,
        L_full: np.ndarray,
        prev_ab_full: np.ndarray | None = None,
        flow_work: np.ndarray | None = None,
        L_work: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Working-size colour and confidence at full resolution.

        With ``carry="full"``, the previous frame's written colour (``prev_ab_full`` HxWx2) and the step's
        working-size backward flow (``flow_work``): that colour is warped onto this frame at full
        resolution (the prior) and only the change the working-size step made to it is upsampled; where
        the step kept the carried colour, its full-resolution detail is kept instead of being re-made
        from the working size each frame. ``L_work``: ``L_full`` at the working size (``Prepared.L_work``), the
        upsampling's guide there (None: resized again)."""
        if self.work_size == self.full_size:  # filtering at the same size would only blur, frame after frame
            return ab_work, conf_work
        conf = resize_hw(conf_work, *self.full_size)  # a new array: the sizes differ
        np.clip(conf, 0.0, 1.0, out=conf)
        if not self.carry_full or prev_ab_full is None or flow_work is None:  # global has no flow
            return upsample_chroma(ab_work, L_full, method=self.upsample, lab_l_small=L_work), conf
        prior = warp_backward(prev_ab_full, resize_flow(flow_work, *self.full_size))
        change = ab_work - resize_hw(prior, *self.work_size)
        ab_full = upsample_chroma(change, L_full, method=self.upsample, lab_l_small=L_work)
        ab_full += prior  # in place: one frame-sized array fewer at 4K
        return ab_full, conf

    def state_ab(self, written_rgb: np.ndarray, stored_as: type = np.float32) -> np.ndarray:
        """The colour carried to the next frame (HxWx2): what was written, at full resolution, rounded as the
        sink stores it (``stored_as``: np.float16 for half-float EXRs) band by band, not as two more frames."""
        return convert.map_row_bands(functools.partial(_stored_ab, space=self.space, stored_as=stored_as), written_rgb)

    def to_work(self, ab_full: np.ndarray) -> np.ndarray:
        return resize_hw(ab_full, *self.work_size)


def plate_ab(frame: PlateFrame, shot: ShotColour) -> np.ndarray:
    """HxWx2 Lab ab of a colour plate frame (regrade); a gray plate has no colour to regrade."""
    if not all(c in frame.channels for c in RGB):
        raise InputError(
            f"{frame.name}: --regrade needs a colour plate (R, G, B), this one has {', '.join(frame.channels)}"
        )
    return lab_ab(frame.rgb(), shot.space)


REGRADE_UNCHANGED = 0.01  # Lab ab units: a smaller change is colour-conversion noise, not a grade


def regrade_change(key_ab: np.ndarray, plate_ab_: np.ndarray) -> np.ndarray:
    """HxWx2 delta the key made to its plate frame; exactly 0 where it made none (so the plate is kept)."""
    delta = (key_ab - plate_ab_).astype(np.float32)
    delta[np.hypot(delta[..., 0], delta[..., 1]) < REGRADE_UNCHANGED] = 0.0
    return delta
