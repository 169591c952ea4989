"""Keys in any format OpenImageIO reads, colour management through $OCIO, the output's colour space
stamped, non-EXR outputs refused. Real files written and read by OpenImageIO; $OCIO runs in a
subprocess (the config is read once per process)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import OpenImageIO as oiio
import pytest

from colorprop.cli.main import main
from colorprop.colour import convert
from colorprop.io.exr import read_exr, write_exr

W, H, FRAMES = 64, 48, (1, 2, 3)
TINT = np.array([1.0, 0.55, 0.25], np.float32)


def linear_plates(folder: Path, encode=lambda x: x, channels=("R", "G", "B")) -> np.ndarray:
    """Three gray plates (a moving pattern, linear 0.05..0.75 before ``encode``); returns frame 1 (linear)."""
    folder.mkdir(parents=True, exist_ok=True)
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    first = None
    for f in FRAMES:
        v = 0.4 + 0.35 * np.sin((x + 2 * f) / 6.0) * np.cos(y / 7.0)
        rgb = np.repeat(v[..., None], 3, axis=2).astype(np.float32)
        first = rgb if first is None else first
        write_exr(folder / f"plate.{f:04d}.exr", encode(rgb), channels, pixel_type="float")
    return first


def write_image(path: Path, pixels: np.ndarray, fmt: str, bits: int | None = None, **attributes) -> None:
    out = oiio.ImageOutput.create(str(path))
    spec = oiio.ImageSpec(pixels.shape[1], pixels.shape[0], pixels.shape[2], oiio.TypeDesc(fmt))
    if bits:
        spec.attribute("oiio:BitsPerSample", bits)
    for name, value in attributes.items():
        spec.attribute(name, value)
    assert out.open(str(path), spec) and out.write_image(np.ascontiguousarray(pixels, np.float32)) and out.close()


def colorize(tmp_path: Path, key: Path, out: str, *extra: str) -> int:
    return main(
        [
            "colorize",
            "-i",
            str(tmp_path / "shot" / "plate.####.exr"),
            "--key",
            f"1={key}",
            "-o",
            out,
            "--method",
            "flow",
            "--progress",
            "none",
            "--weights",
            str(tmp_path / "no-weights"),
            *extra,
        ]
    )


def outputs(pattern: str) -> np.ndarray:
    return np.stack([read_exr(pattern.replace("####", f"{f:04d}")).rgb() for f in FRAMES])


@pytest.fixture
def shot(tmp_path):
    """Plates, the key as a linear float EXR, and the output coloured from it (the reference)."""
    key_linear = linear_plates(tmp_path / "shot") * TINT
    write_exr(tmp_path / "key.exr", key_linear, ("R", "G", "B"), pixel_type="float")
    assert colorize(tmp_path, tmp_path / "key.exr", str(tmp_path / "ref" / "o.####.exr")) == 0
    return tmp_path, key_linear, outputs(str(tmp_path / "ref" / "o.####.exr"))


# (file name, OIIO type, bits, how far the result may be from the float EXR key's: the file's quantisation)
INTEGER_KEYS = [
    ("key.png", "uint8", None, 0.012),
    ("key.tif", "uint16", None, 0.002),
    ("key.dpx", "uint16", 10, 0.004),
    ("key.jpg", "uint8", None, 0.03),
]


@pytest.mark.parametrize("name, fmt, bits, tolerance", INTEGER_KEYS, ids=[k[0] for k in INTEGER_KEYS])
def test_integer_key_is_read_as_display_srgb(shot, name, fmt, bits, tolerance):
    """A key painted in a paint app (sRGB-encoded 8/10/16-bit) colours the shot as the linear EXR key does;
    read as linear instead (what --key-colorspace lin_rec709 says), the colour is far off."""
    tmp_path, key_linear, reference = shot
    extra = {"Compression": "jpeg:100"} if name.endswith(".jpg") else {}
    write_image(tmp_path / name, convert.from_linear_rec709(key_linear, convert.SRGB_DISPLAY), fmt, bits, **extra)
    assert oiio.ImageInput.open(str(tmp_path / name)).format_name() != "openexr"
    assert colorize(tmp_path, tmp_path / name, str(tmp_path / "k" / "o.####.exr")) == 0
    error = np.abs(outputs(str(tmp_path / "k" / "o.####.exr")) - reference).max()
    assert error < tolerance, error
    assert (
        colorize(tmp_path, tmp_path / name, str(tmp_path / "wrong" / "o.####.exr"), "--key-colorspace", "lin_rec709")
        == 0
    )
    assert np.abs(outputs(str(tmp_path / "wrong" / "o.####.exr")) - reference).max() > 5 * tolerance


def test_float_key_in_another_format_is_in_the_plates_space(shot):
    tmp_path, key_linear, reference = shot
    write_image(tmp_path / "key.tif", key_linear, "float")
    assert colorize(tmp_path, tmp_path / "key.tif", str(tmp_path / "k" / "o.####.exr")) == 0
    assert np.abs(outputs(str(tmp_path / "k" / "o.####.exr")) - reference).max() < 2e-3


def test_unreadable_key_image_names_the_file(shot, capsys):
    tmp_path = shot[0]
    (tmp_path / "key.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    assert colorize(tmp_path, tmp_path / "key.png", str(tmp_path / "k" / "o.####.exr")) == 3
    assert f"cannot read image {tmp_path / 'key.png'}" in capsys.readouterr().err
    assert not (tmp_path / "k").exists()


@pytest.mark.parametrize("name", ["o.####.png", "o.####.jpg", "o.####.tif"])
def test_non_exr_output_is_refused_before_anything_is_written(shot, capsys, name):
    tmp_path = shot[0]
    assert colorize(tmp_path, tmp_path / "key.exr", str(tmp_path / "k" / name)) == 2
    assert "OpenEXR sequences only" in capsys.readouterr().err
    assert not (tmp_path / "k").exists()


def test_output_is_stamped_with_the_space_written_and_keeps_other_metadata(tmp_path):
    linear_plates(tmp_path / "shot")
    for f in FRAMES:  # plates tagged as linear Rec.709 by their header, with a studio attribute
        path = tmp_path / "shot" / f"plate.{f:04d}.exr"
        plate = read_exr(path)
        write_exr(
            path,
            plate.pixels,
            plate.channels,
            template=plate,
            extra_metadata={"oiio:ColorSpace": "lin_rec709_scene", "studio/shot": "sh010"},
        )
    write_exr(tmp_path / "key.exr", read_exr(tmp_path / "shot" / "plate.0001.exr").rgb() * TINT, ("R", "G", "B"))
    assert colorize(tmp_path, tmp_path / "key.exr", str(tmp_path / "o" / "o.####.exr"), "--colorspace", "ACEScg") == 0
    assert colorize(tmp_path, tmp_path / "key.exr", str(tmp_path / "m" / "o.####.exr")) == 0
    for f in FRAMES:
        stamped = read_exr(tmp_path / "o" / f"o.{f:04d}.exr")
        assert convert.check_colorspace(stamped.colorspace) == "ACEScg"
        assert stamped.metadata["studio/shot"] == "sh010"
        kept = read_exr(tmp_path / "m" / f"o.{f:04d}.exr")
        assert convert.check_colorspace(kept.colorspace) == convert.LINEAR_REC709


STUDIO_CONFIG = """ocio_profile_version: 2

