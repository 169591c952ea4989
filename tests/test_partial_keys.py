"""Partial keys (a key with a matte) as layers over the full keys' result (shot/layers.py), through ``run_shot`` on
real EXR plates made here and written as EXR frames: pixels no layer reaches are bitwise those of the run without
the partial key; soft mattes mix; partial and full keys in either order; a partial key alone with regrade; two
overlapping ones; resume and the farm's tasks give the embedded run's pixels. ``flow`` (no weights) at 96x64, one
``full`` run with the shipped weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from colorprop.colour import convert
from colorprop.engine.engine import Engine, ShotOptions
from colorprop.errors import InputError
from colorprop.io.exr import read_exr, write_exr
from colorprop.engine.propagate import resize_hw
from colorprop.shot.frames import ExrSequenceSink, ExrSequenceSource, KeyImage
from colorprop.shot.layers import working_colour
from colorprop.shot.pipeline import run_shot
from test_pipeline import SPACE, H, W, textured_frames, write_shot

N = 9
SHIFT = 1.5  # textured_frames: the picture moves left by this many px per frame
BOX = (30, 20, 50, 40)  # x0, y0, x1, y1: the painted region at the partial key's frame
MARGIN = 5  # px around the box's track that flow, warping and upsampling may reach
FLOW = ShotOptions(method="flow")


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(None, "no weights in this test")


@pytest.fixture(scope="module")
def shot(tmp_path_factory) -> tuple[str, list[np.ndarray]]:
    """A gray plate (frames 1..N) and the true colour frames."""
    frames = textured_frames(N, shift=SHIFT)
    plate, _ = write_shot(tmp_path_factory.mktemp("plate"), frames, gray_channel="RGB")
    return plate, frames


def box_matte(box=BOX, value: float = 1.0) -> np.ndarray:
    x0, y0, x1, y1 = box
    matte = np.zeros((H, W), np.float32)
    matte[y0:y1, x0:x1] = value
    return matte


def painted(frame_rgb: np.ndarray, gain=(1.0, 0.1, 0.1), box=BOX) -> np.ndarray:
    """The frame's colour with the box's colour changed (an RGBA paint export: black outside the box)."""
    x0, y0, x1, y1 = box
    out = np.zeros_like(frame_rgb)
    out[y0:y1, x0:x1] = frame_rgb[y0:y1, x0:x1] * np.float32(gain)
    return out


def full_key(frames, k: int) -> KeyImage:
    return KeyImage(frames[k - 1], SPACE)


def partial_key(frames, k: int, matte=None, gain=(1.0, 0.1, 0.1), box=BOX) -> KeyImage:
    return KeyImage(painted(frames[k - 1], gain, box), SPACE, matte=box_matte(box) if matte is None else matte)


def colour(engine, plate: str, out: Path, keys, options=FLOW, pixel_type="half", **kw) -> dict[int, np.ndarray]:
    """``run_shot`` from the EXR plate to EXR frames (R, G, B, confidence) under ``out``; the frames read back."""
    sink = ExrSequenceSink(str(out / "c.####.exr"), pixel_type=pixel_type, write_confidence=True)
    run_shot(engine, ExrSequenceSource(plate, range(1, N + 1)), keys, options, sink, **kw)
    return outputs(out)


def outputs(out: Path) -> dict[int, np.ndarray]:
    return {int(p.name.split(".")[1]): read_exr(p).pixels for p in sorted(out.glob("c.*.exr"))}


def ab(pixels: np.ndarray) -> np.ndarray:
    return convert.linear_rec709_to_lab(pixels[..., :3])[..., 1:]


def reach(frame: int, key: int, box=BOX) -> np.ndarray:
    """Where a layer painted in ``box`` at ``key`` may be at ``frame``: the box moved with the picture, widened."""
    x0, y0, x1, y1 = box
    dx = -SHIFT * (frame - key)
    mask = np.zeros((H, W), bool)
    mask[max(y0 - MARGIN, 0) : y1 + MARGIN, max(int(x0 + dx) - MARGIN, 0) : max(int(x1 + dx) + MARGIN, 0)] = True
    return mask


def layer_frames(key: int, full: list[int]) -> list[int]:
    """The frames a partial key's layer may reach: its own and those up to (not including) the nearest full key
    on either side, or the shot's end."""
    before = max((f for f in full if f < key), default=0)
    after = min((f for f in full if f > key), default=N + 1)
    return list(range(before + 1, after))


