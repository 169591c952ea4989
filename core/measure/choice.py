"""`python -m colorprop.measure.choice`: how well F_f chooses, against the flow chain, the rule and an oracle.

On each dev clip the candidates of ``propagate.run_candidates`` (DIS flow, flow chain, F_s key match at the
clip's dev width, the same the Propagator computes) are computed once and cached; then the recursion of
``step.propagate_step`` runs with each chooser:

    flow     the flow candidate everywhere (the classical chain)
    rule     the untrained F_f: key match where the flow's consistency < 0.5
    trained  F_f from the weights folder
    oracle   per pixel the candidate closer to the truth, inside the recursion (what it picks is carried on):
             the most any chooser between these two candidates can reach

Lab-PSNR averaged over the first N propagated frames, as ``colorprop eval`` (which runs the whole pipeline,
plate-resolution carry included; use it for the numbers that count). This one isolates the chooser.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from colorprop.colour.convert import linear_rec709_to_lab
from colorprop.engine.models import load_models
from colorprop.engine.nets.fusion_net import FusionConfig, FusionNet
from colorprop.engine.propagate import AB_SCALE, run_candidates
from colorprop.engine.step import Candidates, Carried, StepOutput, advance, carry_on, propagate_step, start
from colorprop.measure.metrics import mean_lab_psnr_first_n

POLICIES = ("flow", "rule", "trained", "oracle")


def oracle_step(carried, c, ab_true: torch.Tensor) -> StepOutput:
    """The choice an oracle makes: per pixel, the candidate closer to ``ab_true``."""
    moved = advance(carried, c.flow)
    take_key = ((c.ab_key - ab_true).norm(dim=1, keepdim=True) < (moved.ab - ab_true).norm(dim=1, keepdim=True)).float()
    ab = moved.ab + take_key * (c.ab_key - moved.ab)
    return StepOutput(ab, moved.ab, take_key, take_key - 0.5, torch.ones_like(take_key), moved.age)


@torch.inference_mode()
def run_policy(policy: str, cand: np.ndarray, fusion: FusionNet | None) -> tuple[list[np.ndarray], float]:
    """The recursion over one clip's candidates (T x 11 x H x W); (ab per frame HxWx2 Lab, mean key share)."""
    frames = torch.from_numpy(cand)
    carried = start(frames[:1, 9:11])
    out_ab, shares = [cand[0, 9:11].transpose(1, 2, 0) * AB_SCALE], []

    for t in range(1, len(cand)):
        f = frames[t:t + 1]
        c = Candidates(f[:, 0:1], f[:, 1:3], f[:, 3:4], f[:, 4:5], f[:, 5:6], f[:, 6:8], f[:, 8:9])
        if policy == "oracle":
            out = oracle_step(carried, c, f[:, 9:11])
        else:
            out = propagate_step(None if policy == "flow" else fusion, carried, c)
        shares.append(float(out.key_weight.mean()))
        carried = carry_on(Carried(out.ab_flow, out.age_flow), out.ab)
        out_ab.append(out.ab[0].numpy().transpose(1, 2, 0) * AB_SCALE)
    return out_ab, float(np.mean(shares))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m colorprop.measure.choice", description=__doc__.split("\n")[0])
    ap.add_argument("--weights", default=None, help="weights folder for 'trained' (default: shipped)")
    ap.add_argument("--policies", default=",".join(POLICIES))
    ap.add_argument("--n", default="10,30,50")
    ap.add_argument("--clips", default=None)
    ap.add_argument("--candidates-cache", default="out/choice_candidates", help="cached candidates per clip")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    from colorprop.data.clips import load_dev_clips

    models = load_models(Path(args.weights) if args.weights else None, device="cpu", precision="fp32")
    fusion = {"trained": models.fusion, "rule": FusionNet(FusionConfig()).eval()}
    ns = [int(n) for n in args.n.split(",")]
    policies = args.policies.split(",")
    cache = Path(args.candidates_cache)
    cache.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict] = {}
    for clip in load_dev_clips(include_report_apart=False):
        if args.clips and clip.name.split("@")[0] not in args.clips.split(","):
            continue
        labs = [linear_rec709_to_lab(f) for f in clip.frames_linear]
        path = cache / f"{clip.name}_{clip.size[0]}.npy"
        if path.exists():
            cand = np.load(path)
        else:
            cand = run_candidates(models, [(lab[..., 0], lab[..., 1:]) for lab in labs])
            np.save(path, cand)
        results[clip.name] = {}
        for policy in policies:
            abs_, share = run_policy(policy, cand, fusion.get(policy))
            pred = [np.concatenate([lab[..., :1], ab], -1) for lab, ab in zip(labs, abs_)]
            results[clip.name][policy] = {"psnr": {n: mean_lab_psnr_first_n(pred, labs, n) for n in ns},
                                          "key_share": share}
            print(f"{clip.name:24s} {policy:8s} " + " ".join(f"N={n} {results[clip.name][policy]['psnr'][n]:6.2f}"
                                                             for n in ns) + f"  key share {share:.3f}", flush=True)
    print("mean over clips:")
    for policy in policies:
        print(f"  {policy:8s} " + " ".join(
            f"N={n} {np.mean([r[policy]['psnr'][n] for r in results.values()]):6.2f}" for n in ns))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
