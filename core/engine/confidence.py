"""Per-pixel confidence of propagated colour: carried along the run, blended, written as a matte.

Two maps per frame (numpy HxW float32 in [0, 1], working resolution), both 1 at a key:

carried   how well the pixel is tracked back to the key. Each step moves the previous frame's value to
          where its pixels went (the backward flow that carries the colour) and multiplies it by this
          step's cues:

              carried_k(x) = carried_{k-1}(x + b(x)) · trust_k(x) · photometric_k(x)
              trust_k      = 1 − (1 − consistency_k)(1 − FLAT_TRUST · flatness_k)

          consistency  forward-backward agreement of the DIS flow (flow.forward_backward_consistency):
                       0 in occlusions and where a pixel came from outside the previous frame
          flatness     1 where this frame's L has no texture nearby (``flatness``): there DIS fails its
                       own check at random, yet colour carried from the same luminance is right (a plain
                       backdrop); an object entering still loses it through the photometric cue
          photometric  exp(-dL² / 2σ²), dL = this frame's L minus the previous L warped along the flow,
                       σ = ``PHOTOMETRIC_SIGMA`` L units: a new object walks in with a luminance the
                       warped background does not have.

          It decays with distance from the key and drops for good where colour had to be invented.
          Two runs meeting between keys are weighed by it (``blend_by_confidence``): it measured best
          for that, better than the written matte below (docs/KEYS.md).

written   the ``colorprop.confidence`` matte a compositor sees (and ``suggest-keys`` reads): the probability
          that the written colour is right, i.e. that its ab lies within 4 Lab units of the truth
          (measure/matte.py measures it against that meaning in ``colorprop eval``).

          flow, local   ``calibrated(carried)``: the tracking value through a monotone map fitted on the
                        training clips (``FLOW_CALIBRATION``, docs/measure/fit_confidence.py). Tracked
                        texture stays high, edges included; where the flow lost the pixel (a dis-occlusion,
                        something entering, a luminance change) it falls, and it falls further from the key.
          global        the same map on the key match's similarity (not fitted for it)
          full          F_f's own confidence head, trained against its own error (nets/fusion_net.py);
                        the tracking value above still weighs two runs meeting between keys

          Where two runs meet between keys (``meet_confidence``) the blended colour is right where it stayed
          near a run that is right: runs that disagree make the confidence fall.
"""

from __future__ import annotations

import cv2
import numpy as np

from colorprop.engine.flow import warp_backward

PHOTOMETRIC_SIGMA = 2.0  # L units; chosen on the dev clips (docs/KEYS.md)
# Textureless luminance: DIS cannot track it (its forward-backward check fails at random there), yet colour
# carried within it from the same luminance is right. A step keeps confidence there where the luminance
# matches: trust = 1 − (1 − consistency)(1 − FLAT_TRUST · flatness). Training clips (docs/KEYS.md).
FLAT_TRUST = 0.9
FLAT_SIGMA = 4.0  # pixels (working resolution): the window over which texture is measured
FLAT_SCALE = 1.0  # L units per pixel: rms gradient at which flatness is e⁻¹
BLEND_FLOOR = 0.02  # confidence every pixel keeps in the blend (dev clips, docs/KEYS.md)
# The blend's distance prior per method: the learned fusion's colour drifts along a run even where the
# flow tracks every pixel (its carried confidence cannot see that), so its runs are trusted less far from
# their key. Measured on the dev clips (docs/KEYS.md).
BLEND_PRIOR_POWER = {"flow": 2.0, "local": 2.0, "global": 2.0, "full": 4.0}
LOW_CONFIDENCE = 0.5  # "low" for the fraction reported per frame (suggest-keys): more likely wrong than right
MEET_SCALE = 2.0  # Lab ab units: how far a blend may leave a run's colour and keep its confidence (training clips)
# P(ab within 4 Lab units of the truth) against the carried value, for the flow-carried colour (flow, local):
# (raw, probability) knots of a monotone fit on the training clips of core/data/split.json, one key, method
# flow; produced by `python docs/measure/fit_confidence.py` (docs/KEYS.md).
FLOW_CALIBRATION = (
    (0.00000, 0.3451),
    (0.18114, 0.7892),
    (0.50907, 0.9086),
    (0.71045, 0.9376),
    (0.82105, 0.9507),
    (0.88804, 0.9570),
    (0.93549, 0.9617),
    (0.96232, 0.9681),
    (0.97971, 0.9772),
    (0.99413, 0.9880),
    (0.99959, 0.9989),
    (1.00000, 0.9999),
)  # two-fold check by range: calibration error 0.019 / 0.040


def photometric_similarity(L: np.ndarray, prev_L_warped: np.ndarray, sigma: float = PHOTOMETRIC_SIGMA) -> np.ndarray:
    """HxW in [0, 1]: 1 where the warped previous luminance equals this frame's, falling off with dL."""
    d = np.asarray(L, np.float32) - np.asarray(prev_L_warped, np.float32)
    return np.exp(-(d * d) / (2.0 * sigma * sigma)).astype(np.float32)


