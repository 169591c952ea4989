"""Per-pixel confidence of propagated colour: carried along the run, blended, written as a matte.

Two maps per frame (numpy HxW float32 in [0, 1], working resolution), both 1 at a key:

carried   how well the pixel is tracked back to the key. Each step moves the previous frame's value to
          where its pixels went (the backward flow that carries the colour) and multiplies it by this
          step's cues:

              carried_k(x) = carried_{k-1}(x + b(x)) · consistency_k(x) · photometric_k(x)

          consistency  forward-backward agreement of the DIS flow (flow.forward_backward_consistency):
                       0 in occlusions and where a pixel came from outside the previous frame
          photometric  exp(-dL² / 2σ²), dL = this frame's L minus the previous L warped along the flow,
                       σ = ``PHOTOMETRIC_SIGMA`` L units: a new object walks in with a luminance the
                       warped background does not have.

          It decays with distance from the key and drops for good where colour had to be invented.
          Two runs meeting between keys are weighed by it (``blend_by_confidence``): it measured best
          for that, better than the written matte below (docs/KEYS.md).

written   the ``colorprop.confidence`` matte a compositor sees (and ``suggest-keys`` reads): how right
          the colour is, from the carried value and this frame's own cues, which are not carried on:

              written = [1 − (1 − carried)(1 − similarity)] · agreement · edge

          similarity  (full) the key match's cosine similarity: a strong match restores confidence
          agreement   (full) exp(−|ab_local − ab_global|² / s²), s = ``AGREEMENT_SCALE``: the two branches
                      disagree where the colour is uncertain
          edge        exp(−(|∇L| / ``EDGE_SCALE``)²): chroma is least certain across luminance edges,
                      where a half-pixel misalignment of the colour shows
          ``global`` has no flow: its carried value is the similarity. ``flow``/``local`` use the edge cue only.
          Chosen by the error ratio on the dev clips (docs/KEYS.md).
"""

from __future__ import annotations

import cv2
import numpy as np

from colorprop.engine.flow import warp_backward

EDGE_SCALE = 8.0  # L units per pixel (Sobel / 8); dev clips, docs/KEYS.md
AGREEMENT_SCALE = 5.0  # Lab ab units; dev clips, docs/KEYS.md
STEP_DECAY = 1.0  # per frame; measured: any decay < 1 lowers the error ratio on the dev clips
PHOTOMETRIC_SIGMA = 2.0  # L units; chosen on the dev clips (docs/KEYS.md)
BLEND_FLOOR = 0.02  # confidence every pixel keeps in the blend (dev clips, docs/KEYS.md)
# The blend's distance prior per method: the learned fusion's colour drifts along a run even where the
# flow tracks every pixel (its carried confidence cannot see that), so its runs are trusted less far from
# their key. Measured on the dev clips (docs/KEYS.md).
BLEND_PRIOR_POWER = {"flow": 2.0, "local": 2.0, "global": 2.0, "full": 4.0}
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


def agreement(ab_a: np.ndarray, ab_b: np.ndarray, scale: float = AGREEMENT_SCALE) -> np.ndarray:
    """HxW in [0, 1]: 1 where two colour estimates (HxWx2 each) agree, falling off with their distance."""
    d2 = np.sum((np.asarray(ab_a, np.float32) - np.asarray(ab_b, np.float32)) ** 2, axis=-1)
    return np.exp(-d2 / (scale * scale)).astype(np.float32)


def edge_cue(L: np.ndarray, scale: float = EDGE_SCALE) -> np.ndarray:
    """HxW in [0, 1]: 1 on flat luminance, falling off with the L gradient (L units per pixel)."""
    L = np.asarray(L, np.float32)
    gx = cv2.Sobel(L, cv2.CV_32F, 1, 0, borderType=cv2.BORDER_REPLICATE)
    gy = cv2.Sobel(L, cv2.CV_32F, 0, 1, borderType=cv2.BORDER_REPLICATE)
    g2 = (gx * gx + gy * gy) / 64.0
    return np.exp(-g2 / (scale * scale)).astype(np.float32)


def written_confidence(carried: np.ndarray, L: np.ndarray, similarity: np.ndarray | None = None,
                       agreement_: np.ndarray | None = None) -> np.ndarray:
    """The matte that is written (module docstring); ``similarity``/``agreement_`` only with ``full``."""
    conf = carried if similarity is None else either_right(carried, similarity)
    if agreement_ is not None:
        conf = conf * agreement_
    return (conf * edge_cue(L)).astype(np.float32)


# ---------------------------------------------------------------- two runs meeting between keys


def blend_by_confidence(ab_f: np.ndarray, carried_f: np.ndarray, ab_b: np.ndarray, carried_b: np.ndarray,
                        t: float, power: float = 2.0, floor: float = BLEND_FLOOR) -> np.ndarray:
    """Per-pixel weighted mean (HxWx2) of the forward and backward colour (HxWx2 each), weighed by their
    carried confidence (HxW each); ``t`` = 0 at the earlier key, 1 at the later.

        w_f = (1 − t)^p · (carried_f + floor)        w_b = t^p · (carried_b + floor)

    Confidence decides wherever one run is sure and the other is not; the distance prior decides where
    both are lost (a dis-occlusion seen by neither key), favouring the nearer key, whose colour has had
    fewer frames to drift. ``power`` p per method: ``BLEND_PRIOR_POWER``. Chosen on the dev clips against
    plain confidence weights, powers of confidence, other priors and the written matte (docs/KEYS.md)."""
    w_f = (1.0 - t) ** power * (carried_f + floor)
    w_b = t**power * (carried_b + floor)
    return ((ab_f * w_f[..., None] + ab_b * w_b[..., None]) / (w_f + w_b)[..., None]).astype(np.float32)


def blend_crossfade(ab_f: np.ndarray, carried_f: np.ndarray, ab_b: np.ndarray, carried_b: np.ndarray,
                    t: float) -> np.ndarray:
    """The baseline: a fixed linear crossfade by frame distance, ``t`` = 0 at the earlier key, 1 at the later."""
    return ((1.0 - t) * ab_f + t * ab_b).astype(np.float32)


def either_right(conf_f: np.ndarray, conf_b: np.ndarray) -> np.ndarray:
    """Confidence of two estimates together (HxW each): right if either is right."""
    return (1.0 - (1.0 - conf_f) * (1.0 - conf_b)).astype(np.float32)


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
