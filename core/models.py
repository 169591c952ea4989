"""The three trained networks, built from the weights manifest and loaded strictly."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from . import weights
from .errors import WeightsError
from .nets.fusion_net import FusionConfig, FusionNet
from .nets.global_net import GlobalBranch, GlobalConfig
from .nets.local_net import LocalNet, LocalNetConfig


@dataclass
class Models:
    local: LocalNet  # F_w
    global_branch: GlobalBranch  # F_s
    fusion: FusionNet  # F_f
    device: torch.device
    manifest: weights.Manifest | None = None


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def build_models(local_cfg: LocalNetConfig, global_cfg: GlobalConfig, fusion_cfg: FusionConfig,
                 device: torch.device) -> Models:
    """Fresh (untrained) networks; training starts here."""
    return Models(
        local=LocalNet(local_cfg).to(device),
        global_branch=GlobalBranch(global_cfg).to(device),
        fusion=FusionNet(fusion_cfg).to(device),
        device=device,
    )


def load_models(folder: Path | None = None, device: str = "auto") -> Models:
    """Networks from a weights folder; sha256-checked, ``strict=True``, eval mode."""
    manifest = weights.read_manifest(folder)
    models = build_models(
        LocalNetConfig.from_dict(manifest.network("local").config),
        GlobalConfig.from_dict(manifest.network("global").config),
        FusionConfig.from_dict(manifest.network("fusion").config),
        pick_device(device),
    )
    for name, module in (("local", models.local), ("global", models.global_branch), ("fusion", models.fusion)):
        state = weights.load_state_dict(manifest, name)
        if state is None:
            continue
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise WeightsError(f"{manifest.folder}: {name} weights do not fit the configured network: {err}") from None
    for module in (models.local, models.global_branch, models.fusion):
        module.eval()
    models.manifest = manifest
    return models
