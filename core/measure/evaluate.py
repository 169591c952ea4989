"""`colorprop eval`: the paper's protocol on the ranges of an evaluation split.

``--split validation`` scores the ranges of sources that nothing trains or tunes on (every decision is made
there); ``--split dev`` the dev ranges of seen sources (core/data/split.json). For each range: the gray plate
is the clip's luminance, the key is the true colour of frame 1 (and, with ``--keys first,last``, of the last
frame); every method colours the plate through the product's own pipeline (``run_shot`` on in-memory frames,
working resolution and upsampling included); we report Lab-PSNR averaged over the first N propagated frames,
per range and method against flow (``format_per_range``: losers more than 0.3 dB below flow at some N named).
"gray" is the plate itself (ab = 0).

With ``--keys first,last`` each method is also scored (same frames: 2..last-1) with one key
(``<method>-1key``) and with the same two keys blended by a fixed linear crossfade by frame distance
(``<method>-crossfade``), the baseline the per-pixel confidence blend must beat.

Confidence (measure/matte.py), per clip and method over the scored frames: the error captured at 20 % (per
frame, the share of the squared Lab error in the 20 % least-confident pixels, averaged over frames; a matte
that knows nothing scores 0.20) and a calibration table (confidence bins against mean ΔE and the fraction of
pixels within 4 ab units), pooled over the main ranges. It replaces the ratio of the mean error of the
lowest- and highest-confidence 10 %, which a few near-perfect pixels could push to 10⁴× and which said
nothing about what a value means.

With ``suggest`` (``--suggest``), per clip and method: ``shot.suggest`` ranks the frames by the written
matte; is its top suggestion among the 5 frames with the largest true Lab MSE, and how much does a key there
(its true colour, added to the eval keys) gain over a key at the shot's midpoint? Gains are in dB of the Lab MSE
averaged over the scored frames other than those two (the PSNR of the shot's mean error, not the mean of
per-frame PSNRs, which a few near-perfect frames would dominate).

With ``partial`` (``--partial``, one key): a partial key painted where the one-key run is worst at the frame
``suggest-keys`` names; what it fixes there, over the frames it reaches, and that the rest stays bitwise
(measure/partial.py).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from colorprop.colour import convert
from colorprop.engine.confidence import blend_crossfade, frame_summary
from colorprop.engine.engine import Engine, ShotOptions
from colorprop.errors import InputError
from colorprop.measure.eval_report import (
    format_confidence,
    format_per_range,
    format_table,
    plot_per_frame,
    summarise,
    summarise_confidence,
    summarise_suggestions,
)
from colorprop.measure.matte import matte_measures
from colorprop.measure.metrics import lab_mse, lab_psnr, psnr_of_mse
from colorprop.measure.partial import format_partial, partial_key_check, summarise_partial
from colorprop.shot.suggest import suggest_frames
from colorprop.shot.frames import ArraySink, ArraySource, KeyImage
from colorprop.shot.pipeline import run_shot

DEFAULT_NS = (10, 20, 30, 40, 50)
EVAL_SPACE = "Linear Rec.709 (sRGB)"


def colorize_clip(
    engine: Engine,
    frames_linear: list[np.ndarray],
    key_indices: list[int],
    method: str,
    working_width: int | None = None,
) -> list[np.ndarray]:
    """Colour a clip (list of HxWx3 linear Rec.709) from the true colour at ``key_indices``; returns Lab frames."""
    return colorize_clip_with_confidence(engine, frames_linear, key_indices, method, working_width)[0]


def colorize_clip_with_confidence(
    engine: Engine,
    frames_linear: list[np.ndarray],
    key_indices: list[int],
    method: str,
    working_width: int | None = None,
    blend=None,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``colorize_clip`` plus the confidence written for each frame (HxW); ``blend``: see ``run_shot``
    (None: the product's own confidence blend)."""
    gray = {i + 1: np.repeat(convert.luminance(f)[..., None], 3, axis=2) for i, f in enumerate(frames_linear)}
    if method == "gray":
        return [convert.linear_rec709_to_lab(g) for g in gray.values()], [
            np.zeros(g.shape[:2], np.float32) for g in gray.values()
        ]
    keys = {k + 1: KeyImage(frames_linear[k], EVAL_SPACE, f"key {k + 1}") for k in key_indices}
    options = {"method": method, "colorspace": EVAL_SPACE}
    if working_width is not None:
        options["working_width"] = working_width
    sink = ArraySink()
    run_shot(engine, ArraySource(gray, colorspace=EVAL_SPACE), keys, ShotOptions.from_dict(options), sink, blend=blend)
    frames = sorted(sink.results)
    return (
        [convert.linear_rec709_to_lab(sink.results[f].rgb) for f in frames],
        [sink.results[f].confidence for f in frames],
    )


