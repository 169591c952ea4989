"""`colorprop eval`: the paper's protocol on the dev clips.

For each dev clip (core/data/split.json): the gray plate is the clip's luminance, the key is the true
colour of frame 1 (and, with ``--keys first,last``, of the last frame); every method colours the
plate through the product's own pipeline (``run_shot`` on in-memory frames, working resolution and
upsampling included); we report Lab-PSNR averaged over the first N propagated frames.
"gray" is the plate itself (ab = 0).

With ``--keys first,last`` each method is also scored (same frames: 2..last-1) with one key
(``<method>-1key``) and with the same two keys blended by a fixed linear crossfade by frame distance
(``<method>-crossfade``), the baseline the per-pixel confidence blend must beat.

Confidence check: per clip and method, the mean Lab error (ΔE, per pixel) of the lowest-confidence
10 % of pixels over that of the highest 10 %, pooled over the propagated frames (target ≥ 3×).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from colorprop.colour import convert
from colorprop.engine.confidence import blend_crossfade, error_ratio_by_confidence
from colorprop.engine.engine import Engine, ShotOptions
from colorprop.errors import InputError
from colorprop.measure.metrics import lab_psnr
from colorprop.shot.pipeline import ArraySink, ArraySource, KeyImage, run_shot

DEFAULT_NS = (10, 20, 30, 40, 50)
EVAL_SPACE = "Linear Rec.709 (sRGB)"


def colorize_clip(engine: Engine, frames_linear: list[np.ndarray], key_indices: list[int], method: str,
                  working_width: int | None = None) -> list[np.ndarray]:
    """Colour a clip (list of HxWx3 linear Rec.709) from the true colour at ``key_indices``; returns Lab frames."""
    return colorize_clip_with_confidence(engine, frames_linear, key_indices, method, working_width)[0]


def colorize_clip_with_confidence(engine: Engine, frames_linear: list[np.ndarray], key_indices: list[int],
                                  method: str, working_width: int | None = None,
                                  blend=None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``colorize_clip`` plus the confidence written for each frame (HxW); ``blend``: see ``run_shot``
    (None: the product's own confidence blend)."""
    gray = {i + 1: np.repeat(convert.luminance(f)[..., None], 3, axis=2) for i, f in enumerate(frames_linear)}
    if method == "gray":
        return [convert.linear_rec709_to_lab(g) for g in gray.values()], [np.zeros(g.shape[:2], np.float32)
                                                                        for g in gray.values()]
    keys = {k + 1: KeyImage(frames_linear[k], EVAL_SPACE, f"key {k + 1}") for k in key_indices}
    options = {"method": method, "colorspace": EVAL_SPACE}
    if working_width is not None:
        options["working_width"] = working_width
    sink = ArraySink()
    run_shot(engine, ArraySource(gray, colorspace=EVAL_SPACE), keys, ShotOptions.from_dict(options), sink,
             blend=blend)
    frames = sorted(sink.results)
    return ([convert.linear_rec709_to_lab(sink.results[f].rgb) for f in frames],
            [sink.results[f].confidence for f in frames])


def eval_variants(method: str, keys: str, key_indices: list[int]) -> list[tuple[str, list[int], object]]:
    """(name, key indices, blend) to run for one method: with two keys also one key and the crossfade."""
    variants = [(method, key_indices, None)]
    if method != "gray" and len(key_indices) == 2:
        variants += [(f"{method}-1key", key_indices[:1], None),
                     (f"{method}-crossfade", key_indices, blend_crossfade)]
    return variants


def evaluate(engine: Engine, clips, methods: list[str], ns=DEFAULT_NS, keys: str = "first",
             log=print) -> dict:
    """Per clip and method: Lab-PSNR per frame and its mean over the first N propagated frames."""
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
                pred, conf = colorize_clip_with_confidence(engine, clip.frames_linear, variant_keys, method,
                                                           blend=blend)
                seconds = time.perf_counter() - t0
                psnr = [lab_psnr(pred[i], true_lab[i]) for i in scored]
                per_method[name] = {
                    "per_frame": psnr,
                    "mean_first_n": {str(n): float(np.mean(psnr[:n])) for n in ns if n <= len(psnr)},
                    "seconds_per_frame": seconds / len(true_lab),
                }
                line = (f"  {clip.name:24s} {name:15s} N=10 {per_method[name]['mean_first_n'].get('10', float('nan')):6.2f} dB"
                        f"  N={len(psnr)} {np.mean(psnr):6.2f} dB  ({seconds / len(true_lab):.2f} s/frame)")
                if method != "gray":
                    errors = [np.linalg.norm(pred[i] - true_lab[i], axis=-1) for i in scored]
                    check = error_ratio_by_confidence([conf[i] for i in scored], errors)
                    per_method[name]["confidence"] = check
                    line += f"  conf low/high 10% error {check['ratio']:5.1f}x"
                log(line)
        results["clips"][clip.name] = {"report_apart": bool(getattr(clip, "report_apart", False)),
                                       "methods": per_method}
    results["methods"] = names
    results["mean"] = summarise(results, names, ns)
    results["confidence"] = summarise_confidence(results, names)
    return results


