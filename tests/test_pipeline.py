"""The shot pipeline and `colorprop colorize` on real EXR sequences made here (method flow: no weights needed)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from colorprop.colour import convert
from colorprop.cli.main import main as cli_main
from colorprop.engine.engine import Engine, ShotOptions
from colorprop.io.exr import read_exr, write_exr
from colorprop.shot.frames import ArraySink, ArraySource, KeyImage
from colorprop.shot.pipeline import run_shot
from colorprop.shot.preflight import working_size
from colorprop.shot.segments import plan_segments

W, H = 96, 64
SPACE = "Linear Rec.709 (sRGB)"


def textured_frames(n: int, shift: float = 1.5, seed: int = 3) -> list[np.ndarray]:
    """Linear RGB frames of a smooth colourful texture moving right by ``shift`` px per frame."""
    rng = np.random.default_rng(seed)
    big = rng.random((H + 8, W + 8 * n + 16, 3)).astype(np.float32)
    import cv2

    big = cv2.GaussianBlur(big, (0, 0), 3)
    big = (big - big.min()) / (big.max() - big.min()) * 0.9 + 0.05
    frames = []
    for i in range(n):
        x0 = 8 + i * shift
        m = np.float32([[1, 0, x0], [0, 1, 4]])
        frames.append(cv2.warpAffine(big, m, (W, H), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP))
    return frames


def write_shot(
    folder: Path, frames: list[np.ndarray], gray_channel: str = "Y", hdr_gain: float = 1.0, extra_channel: bool = False
) -> tuple[str, str]:
    """plate.####.exr (gray, frames 1..n) and key.exr (colour frame 1)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames, start=1):
        f = f * hdr_gain
        y = convert.luminance(f)
        if gray_channel == "Y":
            pixels, channels = y[..., None], ("Y",)
        else:
            pixels, channels = np.dstack([y, y, y]), ("R", "G", "B")
        if extra_channel:
            pixels = np.dstack([pixels, np.full((H, W), i, np.float32)])
            channels += ("Z",)
        write_exr(
            folder / f"plate.{i:04d}.exr",
            pixels,
            channels,
            extra_metadata={"oiio:ColorSpace": SPACE, "shot:name": "t01"},
        )
    write_exr(folder / "key.exr", frames[0] * hdr_gain, ("R", "G", "B"), extra_metadata={"oiio:ColorSpace": SPACE})
    return str(folder / "plate.####.exr"), str(folder / "key.exr")


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(None, "no weights in this test")


def run_cli(*args: str) -> int:
    return cli_main(["colorize", "--progress", "none", *args])


def test_flow_colorize_keeps_luminance_adds_colour_and_passes_channels(tmp_path, engine):
    frames = textured_frames(8)
    plate, key = write_shot(tmp_path / "in", frames, hdr_gain=4.0, extra_channel=True)
    out = str(tmp_path / "out" / "c.####.exr")
    assert (
        run_cli(
            "--input",
            plate,
            "--key",
            f"1={key}",
            "--output",
            out,
            "--frames",
            "1-8",
            "--method",
            "flow",
            "--pixel-type",
            "float",
        )
        == 0
    )
    for i in range(1, 9):
        src = read_exr(plate.replace("####", f"{i:04d}"))
        res = read_exr(out.replace("####", f"{i:04d}"))
        assert res.channels == ("R", "G", "B", "Z")
        np.testing.assert_array_equal(res.channel("Z"), src.channel("Z"))
        assert res.metadata.get("shot:name") == "t01"
        y_in = src.channel("Y")
        y_out = convert.luminance(res.rgb())
        assert y_in.max() > 1.0  # HDR survives
        rel = np.abs(y_out - y_in) / np.maximum(np.abs(y_in), 1e-2)
        assert rel.max() <= 1e-3, f"frame {i}: luminance changed by {rel.max():.2e}"
        chroma = np.hypot(*convert.linear_rec709_to_lab(res.rgb())[..., 1:].transpose(2, 0, 1))
        assert chroma.mean() > 5.0, f"frame {i}: no colour"
    # the key frame's output is the key's colour
    key_px = read_exr(key).rgb()
    first = read_exr(out.replace("####", "0001")).rgb()
    np.testing.assert_allclose(first, key_px, rtol=2e-3, atol=2e-4)


