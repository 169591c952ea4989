"""Stage 2, F_f through the recursion: precomputed candidates of whole runs, unrolled exactly as inference
runs them (``step.propagate_step``)."""

from __future__ import annotations

import sys

import numpy as np
import torch
import torch.nn.functional as F

from colorprop.engine.models import Models
from colorprop.engine.propagate import AB_SCALE, run_candidates
from colorprop.engine.step import (
    Candidates,
    Carried,
    StepOutput,
    ab_distance,
    candidate_colours,
    carry_on,
    packed_slice,
    propagate_step,
    soft_choice,
    start,
    unpack_candidates,
)
from colorprop.training.config import TrainConfig
from colorprop.training.data import Segment, lab_split
from colorprop.training.run_folder import Run, TrainingPaused


def fusion_inputs(models: Models, runs: list[Segment], crop: int, seed: int) -> dict[str, np.ndarray]:
    """Candidates of every run (``run_candidates``) cut to one fixed random crop x crop window per run:
    {"runs": R x T x CANDIDATE_CHANNELS x crop x crop float16}. Flow vectors stay in pixels: they may point
    outside the window, where the warp repeats the border, as it does at a frame's edge."""
    rng = np.random.default_rng(seed)
    kept = []
    for i, run in enumerate(runs):
        if i % 10 == 0:
            print(f"fusion inputs: run {i}/{len(runs)}", file=sys.stderr, flush=True)
        cand = run_candidates(models, [lab_split(f) for f in run.frames])
        h, w = cand.shape[-2:]
        if h < crop or w < crop:
            continue
        y, x = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
        kept.append(cand[..., y : y + crop, x : x + crop].astype(np.float16))
    return {"runs": np.stack(kept)}


def unroll_loss(net, carried: Carried, frames: torch.Tensor, t0: int, total: int, cfg: TrainConfig):
    """The recursion over ``frames`` (B x T' x CANDIDATE_CHANNELS x H x W, frame indices t0.. of runs ``total``
    long) from ``carried``, exactly as inference runs it (``step.propagate_step``); returns (loss, carried after
    the last frame, logged numbers). Loss, weighted toward later frames: the choice head, L1 on ab, plus the choice
    against the oracle's (``fusion_choice_weight``); the error head, ``error_fit`` (+ ``outcome_loss`` when
    ``fusion_outcome_weight`` asks: its choice judged by what it writes); both, F_f's confidence against whether
    its colour is within ``fusion_confidence_within`` of the truth (binary cross-entropy)."""
    loss = frames.new_zeros(())
    logged: dict[str, float] = {}
    within = cfg.fusion_confidence_within / AB_SCALE
    for i in range(frames.shape[1]):
        cand, ab_true = unpack_candidates(frames[:, i])
        out = propagate_step(net, carried, cand, training=True, choice_gradient=cfg.fusion_outcome_weight > 0)
        weight = 1.0 + cfg.fusion_late_weight * (t0 + i) / total
        if out.predicted is None:
            term, numbers = choice_loss(out, cand, ab_true, cfg)
        else:
            term, numbers = error_fit(out, cand, ab_true, net.cfg.candidates, cfg.fusion_fit_spread_floor)
            if cfg.fusion_outcome_weight:
                term = term + cfg.fusion_outcome_weight * outcome_loss(out, ab_true, cfg.fusion_key_cost)
        loss = loss + weight * term
        loss = loss + cfg.fusion_confidence_weight * confidence_loss(out, ab_true, within)
        numbers["flow_l1"] = (out.ab_flow.detach() - ab_true).abs().mean().item()
        numbers["key_share"] = out.key_weight.detach().mean().item()
        for k, v in numbers.items():
            logged[k] = logged.get(k, 0.0) + v
        carried = carry_on(Carried(out.ab_flow, out.age_flow), out.ab)
    n = frames.shape[1]
    return loss / n, carried, {k: v / n for k, v in logged.items()}


def choice_loss(out: StepOutput, cand: Candidates, ab_true: torch.Tensor, cfg: TrainConfig):
    """The choice head's loss on one frame (before the late weight): L1 on ab, the choice against the oracle's
    weighted by its margin, a price on the key's (soft) share; returns (loss, logged numbers)."""
    l1 = (out.ab - ab_true).abs().mean()
    d_key = ab_distance(cand.ab_key, ab_true)
    d_flow = ab_distance(out.ab_flow.detach(), ab_true)
    key_closer = (d_key < d_flow).float()
    margin = (d_key - d_flow).abs()
    choice = (margin * F.binary_cross_entropy_with_logits(out.key_logit, key_closer, reduction="none")).mean()
    key_cost = torch.sigmoid(out.key_logit).mean()
    loss = l1 + cfg.fusion_choice_weight * choice + cfg.fusion_key_cost * key_cost
    return loss, {"l1": l1.item(), "oracle_share": key_closer.mean().item()}


