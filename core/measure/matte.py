"""How well a confidence matte tells where the colour is wrong: pure functions on numpy maps.

Error captured at a fraction (``error_captured``): per frame, the share of the squared Lab error that lies
in the ``fraction`` least-confident pixels. A matte that knows nothing scores ``fraction`` (0.20 at 20 %),
one that orders pixels exactly by their error scores ``error_captured_max`` (the frame's own ceiling).
Pixels of equal confidence share the cut pro rata, so a constant matte scores exactly ``fraction``.

Calibration (``CalibrationTable``): pixels binned by confidence; per bin the share of pixels, the mean
confidence, the mean Lab error (ΔE) and the fraction whose ab is within ``WITHIN_AB`` Lab units of the
truth, which is what a calibrated matte's value means (confidence.py). ``ece`` sums
|mean confidence − fraction within| over the bins, weighted by pixel share.

``fit_monotone``: the non-decreasing map from a raw score to P(within), by pool-adjacent-violators, that
``confidence.py``'s constants come from (docs/measure/fit_confidence.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

CAPTURE_FRACTION = 0.2
WITHIN_AB = 4.0  # Lab ab units: "right" for calibration, what the matte's value is a probability of
MAX_BLOCKS = 2048  # fit_monotone pools at most this many blocks of raw values
BIN_EDGES = tuple(np.round(np.linspace(0.0, 1.0, 11), 2))  # ten bins; the last one includes 1.0


def error_captured(confidence: np.ndarray, err2: np.ndarray, fraction: float = CAPTURE_FRACTION) -> float:
    """Share of ``err2`` (per-pixel squared error, any shape) in the ``fraction`` least-confident pixels of
    ``confidence`` (same shape); NaN when the frame has no error at all."""
    conf = np.ravel(confidence).astype(np.float64)
    err = np.ravel(err2).astype(np.float64)
    total = err.sum()
    if not total > 0.0:
        return float("nan")
    order = np.argsort(conf, kind="stable")
    conf, err = conf[order], err[order]
    # One group per distinct confidence value: the cut takes whole groups, then a share of the next.
    starts = np.flatnonzero(np.r_[True, conf[1:] != conf[:-1]])
    counts = np.diff(np.r_[starts, conf.size])
    sums = np.add.reduceat(err, starts)
    wanted = fraction * conf.size
    before = np.r_[0, np.cumsum(counts)[:-1]]
    taken = np.clip(wanted - before, 0, counts) / counts
    return float(np.sum(sums * taken) / total)


def error_captured_max(err2: np.ndarray, fraction: float = CAPTURE_FRACTION) -> float:
    """The best ``error_captured`` any matte reaches on this frame (confidence = −error)."""
    return error_captured(-np.asarray(err2, np.float64), err2, fraction)


def frame_errors(pred_lab: np.ndarray, true_lab: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(squared Lab error, ab error in Lab units), HxW each, of a predicted frame (HxWx3 Lab) against the truth."""
    d = np.asarray(pred_lab, np.float64) - np.asarray(true_lab, np.float64)
    return np.sum(d * d, axis=-1), np.hypot(d[..., 1], d[..., 2])


@dataclass
class CalibrationTable:
    """Per confidence bin (``BIN_EDGES``): pixel count and sums of confidence, ΔE and "ab within"."""

    count: np.ndarray = field(default_factory=lambda: np.zeros(len(BIN_EDGES) - 1))
    conf_sum: np.ndarray = field(default_factory=lambda: np.zeros(len(BIN_EDGES) - 1))
    error_sum: np.ndarray = field(default_factory=lambda: np.zeros(len(BIN_EDGES) - 1))
    within_sum: np.ndarray = field(default_factory=lambda: np.zeros(len(BIN_EDGES) - 1))

    def add(self, confidence: np.ndarray, err2: np.ndarray, ab_error: np.ndarray) -> None:
        """One frame: confidence, squared Lab error and ab error (HxW each, ``frame_errors``)."""
        conf = np.ravel(confidence).astype(np.float64)
        index = np.clip(np.searchsorted(BIN_EDGES, conf, side="right") - 1, 0, len(BIN_EDGES) - 2)
        n = len(BIN_EDGES) - 1
        self.count += np.bincount(index, minlength=n)
        self.conf_sum += np.bincount(index, conf, minlength=n)
        self.error_sum += np.bincount(index, np.sqrt(np.ravel(err2)), minlength=n)
        self.within_sum += np.bincount(index, (np.ravel(ab_error) < WITHIN_AB).astype(np.float64), minlength=n)

    def merged(self, other: "CalibrationTable") -> "CalibrationTable":
        return CalibrationTable(
            self.count + other.count,
            self.conf_sum + other.conf_sum,
            self.error_sum + other.error_sum,
            self.within_sum + other.within_sum,
        )

    def rows(self) -> list[dict]:
        """One dict per bin: lo, hi, share (of pixels), confidence (mean), error (mean ΔE), within (fraction)."""
        total = max(self.count.sum(), 1.0)
        out = []
        for i, n in enumerate(self.count):
            safe = max(n, 1.0)
            out.append(
                {
                    "lo": float(BIN_EDGES[i]),
                    "hi": float(BIN_EDGES[i + 1]),
                    "share": float(n / total),
                    "confidence": float(self.conf_sum[i] / safe) if n else None,
                    "error": float(self.error_sum[i] / safe) if n else None,
                    "within": float(self.within_sum[i] / safe) if n else None,
                }
            )
        return out

    def ece(self) -> float:
        """Expected calibration error: Σ share · |mean confidence − fraction within| over the bins."""
        total = max(self.count.sum(), 1.0)
        return float(np.sum(np.abs(self.conf_sum - self.within_sum)) / total)

    def to_json(self) -> dict:
        return {
            "edges": list(map(float, BIN_EDGES)),
            "count": self.count.tolist(),
            "conf_sum": self.conf_sum.tolist(),
            "error_sum": self.error_sum.tolist(),
            "within_sum": self.within_sum.tolist(),
        }

    @classmethod
    def from_json(cls, d: dict) -> "CalibrationTable":
        return cls(*(np.asarray(d[k], np.float64) for k in ("count", "conf_sum", "error_sum", "within_sum")))