roles:
  default: Studio Linear
  scene_linear: Studio Linear
  data: Raw

file_rules:
  - !<Rule> {name: Default, colorspace: default}

displays:
  Studio Monitor:
    - !<View> {name: Gamma 2, colorspace: Studio Gamma 2}

colorspaces:
  - !<ColorSpace>
    name: Studio Linear
    aliases: [lin_rec709]

  - !<ColorSpace>
    name: Raw
    isdata: true

  - !<ColorSpace>
    name: Studio Gamma 2
    to_scene_reference: !<ExponentTransform> {value: 2}

  - !<ColorSpace>
    name: Studio sRGB
    aliases: [srgb_tx]
    to_scene_reference: !<ExponentWithLinearTransform> {gamma: 2.4, offset: 0.055}
"""


def run_cli(args: list[str], ocio: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "OCIO"} | ({"OCIO": ocio} if ocio else {})
    return subprocess.run(
        [sys.executable, "-m", "colorprop", *args], env=env, capture_output=True, text=True, timeout=300
    )


def test_ocio_config_from_the_environment_is_used(tmp_path):
    """Plates and key encoded in a space only the studio's config knows ('Studio Gamma 2': linear =
    encoded²): with $OCIO the result, decoded, is the result of the same shot in linear; without
    $OCIO the name is unknown; the output is stamped with the studio's name."""
    config = tmp_path / "studio.ocio"
    config.write_text(STUDIO_CONFIG)
    key_linear = linear_plates(tmp_path / "lin") * TINT
    write_exr(tmp_path / "key_lin.exr", key_linear, ("R", "G", "B"), pixel_type="float")
    linear_plates(tmp_path / "g2", encode=np.sqrt)
    write_exr(tmp_path / "key_g2.exr", np.sqrt(key_linear), ("R", "G", "B"), pixel_type="float")
    common = [
        "colorize",
        "--method",
        "flow",
        "--progress",
        "none",
        "--pixel-type",
        "float",
        "--weights",
        str(tmp_path / "no-weights"),
    ]
    lin = run_cli(
        common
        + [
            "-i",
            str(tmp_path / "lin" / "plate.####.exr"),
            "--key",
            f"1={tmp_path / 'key_lin.exr'}",
            "-o",
            str(tmp_path / "out_lin" / "o.####.exr"),
        ],
        None,
    )
    assert lin.returncode == 0, lin.stderr
    g2_args = common + [
        "-i",
        str(tmp_path / "g2" / "plate.####.exr"),
        "--key",
        f"1={tmp_path / 'key_g2.exr'}",
        "-o",
        str(tmp_path / "out_g2" / "o.####.exr"),
        "--colorspace",
        "Studio Gamma 2",
    ]
    without = run_cli(g2_args, None)
    assert without.returncode == 2 and "unknown colour space 'Studio Gamma 2'" in without.stderr
    studio = run_cli(g2_args, str(config))
    assert studio.returncode == 0, studio.stderr
    decoded = outputs(str(tmp_path / "out_g2" / "o.####.exr")) ** 2
    np.testing.assert_allclose(decoded, outputs(str(tmp_path / "out_lin" / "o.####.exr")), atol=2e-3)
    assert read_exr(tmp_path / "out_g2" / "o.0001.exr").colorspace == "Studio Gamma 2"


