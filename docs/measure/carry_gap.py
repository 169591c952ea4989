"""What training carries against what inference carries, measured (docs/TRAINING.md, "What training carries").

Training unrolls ``step.propagate_step`` over packed candidates (``propagate.run_candidates``) and carries its own
float output at the working size. The product (``run_shot``) carries what it *wrote*: the colour converted to the
plate's space, rounded to half floats as the EXR stores it, read back to Lab (and, above the working width, brought
to plate resolution and back). Both run here on the same validation ranges (each at its own width, at most the
working width, so the sizes are the same and the difference is what is carried), one key at frame 1, fp32; the
table gives Lab-PSNR over the first N frames of each::

    .venv/bin/python docs/measure/carry_gap.py [--ranges 6] [--json docs/carry_gap.json]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from colorprop.colour.convert import linear_rec709_to_lab
from colorprop.data.clips import load_eval_clips
from colorprop.engine.engine import Engine
from colorprop.engine.propagate import AB_SCALE, run_candidates
from colorprop.engine.step import Carried, carry_on, packed_slice, propagate_step, start, unpack_candidates
from colorprop.measure.evaluate import colorize_clip
from colorprop.measure.metrics import mean_lab_psnr_first_n

NS = (10, 50)


def training_recursion(engine: Engine, labs: list[np.ndarray]) -> list[np.ndarray]:
    """Lab frames as training's unroll makes them: the float output carried at the working size."""
    packed = torch.from_numpy(run_candidates(engine.models, [(lab[..., 0], lab[..., 1:]) for lab in labs]))
    carried = start(packed[:1, packed_slice("ab_true")])
    out = [labs[0]]
    with torch.inference_mode():
        for t in range(1, len(labs)):
            candidates, _ = unpack_candidates(packed[t : t + 1])
            step = propagate_step(engine.models.fusion, carried, candidates)
            carried = carry_on(Carried(step.ab_flow, step.age_flow), step.ab)
            ab = step.ab[0].permute(1, 2, 0).numpy() * AB_SCALE
            out.append(np.dstack([labs[t][..., 0], ab]).astype(np.float32))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ranges", type=int, default=6, help="the first N ranges of the validation split")
    ap.add_argument("--json", default="docs/carry_gap.json")
    args = ap.parse_args()
    engine = Engine.load(precision="fp32")
    clips = [c for c in load_eval_clips("validation", include_report_apart=False)][: args.ranges]
    rows = {}
    for clip in clips:
        true = [linear_rec709_to_lab(f) for f in clip.frames_linear]
        product = colorize_clip(engine, clip.frames_linear, [0], "full")
        training = training_recursion(engine, true)
        rows[clip.name] = {
            "size": list(clip.frames_linear[0].shape[1::-1]),
            "product": {str(n): mean_lab_psnr_first_n(product, true, n) for n in NS},
            "training": {str(n): mean_lab_psnr_first_n(training, true, n) for n in NS},
        }
        r = rows[clip.name]
        print(
            f"{clip.name:36s} product {r['product']['10']:6.2f} / {r['product']['50']:6.2f}  "
            f"training {r['training']['10']:6.2f} / {r['training']['50']:6.2f}",
            flush=True,
        )
    mean = {
        kind: {str(n): float(np.mean([r[kind][str(n)] for r in rows.values()])) for n in NS}
        for kind in ("product", "training")
    }
    print(
        f"{'mean':36s} product {mean['product']['10']:6.2f} / {mean['product']['50']:6.2f}  "
        f"training {mean['training']['10']:6.2f} / {mean['training']['50']:6.2f}"
    )
    with open(args.json, "w") as f:
        json.dump({"split": "validation", "ns": list(NS), "ranges": rows, "mean": mean}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
