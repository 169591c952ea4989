"""Frame ranges, frame patterns and the no-overwrite guard."""

from __future__ import annotations

from pathlib import Path

import pytest

from colorprop.errors import InputError, SequenceError
from colorprop.io.sequence import FramePattern, check_no_overwrite, parse_frames


@pytest.mark.parametrize(
    ("spec", "frames"),
    [
        ("7", [7]),
        ("1-5", [1, 2, 3, 4, 5]),
        ("1-10x3", [1, 4, 7, 10]),
        ("1-3,20-22", [1, 2, 3, 20, 21, 22]),
        (" 1 - 3 , 5 ", [1, 2, 3, 5]),
        ("1-3,2-4", [1, 2, 3, 4]),  # overlaps are listed once
        ("-2-1", [-2, -1, 0, 1]),
        ("1001-1100", list(range(1001, 1101))),
    ],
)
def test_parse_frames(spec, frames):
    assert parse_frames(spec) == frames


@pytest.mark.parametrize("spec", ["", "abc", "1-", "5-1", "1-10x0", "1-10x", "1,,2", "1.5", "1-10y2"])
def test_parse_frames_rejects_junk_naming_the_spec(spec):
    with pytest.raises(InputError) as info:
        parse_frames(spec)
    assert repr(spec) in str(info.value)


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("0-99999999999999999999", "100000000000000000000 frames; at most 100000 in one shot"),  # was an OverflowError
        ("99999999999999999999", "frame 99999999999999999999 is outside -999999999..999999999"),
        ("-1000000000", "frame -1000000000 is outside"),
        ("999999999-1000000000", "frame 1000000000 is outside"),
        ("1-" + "9" * 5000, "(5000 characters) is outside"),  # int() of 5000 digits is refused by Python itself
    ],
)
def test_frame_numbers_beyond_a_billion_are_bad_input_not_an_overflow(spec, words):
    with pytest.raises(InputError) as info:
        parse_frames(spec)
    assert words in str(info.value)


def test_the_largest_frame_numbers_are_accepted():
    assert parse_frames("999999990-999999999x9") == [999999990, 999999999]
    assert parse_frames("-999999999") == [-999999999]
    assert parse_frames("1-10x99999999999999999999") == [1]  # a step past the last frame: the first alone


@pytest.mark.parametrize(
    ("pattern", "words"),
    [
        ("a.%099999999d.exr", "the frame token '%099999999d' pads frame numbers to 99999999 digits; at most 16"),
        ("a.%17d.exr", "pads frame numbers to 17 digits"),
        ("a." + "#" * 20 + ".exr", "pads frame numbers to 20 digits"),
        ("a.%0" + "7" * 5000 + "d.exr", "(5000 characters) digits; at most 16"),
    ],
)
def test_a_frame_token_padded_beyond_16_digits_is_refused_saying_the_padding_it_read(pattern, words):
    with pytest.raises(SequenceError) as info:
        FramePattern(pattern).path(1)  # the pre-flight refuses it before any path is made, with this message
    assert words in str(info.value)


@pytest.mark.parametrize(
    ("pattern", "frame", "name"),
    [
        ("sh010.####.exr", 7, "sh010.0007.exr"),
        ("sh010.##.exr", 1234, "sh010.1234.exr"),  # padding is a minimum
        ("sh010.@@@.exr", 7, "sh010.007.exr"),
        ("sh010.%04d.exr", 42, "sh010.0042.exr"),
        ("sh010.%d.exr", 42, "sh010.42.exr"),
        ("sh010_#.exr", 5, "sh010_5.exr"),
        ("sh010.####.exr", -3, "sh010.-0003.exr"),
    ],
)
def test_pattern_path(tmp_path, pattern, frame, name):
    fp = FramePattern(str(tmp_path / pattern))
    assert fp.is_pattern
    assert fp.path(frame) == tmp_path / name
    assert isinstance(fp.path(frame), Path)


@pytest.mark.parametrize(
    ("pattern", "padding"),
    [("a.####.exr", 4), ("a.@@.exr", 2), ("a.%05d.exr", 5), ("a.%d.exr", 1), ("a.%016d.exr", 16)],
)
def test_pattern_padding(pattern, padding):
    assert FramePattern(pattern).padding == padding


@pytest.mark.parametrize("pattern", ["plate.exr", "plates/sh010.0001.exr", "a%s.exr"])
def test_pattern_without_frame_token_raises(pattern):
    with pytest.raises(SequenceError, match="no frame token"):
        FramePattern(pattern)


def test_existing_frames_scans_only_matching_files(tmp_path):
    for name in [
        "sh010.0001.exr",
        "sh010.0003.exr",
        "sh010.0010.exr",
        "sh010.12345.exr",
        "sh010.12.exr",  # too few digits for ####
        "sh010.0002.exr.tmp",
        "sh020.0004.exr",
        ".sh010.0005.tmp-1.exr",
        "sh010.abcd.exr",
    ]:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sh010.0006.exr").mkdir()  # a folder is not a frame
    assert FramePattern(str(tmp_path / "sh010.####.exr")).existing_frames() == [1, 3, 10, 12345]
    assert FramePattern(str(tmp_path / "sh010.%d.exr")).existing_frames() == [1, 3, 10, 12, 12345]


def test_existing_frames_of_missing_folder_is_empty(tmp_path):
    assert FramePattern(str(tmp_path / "nope" / "a.####.exr")).existing_frames() == []


def test_check_no_overwrite_detects_same_files(tmp_path):
    inp = FramePattern(str(tmp_path / "sh.####.exr"))
    same_via_dots = FramePattern(str(tmp_path / "sub" / ".." / "sh.%04d.exr"))
    with pytest.raises(SequenceError, match="frame 1"):
        check_no_overwrite(inp, same_via_dots, [1, 2])


def test_check_no_overwrite_detects_symlinked_folder(tmp_path):
    (tmp_path / "plates").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "plates")
    with pytest.raises(SequenceError):
        check_no_overwrite(
            FramePattern(str(tmp_path / "plates" / "a.####.exr")),
            FramePattern(str(tmp_path / "link" / "a.####.exr")),
            [5],
        )


def test_check_no_overwrite_detects_cross_frame_collision(tmp_path):
    # Output frame 123 ("sh123.exr") is input frame 23 ("sh1" + "23" + ".exr").
    with pytest.raises(SequenceError, match="frame 123 .* input frame 23"):
        check_no_overwrite(FramePattern(str(tmp_path / "sh1#.exr")), FramePattern(str(tmp_path / "sh#.exr")), [23, 123])


def test_check_no_overwrite_accepts_distinct_outputs(tmp_path):
    check_no_overwrite(
        FramePattern(str(tmp_path / "in.####.exr")), FramePattern(str(tmp_path / "out.####.exr")), range(1, 50)
    )
