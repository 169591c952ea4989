"""Training segments: runs of frames from the training clips of split.json and synthetic video from stills."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from colorprop.colour import convert
from colorprop.training.config import TrainConfig


@dataclass
class Segment:
    name: str
    frames: list[np.ndarray]  # linear Rec.709 HxWx3 at train width


def lab_split(frame_linear: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lab = convert.linear_rec709_to_lab(frame_linear)
    return lab[..., 0].astype(np.float32), np.ascontiguousarray(lab[..., 1:], dtype=np.float32)


def clip_segments(cfg: TrainConfig, rng: np.random.Generator, cache_dir: Path) -> list[Segment]:
    """Random runs of frames from the training clips of split.json's ``cfg.train_lists`` (never a dev or validation
    clip); one decoding pass per clip."""
    from colorprop.data.clips import clip_info, clip_path, read_ranges
    from colorprop.data.validation import training_entries

    entries = training_entries(lists=cfg.train_lists)
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
        clip = make_synthetic_clip(stills[k], cfg.segment_frames, rng, (cfg.train_width, height), others)
        segments.append(Segment(f"synthetic{i}:still{k}", clip.frames))
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


def fusion_runs(cfg: TrainConfig, cache_dir: Path) -> list[Segment]:
    """The runs F_f is trained on: training clips and synthetic video, ``fusion_frames`` long, at ``fusion_width``."""
    return make_segments(
        replace(
            cfg,
            train_width=cfg.fusion_width,
            segment_frames=cfg.fusion_frames,
            clip_segments=cfg.fusion_clip_runs,
            synthetic_segments=cfg.fusion_synthetic_runs,
        ),
        cache_dir,
    )
