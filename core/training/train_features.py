"""Option (b) for F_s's features: a small net trained by colour propagation itself.

"Tracking Emerges by Colorizing Videos" (Vondrick et al. 2018): from two *gray* frames of a clip, the
features of the target attend over the reference, and the attention copies the reference's colour;
the only loss is the target's true colour. No labels, no ImageNet: the features learn to match.

    gray ref, gray tgt ─ TinyFeatures ─▶ fine (stride 4), coarse (stride 16), unit norm
    A = softmax(f_tgt · f_refᵀ / τ)  over reference positions (per grid)
    ab_tgt ≈ A · ab_ref   (ab pooled to the grid)         loss: L1, fine + coarse

    python -m colorprop.training.train_features --out runs/features [--steps 800]
writes <out>/weights: the shipped manifest with its ``global`` entry replaced by these features, so
``colorprop eval --methods global --weights <out>/weights`` compares it with the ImageNet backbone.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from colorprop.engine import weights
from colorprop.engine.nets.features import STRIDE_COARSE, STRIDE_FINE, TinyFeatures, TinyFeaturesConfig
from colorprop.engine.nets.global_net import GlobalBranch, GlobalConfig
from colorprop.engine.propagate import AB_SCALE, L_SCALE
from colorprop.training.config import TrainConfig
from colorprop.training.data import lab_split, make_segments


def attention_copy(f_tgt: torch.Tensor, f_ref: torch.Tensor, ab_ref: torch.Tensor, tau: float) -> torch.Tensor:
    """f_*: N x C x h x w (unit norm), ab_ref: N x 2 x h x w -> N x 2 x h x w, each target cell a softmax-weighted
    mean of the reference's colour."""
    n, c, h, w = f_tgt.shape
    logits = torch.einsum("nct,ncr->ntr", f_tgt.flatten(2), f_ref.flatten(2)) / tau  # N x hw x hw
    return torch.einsum("ntr,ncr->nct", logits.softmax(-1), ab_ref.flatten(2)).view(n, 2, h, w)


def segment_stack(segments) -> np.ndarray:
    """S x T x 3 x H x W float16: L/100, a/128, b/128 per frame (segments of one size only)."""
    out = []
    for seg in segments:
        labs = [lab_split(f) for f in seg.frames]
        out.append(np.stack([np.concatenate([L[None] / L_SCALE, ab.transpose(2, 0, 1) / AB_SCALE]) for L, ab in labs]))
    sizes = {s.shape for s in out}
    common = max(sizes, key=lambda s: sum(x.shape == s for x in out))
    return np.stack([s for s in out if s.shape == common]).astype(np.float16)


def sample_pairs(stack: np.ndarray, batch: int, patch: int, max_gap: int, rng: np.random.Generator) -> torch.Tensor:
    """B x 2 x 3 x patch x patch: (reference, target) crops at the same place, ``1..max_gap`` frames apart."""
    s, t, _, h, w = stack.shape
    items = []
    for _ in range(batch):
        i = rng.integers(s)
        gap = int(rng.integers(1, min(max_gap, t - 1) + 1))
        a = int(rng.integers(0, t - gap))
        y, x = rng.integers(0, h - patch + 1), rng.integers(0, w - patch + 1)
        pair = stack[i, [a, a + gap], :, y : y + patch, x : x + patch].astype(np.float32)
        items.append(pair[..., ::-1] if rng.random() < 0.5 else pair)
    return torch.from_numpy(np.ascontiguousarray(np.stack(items)))


def train_features(
    stack: np.ndarray,
    steps: int,
    seed: int,
    log=print,
    batch: int = 8,
    patch: int = 128,
    max_gap: int = 10,
    tau: float = 0.05,
    lr: float = 1e-3,
) -> TinyFeatures:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = TinyFeatures(TinyFeaturesConfig())
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for step in range(steps):
        pairs = sample_pairs(stack, batch, patch, max_gap, rng)
        ref, tgt = pairs[:, 0], pairs[:, 1]
        f_ref, f_tgt = net(ref[:, :1]), net(tgt[:, :1])
        loss = 0.0
        for stride, fr, ft in ((STRIDE_FINE, f_ref.fine, f_tgt.fine), (STRIDE_COARSE, f_ref.coarse, f_tgt.coarse)):
            fr, ft = F.normalize(fr, dim=1), F.normalize(ft, dim=1)
            ab_ref, ab_tgt = F.avg_pool2d(ref[:, 1:], stride), F.avg_pool2d(tgt[:, 1:], stride)
            loss = loss + F.l1_loss(attention_copy(ft, fr, ab_ref, tau), ab_tgt)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 0 or step + 1 == steps:
            log(f"[features {step}] loss={loss.item():.4f}")
    return net.eval()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m colorprop.training.train_features", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--base-weights", default=None, help="weights folder whose manifest is copied (default: shipped)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    cfg = replace(TrainConfig(), clip_segments=40, synthetic_segments=20, segment_frames=20)
    t0 = time.perf_counter()
    stack = segment_stack(make_segments(cfg, Path(".cache")))
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    net = train_features(stack, args.steps, cfg.seed, log)
    base = weights.read_manifest(Path(args.base_weights) if args.base_weights else None)
    folder = out / "weights"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("local", "fusion"):
        shutil.copy(base.folder / base.network(name).file, folder)
    global_cfg = replace(GlobalConfig.from_dict(base.network("global").config), features="tiny").to_dict()
    branch = GlobalBranch(GlobalConfig.from_dict(global_cfg), features=net)
    data = json.loads(json.dumps(base.data))
    data["networks"]["global"] = weights.write_network(folder, "global", branch.state_dict(), global_cfg)
    data["training"]["features"] = {
        "kind": "tiny, self-supervised by colour propagation",
        "steps": args.steps,
        "wall_seconds": round(time.perf_counter() - t0, 1),
    }
    data["metrics"] = {}
    weights.write_manifest(folder, data)
    log(f"tiny features trained in {(time.perf_counter() - t0) / 60:.1f} min -> {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