def assert_only_within_reach(got, without, keys_box: dict[int, tuple], full: list[int]) -> None:
    """Every pixel outside the reach of every partial key is bitwise the run without them, and so is every frame
    at or beyond a full key from the partial key (``full``: the full keys); within, the layers changed something
    at every frame (they are carried both ways)."""
    assert sorted(got) == sorted(without) == list(range(1, N + 1))
    for f in got:
        inside = np.zeros((H, W), bool)
        for k, box in keys_box.items():
            if f in layer_frames(k, full):
                inside |= reach(f, k, box)
        np.testing.assert_array_equal(got[f][~inside], without[f][~inside], err_msg=f"frame {f}")
        assert not inside.any() or np.any(got[f][inside] != without[f][inside]), f"frame {f}: no layer"


def interior(box=BOX, by: int = 3) -> tuple[slice, slice]:
    x0, y0, x1, y1 = box
    return slice(y0 + by, y1 - by), slice(x0 + by, x1 - by)


@pytest.fixture(scope="module")
def without(engine, shot, tmp_path_factory) -> dict[int, np.ndarray]:
    """The run with one full key at frame 1 only: what the partial keys are laid over."""
    plate, frames = shot
    return colour(engine, plate, tmp_path_factory.mktemp("without"), {1: full_key(frames, 1)})


def test_pixels_no_layer_reaches_are_bitwise_the_run_without_the_partial_key(engine, shot, without, tmp_path):
    plate, frames = shot
    got = colour(engine, plate, tmp_path, {1: full_key(frames, 1), 5: partial_key(frames, 5)})
    assert_only_within_reach(got, without, {5: BOX}, [1])
    inner = interior()
    # At its frame the painted colour is what is written inside the matte (half floats: within 0.1 ab).
    np.testing.assert_allclose(ab(got[5])[inner], ab(painted(frames[4]))[inner], atol=0.1)
    assert np.all(got[5][inner][..., 3] == 1.0)  # the written confidence: the key's, 1


def test_a_layer_never_reaches_a_full_key_nor_the_frames_beyond_it(engine, shot, tmp_path):
    """A full key states its whole frame: a partial key's layer stops before the nearest full key on either side,
    so the full key frames and every frame beyond are bitwise the run without the partial key."""
    plate, frames = shot
    fulls = {1: full_key(frames, 1), 7: full_key(frames, 7)}
    base = colour(engine, plate, tmp_path / "base", fulls)
    got = colour(engine, plate, tmp_path / "both", fulls | {5: partial_key(frames, 5)})
    for f in (1, 7, 8, 9):
        np.testing.assert_array_equal(got[f], base[f], err_msg=f"frame {f}")
    assert_only_within_reach(got, base, {5: BOX}, [1, 7])


def test_a_layer_stops_where_its_region_leaves_the_frame(engine, shot, without, tmp_path):
    """Painted at the right edge of the last frame, carried backward the region leaves the frame (the picture
    moves left): its matte falls to 0 everywhere and every earlier frame is bitwise the run without it."""
    plate, frames = shot
    edge = (W - 6, 20, W, 40)
    got = colour(engine, plate, tmp_path, {1: full_key(frames, 1), N: partial_key(frames, N, box=edge)})
    touched = [f for f in got if not np.array_equal(got[f], without[f])]
    assert N in touched and N - 1 in touched
    assert touched == list(range(touched[0], N + 1)) and touched[0] > 2, touched
    for f in touched:
        np.testing.assert_array_equal(got[f][~reach(f, N, edge)], without[f][~reach(f, N, edge)])


