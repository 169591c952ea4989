"""Every setting of a training run, in one frozen dataclass (what config.json of a run folder holds)."""

from __future__ import annotations

from dataclasses import dataclass, field

from colorprop.engine.nets.fusion_net import FusionConfig
from colorprop.engine.nets.global_net import GlobalConfig
from colorprop.engine.nets.local_net import LocalNetConfig


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 20181203
    train_width: int = 320
    # data: segments of consecutive frames
    clip_segments: int = 16  # F_w's pairs (stage 1); F_f's runs are ``fusion_*_runs`` below
    synthetic_segments: int = 8
    segment_frames: int = 40
    max_clip_frames_step: int = 2  # frames may be taken every 1..N source frames (more motion)
    # the lists of split.json whose clips feed training: "train", + "train_generated" (cut-free excerpts of the
    # generated clips outside validation, docs/measure/generated_training_split.py)
    train_lists: tuple[str, ...] | list[str] = ("train",)
    # stage 1: F_w. local_from: "" trains it; "shipped" or a weights folder takes its F_w from there and skips
    # the stage (F_w is not in `full`; a fusion-only run reuses it; its config must equal ``local``)
    local_from: str = ""
    local: dict = field(
        default_factory=lambda: LocalNetConfig(
            channels=(16, 32, 64, 128), kernel_size=13, use_ab_prev=True, init_center_logit=2.0
        ).to_dict()
    )
    local_patch: int = 96
    local_batch: int = 12
    local_steps: int = (
        200  # F_w learns identity kernels on DIS-aligned pairs (docs/TRAINING.md); `full` does not use it
    )
    local_lr: float = 5e-4
    local_hard_weight: float = 20.0  # x |flow error| (ab/128 units): hard pixels count ~5-10x
    # stage 2: F_f trained through the recursion (step.propagate_step unrolled over whole runs)
    fusion: dict = field(default_factory=lambda: FusionConfig(width=24).to_dict())
    fusion_width: int = 256  # frames of the recursive runs are decoded at this width ...
    fusion_crop: int = 144  # ... and one fixed crop of crop x crop per run is kept (F_s sees the whole frame)
    fusion_clip_runs: int = 40
    fusion_synthetic_runs: int = 20
    fusion_frames: int = 50  # the room for F_f lies in frames 10-50 (docs/TRAINING.md)
    fusion_batch: int = 4
    fusion_steps: int = 80  # one step = one pass of a batch of runs through all their frames
    fusion_window: int = 10  # truncated back-propagation: an optimiser update every this many frames
    fusion_lr: float = 1e-3
    fusion_late_weight: float = 1.0  # frame t of T weighs 1 + late_weight * t / T in the loss
    fusion_confidence_within: float = 4.0  # F_f's confidence target: |error| < this (Lab ab units)
    fusion_confidence_weight: float = 0.05  # the confidence head's loss, beside the colour's
    # imitation of the oracle inside the recursion: the candidate closer to the truth, per pixel, on the states
    # the model itself visits; weighted by the margin (how much closer), so near-ties do not count.
    # Off: measured worse on the dev clips (it takes the key wherever the key is a little closer, which does not
    # carry on well; docs/TRAINING.md)
    fusion_choice_weight: float = 0.0
    # a price on taking the key match (its share, soft): where both candidates are as good, keep the flow's
    # colour, which is stable in time (measured: without it F_f took the key on 36 % of training pixels, the
    # oracle on 8 %, and lost on the dev clips)
    fusion_key_cost: float = 0.02
    # the error head: its choice's outcome beside its error fit, through the recursion (0: the fit alone): this
    # weight x (L1 on the written ab + fusion_key_cost x the soft share taken from a candidate other than the chain)
    fusion_outcome_weight: float = 0.0
    # the error head's fit, per pixel weighted by (max − min of its candidates' actual log errors) + this floor
    # (0: every pixel alike): most pixels are near-ties, which teach the argmin nothing
    fusion_fit_spread_floor: float = 0.0
    # F_f's starting weights: "" (fresh) or a weights folder whose fusion config is this run's (fine-tuning), or a
    # list of such folders: the mean of their F_f (a uniform soup; with fusion_steps 0, the soup is the result)
    fusion_from: str | list[str] = ""
    global_: dict = field(default_factory=lambda: GlobalConfig().to_dict())
    smoke: bool = False

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        return cls(**d)


SMOKE = dict(
    clip_segments=0,
    synthetic_segments=4,
    segment_frames=5,
    local_patch=64,
    local_batch=4,
    local_steps=12,
    train_width=192,
    fusion_width=96,
    fusion_crop=48,
    fusion_clip_runs=0,
    fusion_synthetic_runs=3,
    fusion_frames=7,
    fusion_batch=2,
    fusion_steps=4,
    fusion_window=3,
    smoke=True,
)
