"""Regrade propagation: the key is a regrade of a colour plate's frame; the change is carried.

A known grade (a box of frame 1 re-tinted by a fixed Lab ab offset) must reappear on the moved box in
later frames, and every pixel outside it must keep the plate's own colour."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from colorprop.colour import convert
from colorprop.cli.main import main as cli_main
from colorprop.engine.engine import Engine, ShotOptions
from colorprop.io.exr import read_exr, write_exr
from colorprop.shot.frames import ArraySink, ArraySource, KeyImage
from colorprop.shot.pipeline import run_shot
from colorprop.errors import InputError

W, H = 96, 64
SPACE = "Linear Rec.709 (sRGB)"
SHIFT = 1.5  # px per frame, content slides left
BOX = (40, 20, 64, 44)  # x0, y0, x1, y1 in frame 1
TINT = np.float32([18.0, -12.0])  # Lab a, b added inside the box


def colour_plate(n: int, seed: int = 9) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    big = cv2.GaussianBlur(rng.random((H + 8, W + 40, 3)).astype(np.float32), (0, 0), 4)
    big = (big - big.min()) / (big.max() - big.min()) * 0.6 + 0.2
    return [
        cv2.warpAffine(
            big, np.float32([[1, 0, 4 + i * SHIFT], [0, 1, 4]]), (W, H), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        )
        for i in range(n)
    ]


def regrade(frame: np.ndarray) -> np.ndarray:
    lab = convert.linear_rec709_to_lab(frame)
    x0, y0, x1, y1 = BOX
    lab[y0:y1, x0:x1, 1:] += TINT
    return convert.lab_to_linear_rec709(lab).astype(np.float32)


def box_mask(i: int, grow: int) -> np.ndarray:
    """The box in frame index i (moved by i*SHIFT), grown (or shrunk, grow < 0) by ``grow`` px."""
    x0, y0, x1, y1 = BOX
    dx = i * SHIFT
    xs = np.arange(W)[None, :]
    ys = np.arange(H)[:, None]
    return (xs >= x0 - dx - grow) & (xs < x1 - dx + grow) & (ys >= y0 - grow) & (ys < y1 + grow)


@pytest.fixture()
def shot(tmp_path: Path):
    n = 8
    frames = colour_plate(n)
    for i, f in enumerate(frames, start=1):
        write_exr(
            tmp_path / f"plate.{i:04d}.exr",
            f,
            ("R", "G", "B"),
            pixel_type="float",
            extra_metadata={"oiio:ColorSpace": SPACE},
        )
    write_exr(
        tmp_path / "key.exr",
        regrade(frames[0]),
        ("R", "G", "B"),
        pixel_type="float",
        extra_metadata={"oiio:ColorSpace": SPACE},
    )
    return tmp_path, frames


@pytest.mark.parametrize("method", ["flow", "full"])
def test_regrade_carries_the_change_and_keeps_the_plate_elsewhere(shot, method):
    folder, frames = shot
    out = str(folder / "out" / "r.####.exr")
    assert (
        cli_main(
            [
                "colorize",
                "--progress",
                "none",
                "--input",
                str(folder / "plate.####.exr"),
                "--key",
                f"1={folder / 'key.exr'}",
                "--output",
                out,
                "--frames",
                "1-8",
                "--method",
                method,
                "--regrade",
                "--pixel-type",
                "float",
            ]
        )
        == 0
    )
    for i in range(1, 8):
        res = read_exr(out.replace("####", f"{i + 1:04d}"))
        rgb = np.dstack([res.channel(c) for c in "RGB"])
        lab, plate_lab = convert.linear_rec709_to_lab(rgb), convert.linear_rec709_to_lab(frames[i])
        np.testing.assert_allclose(convert.luminance(rgb), convert.luminance(frames[i]), rtol=1e-4, atol=1e-5)
        delta = lab[..., 1:] - plate_lab[..., 1:]
        inside = box_mask(i, -3)
        assert np.abs(delta[inside] - TINT).mean() < 1.5, f"frame {i + 1}: tint not carried"
        assert np.abs(delta[inside] - TINT).max() < 6.0
        outside = ~box_mask(i, 4)
        np.testing.assert_allclose(
            rgb[outside], frames[i][outside], atol=1e-4, err_msg=f"frame {i + 1}: colour outside the regrade changed"
        )
        assert np.mean(np.all(rgb[outside] == frames[i][outside], axis=-1)) > 0.95  # untouched: the plate's pixels


def test_regrade_between_two_keys_and_untouched_key(shot):
    """Two keys, the second an unchanged plate frame: the tint fades out towards it; nothing else moves."""
    _, frames = shot
    keys = {1: KeyImage(regrade(frames[0]), SPACE), 8: KeyImage(frames[7], SPACE)}
    sink = ArraySink()
    run_shot(
        Engine(None, "test"),
        ArraySource({i + 1: f for i, f in enumerate(frames)}, colorspace=SPACE),
        keys,
        ShotOptions(method="flow", regrade=True),
        sink,
    )
    np.testing.assert_array_equal(sink.results[8].rgb, frames[7])
    for i in range(1, 7):
        outside = ~box_mask(i, 4)
        np.testing.assert_allclose(sink.results[i + 1].rgb[outside], frames[i][outside], atol=1e-4)
    d2 = convert.linear_rec709_to_lab(sink.results[2].rgb)[..., 1:] - convert.linear_rec709_to_lab(frames[1])[..., 1:]
    assert np.abs(d2[box_mask(1, -3)] - TINT).mean() < 3.0  # near the regraded key: its change


def test_regrade_needs_a_colour_plate(shot):
    _, frames = shot
    gray = {i + 1: convert.luminance(f)[..., None] for i, f in enumerate(frames)}
    with pytest.raises(InputError, match="colour plate"):
        run_shot(
            Engine(None, "test"),
            ArraySource(gray, channels=("Y",), colorspace=SPACE),
            {1: KeyImage(regrade(frames[0]), SPACE)},
            ShotOptions(method="flow", regrade=True),
            ArraySink(),
        )
