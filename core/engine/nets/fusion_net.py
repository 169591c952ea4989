"""F_f, fusion and refinement (paper 4.3): local + global chroma -> final chroma.

Five 3x3 conv layers of ``width`` (64) channels with ReLU and dilations 1, 2, 4, 1, 1, then a linear
3x3 conv to 2 chroma channels. The chroma inputs are instance-normalised *jointly*: per sample and
per channel (a, b), one mean and one standard deviation over the pixels of ab_local and ab_global
together; the same statistics de-normalise the output. Gray is instance-normalised on its own;
cues (e.g. match similarity, flow consistency) are passed as they are.

With ``residual=True`` the output is ``ab_local + std * delta``; the last conv starts near zero, so
an untrained net returns ab_local. Because the chroma statistics are reused, the net is equivariant
to affine changes of the chroma inputs: ``F(g, s*l + t, s*g_ab + t) = s*F(g, l, g_ab) + t`` per
channel (s > 0), up to ``eps``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
import torch.nn as nn

__all__ = ["FusionConfig", "FusionOutput", "FusionNet", "joint_chroma_stats"]

GRAY_CLIP = 1.2


@dataclass(frozen=True)
class FusionConfig:
    """width: channels per layer (paper: 64). dilations: one per hidden layer (paper: 1,2,4,1,1).
    n_cues: extra input channels (may be 0). residual: predict a correction to ab_local.
    eps: added to the variance in the instance normalisation ((ab/128)^2 units).
    init_scale: multiplier on the output conv's initial weights (small: starts near ab_local)."""

    width: int = 64
    dilations: tuple[int, ...] = (1, 2, 4, 1, 1)
    n_cues: int = 0
    residual: bool = True
    eps: float = 1e-4
    init_scale: float = 0.01

    def __post_init__(self):
        object.__setattr__(self, "dilations", tuple(int(d) for d in self.dilations))
        if self.n_cues < 0:
            raise ValueError(f"n_cues must be >= 0, got {self.n_cues}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["dilations"] = list(self.dilations)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "FusionConfig":
        d = dict(d)
        if "dilations" in d:
            d["dilations"] = tuple(d["dilations"])
        return cls(**d)


class FusionOutput(NamedTuple):
    """ab: N x 2 x H x W, ab/128, unclipped."""

    ab: torch.Tensor


def joint_chroma_stats(ab_local: torch.Tensor, ab_global: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample, per chroma channel mean and std over both inputs' pixels -> (N x 2 x 1 x 1) x 2."""
    both = torch.cat([ab_local.flatten(2), ab_global.flatten(2)], dim=2)  # N x 2 x 2HW
    var, mean = torch.var_mean(both, dim=2, unbiased=False, keepdim=True)
    return mean.unsqueeze(-1), torch.sqrt(var + eps).unsqueeze(-1)


class FusionNet(nn.Module):
    """F_f. ``forward(gray, ab_local, ab_global, cues=None) -> FusionOutput``."""

    def __init__(self, cfg: FusionConfig = FusionConfig()):
        super().__init__()
        self.cfg = cfg
        cin = 1 + 2 + 2 + cfg.n_cues
        layers = []
        for d in cfg.dilations:
            layers += [nn.Conv2d(cin, cfg.width, 3, padding=d, dilation=d), nn.ReLU(inplace=True)]
            cin = cfg.width
        self.body = nn.Sequential(*layers)
        self.out = nn.Conv2d(cin, 2, 3, padding=1)
        with torch.no_grad():
            self.out.weight.mul_(cfg.init_scale)
            self.out.bias.zero_()

    def forward(self, gray: torch.Tensor, ab_local: torch.Tensor, ab_global: torch.Tensor,
                cues: torch.Tensor | None = None) -> FusionOutput:
        """Fuse the two chroma estimates.

        Args:
            gray: N x 1 x H x W, L/100 (clipped here to [0, 1.2]).
            ab_local: N x 2 x H x W, ab/128 from F_w. ab_global: N x 2 x H x W, ab/128 from F_s.
            cues: N x n_cues x H x W or None (only when n_cues == 0).

        Returns:
            FusionOutput(ab N x 2 x H x W, ab/128).
        """
        cfg = self.cfg
        if cfg.n_cues:
            if cues is None or cues.shape[1] != cfg.n_cues:
                got = None if cues is None else tuple(cues.shape)
                raise ValueError(f"FusionNet expects cues N x {cfg.n_cues} x H x W, got {got}")
        elif cues is not None and cues.shape[1] != 0:
            raise ValueError(f"FusionNet configured with n_cues=0 got cues {tuple(cues.shape)}")
        mean, std = joint_chroma_stats(ab_local, ab_global, cfg.eps)
        g = gray.clamp(0.0, GRAY_CLIP)
        g_var, g_mean = torch.var_mean(g, dim=(2, 3), unbiased=False, keepdim=True)
        x = [(g - g_mean) / torch.sqrt(g_var + cfg.eps), (ab_local - mean) / std, (ab_global - mean) / std]
        if cfg.n_cues:
            x.append(cues)
        y = self.out(self.body(torch.cat(x, dim=1)))
        ab = ab_local + std * y if cfg.residual else mean + std * y
        return FusionOutput(ab=ab)