def test_flow_propagation_is_close_to_the_truth(tmp_path, engine):
    frames = textured_frames(10, shift=1.0)
    gray = {i + 1: np.repeat(convert.luminance(f)[..., None], 3, 2) for i, f in enumerate(frames)}
    sink = ArraySink()
    run_shot(
        engine, ArraySource(gray, colorspace=SPACE), {1: KeyImage(frames[0], SPACE)}, ShotOptions(method="flow"), sink
    )
    true_ab = convert.linear_rec709_to_lab(frames[-1])[..., 1:]
    got_ab = convert.linear_rec709_to_lab(sink.results[10].rgb)[..., 1:]
    inner = (slice(8, -8), slice(8, -20))
    err = np.abs(got_ab[inner] - true_ab[inner]).mean()
    assert err < 2.0, f"mean ab error {err:.2f} after 9 frames of a 1 px/frame pan"


def test_two_keys_blend_forward_and_backward(tmp_path, engine):
    frames = textured_frames(9)
    gray = {i + 1: np.repeat(convert.luminance(f)[..., None], 3, 2) for i, f in enumerate(frames)}
    keys = {1: KeyImage(frames[0], SPACE), 9: KeyImage(frames[8], SPACE)}
    sink = ArraySink()
    run_shot(engine, ArraySource(gray, colorspace=SPACE), keys, ShotOptions(method="flow"), sink)
    assert sorted(sink.results) == list(range(1, 10))
    np.testing.assert_allclose(sink.results[9].rgb, frames[8], rtol=1e-3, atol=1e-4)
    # the right border is dis-occluded going forward; the backward pass from key 9 knows it
    single = ArraySink()
    run_shot(engine, ArraySource(gray, colorspace=SPACE), {1: keys[1]}, ShotOptions(method="flow"), single)
    true_ab = convert.linear_rec709_to_lab(frames[7])[..., 1:]
    err = lambda s: np.abs(convert.linear_rec709_to_lab(s.results[8].rgb)[..., 1:] - true_ab).mean()  # noqa: E731
    assert err(sink) < err(single)


def test_plan_segments():
    assert plan_segments([1, 2, 3, 4, 5], [3]) == [
        ("backward", None, 3, [1, 2]),
        ("key", 3, 3, [3]),
        ("forward", 3, None, [4, 5]),
    ]
    assert plan_segments([1, 2, 3, 4], [1, 4]) == [("key", 1, 1, [1]), ("between", 1, 4, [2, 3]), ("key", 4, 4, [4])]


def test_working_size_never_upscales_and_is_even():
    assert working_size(320, 180, 480) == (320, 180)
    assert working_size(1920, 1080, 480) == (480, 270)
    w, h = working_size(4096, 1716, 480)
    assert w == 480 and h % 2 == 0


def test_skip_existing_resumes_exactly(tmp_path, engine):
    frames = textured_frames(8)
    plate, key = write_shot(tmp_path / "in", frames)
    full = str(tmp_path / "full" / "c.####.exr")
    part = str(tmp_path / "part" / "c.####.exr")
    args = ["--input", plate, "--key", f"1={key}", "--method", "flow", "--frames", "1-8"]
    assert run_cli(*args, "--output", full) == 0
    assert run_cli(*args[:-1], "1-5", "--output", part) == 0  # an interrupted run: frames 1-5 written
    os.remove(part.replace("####", "0005"))
    Path(part.replace("####", "0004")).write_bytes(b"half-written garbage")  # a broken frame is redone
    assert run_cli(*args, "--output", part, "--skip-existing") == 0
    for i in range(1, 9):
        a = read_exr(full.replace("####", f"{i:04d}")).pixels
        b = read_exr(part.replace("####", f"{i:04d}")).pixels
        np.testing.assert_array_equal(a, b, err_msg=f"frame {i}")


# ---------------------------------------------------------------- bad input: one clear error, nothing lost


@pytest.fixture()
def shot(tmp_path):
    plate, key = write_shot(tmp_path / "in", textured_frames(4))
    return tmp_path, plate, key


def expect_error(capsys, code: int, *args: str) -> str:
    assert run_cli(*args) == code
    return capsys.readouterr().err


def test_missing_frame_in_range_names_it(shot, capsys):
    tmp, plate, key = shot
    os.remove(plate.replace("####", "0003"))
    err = expect_error(
        capsys,
        2,
        "--input",
        plate,
        "--key",
        f"1={key}",
        "--output",
        str(tmp / "o.####.exr"),
        "--frames",
        "1-4",
        "--method",
        "flow",
    )
    assert "missing frame(s) 3" in err and "plate.0003.exr" in err
    assert not list(tmp.glob("o.*.exr"))


