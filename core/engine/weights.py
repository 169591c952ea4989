"""Shipped network weights: a manifest (name, version, sha256, config, data, metrics) and strict loading.

Layout of a weights folder (default: ``core/engine/shipped_weights/``, installed with the package; or
$COLORPROP_WEIGHTS)::

    manifest.json        {"name", "version", "created", "code_revision", "command", "training": {...},
                          "metrics": {...}, "networks": {"local": {"file", "sha256", "config"},
                                                           "global": {...}, "fusion": {...}}}
    local.pt, fusion.pt, ...   torch state dicts

Nothing is downloaded: a missing or corrupt file is a WeightsError that says what to do.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from colorprop.errors import WeightsError
from colorprop.io.files import sha256_file  # noqa: F401  (weights.sha256_file: the manifest's hash)

MANIFEST = "manifest.json"
SHIPPED = "shipped_weights"
NETWORK_NAMES = ("local", "global", "fusion")


def default_weights_dir() -> Path:
    """$COLORPROP_WEIGHTS, else the weights shipped inside the package (core/engine/shipped_weights/)."""
    env = os.environ.get("COLORPROP_WEIGHTS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent / SHIPPED


@dataclass(frozen=True)
class NetworkEntry:
    name: str
    file: str | None  # None: the network has no trained parameters of its own (e.g. a frozen backbone)
    sha256: str | None
    config: dict[str, Any]


@dataclass(frozen=True)
class Manifest:
    folder: Path
    data: dict[str, Any]

    @property
    def version(self) -> str:
        return str(self.data.get("version", "?"))

    def network(self, name: str) -> NetworkEntry:
        try:
            entry = self.data["networks"][name]
        except KeyError:
            raise WeightsError(f"{self.folder / MANIFEST}: no entry for network '{name}'") from None
        return NetworkEntry(name, entry.get("file"), entry.get("sha256"), dict(entry.get("config", {})))


def read_manifest(folder: Path | None = None) -> Manifest:
    folder = Path(folder) if folder is not None else default_weights_dir()
    path = folder / MANIFEST
    if not path.exists():
        raise WeightsError(
            f"no trained weights at {folder} (missing {MANIFEST}). Train them with `colorprop train` "
            "(see README, 'Training'), point $COLORPROP_WEIGHTS or --weights at a weights folder, "
            "or use --method flow, which needs no weights."
        )
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise WeightsError(f"{path}: unreadable manifest: {err}") from None
    if "networks" not in data:
        raise WeightsError(f"{path}: manifest has no 'networks' section")
    return Manifest(folder, data)


def load_state_dict(manifest: Manifest, name: str):
    """The verified state dict of one network (sha256 checked before torch reads a byte)."""
    import torch

    entry = manifest.network(name)
    if entry.file is None:
        return None
    path = manifest.folder / entry.file
    if not path.exists():
        raise WeightsError(f"{path}: weights file named in the manifest is missing")
    actual = sha256_file(path)
    if entry.sha256 != actual:
        raise WeightsError(
            f"{path}: sha256 mismatch (manifest {entry.sha256}, file {actual}); the file is corrupt "
            "or was replaced. Restore it from the repository (git checkout -- core/engine/shipped_weights/) or retrain."
        )
    return torch.load(path, map_location="cpu", weights_only=True)


def write_network(folder: Path, name: str, state_dict, config: dict[str, Any]) -> dict[str, Any]:
    """Save one network's state dict atomically; returns its manifest entry."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    file = f"{name}.pt"
    tmp = folder / f".{file}.tmp-{os.getpid()}"
    torch.save({k: v.detach().cpu().contiguous() for k, v in state_dict.items()}, tmp)
    os.replace(tmp, folder / file)
    return {"file": file, "sha256": sha256_file(folder / file), "config": config}


def write_manifest(folder: Path, data: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{MANIFEST}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, folder / MANIFEST)
    return folder / MANIFEST