def summarise_confidence(results: dict, names: list[str]) -> dict:
    """Per method: the low/high-confidence error ratio per main dev clip, its mean and its minimum."""
    main = {n: c for n, c in results["clips"].items() if not c["report_apart"]}
    table = {}
    for name in names:
        ratios = {n: c["methods"][name]["confidence"]["ratio"] for n, c in main.items()
                  if "confidence" in c["methods"].get(name, {})}
        if ratios:
            table[name] = {"per_clip": ratios, "mean": float(np.mean(list(ratios.values()))),
                           "min": float(min(ratios.values()))}
    return table


def summarise(results: dict, methods: list[str], ns) -> dict:
    """Mean over the main dev clips (clips marked report_apart are left out) per method and N."""
    main = [c for c in results["clips"].values() if not c["report_apart"]]
    table = {}
    for method in methods:
        table[method] = {}
        for n in ns:
            values = [c["methods"][method]["mean_first_n"].get(str(n)) for c in main]
            values = [v for v in values if v is not None]
            if values:
                table[method][str(n)] = float(np.mean(values))
    return table


def format_table(results: dict, methods: list[str]) -> str:
    ns = results["ns"]
    lines = ["| method | " + " | ".join(f"N={n}" for n in ns) + " |",
             "|---|" + "---|" * len(ns)]
    for method in methods:
        row = results["mean"].get(method, {})
        lines.append(f"| {method} | " + " | ".join(f"{row[str(n)]:.2f}" if str(n) in row else "–" for n in ns) + " |")
    return "\n".join(lines)


def plot_per_frame(results: dict, methods: list[str], path: Path) -> Path:
    """Figure 9: mean Lab-PSNR per frame index (over main dev clips) for each method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    main = [c for c in results["clips"].values() if not c["report_apart"]]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    for method in methods:
        curves = [c["methods"][method]["per_frame"] for c in main]
        length = min(len(c) for c in curves)
        mean = np.mean([c[:length] for c in curves], axis=0)
        ax.plot(np.arange(1, length + 1), mean, label=method)
    ax.set_xlabel("frames after the key")
    ax.set_ylabel("Lab-PSNR (dB), mean over dev clips")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def run_eval_command(args) -> int:
    from colorprop.data.clips import load_dev_clips

    engine = Engine.load(Path(args.weights) if args.weights else None, precision=args.precision)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unavailable = [m for m in methods if m != "gray" and m not in engine.methods()]
    if unavailable:
        print(f"colorprop eval: skipping {', '.join(unavailable)}: {engine.weights_error}", file=sys.stderr)
        methods = [m for m in methods if m not in unavailable]
    ns = [int(n) for n in args.n.split(",")]
    clips = load_dev_clips(args.cache)
    if args.clips:
        wanted = set(args.clips.split(","))
        clips = [c for c in clips if c.name in wanted]
    results = evaluate(engine, clips, methods, ns, args.keys, log=lambda s: print(s, file=sys.stderr))
    results["weights"] = engine.describe()["weights"]
    methods = results["methods"]
    table = format_table(results, methods)
    print(table)
    for name, check in results["confidence"].items():
        print(f"confidence {name}: error of the lowest-confidence 10% / highest 10% = {check['mean']:.1f}x "
              f"mean, {check['min']:.1f}x min over main dev clips (target >= 3x)")
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
    """Put the eval table (mean Lab-PSNR per method and N over the main dev clips) into the weights manifest."""
    from colorprop.engine.weights import write_manifest

    if engine.models is None or engine.models.manifest is None:
        raise InputError("--record-in-manifest needs trained weights")
    manifest = engine.models.manifest
    data = dict(manifest.data)
    data["metrics"] = {
        "protocol": f"colorprop eval --keys {results['keys']}: Lab-PSNR (dB) over the first N propagated frames, "
                    "mean over the main dev clips of core/data/split.json",
        "clips": sorted(results["clips"]),
        "mean_lab_psnr": results["mean"],
        "table": table,
        "confidence_error_ratio": {k: v.get("mean") for k, v in results.get("confidence", {}).items()},
    }
    write_manifest(manifest.folder, data)
    print(f"colorprop eval: recorded the table in {manifest.folder}/manifest.json", file=sys.stderr)
