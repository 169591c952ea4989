"""Network configs <-> the JSON of the weights manifest: frozen dataclasses whose tuple fields travel as lists."""

from __future__ import annotations

from dataclasses import asdict, fields


class ManifestConfig:
    """Mixin for a frozen dataclass config: ``to_dict`` for the manifest, ``from_dict`` back (lists -> tuples)."""

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict):
        tuples = {f.name for f in fields(cls) if str(f.type).startswith("tuple")}
        return cls(**{k: tuple(v) if k in tuples else v for k, v in d.items()})
