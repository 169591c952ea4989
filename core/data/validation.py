"""The validation split: whole sources that no training, feature learning or tuning ever sees.

``split.json`` names them twice: ``validation_sources`` (fetch sources, ``sources.py``: every clip such a source
provides is validation, the ranges scored or not) and ``validation`` (the scored ranges, 51 frames each). Training
reads its clips only through ``training_entries``, which refuses a split that lists a validation clip for training,
so a wrong edit of ``split.json`` stops a run instead of quietly scoring the engine on footage it learned from.
"""

from __future__ import annotations

from colorprop.data.clips import load_split
from colorprop.data.sources import SOURCES
from colorprop.errors import ColorpropError


class SplitError(ColorpropError):
    """``split.json`` lets footage cross between training and validation. Names the clip."""


def validation_source_keys(split: dict | None = None) -> set[str]:
    """Keys (``sources.Source.key``) of the sources held out whole for validation."""
    split = load_split() if split is None else split
    return {e["source"] for e in split.get("validation_sources", [])}


def is_validation_clip(clip: str, split: dict | None = None) -> bool:
    """Whether a clip (cache name) belongs to validation: scored there, or from a held-out source."""
    split = load_split() if split is None else split
    held_out = validation_source_keys(split)
    return clip in {e["clip"] for e in split.get("validation", [])} or any(
        s.key in held_out and s.provides(clip) for s in SOURCES
    )


TRAINING_LISTS = ("train", "train_generated")  # the split's lists a training config may read (``train_lists``)


def training_entries(split: dict | None = None, lists: tuple[str, ...] | list[str] = ("train",)) -> list[dict]:
    """The entries of the split's training ``lists`` that training and feature learning read (colourless ones
    aside): ``train``, and ``train_generated`` (cut-free excerpts of generated clips, opt-in by the config).

    Raises SplitError when one of them is validation footage, or names a list that is not a training list."""
    split = load_split() if split is None else split
    unknown = sorted(set(lists) - set(TRAINING_LISTS))
    if unknown:
        raise SplitError(f"training lists {unknown}: not training lists of core/data/split.json {TRAINING_LISTS}")
    entries = [e for name in lists for e in split.get(name, []) if not e.get("report_apart")]
    leaked = sorted({e["clip"] for e in entries if is_validation_clip(e["clip"], split)})
    if leaked:
        raise SplitError(
            f"core/data/split.json: training lists validation footage {', '.join(leaked)}; "
            "validation sources are never trained on (remove them from the training lists)"
        )
    return entries
