"""Partial keys in: a key's alpha (EXR, PNG, TIFF) or a separate matte (--key-matte FRAME=PATH) read as the
key's matte, an opaque alpha read as a full key, and every bad matte refused by the one pre-flight before
anything is written. Real files written and read by OpenImageIO; the real CLI (``colorprop.cli.main``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from colorprop.cli.main import main
from colorprop.colour import convert
from colorprop.io.exr import read_exr, write_exr
from colorprop.shot.frames import KeyImage, load_key
from colorprop.shot.preflight import check_key
from test_cli import run, sheet
from test_key_formats import FRAMES, H, TINT, W, linear_plates, write_image

PAINT = np.array([0.15, 0.35, 0.9], np.float32)  # the correction: blue, far from the full key's warm tint


def soft_alpha() -> np.ndarray:
    """HxW alpha: 0 on the left, 1 on the right, a soft ramp between (x 16..40), 0.5 at x = 28."""
    x = np.arange(W, dtype=np.float32)
    return np.broadcast_to(np.clip((x - 16) / 24, 0, 1), (H, W)).astype(np.float32)


def rgba(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    return np.dstack([colour, alpha]).astype(np.float32)


@pytest.fixture
def shot(tmp_path):
    """Gray plates (frames 1-3, a moving pattern), the full key of frame 1 as a float EXR; returns
    (folder, frame 1's linear gray)."""
    gray = linear_plates(tmp_path / "shot")
    write_exr(tmp_path / "full.exr", gray * TINT, ("R", "G", "B"), pixel_type="float")
    return tmp_path, gray


def colorize(folder: Path, out: str, *keys: str) -> tuple[int, str]:
    """``colorprop colorize`` (flow) of the shot with ``keys`` (--key/--key-matte arguments); (exit code, stderr)."""
    shot = ["-i", str(folder / "shot" / "plate.####.exr"), "-o", out, "--method", "flow", "--progress", "none"]
    return run("colorize", *shot, *keys, "--weights", str(folder / "no-weights"))


def frames_of(pattern: str) -> np.ndarray:
    """Every output frame, all channels, as stored (half floats widened): for bitwise comparisons."""
    return np.stack([read_exr(pattern.replace("####", f"{f:04d}")).pixels for f in FRAMES])


# ------------------------------------------------------------------ the alpha of each format


def srgb(linear: np.ndarray) -> np.ndarray:
    return convert.from_linear_rec709(linear, convert.SRGB_DISPLAY)


# (file, OIIO type, straight: the file holds unassociated colour, how close colour and alpha come back)
ALPHA_FORMATS = [
    ("key.exr", "half", False, 2e-3),
    ("key.png", "uint8", True, 1 / 255),
    ("key16.png", "uint16", True, 1e-4),
    ("key.tif", "uint8", True, 1 / 255),
    ("key16.tif", "uint16", True, 1e-4),
    ("keyf.tif", "float", True, 1e-6),
    ("assoc16.tif", "uint16", False, 2e-4),  # a TIFF saved with associated (premultiplied) alpha
]


@pytest.mark.parametrize("name, fmt, straight, tolerance", ALPHA_FORMATS, ids=[f[0] for f in ALPHA_FORMATS])
def test_alpha_is_the_keys_matte_and_its_colour_is_straight(tmp_path, name, fmt, straight, tolerance):
    """What a paint app or a comp saves: straight colour + alpha (PNG, TIFF), premultiplied colour + alpha
    (EXR, a TIFF with associated alpha). The key's matte is the alpha, its colour the straight colour
    wherever alpha > 0, whichever the file held."""
    alpha = soft_alpha()
    colour = np.broadcast_to(PAINT, (H, W, 3))
    colour = colour if fmt in ("half", "float") else srgb(colour)  # an integer key is sRGB-encoded
    stored = colour * (1.0 if straight else alpha[..., None])
    hint = {"oiio:UnassociatedAlpha": 1} if straight else {}  # OIIO writes the pixels it is given as stated
    write_image(tmp_path / name, rgba(stored, alpha), fmt, **hint)
    key = load_key(tmp_path / name, None)
    assert key.is_partial and key.matte.shape == (H, W) and key.matte.dtype == np.float32
    np.testing.assert_allclose(key.matte, alpha, atol=tolerance)
    painted = alpha > 0.1  # where a faint alpha quantises the premultiplied colour less
    np.testing.assert_allclose(key.pixels[painted], colour[painted], atol=tolerance / 0.1 + 1e-3)
    assert key.colorspace == (None if fmt in ("half", "float") else convert.SRGB_DISPLAY)


def test_a_gray_key_with_alpha_and_a_fourth_channel_that_is_not_alpha(tmp_path):
    """Alpha is the channel named A; a gray key (Y, A) is gray colour with a matte; a fourth channel by another
    name (R, G, B, Z: a depth pass) is never taken for alpha: that key is full."""
    alpha = soft_alpha()
    write_image(tmp_path / "ya.png", np.dstack([np.full((H, W), 0.5), alpha]), "uint8", **{"oiio:UnassociatedAlpha": 1})
    write_exr(tmp_path / "depth.exr", rgba(alpha[..., None] * PAINT, alpha), ("R", "G", "B", "Z"), pixel_type="float")
    gray = load_key(tmp_path / "ya.png", None)
    np.testing.assert_allclose(gray.matte, alpha, atol=1 / 255)
    assert np.allclose(gray.pixels[alpha > 0], 128 / 255, atol=1e-6)
    depth = load_key(tmp_path / "depth.exr", None)
    assert depth.matte is None
    np.testing.assert_array_equal(depth.pixels, (alpha[..., None] * PAINT).astype(np.float32))


def test_an_opaque_alpha_is_a_full_key_whose_output_is_bitwise_the_rgb_keys(shot):
    """An RGBA paint export whose alpha is 1 everywhere (16-bit: or one step below) colours the shot exactly
    as the same key saved without alpha; one pixel less than opaque makes it a partial key."""
    folder, gray = shot
    paint = srgb(gray * TINT)
    write_image(folder / "rgb.png", paint, "uint16")
    opaque = rgba(paint, np.ones((H, W), np.float32))
    opaque[::2, ::3, 3] = 65534 / 65535  # what a 16-bit export's "opaque" may round to
    write_image(folder / "opaque.png", opaque, "uint16", **{"oiio:UnassociatedAlpha": 1})
    write_exr(folder / "opaque.exr", rgba(gray * TINT, np.ones((H, W))), ("R", "G", "B", "A"), pixel_type="float")
    assert load_key(folder / "opaque.png", None).matte is None and load_key(folder / "opaque.exr", None).matte is None
    for name in ("rgb.png", "opaque.png"):
        assert colorize(folder, str(folder / f"out-{name}" / "o.####.exr"), "--key", f"1={folder / name}")[0] == 0
    np.testing.assert_array_equal(
        frames_of(str(folder / "out-opaque.png/o.####.exr")), frames_of(str(folder / "out-rgb.png/o.####.exr"))
    )
    assert colorize(folder, str(folder / "exr" / "o.####.exr"), "--key", f"1={folder / 'opaque.exr'}")[0] == 0
    assert colorize(folder, str(folder / "ref" / "o.####.exr"), "--key", f"1={folder / 'full.exr'}")[0] == 0
    np.testing.assert_array_equal(frames_of(str(folder / "exr/o.####.exr")), frames_of(str(folder / "ref/o.####.exr")))
    opaque[5, 7, 3] = 65533 / 65535
    write_image(folder / "almost.png", opaque, "uint16", **{"oiio:UnassociatedAlpha": 1})
    almost = load_key(folder / "almost.png", None)
    assert almost.is_partial and almost.matte[5, 7] < 1.0 and almost.matte[0, 0] == np.float32(65534 / 65535)


# ------------------------------------------------------------------ --key-matte


def write_matte_files(folder: Path, alpha: np.ndarray) -> None:
    """The same partial key two ways: key.png (straight RGBA) and rgb.png + matte.png (8-bit gray)."""
    paint = srgb(np.broadcast_to(PAINT, (H, W, 3)))
    write_image(folder / "key.png", rgba(paint, alpha), "uint8", **{"oiio:UnassociatedAlpha": 1})
    write_image(folder / "rgb.png", paint, "uint8")
    write_image(folder / "matte.png", alpha[..., None], "uint8")


def test_key_matte_gives_the_key_the_matte_of_a_separate_image(shot):
    """--key-matte FRAME=PATH: a single-channel matte, an RGBA image's alpha, or the first channel of an RGBA
    mask whose alpha is opaque is the key's matte: the same pixels as the key's own alpha would give (the
    job's keys, as the pre-flight hands them to the engine)."""
    from colorprop.cli.common import parse_keys
    from colorprop.engine.engine import ShotOptions
    from colorprop.shot.preflight import check_sequence_job

    folder, _ = shot
    write_matte_files(folder, soft_alpha())
    write_image(folder / "rgba_matte.png", rgba(np.zeros((H, W, 3)), soft_alpha()), "uint8")
    mask = np.repeat(soft_alpha()[..., None], 3, axis=2)  # a black-and-white mask exported with an opaque alpha
    write_image(folder / "mask.png", rgba(mask, np.ones((H, W))), "uint8", **{"oiio:UnassociatedAlpha": 1})
    job = dict(input_pattern=str(folder / "shot" / "plate.####.exr"), output_pattern=None, frames=FRAMES)
    options = ShotOptions(method="flow")
    own = check_sequence_job(keys={1: str(folder / "full.exr"), 3: str(folder / "key.png")}, options=options, **job)
    for matte in ("matte.png", "rgba_matte.png", "mask.png"):
        mattes = parse_keys([f"3={folder / matte}"], "--key-matte")
        given = check_sequence_job(
            keys={1: str(folder / "full.exr"), 3: str(folder / "rgb.png")}, options=options, key_mattes=mattes, **job
        )
        assert given.keys[1].matte is None and given.keys[3].is_partial
        np.testing.assert_array_equal(given.keys[3].matte, own.keys[3].matte)
        np.testing.assert_array_equal(given.keys[3].pixels, own.keys[3].pixels)
        assert given.keys[3].name == f"{folder / 'rgb.png'} with matte {folder / matte}"


def test_key_matte_is_parsed_as_key_is(tmp_path):
    """The same FRAME=PATH forms as --key (FRAMES=PATTERN too), its own option named in every message."""
    from colorprop.cli.common import parse_keys
    from colorprop.errors import InputError

    mattes = parse_keys(["1,3=" + str(tmp_path / "m.####.png"), "7=m.png"], "--key-matte")
    assert mattes == {1: str(tmp_path / "m.0001.png"), 3: str(tmp_path / "m.0003.png"), 7: "m.png"}
    for spec, words in [("m.png", "expected FRAME=PATH, e.g. --key-matte 1="), ("1,2=m.png", "several frames")]:
        with pytest.raises(InputError, match="--key-matte") as err:
            parse_keys([spec], "--key-matte")
        assert words in str(err.value)
    with pytest.raises(InputError, match="--key-matte '1=b.png': frame 1 is given twice"):
        parse_keys(["1=a.png", "1=b.png"], "--key-matte")


# ------------------------------------------------------------------ bad partial keys: refused, nothing written


def test_a_matte_without_a_key_is_refused_naming_its_frame(shot):
    folder, _ = shot
    write_matte_files(folder, soft_alpha())
    out = folder / "out"
    code, message = colorize(
        folder, str(out / "o.####.exr"), "--key", f"1={folder / 'full.exr'}", "--key-matte", f"3={folder / 'matte.png'}"
    )
    assert code == 2 and "--key-matte for frame(s) 3: no --key at that frame" in message, message
    assert not out.exists()
    code, message = colorize(folder, str(out / "o.####.exr"), "--key", f"1={folder / 'full.exr'}", "--key-matte", "3")
    assert code == 2 and "--key-matte '3': expected FRAME=PATH" in message, message
    assert not out.exists()


def test_a_matte_of_another_size_is_refused_naming_both_files_and_sizes(shot):
    folder, _ = shot
    write_matte_files(folder, soft_alpha())
    write_image(folder / "small.png", soft_alpha()[::2, ::2, None], "uint8")
    out = folder / "out"
    keys = ("--key", f"1={folder / 'full.exr'}", "--key", f"3={folder / 'rgb.png'}")
    code, message = colorize(folder, str(out / "o.####.exr"), *keys, "--key-matte", f"3={folder / 'small.png'}")
    assert code == 3, message
    assert f"{folder / 'rgb.png'} with matte {folder / 'small.png'}: the matte is 32x24 but the key is 64x48" in message
    assert not out.exists()


def test_an_all_transparent_key_is_refused_naming_the_file(shot):
    folder, _ = shot
    write_matte_files(folder, np.zeros((H, W), np.float32))
    out = folder / "out"
    code, message = colorize(
        folder, str(out / "o.####.exr"), "--key", f"1={folder / 'full.exr'}", "--key", f"3={folder / 'key.png'}"
    )
    assert code == 2 and f"{folder / 'key.png'}: the matte (alpha) is 0 everywhere" in message, message
    assert not out.exists()
    keys = ("--key", f"1={folder / 'full.exr'}", "--key", f"3={folder / 'rgb.png'}")
    code, message = colorize(folder, str(out / "o.####.exr"), *keys, "--key-matte", f"3={folder / 'matte.png'}")
    assert code == 2 and f"with matte {folder / 'matte.png'}: the matte (alpha) is 0 everywhere" in message, message
    assert not out.exists()


def test_a_nan_alpha_is_refused_as_a_nan_colour_is(shot):
    """NaN in a key's alpha is bad pixels in a channel read (exit 3, as NaN in its colour), never clamped."""
    folder, gray = shot
    alpha = soft_alpha().copy()
    alpha[10, 20] = np.nan
    write_exr(folder / "nan.exr", rgba(gray * PAINT, alpha), ("R", "G", "B", "A"), pixel_type="float")
    out = folder / "out"
    code, message = colorize(
        folder, str(out / "o.####.exr"), "--key", f"1={folder / 'full.exr'}", "--key", f"3={folder / 'nan.exr'}"
    )
    assert (
        code == 3
        and f"{folder / 'nan.exr'}: matte (alpha) has 1 pixel(s) with NaN/Inf; first at (x=20, y=10)" in message
    ), message
    assert not out.exists()


def test_a_partial_key_outside_the_frames_is_refused_as_a_full_one_is(shot):
    folder, _ = shot
    write_matte_files(folder, soft_alpha())
    out = folder / "out"
    expected = "key frame(s) 9 are not among the frames to process"
    for partial in (
        ("--key", f"9={folder / 'key.png'}"),
        ("--key", f"9={folder / 'rgb.png'}", "--key-matte", f"9={folder / 'matte.png'}"),
    ):
        code, message = colorize(folder, str(out / "o.####.exr"), "--key", f"1={folder / 'full.exr'}", *partial)
        assert code == 2 and expected in message, message
        assert not out.exists()


def test_partial_keys_alone_need_regrade(shot):
    """A partial key is laid over what the full keys give; with none, and no --regrade (the plate's own
    colour), there is nothing to lay it over: refused before anything is written."""
    folder, _ = shot
    write_matte_files(folder, soft_alpha())
    out = folder / "out"
    code, message = colorize(folder, str(out / "o.####.exr"), "--key", f"3={folder / 'key.png'}")
    assert code == 2 and "a partial key colours only where it is painted: give a full key too, or --regrade" in message
    assert not out.exists()


def test_alpha_outside_0_1_is_clamped_with_a_note(shot):
    """A float alpha of 1.3 or -0.2 (a comp's overshoot) is clamped into [0, 1], and the user is told; the
    key is the key with the clamped alpha."""
    from colorprop.shot.preflight import check_key_matte

    folder, gray = shot
    alpha = soft_alpha().copy()
    alpha[:, 50:] = 1.3
    alpha[:, :8] = -0.2
    write_exr(
        folder / "over.exr",
        rgba(gray * PAINT * np.clip(alpha, 0, 1)[..., None], alpha),
        ("R", "G", "B", "A"),
        pixel_type="float",
    )
    key = load_key(folder / "over.exr", None)
    raw = key.matte
    notes: list[str] = []
    check_key(key, (W, H), convert.LINEAR_REC709, notes)
    assert notes == [f"{folder / 'over.exr'}: matte (alpha) values from -0.2 to 1.3 clamped to [0, 1]"]
    np.testing.assert_array_equal(key.matte, np.clip(raw, 0, 1))
    assert raw.max() == np.float32(1.3)  # the array read is not written to
    check_key_matte(key, notes)  # the preview's, and the server's for its in-band keys
    assert len(notes) == 1  # checked again: nothing more to say
    code, message = colorize(
        folder,
        str(folder / "out" / "o.####.exr"),
        "--key",
        f"1={folder / 'full.exr'}",
        "--key",
        f"3={folder / 'over.exr'}",
    )
    assert code == 0 and "colorprop: note: " + notes[0] in message, message


def test_in_band_keys_get_the_same_checks(tmp_path):
    """A KeyImage made in memory (the server's in-band keys) meets the same checks through ``check_key``."""
    from colorprop.errors import InputError, PixelError

    colour = np.full((H, W, 3), 0.5, np.float32)
    with pytest.raises(PixelError, match="key 3: the matte is 32x24 but the key is 64x48"):
        check_key(KeyImage(colour, None, "key 3", np.ones((24, 32), np.float32) * 0.5), (W, H), convert.LINEAR_REC709)
    with pytest.raises(InputError, match="key 3: the matte \\(alpha\\) is 0 everywhere"):
        check_key(KeyImage(colour, None, "key 3", np.zeros((H, W), np.float32)), (W, H), convert.LINEAR_REC709)
    read_only = np.full((H, W), 2.0, np.float32)
    read_only.flags.writeable = False  # a buffer received from a socket
    key = KeyImage(colour, None, "key 3", read_only)
    check_key(key, (W, H), convert.LINEAR_REC709)
    assert key.matte.max() == 1.0 and read_only.max() == 2.0


# ------------------------------------------------------------------ every command takes partial keys


def test_a_partial_key_colours_where_it_is_painted_and_nowhere_else(shot):
    """A full key at frame 1, a partial one at frame 3 painting the right side blue: at frame 3 the painted
    side is blue; pixels the painted region never reaches are bitwise the run without the partial key."""
    folder, _ = shot
    write_matte_files(folder, soft_alpha())
    full = ("--key", f"1={folder / 'full.exr'}")
    assert colorize(folder, str(folder / "base" / "o.####.exr"), *full)[0] == 0
    code, message = colorize(folder, str(folder / "alpha" / "o.####.exr"), *full, "--key", f"3={folder / 'key.png'}")
    assert code == 0, message
    base, layered = frames_of(str(folder / "base/o.####.exr")), frames_of(str(folder / "alpha/o.####.exr"))
    np.testing.assert_array_equal(layered[:, :, :6], base[:, :, :6])  # far left: never painted, never reached
    r, g, b = (layered[2, :, 44:, c].mean() for c in range(3))  # frame 3, where alpha = 1
    assert b > 1.5 * r, (r, g, b)
    assert base[2, :, 44:, 0].mean() > base[2, :, 44:, 2].mean()  # the full key's warm tint, without it


def test_a_key_matte_is_the_same_partial_key_as_the_keys_own_alpha(shot):
    """rgb.png + --key-matte matte.png colours the shot bitwise as key.png with that matte as its alpha."""
    folder, _ = shot
    write_matte_files(folder, soft_alpha())
    full = ("--key", f"1={folder / 'full.exr'}")
    code, message = colorize(folder, str(folder / "alpha" / "o.####.exr"), *full, "--key", f"3={folder / 'key.png'}")
    assert code == 0, message
    separate = ("--key", f"3={folder / 'rgb.png'}", "--key-matte", f"3={folder / 'matte.png'}")
    code, message = colorize(folder, str(folder / "matte" / "o.####.exr"), *full, *separate)
    assert code == 0, message
    np.testing.assert_array_equal(
        frames_of(str(folder / "matte/o.####.exr")), frames_of(str(folder / "alpha/o.####.exr"))
    )
    assert colorize(folder, str(folder / "base" / "o.####.exr"), *full)[0] == 0
    assert not np.array_equal(frames_of(str(folder / "base/o.####.exr")), frames_of(str(folder / "alpha/o.####.exr")))


def test_segments_are_cut_at_full_keys_only(shot, capsys):
    """--list-segments and --segment (the farm's plan) read which keys are partial: a partial key is no
    segment boundary, and --segment names a full key."""
    folder, _ = shot
    write_matte_files(folder, soft_alpha())
    args = ["colorize", "-i", str(folder / "shot" / "plate.####.exr"), "--key", f"1={folder / 'full.exr'}"]
    capsys.readouterr()
    for partial in (
        ["--key", f"3={folder / 'key.png'}"],
        ["--key", f"3={folder / 'rgb.png'}", "--key-matte", f"3={folder / 'matte.png'}"],
    ):
        assert main([*args, *partial, "--list-segments"]) == 0
        listed = json.loads(capsys.readouterr().out)
        assert listed["keys"] == "1" and [s["frames"] for s in listed["segments"]] == ["1-3"], listed
    code, message = run(
        *args,
        "--key",
        f"3={folder / 'key.png'}",
        "-o",
        str(folder / "o" / "o.####.exr"),
        "--segment",
        "3",
        "--server",
        "tcp://127.0.0.1:1",
    )
    assert code == 2 and "--segment 3: not a full key frame (full keys: 1)" in message, message
    assert not (folder / "o").exists()
    code, message = run(
        *args, "--key", f"3={folder / 'key.png'}", "-o", str(folder / "o" / "o.####.exr"), "--segment", "3"
    )
    assert code == 2 and "--segment 3: not a full key frame (full keys: 1)" in message, message
    assert not (folder / "o").exists()  # embedded too: refused before the output folder is made
    code, message = run(*args, "-o", str(folder / "o" / "o.####.exr"), "--direction", "forward")
    assert code == 2 and "--direction forward: needs --segment KEY, --state-dir DIR" in message, message
    assert not (folder / "o").exists()  # the same check as run_shot's (segments.check_segment_request)


def test_suggest_keys_takes_partial_keys_and_refuses_bad_ones(shot):
    folder, _ = shot
    write_matte_files(folder, soft_alpha())
    write_image(folder / "small.png", soft_alpha()[::2, ::2, None], "uint8")
    args = (
        "suggest-keys",
        "-i",
        str(folder / "shot" / "plate.####.exr"),
        "--key",
        f"1={folder / 'full.exr'}",
        "--method",
        "flow",
        "--count",
        "1",
    )
    code, message = run(*args, "--key", f"3={folder / 'rgb.png'}", "--key-matte", f"3={folder / 'matte.png'}")
    assert code == 0, message
    code, message = run(*args, "--key", f"3={folder / 'rgb.png'}", "--key-matte", f"3={folder / 'small.png'}")
    assert code == 3 and "the matte is 32x24 but the key is 64x48" in message, message


def test_preview_shows_a_partial_keys_matte_as_a_checkerboard(shot):
    """`preview --key`: a row of the keys, a partial key's colour laid by its matte over the checkerboard a
    viewer shows behind transparency; a full key is its colour alone."""
    folder, _ = shot
    write_matte_files(folder, soft_alpha())
    plates = str(folder / "shot" / "plate.####.exr")
    assert run("preview", "-i", plates, "-o", str(folder / "plain.png"))[0] == 0
    code, message = run(
        "preview",
        "-i",
        plates,
        "--key",
        f"1={folder / 'full.exr'}",
        "--key",
        f"3={folder / 'key.png'}",
        "-o",
        str(folder / "keys.png"),
    )
    assert code == 0, message
    plain, keys = sheet(folder / "plain.png"), sheet(folder / "keys.png")
    th, tw = plain.shape[0], plain.shape[1] // len(FRAMES)
    assert keys.shape == (2 * th, plain.shape[1], 3)
    np.testing.assert_array_equal(keys[:th], plain)
    full, partial = keys[th + 30 :, :tw].astype(int), keys[th + 30 :, tw : 2 * tw].astype(int)
    assert full[..., 0].mean() > full[..., 2].mean() + 20  # the full key's warm tint
    unpainted = partial[:, : int(tw * 14 / W)]  # alpha 0: the checkerboard, two grays
    assert set(np.unique(unpainted)) == {96, 160} and (unpainted[..., 0] == unpainted[..., 2]).all()
    painted = partial[:, int(tw * 42 / W) :]  # alpha 1: the key's blue
    assert painted[..., 2].min() > painted[..., 0].max() + 60
    blank = keys[th:, 2 * tw :]  # two keys, three frames: the row is padded
    assert blank.max() == 0


def test_help_names_key_matte_for_each_command_that_takes_keys():
    from colorprop.cli.main import build_parser
    from test_cli import parsers

    found = dict(parsers(build_parser()))
    for name in ("colorprop colorize", "colorprop suggest-keys", "colorprop preview"):
        text = " ".join(found[name].format_help().split())
        assert (
            "--key-matte FRAME=PATH" in text
            and "its alpha; without one, or with an opaque one, its first channel" in text
        ), name
