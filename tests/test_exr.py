"""EXR read/write with OpenImageIO: windows, channel types, metadata pass-through, bad files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import OpenImageIO as oiio
import pytest

from colorprop.errors import ExrReadError, ExrWriteError, PixelError
from colorprop.io.exr import Plate, as_stored, check_finite, read_exr, write_exr

# Values exactly representable in half, so half round trips compare exactly.
_HALF_EXACT = np.array([0.0, 0.25, 1.0, 4.0, 65504.0 / 16, -0.125, 1.5, 0.0009765625], np.float32)


def _pixels(height: int, width: int, nchannels: int, seed: int = 0) -> np.ndarray:
    """HxWxC float32 drawn from half-exact values (some above 1, some negative)."""
    rng = np.random.default_rng(seed)
    return rng.choice(_HALF_EXACT, size=(height, width, nchannels)).astype(np.float32)


def _write_with_oiio(
    path: Path, pixels: np.ndarray, channels, types, *, window=None, attribs=(), compression="piz"
) -> Path:
    """Write an EXR straight through OIIO (independent of colorprop.io.exr), as a plate from a DCC would be."""
    height, width, nchannels = pixels.shape
    spec = oiio.ImageSpec(width, height, nchannels, oiio.TypeDesc(types[0]))
    spec.channelnames = tuple(channels)
    spec.channelformats = tuple(oiio.TypeDesc(t) for t in types)
    if window is not None:
        spec.x, spec.y, spec.full_x, spec.full_y, spec.full_width, spec.full_height = window
    spec.attribute("compression", compression)
    for name, type_name, value in attribs:
        spec.attribute(name, oiio.TypeDesc(type_name), value)
    out = oiio.ImageOutput.create(str(path))
    assert out.open(str(path), spec), out.geterror()
    assert out.write_image(pixels), out.geterror()
    assert out.close()
    return path


_ATTRIBS = (
    ("colorspace", "string", "ACEScg"),
    ("nuke/node_hash", "string", "abc123"),
    ("DateTime", "string", "2024:01:02 03:04:05"),  # stored as the EXR capDate attribute
    ("framesPerSecond", "rational", (24, 1)),
    ("worldToCamera", "matrix", tuple(float(i) for i in range(16))),
    ("smpte:TimeCode", "timecode", (0x01020304, 0)),  # stored as the EXR timeCode attribute
    ("shot/frame", "int", 1001),
    ("lensFocal", "float", 35.5),
    ("screenWindowCenter", "float2", (0.25, -0.5)),
)


@pytest.fixture
def plate_path(tmp_path) -> Path:
    """RGBA half + Z float + mask.a half + colorprop.confidence float, data window inside the display window."""
    pixels = _pixels(24, 40, 6, seed=1)
    channels = ("R", "G", "B", "A", "Z", "mask.a")
    types = ("half", "half", "half", "half", "float", "half")
    pixels[..., 4] = np.linspace(0.1, 1e5, 24 * 40, dtype=np.float32).reshape(24, 40)  # float-only values
    return _write_with_oiio(
        tmp_path / "plate.1001.exr", pixels, channels, types, window=(13, 7, -4, -2, 64, 48), attribs=_ATTRIBS
    )


def test_read_plate(plate_path):
    plate = read_exr(plate_path)
    assert plate.channels == ("R", "G", "B", "A", "Z", "mask.a")
    assert plate.pixel_types == ("half", "half", "half", "half", "float", "half")
    assert plate.pixels.shape == (24, 40, 6) and plate.pixels.dtype == np.float32
    info = plate.spec_info
    assert (info.x, info.y, info.width, info.height) == (13, 7, 40, 24)
    assert (info.full_x, info.full_y, info.full_width, info.full_height) == (-4, -2, 64, 48)
    assert not info.data_window_is_display_window
    assert plate.metadata["nuke/node_hash"] == "abc123"
    assert plate.metadata["compression"] == "piz"
    assert plate.colorspace == "ACEScg"
    assert plate.path == plate_path
    assert plate.rgb().shape == (24, 40, 3)
    np.testing.assert_array_equal(plate.rgb(), plate.pixels[..., :3])  # RGBA drops A
    np.testing.assert_array_equal(plate.channel("Z"), plate.pixels[..., 4])


def test_round_trip_with_template_preserves_everything(plate_path, tmp_path):
    plate = read_exr(plate_path)
    # Replace colour, keep Z and mask.a, add a new float confidence channel.
    rgb = _pixels(24, 40, 3, seed=7)
    confidence = np.full((24, 40, 1), 0.123456789, np.float32)
    pixels = np.concatenate([rgb, plate.pixels[..., 3:], confidence], axis=-1)
    channels = plate.channels + ("colorprop.confidence",)
    out = write_exr(tmp_path / "out.1001.exr", pixels, channels, template=plate, pixel_type="float")

    again = read_exr(out)
    assert set(again.channels) == set(channels)
    types = dict(zip(again.channels, again.pixel_types))
    assert types == {
        "R": "half",
        "G": "half",
        "B": "half",
        "A": "half",
        "Z": "float",
        "mask.a": "half",
        "colorprop.confidence": "float",
    }  # template types kept, new channel gets pixel_type
    assert again.spec_info == plate.spec_info
    for name in channels:
        np.testing.assert_array_equal(again.channel(name), pixels[..., channels.index(name)], err_msg=name)
    assert again.channel("colorprop.confidence")[0, 0] == np.float32(0.123456789)  # not squeezed to half
    for name, _, _ in _ATTRIBS:
        assert name in again.metadata, name
        assert again.metadata[name] == plate.metadata[name], name
        assert again.metadata_types[name] == plate.metadata_types[name], name
    assert again.metadata["compression"] == "piz"  # compression kept from the template
    assert again.colorspace == "ACEScg"


def test_write_without_template_defaults(tmp_path):
    pixels = _pixels(5, 9, 3)
    out = write_exr(tmp_path / "new.exr", pixels, ("R", "G", "B"), extra_metadata={"colorspace": "ACEScg", "n": 3})
    plate = read_exr(out)
    assert plate.pixel_types == ("half",) * 3
    assert plate.metadata["compression"] == "zip"
    assert plate.metadata["n"] == 3
    assert plate.colorspace == "ACEScg"
    info = plate.spec_info
    assert info.data_window_is_display_window and (info.x, info.y, info.width, info.height) == (0, 0, 9, 5)
    np.testing.assert_array_equal(plate.pixels, pixels)


def test_float_precision_survives(tmp_path):
    pixels = np.full((3, 4, 3), 1.0 + 2.0**-20, np.float32)  # not representable in half
    plate = read_exr(write_exr(tmp_path / "f.exr", pixels, "RGB", pixel_type="float"))
    assert plate.pixel_types == ("float",) * 3
    np.testing.assert_array_equal(plate.pixels, pixels)


def test_extra_metadata_overrides_template(plate_path, tmp_path):
    plate = read_exr(plate_path)
    out = write_exr(
        tmp_path / "o.exr",
        plate.pixels,
        plate.channels,
        template=plate,
        extra_metadata={"colorspace": "Linear Rec.709 (sRGB)", "colorprop/version": "0.1.0"},
    )
    again = read_exr(out)
    assert again.colorspace == "Linear Rec.709 (sRGB)"
    assert again.metadata["colorprop/version"] == "0.1.0"


def test_oiio_colorspace_attribute_wins(tmp_path):
    path = _write_with_oiio(
        tmp_path / "cs.exr",
        _pixels(2, 2, 3),
        "RGB",
        ("half",) * 3,
        attribs=[("oiio:ColorSpace", "string", "ACEScg"), ("colorspace", "string", "Raw")],
    )
    # OIIO stores oiio:ColorSpace as an interop id and reports it back under that name.
    assert read_exr(path).colorspace in {"ACEScg", "lin_ap1_scene"}


def test_new_oiio_colorspace_replaces_the_templates(tmp_path):
    first = read_exr(
        write_exr(tmp_path / "c1.exr", _pixels(2, 2, 3), "RGB", extra_metadata={"oiio:ColorSpace": "ACEScg"})
    )
    assert first.colorspace in {"ACEScg", "lin_ap1_scene"}
    second = read_exr(
        write_exr(
            tmp_path / "c2.exr",
            first.pixels,
            first.channels,
            template=first,
            extra_metadata={"oiio:ColorSpace": "lin_rec709"},
        )
    )
    assert second.colorspace in {"lin_rec709", "lin_rec709_scene", "Linear Rec.709 (sRGB)"}


def test_no_colorspace_is_none(tmp_path):
    assert read_exr(write_exr(tmp_path / "n.exr", _pixels(2, 2, 3), "RGB")).colorspace is None


def test_y_only_plate_replicates(tmp_path):
    y = _pixels(6, 8, 1)
    plate = read_exr(_write_with_oiio(tmp_path / "y.exr", y, ("Y",), ("half",)))
    assert plate.channels == ("Y",)
    rgb = plate.rgb()
    assert rgb.shape == (6, 8, 3)
    for c in range(3):
        np.testing.assert_array_equal(rgb[..., c], y[..., 0])


def test_single_other_channel_replicates_and_missing_channel_names_file(tmp_path):
    plate = read_exr(write_exr(tmp_path / "l.exr", _pixels(3, 3, 1), ("lum",)))
    assert plate.rgb().shape == (3, 3, 3)
    with pytest.raises(PixelError, match="l.exr.*'R'"):
        plate.channel("R")


def test_rgb_of_plate_without_colour_channels_raises(tmp_path):
    plate = read_exr(write_exr(tmp_path / "uv.exr", _pixels(3, 3, 2), ("u", "v")))
    with pytest.raises(PixelError, match="uv.exr"):
        plate.rgb()


def test_write_replaces_atomically_and_leaves_no_temp(tmp_path):
    target = tmp_path / "a.exr"
    write_exr(target, _pixels(4, 4, 3, seed=1), "RGB")
    new = _pixels(4, 4, 3, seed=2)
    write_exr(target, new, "RGB")
    np.testing.assert_array_equal(read_exr(target).pixels, new)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.exr"]


def test_write_failure_removes_temp(tmp_path):
    # The rename fails (the target is a non-empty folder) after the temp file was written.
    target = tmp_path / "b.exr"
    target.mkdir()
    (target / "keep").write_bytes(b"x")
    with pytest.raises(ExrWriteError) as info:
        write_exr(target, _pixels(4, 4, 3), "RGB")
    assert info.value.path == str(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.exr"]
    assert (target / "keep").exists()


def test_bad_pixel_type_raises_and_keeps_old_file(tmp_path):
    target = tmp_path / "b.exr"
    old = _pixels(4, 4, 3, seed=3)
    write_exr(target, old, "RGB")
    with pytest.raises(ExrWriteError, match="pixel_type"):
        write_exr(target, _pixels(4, 4, 3), ("R", "G", "B"), pixel_type="double-ish")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.exr"]
    np.testing.assert_array_equal(read_exr(target).pixels, old)


def test_write_into_missing_folder_raises(tmp_path):
    with pytest.raises(ExrWriteError, match="nofolder"):
        write_exr(tmp_path / "nofolder" / "c.exr", _pixels(2, 2, 3), "RGB")


def test_write_shape_mismatches_raise(plate_path, tmp_path):
    with pytest.raises(ExrWriteError, match="3 channels"):
        write_exr(tmp_path / "d.exr", _pixels(2, 2, 4), "RGB")
    with pytest.raises(ExrWriteError, match="data window"):
        write_exr(tmp_path / "e.exr", _pixels(2, 2, 3), "RGB", template=read_exr(plate_path))
    assert not any(p.name.endswith(".exr") and p.name.startswith(".") for p in tmp_path.iterdir())


def test_missing_file(tmp_path):
    with pytest.raises(ExrReadError, match="no such file") as info:
        read_exr(tmp_path / "missing.exr")
    assert info.value.path == str(tmp_path / "missing.exr")


def test_zero_size_file(tmp_path):
    path = tmp_path / "empty.exr"
    path.write_bytes(b"")
    with pytest.raises(ExrReadError, match="empty"):
        read_exr(path)


def test_garbage_file(tmp_path):
    path = tmp_path / "garbage.exr"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(ExrReadError, match="garbage.exr"):
        read_exr(path)


def test_other_image_format_named_exr_is_rejected(tmp_path):
    png = tmp_path / "real.png"
    buf = oiio.ImageBuf(np.ones((4, 4, 3), np.float32))
    assert buf.write(str(png))
    disguised = tmp_path / "disguised.exr"
    disguised.write_bytes(png.read_bytes())
    with pytest.raises(ExrReadError, match="disguised.exr"):
        read_exr(disguised)


@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_file_is_an_error_not_zeros(tmp_path, keep):
    full = write_exr(tmp_path / "full.exr", _pixels(64, 64, 3) + 1.0, "RGB", pixel_type="float")
    data = full.read_bytes()
    truncated = tmp_path / "truncated.exr"
    truncated.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ExrReadError, match="truncated.exr"):
        read_exr(truncated)


def test_truncated_header_is_an_error(tmp_path):
    data = write_exr(tmp_path / "full.exr", _pixels(8, 8, 3), "RGB").read_bytes()
    path = tmp_path / "head.exr"
    path.write_bytes(data[:40])
    with pytest.raises(ExrReadError, match="head.exr"):
        read_exr(path)


def test_check_finite_passes_clean_pixels():
    check_finite(np.ones((3, 3, 3), np.float32) * 1e30, "x.exr", "plate")


def test_check_finite_names_file_count_and_first_pixel():
    pixels = np.zeros((4, 5, 3), np.float32)
    pixels[1, 3, 0] = np.nan
    pixels[1, 3, 2] = np.inf  # same pixel: counted once
    pixels[2, 0, 1] = -np.inf
    with pytest.raises(PixelError) as info:
        check_finite(pixels, "/shots/sh010.1001.exr", "plate")
    message = str(info.value)
    assert "/shots/sh010.1001.exr" in message and "plate" in message
    assert "2 pixel(s)" in message
    assert "x=3, y=1" in message


def test_check_finite_on_single_channel():
    pixels = np.zeros((2, 2), np.float32)
    pixels[1, 0] = np.nan
    with pytest.raises(PixelError, match="x=0, y=1"):
        check_finite(pixels, "k.exr", "key")


def test_plate_is_a_dataclass_with_contract_fields(plate_path):
    plate = read_exr(plate_path)
    assert isinstance(plate, Plate)
    for name in ("pixels", "channels", "spec_info", "pixel_types", "metadata", "path"):
        assert hasattr(plate, name)


def test_write_never_follows_a_link_planted_at_a_temp_name(tmp_path):
    """A link planted where the writer's temp file goes (the old predictable `.<stem>.tmp-<pid>.exr`,
    or any name) is never written through: the victim keeps its bytes, the output is a real file."""
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    out = tmp_path / "shot"
    out.mkdir()
    (out / f".o.0006.tmp-{os.getpid()}.exr").symlink_to(victim)
    write_exr(out / "o.0006.exr", _pixels(4, 4, 3), "RGB")
    assert victim.read_bytes() == b"precious"
    assert (out / "o.0006.exr").is_file() and not (out / "o.0006.exr").is_symlink()
    # A link at the final name is replaced by the new file, not written through either.
    (out / "o.0007.exr").symlink_to(victim)
    write_exr(out / "o.0007.exr", _pixels(4, 4, 3), "RGB")
    assert victim.read_bytes() == b"precious" and not (out / "o.0007.exr").is_symlink()


def test_temp_names_are_unguessable_and_recognised(tmp_path):
    from colorprop.io.temps import is_temp_of, temp_name

    target = tmp_path / "o.0001.exr"
    names = {temp_name(target) for _ in range(50)}
    assert len(names) == 50
    assert all(is_temp_of(n, target) == os.getpid() for n in names)
    assert is_temp_of(".o.0001.tmp-123.exr", target) == 123  # older writers' names
    for other in ("o.0001.exr", ".o.0002.tmp-1.exr", ".o.0001.tmp-x.exr", ".o.0001.tmp-1-zzzzzzzz.exr"):
        assert is_temp_of(other, target) is None


def test_remove_stale_temps_removes_dead_writers_files_only(tmp_path):
    from colorprop.io.temps import remove_stale_temps, temp_name

    target = tmp_path / "o.0001.exr"
    outside = tmp_path / "outside.exr"
    outside.write_bytes(b"keep")
    stale = [".o.0001.tmp-999999.exr", ".o.0001.tmp-999998-0123abcd.exr"]
    for name in stale:
        (tmp_path / name).write_bytes(b"half")
    (tmp_path / ".o.0001.tmp-999997.exr").symlink_to(outside)  # a planted link: removed, target kept
    own = temp_name(target)  # a write in flight in this process
    (tmp_path / own).write_bytes(b"mine")
    (tmp_path / ".o.0002.tmp-999999.exr").write_bytes(b"other frame")
    removed = remove_stale_temps([target, tmp_path / "o.0003.exr"])
    assert sorted(removed) == sorted(stale + [".o.0001.tmp-999997.exr"])
    assert outside.read_bytes() == b"keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([own, ".o.0002.tmp-999999.exr", "outside.exr"])


def _every_rounding_case() -> np.ndarray:
    """float32 values at and between every pair of neighbouring finite halves (ties round to even), just
    beside the ties, in the subnormal range, beyond half's largest value (to inf) and below its smallest."""
    halves = np.arange(0, 0x7C00, dtype=np.uint16).view(np.float16).astype(np.float32)  # +0 .. 65504
    mids = (halves[:-1] + halves[1:]) / 2  # exact in float32: the ties
    beside = np.concatenate([np.nextafter(mids, np.float32(0)), np.nextafter(mids, np.float32(np.inf))])
    extremes = np.array([65519.99, 65520.0, 1e6, 3e38, 1e-8, 2.9e-8, 3e-8, 1e-30, 0.0], np.float32)
    values = np.concatenate([halves, mids, beside, extremes])
    return np.concatenate([values, -values])


