"""The shot cache (shot/cache.py) and re-runs through it (shot/rerun.py), on real EXR plates made here: after each
key edit the re-run is bitwise the fresh run without a cache, and the frames the edit did not change are not
written again (same inode and mtime, listed in frames_unchanged); a cache that cannot be written, is full, holds
another shot's or another engine's entries, or a damaged entry is recomputed with a note; a cancelled run then a
re-run; the frame looked at first. ``flow`` (no weights) at 96x64, and ``full`` with the shipped weights once."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from colorprop.engine.engine import Engine, ShotOptions
from colorprop.io.exr import read_exr
from colorprop.shot.cache import ShotCache
from colorprop.shot.frames import ArraySink, ArraySource, ExrSequenceSink, ExrSequenceSource
from colorprop.shot.pipeline import run_shot
from colorprop.shot.run import Cancelled
from test_partial_keys import FLOW, N, SHIFT, full_key, partial_key
from test_pipeline import textured_frames, write_shot


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(None, "no weights in this test")


@pytest.fixture(scope="module")
def shot(tmp_path_factory) -> tuple[str, list[np.ndarray]]:
    frames = textured_frames(N, shift=SHIFT)
    plate, _ = write_shot(tmp_path_factory.mktemp("plate"), frames, gray_channel="RGB")
    return plate, frames


def colour(engine, plate, out: Path, keys, cache=None, options=FLOW, **kw):
    """``run_shot`` from the plate to EXR frames under ``out``: (report, {frame: pixels})."""
    sink = ExrSequenceSink(str(out / "c.####.exr"), write_confidence=True)
    report = run_shot(engine, ExrSequenceSource(plate, range(1, N + 1)), keys, options, sink, cache=cache, **kw)
    return report, {f: read_exr(out / f"c.{f:04d}.exr").pixels for f in range(1, N + 1)}


def files(out: Path) -> dict[int, tuple[int, int]]:
    paths = {f: out / f"c.{f:04d}.exr" for f in range(1, N + 1)}
    return {f: (p.stat().st_ino, p.stat().st_mtime_ns) for f, p in paths.items() if p.exists()}


def assert_bitwise(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for f in want:
        assert np.array_equal(got[f], want[f]), f"frame {f} differs from the fresh run"


def edits(frames):
    """Key sets, one edit after another, and the frames each edit must leave unwritten (at least)."""
    k1, k5, k9, k8 = (full_key(frames, k) for k in (1, 5, 9, 8))
    k5b = full_key([f * np.float32([1.0, 0.7, 0.5]) for f in frames], 5)  # key 5 repainted
    p3, p3b = partial_key(frames, 3), partial_key(frames, 3, gain=(0.2, 0.9, 0.3))
    return [
        ("start", {1: k1, 5: k5}, set()),
        ("add a full key", {1: k1, 5: k5, 9: k9}, {1, 2, 3, 4, 5}),
        ("move it", {1: k1, 5: k5, 8: k8}, {1, 2, 3, 4, 5}),
        ("remove it", {1: k1, 5: k5}, {1, 2, 3, 4, 5}),
        ("repaint a full key", {1: k1, 5: k5b}, {1}),
        ("add a partial key", {1: k1, 5: k5b, 3: p3}, {1, 5, 6, 7, 8, 9}),
        ("repaint it", {1: k1, 5: k5b, 3: p3b}, {1, 5, 6, 7, 8, 9}),
        ("remove it", {1: k1, 5: k5b}, {1, 5, 6, 7, 8, 9}),
    ]


def test_after_each_key_edit_the_rerun_is_the_fresh_run_and_rewrites_only_what_changed(engine, shot, tmp_path):
    plate, frames = shot
    cache = ShotCache(tmp_path / "cache")
    out = tmp_path / "cached"
    for i, (edit, keys, kept) in enumerate(edits(frames)):
        before = files(out)
        report, got = colour(engine, plate, out, keys, cache)
        _, fresh = colour(engine, plate, tmp_path / f"fresh{i}", keys)
        assert_bitwise(got, fresh)
        assert report.notes == [], report.notes  # the same plates, engine and options: nothing to say
        after = files(out)
        unchanged = {f for f in before if before[f] == after[f]}
        assert unchanged == set(report.frames_unchanged), edit
        assert kept <= unchanged, edit
        assert sorted(report.frames_written) == sorted(set(range(1, N + 1)) - unchanged), edit
        if edit == "add a partial key":  # the base comes from the cache and the layer's flows too
            assert 3 not in unchanged and cache.hits.get("base", 0) >= 1
            assert cache.misses.get("flow", 0) == 0 and cache.misses.get("base", 0) == 0
    assert not list((tmp_path / "cache").rglob("*.tmp")), "a temporary entry was left behind"


def test_a_rerun_into_an_empty_output_writes_every_frame_from_the_cache(engine, shot, tmp_path):
    plate, frames = shot
    keys = {1: full_key(frames, 1), 5: full_key(frames, 5), 3: partial_key(frames, 3)}
    cache = ShotCache(tmp_path / "cache")
    _, first = colour(engine, plate, tmp_path / "a", keys, cache)
    report, again = colour(engine, plate, tmp_path / "b", keys, cache)
    assert_bitwise(again, first)
    assert report.frames_written == sorted(report.frames_written) and len(report.frames_written) == N
    assert cache.hits.get("base", 0) == N and cache.misses.get("flow", 0) == 0 and report.frames_unchanged == []


def test_the_segment_reaching_the_viewed_frame_runs_first(engine, shot, tmp_path):
    plate, frames = shot
    keys = {1: full_key(frames, 1), 5: full_key(frames, 5)}
    cache = ShotCache(tmp_path / "cache")
    events = []
    colour(engine, plate, tmp_path / "a", keys, cache, view=7, progress=events.append)
    assert [e.frame for e in events[:4]] == [6, 7, 8, 9]  # its run still goes in order from its key
    events.clear()
    _, got = colour(engine, plate, tmp_path / "b", keys, cache, view=7, progress=events.append)
    assert [e.frame for e in events[:3]] == [7, 6, 8]  # from the cache: the viewed frame, then its neighbours
    assert [e.done for e in events] == list(range(1, N + 1)) and events[-1].total == N
    assert_bitwise(got, colour(engine, plate, tmp_path / "fresh", keys)[1])


def test_a_layer_reaching_the_viewed_frame_is_carried_as_far_as_each_frame_just_before_it(engine, shot, tmp_path):
    plate, frames = shot
    keys = {1: full_key(frames, 1), 5: full_key(frames, 5), 7: partial_key(frames, 7)}
    events = []
    _, got = colour(engine, plate, tmp_path / "a", keys, ShotCache(tmp_path / "c"), view=7, progress=events.append)
    # the segment from key 5 first, each frame's layer pass just before it (6: the layer's, then the frame)
    assert [e.frame for e in events[:7]] == [6, 6, 7, 8, 8, 9, 9] and [e.done for e in events[:2]] == [1, 2]
    assert [e.done for e in events] == list(range(1, len(events) + 1)) and events[-1].done == events[-1].total
    assert_bitwise(got, colour(engine, plate, tmp_path / "fresh", keys)[1])


def test_a_cancelled_run_leaves_whole_entries_and_the_rerun_is_the_fresh_run(engine, shot, tmp_path):
    plate, frames = shot
    keys = {1: full_key(frames, 1), 5: full_key(frames, 5), 3: partial_key(frames, 3)}
    cache, done = ShotCache(tmp_path / "cache"), []
    with pytest.raises(Cancelled):
        colour(engine, plate, tmp_path / "out", keys, cache, progress=done.append, cancel=lambda: len(done) >= 5)
    assert not list((tmp_path / "cache").rglob("*.tmp"))
    report, got = colour(engine, plate, tmp_path / "out", keys, cache)
    assert_bitwise(got, colour(engine, plate, tmp_path / "fresh", keys)[1])
    assert report.frames_unchanged  # what the cancelled run wrote is not written again


@pytest.mark.parametrize("where", ["a file", "under /proc"])
def test_a_cache_that_cannot_be_made_leaves_the_run_uncached_with_a_note(engine, shot, tmp_path, where):
    plate, frames = shot
    keys = {1: full_key(frames, 1), 3: partial_key(frames, 3)}
    root = tmp_path / "cache"
    if where == "a file":
        root.write_bytes(b"not a folder")
    else:
        root = Path("/proc/colorprop-cache-test")
    report, got = colour(engine, plate, tmp_path / "out", keys, ShotCache(root))
    assert_bitwise(got, colour(engine, plate, tmp_path / "fresh", keys)[1])
    assert any("cannot be used" in n for n in report.notes), report.notes


@contextlib.contextmanager
def read_only(folder: Path):
    """``folder`` read-only for this process for the block: its mode for a user, the immutable attribute for root
    (whom a mode does not stop; chattr, as CI runs the suite as root)."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    subprocess.run(["chattr", "+i", str(folder)], check=True, capture_output=True)
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True, capture_output=True)


