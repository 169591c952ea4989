"""Classical baseline: colour propagation by DIS optical flow (OpenCV).

For each new frame k the backward flow k→k-1 (DIS, PRESET_MEDIUM, on 8-bit L) tells where each
pixel of frame k was in frame k-1; the previous frame's chroma (ab) is fetched there with
``cv2.remap`` (bilinear, border replicate). Luminance is always the current frame's own L.
The forward flow k-1→k gives the forward-backward consistency check (Sundaram et al. 2010),
returned as a soft per-pixel confidence in [0, 1] — a cue for the fusion network.

Conventions: numpy HWC float32; L in 0..100 (HxW), ab in Lab units (HxWx2). Flow is HxWx2 in
pixels, (dx, dy), such that ``cur(x) ≈ prev(x + flow(x))``.
"""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np

# Forward-backward check (Sundaram, Brox, Keutzer, ECCV 2010): consistent when
# |w + w^|^2 < ALPHA (|w|^2 + |w^|^2) + BETA. We turn the ratio into a soft confidence.
FB_ALPHA = 0.01
FB_BETA = 0.5


class FlowStep(NamedTuple):
    ab: np.ndarray | None  # HxWx2 float32, Lab units: chroma propagated onto the current frame (None: none given)
    consistency: np.ndarray  # HxW float32 in [0, 1]: forward-backward flow consistency
    flow: np.ndarray  # HxWx2 float32 pixels: backward flow cur → prev used for the warp


def l_to_u8(L: np.ndarray) -> np.ndarray:
    """Lab L (HxW, 0..100, may exceed 100) → uint8 0..255 for DIS. Clips: flow input only."""
    return np.clip(np.rint(np.asarray(L, np.float32) * 2.55), 0, 255).astype(np.uint8)


def make_dis(preset: int = cv2.DISOPTICAL_FLOW_PRESET_MEDIUM):
    return cv2.DISOpticalFlow_create(preset)


def dis_flow(dis, src_u8: np.ndarray, dst_u8: np.ndarray) -> np.ndarray:
    """Flow HxWx2 (pixels) with ``src(x) ≈ dst(x + flow(x))``."""
    return dis.calc(src_u8, dst_u8, None)


def _sample_grid(flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # A row of x and a column of y broadcast: the same sums as full coordinate grids, without making them.
    h, w = flow.shape[:2]
    return np.arange(w, dtype=np.float32) + flow[..., 0], np.arange(h, dtype=np.float32)[:, None] + flow[..., 1]


def warp_backward(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Sample ``image`` (HxW or HxWxC, C ≤ 4) at ``x + flow(x)``: bilinear, border replicate."""
    map_x, map_y = _sample_grid(flow)
    return cv2.remap(
        np.ascontiguousarray(image, dtype=np.float32),
        map_x,
        map_y,
        interpolation=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )


def resize_flow(flow: np.ndarray, width: int, height: int) -> np.ndarray:
    """A flow field (hxwx2, pixels) at another size (HxWx2): resampled bilinearly and its vectors scaled."""
    h, w = flow.shape[:2]
    if (w, h) == (width, height):
        return flow
    out = cv2.resize(flow, (width, height), interpolation=cv2.INTER_LINEAR)
    out[..., 0] *= width / w
    out[..., 1] *= height / h
    return out


def forward_backward_consistency(flow_bwd: np.ndarray, flow_fwd: np.ndarray) -> np.ndarray:
    """Soft consistency HxW in [0, 1] of the backward flow (cur → prev) against the forward flow.

    ``flow_bwd``: cur(x) ≈ prev(x + b(x)); ``flow_fwd``: prev(y) ≈ cur(y + f(y)). For a
    consistent pixel f(x + b(x)) ≈ -b(x). With err = |b + f(x+b)|² and
    tol = ALPHA (|b|² + |f(x+b)|²) + BETA, confidence = exp(-err / tol): 1 when the flows agree,
    e⁻¹ at Sundaram's hard threshold, → 0 in occlusions. Pixels whose match leaves the previous
    frame get 0 (they are dis-occluded by the border).
    """
    h, w = flow_bwd.shape[:2]
    map_x, map_y = _sample_grid(flow_bwd)
    f_at = cv2.remap(flow_fwd, map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    err = np.sum((flow_bwd + f_at) ** 2, axis=-1)
    tol = FB_ALPHA * (np.sum(flow_bwd**2, axis=-1) + np.sum(f_at**2, axis=-1)) + FB_BETA
    conf = np.exp(-err / tol)
    outside = (map_x < -0.5) | (map_x > w - 0.5) | (map_y < -0.5) | (map_y > h - 0.5)
    conf[outside] = 0.0
    return conf.astype(np.float32)


def flow_step(dis, prev_L: np.ndarray, prev_ab: np.ndarray | None, L: np.ndarray, store=None) -> FlowStep:
    """DIS flow from the current frame back to the previous one; previous ab warped along it (None: no ab).

    ``store``: a shot cache's flows (shot/cache.py ``FlowEntries``): ``get(cur_u8, prev_u8)`` -> (flow cur ->
    prev, flow prev -> cur, the first one's consistency or None) or None; ``put(cur_u8, prev_u8, bwd, fwd,
    consistency)``. DIS and the check depend on the two 8-bit images alone, so what is stored is bit for bit
    what is computed; a pair stored the other way round gives its two flows, its consistency is computed."""
    cur_u8, prev_u8 = l_to_u8(L), l_to_u8(prev_L)
    stored = None if store is None else store.get(cur_u8, prev_u8)
    if stored is None:
        flow_bwd = dis_flow(dis, cur_u8, prev_u8)
        flow_fwd = dis_flow(dis, prev_u8, cur_u8)
        stored = flow_bwd, flow_fwd, None
    flow_bwd, flow_fwd, consistency = stored
    if consistency is None:
        consistency = forward_backward_consistency(flow_bwd, flow_fwd)
        if store is not None:
            store.put(cur_u8, prev_u8, flow_bwd, flow_fwd, consistency)
    ab = None if prev_ab is None else warp_backward(prev_ab, flow_bwd)
    return FlowStep(ab, consistency, flow_bwd)
