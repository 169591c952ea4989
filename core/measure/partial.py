"""`colorprop eval --partial`: does a partial key fix what it is painted on, and only that?

Per range and method, from the one-key run (the true colour of frame 1) that ``colorprop eval`` scores anyway:

1. the frame to fix is the one ``suggest-keys`` names (``shot.suggest``, from the written matte);
2. the painted region is where that run's error is largest at that frame: its worst ``WORST_SHARE`` of pixels by
   Lab error, dilated by ``DILATE_FRACTION`` of the width and softened at its edge (what an artist's brush does);
3. the partial key is the true colour of that frame with that matte as alpha; the shot is coloured again with the
   key at frame 1 and the partial key.

Reported: the mean Lab error inside the painted region (matte > 0.5) at its frame before and after (``fall``: the
share of it that went away); the frames the correction reached (any pixel changed) and the mean Lab-PSNR over them
before and after; the mean Lab error over the changed pixels of the other reached frames before and after; and
the frames it did not reach, which must be bitwise the one-key run's (``unreached_equal``).
"""

from __future__ import annotations

import cv2
import numpy as np

from colorprop.engine.confidence import frame_summary
from colorprop.engine.engine import Engine, ShotOptions
from colorprop.measure.metrics import lab_psnr
from colorprop.shot.frames import ArraySink, ArraySource, KeyImage
from colorprop.shot.pipeline import run_shot
from colorprop.shot.suggest import suggest_frames

WORST_SHARE = 0.10  # the painted region: the one-key run's worst 10 % of pixels at that frame ...
DILATE_FRACTION = 0.01  # ... dilated by 1 % of the width
EDGE_SIGMA = 1.5  # pixels: the brush's soft edge
EVAL_SPACE = "Linear Rec.709 (sRGB)"


def painted_matte(pred_lab: np.ndarray, true_lab: np.ndarray) -> np.ndarray:
    """HxW float32 in [0, 1]: the worst ``WORST_SHARE`` of pixels by Lab error, dilated, soft at its edge."""
    error = np.linalg.norm(pred_lab.astype(np.float64) - true_lab, axis=-1)
    worst = error >= np.quantile(error, 1.0 - WORST_SHARE)
    radius = max(2, round(DILATE_FRACTION * error.shape[1]))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    region = cv2.dilate(worst.astype(np.uint8), kernel).astype(np.float32)
    soft = cv2.GaussianBlur(region, (0, 0), EDGE_SIGMA)
    return np.clip(soft, 0.0, 1.0).astype(np.float32)


def colour_with_keys(engine: Engine, frames_linear: list[np.ndarray], keys: dict[int, KeyImage], method: str):
    """Lab frames (numbered from 1) of the gray clip coloured from ``keys`` through ``run_shot``."""
    from colorprop.colour import convert

    gray = {i + 1: np.repeat(convert.luminance(f)[..., None], 3, axis=2) for i, f in enumerate(frames_linear)}
    sink = ArraySink()
    options = ShotOptions.from_dict({"method": method, "colorspace": EVAL_SPACE})
    run_shot(engine, ArraySource(gray, colorspace=EVAL_SPACE), keys, options, sink)
    return {f: convert.linear_rec709_to_lab(sink.results[f].rgb) for f in sorted(sink.results)}


def mean_error(pred: np.ndarray, true: np.ndarray, where: np.ndarray) -> float:
    """Mean Lab error (ΔE76) over the pixels ``where`` (HxW bool); nan when there are none."""
    if not where.any():
        return float("nan")
    return float(np.linalg.norm(pred[where].astype(np.float64) - true[where], axis=-1).mean())