def eval_variants(method: str, keys: str, key_indices: list[int]) -> list[tuple[str, list[int], object]]:
    """(name, key indices, blend) to run for one method: with two keys also one key and the crossfade."""
    variants = [(method, key_indices, None)]
    if method != "gray" and len(key_indices) == 2:
        variants += [(f"{method}-1key", key_indices[:1], None), (f"{method}-crossfade", key_indices, blend_crossfade)]
    return variants


def evaluate(
    engine: Engine,
    clips,
    methods: list[str],
    ns=DEFAULT_NS,
    keys: str = "first",
    log=print,
    suggest: bool = False,
    partial: bool = False,
) -> dict:
    """Per clip and method: Lab-PSNR per frame and its mean over the first N propagated frames; the
    confidence measures; with ``suggest`` the key-suggestion check (module docstring); with ``partial`` (one
    key) the partial-key check (measure/partial.py)."""
    results: dict = {"ns": list(ns), "keys": keys, "clips": {}, "seconds": {}}
    names = methods
    for clip in clips:
        true_lab = [convert.linear_rec709_to_lab(f) for f in clip.frames_linear]
        last = len(true_lab) - 1
        key_indices = [0] if keys == "first" else [0, last]
        scored = [i for i in range(len(true_lab)) if i not in key_indices]  # the keys themselves are not scored
        per_method = {}
        names = []
        for method in methods:
            for name, variant_keys, blend in eval_variants(method, keys, key_indices):
                names.append(name)
                t0 = time.perf_counter()
                pred, conf = colorize_clip_with_confidence(
                    engine, clip.frames_linear, variant_keys, method, blend=blend
                )
                seconds = time.perf_counter() - t0
                psnr = [lab_psnr(pred[i], true_lab[i]) for i in scored]
                per_method[name] = {
                    "per_frame": psnr,
                    "mean_first_n": {str(n): float(np.mean(psnr[:n])) for n in ns if n <= len(psnr)},
                    "seconds_per_frame": seconds / len(true_lab),
                }
                first_10 = per_method[name]["mean_first_n"].get("10", float("nan"))
                line = (
                    f"  {clip.name:24s} {name:15s} N=10 {first_10:6.2f} dB"
                    f"  N={len(psnr)} {np.mean(psnr):6.2f} dB  ({seconds / len(true_lab):.2f} s/frame)"
                )
                if method != "gray":
                    check = matte_measures(
                        [conf[i] for i in scored], [pred[i] for i in scored], [true_lab[i] for i in scored]
                    )
                    per_method[name]["confidence"] = check
                    line += f"  conf captured@20% {check['captured']:.2f} (ceiling {check['captured_max']:.2f})"
                    if suggest and name == method:
                        per_method[name]["suggest"] = suggestion_check(
                            engine, clip.frames_linear, true_lab, method, key_indices, pred, conf
                        )
                        sc = per_method[name]["suggest"]
                        line += (
                            f"  suggest {sc['top']} ({'in' if sc['hit'] else 'not in'} worst 5), "
                            f"{sc['advantage_db']:+.2f} dB over the midpoint"
                        )
                    if partial and name == method and keys == "first":
                        pc = partial_key_check(engine, clip.frames_linear, true_lab, method, pred, conf)
                        per_method[name]["partial"] = pc
                        line += (
                            f"  partial@{pc['frame']} ΔE {pc['error_in_region_before']:.2f}"
                            f"->{pc['error_in_region_after']:.2f}, {len(pc['reached'])} frames reached"
                        )
                log(line)
        results["clips"][clip.name] = {
            "report_apart": bool(getattr(clip, "report_apart", False)),
            "methods": per_method,
        }
    results["methods"] = names
    results["mean"] = summarise(results, names, ns)
    results["confidence"] = summarise_confidence(results, names)
    if suggest:
        results["suggest"] = summarise_suggestions(results, names)
    if partial:
        results["partial"] = summarise_partial(results, names)
    return results