def carry_confidence(
    prev_conf: np.ndarray,
    prev_L: np.ndarray,
    L: np.ndarray,
    flow_bwd: np.ndarray,
    consistency: np.ndarray,
    flat_trust: float | None = None,
) -> np.ndarray:
    """This frame's confidence (HxW) from the previous one's, the backward flow cur→prev (HxWx2) and the
    flow's forward-backward consistency (HxW). See the module docstring."""
    warped = warp_backward(np.dstack([prev_conf, prev_L]), flow_bwd)
    k = FLAT_TRUST if flat_trust is None else flat_trust
    trust = either_right(consistency, k * flatness(L) if k else 0.0)  # (the chain's cue trusts no flatness)
    conf = np.clip(warped[..., 0], 0.0, 1.0) * trust * photometric_similarity(L, warped[..., 1])
    return conf.astype(np.float32)


def gradient_energy(L: np.ndarray) -> np.ndarray:
    """HxW squared luminance gradient, (L units per pixel)², from the Sobel filter / 8."""
    L = np.asarray(L, np.float32)
    gx = cv2.Sobel(L, cv2.CV_32F, 1, 0, borderType=cv2.BORDER_REPLICATE)
    gy = cv2.Sobel(L, cv2.CV_32F, 0, 1, borderType=cv2.BORDER_REPLICATE)
    return (gx * gx + gy * gy) / 64.0


def flatness(L: np.ndarray, sigma: float = FLAT_SIGMA, scale: float = FLAT_SCALE) -> np.ndarray:
    """HxW in [0, 1]: 1 where the luminance has no texture within ~``sigma`` pixels, exp(−(t / scale)²) with
    t the rms L gradient (L units per pixel) under a Gaussian window."""
    texture2 = cv2.GaussianBlur(gradient_energy(L), (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)
    return np.exp(-texture2 / (scale * scale)).astype(np.float32)


def calibrated(raw: np.ndarray, knots=None) -> np.ndarray:
    """P(ab within 4 Lab units) for a raw tracking value (HxW in [0, 1]) through the monotone map ``knots``
    ((raw, probability) pairs, ascending; default ``FLOW_CALIBRATION``), joined linearly."""
    xs, ps = zip(*(FLOW_CALIBRATION if knots is None else knots))
    return np.interp(np.asarray(raw, np.float32), xs, ps).astype(np.float32)


def written_confidence(carried: np.ndarray) -> np.ndarray:
    """The matte written for flow, local and global (module docstring): the calibrated tracking value."""
    return calibrated(carried)


def meet_confidence(
    ab: np.ndarray,
    ab_f: np.ndarray,
    conf_f: np.ndarray,
    ab_b: np.ndarray,
    conf_b: np.ndarray,
    scale: float = MEET_SCALE,
) -> np.ndarray:
    """The written matte (HxW) of a blended colour ``ab`` (HxWx2) from the forward and backward runs' colour
    (HxWx2 each) and written confidence (HxW each): the blend is right where it stayed near a run that is
    right,

        max(conf_f · near(ab, ab_f), conf_b · near(ab, ab_b)),   near = exp(−(|Δab| / scale)²)

    so where the runs agree the surer one speaks, and where they disagree the run the blend left behind
    does not. Chosen on two-key runs of the training clips against ``either_right`` (which claims more than
    either run: it overstated the share of right pixels) and the product form (docs/KEYS.md)."""

    def near(other: np.ndarray) -> np.ndarray:
        d2 = np.sum((np.asarray(ab, np.float32) - np.asarray(other, np.float32)) ** 2, axis=-1)
        return np.exp(-d2 / (scale * scale))

    return np.maximum(conf_f * near(ab_f), conf_b * near(ab_b)).astype(np.float32)


# ---------------------------------------------------------------- two runs meeting between keys


def blend_by_confidence(
    ab_f: np.ndarray,
    carried_f: np.ndarray,
    ab_b: np.ndarray,
    carried_b: np.ndarray,
    t: float,
    power: float = 2.0,
    floor: float = BLEND_FLOOR,
) -> np.ndarray:
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


def blend_crossfade(
    ab_f: np.ndarray, carried_f: np.ndarray, ab_b: np.ndarray, carried_b: np.ndarray, t: float
) -> np.ndarray:
    """The baseline: a fixed linear crossfade by frame distance, ``t`` = 0 at the earlier key, 1 at the later."""
    return ((1.0 - t) * ab_f + t * ab_b).astype(np.float32)


def either_right(conf_f: np.ndarray, conf_b: np.ndarray) -> np.ndarray:
    """Confidence of two estimates together (HxW each): right if either is right."""
    return (1.0 - (1.0 - conf_f) * (1.0 - conf_b)).astype(np.float32)


# ---------------------------------------------------------------- summarising a frame (suggest-keys; measure/matte.py
# measures)


def frame_summary(conf: np.ndarray, low: float = LOW_CONFIDENCE) -> dict[str, float]:
    """Mean confidence and fraction of pixels below ``low`` of one frame (HxW)."""
    conf = np.asarray(conf, np.float32)
    return {"mean": float(conf.mean()), "low_fraction": float((conf < low).mean())}