def test_a_soft_matte_mixes_the_painted_colour_with_what_the_full_keys_give(engine, shot, tmp_path):
    plate, frames = shot
    base = colour(engine, plate, tmp_path / "base", {1: full_key(frames, 1)}, pixel_type="float")
    half = partial_key(frames, 5, matte=box_matte(value=0.5))
    got = colour(engine, plate, tmp_path / "soft", {1: full_key(frames, 1), 5: half}, pixel_type="float")
    inner = interior()
    expected = 0.5 * ab(base[5])[inner] + 0.5 * ab(painted(frames[4]))[inner]
    np.testing.assert_allclose(ab(got[5])[inner], expected, atol=0.05)  # two colour conversions
    assert np.abs(ab(got[5])[inner] - ab(base[5])[inner]).mean() > 5.0  # a colour between, not the base's
    np.testing.assert_allclose(got[5][inner][..., 3], 0.5 * base[5][inner][..., 3] + 0.5, atol=1e-6)


@pytest.mark.parametrize("full, partial", [(1, 5), (8, 3)], ids=["full-first", "partial-first"])
def test_partial_and_full_keys_in_either_order(engine, shot, tmp_path, full, partial):
    plate, frames = shot
    base = colour(engine, plate, tmp_path / "base", {full: full_key(frames, full)})
    got = colour(
        engine, plate, tmp_path / "both", {full: full_key(frames, full), partial: partial_key(frames, partial)}
    )
    assert_only_within_reach(got, base, {partial: BOX}, [full])
    inner = interior()
    np.testing.assert_allclose(ab(got[partial])[inner], ab(painted(frames[partial - 1]))[inner], atol=0.1)


def test_a_partial_key_alone_with_regrade_changes_only_where_it_reaches(engine, tmp_path):
    """A colour plate regraded by one painted region: every pixel the layer does not reach is the plate's own."""
    frames = textured_frames(N, shift=SHIFT)
    for i, f in enumerate(frames, start=1):
        write_exr(tmp_path / f"plate.{i:04d}.exr", f, ("R", "G", "B"), extra_metadata={"oiio:ColorSpace": SPACE})
    plate = str(tmp_path / "plate.####.exr")
    regrade = ShotOptions(method="flow", regrade=True)
    got = colour(engine, plate, tmp_path / "out", {5: partial_key(frames, 5)}, regrade)
    for f in range(1, N + 1):
        own = read_exr(tmp_path / f"plate.{f:04d}.exr").pixels
        inside = reach(f, 5)
        np.testing.assert_array_equal(got[f][~inside][..., :3], own[~inside], err_msg=f"frame {f}")
        assert np.abs(ab(got[f])[inside] - ab(own)[inside]).max() > 5.0, f"frame {f}: not regraded"
    inner = interior()
    np.testing.assert_allclose(ab(got[5])[inner], ab(painted(frames[4]))[inner], atol=0.1)


def test_of_two_overlapping_partial_keys_the_nearer_wins(engine, shot, without, tmp_path):
    plate, frames = shot
    box4 = (BOX[0] + 2, BOX[1], BOX[2] + 2, BOX[3])  # the same object a frame earlier (picture moves left 1.5 px)
    green, blue = (0.1, 1.0, 0.1), (0.1, 0.1, 1.0)
    keys = {
        1: full_key(frames, 1),
        4: partial_key(frames, 4, gain=green, box=box4),
        6: partial_key(frames, 6, gain=blue),
    }
    got = colour(engine, plate, tmp_path, keys)
    assert_only_within_reach(got, without, {4: box4, 6: BOX}, [1])
    inner = interior(by=5)
    green_ab, blue_ab = ab(painted(frames[3], green, box4))[interior(box4)], ab(painted(frames[5], blue))[inner]
    np.testing.assert_allclose(ab(got[4])[interior(box4)], green_ab, atol=0.1)  # each wins at its own frame
    np.testing.assert_allclose(ab(got[6])[inner], blue_ab, atol=0.1)
    # Frame 5, as far from both: the later key is laid over last. Its colour is near blue, far from green.
    at5 = ab(got[5])[inner]
    assert np.abs(at5 - blue_ab).mean() < 0.25 * np.abs(at5 - ab(painted(frames[4], green))[inner]).mean()