def test_half_written_and_read_bit_for_bit_as_openimageio_converts(tmp_path):
    # write_exr and read_exr convert between float32 and half themselves (a vectorised kernel, not
    # OpenImageIO's): every rounding must be OpenImageIO's own, to the bit.
    values = _every_rounding_case()
    width = 1024
    values = np.pad(values, (0, -len(values) % (width * 2)), constant_values=1.0)
    pixels = values.reshape(-1, width, 2)
    ours = write_exr(tmp_path / "ours.exr", pixels, ("R", "A"))
    spec = oiio.ImageSpec(width, pixels.shape[0], 2, oiio.HALF)
    spec.channelnames = ("R", "A")
    reference = oiio.ImageOutput.create(str(tmp_path / "oiio.exr"))
    assert reference.open(str(tmp_path / "oiio.exr"), spec) and reference.write_image(pixels) and reference.close()

    def stored(path, fmt):
        inp = oiio.ImageInput.open(str(path))
        data = inp.read_image(0, 0, 0, 2, fmt)
        inp.close()
        return data

    assert np.array_equal(stored(ours, "half").view(np.uint16), stored(tmp_path / "oiio.exr", "half").view(np.uint16))
    plate = read_exr(ours)
    assert plate.pixels.dtype == np.float32 and plate.pixels.flags.c_contiguous
    assert np.array_equal(plate.pixels.view(np.uint32), stored(ours, "float").view(np.uint32))
    with np.errstate(over="ignore"):  # the values beyond half's range are meant to become inf
        as_half = pixels.astype(np.float16).astype(np.float32)
    assert np.array_equal(plate.pixels.view(np.uint32), as_half.view(np.uint32))
    # the colour a run carries to the next frame is rounded as the file holds it
    assert np.array_equal(as_stored(pixels, np.float16).view(np.uint32), plate.pixels.view(np.uint32))
    assert as_stored(pixels, np.float32) is pixels