def test_plates_without_a_colour_space_are_the_studio_configs_linear_rec709(tmp_path):
    """A plate with no colour-space metadata and no --colorspace is linear Rec.709 by whatever name $OCIO gives it
    ('Studio Linear', alias lin_rec709), not the built-in config's spelling the studio's config does not know."""
    config = tmp_path / "studio.ocio"
    config.write_text(STUDIO_CONFIG)
    key = linear_plates(tmp_path / "shot") * TINT
    assert read_exr(tmp_path / "shot" / "plate.0001.exr").colorspace is None
    write_exr(tmp_path / "key.exr", key, ("R", "G", "B"), pixel_type="float")
    common = [
        "colorize",
        "-i",
        str(tmp_path / "shot" / "plate.####.exr"),
        "--key",
        f"1={tmp_path / 'key.exr'}",
        "--method",
        "flow",
        "--progress",
        "none",
        "--pixel-type",
        "float",
        "--weights",
        str(tmp_path / "nw"),
    ]
    builtin = run_cli(common + ["-o", str(tmp_path / "builtin" / "o.####.exr")], None)
    assert builtin.returncode == 0, builtin.stderr
    studio = run_cli(common + ["-o", str(tmp_path / "studio" / "o.####.exr")], str(config))
    assert studio.returncode == 0, studio.stderr
    # (OpenImageIO writes oiio:ColorSpace as the EXR's interop id, lin_rec709_scene; "colorspace" keeps the name)
    assert read_exr(tmp_path / "studio" / "o.0001.exr").metadata["colorspace"] == "Studio Linear"
    np.testing.assert_allclose(
        outputs(str(tmp_path / "studio" / "o.####.exr")), outputs(str(tmp_path / "builtin" / "o.####.exr")), atol=1e-5
    )


def test_a_missing_ocio_config_is_an_error_not_a_silent_fallback(tmp_path):
    linear_plates(tmp_path / "shot")
    write_exr(tmp_path / "key.exr", np.full((H, W, 3), 0.3, np.float32), ("R", "G", "B"))
    done = run_cli(
        [
            "colorize",
            "-i",
            str(tmp_path / "shot" / "plate.####.exr"),
            "--key",
            f"1={tmp_path / 'key.exr'}",
            "-o",
            str(tmp_path / "o" / "o.####.exr"),
            "--method",
            "flow",
            "--weights",
            str(tmp_path / "nw"),
        ],
        str(tmp_path / "no-such-config.ocio"),
    )
    assert done.returncode == 2 and "$OCIO=" in done.stderr and "no-such-config.ocio" in done.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("shared_paths", [False, True], ids=["in-band", "shared-paths"])
@pytest.mark.parametrize("key_space", [None, "srgb_tx"], ids=["default", "--key-colorspace"])
def test_png_key_through_a_server_colours_as_embedded(shot, engine, caplog, shared_paths, key_space):
    """The server reads a PNG key in shared-path mode as the embedded CLI does; a --key-colorspace goes in-band
    (frames sent to the server: in-band; none: shared paths)."""
    import logging

    from serverkit import ThreadServer

    tmp_path, key_linear, _ = shot
    write_image(tmp_path / "key.png", convert.from_linear_rec709(key_linear, convert.SRGB_DISPLAY), "uint8")
    extra = ["--key-colorspace", key_space] if key_space else []
    assert colorize(tmp_path, tmp_path / "key.png", str(tmp_path / "embedded" / "o.####.exr"), *extra) == 0
    srv = ThreadServer(engine, allowed_roots=(str(tmp_path),) if shared_paths else ())
    try:
        with caplog.at_level(logging.INFO, logger="colorprop_server.requests"):
            assert (
                colorize(
                    tmp_path,
                    tmp_path / "key.png",
                    str(tmp_path / "remote" / "o.####.exr"),
                    *extra,
                    "--server",
                    srv.address,
                )
                == 0
            )
    finally:
        srv.stop()
    requests = [r.colorprop_fields for r in caplog.records if r.name == "colorprop_server.requests"]
    frames_sent = sum(1 for r in requests if r.get("type") == "frame")
    assert any(r.get("type") == "open_shot" for r in requests)
    if shared_paths and key_space is None:
        assert frames_sent == 0
    else:
        assert frames_sent >= len(FRAMES)
    np.testing.assert_array_equal(
        outputs(str(tmp_path / "remote" / "o.####.exr")), outputs(str(tmp_path / "embedded" / "o.####.exr"))
    )