def test_a_partial_key_alone_without_regrade_is_an_input_error(engine, shot, tmp_path):
    plate, frames = shot
    with pytest.raises(InputError, match="give a full key too, or --regrade") as err:
        colour(engine, plate, tmp_path, {5: partial_key(frames, 5)})
    assert err.value.exit_code == 2
    assert not list(tmp_path.glob("c.*.exr"))


@pytest.mark.parametrize("full", [[1], [1, N]], ids=["one-way", "between-keys"])
def test_resume_over_frames_a_layer_touched_equals_the_uninterrupted_run(engine, shot, tmp_path, full):
    """A run killed after frame 6 (frames 5 and 6 written with the layer over them) resumed with skip_existing:
    the base's colour of the written frames is made again, not read back from the composite, so every later
    frame is bitwise the uninterrupted run's; the written ones are not rewritten. At half the plate's width,
    so the written colour carried at full resolution (``carry="full"``) is what a later frame is made from."""
    plate, frames = shot
    options = ShotOptions(method="flow", working_width=W // 2)  # the written colour is carried at full size
    keys = {k: full_key(frames, k) for k in full} | {5: partial_key(frames, 5)}
    whole = colour(engine, plate, tmp_path / "whole", keys, options)
    base = colour(engine, plate, tmp_path / "base", {k: full_key(frames, k) for k in full}, options)
    assert_only_within_reach(whole, base, {5: BOX}, full)
    part = tmp_path / "part"
    colour(engine, plate, part, keys, options)
    for f in range(7, N + (0 if N in full else 1)):
        (part / f"c.{f:04d}.exr").unlink()
    kept = {f: (part / f"c.{f:04d}.exr").stat().st_mtime_ns for f in range(1, 7)}
    sink = ExrSequenceSink(str(part / "c.####.exr"), write_confidence=True)
    report = run_shot(engine, ExrSequenceSource(plate, range(1, N + 1)), keys, options, sink, skip_existing=True)
    assert sorted(report.frames_written) == list(range(7, N + (0 if N in full else 1)))
    assert {f: (part / f"c.{f:04d}.exr").stat().st_mtime_ns for f in range(1, 7)} == kept
    resumed = outputs(part)
    for f in range(1, N + 1):
        np.testing.assert_array_equal(resumed[f], whole[f], err_msg=f"frame {f}")


def test_resume_with_every_frame_a_layer_reaches_written_carries_no_layer(engine, shot, tmp_path):
    """Full keys at 1 and 7, a partial key at 5 (its layer lives in frames 2..6), frames 8 and 9 lost: the resumed
    run carries no layer (no step of its progress, no file under the state dir), writes 8 and 9 only, and every
    frame is bitwise the uninterrupted run's."""
    plate, frames = shot
    keys = {1: full_key(frames, 1), 5: partial_key(frames, 5), 7: full_key(frames, 7)}
    whole = colour(engine, plate, tmp_path / "whole", keys)
    part = tmp_path / "part"
    colour(engine, plate, part, keys)
    for f in (8, 9):
        (part / f"c.{f:04d}.exr").unlink()
    events = []
    sink = ExrSequenceSink(str(part / "c.####.exr"), write_confidence=True)
    state = tmp_path / "state"
    source = ExrSequenceSource(plate, range(1, N + 1))
    report = run_shot(engine, source, keys, FLOW, sink, skip_existing=True, state_dir=state, progress=events.append)
    assert report.frames_written == [8, 9] and len(events) == N and events[-1].total == N
    assert not (state / "layer.5").exists()
    resumed = outputs(part)
    for f in range(1, N + 1):
        np.testing.assert_array_equal(resumed[f], whole[f], err_msg=f"frame {f}")


def test_farm_tasks_with_a_state_dir_give_the_embedded_runs_pixels(engine, shot, tmp_path):
    """Full keys at 1 and N, a partial key at 5: the span's two pass tasks and the last key's segment need no layer
    (it never reaches a full key); the first key's blend computes and stores it; together they write what the
    embedded run writes."""
    plate, frames = shot
    keys = {1: full_key(frames, 1), 5: partial_key(frames, 5), N: full_key(frames, N)}
    embedded = colour(engine, plate, tmp_path / "embedded", keys)
    base = colour(engine, plate, tmp_path / "base", {1: full_key(frames, 1), N: full_key(frames, N)})
    assert_only_within_reach(embedded, base, {5: BOX}, [1, N])
    out, state = tmp_path / "farm", tmp_path / "state"
    for direction in ("backward", "forward"):
        assert colour(engine, plate, out, keys, segment=1, direction=direction, state_dir=state) == {}
    assert not (state / "layer.5").exists()  # a pass task writes no frame: it needs no layer
    colour(engine, plate, out, keys, segment=N, state_dir=state)
    assert not (state / "layer.5").exists()
    farm = colour(engine, plate, out, keys, segment=1, state_dir=state)
    assert sorted(p.name for p in (state / "layer.5").glob("*.exr")) == sorted(
        [f"backward.{f}.exr" for f in range(2, 5)] + [f"forward.{f}.exr" for f in range(6, N)]
    )
    for f in range(1, N + 1):
        np.testing.assert_array_equal(farm[f], embedded[f], err_msg=f"frame {f}")


def test_segment_names_full_keys_only(engine, shot, tmp_path):
    plate, frames = shot
    keys = {1: full_key(frames, 1), 5: partial_key(frames, 5)}
    with pytest.raises(InputError, match="--segment 5: not a full key frame"):
        colour(engine, plate, tmp_path, keys, segment=5)


@pytest.mark.parametrize("box", [BOX, (W - 6, 20, W, 40)], ids=["reaches-every-frame", "leaves-the-frame"])
def test_progress_shows_each_layer_frame_and_done_ends_at_total(engine, shot, tmp_path, box):
    """The layer's passes come first: each frame they reach is a progress step of its own, so the first output
    frame is not shown stuck while they run; a pass that stops early (the region leaves the frame) takes the
    frames it never reaches off the total. ``done`` counts 1, 2, ... and ends exactly at ``total``; the report
    lists output frames only."""
    plate, frames = shot
    events = []
    sink = ExrSequenceSink(str(tmp_path / "c.####.exr"))
    keys = {1: full_key(frames, 1), N: partial_key(frames, N, box=box)}
    report = run_shot(engine, ExrSequenceSource(plate, range(1, N + 1)), keys, FLOW, sink, progress=events.append)
    assert report.frames_written == list(range(1, N + 1))
    assert [e.done for e in events] == list(range(1, len(events) + 1))
    assert events[-1].done == events[-1].total
    assert events[0].total == N + (N - 2)  # the backward pass may reach frames N-1 .. 2
    assert [e.total for e in events] == sorted((e.total for e in events), reverse=True)
    layer_steps = len(events) - N
    assert [e.frame for e in events[:layer_steps]] == list(range(N - 1, N - 1 - layer_steps, -1))
    if box == BOX:
        assert layer_steps == N - 2
    else:
        assert 0 < layer_steps < N - 2 and events[-1].total < events[0].total


def test_a_pass_task_over_written_frames_counts_them_to_its_total(engine, shot, tmp_path):
    """A farm pass task with every frame of its span written does no pass, and still shows each frame done."""
    plate, frames = shot
    keys = {1: full_key(frames, 1), 5: partial_key(frames, 5), N: full_key(frames, N)}
    colour(engine, plate, tmp_path, keys)
    events = []
    sink = ExrSequenceSink(str(tmp_path / "c.####.exr"), write_confidence=True)
    source = ExrSequenceSource(plate, range(1, N + 1))
    options = dict(segment=1, direction="forward", state_dir=tmp_path / "state", skip_existing=True)
    report = run_shot(engine, source, keys, FLOW, sink, progress=events.append, **options)
    assert report.frames_skipped == list(range(2, N))
    assert [(e.done, e.total, e.skipped) for e in events] == [(i, N - 2, True) for i in range(1, N - 1)]


@pytest.mark.slow  # the shipped networks colour the shot twice
def test_full_method_pixels_no_layer_reaches_are_bitwise_the_run_without(shot, tmp_path):
    full = Engine.load()
    assert "full" in full.methods()
    plate, frames = shot
    options = ShotOptions(method="full")
    base = colour(full, plate, tmp_path / "base", {1: full_key(frames, 1)}, options)
    got = colour(full, plate, tmp_path / "layer", {1: full_key(frames, 1), 5: partial_key(frames, 5)}, options)
    assert_only_within_reach(got, base, {5: BOX}, [1])
    inner = interior()
    np.testing.assert_allclose(ab(got[5])[inner], ab(painted(frames[4]))[inner], atol=0.1)


def test_the_working_colour_of_a_paint_never_takes_the_colour_outside_its_matte():
    """A paint export is black outside its alpha: at the working size, edge cells average the painted pixels only
    and cells with nothing painted hold the paint's mean colour, so warping and upsampling mix in no black."""
    ab_full = np.zeros((H, W, 2), np.float32)
    ab_full[20:41, 30:51] = (40.0, -25.0)
    matte = box_matte((30, 20, 51, 41))
    matte[20, 30:51] = 0.5  # a soft top edge
    ab_work, matte_work = working_colour(ab_full, matte, lambda x: resize_hw(x, W // 4, H // 4))
    np.testing.assert_allclose(ab_work, np.broadcast_to(np.float32([40.0, -25.0]), ab_work.shape), atol=1e-3)
    assert matte_work.max() == 1.0 and 0.0 < matte_work[5, 7] < 1.0  # the cell over the box's corner: partly painted


def test_a_layer_pass_stored_in_part_resumes_exactly_and_another_jobs_is_never_used(engine, shot, tmp_path):
    """Under a state dir a layer's passes stay (``layer.<frame>``). A pass killed after frame 7 (later files gone)
    is replayed from its stored frames, which are not written again, and carried on as the uninterrupted pass;
    the files of another paint (another stamp) are computed again, never laid over."""
    plate, frames = shot
    keys = {1: full_key(frames, 1), 5: partial_key(frames, 5)}
    embedded = colour(engine, plate, tmp_path / "embedded", keys)
    state = tmp_path / "state"
    colour(engine, plate, tmp_path / "first", keys, state_dir=state)
    folder = state / "layer.5"
    whole = {p.name: read_exr(p).pixels for p in folder.glob("*.exr")}
    assert sorted(whole) == sorted(
        [f"backward.{f}.exr" for f in range(2, 5)] + [f"forward.{f}.exr" for f in range(6, 10)]
    )
    for f in (8, 9):
        (folder / f"forward.{f}.exr").unlink()
    kept = {f: (folder / f"forward.{f}.exr").stat().st_mtime_ns for f in (6, 7)}
    resumed = colour(engine, plate, tmp_path / "resumed", keys, state_dir=state)
    assert {f: (folder / f"forward.{f}.exr").stat().st_mtime_ns for f in (6, 7)} == kept
    for name, pixels in whole.items():
        np.testing.assert_array_equal(read_exr(folder / name).pixels, pixels, err_msg=name)
    other = {1: full_key(frames, 1), 5: partial_key(frames, 5, gain=(0.1, 0.1, 1.0))}
    repainted = colour(engine, plate, tmp_path / "repainted", other, state_dir=state)
    alone = colour(engine, plate, tmp_path / "repainted-alone", other)
    for f in range(1, N + 1):
        np.testing.assert_array_equal(resumed[f], embedded[f], err_msg=f"frame {f}")
        np.testing.assert_array_equal(repainted[f], alone[f], err_msg=f"repainted, frame {f}")
    assert not np.array_equal(repainted[5], embedded[5])


def test_run_shot_refuses_a_direction_without_its_segment_and_state_dir(tmp_path):
    """run_shot's callers other than the CLI (the server, eval) get the CLI's check: one check, one message."""
    from colorprop.shot.segments import check_segment_request

    with pytest.raises(InputError, match="--direction forward: needs --segment KEY, --state-dir DIR"):
        check_segment_request(None, "forward", tmp_path, [1])
    with pytest.raises(InputError, match="--direction sideways: needs"):
        check_segment_request(1, "sideways", tmp_path, [1])
    with pytest.raises(InputError, match="--segment 5: not a full key frame"):
        check_segment_request(5, None, None, [1, 9])
    check_segment_request(1, "forward", tmp_path, [1, 9])  # a farm pass task: accepted
