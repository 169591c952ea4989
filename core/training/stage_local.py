"""Stage 1, F_w: consecutive DIS-aligned pairs; L1 between the kernel-warped previous chroma and the true
chroma. ``fit`` is the resumable crop-batch optimiser loop."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from colorprop.engine.flow import make_dis, warp_backward
from colorprop.engine.models import Models
from colorprop.engine.propagate import AB_SCALE, L_SCALE, flow_step
from colorprop.training.config import TrainConfig
from colorprop.training.data import Segment, lab_split
from colorprop.training.run_folder import Run, TrainingPaused


def local_pairs(segments: list[Segment]) -> dict[str, np.ndarray]:
    """Every consecutive pair, DIS pre-aligned as at inference: prev gray/ab warped onto the current frame.

    Arrays (float16, NCHW-ready): gray_prev, gray_cur (N x 1 x H x W, L/100), ab_prev, ab_cur (N x 2 x H x W, ab/128),
    grouped by frame size."""
    dis = make_dis()
    by_size: dict[tuple, list] = {}
    for seg in segments:
        labs = [lab_split(f) for f in seg.frames]
        for (L0, ab0), (L1, ab1) in zip(labs[:-1], labs[1:]):
            flowed = flow_step(dis, L0, ab0, L1)
            L0_aligned = warp_backward(L0, flowed.flow)
            item = np.concatenate(
                [
                    L0_aligned[None] / L_SCALE,
                    L1[None] / L_SCALE,
                    flowed.ab.transpose(2, 0, 1) / AB_SCALE,
                    ab1.transpose(2, 0, 1) / AB_SCALE,
                ]
            )
            by_size.setdefault(item.shape, []).append(item.astype(np.float16))
    return {f"{s[1]}x{s[2]}": np.stack(v) for s, v in by_size.items()}


def random_crops(arrays: dict[str, np.ndarray], batch: int, patch: int, rng: np.random.Generator) -> torch.Tensor:
    """A batch of random patch x patch crops (B x C x patch x patch float32) from frame stacks of several sizes."""
    keys = list(arrays)
    weights_ = np.array([len(arrays[k]) for k in keys], float)
    out = []
    for _ in range(batch):
        stack = arrays[keys[rng.choice(len(keys), p=weights_ / weights_.sum())]]
        item = stack[rng.integers(len(stack))]
        h, w = item.shape[-2:]
        p = min(patch, h, w)
        y, x = rng.integers(0, h - p + 1), rng.integers(0, w - p + 1)
        crop = item[:, y : y + p, x : x + p].astype(np.float32)
        if p < patch:
            crop = np.pad(crop, ((0, 0), (0, patch - p), (0, patch - p)), mode="edge")
        if rng.random() < 0.5:
            crop = crop[..., ::-1]
        out.append(np.ascontiguousarray(crop))
    return torch.from_numpy(np.stack(out))


def fit(
    stage: str,
    net: torch.nn.Module,
    arrays: dict[str, np.ndarray],
    steps: int,
    lr: float,
    batch: int,
    patch: int,
    seed: int,
    device: torch.device,
    run: Run,
    loss_fn,
    checkpoint_every: int = 50,
) -> None:
    """Adam + cosine schedule over random crops of ``arrays``; resumable; ``loss_fn(batch) -> (loss, logged)``."""
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    start = run.resume(stage, net, opt, sched)
    net.train()
    for step in range(start, steps):
        rng = np.random.default_rng([seed, step])  # the batch of step k depends on k alone: resume = uninterrupted
        loss, logged = loss_fn(random_crops(arrays, batch, patch, rng).to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        run.log(stage, step, loss=loss.item(), **logged)
        if (step + 1) % checkpoint_every == 0 or step + 1 == steps:
            run.checkpoint(stage, step + 1, net, opt, sched)
        elif run.out_of_steps():
            run.checkpoint(stage, step + 1, net, opt, sched)
        if run.out_of_steps():
            raise TrainingPaused(stage, step + 1)
    net.eval()


def train_local(models: Models, pairs: dict[str, np.ndarray], cfg: TrainConfig, run: Run) -> None:
    net = models.local

    def loss_fn(b: torch.Tensor):
        g0, g1, ab0, ab1 = b[:, 0:1], b[:, 1:2], b[:, 2:4], b[:, 4:6]
        pred = net.warp(ab0, net(g0, g1, ab0))
        # Flow already gets most pixels right; weight the pixels it gets wrong (occlusions, drift) up, or the
        # kernels learn only the identity (measured: collapsed by step 20 with a plain L1).
        hard = 1.0 + cfg.local_hard_weight * (ab0 - ab1).abs().sum(1, keepdim=True)
        loss = (hard * (pred - ab1).abs()).mean() / hard.mean()
        flow_only = (hard * (ab0 - ab1).abs()).mean() / hard.mean()
        return loss, {
            "flow_only": flow_only.item(),
            "l1": F.l1_loss(pred, ab1).item(),
            "flow_only_l1": F.l1_loss(ab0, ab1).item(),
        }

    fit(
        "local",
        net,
        pairs,
        cfg.local_steps,
        cfg.local_lr,
        cfg.local_batch,
        cfg.local_patch,
        cfg.seed + 1,
        models.device,
        run,
        loss_fn,
        checkpoint_every=100,
    )