def partial_key_check(
    engine: Engine,
    frames_linear: list[np.ndarray],
    true_lab: list[np.ndarray],
    method: str,
    pred: list[np.ndarray],
    conf: list[np.ndarray],
) -> dict:
    """The check of one range (module docstring); ``pred``/``conf``: the one-key run's Lab frames and written
    mattes, index 0 = frame 1 (the key). Frames are reported numbered from 1, as in eval."""
    summary = {i + 1: frame_summary(c) for i, c in enumerate(conf)}
    top = suggest_frames(summary, [1], 1)[0].frame
    matte = painted_matte(pred[top - 1], true_lab[top - 1])
    keys = {
        1: KeyImage(frames_linear[0], EVAL_SPACE, "key 1"),
        top: KeyImage(frames_linear[top - 1], EVAL_SPACE, f"partial key {top}", matte=matte),
    }
    after = colour_with_keys(engine, frames_linear, keys, method)
    before = {i + 1: p for i, p in enumerate(pred)}
    reached = [f for f in after if f != 1 and not np.array_equal(after[f], before[f])]
    unreached = [f for f in after if f != 1 and f not in reached]
    region = matte > 0.5
    changed_error = {"before": [], "after": []}
    for f in reached:
        if f == top:
            continue
        changed = np.any(after[f] != before[f], axis=-1)
        changed_error["before"].append(mean_error(before[f], true_lab[f - 1], changed))
        changed_error["after"].append(mean_error(after[f], true_lab[f - 1], changed))
    at_frame_before = mean_error(before[top], true_lab[top - 1], region)
    at_frame_after = mean_error(after[top], true_lab[top - 1], region)
    psnr = lambda labs: float(np.mean([lab_psnr(labs[f], true_lab[f - 1]) for f in reached]))  # noqa: E731
    return {
        "frame": top,
        "painted_share": float(region.mean()),
        "error_in_region_before": at_frame_before,
        "error_in_region_after": at_frame_after,
        "fall": 1.0 - at_frame_after / at_frame_before if at_frame_before > 0 else float("nan"),
        "reached": reached,
        "psnr_reached_before": psnr(before) if reached else float("nan"),
        "psnr_reached_after": psnr(after) if reached else float("nan"),
        "changed_error_before": float(np.nanmean(changed_error["before"])) if changed_error["before"] else None,
        "changed_error_after": float(np.nanmean(changed_error["after"])) if changed_error["after"] else None,
        "unreached": len(unreached),
        "unreached_equal": all(np.array_equal(after[f], before[f]) for f in unreached),
    }


def summarise_partial(results: dict, names: list[str]) -> dict:
    """Per method over the main ranges: mean fall at the painted frame, mean PSNR gain over the reached frames,
    the ranges where it lost, and whether every unreached frame stayed bitwise the same."""
    main = {n: c for n, c in results["clips"].items() if not c["report_apart"]}
    table = {}
    for name in names:
        checks = {n: c["methods"][name]["partial"] for n, c in main.items() if "partial" in c["methods"].get(name, {})}
        if not checks:
            continue
        gains = {n: c["psnr_reached_after"] - c["psnr_reached_before"] for n, c in checks.items()}
        table[name] = {
            "per_clip": checks,
            "fall_mean": float(np.nanmean([c["fall"] for c in checks.values()])),
            "psnr_gain_reached_mean": float(np.nanmean(list(gains.values()))),
            "losers": sorted(n for n, g in gains.items() if g < 0),
            "unreached_equal": all(c["unreached_equal"] for c in checks.values()),
        }
    return table


def format_partial(table: dict) -> str:
    lines = ["Partial key at the suggested frame (true colour inside the one-key run's worst 10 %, dilated)"]
    for name, t in table.items():
        lines.append(
            f"  {name:10s} error inside the painted region at its frame falls {100 * t['fall_mean']:.0f} %;"
            f" Lab-PSNR over the frames it reached {t['psnr_gain_reached_mean']:+.2f} dB;"
            f" losers: {', '.join(t['losers']) or 'none'};"
            f" unreached frames bitwise unchanged: {'yes' if t['unreached_equal'] else 'NO'}"
        )
        for clip, c in t["per_clip"].items():
            lines.append(
                f"    {clip:24s} frame {c['frame']:3d}  region {100 * c['painted_share']:4.1f} %"
                f"  ΔE {c['error_in_region_before']:6.2f} -> {c['error_in_region_after']:6.2f}"
                f"  reached {len(c['reached']):3d} frames  PSNR {c['psnr_reached_before']:6.2f} ->"
                f" {c['psnr_reached_after']:6.2f}"
            )
    return "\n".join(lines) + "\n"
