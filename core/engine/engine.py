"""The loaded engine (networks held once) and the options of one shot.

The CLI, the server and the farm path all hold an ``Engine`` and call ``pipeline.run_shot``.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from colorprop import __version__
from colorprop.errors import InputError, WeightsError
from colorprop.engine.propagate import LEARNED_METHODS, METHODS

if TYPE_CHECKING:
    from colorprop.engine.models import Models

DEFAULT_WORKING_WIDTH = 480


@dataclass(frozen=True)
class ShotOptions:
    method: str = "full"
    colorspace: str | None = None  # None: from the plate's metadata, else "Linear Rec.709 (sRGB)"
    working_width: int = DEFAULT_WORKING_WIDTH  # networks run at this width (never upscaled)
    upsample: str = "guided"  # chroma back to full resolution: guided | bilinear
    carry: str = "full"  # resolution at which the written colour is carried to the next frame: full | working
    write_confidence: bool = False  # add a colorprop.confidence channel to the output
    regrade: bool = False  # key = regrade of a colour plate: propagate the change (docs/KEYS.md)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ShotOptions":
        """Validated options from untrusted input (CLI, wire). InputError names the bad field."""
        known = {f.name: f for f in fields(cls)}
        values = {}
        for name, value in d.items():
            if name not in known:
                raise InputError(f"option '{name}': unknown (known: {', '.join(sorted(known))})")
            kind, choices, _ = OPTION_SCHEMA[name]
            if value is None and name == "colorspace":
                values[name] = None
                continue
            if kind is bool and not isinstance(value, bool):
                raise InputError(f"option '{name}': expected true/false, got {value!r}")
            if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
                raise InputError(f"option '{name}': expected an integer, got {value!r}")
            if kind is str and not isinstance(value, str):
                raise InputError(f"option '{name}': expected a string, got {value!r}")
            if choices is not None and value not in choices:
                raise InputError(f"option '{name}': {value!r} is not one of {', '.join(map(str, choices))}")
            values[name] = value
        options = cls(**values)
        if options.working_width < 64 or options.working_width > 8192:
            raise InputError(f"option 'working_width': {options.working_width} is outside 64..8192")
        return options

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# name -> (type, choices or None, help): what the server advertises and what from_dict checks
OPTION_SCHEMA: dict[str, tuple[type, tuple | None, str]] = {
    "method": (str, METHODS, "full = local+global fused; local/global = ablations; flow = classical DIS baseline"),
    "colorspace": (str, None, "OCIO colour space of the plate; default: from metadata"),
    "working_width": (int, None, "width at which the networks run; chroma is upsampled under full-res luminance"),
    "upsample": (str, ("guided", "bilinear"), "chroma upsampling"),
    "carry": (
        str,
        ("full", "working"),
        "full: the last frame's colour is warped at plate resolution and the "
        "networks' change is added on top (sharper); working: carried at the working size",
    ),
    "write_confidence": (bool, None, "write a colorprop.confidence channel"),
    "regrade": (bool, None, "propagate the key's change relative to a colour plate"),
}


class Engine:
    """Holds the networks (or none: then only the classical ``flow`` method is available)."""

    def __init__(self, models: "Models | None", weights_error: str | None = None):
        self.models = models
        self.weights_error = weights_error

    @classmethod
    def load(
        cls, weights_dir: Path | None = None, device: str = "auto", require: bool = False, precision: str | None = None
    ) -> "Engine":
        """``precision``: "auto" | "fp32" | "bf16" (None: $COLORPROP_PRECISION, else auto: bf16 where the
        device computes it natively, models.resolve_precision; docs/BENCHMARKS.md)."""
        from colorprop.engine.weights import read_manifest

        precision = precision or os.environ.get("COLORPROP_PRECISION") or "auto"
        try:
            read_manifest(weights_dir)  # cheap: no weights, no need to import the networks
            from colorprop.engine.models import load_models

            return cls(load_models(weights_dir, device, precision))
        except WeightsError as err:
            if require:
                raise
            return cls(None, str(err))

    def methods(self) -> list[str]:
        return list(METHODS) if self.models is not None else ["flow"]

    def check_method(self, method: str) -> None:
        if method in LEARNED_METHODS and self.models is None:
            raise WeightsError(f"--method {method} needs trained weights: {self.weights_error}")
        if method not in METHODS:
            raise InputError(f"method {method!r}: choose from {', '.join(METHODS)}")

    def describe(self) -> dict[str, Any]:
        """JSON-able description: what the server's capabilities message carries."""
        manifest = self.models.manifest if self.models is not None else None
        return {
            "engine": "colorprop",
            "version": __version__,
            "device": str(self.models.device) if self.models is not None else "cpu",
            "precision": self.models.precision if self.models is not None else "fp32",
            "weights": None if manifest is None else {"version": manifest.version, "folder": str(manifest.folder)},
            "methods": self.methods(),
            "default_method": "full" if self.models is not None else "flow",
            "options": {
                name: {
                    "type": kind.__name__,
                    "choices": list(choices) if choices is not None else None,
                    "default": getattr(ShotOptions(), name),
                    "help": help_text,
                }
                for name, (kind, choices, help_text) in OPTION_SCHEMA.items()
            },
        }
