"""CLI conventions (--version, help and defaults for every option, required options marked, -i/-o,
--working-width clamped with a note) and the contact sheets of `colorprop preview` and `colorprop example`."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
from pathlib import Path

import numpy as np
import OpenImageIO as oiio
import pytest

from colorprop import __version__
from colorprop.cli.main import build_parser, main
from colorprop.io.exr import read_exr

from test_preflight import FRAMES, H, W, good_shot


def run(*args: str) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, err.getvalue()


def parsers(parser: argparse.ArgumentParser, name: str = "colorprop"):
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from parsers(sub, f"{name} {sub_name}")


def test_version(capsys):
    assert main(["--version"]) == 0 and capsys.readouterr().out == f"colorprop {__version__}\n"


def test_every_option_of_every_command_has_help_that_shows_its_default():
    found = list(parsers(build_parser()))
    assert {"colorprop colorize", "colorprop preview", "colorprop data fetch", "colorprop serve"} <= {
        n for n, _ in found
    }
    for name, parser in found:
        formatter = parser._get_formatter()
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
                continue
            where = f"{name} {'/'.join(action.option_strings) or action.dest}"
            assert action.help, f"{where}: no help text"
            if action.option_strings and action.default not in (None, False):
                shown = formatter._expand_help(action)
                assert "default" in shown and str(action.default) in shown, f"{where}: default not shown: {shown!r}"


def test_required_options_are_marked_required():
    colorize = dict(parsers(build_parser()))["colorprop colorize"]
    usage = " ".join(colorize.format_usage().split())
    assert " -i INPUT --key FRAME=PATH (-o PATTERN | --list-segments) " in usage, usage
    code, message = run("colorize", "-i", "p.####.exr", "--key", "1=k.exr")
    assert code == 2 and "one of the arguments -o/--output --list-segments is required" in message


def test_short_options_and_a_working_width_above_the_plate_clamped_with_a_note(tmp_path):
    s = good_shot(tmp_path / "shot")
    common = [
        "colorize",
        "-i",
        s.input,
        "--key",
        f"1={s.keys[1]}",
        "--method",
        "flow",
        "--progress",
        "none",
        "--weights",
        str(tmp_path / "nw"),
    ]
    code, message = run(*common, "-o", str(tmp_path / "wide" / "o.####.exr"), "--working-width", "4096")
    assert code == 0 and f"note: --working-width 4096 is above the plate width {W}" in message, message
    code, message = run(*common, "--output", str(tmp_path / "default" / "o.####.exr"))
    assert code == 0 and "note:" not in message
    for f in FRAMES:
        np.testing.assert_array_equal(
            read_exr(tmp_path / "wide" / f"o.{f:04d}.exr").pixels,
            read_exr(tmp_path / "default" / f"o.{f:04d}.exr").pixels,
        )


@pytest.mark.parametrize(
    ("option", "value", "words"),
    [
        ("--frames", "0-99999999999999999999", "100000000000000000000 frames; at most 100000 in one shot"),
        ("--frames", "99999999999999999999", "frame 99999999999999999999 is outside -999999999..999999999"),
        (
            "--output",
            "o.%099999999d.exr",
            "--output: pattern 'o.%099999999d.exr': the frame token '%099999999d' pads "
            "frame numbers to 99999999 digits; at most 16",
        ),
    ],
)
def test_absurd_numbers_are_bad_input_saying_what_was_read(tmp_path, option, value, words):
    s = good_shot(tmp_path / "shot")
    args = {"--frames": "1-4", "--output": str(tmp_path / "o.####.exr")}
    args[option] = value
    code, message = run(
        "colorize",
        "-i",
        s.input,
        "--key",
        f"1={s.keys[1]}",
        "--method",
        "flow",
        "--progress",
        "none",
        "--weights",
        str(tmp_path / "nw"),
        *[a for kv in args.items() for a in kv],
    )
    assert code == 2 and words in message and "Traceback" not in message, message


def test_a_plate_frame_missing_mid_sequence_is_bad_input_unless_gaps_are_allowed(tmp_path):
    """Without --frames, a hole in the plate sequence on disk is an error listing it (Nuke and Deadline treat
    a hole as one), not a gap the colour is silently carried across; --allow-gaps keeps that bridging."""
    s = good_shot(tmp_path / "shot")
    (s.folder / "plate.0003.exr").unlink()
    common = [
        "colorize",
        "-i",
        s.input,
        "--key",
        f"1={s.keys[1]}",
        "--method",
        "flow",
        "--progress",
        "none",
        "--weights",
        str(tmp_path / "nw"),
    ]
    code, message = run(*common, "-o", str(tmp_path / "strict" / "o.####.exr"))
    assert code == 2 and "frame(s) 3 missing between 1 and 4" in message and "--allow-gaps" in message, message
    assert not (tmp_path / "strict").exists()
    code, message = run(*common, "-o", str(tmp_path / "bridged" / "o.####.exr"), "--allow-gaps")
    assert code == 0, message
    assert sorted(p.name for p in (tmp_path / "bridged").iterdir()) == ["o.0001.exr", "o.0002.exr", "o.0004.exr"]
    code, message = run("suggest-keys", "-i", s.input, "--key", f"1={s.keys[1]}", "--method", "flow")
    assert code == 2 and "frame(s) 3 missing" in message


def test_a_pattern_with_the_wrong_padding_says_what_padding_is_on_disk(tmp_path):
    s = good_shot(tmp_path / "shot")
    code, message = run(
        "colorize",
        "-i",
        str(s.folder / "plate.###.exr"),
        "--key",
        f"1={s.keys[1]}",
        "--method",
        "flow",
        "--progress",
        "none",
        "-o",
        str(tmp_path / "o.####.exr"),
    )
    assert code == 2, message
    assert (
        "matches no file for frames 1, 2, 3, 4; the files of that name are padded to 4 digits (plate.0001.exr "
        "... plate.0004.exr): use 'plate.####.exr'"
    ) in message, message
    code, message = run(
        "colorize",
        "-i",
        str(s.folder / "plate.#####.exr"),
        "--key",
        f"1={s.keys[1]}",
        "--method",
        "flow",
        "--progress",
        "none",
        "-o",
        str(tmp_path / "o.####.exr"),
    )
    assert code == 2 and "plate.#####.exr: matches no file; the files of that name are padded to 4 digits" in message


def test_suggest_keys_from_a_confidence_output_ranks_its_frames_without_the_plates(tmp_path, capsys):
    """`suggest-keys --from 'out.####.exr'` reads the matte a `colorize --confidence` run wrote: the same
    suggestions as computing the shot again (the matte is stored as half floats: errors within 1e-3), and it
    needs neither the plates nor the key files (they are deleted here), so nothing is computed again."""
    from shotkit import background, with_object, write_plate

    frames, _ = with_object(background(12), {i: (20 + 3 * i, 16, 44 + 3 * i, 40) for i in range(5, 9)})
    plate, key_args = write_plate(tmp_path / "shot", frames, keys=[1])
    out = str(tmp_path / "out" / "c.####.exr")
    assert (
        run("colorize", "-i", plate, *key_args, "-o", out, "--method", "flow", "--confidence", "--progress", "none")[0]
        == 0
    )
    capsys.readouterr()
    assert main(["suggest-keys", "-i", plate, *key_args, "--method", "flow", "--count", "3", "--json"]) == 0
    computed = json.loads(capsys.readouterr().out)
    for path in (tmp_path / "shot").iterdir():
        path.unlink()
    assert main(["suggest-keys", "--from", out, "--key", "1=gone.exr", "--count", "3", "--json"]) == 0
    stored = json.loads(capsys.readouterr().out)
    assert stored["from"] == out and stored["keys"] == [1]
    assert [s["frame"] for s in stored["suggestions"]] == [s["frame"] for s in computed["suggestions"]]
    for a, b in zip(stored["frames"], computed["frames"]):
        assert a["frame"] == b["frame"] and abs(a["expected_error"] - b["expected_error"]) <= 1e-3, (a, b)
    code, message = run("suggest-keys", "--from", str(tmp_path / "shot" / "plate.####.exr"))
    assert code == 2 and "matches no file" in message
    code, message = run("suggest-keys", "--key", "1=k.exr")
    assert code == 2 and "needs --input and --key (or --from" in message


def test_suggest_keys_from_an_output_without_the_matte_names_the_file(tmp_path):
    s = good_shot(tmp_path / "shot")
    assert (
        run(
            "colorize",
            "-i",
            s.input,
            "--key",
            f"1={s.keys[1]}",
            "-o",
            s.output,
            "--method",
            "flow",
            "--progress",
            "none",
            "--weights",
            str(tmp_path / "nw"),
        )[0]
        == 0
    )
    code, message = run("suggest-keys", "--from", s.output)
    assert code == 3 and "out.0001.exr: no colorprop.confidence channel; colour the shot with" in message, message


def test_preview_writes_the_format_its_extension_names_and_its_help_says_so(tmp_path):
    s = good_shot(tmp_path / "shot")
    assert run("preview", "-i", s.input, "-o", str(tmp_path / "sheet.exr"))[0] == 0
    assert read_exr(tmp_path / "sheet.exr").pixels.shape == (THUMB_H, 240 * len(FRAMES), 3)
    preview = dict(parsers(build_parser()))["colorprop preview"]
    help_text = " ".join(preview.format_help().split())
    assert "PNG, JPEG, TIFF, or any other OpenImageIO writes (an .exr holds" in help_text, help_text


def sheet(path: Path) -> np.ndarray:
    buf = oiio.ImageBuf(str(path))
    return buf.get_pixels(oiio.UINT8).reshape(buf.spec().height, buf.spec().width, buf.spec().nchannels)


THUMB_H = int(round(H * 240 / W))


def test_preview_draws_the_sequence_and_its_confidence_matte(tmp_path):
    s = good_shot(tmp_path / "shot")
    assert (
        run(
            "colorize",
            "-i",
            s.input,
            "--key",
            f"1={s.keys[1]}",
            "-o",
            s.output,
            "--method",
            "flow",
            "--confidence",
            "--progress",
            "none",
            "--weights",
            str(tmp_path / "nw"),
        )[0]
        == 0
    )
    assert run("preview", "-i", s.output, "-o", str(tmp_path / "plain.png"))[0] == 0
    assert run("preview", "-i", s.output, "--confidence", "-o", str(tmp_path / "matte.png"))[0] == 0
    plain, matte = sheet(tmp_path / "plain.png"), sheet(tmp_path / "matte.png")
    assert plain.shape == (THUMB_H, 240 * len(FRAMES), 3) and matte.shape == (2 * THUMB_H, 240 * len(FRAMES), 3)
    np.testing.assert_array_equal(matte[:THUMB_H], plain)  # the same image row
    image = plain[30:, :].astype(float)  # below the frame numbers: the key's warm tint, R > G > B
    assert image[..., 0].mean() > image[..., 1].mean() + 20 > image[..., 2].mean() + 40
    first_matte = matte[THUMB_H + 30 :, :240]  # frame 1 is the key: confidence 1, white
    assert first_matte.min() >= 250
    confidence = read_exr(tmp_path / "shot" / "out.0004.exr").channel("colorprop.confidence")
    assert abs(matte[THUMB_H + 30 :, 720:].mean() / 255 - confidence[6:].mean()) < 0.05


def test_preview_errors(tmp_path):
    s = good_shot(tmp_path / "shot")
    code, message = run("preview", "-i", s.input, "--confidence", "-o", str(tmp_path / "s.png"))
    assert code == 3 and "no channel 'colorprop.confidence'" in message
    code, message = run("preview", "-i", s.input, "--frames", "1-9", "-o", str(tmp_path / "s.png"))
    assert code == 2 and "missing frame(s) 5" in message
    code, message = run("preview", "-i", s.input, "-o", str(tmp_path / "s.not-an-image-format"))
    assert code == 4 and "cannot write image" in message
    assert not list(tmp_path.glob("s.*"))


@pytest.mark.slow
def test_colorprop_example_writes_frames_and_a_contact_sheet(tmp_path):
    """The README's first command, with the flow method (the learned one is exercised elsewhere)."""
    code, message = run("example", "-o", str(tmp_path / "ex"), "--method", "flow")
    assert code == 0, message
    frames = sorted((tmp_path / "ex").glob("colour.*.exr"))
    assert len(frames) == 24 and read_exr(frames[-1]).channels[:3] == ("R", "G", "B")
    picture = sheet(tmp_path / "ex" / "contact_sheet.png")
    assert picture.shape == (2 * 135, 6 * 240, 3)  # plate row and result row, six frames of 480x270
    plate_row, result_row = picture[30:135].astype(float), picture[165:].astype(float)
    assert np.abs(plate_row[..., 0] - plate_row[..., 2]).mean() < 1  # the plate is gray
    assert np.abs(result_row[..., 0] - result_row[..., 2]).mean() > 5  # the result is not
