"""`python -m colorprop.measure.choice`: the room each set of candidates leaves, and what the choosers take of it.

On each range of a split (``--split validation``: sources nothing learns from; ``dev``: seen sources) the
candidates are computed once at the range's width and cached (``--candidates-cache``):

    chain    the previous written colour warped along DIS flow (``propagate.run_candidates``, the Propagator's
             own computation; the chain carries on whatever was written)
    key      F_s's key match (same)
    direct   key-direct flow: the key's colour warped along DIS flow from frame t straight to the key (no
             accumulated drift), with the forward-backward consistency of that flow (``propagate.key_direct``,
             the engine's candidate; one DIS pair per frame)

then the recursion of ``step.propagate_step`` runs with each policy:

    flow | key | direct        one candidate alone (flow = the classical chain)
    rule                        the untrained F_f: key match where the flow's consistency < 0.5
    trained                     F_f from the weights folder (chain and key, or any candidates its config names)
    trained@<price>             the same error head with ``FusionConfig.leave_price`` = price (``priced``)
    oracle:<c>+<c>...           per pixel the candidate of the set closest to the truth, inside the recursion
                                (what it picks is carried on): the most any chooser over that set can reach.
                                ``oracle`` alone is oracle:chain+key

Lab-PSNR averaged over the first N propagated frames, as ``colorprop eval`` (which runs the whole pipeline,
plate-resolution carry included; use it for the numbers that count). This one isolates the choice. Results
are written after every range (``--json``), so a stopped run keeps what it measured.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import torch

from colorprop.colour.convert import linear_rec709_to_lab
from colorprop.engine.models import load_models
from colorprop.engine.nets.fusion_net import CANDIDATE_NAMES, FusionConfig, FusionNet
from colorprop.engine.propagate import AB_SCALE, key_direct, run_candidates
from colorprop.engine.step import (
    CANDIDATE_CHANNELS,
    Carried,
    advance,
    candidate_colours,
    carry_on,
    packed_slice,
    propagate_step,
    start,
    unpack_candidates,
)
from colorprop.measure.metrics import mean_lab_psnr_first_n

__all__ = ["CANDIDATE_NAMES", "candidate_set", "key_direct", "pick_closest", "priced", "run_policy", "main"]
SINGLE = {"flow": ("chain",), "key": ("key",), "direct": ("direct",), "oracle": ("chain", "key")}
POLICIES = (
    "flow",
    "key",
    "direct",
    "rule",
    "trained",
    "oracle:chain+key",
    "oracle:chain+direct",
    "oracle:key+direct",
    "oracle:chain+key+direct",
)


def candidate_set(policy: str) -> tuple[str, ...] | None:
    """The candidates an oracle policy picks among, in CANDIDATE_NAMES order; None for rule / trained(@price)."""
    if policy in SINGLE:
        return SINGLE[policy]
    if policy.startswith("trained@"):
        if float(policy.split("@", 1)[1]) < 0:
            raise ValueError(f"policy {policy!r}: the leave price is >= 0")
        return None
    if not policy.startswith("oracle:"):
        if policy in ("rule", "trained"):
            return None
        raise ValueError(
            f"unknown policy {policy!r}; choose from {', '.join(POLICIES)} or oracle:<c>+<c> "
            f"with candidates {', '.join(CANDIDATE_NAMES)}"
        )
    names = set(policy.split(":", 1)[1].split("+"))
    unknown = names - set(CANDIDATE_NAMES)
    if unknown or not names:
        raise ValueError(
            f"policy {policy!r}: unknown candidate(s) {sorted(unknown)}; choose from {', '.join(CANDIDATE_NAMES)}"
        )
    return tuple(n for n in CANDIDATE_NAMES if n in names)


def priced(fusion: FusionNet, price: float) -> FusionNet:
    """The same trained F_f with ``leave_price`` set to ``price`` (weights copied, config replaced)."""
    net = FusionNet(dataclasses.replace(fusion.cfg, leave_price=price))
    net.load_state_dict(fusion.state_dict(), strict=True)
    return net.eval()


def pick_closest(named: dict[str, torch.Tensor], ab_true: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """Per pixel the candidate (N x 2 x H x W each) closest to ``ab_true``; (ab, share of pixels per candidate)."""
    names = list(named)
    stack = torch.stack([named[n] for n in names])  # K x N x 2 x H x W
    pick = (stack - ab_true).norm(dim=2).argmin(dim=0)  # N x H x W; ties: the first
    ab = torch.gather(stack, 0, pick[None, :, None].expand(1, -1, 2, -1, -1))[0]
    return ab, {n: float((pick == i).float().mean()) for i, n in enumerate(names)}


@torch.inference_mode()
def run_policy(
    policy: str,
    cand: np.ndarray,
    direct: np.ndarray | None,
    fusion: FusionNet | None,
    costs: dict[str, list[float]] | None = None,
) -> tuple[list[np.ndarray], dict[str, float]]:
    """The recursion over one range's candidates (``run_candidates``' layout; ``direct``: ``key_direct``'s);
    returns (ab per frame HxWx2 Lab, mean share of pixels per candidate over the propagated frames).

    ``costs`` (the error head only), filled per candidate and frame: what its picks cost against keeping the chain
    there, sum over its pixels of |ab_c - ab_true|^2 - |ab_chain - ab_true|^2 over all pixels (Lab units^2; the
    candidates' costs add up to the frame's squared-error change, before it is carried on)."""
    names = candidate_set(policy)
    base = cand[:, :CANDIDATE_CHANNELS]  # a cache packed with key-direct: its own direct channels are these
    frames = torch.from_numpy(base if direct is None else np.concatenate([base, direct], axis=1))
    carried = start(frames[:1, packed_slice("ab_true")])
    out_ab = [cand[0, packed_slice("ab_true")].transpose(1, 2, 0) * AB_SCALE]
    shares: dict[str, list[float]] = {}
    for t in range(1, len(cand)):
        c, ab_true = unpack_candidates(frames[t : t + 1])
        if names is None:  # rule / trained: F_f chooses (chain or key; the error head among its candidates)
            out = propagate_step(fusion, carried, c)
            ab, moved = out.ab, Carried(out.ab_flow, out.age_flow)
            if out.chosen is None:
                share = float(out.key_weight.mean())
                picked = {"chain": 1.0 - share, "key": share}
            else:
                picked = {n: float((out.chosen == i).float().mean()) for i, n in enumerate(fusion.cfg.candidates)}
                if costs is not None:
                    offered = candidate_colours(c, out.ab_flow)
                    err = {n: ((offered[n] - ab_true) * AB_SCALE).square().sum(1) for n in fusion.cfg.candidates}
                    for i, n in enumerate(fusion.cfg.candidates):
                        cost = torch.where(out.chosen[:, 0] == i, err[n] - err["chain"], 0.0).mean()
                        costs.setdefault(n, []).append(float(cost))
        else:
            moved = advance(carried, c.flow)
            available = candidate_colours(c, moved.ab)
            ab, picked = pick_closest({n: available[n] for n in names}, ab_true)
        for n, s in picked.items():
            shares.setdefault(n, []).append(s)
        carried = carry_on(moved, ab)
        out_ab.append(ab[0].numpy().transpose(1, 2, 0) * AB_SCALE)
    return out_ab, {n: float(np.mean(v)) for n, v in shares.items()}


def cached(path: Path, compute) -> np.ndarray:
    """``compute()``'s array, saved at ``path`` the first time (temp name + rename) and read back after."""
    if path.exists():
        return np.load(path)
    array = compute()
    tmp = path.with_name(f".{path.stem}.tmp.npy")
    np.save(tmp, array)
    tmp.replace(path)
    return array


