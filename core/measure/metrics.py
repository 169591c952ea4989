"""Evaluation metrics on Lab images (numpy HWC float32: L 0..100, a/b in Lab units).

Lab-PSNR. The paper (Meyer et al. 2018, Fig. 8/9) reports "PSNR in Lab-space" averaged over the
first N frames but does not state the peak or the channel weighting. We define it as

    MSE  = mean over all pixels and the three channels L, a, b of (pred - true)²
    PSNR = 10 · log10(100² / MSE)

i.e. the peak is the L range (100), the three channels weigh equally, and PSNR is computed per
frame and then averaged over the first N propagated frames (as their per-frame plot, Fig. 9,
implies; the key, frame 1, is not scored because propagation returns it exactly). Because methods
under test reuse the true L, the error is chroma only and the "gray" baseline (a = b = 0) gives
PSNR = 10·log10(3·100² / mean(a² + b²)). Sanity check against the paper: their gray baseline
is 33.65 dB, which under this definition means an rms chroma of ~3.6 Lab units on their test set
(under a 255 peak it would be ~9.1). Our dev clips are far more colourful (mean chroma 9–100
Lab units; gray scores 4–24 dB on them), so absolute numbers are not comparable to the paper's
table — only differences between methods on the same clips are.
"""

from __future__ import annotations

import numpy as np

LAB_PSNR_PEAK = 100.0


def lab_mse(pred_lab: np.ndarray, true_lab: np.ndarray) -> float:
    """Mean squared error over all pixels and the 3 Lab channels (HxWx3 each)."""
    pred = np.asarray(pred_lab, np.float64)
    true = np.asarray(true_lab, np.float64)
    if pred.shape != true.shape or pred.shape[-1] != 3:
        raise ValueError(f"lab_psnr needs two HxWx3 Lab images of the same size, got {pred.shape} and {true.shape}")
    return float(np.mean((pred - true) ** 2))


def lab_psnr(pred_lab: np.ndarray, true_lab: np.ndarray, peak: float = LAB_PSNR_PEAK, max_db: float = 100.0) -> float:
    """PSNR in dB of a predicted Lab image (HxWx3) against the truth; see the module docstring.

    Identical images return ``max_db`` instead of infinity so that averages stay finite.
    """
    return psnr_of_mse(lab_mse(pred_lab, true_lab), peak, max_db)


def psnr_of_mse(mse: float, peak: float = LAB_PSNR_PEAK, max_db: float = 100.0) -> float:
    """10 · log10(peak² / mse) in dB, ``max_db`` for an error of (nearly) zero."""
    if mse <= peak**2 * 10 ** (-max_db / 10):
        return float(max_db)
    return float(10.0 * np.log10(peak**2 / mse))


def mean_lab_psnr_first_n(pred_labs: list[np.ndarray], true_labs: list[np.ndarray], n: int) -> float:
    """The paper's figure-8 number: per-frame Lab-PSNR averaged over the first ``n`` propagated frames.

    Lists start at the key (frame 1), which is not scored (propagation returns it exactly); the
    average runs over frames 2..n+1, so N=50 needs 51 frames (the dev ranges have 51).
    """
    m = min(len(pred_labs), len(true_labs)) - 1
    if n < 1 or m < n:
        raise ValueError(f"need the key plus {n} propagated frames, got {m + 1} frames")
    return float(np.mean([lab_psnr(p, t) for p, t in zip(pred_labs[1 : n + 1], true_labs[1 : n + 1])]))


def colourfulness(lab: np.ndarray) -> float:
    """Mean chroma magnitude sqrt(a² + b²) in Lab units of an HxWx3 Lab image (0 for gray)."""
    lab = np.asarray(lab, np.float64)
    return float(np.mean(np.hypot(lab[..., 1], lab[..., 2])))
