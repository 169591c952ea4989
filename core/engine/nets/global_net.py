"""F_s, the global branch: copy the key's colour at a coarse-to-fine feature match (paper 4.2).

Instead of copying the key's chroma itself, we copy the key's *local colour model*: in every
window of the key (``color_window`` x ``color_window`` cells of the stride-4 grid) a regularised
linear regression of ab on L, ``ab ~ a + beta * L`` (guided-filter style). At the matched key
location the model is evaluated with the current frame's own full-resolution L, so the copied
colour follows the current frame's luminance edges (measured +1.25 dB over plain ab copying).

Usage (one key, many frames; the key state is computed once)::

    branch = GlobalBranch(GlobalConfig())
    key = branch.encode_key(gray_key, ab_key)
    out = branch(gray_cur, key)          # GlobalOutput(ab, similarity)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from colorprop.engine.nets.features import (
    GRAY_CLIP,
    STRIDE_COARSE,
    STRIDE_FINE,
    FeatureExtractor,
    Features,
    build_features,
    pad_to_multiple,
)
from colorprop.engine.nets.matching import Match, match_coarse_to_fine, readout

__all__ = ["GlobalConfig", "KeyState", "GlobalOutput", "GlobalBranch", "local_color_model"]


@dataclass(frozen=True)
class GlobalConfig:
    """Configuration of F_s (goes into the manifest via ``to_dict``).

    features: extractor kind when none is passed in (``efficientnet_lite0`` | ``tiny``).
    k, roi_radius, temperature, soft_topk, chunk: see ``matching.match_coarse_to_fine``.
    color_model: ``linear`` (key's local ab-on-L regression, evaluated with the current L) or
        ``copy`` (the key's mean ab per stride-4 cell).
    color_window: regression window, in stride-4 cells (odd). color_eps: ridge term added to the
        window's variance of L (L/100 units squared). beta_max: |slope| clamp (ab/128 per L/100).
    """

    features: str = "efficientnet_lite0"
    k: int = 4
    roi_radius: int = 1
    temperature: float = 0.02
    soft_topk: int = 8
    chunk: int = 64
    color_model: str = "linear"
    color_window: int = 9
    color_eps: float = 1e-4
    beta_max: float = 5.0

    def __post_init__(self):
        if self.color_model not in ("linear", "copy"):
            raise ValueError(f"color_model must be 'linear' or 'copy', got {self.color_model!r}")
        if self.color_window % 2 != 1:
            raise ValueError(f"color_window must be odd, got {self.color_window}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "GlobalConfig":
        return cls(**d)


class KeyState(NamedTuple):
    """What the key contributes to every frame; computed once per key by ``encode_key``.

    features: the key's ``Features``.
    color_model: N x 4 x H4 x W4 on the key's fine grid: (a_a, a_b, beta_a, beta_b), so that
        ab/128 ~ a + beta * L/100 around that location (beta = 0 in ``copy`` mode).
    ab_fine: N x 2 x H4 x W4, the key's mean ab/128 per stride-4 cell.
    """

    features: Features
    color_model: torch.Tensor
    ab_fine: torch.Tensor


class GlobalOutput(NamedTuple):
    """ab: N x 2 x H x W (ab/128, unclipped); similarity: N x 1 x H x W, cosine of the best match in [-1, 1]."""

    ab: torch.Tensor
    similarity: torch.Tensor


def local_color_model(
    gray: torch.Tensor, ab: torch.Tensor, window: int = 9, eps: float = 1e-4, beta_max: float = 5.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-window linear regression of ab on L on the stride-4 grid.

    Args:
        gray: N x 1 x H x W (L/100), ab: N x 2 x H x W (ab/128), H and W multiples of 4.
        window: box window in stride-4 cells; eps: ridge on var(L); beta_max: slope clamp.

    Returns:
        (model N x 4 x H/4 x W/4 = (a, beta) with ab ~ a + beta L, ab_fine N x 2 x H/4 x W/4).
        Moments come from full-resolution pixels, so within-cell variation counts.
    """
    mom = torch.cat([gray, ab, gray * ab, gray * gray], dim=1)
    mom = F.avg_pool2d(mom, STRIDE_FINE)
    ab_fine = mom[:, 1:3]
    mom = F.avg_pool2d(mom, window, stride=1, padding=window // 2, count_include_pad=False)
    m_l, m_ab, m_lab, m_ll = mom[:, :1], mom[:, 1:3], mom[:, 3:5], mom[:, 5:6]
    var_l = (m_ll - m_l * m_l).clamp_min(0.0)
    beta = ((m_lab - m_l * m_ab) / (var_l + eps)).clamp(-beta_max, beta_max)
    a = m_ab - beta * m_l
    return torch.cat([a, beta], dim=1), ab_fine


class GlobalBranch(nn.Module):
    """F_s. Stateless: the per-key state is returned by ``encode_key`` and passed to ``forward``."""

    def __init__(self, cfg: GlobalConfig = GlobalConfig(), features: FeatureExtractor | None = None):
        super().__init__()
        self.cfg = cfg
        self.features = features if features is not None else build_features({"kind": cfg.features})

    def encode_key(self, gray_key: torch.Tensor, ab_key: torch.Tensor) -> KeyState:
        """gray_key: N x 1 x H x W (L/100); ab_key: N x 2 x H x W (ab/128) -> KeyState."""
        if gray_key.shape[-2:] != ab_key.shape[-2:]:
            raise ValueError(f"gray_key {tuple(gray_key.shape)} and ab_key {tuple(ab_key.shape)} differ in size")
        feats = self.features(gray_key)
        g = pad_to_multiple(gray_key.clamp(0.0, GRAY_CLIP), STRIDE_COARSE)
        ab = pad_to_multiple(ab_key, STRIDE_COARSE)
        cfg = self.cfg
        model, ab_fine = local_color_model(g, ab, cfg.color_window, cfg.color_eps, cfg.beta_max)
        if cfg.color_model == "copy":
            model = torch.cat([ab_fine, torch.zeros_like(ab_fine)], dim=1)
        return KeyState(features=feats, color_model=model, ab_fine=ab_fine)

    @staticmethod
    def join_keys(*keys: KeyState) -> KeyState:
        """Several keys (same size) as one: their grids side by side, so a frame matches against all of them."""
        cat = lambda xs: torch.cat(list(xs), dim=-1)  # noqa: E731
        return KeyState(
            features=Features(cat(k.features.coarse for k in keys), cat(k.features.fine for k in keys)),
            color_model=cat(k.color_model for k in keys),
            ab_fine=cat(k.ab_fine for k in keys),
        )

    def match(self, cur_features: Features, key: KeyState) -> Match:
        """Always in float32, also under a bfloat16 autocast: near-equal similarities must rank exactly."""
        cfg = self.cfg
        kf = Features(*(t.float() for t in key.features))
        cur_features = Features(*(t.float() for t in cur_features))
        n = cur_features.coarse.shape[0]
        if kf.coarse.shape[0] == 1 and n > 1:
            kf = Features(kf.coarse.expand(n, -1, -1, -1), kf.fine.expand(n, -1, -1, -1))
        with torch.autocast(cur_features.coarse.device.type, enabled=False):
            return match_coarse_to_fine(
                kf,
                cur_features,
                k=cfg.k,
                roi_radius=cfg.roi_radius,
                temperature=cfg.temperature,
                soft_topk=cfg.soft_topk,
                chunk=cfg.chunk,
            )

    def forward(self, gray_cur: torch.Tensor, key: KeyState, match: Match | None = None) -> GlobalOutput:
        """Colour the current frame from the key.

        Args:
            gray_cur: N x 1 x H x W, L/100 (any H, W; need not equal the key's size).
            key: from ``encode_key`` (batch N or 1).
            match: ``self.match(self.features(gray_cur), key)`` when the caller has it already (a shot cache).

        Returns:
            GlobalOutput(ab N x 2 x H x W, similarity N x 1 x H x W), at the input resolution.
        """
        h, w = gray_cur.shape[-2:]
        m = self.match(self.features(gray_cur), key) if match is None else match
        model = key.color_model
        if model.shape[0] == 1 and gray_cur.shape[0] > 1:
            model = model.expand(gray_cur.shape[0], -1, -1, -1)
        fields = torch.cat([readout(model, m), m.similarity], dim=1)  # N x 5 x H4 x W4
        fields = F.interpolate(fields, scale_factor=STRIDE_FINE, mode="bilinear", align_corners=False)
        fields = fields[..., :h, :w]
        a, beta, sim = fields[:, 0:2], fields[:, 2:4], fields[:, 4:5]
        ab = a + beta * gray_cur.clamp(0.0, GRAY_CLIP)
        return GlobalOutput(ab=ab, similarity=sim)