def test_mixed_channel_types_keep_float_precision(tmp_path):
    # only an all-half frame is converted to half before OpenImageIO sees it
    precise = np.full((4, 4, 2), 1.0 + 2.0**-20, np.float32)  # not a half: a rounding would show
    spec = oiio.ImageSpec(4, 4, 2, oiio.FLOAT)
    spec.channelnames, spec.channelformats = ("R", "A"), (oiio.TypeDesc("float"), oiio.TypeDesc("half"))
    out = oiio.ImageOutput.create(str(tmp_path / "mixed.exr"))
    assert out.open(str(tmp_path / "mixed.exr"), spec) and out.write_image(precise) and out.close()
    mixed = read_exr(tmp_path / "mixed.exr")
    assert mixed.pixel_types == ("float", "half") and np.all(mixed.channel("R") == precise[..., 0])
    written = read_exr(write_exr(tmp_path / "out.exr", precise, ("R", "A"), template=mixed))
    assert written.pixel_types == ("float", "half")
    assert np.all(written.channel("R") == precise[..., 0]) and np.all(written.channel("A") == 1.0)


def test_zip_output_is_deflated_at_the_faster_level_and_reads_back_bit_for_bit(tmp_path):
    # ZIP_LEVEL (2) where the output's compression is zip or zips without a level; a level asked for is kept
    y, x = np.mgrid[0:96, 0:128].astype(np.float32)
    gradient = (x / 128 + y / 96)[..., None] * np.array([1.0, 0.5, 0.25, 1.0], np.float32)
    noise = np.random.default_rng(5).standard_normal(gradient.shape).astype(np.float32)
    pixels = (gradient + 0.001 * noise).astype(np.float16)  # a grain the deflate levels compress apart

    def by_oiio(name: str, compression: str) -> int:
        return _write_with_oiio(tmp_path / name, pixels, "RGBA", ("half",) * 4, compression=compression).stat().st_size

    assert by_oiio("two.exr", "zip:2") != by_oiio("four.exr", "zip")  # OpenImageIO's own default level is 4
    ours = write_exr(tmp_path / "ours.exr", pixels, ("R", "G", "B", "A"))
    assert ours.stat().st_size == (tmp_path / "two.exr").stat().st_size
    back = read_exr(ours)
    assert back.metadata["compression"] == "zip" and np.array_equal(back.pixels, pixels.astype(np.float32))
    template = read_exr(tmp_path / "four.exr")  # a zip plate: its outputs are zip at the faster level too
    again = write_exr(tmp_path / "again.exr", pixels, ("R", "G", "B", "A"), template=template)
    assert again.stat().st_size == ours.stat().st_size
    asked = write_exr(tmp_path / "asked.exr", pixels, ("R", "G", "B", "A"), extra_metadata={"compression": "zip:4"})
    assert asked.stat().st_size == (tmp_path / "four.exr").stat().st_size
    zips = write_exr(tmp_path / "zips.exr", pixels, ("R", "G", "B", "A"), extra_metadata={"compression": "zips"})
    assert zips.stat().st_size == by_oiio("zips2.exr", "zips:2") and read_exr(zips).metadata["compression"] == "zips"
