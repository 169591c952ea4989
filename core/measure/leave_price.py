"""`python -m colorprop.measure.leave_price`: choose the error head's price for leaving the chain on training runs.

``FusionConfig.leave_price`` adds a price, in the head's log(1 + error) units, to every candidate but the chain
before the argmin. It is chosen here on the packed TRAINING runs of a run folder (``fusion_inputs.npz``, the
crops ``colorprop train`` unrolls F_f over), never on validation: for each price the recursion of
``choice.run_policy`` runs over the packed runs with the trained F_f at that price (choice's ``trained@<price>``),
and the mean Lab-PSNR over the first N propagated frames (L is the run's own, so only the chosen colour counts)
is compared with the flow chain's. The price kept has the highest mean gain over flow across the N asked (ties:
the lower price).

The head was fitted on these crops, so its predictions are at their best here: a price chosen on them is likely
lower than unseen footage needs (``python -m colorprop.measure.choice --split dev --policies flow,trained@0.1,...``
scores prices on whole frames of the seen sources instead).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from colorprop.engine.models import load_models
from colorprop.engine.nets.fusion_net import FusionNet
from colorprop.engine.step import AB_SCALE, CANDIDATE_CHANNELS, packed_slice
from colorprop.measure.choice import priced, run_policy
from colorprop.measure.metrics import mean_lab_psnr_first_n

__all__ = ["score_run", "best_price", "main"]


def score_run(packed: np.ndarray, fusion: FusionNet | None, ns: list[int]) -> tuple[dict[int, float], dict]:
    """One packed run (T x C x H x W, ``step.PACKED_LAYOUT``, with key-direct) through the recursion: F_f's choice,
    or the flow chain where ``fusion`` is None. Returns (Lab-PSNR over the first n frames per n, shares)."""
    cand = packed.astype(np.float32)
    direct = cand[:, CANDIDATE_CHANNELS:] if cand.shape[1] > CANDIDATE_CHANNELS else None
    abs_, shares = run_policy("flow" if fusion is None else "trained", cand, direct, fusion)
    lightness = [frame[packed_slice("gray")].transpose(1, 2, 0) * 100.0 for frame in cand]
    truth = [
        np.concatenate([L, f[packed_slice("ab_true")].transpose(1, 2, 0) * AB_SCALE], -1)
        for L, f in zip(lightness, cand)
    ]
    pred = [np.concatenate([L, ab], -1) for L, ab in zip(lightness, abs_)]
    return {n: mean_lab_psnr_first_n(pred, truth, n) for n in ns}, shares


def best_price(gains: dict[float, list[float]]) -> float:
    """The price with the highest mean gain over flow across the N (``gains``: price -> gain per N); ties: lowest."""
    return min(gains, key=lambda p: (-float(np.mean(gains[p])), p))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m colorprop.measure.leave_price", description=__doc__.split("\n")[0])
    ap.add_argument("--packed", required=True, help="a run folder's fusion_inputs.npz (training runs, key-direct)")
    ap.add_argument("--weights", required=True, help="weights folder with the error head's F_f")
    ap.add_argument("--prices", default="0,0.05,0.1,0.2,0.3,0.5,0.75,1.0")
    ap.add_argument("--n", default="10,49", help="frames scored (the packed runs are 50 frames: the key and 49)")
    ap.add_argument("--runs", type=int, default=0, help="this many packed runs, evenly spaced (0: all)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    models = load_models(Path(args.weights), device="cpu", precision="fp32")
    if models.fusion.cfg.head != "error":
        raise SystemExit(f"{args.weights}: F_f has the {models.fusion.cfg.head!r} head; a leave price needs 'error'")
    with np.load(args.packed) as z:
        runs = z["runs"]
    runs = runs[np.unique(np.linspace(0, len(runs) - 1, args.runs).round().astype(int))] if args.runs else runs
    ns, prices = [int(n) for n in args.n.split(",")], [float(p) for p in args.prices.split(",")]
    flow = [score_run(r, None, ns)[0] for r in runs]
    flow_mean = [float(np.mean([f[n] for f in flow])) for n in ns]
    report = {"packed": args.packed, "weights": args.weights, "runs": len(runs), "ns": ns, "flow": flow_mean}
    gains, rows = {}, {}
    for price in prices:
        net = priced(models.fusion, price)
        scored = [score_run(r, net, ns) for r in runs]
        mean = [float(np.mean([s[0][n] for s in scored])) for n in ns]
        gains[price] = [m - f for m, f in zip(mean, flow_mean)]
        shares = {k: float(np.mean([s[1][k] for s in scored])) for k in scored[0][1]}
        worst = [float(min(s[0][n] - f[n] for s, f in zip(scored, flow))) for n in ns]
        rows[str(price)] = {"psnr": mean, "gain": gains[price], "worst_run_gain": worst, "shares": shares}
        print(
            f"price {price:5.2f}  "
            + "  ".join(
                f"N={n} {m:6.2f} ({g:+.2f}, worst {w:+.2f})" for n, m, g, w in zip(ns, mean, gains[price], worst)
            )
            + "  "
            + " ".join(f"{k} {v:.3f}" for k, v in shares.items()),
            file=sys.stderr,
            flush=True,
        )
    report.update(prices=rows, chosen=best_price(gains))
    print(f"chosen leave_price {report['chosen']}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
