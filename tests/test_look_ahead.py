"""The next frame's networks computed during this frame's plate-size work (shot/ahead.py): the same pixels bit for
bit, the step finds its flow and F_s match made ahead, an error on the helper thread stops the shot."""

from __future__ import annotations

import collections
import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from colorprop.colour import convert
from colorprop.engine.engine import Engine, ShotOptions
from colorprop.shot import ahead
from colorprop.errors import PixelError
from colorprop.shot.frames import ArraySink, ArraySource, KeyImage
from colorprop.shot.overlap import PrefetchingSource, overlapped_io
from colorprop.shot.pipeline import run_shot
from test_pipeline import SPACE, textured_frames


@pytest.fixture(scope="module")
def full_engine() -> Engine:
    return Engine.load(None, device="cpu")


def shot(n: int = 7):
    frames = textured_frames(n)
    gray = {i + 1: np.repeat(convert.luminance(f)[..., None], 3, 2) for i, f in enumerate(frames)}
    return gray, frames  # the plates (gray) and the colour frames (keys)


def colour(engine: Engine, method: str, key: int, look_ahead: bool) -> dict[int, np.ndarray]:
    """The shot's colour, from a source that reads ahead (the look-ahead on) or from the source alone (off)."""
    gray, frames = shot()
    source, sink = ArraySource(gray, colorspace=SPACE), ArraySink()
    with overlapped_io(source, sink) if look_ahead else contextlib.nullcontext((source, sink)) as (src, out):
        run = run_shot(engine, src, {key: KeyImage(frames[key - 1], SPACE)}, ShotOptions(method), out)
    assert run.frames_written
    return {f: r.rgb for f, r in sink.results.items()}


@pytest.mark.parametrize("method", [pytest.param("full", marks=pytest.mark.slow), "flow"])  # full: the networks
@pytest.mark.parametrize("key", [1, 7])  # forward from the first frame, backward from the last
def test_looking_ahead_gives_the_same_pixels_and_the_step_finds_what_was_made_ahead(
    full_engine, monkeypatch, method, key
):
    without = colour(full_engine, method, key, look_ahead=False)
    lookups = collections.Counter()
    get = ahead.MemoryEntries.get

    def counted(self, kind, entry_key):
        found = get(self, kind, entry_key)
        lookups[threading.current_thread().name.startswith("colorprop-ahead"), kind, found is not None] += 1
        return found

    monkeypatch.setattr(ahead.MemoryEntries, "get", counted)
    looked = colour(full_engine, method, key, look_ahead=True)
    assert without.keys() == looked.keys() == set(range(1, 8))
    assert all(np.array_equal(without[f], looked[f]) for f in without)
    # six frames are stepped; each after the first finds its flow (and with full, its F_s match; with key-direct, its
    # flow to the key) made ahead; the first step's flow to the key is its chain flow, the key being the frame before
    direct = int(method == "full" and full_engine.models.fusion.cfg.direct)
    assert lookups[False, "flow", True] == 5 * (1 + direct) + direct
    assert lookups[False, "match", True] == (5 if method == "full" else 0)
    assert lookups[True, "flow", False] >= 5  # the helper made them (a put looks up the pair once more)


def test_an_error_on_the_helper_thread_stops_the_shot_and_the_thread_ends(full_engine, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("DIS failed on the helper")

    monkeypatch.setattr(ahead, "flow_step", broken)
    gray, frames = shot()
    source = ArraySource(gray, colorspace=SPACE)
    with pytest.raises(RuntimeError, match="DIS failed on the helper"), overlapped_io(source, ArraySink()) as io:
        run_shot(full_engine, io[0], {1: KeyImage(frames[0], SPACE)}, ShotOptions("flow"), io[1])
    assert not [t for t in threading.enumerate() if t.name.startswith("colorprop-ahead")]


class LoggedSource(ArraySource):
    def __init__(self, frames, log: list, bad: int | None = None, **kwargs):
        super().__init__(frames, **kwargs)
        self.log, self.bad = log, bad

    def read(self, frame: int):
        self.log.append(("read", frame))
        plate = super().read(frame)
        if frame == self.bad:
            plate.pixels[2, 3] = np.nan
        return plate


class LoggedSink(ArraySink):
    def __init__(self, log: list):
        super().__init__()
        self.log = log

    def write(self, frame, result):
        self.log.append(("write", frame))
        super().write(frame, result)


def test_a_source_that_does_not_read_ahead_gives_each_frame_after_the_one_before_is_out(full_engine):
    # The server's and a DCC's sources: frame k+1 is read after frame k is written, as without a look-ahead.
    log: list = []
    gray, frames = shot()
    source = LoggedSource(gray, log, colorspace=SPACE)
    run_shot(full_engine, source, {1: KeyImage(frames[0], SPACE)}, ShotOptions("full"), LoggedSink(log))
    for k in range(2, 8):
        assert max(i for i, e in enumerate(log) if e == ("read", k)) > log.index(("write", k - 1)), log


def test_a_bad_frame_prepared_ahead_is_raised_when_the_run_reaches_it_after_the_frames_before_are_written(
    full_engine,
):
    log: list = []
    gray, frames = shot()
    source, sink = LoggedSource(gray, log, bad=5, colorspace=SPACE), LoggedSink(log)
    with pytest.raises(PixelError, match="frame 5"), overlapped_io(source, sink) as io:
        run_shot(full_engine, io[0], {1: KeyImage(frames[0], SPACE)}, ShotOptions("full"), io[1])
    assert sorted(sink.results) == [1, 2, 3, 4]
    assert log.count(("read", 5)) == 2  # once ahead (its error held back), once in order (raised)


def test_it_applies_to_full_without_f_s_memory_and_to_flow(full_engine):
    from dataclasses import replace

    models, applies = full_engine.models, ahead.LookAhead.applies
    with ThreadPoolExecutor(1) as pool:
        plain = ArraySource(shot()[0], colorspace=SPACE)
        reading_ahead = PrefetchingSource(plain, pool)
    assert applies("full", models, reading_ahead, None) and applies("flow", None, reading_ahead, None)
    assert not applies("global", models, reading_ahead, None) and not applies("local", models, reading_ahead, None)
    memory = replace(models, fusion=type(models.fusion)(replace(models.fusion.cfg, memory_every=4)))
    assert not applies("full", memory, reading_ahead, None)  # the key state changes in accept: not made ahead
    assert not applies("full", models, plain, None)  # frame k+1 read after frame k is out
    assert not applies("full", models, reading_ahead, object())  # a shot cache: its own stores