def suggestion_check(
    engine: Engine,
    frames_linear: list[np.ndarray],
    true_lab: list[np.ndarray],
    method: str,
    key_indices: list[int],
    pred: list[np.ndarray],
    conf: list[np.ndarray],
) -> dict:
    """The key-suggestion check of one clip (module docstring); frames are numbered from 1 as in eval."""
    scored = [i for i in range(len(true_lab)) if i not in key_indices]
    mse = {i: lab_mse(pred[i], true_lab[i]) for i in scored}
    worst = sorted(scored, key=lambda i: -mse[i])[:5]
    summary = {i + 1: frame_summary(c) for i, c in enumerate(conf)}
    top = suggest_frames(summary, [k + 1 for k in key_indices], 1)[0].frame - 1
    mid = (len(true_lab) - 1) // 2
    if mid in key_indices:
        mid += 1
    judged = [i for i in scored if i not in (top, mid)]

    def shot_psnr(labs: list[np.ndarray]) -> float:
        return psnr_of_mse(float(np.mean([lab_mse(labs[i], true_lab[i]) for i in judged])))

    base = shot_psnr(pred)
    with_top = shot_psnr(colorize_clip(engine, frames_linear, sorted(key_indices + [top]), method))
    with_mid = (
        with_top if mid == top else shot_psnr(colorize_clip(engine, frames_linear, sorted(key_indices + [mid]), method))
    )
    return {
        "top": top + 1,
        "worst5": [i + 1 for i in worst],
        "hit": top in worst,
        "midpoint": mid + 1,
        "gain_top_db": with_top - base,
        "gain_mid_db": with_mid - base,
        "advantage_db": with_top - with_mid,
    }


SPLIT_LABELS = {"validation": "validation (unseen sources)", "dev": "dev (seen sources)"}


def run_eval_command(args) -> int:
    from colorprop.data.clips import load_eval_clips

    engine = Engine.load(Path(args.weights) if args.weights else None, precision=args.precision)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unavailable = [m for m in methods if m != "gray" and m not in engine.methods()]
    if unavailable:
        print(f"colorprop eval: skipping {', '.join(unavailable)}: {engine.weights_error}", file=sys.stderr)
        methods = [m for m in methods if m not in unavailable]
    ns = [int(n) for n in args.n.split(",")]
    split = getattr(args, "split", "dev")
    clips = load_eval_clips(split, args.cache)
    if args.clips:
        wanted = set(args.clips.split(","))
        unknown = wanted - {c.name for c in clips}
        if unknown:
            raise InputError(
                f"--clips: no range {', '.join(sorted(unknown))} in the {split} split; "
                f"its ranges: {', '.join(c.name for c in clips)}"
            )
        clips = [c for c in clips if c.name in wanted]
    results = evaluate(
        engine,
        clips,
        methods,
        ns,
        args.keys,
        log=lambda s: print(s, file=sys.stderr),
        suggest=getattr(args, "suggest", False),
        partial=getattr(args, "partial", False),
    )
    results["split"] = split
    results["weights"] = engine.describe()["weights"]
    methods = results["methods"]
    main = sum(not c["report_apart"] for c in results["clips"].values())
    table = (
        f"Split: {SPLIT_LABELS[split]}; mean over its {main} main ranges (Lab-PSNR dB)\n\n"
        + format_table(results, methods)
        + format_per_range(results, methods)
    )
    print(table)
    print(format_confidence(results))
    if results.get("partial"):
        print(format_partial(results["partial"]))
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")
    if args.plot:
        plot_per_frame(results, methods, Path(args.plot))
    if args.record_in_manifest:
        record_in_manifest(engine, results, table)
    print(f"colorprop eval: wrote {out}", file=sys.stderr)
    return 0


def record_in_manifest(engine: Engine, results: dict, table: str) -> None:
    """Put the eval table (mean Lab-PSNR per method and N over the main ranges) into the weights manifest."""
    from colorprop.engine.weights import write_manifest

    if engine.models is None or engine.models.manifest is None:
        raise InputError("--record-in-manifest needs trained weights")
    manifest = engine.models.manifest
    data = dict(manifest.data)
    data["metrics"] = {
        "protocol": f"colorprop eval --split {results.get('split', 'dev')} --keys {results['keys']}: "
        "Lab-PSNR (dB) over the first N propagated frames, mean over the main ranges of that split of "
        "core/data/split.json",
        "clips": sorted(results["clips"]),
        "mean_lab_psnr": results["mean"],
        "table": table,
        "confidence_error_captured_20": {k: v.get("mean") for k, v in results.get("confidence", {}).items()},
    }
    write_manifest(manifest.folder, data)
    print(f"colorprop eval: recorded the table in {manifest.folder}/manifest.json", file=sys.stderr)
