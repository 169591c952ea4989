"""F_w, the local branch: per-pixel separable kernels that carry the previous frame's chroma forward.

A small SepConv-style U-Net (encoder-decoder with skip connections) sees the previous and current
gray frames (optionally the previous chroma too) and predicts, for every output pixel, a vertical
and a horizontal K-tap kernel (softmax over the taps). ``LocalNet.warp`` applies them to the
previous chroma with ``sepconv.apply_separable_kernels`` (replicate borders).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from colorprop.engine.nets.config import ManifestConfig

from colorprop.engine.nets.sepconv import apply_separable_kernels

__all__ = ["LocalNetConfig", "LocalOutput", "LocalNet"]

GRAY_CLIP = 1.2  # networks see L/100 clipped to [0, 1.2] (docs/ARCHITECTURE.md)


@dataclass(frozen=True)
class LocalNetConfig(ManifestConfig):
    """Configuration of F_w (stored in the weights manifest via ``to_dict``).

    channels: encoder widths per level; ``len(channels) - 1`` poolings, so inputs are padded to a
        multiple of ``2 ** (len(channels) - 1)``.
    kernel_size: K, taps per 1-D kernel (odd). Reach is ``(K // 2) * dilation`` pixels.
    dilation: spacing of the kernel taps in pixels.
    use_ab_prev: also feed the previous chroma (N x 2) to the network (4 input channels, else 2).
    init_center_logit: bias of the centre tap at initialisation, so an untrained net is close to
        the identity warp (centre weight per 1-D kernel = e^b / (e^b + K - 1)).
    """

    channels: tuple[int, ...] = (16, 32, 64, 128)
    kernel_size: int = 13
    dilation: int = 1
    use_ab_prev: bool = False
    init_center_logit: float = 5.0

    def __post_init__(self):
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        if self.kernel_size % 2 != 1 or self.kernel_size < 1:
            raise ValueError(f"kernel_size must be odd and >= 1, got {self.kernel_size}")
        if self.dilation < 1:
            raise ValueError(f"dilation must be >= 1, got {self.dilation}")
        if len(self.channels) < 2:
            raise ValueError("channels needs at least two levels")


class LocalOutput(NamedTuple):
    """k_vertical, k_horizontal: N x K x H x W, each softmax-normalised over K (>= 0, sum 1)."""

    k_vertical: torch.Tensor
    k_horizontal: torch.Tensor


def _conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1),
        nn.ReLU(inplace=True),
    )


class _Up(nn.Module):
    """3x3 conv to the skip's width (at the coarse level, 4x cheaper), bilinear x2, concat with the
    skip, conv block."""

    def __init__(self, cin: int, cskip: int):
        super().__init__()
        self.reduce = nn.Sequential(nn.Conv2d(cin, cskip, 3, padding=1), nn.ReLU(inplace=True))
        self.block = _conv_block(2 * cskip, cskip)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(self.reduce(x), size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.block(torch.cat([x, skip], dim=1))


class LocalNet(nn.Module):
    """F_w. ``forward(gray_prev, gray_cur, ab_prev=None) -> LocalOutput``; ``warp(ab_prev, out)``."""

    def __init__(self, cfg: LocalNetConfig = LocalNetConfig()):
        super().__init__()
        self.cfg = cfg
        ch = cfg.channels
        cin = 4 if cfg.use_ab_prev else 2
        self.encoders = nn.ModuleList()
        for c in ch:
            self.encoders.append(_conv_block(cin, c))
            cin = c
        self.decoders = nn.ModuleList(_Up(ch[i + 1], ch[i]) for i in reversed(range(len(ch) - 1)))
        k = cfg.kernel_size
        # one trunk, one conv emitting both kernels: channels [0, K) vertical, [K, 2K) horizontal
        self.head = nn.Sequential(
            nn.Conv2d(ch[0], ch[0], 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(ch[0], 2 * k, 3, padding=1)
        )
        last = self.head[-1]
        with torch.no_grad():
            last.weight.mul_(0.01)
            last.bias.zero_()
            last.bias[k // 2] = cfg.init_center_logit
            last.bias[k + k // 2] = cfg.init_center_logit

    @property
    def multiple(self) -> int:
        return 2 ** (len(self.cfg.channels) - 1)

    def forward(
        self, gray_prev: torch.Tensor, gray_cur: torch.Tensor, ab_prev: torch.Tensor | None = None
    ) -> LocalOutput:
        """Predict the kernels that map frame k-1's chroma to frame k.

        Args:
            gray_prev, gray_cur: N x 1 x H x W, L/100 (clipped here to [0, 1.2]). Any H, W.
            ab_prev: N x 2 x H x W, ab/128; required iff ``cfg.use_ab_prev``.

        Returns:
            LocalOutput(k_vertical, k_horizontal), each N x K x H x W, softmax over K.
        """
        x = [gray_prev.clamp(0.0, GRAY_CLIP), gray_cur.clamp(0.0, GRAY_CLIP)]
        if self.cfg.use_ab_prev:
            if ab_prev is None:
                raise ValueError("LocalNet configured with use_ab_prev=True needs ab_prev")
            x.append(ab_prev)
        x = torch.cat(x, dim=1)
        h, w = x.shape[-2:]
        m = self.multiple
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        skips = []
        for i, enc in enumerate(self.encoders):
            if i:
                x = F.avg_pool2d(x, 2)
            x = enc(x)
            skips.append(x)
        for dec, skip in zip(self.decoders, reversed(skips[:-1])):
            x = dec(x, skip)
        logits = self.head(x)[..., :h, :w]
        k = self.cfg.kernel_size
        return LocalOutput(torch.softmax(logits[:, :k], dim=1), torch.softmax(logits[:, k:], dim=1))

    def warp(self, ab_prev: torch.Tensor, out: LocalOutput) -> torch.Tensor:
        """Apply the predicted kernels to ``ab_prev`` (N x C x H x W, e.g. ab/128) -> N x C x H x W."""
        return apply_separable_kernels(ab_prev, out.k_vertical, out.k_horizontal, self.cfg.dilation)
