"""F_f, fusion that chooses (paper 4.3, adapted): per pixel, pick the flow-carried colour or the key match.

The paper's F_f regresses chroma from the local and global estimates. Inside the frame-by-frame recursion a
regression leaks: any share of the key match it mixes into a well-tracked pixel is carried on and compounds
(measured: docs/TRAINING.md, "The chooser against the rule and the oracle"). So F_f predicts, per
pixel, a *choice* between the candidates, from cues that say where each one is right:

    inputs  N x 11 x H x W: gray, ab_flow (2), ab_key (2), |ab_flow − ab_key| (1), consistency, photometric,
            chain, age, similarity (``step.Candidates``: what each cue is)
    body    ``len(dilations)`` 3x3 convs of ``width`` channels with ReLU (dilations widen the context)
    head    1x1 conv -> key logit, residual (2), confidence logit

    key logit  = head + rule_gain · (rule_threshold − consistency)
                 The rule term starts the chooser at the measured rule "key match where the flow's
                 forward-backward consistency is low"; the head starts at zero and learns the rest.
    residual   = residual_max · tanh(·): a small bounded refinement of the chosen colour (0 disables it).
    confidence = sigmoid(·): the net's own estimate that its colour is right (trained against its error).

A convex choice cannot invent colours, which is what makes it safe on footage it has not seen.
The choice is made hard by ``step.choose`` (straight-through while training).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn as nn

from colorprop.engine.nets.config import ManifestConfig

__all__ = ["FusionConfig", "FusionOutput", "FusionNet", "N_INPUTS"]

N_INPUTS = 11


@dataclass(frozen=True)
class FusionConfig(ManifestConfig):
    """width: channels per hidden layer. dilations: one per hidden layer.
    rule_threshold, rule_gain: the initial rule (key match where consistency < threshold); both trainable.
    residual_max: bound of the refinement, ab/128 units (0: none).
    memory_every, memory_size: F_s's memory of the run's own output (``propagate.Propagator``)."""

    width: int = 32
    dilations: tuple[int, ...] = (1, 2, 4, 1)
    rule_threshold: float = 0.5
    rule_gain: float = 12.0
    residual_max: float = 0.0
    memory_every: int = 0  # F_s also matches past output: every this many frames one joins (0: no memory)
    memory_size: int = 2  # at most this many past frames are kept

    def __post_init__(self):
        object.__setattr__(self, "dilations", tuple(int(d) for d in self.dilations))
        if self.width < 1 or not self.dilations:
            raise ValueError(f"FusionConfig needs width >= 1 and at least one layer, got {self}")


class FusionOutput(NamedTuple):
    """key_logit: N x 1 x H x W (> 0: take the key match). residual: N x 2 x H x W, ab/128, bounded.
    confidence: N x 1 x H x W in [0, 1]."""

    key_logit: torch.Tensor
    residual: torch.Tensor
    confidence: torch.Tensor


class FusionNet(nn.Module):
    """F_f. ``forward(features N x N_INPUTS x H x W, consistency N x 1 x H x W) -> FusionOutput``."""

    def __init__(self, cfg: FusionConfig = FusionConfig()):
        super().__init__()
        self.cfg = cfg
        layers, cin = [], N_INPUTS
        for d in cfg.dilations:
            layers += [
                nn.Conv2d(cin, cfg.width, 3, padding=d, dilation=d, padding_mode="replicate"),
                nn.ReLU(inplace=True),
            ]
            cin = cfg.width
        self.body = nn.Sequential(*layers)
        self.head = nn.Conv2d(cin, 4, 1)
        self.rule_threshold = nn.Parameter(torch.tensor(float(cfg.rule_threshold)))
        self.rule_gain = nn.Parameter(torch.tensor(float(cfg.rule_gain)))
        with torch.no_grad():
            self.head.weight.zero_()
            self.head.bias.zero_()

    def forward(self, features: torch.Tensor, consistency: torch.Tensor) -> FusionOutput:
        if features.shape[1] != N_INPUTS:
            raise ValueError(f"FusionNet expects N x {N_INPUTS} x H x W features, got {tuple(features.shape)}")
        y = self.head(self.body(features)).float()
        key_logit = y[:, 0:1] + self.rule_gain * (self.rule_threshold - consistency.float())
        residual = (
            self.cfg.residual_max * torch.tanh(y[:, 1:3]) if self.cfg.residual_max > 0 else torch.zeros_like(y[:, 1:3])
        )
        return FusionOutput(key_logit=key_logit, residual=residual, confidence=torch.sigmoid(y[:, 3:4]))
