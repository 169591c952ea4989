"""Synthetic video from still photographs: a moving/zooming/rotating virtual camera over a still,
pasted occluders that cross the view with their own motion, and brightness/gamma drift.

It gives the networks what the short registry clips lack: large motion, dis-occlusion and
objects entering and leaving. Everything is drawn from the ``numpy.random.Generator`` passed in,
so a clip is a pure function of (image, others, num_frames, rng state, size).

Images are numpy HWC float32, linear Rec.709 (0..1 for photographs).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from colorprop.data.clips import DataMissingError, srgb_eotf

STILL_EXTS = (".jpg", ".jpeg", ".png")


class SyntheticClip(NamedTuple):
    frames: list[np.ndarray]  # num_frames × HxWx3 float32, linear Rec.709
    occluder_alpha: list[np.ndarray]  # num_frames × HxW float32 in [0, 1]: union of pasted occluders


# --------------------------------------------------------------------------------------------
# Stills
# --------------------------------------------------------------------------------------------


def list_stills(cache_dir: Path | str) -> list[Path]:
    folder = Path(cache_dir) / "stills"
    paths = sorted(p for p in folder.glob("*") if p.suffix.lower() in STILL_EXTS) if folder.is_dir() else []
    if not paths:
        raise DataMissingError(
            f"stills in {folder}", "none found; run `colorprop data fetch` to download them into the cache"
        )
    return paths


def load_still(path: Path | str, max_side: int | None = 1024) -> np.ndarray:
    """Decode a photograph → HxWx3 float32 linear Rec.709, shrunk (INTER_AREA) to ``max_side``."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise DataMissingError(str(path), "OpenCV cannot decode this image")
    h, w = bgr.shape[:2]
    if max_side is not None and max(h, w) > max_side:
        f = max_side / max(h, w)
        bgr = cv2.resize(bgr, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
    return srgb_eotf(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0)


# --------------------------------------------------------------------------------------------
# Smooth random trajectories
# --------------------------------------------------------------------------------------------


def smooth_track(
    rng: np.random.Generator,
    num_frames: int,
    step_std: float,
    large_prob: float = 0.15,
    large_gain: float = 5.0,
    knot_every: tuple[int, int] = (6, 16),
) -> np.ndarray:
    """A smooth 1-D random trajectory of length ``num_frames`` starting at 0.

    Knots every 6–16 frames hold a random velocity (normal, ``step_std`` per frame); with
    probability ``large_prob`` a knot's velocity is ``large_gain`` times bigger (a whip pan / fast
    object). Velocity is interpolated with a smoothstep between knots and integrated, so position
    and velocity are continuous.
    """
    knots_t = [0]
    while knots_t[-1] < num_frames:
        knots_t.append(knots_t[-1] + int(rng.integers(knot_every[0], knot_every[1] + 1)))
    vel = rng.normal(0.0, step_std, size=len(knots_t))
    vel *= np.where(rng.random(len(knots_t)) < large_prob, large_gain, 1.0)
    t = np.arange(num_frames, dtype=np.float64)
    seg = np.searchsorted(knots_t, t, side="right") - 1
    t0 = np.asarray(knots_t)[seg]
    t1 = np.asarray(knots_t)[seg + 1]
    u = (t - t0) / (t1 - t0)
    u = u * u * (3 - 2 * u)
    v = vel[seg] * (1 - u) + vel[seg + 1] * u
    return np.concatenate([[0.0], np.cumsum(v[1:])])


def _affine_dst_to_src(
    center_src: tuple[float, float], scale: float, angle: float, out_size: tuple[int, int]
) -> np.ndarray:
    """2x3 matrix mapping output pixel → source pixel: src = c + scale·R(angle)·(p − out_centre)."""
    w, h = out_size
    ca, sa = np.cos(angle) * scale, np.sin(angle) * scale
    ox, oy = (w - 1) / 2.0, (h - 1) / 2.0
    cx, cy = center_src
    return np.array([[ca, -sa, cx - ca * ox + sa * oy], [sa, ca, cy - sa * ox - ca * oy]], dtype=np.float64)


def _soft_blob_mask(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """HxW float32 in [0, 1]: a random star-convex blob with a soft (blurred) edge."""
    n = 12
    radii = np.clip(1.0 + 0.35 * rng.standard_normal(n), 0.45, 1.4)
    radii = np.convolve(np.concatenate([radii[-1:], radii, radii[:1]]), [0.25, 0.5, 0.25], mode="valid")
    ang = np.linspace(0, 2 * np.pi, n, endpoint=False) + rng.uniform(0, 2 * np.pi)
    angs = np.linspace(0, 2 * np.pi, 96, endpoint=False)
    r = np.interp(
        angs,
        np.concatenate([ang, ang[:1] + 2 * np.pi]) % (2 * np.pi),
        np.concatenate([radii, radii[:1]]),
        period=2 * np.pi,
    )
    pts = np.stack([(w - 1) / 2 + 0.42 * w * r * np.cos(angs), (h - 1) / 2 + 0.42 * h * r * np.sin(angs)], -1)
    mask = np.zeros((h, w), np.float32)
    cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1.0)
    sigma = max(0.8, rng.uniform(0.01, 0.05) * min(h, w))
    return np.clip(cv2.GaussianBlur(mask, (0, 0), sigma), 0.0, 1.0)


# --------------------------------------------------------------------------------------------
# The clip
# --------------------------------------------------------------------------------------------


def make_synthetic_clip(
    image: np.ndarray,
    num_frames: int,
    rng: np.random.Generator,
    size: tuple[int, int] = (256, 256),
    others: Sequence[np.ndarray] = (),
    num_occluders: int | None = None,
) -> SyntheticClip:
    """Render a virtual-camera clip over ``image`` (HxWx3 linear) with 1–3 crossing occluders: its frames
    (``num_frames`` × HxWx3 float32 linear, ``size`` = (width, height)) and the occluders' masks.

    Camera: centre, zoom and rotation follow independent smooth random tracks (``smooth_track``:
    occasionally a large, fast move). Occluders: random crops of ``others`` (or of ``image`` if
    none is given) cut out by a soft random blob mask; each enters the view from outside at a
    random time, crosses it along a straight path with its own rotation/scale drift, and
    leaves. Lighting: a smooth global gain (±~35 %) and gamma (0.85–1.18) drift.
    """
    out_w, out_h = int(size[0]), int(size[1])
    image = np.asarray(image, np.float32)
    # Work from a copy whose short side is ~1.6× the output's, so the camera can zoom both ways
    # without aliasing (INTER_AREA) or blur.
    h0, w0 = image.shape[:2]
    f = 1.6 * max(out_w / w0, out_h / h0)
    if abs(f - 1) > 1e-3:
        image = cv2.resize(
            image,
            (max(out_w, round(w0 * f)), max(out_h, round(h0 * f))),
            interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR,
        )
    H, W = image.shape[:2]

    # --- camera tracks (source pixels per output pixel = zoom; angle in radians)
    step = 0.012 * min(W, H)
    cx = W / 2 + rng.uniform(-0.1, 0.1) * W + smooth_track(rng, num_frames, step)
    cy = H / 2 + rng.uniform(-0.1, 0.1) * H + smooth_track(rng, num_frames, step)
    zoom = rng.uniform(0.75, 1.2) * np.exp(smooth_track(rng, num_frames, 0.008, large_gain=3.0))
    angle = rng.uniform(-0.15, 0.15) + smooth_track(rng, num_frames, 0.004, large_gain=3.0)
    # keep the view mostly inside the photo (reflection beyond it is allowed but not dominant)
    half = 0.5 * zoom * np.hypot(out_w, out_h)
    cx = np.clip(cx, np.minimum(half * 0.6, W / 2), np.maximum(W - half * 0.6, W / 2))
    cy = np.clip(cy, np.minimum(half * 0.6, H / 2), np.maximum(H - half * 0.6, H / 2))

    # --- lighting tracks
    gain = np.exp(np.clip(smooth_track(rng, num_frames, 0.01, large_prob=0.05), -0.35, 0.35))
    gamma = np.exp(np.clip(smooth_track(rng, num_frames, 0.006, large_prob=0.05), -0.16, 0.16))

    # --- occluders: (rgba sprite, track)
    pool = list(others) if len(others) else [image]
    n_occ = int(rng.integers(1, 4)) if num_occluders is None else int(num_occluders)
    occluders = []
    for _ in range(n_occ):
        src = np.asarray(pool[int(rng.integers(len(pool)))], np.float32)
        oh = int(round(rng.uniform(0.2, 0.5) * out_h))
        ow = int(np.clip(round(oh * rng.uniform(0.6, 1.6)), 8, out_w))
        oh = max(8, oh)
        sh, sw = src.shape[:2]
        s = rng.uniform(1.0, 3.0) * max(ow / sw, oh / sh)  # crop scale from the other still
        cw, ch = min(sw, max(2, round(ow / s))), min(sh, max(2, round(oh / s)))
        x0, y0 = int(rng.integers(0, sw - cw + 1)), int(rng.integers(0, sh - ch + 1))
        sprite = cv2.resize(src[y0 : y0 + ch, x0 : x0 + cw], (ow, oh), interpolation=cv2.INTER_AREA)
        alpha = _soft_blob_mask(rng, oh, ow)
        # straight path from outside one border to outside the opposite one
        t_in = int(rng.integers(0, max(1, num_frames // 2)))
        dur = int(rng.integers(max(4, num_frames // 3), max(5, num_frames + 1)))
        theta = rng.uniform(0, 2 * np.pi)
        d = np.array([np.cos(theta), np.sin(theta)])
        reach = 0.5 * np.hypot(out_w, out_h) + 0.5 * np.hypot(ow, oh)
        mid = np.array([out_w / 2, out_h / 2]) + rng.uniform(-0.25, 0.25, 2) * [out_w, out_h]
        start, end = mid - d * reach, mid + d * reach
        rot0, drot = rng.uniform(-0.5, 0.5), rng.normal(0, 0.01)
        sc0, dsc = rng.uniform(0.9, 1.1), rng.normal(0, 0.003)
        occluders.append((sprite, alpha, t_in, dur, start, end, rot0, drot, sc0, dsc))

    frames, masks = [], []
    for k in range(num_frames):
        M = _affine_dst_to_src((cx[k], cy[k]), zoom[k], angle[k], (out_w, out_h))
        frame = cv2.warpAffine(
            image, M, (out_w, out_h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT101
        )
        occ_total = np.zeros((out_h, out_w), np.float32)
        for sprite, alpha, t_in, dur, start, end, rot0, drot, sc0, dsc in occluders:
            u = (k - t_in) / dur
            if u < 0 or u > 1:
                continue
            pos = start + (end - start) * u
            oh, ow = alpha.shape
            A = cv2.getRotationMatrix2D(
                ((ow - 1) / 2, (oh - 1) / 2), np.degrees(rot0 + drot * (k - t_in)), sc0 + dsc * (k - t_in)
            )
            A[:, 2] += pos - [(ow - 1) / 2, (oh - 1) / 2]
            spr = cv2.warpAffine(sprite, A, (out_w, out_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
            a = cv2.warpAffine(alpha, A, (out_w, out_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
            frame = frame * (1 - a[..., None]) + spr * a[..., None]
            occ_total = 1 - (1 - occ_total) * (1 - a)
        frame = gain[k] * np.power(np.maximum(frame, 0.0), gamma[k])
        frames.append(frame.astype(np.float32))
        masks.append(occ_total.astype(np.float32))
    return SyntheticClip(frames, masks)
