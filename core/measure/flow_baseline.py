"""`python -m colorprop.measure.flow_baseline`: the DIS flow baseline and the gray frames on the dev split
(Lab-PSNR over the first N propagated frames; writes JSON, prints a table)."""

from __future__ import annotations

import numpy as np

from colorprop.engine.flow import propagate_flow


def evaluate_dev(cache_dir=None, ns=(10, 20, 30, 40, 50)) -> dict:
    """Flow and gray Lab-PSNR (mean over the first N propagated frames) on each dev clip, propagating from frame 1."""
    import time

    from colorprop.colour.convert import linear_rec709_to_lab
    from colorprop.data.clips import load_dev_clips
    from colorprop.measure.metrics import colourfulness, mean_lab_psnr_first_n

    results = {}
    for clip in load_dev_clips(cache_dir):
        labs = [linear_rec709_to_lab(f) for f in clip.frames_linear]
        t0 = time.perf_counter()
        abs_ = propagate_flow([lab[..., 0] for lab in labs], labs[0][..., 1:])
        secs = (time.perf_counter() - t0) / max(1, len(labs) - 1)
        flow_labs = [np.concatenate([lab[..., :1], ab], -1) for lab, ab in zip(labs, abs_)]
        gray_labs = [np.concatenate([lab[..., :1], np.zeros_like(lab[..., 1:])], -1) for lab in labs]
        results[clip.name] = {
            "size": list(clip.size),
            "colourfulness": float(np.mean([colourfulness(lab) for lab in labs])),
            "report_apart": clip.report_apart,
            "seconds_per_frame": secs,
            "flow": {n: mean_lab_psnr_first_n(flow_labs, labs, n) for n in ns},
            "gray": {n: mean_lab_psnr_first_n(gray_labs, labs, n) for n in ns},
        }
    return results


def main(argv=None) -> int:
    import argparse
    import json

    ap = argparse.ArgumentParser(prog="python -m colorprop.measure.flow_baseline", description="DIS flow baseline on the dev split")
    ap.add_argument("--cache", default=None)
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args(argv)
    res = evaluate_dev(args.cache)
    ns = list(next(iter(res.values()))["flow"])
    print(f"{'clip':24s} {'size':>9s} {'chroma':>6s} {'method':6s} " + " ".join(f"N={n:<4d}" for n in ns))
    for name, r in res.items():
        for m in ("gray", "flow"):
            print(f"{name:24s} {'x'.join(map(str, r['size'])):>9s} {r['colourfulness']:6.1f} {m:6s} "
                  + " ".join(f"{r[m][n]:6.2f}" for n in ns))
    for m in ("gray", "flow"):
        main_set = [r for r in res.values() if not r["report_apart"]]
        print(f"{'MEAN (dev)':24s} {'':>9s} {'':6s} {m:6s} "
              + " ".join(f"{np.mean([r[m][n] for r in main_set]):6.2f}" for n in ns))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