def matte_measures(
    confidences: list[np.ndarray], preds: list[np.ndarray], truths: list[np.ndarray], fraction: float = CAPTURE_FRACTION
) -> dict:
    """The matte's measures over the frames of one clip (confidence HxW, predicted and true Lab HxWx3 each):
    ``captured`` (mean over frames of ``error_captured``), ``captured_max`` (the frames' ceiling), the
    per-frame values, and the calibration table (``CalibrationTable.to_json``)."""
    table = CalibrationTable()
    captured, ceiling = [], []
    for conf, pred, true in zip(confidences, preds, truths):
        err2, ab_error = frame_errors(pred, true)
        captured.append(error_captured(conf, err2, fraction))
        ceiling.append(error_captured_max(err2, fraction))
        table.add(conf, err2, ab_error)
    return {
        "fraction": fraction,
        "captured": _nanmean(captured),
        "captured_max": _nanmean(ceiling),
        "per_frame": captured,
        "calibration": table.to_json(),
    }


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


# ---------------------------------------------------------------- fitting a calibration


def fit_monotone(raw: np.ndarray, within: np.ndarray, knots: int = 12) -> list[tuple[float, float]]:
    """Knots (raw, probability) of the non-decreasing map from a raw score to P(within), by
    pool-adjacent-violators on the pairs (``raw`` any shape, ``within`` booleans alike), thinned to at most
    ``knots`` points that ``np.interp`` joins; the first and last knot are the lowest and highest raw value."""
    raw = np.ravel(raw).astype(np.float64)
    y = np.ravel(within).astype(np.float64)
    order = np.argsort(raw, kind="stable")
    raw, y = raw[order], y[order]
    # Blocks of equal raw value, or (many distinct values) of equal-count quantile bins: the pooling below
    # is a loop over blocks.
    edges = raw if np.unique(raw).size <= MAX_BLOCKS else np.quantile(raw, np.linspace(0.0, 1.0, MAX_BLOCKS + 1))
    index = np.clip(np.searchsorted(np.unique(edges), raw, side="right") - 1, 0, None)
    starts = np.flatnonzero(np.r_[True, index[1:] != index[:-1]])
    ends = np.r_[starts[1:], raw.size]
    ws = (ends - starts).astype(np.float64)
    ys = np.add.reduceat(y, starts) / ws
    # Pool adjacent violators: a stack of blocks (mean, weight, first x, last x).
    means, weights, x_first, x_last = [], [], [], []
    for m, w, x0, x1 in zip(ys, ws, raw[starts], raw[ends - 1]):
        means.append(m), weights.append(w), x_first.append(x0), x_last.append(x1)
        while len(means) > 1 and means[-2] > means[-1]:
            w2 = weights[-2] + weights[-1]
            means[-2] = (means[-2] * weights[-2] + means[-1] * weights[-1]) / w2
            weights[-2], x_last[-2] = w2, x_last[-1]
            del means[-1], weights[-1], x_first[-1], x_last[-1]
    # Each pooled block becomes a knot at its weighted centre (its ends when it is the first or last).
    centres = [(a + b) / 2.0 for a, b in zip(x_first, x_last)]
    centres[0], centres[-1] = x_first[0], x_last[-1]
    points = list(zip(centres, means, weights))
    while len(points) > knots:  # merge the lightest adjacent pair: the map stays non-decreasing
        i = min(range(len(points) - 1), key=lambda k: points[k][2] + points[k + 1][2])
        (xa, ma, wa), (xb, mb, wb) = points[i], points[i + 1]
        w = wa + wb
        x = xa if i == 0 else xb if i + 1 == len(points) - 1 else (xa * wa + xb * wb) / w
        points[i : i + 2] = [(x, (ma * wa + mb * wb) / w, w)]
    return [(float(x), float(m)) for x, m, _ in points]