def test_a_read_only_cache_leaves_the_run_uncached_with_a_note(engine, shot, tmp_path):
    plate, frames = shot
    keys = {1: full_key(frames, 1), 3: partial_key(frames, 3)}
    root = tmp_path / "cache"
    root.mkdir()
    with read_only(root):
        with pytest.raises(OSError):  # the folder really refuses this process's writes
            (root / "probe").touch()
        report, got = colour(engine, plate, tmp_path / "out", keys, ShotCache(root))
    assert_bitwise(got, colour(engine, plate, tmp_path / "fresh", keys)[1])
    assert any("cannot be" in n for n in report.notes), report.notes


def test_a_cache_that_cannot_be_written_on_goes_on_uncached_with_a_note(engine, shot, tmp_path):
    """The folder is there, but an entry's folder is a file (what a full disk does to a write: an OSError)."""
    plate, frames = shot
    keys = {1: full_key(frames, 1), 5: full_key(frames, 5)}
    cache = ShotCache(tmp_path / "cache")
    colour(engine, plate, tmp_path / "a", keys, cache)
    for folder in cache.folder.iterdir():
        if folder.is_dir():
            for entry in folder.iterdir():
                entry.unlink()
            folder.rmdir()
            folder.write_bytes(b"")  # each kind's folder is now a file: every write fails
    report, got = colour(engine, plate, tmp_path / "b", keys, cache)
    assert_bitwise(got, colour(engine, plate, tmp_path / "fresh", keys)[1])
    assert any("cannot be written" in n for n in report.notes), report.notes


