"""Per-pixel confidence of propagated colour: carried along the run, used to blend and to suggest keys.

Confidence is a probability-like number in [0, 1] per pixel (numpy HxW float32, working resolution).
The key frame is 1 everywhere. Each step carries the previous frame's confidence to where its pixels
went (the same backward flow that carries the colour) and multiplies it by this step's cues:

    conf_k(x) = conf_{k-1}(x + b(x)) · consistency_k(x) · similarity_k(x)

    consistency  forward-backward agreement of the DIS flow (flow.forward_backward_consistency):
                 0 in occlusions and where a pixel came from outside the previous frame
    similarity   how well the previous frame's luminance, warped along the flow, matches this one:
                 exp(-dL² / 2σ²) with σ = ``PHOTOMETRIC_SIGMA`` L units. A new object walks in with
                 a luminance the warped background does not have.

So a pixel's confidence is the product of every step's cues along its path from the key: it decays
with distance from the key and drops for good where colour had to be invented (dis-occlusion, a new
object). With the global branch (method full), the key match can restore it:
``propagate.confidence_from_cues(similarity_key, carried)``.

Two runs meeting between keys are blended per pixel by confidence (``blend_by_confidence``); the
fixed crossfade by frame distance is kept as the baseline it must beat (``blend_crossfade``).
"""

from __future__ import annotations

import numpy as np

from .flow import warp_backward

STEP_DECAY = 1.0  # per frame; measured: any decay < 1 lowers the error ratio on the dev clips
PHOTOMETRIC_SIGMA = 2.0  # L units; chosen on the dev clips (docs/KEYS.md)
BLEND_FLOOR = 0.02  # confidence every pixel keeps in the blend (dev clips, docs/KEYS.md)
LOW_CONFIDENCE = 0.5  # "low" for the fraction reported per frame (suggest-keys)


def photometric_similarity(L: np.ndarray, prev_L_warped: np.ndarray, sigma: float = PHOTOMETRIC_SIGMA) -> np.ndarray:
    """HxW in [0, 1]: 1 where the warped previous luminance equals this frame's, falling off with dL."""
    d = np.asarray(L, np.float32) - np.asarray(prev_L_warped, np.float32)
    return np.exp(-(d * d) / (2.0 * sigma * sigma)).astype(np.float32)


def carry_confidence(prev_conf: np.ndarray, prev_L: np.ndarray, L: np.ndarray, flow_bwd: np.ndarray,
                     consistency: np.ndarray, step_decay: float | None = None) -> np.ndarray:
    """This frame's confidence (HxW) from the previous one's, the backward flow cur→prev (HxWx2) and the
    flow's forward-backward consistency (HxW). See the module docstring."""
    warped = warp_backward(np.dstack([prev_conf, prev_L]), flow_bwd)
    decay = STEP_DECAY if step_decay is None else step_decay
    conf = decay * np.clip(warped[..., 0], 0.0, 1.0) * consistency * photometric_similarity(L, warped[..., 1])
    return conf.astype(np.float32)


# ---------------------------------------------------------------- two runs meeting between keys


def blend_by_confidence(ab_f: np.ndarray, conf_f: np.ndarray, ab_b: np.ndarray, conf_b: np.ndarray,
                        t: float, floor: float = BLEND_FLOOR) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel weighted mean of the forward and backward colour (HxWx2 each, conf HxW); ``t`` = 0 at
    the earlier key, 1 at the later.

        w_f = (1 − t)² · (conf_f + floor)        w_b = t² · (conf_b + floor)

    Confidence decides wherever one run is sure and the other is not; the squared distance prior
    decides where both are lost (a dis-occlusion seen by neither key), favouring the nearer key,
    whose invented colour has had fewer frames to drift. Chosen on the dev clips against plain
    confidence weights, powers of confidence and other priors (docs/KEYS.md)."""
    w_f = (1.0 - t) ** 2 * (conf_f + floor)
    w_b = t**2 * (conf_b + floor)
    ab = (ab_f * w_f[..., None] + ab_b * w_b[..., None]) / (w_f + w_b)[..., None]
    conf = 1.0 - (1.0 - conf_f) * (1.0 - conf_b)  # right if either run is right
    return ab.astype(np.float32), conf.astype(np.float32)


def blend_crossfade(ab_f: np.ndarray, conf_f: np.ndarray, ab_b: np.ndarray, conf_b: np.ndarray,
                    t: float) -> tuple[np.ndarray, np.ndarray]:
    """The baseline: a fixed linear crossfade by frame distance, ``t`` = 0 at the earlier key, 1 at the later."""
    ab = (1.0 - t) * ab_f + t * ab_b
    conf = (1.0 - t) * conf_f + t * conf_b
    return ab.astype(np.float32), conf.astype(np.float32)


# ---------------------------------------------------------------- measuring it


def frame_summary(conf: np.ndarray, low: float = LOW_CONFIDENCE) -> dict[str, float]:
    """Mean confidence and fraction of pixels below ``low`` of one frame (HxW)."""
    conf = np.asarray(conf, np.float32)
    return {"mean": float(conf.mean()), "low_fraction": float((conf < low).mean())}


def error_ratio_by_confidence(confidences: list[np.ndarray], errors: list[np.ndarray],
                              fraction: float = 0.1) -> dict[str, float]:
    """Mean per-pixel error of the lowest-confidence ``fraction`` of pixels over that of the highest,
    pooled over the given frames (HxW each). Ties in confidence are broken by a fixed random order so
    a block of equal values is split without bias."""
    conf = np.concatenate([np.ravel(c) for c in confidences]).astype(np.float64)
    err = np.concatenate([np.ravel(e) for e in errors]).astype(np.float64)
    n = max(1, int(round(fraction * conf.size)))
    jitter = np.random.default_rng(0).random(conf.size) * 1e-9
    order = np.argsort(conf + jitter, kind="stable")
    low, high = float(err[order[:n]].mean()), float(err[order[-n:]].mean())
    return {"low_error": low, "high_error": high, "ratio": low / max(high, 1e-9),
            "low_confidence": float(conf[order[:n]].mean()), "high_confidence": float(conf[order[-n:]].mean())}
