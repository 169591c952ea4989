"""The next frame's networks computed during this frame's plate-size work (shot/ahead.py): the same pixels bit for
bit, the step finds its flow and F_s match made ahead, an error on the helper thread stops the shot."""

from __future__ import annotations

import collections
import threading

import numpy as np
import pytest

from colorprop.colour import convert
from colorprop.engine.engine import Engine, ShotOptions
from colorprop.shot import ahead
from colorprop.shot.frames import ArraySink, ArraySource, KeyImage
from colorprop.shot.pipeline import run_shot
from test_pipeline import SPACE, textured_frames


@pytest.fixture(scope="module")
def full_engine() -> Engine:
    return Engine.load(None, device="cpu")


def shot(n: int = 7):
    frames = textured_frames(n)
    gray = {i + 1: np.repeat(convert.luminance(f)[..., None], 3, 2) for i, f in enumerate(frames)}
    return ArraySource(gray, colorspace=SPACE), frames


def colour(engine: Engine, method: str, key: int, monkeypatch, look_ahead: bool) -> dict[int, np.ndarray]:
    source, frames = shot()
    monkeypatch.setattr(ahead.LookAhead, "applies", staticmethod(lambda method, models: look_ahead))
    sink = ArraySink()
    run_shot(engine, source, {key: KeyImage(frames[key - 1], SPACE)}, ShotOptions(method), sink)
    return {f: r.rgb for f, r in sink.results.items()}


@pytest.mark.parametrize("method", [pytest.param("full", marks=pytest.mark.slow), "flow"])  # full: the networks
@pytest.mark.parametrize("key", [1, 7])  # forward from the first frame, backward from the last
def test_looking_ahead_gives_the_same_pixels_and_the_step_finds_what_was_made_ahead(
    full_engine, monkeypatch, method, key
):
    without = colour(full_engine, method, key, monkeypatch, look_ahead=False)
    lookups = collections.Counter()
    get = ahead.MemoryEntries.get

    def counted(self, kind, entry_key):
        found = get(self, kind, entry_key)
        lookups[threading.current_thread().name.startswith("colorprop-ahead"), kind, found is not None] += 1
        return found

    monkeypatch.setattr(ahead.MemoryEntries, "get", counted)
    looked = colour(full_engine, method, key, monkeypatch, look_ahead=True)
    assert without.keys() == looked.keys() == set(range(1, 8))
    assert all(np.array_equal(without[f], looked[f]) for f in without)
    # six frames are stepped; each after the first finds its flow (and with full, its F_s match) made ahead
    assert lookups[False, "flow", True] == 5
    assert lookups[False, "match", True] == (5 if method == "full" else 0)
    assert lookups[True, "flow", False] >= 5  # the helper made them (a put looks up the pair once more)


def test_an_error_on_the_helper_thread_stops_the_shot_and_the_thread_ends(full_engine, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("DIS failed on the helper")

    monkeypatch.setattr(ahead, "flow_step", broken)
    source, frames = shot()
    with pytest.raises(RuntimeError, match="DIS failed on the helper"):
        run_shot(full_engine, source, {1: KeyImage(frames[0], SPACE)}, ShotOptions("flow"), ArraySink())
    assert not [t for t in threading.enumerate() if t.name.startswith("colorprop-ahead")]


def test_it_applies_to_full_without_f_s_memory_and_to_flow(full_engine):
    from dataclasses import replace

    models = full_engine.models
    assert ahead.LookAhead.applies("full", models) and ahead.LookAhead.applies("flow", None)
    assert not ahead.LookAhead.applies("global", models) and not ahead.LookAhead.applies("local", models)
    memory = replace(models, fusion=type(models.fusion)(replace(models.fusion.cfg, memory_every=4)))
    assert not ahead.LookAhead.applies("full", memory)  # the key state changes in accept: not made ahead