def test_a_full_cache_keeps_what_fits_and_the_results_do_not_change(engine, shot, tmp_path):
    plate, frames = shot
    keys = {1: full_key(frames, 1), 5: full_key(frames, 5), 3: partial_key(frames, 3)}
    cache = ShotCache(tmp_path / "cache", max_bytes=200_000)
    fresh = colour(engine, plate, tmp_path / "fresh", keys)[1]
    for run in ("a", "b"):
        report, got = colour(engine, plate, tmp_path / run, keys, cache)
        assert_bitwise(got, fresh)
        assert any("is full" in n for n in report.notes), report.notes
    size = sum(p.stat().st_size for p in (tmp_path / "cache").rglob("*") if p.is_file())
    assert size <= 200_000 + 64 * 1024  # bounded (the layer folder in use and shot.json may stay over)


def test_another_shots_or_engines_entries_are_never_used(engine, shot, tmp_path, monkeypatch):
    plate, frames = shot
    keys = {1: full_key(frames, 1), 5: full_key(frames, 5)}
    cache = ShotCache(tmp_path / "cache")
    colour(engine, plate, tmp_path / "a", keys, cache)
    other_plate, _ = write_shot(tmp_path / "other", textured_frames(N, shift=2.5), gray_channel="RGB")
    report, got = colour(engine, other_plate, tmp_path / "b", keys, cache)
    assert "base" not in cache.hits and any("other shot" in n for n in report.notes), report.notes
    assert report.frames_written == list(range(1, N + 1))
    assert_bitwise(got, colour(engine, other_plate, tmp_path / "fresh", keys)[1])
    report, _ = colour(engine, plate, tmp_path / "d", keys, cache, options=ShotOptions(method="flow", carry="working"))
    assert "base" not in cache.hits and any("other options" in n for n in report.notes), report.notes
    monkeypatch.setattr("colorprop.engine.engine.__version__", "0.0.0-another")
    report, got = colour(engine, plate, tmp_path / "c", keys, cache)
    assert cache.hits.get("base", 0) == 0 and any("other engine" in n for n in report.notes), report.notes
    # other code under the same version string (a development install): its source files' hash differs
    monkeypatch.setattr("colorprop.shot.rerun.code_digest", lambda: "edited-sources")
    report, got = colour(engine, plate, tmp_path / "e", keys, cache)
    assert cache.hits.get("base", 0) == 0 and any("other engine" in n for n in report.notes), report.notes
    assert_bitwise(got, colour(engine, plate, tmp_path / "fresh2", keys)[1])