def error_fit(
    out: StepOutput, cand: Candidates, ab_true: torch.Tensor, names: tuple[str, ...], spread_floor: float = 0.0
):
    """The error head's loss on one frame: per pixel and candidate, its predicted log(1 + error) against the
    actual one (ab in Lab units), Huber in log space, on the states the model itself visits (the chain is what
    it carried); no colour loss (the choice is an argmin). ``spread_floor`` > 0: each pixel weighted by how far
    apart its candidates' actual errors are (max − min, log units) + the floor, normalised to mean 1, so the
    pixels where the choice matters teach the most. Returns (loss, logged numbers)."""
    offered = candidate_colours(cand, out.ab_flow)
    actual = torch.cat([ab_distance(offered[n].detach(), ab_true) for n in names], dim=1)
    target = torch.log1p(actual * AB_SCALE)
    fit = F.smooth_l1_loss(out.predicted, target, beta=0.25, reduction="none")
    if spread_floor > 0:
        weight = (target.amax(dim=1, keepdim=True) - target.amin(dim=1, keepdim=True)) + spread_floor
        fit = fit * (weight / weight.mean())
    fit = fit.mean()
    best = actual.argmin(dim=1, keepdim=True)
    numbers = {
        "error_fit": fit.item(),
        "l1": (out.ab - ab_true).abs().mean().item(),
        "right_choice": (best == out.chosen).float().mean().item(),
    }
    numbers.update({f"{n}_share": (out.chosen == i).float().mean().item() for i, n in enumerate(names)})
    return fit, numbers


def outcome_loss(out: StepOutput, ab_true: torch.Tensor, leave_cost: float) -> torch.Tensor:
    """The error head's choice judged by what it writes: L1 on ab (its gradient reaches the predictions through the
    soft choice, ``step.soft_choice``, and earlier frames through the carried colour) + ``leave_cost`` x the soft
    share taken from a candidate other than the chain (where all are as good, keep the chain: stable in time)."""
    leave = 1.0 - soft_choice(out.predicted)[:, 0].mean()
    return (out.ab - ab_true).abs().mean() + leave_cost * leave


def confidence_loss(out: StepOutput, ab_true: torch.Tensor, within: float) -> torch.Tensor:
    """F_f's confidence (the written matte) against whether the written colour is within ``within`` (ab/128)."""
    right = (ab_distance(out.ab.detach(), ab_true) < within).float()
    return F.binary_cross_entropy(out.confidence.clamp(1e-4, 1 - 1e-4), right)


def train_fusion(models: Models, data: dict[str, np.ndarray], cfg: TrainConfig, run: Run) -> None:
    """F_f through the recursion: each step takes a batch of whole runs from their key, and updates every
    ``fusion_window`` frames (truncated back-propagation; the state carried into a window is the current
    model's own output, so it learns to recover from its own drift). The batch of step k is drawn from
    (seed, k): a resumed run draws exactly the batches an uninterrupted one would."""
    net, dev = models.fusion, models.device
    runs = data["runs"]
    opt = torch.optim.Adam(net.parameters(), lr=cfg.fusion_lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.fusion_steps)
    start_step = run.resume("fusion", net, opt, sched)
    net.train()
    total = runs.shape[1]
    for step_i in range(start_step, cfg.fusion_steps):
        rng = np.random.default_rng([cfg.seed + 2, step_i])
        pick = rng.choice(len(runs), size=min(cfg.fusion_batch, len(runs)), replace=False)
        batch = torch.from_numpy(runs[np.sort(pick)].astype(np.float32)).to(dev)
        if rng.random() < 0.5:  # mirror: flip the image and the flow's x component
            batch = batch.flip(-1)
            batch[:, :, packed_slice("flow").start] *= -1
        carried = start(batch[:, 0, packed_slice("ab_true")])
        logged_sum: dict[str, float] = {}
        for t0 in range(1, total, cfg.fusion_window):
            window = batch[:, t0 : t0 + cfg.fusion_window]
            loss, carried, logged = unroll_loss(net, carried, window, t0, total, cfg)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            carried = Carried(*(x.detach() for x in carried))
            for k, v in logged.items():
                logged_sum[k] = logged_sum.get(k, 0.0) + v * window.shape[1] / (total - 1)
        sched.step()
        run.log("fusion", step_i, **logged_sum)
        if (step_i + 1) % 5 == 0 or step_i + 1 == cfg.fusion_steps:
            run.checkpoint("fusion", step_i + 1, net, opt, sched)
        elif run.out_of_steps():
            run.checkpoint("fusion", step_i + 1, net, opt, sched)
        if run.out_of_steps():
            raise TrainingPaused("fusion", step_i + 1)
    net.eval()
