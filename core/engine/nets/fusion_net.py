"""F_f, fusion that chooses (paper 4.3, adapted): per pixel, pick one of the candidates.

The paper's F_f regresses chroma from the local and global estimates. Inside the frame-by-frame recursion a
regression leaks: any share of the key match it mixes into a well-tracked pixel is carried on and compounds
(measured: docs/TRAINING.md, "The chooser against the rule and the oracle"). So F_f predicts, per
pixel, a *choice* between the candidates, from cues that say where each one is right:

    inputs  N x n_inputs x H x W: gray, ab_flow (2), ab_key (2), |ab_flow − ab_key| (1), consistency,
            photometric, chain, age, similarity; with the key-direct candidate also ab_direct (2),
            |ab_flow − ab_direct|, |ab_key − ab_direct|, its consistency (``step.Candidates``: what each
            cue is; the error head sees the distances as log(1 + Lab units))
    body    ``len(dilations)`` 3x3 convs of ``width`` channels with ReLU (dilations widen the context)

Two heads (``FusionConfig.head``), each a 1x1 conv:

    "choice" (chain or key match; the shipped weights)
        key logit  = head + rule_gain · (rule_threshold − consistency)
                     The rule term starts the chooser at the measured rule "key match where the flow's
                     forward-backward consistency is low"; the head starts at zero and learns the rest.
        residual   = residual_max · tanh(·): a small bounded refinement of the chosen colour (0 disables it).
        confidence = sigmoid(·): the net's own estimate that its colour is right (trained against its error).
    "error" (any of ``candidates``: one head that predicts each candidate's error)
        predicted  = softplus(·), one per candidate: the expected log(1 + |ab_c − ab_true|), ab in Lab units.
        chosen     = argmin over candidates of predicted + leave_price on every candidate but the chain (hard;
                     ``step.propagate_step`` writes its colour): the chain is left only for a candidate predicted
                     better by more than the price (0, the default: the plain argmin).
        confidence = sigmoid((log(1 + error_within) − predicted[chosen]) / spread): P(error < error_within) of the
                     chosen candidate, a monotone map of its predicted error (spread is trained).

A convex choice cannot invent colours, which is what makes it safe on footage it has not seen.
The choice is made hard by ``step.choose`` (straight-through while training) or by the argmin.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from colorprop.engine.nets.config import ManifestConfig

__all__ = ["CANDIDATE_NAMES", "FusionConfig", "FusionOutput", "FusionNet", "N_INPUTS"]

CANDIDATE_NAMES = ("chain", "key", "direct")  # a config's candidates keep this order
HEADS = ("choice", "error")
N_INPUTS = 11  # F_f's inputs without the key-direct candidate
N_DIRECT_INPUTS = 5  # ab_direct (2), |ab_flow − ab_direct|, |ab_key − ab_direct|, the direct flow's consistency


@dataclass(frozen=True)
class FusionConfig(ManifestConfig):
    """width: channels per hidden layer. dilations: one per hidden layer.
    rule_threshold, rule_gain: the initial rule (key match where consistency < threshold); both trainable.
    residual_max: bound of the refinement, ab/128 units (0: none).
    memory_every, memory_size: F_s's memory of the run's own output (``propagate.Propagator``).
    candidates: what F_f chooses among (CANDIDATE_NAMES; "direct" = key-direct flow, one more DIS pair a frame).
    head: "choice" (the key logit; candidates chain and key only) or "error" (a predicted error per candidate).
    error_within: the error head's matte is P(|error| < this), Lab ab units.
    leave_price: the error head leaves the chain only for a candidate whose predicted log(1 + error) is lower by
    more than this (a margin chosen after training; 0: the plain argmin)."""

    width: int = 32
    dilations: tuple[int, ...] = (1, 2, 4, 1)
    rule_threshold: float = 0.5
    rule_gain: float = 12.0
    residual_max: float = 0.0
    memory_every: int = 0  # F_s also matches past output: every this many frames one joins (0: no memory)
    memory_size: int = 2  # at most this many past frames are kept
    candidates: tuple[str, ...] = ("chain", "key")
    head: str = "choice"
    error_within: float = 4.0
    leave_price: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "dilations", tuple(int(d) for d in self.dilations))
        object.__setattr__(self, "candidates", tuple(n for n in CANDIDATE_NAMES if n in self.candidates))
        if self.width < 1 or not self.dilations:
            raise ValueError(f"FusionConfig needs width >= 1 and at least one layer, got {self}")
        if self.head not in HEADS:
            raise ValueError(f"FusionConfig head {self.head!r}: choose from {', '.join(HEADS)}")
        if self.candidates[:1] != ("chain",) or len(self.candidates) < 2:
            raise ValueError(f"FusionConfig candidates {self.candidates}: the chain and at least one of key, direct")
        if self.head == "choice" and self.candidates != ("chain", "key"):
            raise ValueError("FusionConfig head 'choice' chooses between chain and key only; use head 'error'")
        if self.leave_price < 0 or (self.leave_price and self.head != "error"):
            raise ValueError(f"FusionConfig leave_price {self.leave_price}: >= 0, and for the error head only")

    @property
    def direct(self) -> bool:
        """Whether the key-direct candidate is computed (one more DIS pair a frame)."""
        return "direct" in self.candidates

    @property
    def n_inputs(self) -> int:
        return N_INPUTS + (N_DIRECT_INPUTS if self.direct else 0)


class FusionOutput(NamedTuple):
    """key_logit: N x 1 x H x W (> 0: the key match is preferred to the chain). residual: N x 2 x H x W, ab/128,
    bounded. confidence: N x 1 x H x W in [0, 1]. predicted: the error head's N x K x H x W predicted
    log(1 + error) per candidate (``FusionConfig.candidates`` order) and chosen the N x 1 x H x W index of the
    candidate taken (its module docstring), both None for the choice head."""

    key_logit: torch.Tensor
    residual: torch.Tensor
    confidence: torch.Tensor
    predicted: torch.Tensor | None = None
    chosen: torch.Tensor | None = None


class FusionNet(nn.Module):
    """F_f. ``forward(features N x n_inputs x H x W, consistency N x 1 x H x W) -> FusionOutput``."""

    def __init__(self, cfg: FusionConfig = FusionConfig()):
        super().__init__()
        self.cfg = cfg
        layers, cin = [], cfg.n_inputs
        for d in cfg.dilations:
            layers += [
                nn.Conv2d(cin, cfg.width, 3, padding=d, dilation=d, padding_mode="replicate"),
                nn.ReLU(inplace=True),
            ]
            cin = cfg.width
        self.body = nn.Sequential(*layers)
        if cfg.head == "choice":  # starts at zero: the chooser starts as the rule
            self.head = nn.Conv2d(cin, 4, 1)
            self.rule_threshold = nn.Parameter(torch.tensor(float(cfg.rule_threshold)))
            self.rule_gain = nn.Parameter(torch.tensor(float(cfg.rule_gain)))
            with torch.no_grad():
                self.head.weight.zero_()
        else:
            # He-initialised body (the default init shrinks the signal layer by layer: most units then sit dead or
            # always on and the fit stalls at the mean error), a random head and a linear path from the cues
            for layer in self.body:
                if isinstance(layer, nn.Conv2d):
                    nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
                    nn.init.zeros_(layer.bias)
            self.head = nn.Conv2d(cin, len(cfg.candidates), 1)
            self.skip = nn.Conv2d(cfg.n_inputs, len(cfg.candidates), 1, bias=False)
            self.log_spread = nn.Parameter(torch.tensor(math.log(0.3)))
        with torch.no_grad():
            self.head.bias.zero_()

    def forward(self, features: torch.Tensor, consistency: torch.Tensor) -> FusionOutput:
        if features.shape[1] != self.cfg.n_inputs:
            raise ValueError(f"FusionNet expects N x {self.cfg.n_inputs} x H x W features, got {tuple(features.shape)}")
        y = self.head(self.body(features))
        if self.cfg.head == "error":
            return self._errors((y + self.skip(features)).float())
        y = y.float()
        key_logit = y[:, 0:1] + self.rule_gain * (self.rule_threshold - consistency.float())
        residual = (
            self.cfg.residual_max * torch.tanh(y[:, 1:3]) if self.cfg.residual_max > 0 else torch.zeros_like(y[:, 1:3])
        )
        return FusionOutput(key_logit=key_logit, residual=residual, confidence=torch.sigmoid(y[:, 3:4]))

    def _errors(self, y: torch.Tensor) -> FusionOutput:
        """The error head: predicted log(1 + error) per candidate, the choice, the chosen one's as a confidence."""
        predicted = F.softplus(y)
        within = math.log1p(self.cfg.error_within)
        priced = predicted.detach()
        if self.cfg.leave_price:
            priced = torch.cat([priced[:, :1], priced[:, 1:] + self.cfg.leave_price], dim=1)
        chosen = priced.argmin(dim=1, keepdim=True)  # ties: the first (the chain)
        own = predicted.detach().gather(1, chosen)  # = the lowest prediction without a price
        confidence = torch.sigmoid((within - own) / self.log_spread.exp())
        key = self.cfg.candidates.index("key") if "key" in self.cfg.candidates else None
        key_logit = predicted[:, :1] - predicted[:, key : key + 1] if key is not None else torch.full_like(own, -1.0)
        return FusionOutput(key_logit, y.new_zeros(y.shape[0], 2, *y.shape[2:]), confidence, predicted, chosen)