def test_pattern_matching_nothing(shot, capsys):
    tmp, plate, key = shot
    err = expect_error(
        capsys,
        2,
        "--input",
        str(tmp / "nope.####.exr"),
        "--key",
        f"1={key}",
        "--output",
        str(tmp / "o.####.exr"),
        "--frames",
        "1-4",
        "--method",
        "flow",
    )
    assert "matches no file" in err


def test_truncated_exr_names_the_file(shot, capsys):
    tmp, plate, key = shot
    p = Path(plate.replace("####", "0002"))
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    err = expect_error(
        capsys,
        3,
        "--input",
        plate,
        "--key",
        f"1={key}",
        "--output",
        str(tmp / "o.####.exr"),
        "--frames",
        "1-4",
        "--method",
        "flow",
    )
    assert "plate.0002.exr" in err
    assert not Path(tmp / "o.0002.exr").exists()
    assert Path(tmp / "o.0001.exr").exists()  # frames before it are complete and kept


def test_nan_pixels_name_the_frame(shot, capsys):
    tmp, plate, key = shot
    px = np.full((H, W, 1), 0.2, np.float32)
    px[5, 7, 0] = np.nan
    write_exr(plate.replace("####", "0003"), px, ("Y",), extra_metadata={"oiio:ColorSpace": SPACE})
    err = expect_error(
        capsys,
        3,
        "--input",
        plate,
        "--key",
        f"1={key}",
        "--output",
        str(tmp / "o.####.exr"),
        "--frames",
        "1-4",
        "--method",
        "flow",
    )
    assert "plate.0003.exr" in err and "NaN" in err


def test_key_size_mismatch(shot, capsys):
    tmp, plate, key = shot
    write_exr(tmp / "small_key.exr", np.zeros((10, 10, 3), np.float32), ("R", "G", "B"))
    err = expect_error(
        capsys,
        3,
        "--input",
        plate,
        "--key",
        f"1={tmp / 'small_key.exr'}",
        "--output",
        str(tmp / "o.####.exr"),
        "--frames",
        "1-4",
        "--method",
        "flow",
    )
    assert "small_key.exr" in err and "10x10" in err and f"{W}x{H}" in err
    assert not list(tmp.glob("o.*.exr"))


def test_output_would_overwrite_input(shot, capsys):
    tmp, plate, key = shot
    before = Path(plate.replace("####", "0001")).read_bytes()
    err = expect_error(
        capsys, 2, "--input", plate, "--key", f"1={key}", "--output", plate, "--frames", "1-4", "--method", "flow"
    )
    assert "frame 1 is " in err and "which is input frame 1 of" in err and "choose another output path" in err
    assert Path(plate.replace("####", "0001")).read_bytes() == before


def test_bad_colorspace_and_bad_key_spec(shot, capsys):
    tmp, plate, key = shot
    err = expect_error(
        capsys,
        2,
        "--input",
        plate,
        "--key",
        f"1={key}",
        "--output",
        str(tmp / "o.####.exr"),
        "--frames",
        "1-4",
        "--method",
        "flow",
        "--colorspace",
        "NotASpace",
    )
    assert "NotASpace" in err
    err = expect_error(
        capsys,
        2,
        "--input",
        plate,
        "--key",
        key,
        "--output",
        str(tmp / "o.####.exr"),
        "--frames",
        "1-4",
        "--method",
        "flow",
    )
    assert "FRAME=PATH" in err


def test_learned_method_without_weights_stops_with_advice(shot, capsys, monkeypatch, tmp_path):
    tmp, plate, key = shot
    monkeypatch.setenv("COLORPROP_WEIGHTS", str(tmp_path / "no_weights_here"))
    err = expect_error(
        capsys,
        5,
        "--input",
        plate,
        "--key",
        f"1={key}",
        "--output",
        str(tmp / "o.####.exr"),
        "--frames",
        "1-4",
        "--method",
        "full",
    )
    assert "colorprop train" in err and "--method flow" in err
    assert not list(tmp.glob("o.*.exr"))


