"""The three trained networks, built from the weights manifest and loaded strictly."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import torch

from colorprop.engine import weights
from colorprop.engine.devices import check_device
from colorprop.errors import WeightsError
from colorprop.engine.nets.fusion_net import FusionConfig, FusionNet
from colorprop.engine.nets.global_net import GlobalBranch, GlobalConfig
from colorprop.engine.nets.local_net import LocalNet, LocalNetConfig


PRECISIONS = ("fp32", "bf16")


def resolve_precision(precision: str, device: torch.device) -> str:
    """ "auto" -> "bf16" where the device computes bfloat16 natively (a CUDA GPU that supports it, a CPU with
    AVX-512 BF16 or AMX through oneDNN), else "fp32"; "fp32"/"bf16" are kept. Quality: docs/BENCHMARKS.md."""
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
        native = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
        return "bf16" if device.type == "cpu" and native is not None and native() else "fp32"
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: choose from auto, {', '.join(PRECISIONS)}")
    return precision


@dataclass
class Models:
    local: LocalNet  # F_w
    global_branch: GlobalBranch  # F_s
    fusion: FusionNet  # F_f
    device: torch.device
    manifest: weights.Manifest | None = None
    precision: str = "fp32"  # "bf16": the networks' convolutions under bfloat16 autocast (matching stays fp32)

    def autocast(self):
        """Context for a network forward: bfloat16 autocast when ``precision`` is "bf16", else nothing."""
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()


def pick_device(device: str = "auto", option: str = "--device") -> torch.device:
    """The torch device for ``device`` (auto: cuda when torch sees a GPU, else cpu); a value this torch or
    this machine cannot run is InputError naming ``option`` (devices.check_device)."""
    check_device(device, option)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def build_models(
    local_cfg: LocalNetConfig, global_cfg: GlobalConfig, fusion_cfg: FusionConfig, device: torch.device
) -> Models:
    """Fresh (untrained) networks; training starts here."""
    return Models(
        local=LocalNet(local_cfg).to(device),
        global_branch=GlobalBranch(global_cfg).to(device),
        fusion=FusionNet(fusion_cfg).to(device),
        device=device,
    )


def load_models(folder: Path | None = None, device: str = "auto", precision: str = "fp32") -> Models:
    """Networks from a weights folder; sha256-checked, ``strict=True``, eval mode. ``precision``: fp32 | bf16
    | auto (``resolve_precision``)."""
    torch_device = pick_device(device)
    precision = resolve_precision(precision, torch_device)
    manifest = weights.read_manifest(folder)
    models = build_models(
        LocalNetConfig.from_dict(manifest.network("local").config),
        GlobalConfig.from_dict(manifest.network("global").config),
        FusionConfig.from_dict(manifest.network("fusion").config),
        torch_device,
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
    models.precision = precision
    return models