def previous_ranges(path: Path, report: dict) -> dict:
    """The ranges a stopped run wrote to ``path`` that this one can keep: same split, N and weights, each
    holding every policy asked (only those are kept)."""
    if not path.exists():
        return {}
    old = json.loads(path.read_text())
    if any(old.get(k) != report[k] for k in ("split", "ns", "weights")):
        return {}
    return {
        name: {p: row[p] for p in report["policies"]}
        for name, row in old["ranges"].items()
        if set(report["policies"]) <= set(row)
    }


def format_table(results: dict, policies: list[str], ns: list[int]) -> str:
    """Markdown: per range, each policy's Lab-PSNR at every N (a / b / ...), then the mean and its gain over flow."""
    head = "| range | " + " | ".join(policies) + " |"
    lines = [head, "|---|" + "---|" * len(policies)]
    for name, row in results.items():
        lines.append(
            f"| {name} | "
            + " | ".join(" / ".join(f"{row[p]['psnr'][str(n)]:.2f}" for n in ns) for p in policies)
            + " |"
        )
    mean = {p: [float(np.mean([r[p]["psnr"][str(n)] for r in results.values()])) for n in ns] for p in policies}
    lines.append(
        f"| **mean ({len(results)})** | " + " | ".join(" / ".join(f"{v:.2f}" for v in mean[p]) for p in policies) + " |"
    )
    if "flow" in mean:
        lines.append(
            "| **− flow** | "
            + " | ".join(" / ".join(f"{v - f:+.2f}" for v, f in zip(mean[p], mean["flow"])) for p in policies)
            + " |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m colorprop.measure.choice", description=__doc__.split("\n")[0])
    ap.add_argument(
        "--split",
        default="validation",
        choices=("validation", "dev"),
        help="validation: sources nothing learns from; dev: the seen sources",
    )
    ap.add_argument("--weights", default=None, help="weights folder for 'trained' and F_s (default: shipped)")
    ap.add_argument("--policies", default=",".join(POLICIES))
    ap.add_argument("--n", default="10,30,50")
    ap.add_argument("--clips", default=None, help="comma-separated clip names (default: every main range)")
    ap.add_argument("--candidates-cache", default="out/choice_candidates", help="cached candidates per range")
    ap.add_argument("--json", default=None, help="results, rewritten after every range")
    ap.add_argument(
        "--resume",
        action="store_true",
        help="keep the ranges --json already holds for this split, N and weights with every policy asked",
    )
    args = ap.parse_args(argv)
    from colorprop.data.clips import load_eval_clips

    policies = args.policies.split(",")
    for policy in policies:
        candidate_set(policy)  # an unknown policy is refused before any work
    models = load_models(Path(args.weights) if args.weights else None, device="cpu", precision="fp32")
    fusion = {"trained": models.fusion, "rule": FusionNet(FusionConfig()).eval()}
    fusion.update({p: priced(models.fusion, float(p.split("@", 1)[1])) for p in policies if p.startswith("trained@")})
    ns = [int(n) for n in args.n.split(",")]
    cache = Path(args.candidates_cache)
    cache.mkdir(parents=True, exist_ok=True)
    report = {
        "split": args.split,
        "ns": ns,
        "policies": policies,
        "weights": str(models.manifest.folder) if models.manifest is not None else None,
        "ranges": {},
    }
    done = previous_ranges(Path(args.json), report) if args.json and args.resume else {}
    results = report["ranges"]
    for clip in load_eval_clips(args.split, include_report_apart=False):
        if args.clips and clip.name.split("@")[0] not in args.clips.split(","):
            continue
        if clip.name in done:
            results[clip.name] = done[clip.name]
            continue
        labs = [linear_rec709_to_lab(f) for f in clip.frames_linear]
        split_labs = [(lab[..., 0], lab[..., 1:]) for lab in labs]
        cand = cached(cache / f"{clip.name}_{clip.size[0]}.npy", lambda: run_candidates(models, split_labs))
        direct = cached(cache / f"{clip.name}_{clip.size[0]}_direct.npy", lambda: key_direct(split_labs))
        results[clip.name] = {}
        for policy in policies:
            costs: dict[str, list[float]] = {}
            abs_, shares = run_policy(policy, cand, direct, fusion.get(policy), costs)
            pred = [np.concatenate([lab[..., :1], ab], -1) for lab, ab in zip(labs, abs_)]
            psnr = {str(n): mean_lab_psnr_first_n(pred, labs, n) for n in ns}
            cost = {name: {str(n): float(np.mean(v[:n])) for n in ns} for name, v in costs.items()}
            results[clip.name][policy] = {"psnr": psnr, "shares": shares, **({"cost": cost} if cost else {})}
            print(
                f"{clip.name:40s} {policy:24s} "
                + " ".join(f"N={n} {psnr[str(n)]:6.2f}" for n in ns)
                + "  "
                + " ".join(f"{k} {v:.3f}" for k, v in shares.items())
                + "".join(f"  cost {k} " + " / ".join(f"{x:+.3f}" for x in v.values()) for k, v in cost.items()),
                file=sys.stderr,
                flush=True,
            )
        if args.json:
            report["table"] = format_table(results, policies, ns)
            out = Path(args.json)
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_name(f".{out.name}.tmp")
            tmp.write_text(json.dumps(report, indent=1) + "\n")
            tmp.replace(out)
    print(format_table(results, policies, ns))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