def test_console_script_exit_code_on_failure(tmp_path):
    exe = Path(sys.executable).with_name("colorprop")
    result = subprocess.run(
        [
            str(exe),
            "colorize",
            "--input",
            str(tmp_path / "x.####.exr"),
            "--key",
            f"1={tmp_path / 'k.exr'}",
            "--output",
            str(tmp_path / "o.####.exr"),
            "--frames",
            "1-3",
            "--method",
            "flow",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0 and "colorprop: error:" in result.stderr


def test_skip_existing_resumes_full_method_without_recomputing(tmp_path):
    """With the shipped networks: a resumed run keeps the written frames (not recomputed) and colours the rest
    exactly as an uninterrupted run does."""
    engine = Engine.load()
    assert "full" in engine.methods()
    frames = textured_frames(6)
    plate, key = write_shot(tmp_path / "in", frames)
    full = str(tmp_path / "full" / "c.####.exr")
    part = str(tmp_path / "part" / "c.####.exr")
    args = ["--input", plate, "--key", f"1={key}", "--method", "full", "--frames"]
    assert run_cli(*args, "1-6", "--output", full) == 0
    assert run_cli(*args, "1-3", "--output", part) == 0
    before = {i: os.stat(part.replace("####", f"{i:04d}")).st_mtime_ns for i in (1, 2, 3)}
    assert run_cli(*args, "1-6", "--output", part, "--skip-existing") == 0
    for i in (1, 2, 3):
        assert os.stat(part.replace("####", f"{i:04d}")).st_mtime_ns == before[i]
    for i in range(1, 7):
        a = read_exr(full.replace("####", f"{i:04d}")).pixels
        b = read_exr(part.replace("####", f"{i:04d}")).pixels
        np.testing.assert_array_equal(a, b, err_msg=f"frame {i}")


def test_full_resolution_carry_keeps_detail_the_working_size_loses(engine):
    """Networks/flow at a quarter of the plate width: carrying the written colour at plate resolution
    (``carry="full"``, the default) keeps the key's fine chroma; carrying it at the working size blurs it."""
    frames = textured_frames(8, shift=1.0)
    true = [convert.linear_rec709_to_lab(f) for f in frames]
    gray = {i + 1: np.repeat(convert.luminance(f)[..., None], 3, axis=2) for i, f in enumerate(frames)}
    errors = {}
    for carry in ("full", "working"):
        sink = ArraySink()
        options = ShotOptions(method="flow", colorspace=SPACE, working_width=W // 4, carry=carry)
        run_shot(engine, ArraySource(gray, colorspace=SPACE), {1: KeyImage(frames[0], SPACE)}, options, sink)
        lab = convert.linear_rec709_to_lab(sink.results[8].rgb)
        errors[carry] = float(np.abs(lab[8:-8, 8:-8, 1:] - true[7][8:-8, 8:-8, 1:]).mean())  # borders: dis-occluded
    assert errors["full"] < 0.75 * errors["working"], errors  # measured 3.8 vs 5.9


def test_resume_with_full_resolution_carry_is_exact(tmp_path, engine):
    """The plate is wider than the working size: a resumed run reads the written colour back at full
    resolution and carries it on exactly as the uninterrupted run did."""
    frames = textured_frames(6)
    plate, key = write_shot(tmp_path / "in", frames)
    full = str(tmp_path / "full" / "c.####.exr")
    part = str(tmp_path / "part" / "c.####.exr")
    args = ["--input", plate, "--key", f"1={key}", "--method", "flow", "--working-width", "64", "--frames"]
    assert run_cli(*args, "1-6", "--output", full) == 0
    assert run_cli(*args, "1-3", "--output", part) == 0
    assert run_cli(*args, "1-6", "--output", part, "--skip-existing") == 0
    for i in range(1, 7):
        a = read_exr(full.replace("####", f"{i:04d}")).pixels
        b = read_exr(part.replace("####", f"{i:04d}")).pixels
        np.testing.assert_array_equal(a, b, err_msg=f"frame {i}")


class CountingSource(ArraySource):
    """An ArraySource that counts the reads of each frame (``reads``)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.reads: dict[int, int] = {}

    def read(self, frame: int):
        self.reads[frame] = self.reads.get(frame, 0) + 1
        return super().read(frame)


def test_each_key_frame_is_read_no_more_often_than_a_frame_between_keys(engine):
    """Plates on the farm sit on network storage: a key starts one run, ends another and is written itself, and
    is read for that no more often than a frame that two passes and a blend use."""
    frames = textured_frames(13)
    gray = {i + 1: np.repeat(convert.luminance(f)[..., None], 3, 2) for i, f in enumerate(frames)}
    source = CountingSource(gray, colorspace=SPACE)
    keys = {3: KeyImage(frames[2], SPACE), 8: KeyImage(frames[7], SPACE)}
    sink = ArraySink()
    run_shot(engine, source, keys, ShotOptions(method="flow"), sink)
    assert sorted(sink.results) == list(range(1, 14))
    reads = source.reads
    between = max(reads[f] for f in (4, 5, 6, 7))
    assert reads[3] <= between and reads[8] <= between, reads


def test_a_shot_keyed_at_its_first_frame_reads_every_plate_frame_once(engine):
    """The first plate is read for the shot's colour space and size; the key frame there uses that read (a 4K plate
    took 0.4 s more to read twice, on every shot)."""
    frames = textured_frames(6)
    gray = {i + 1: np.repeat(convert.luminance(f)[..., None], 3, 2) for i, f in enumerate(frames)}
    source, sink = CountingSource(gray, colorspace=SPACE), ArraySink()
    run_shot(engine, source, {1: KeyImage(frames[0], SPACE)}, ShotOptions("flow"), sink)
    assert sorted(sink.results) == list(range(1, 7)) and source.reads == {f: 1 for f in range(1, 7)}, source.reads


def test_a_resumed_span_between_keys_checks_each_written_frame_once(engine):
    """--skip-existing over a span between keys: each output is checked once (an EXR check reads the whole file);
    with every frame written nothing is read back (no later frame is made from it); with some written, the last
    written frame before the gap is read back and the rest coloured as the uninterrupted run did."""
    frames = textured_frames(9)
    gray = {i + 1: np.repeat(convert.luminance(f)[..., None], 3, 2) for i, f in enumerate(frames)}
    keys = {1: KeyImage(frames[0], SPACE), 9: KeyImage(frames[8], SPACE)}
    whole = ArraySink()
    run_shot(engine, ArraySource(gray, colorspace=SPACE), keys, ShotOptions(method="flow"), whole)

    class ResumeSink(ArraySink):
        def __init__(self, kept: list[int]):
            super().__init__()
            self.results = {f: whole.results[f] for f in kept}
            self.checked: list[int] = []
            self.read: list[int] = []

        def exists(self, frame: int) -> bool:
            self.checked.append(frame)
            return frame in self.results

        def read_back(self, frame: int) -> np.ndarray:
            self.read.append(frame)
            return super().read_back(frame)

    done = ResumeSink(list(range(1, 10)))
    report = run_shot(
        engine, ArraySource(gray, colorspace=SPACE), keys, ShotOptions(method="flow"), done, skip_existing=True
    )
    assert report.frames_skipped == list(range(1, 10)) and done.read == []
    assert sorted(done.checked) == list(range(1, 10))
    part = ResumeSink([1, 2, 3, 4, 9])
    run_shot(engine, ArraySource(gray, colorspace=SPACE), keys, ShotOptions(method="flow"), part, skip_existing=True)
    assert sorted(part.checked) == list(range(1, 10)) and part.read == [2, 3, 4]
    for f in (5, 6, 7, 8):
        np.testing.assert_array_equal(part.results[f].rgb, whole.results[f].rgb)


def test_carried_state_is_the_written_colour_rounded_as_the_sink_stores_it():
    from colorprop.colour import plate_lab
    from colorprop.shot.frames import PlateFrame
    from colorprop.shot.working import ShotColour

    rng = np.random.default_rng(21)
    rgb = rng.uniform(-0.05, 6.0, (300, 500, 3)).astype(np.float32)  # more rows than one band
    shot = ShotColour(ShotOptions(method="flow", colorspace="ACEScg"), PlateFrame(rgb, ("R", "G", "B"), None))
    as_half = shot.state_ab(rgb, np.float16)
    # Rounded band by band: the same numbers as rounding the whole frame first.
    np.testing.assert_array_equal(as_half, shot.state_ab(rgb.astype(np.float16).astype(np.float32)))
    np.testing.assert_allclose(
        as_half, plate_lab.ab_of_plate(rgb.astype(np.float16).astype(np.float32), "ACEScg"), atol=1e-3
    )
    assert not np.array_equal(as_half, shot.state_ab(rgb))  # float32 sinks carry the unrounded colour
