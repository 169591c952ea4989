"""`colorprop eval`: the paper's protocol on the dev clips.

For each dev clip (core/data/split.json): the gray plate is the clip's luminance, the key is the true
colour of frame 1 (and, with ``--keys first,last``, of the last frame); every method colours the
plate through the product's own pipeline (``run_shot`` on in-memory frames, working resolution and
upsampling included); we report Lab-PSNR averaged over the first N propagated frames.
"gray" is the plate itself (ab = 0).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from . import color
from .engine import Engine, ShotOptions
from .metrics import lab_psnr
from .pipeline import ArraySink, ArraySource, KeyImage, run_shot

DEFAULT_NS = (10, 20, 30, 40, 50)
EVAL_SPACE = "Linear Rec.709 (sRGB)"


def colorize_clip(engine: Engine, frames_linear: list[np.ndarray], key_indices: list[int], method: str,
                  working_width: int | None = None) -> list[np.ndarray]:
    """Colour a clip (list of HxWx3 linear Rec.709) from the true colour at ``key_indices``; returns Lab frames."""
    gray = {i + 1: np.repeat(color.luminance(f)[..., None], 3, axis=2) for i, f in enumerate(frames_linear)}
    if method == "gray":
        return [color.linear_rec709_to_lab(g) for g in gray.values()]
    keys = {k + 1: KeyImage(frames_linear[k], EVAL_SPACE, f"key {k + 1}") for k in key_indices}
    options = {"method": method, "colorspace": EVAL_SPACE}
    if working_width is not None:
        options["working_width"] = working_width
    sink = ArraySink()
    run_shot(engine, ArraySource(gray, colorspace=EVAL_SPACE), keys, ShotOptions.from_dict(options), sink)
    return [color.linear_rec709_to_lab(sink.results[f].rgb) for f in sorted(sink.results)]


def evaluate(engine: Engine, clips, methods: list[str], ns=DEFAULT_NS, keys: str = "first",
             log=print) -> dict:
    """Per clip and method: Lab-PSNR per frame and its mean over the first N propagated frames."""
    results: dict = {"ns": list(ns), "keys": keys, "clips": {}, "seconds": {}}
    for clip in clips:
        true_lab = [color.linear_rec709_to_lab(f) for f in clip.frames_linear]
        last = len(true_lab) - 1
        key_indices = [0] if keys == "first" else [0, last]
        per_method = {}
        for method in methods:
            t0 = time.perf_counter()
            pred = colorize_clip(engine, clip.frames_linear, key_indices, method)
            seconds = time.perf_counter() - t0
            # Propagated frames only: the keys themselves are not scored.
            psnr = [lab_psnr(pred[i], true_lab[i]) for i in range(len(true_lab)) if i not in key_indices]
            per_method[method] = {
                "per_frame": psnr,
                "mean_first_n": {str(n): float(np.mean(psnr[:n])) for n in ns if n <= len(psnr)},
                "seconds_per_frame": seconds / len(true_lab),
            }
            log(f"  {clip.name:24s} {method:7s} N=10 {per_method[method]['mean_first_n'].get('10', float('nan')):6.2f} dB"
                f"  N={len(psnr)} {np.mean(psnr):6.2f} dB  ({seconds / len(true_lab):.2f} s/frame)")
        results["clips"][clip.name] = {"report_apart": bool(getattr(clip, "report_apart", False)),
                                       "methods": per_method}
    results["mean"] = summarise(results, methods, ns)
    return results


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
    from .data.clips import load_dev_clips

    engine = Engine.load(Path(args.weights) if args.weights else None)
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
    table = format_table(results, methods)
    print(table)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")
    if args.plot:
        plot_per_frame(results, methods, Path(args.plot))
    print(f"colorprop eval: wrote {out}", file=sys.stderr)
    return 0