def test_a_plate_changed_on_disk_is_a_new_shot(engine, shot, tmp_path):
    plate, frames = shot
    folder = tmp_path / "plate"
    changed_plate, _ = write_shot(folder, frames, gray_channel="RGB")
    keys = {1: full_key(frames, 1)}
    cache = ShotCache(tmp_path / "cache")
    colour(engine, changed_plate, tmp_path / "a", keys, cache)
    other, _ = write_shot(tmp_path / "tmp", textured_frames(N, shift=2.5), gray_channel="RGB")
    os.replace(Path(other.replace("####", "0004")), folder / Path(other.replace("####", "0004")).name)
    report, got = colour(engine, changed_plate, tmp_path / "a", keys, cache)
    assert cache.hits.get("base", 0) == 0 and report.frames_unchanged == []
    assert_bitwise(got, colour(engine, changed_plate, tmp_path / "fresh", keys)[1])


def test_a_damaged_entry_is_recomputed(engine, shot, tmp_path):
    plate, frames = shot
    keys = {1: full_key(frames, 1), 5: full_key(frames, 5)}
    cache = ShotCache(tmp_path / "cache")
    _, first = colour(engine, plate, tmp_path / "a", keys, cache)
    for entry in sorted((cache.folder / "base").iterdir())[:3]:
        data = entry.read_bytes()
        entry.write_bytes(data[: len(data) // 2] + bytes(len(data) - len(data) // 2))
    report, got = colour(engine, plate, tmp_path / "b", keys, cache)
    assert_bitwise(got, first)
    assert any("damaged" in n for n in report.notes), report.notes


def test_in_memory_frames_are_known_by_their_pixels_and_an_array_sink_holds_stamps(engine, shot, tmp_path):
    _, frames = shot
    source = ArraySource({i: f for i, f in enumerate(frames, start=1)}, colorspace="Linear Rec.709 (sRGB)")
    keys = {1: full_key(frames, 1), 3: partial_key(frames, 3)}
    cache, sink = ShotCache(tmp_path / "cache"), ArraySink()
    first = run_shot(engine, source, keys, FLOW, sink, cache=cache)
    assert first.frames_unchanged == [] and all(sink.held(f) for f in range(1, N + 1))
    again = run_shot(engine, source, keys, FLOW, sink, cache=cache)
    assert again.frames_unchanged == list(range(1, N + 1)) and again.frames_written == []
    fresh = ArraySink()
    run_shot(engine, source, keys, FLOW, fresh)
    for f in range(1, N + 1):
        assert np.array_equal(sink.results[f].rgb, fresh.results[f].rgb)
        assert fresh.results[f].stamp == "" and fresh.held(f) is None  # no cache: no stamp


@pytest.mark.slow  # the shipped networks colour the shot four times
def test_full_method_with_cached_flows_and_features_is_bitwise_the_run_without(shot, tmp_path):
    plate, frames = shot
    engine = Engine.load(None, device="cpu")
    options = ShotOptions(method="full")
    keys = {1: full_key(frames, 1), 6: full_key(frames, 6)}
    _, fresh = colour(engine, plate, tmp_path / "fresh", keys, options=options)
    cache = ShotCache(tmp_path / "cache")
    _, first = colour(engine, plate, tmp_path / "a", keys, cache, options=options)
    assert_bitwise(first, fresh)
    repainted = {1: full_key([f * np.float32([1.0, 0.8, 0.6]) for f in frames], 1), 6: keys[6]}
    report, got = colour(engine, plate, tmp_path / "a", repainted, cache, options=options)
    assert cache.hits.get("match", 0) >= N - 3 and cache.misses.get("match", 0) == 0  # F_s matched luminance only
    assert set(report.frames_unchanged) >= {6, 7, 8, 9}
    assert_bitwise(got, colour(engine, plate, tmp_path / "fresh2", repainted, options=options)[1])
    done, cut = [], ShotCache(tmp_path / "cut")  # cut short after the key-to-key span, in the run from key 6
    with pytest.raises(Cancelled):
        colour(engine, plate, tmp_path / "b", keys, cut, options, progress=done.append, cancel=lambda: len(done) >= 8)
    _, got = colour(engine, plate, tmp_path / "b", keys, cut, options=options)
    assert cut.hits.get("base", 0) >= 1  # frame 7 from what the cut-short run kept, then on from there
    assert_bitwise(got, fresh)


def test_colorize_with_cache_a_second_run_after_a_key_edit_writes_only_what_changed(shot, tmp_path, capsys):
    from colorprop.cli.main import main
    from colorprop.io.exr import write_exr

    plate, frames = shot
    keys = []
    for k in (1, 5, N):
        write_exr(tmp_path / f"key{k}.exr", frames[k - 1], ("R", "G", "B"))
        keys += ["--key", f"{k}={tmp_path / f'key{k}.exr'}"]
    common = [
        "colorize",
        "-i",
        plate,
        "--method",
        "flow",
        "--progress",
        "none",
        "--colorspace",
        "Linear Rec.709 (sRGB)",
    ]
    cached = [*common, "-o", str(tmp_path / "out" / "c.####.exr"), "--cache", str(tmp_path / "cache"), *keys]
    assert main(cached) == 0
    before = files(tmp_path / "out")
    write_exr(tmp_path / f"key{N}.exr", frames[N - 1] * np.float32([1.0, 0.6, 0.4]), ("R", "G", "B"))  # repainted
    capsys.readouterr()
    assert main(cached) == 0
    assert "written" in capsys.readouterr().err
    after = files(tmp_path / "out")
    assert {f for f in before if before[f] == after[f]} == {1, 2, 3, 4, 5}  # only the span to key N is rewritten
    assert main([*common, "-o", str(tmp_path / "fresh" / "c.####.exr"), *keys]) == 0
    for f in range(1, N + 1):
        got, want = (read_exr(tmp_path / d / f"c.{f:04d}.exr").pixels for d in ("out", "fresh"))
        assert np.array_equal(got, want), f
    assert main([*common, "-o", str(tmp_path / "x.####.exr"), "--cache", "c", "--cache-max-gb", "0", *keys]) == 2


def test_regrade_edits_rerun_bitwise_the_fresh_run(engine, tmp_path):
    """A colour plate regraded: a partial key alone (the base is the plate), then a full key added, then the
    partial key repainted; each re-run is the fresh run, and the plate-only frames are never rewritten."""
    from colorprop.io.exr import write_exr
    from test_partial_keys import SPACE

    frames = textured_frames(N, shift=SHIFT)
    for i, f in enumerate(frames, start=1):
        write_exr(tmp_path / f"plate.{i:04d}.exr", f, ("R", "G", "B"), extra_metadata={"oiio:ColorSpace": SPACE})
    plate = str(tmp_path / "plate.####.exr")
    regrade = ShotOptions(method="flow", regrade=True)
    graded = full_key([f * np.float32([1.0, 0.9, 0.7]) for f in frames], 8)
    cache, out = ShotCache(tmp_path / "cache"), tmp_path / "out"
    for i, keys in enumerate(
        [
            {3: partial_key(frames, 3)},
            {3: partial_key(frames, 3), 8: graded},
            {3: partial_key(frames, 3, gain=(0.3, 1.0, 0.3)), 8: graded},
        ]
    ):
        before = files(out)
        report, got = colour(engine, plate, out, keys, cache, options=regrade)
        assert_bitwise(got, colour(engine, plate, tmp_path / f"fresh{i}", keys, options=regrade)[1])
        after = files(out)
        assert {f for f in before if before[f] == after[f]} == set(report.frames_unchanged)
        if i == 2:  # the repaint changes the layer's frames only; the grade's segment from 8 is not rewritten
            assert {8, 9} <= set(report.frames_unchanged)


def test_a_partial_key_edited_at_the_viewed_frame_shows_there_first(engine, shot, tmp_path):
    """The re-run after repainting the partial key at the viewed frame: that frame is the first thing done (no
    layer pass waits before it), then the frames around it, each after its own layer step."""
    plate, frames = shot
    keys = {1: full_key(frames, 1), 5: partial_key(frames, 5)}
    cache, events = ShotCache(tmp_path / "cache"), []
    colour(engine, plate, tmp_path / "out", keys, cache, view=5)
    keys[5] = partial_key(frames, 5, gain=(0.2, 0.9, 0.3))
    report, got = colour(engine, plate, tmp_path / "out", keys, cache, view=5, progress=events.append)
    assert events[0].frame == 5 and not events[0].skipped
    assert [e.frame for e in events[1:3]] == [4, 4] and events[2].done == 3  # its layer step, then frame 4
    assert 1 in report.frames_unchanged  # the full key, which no layer reaches
    assert_bitwise(got, colour(engine, plate, tmp_path / "fresh", keys)[1])


@pytest.mark.parametrize("full", [[1], [1, N]], ids=["one-way", "between-keys"])
def test_a_run_cut_short_resumes_from_what_it_kept(engine, shot, tmp_path, full):
    """Cancelled part way through a segment: the re-run carries on from the base results (one way) or the passes
    (between keys) the cut-short run kept, bit for bit the fresh run."""
    plate, frames = shot
    keys = {k: full_key(frames, k) for k in full}
    cache, done = ShotCache(tmp_path / "cache"), []
    with pytest.raises(Cancelled):
        colour(engine, plate, tmp_path / "out", keys, cache, progress=done.append, cancel=lambda: len(done) >= 5)
    if full == [1]:
        assert len(list((cache.folder / "base").iterdir())) == 5  # the key and frames 2-5
    else:
        assert list((cache.folder / "spans" / f"1-{N}").glob("backward.*.exr"))
    report, got = colour(engine, plate, tmp_path / "out", keys, cache)
    assert_bitwise(got, colour(engine, plate, tmp_path / "fresh", keys)[1])
    if full == [1]:
        assert cache.hits.get("base") == 4  # frames 2-5 taken again (the key frame is its own segment, replayed)
    assert not (cache.folder / "spans" / f"1-{N}").exists()  # a span's passes go once its frames are written
    assert set(report.frames_unchanged) >= {1, 2, 3, 4}
