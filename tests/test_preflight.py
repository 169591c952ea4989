"""The one pre-flight (core/shot/preflight.py) on every path that colours a sequence.

One table of bad inputs (``CASES``) runs against each path (``PATHS``): the embedded CLI, a farm task
(the CLI with ``--segment``, as the OpenJD task runs it), ``colorize --server`` in-band and in
shared-path mode against real server processes on 127.0.0.1, and the server itself opening a
shared-path job for a client. Each must fail with the same exit code (the server: a failed job)
and message, and leave every file on disk exactly as it was.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import subprocess
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from colorprop.cli.main import main
from colorprop.io.exr import read_exr, write_exr
from colorprop_client import client as C

from serverkit import spawn, stop_proc, wait_hello

pytestmark = pytest.mark.usefixtures("watchdog")

W, H, FRAMES = 64, 48, (1, 2, 3, 4)


@dataclass
class Shot:
    folder: Path
    input: str
    keys: dict[int, str]
    output: str
    frames: str = "1-4"
    colorspace: str | None = None
    extra: list[str] = field(default_factory=list)


def write_plates(folder: Path, w: int = W, h: int = H, frames=FRAMES, channels=("R", "G", "B", "A")) -> None:
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    for f in frames:
        v = 0.4 + 0.3 * np.sin((x + 3 * f) / 6.0) * np.cos(y / 5.0)
        planes = [v, v, v, np.full_like(v, 0.5)] + [np.full_like(v, 7.0)] * (len(channels) - 4)
        write_exr(folder / f"plate.{f:04d}.exr", np.stack(planes[: len(channels)], -1), channels)


def write_key(path: Path, w: int = W, h: int = H) -> None:
    plate = read_exr(path.parent / "plate.0001.exr") if (w, h) == (W, H) else None
    rgb = plate.rgb() if plate is not None else np.full((h, w, 3), 0.5, np.float32)
    write_exr(path, rgb * np.array([1.0, 0.6, 0.3], np.float32), ("R", "G", "B"), pixel_type="float")


def good_shot(folder: Path) -> Shot:
    folder.mkdir(parents=True)
    write_plates(folder)
    write_key(folder / "key.0001.exr")
    return Shot(folder, str(folder / "plate.####.exr"), {1: str(folder / "key.0001.exr")}, str(folder / "out.####.exr"))


# ------------------------------------------------------------------ the table of bad inputs
# name -> (make the bad shot from a good one, exit code, words the message must hold)


def key_is_an_output_frame(s: Shot) -> None:  # a key named like output frame 1
    shutil.move(s.keys[1], s.folder / "out.0001.exr")
    s.keys = {1: str(s.folder / "out.0001.exr")}


def output_is_the_input(s: Shot) -> None:
    s.output = str(s.folder / "plate.%04d.exr")


def absurd_frame_range(s: Shot) -> None:
    s.frames = "1-2000000000"


def plate_frame_missing(s: Shot) -> None:
    (s.folder / "plate.0003.exr").unlink()


def plate_frame_is_a_folder(s: Shot) -> None:
    (s.folder / "plate.0003.exr").unlink()
    (s.folder / "plate.0003.exr").mkdir()


def plates_8x8(s: Shot) -> None:
    for f in FRAMES:
        (s.folder / f"plate.{f:04d}.exr").unlink()
    write_plates(s.folder, 8, 8)
    write_key(Path(s.keys[1]), 8, 8)


def plates_1px_high(s: Shot) -> None:
    for f in FRAMES:
        (s.folder / f"plate.{f:04d}.exr").unlink()
    write_plates(s.folder, 64, 1)
    write_key(Path(s.keys[1]), 64, 1)


def plate_sizes_differ(s: Shot) -> None:
    write_plates(s.folder, W + 2, H, frames=(3,))


def key_of_another_size(s: Shot) -> None:
    write_key(Path(s.keys[1]), W // 2, H // 2)


def key_missing(s: Shot) -> None:
    Path(s.keys[1]).unlink()


def key_not_an_exr(s: Shot) -> None:
    Path(s.keys[1]).write_bytes(b"not an image at all" * 10)


def key_frame_outside_the_frames(s: Shot) -> None:
    s.frames = "2-4"


def unknown_colorspace(s: Shot) -> None:
    s.colorspace = "Rec.2020 (nonsense)"


def nan_in_a_read_channel(s: Shot) -> None:
    plate = read_exr(s.folder / "plate.0001.exr")
    pixels = plate.pixels.copy()
    pixels[5, 7, 1] = np.nan
    write_exr(s.folder / "plate.0001.exr", pixels, plate.channels, template=plate)


def with_a_byte_that_is_not_utf8(path: Path, attribute: str, value: str) -> None:
    """Rewrite the EXR at ``path`` with header attribute ``attribute`` = ``value``, then replace the first 'X' of
    that name or value in the file by the byte 0xff (the same length: the header stays well-formed)."""
    image = read_exr(path)
    write_exr(path, image.pixels, image.channels, template=image, pixel_type="float", extra_metadata={attribute: value})
    raw = path.read_bytes()
    spot = (attribute if "X" in attribute else value).encode()
    assert raw.count(spot) == 1
    path.write_bytes(raw.replace(spot, spot.replace(b"X", b"\xff", 1)))


def plate_software_not_utf8(s: Shot) -> None:  # the reproduction: frames 1-2 were written, then bad_cast
    with_a_byte_that_is_not_utf8(s.folder / "plate.0003.exr", "Software", "paintXsoft 2.1")


def plate_attribute_name_not_utf8(s: Shot) -> None:  # was exit 4, blaming the output
    with_a_byte_that_is_not_utf8(s.folder / "plate.0002.exr", "studioXnotes", "fine")


def key_colorspace_not_utf8(s: Shot) -> None:  # was a TypeError from the colour-space lookup
    with_a_byte_that_is_not_utf8(Path(s.keys[1]), "colorspace", "ACEScgXX")


def output_folder_is_a_file(s: Shot) -> None:
    (s.folder / "not_a_folder").write_text("a file")
    s.output = str(s.folder / "not_a_folder" / "out.####.exr")


def output_pattern_without_frame_token(s: Shot) -> None:
    s.output = str(s.folder / "out.exr")


def output_as_png(s: Shot) -> None:
    s.output = str(s.folder / "out.####.png")


def output_frame_token_of_99999999_digits(s: Shot) -> None:
    s.output = str(s.folder / "out.%99999999d.exr")


CASES = {
    "key-is-an-output-frame": (key_is_an_output_frame, 2, "would overwrite the key"),
    "output-is-the-input": (output_is_the_input, 2, "which is input frame"),
    "absurd-frame-range": (absurd_frame_range, 2, "at most 100000"),
    "plate-frame-missing": (plate_frame_missing, 2, "missing frame(s) 3"),
    "plate-frame-is-a-folder": (plate_frame_is_a_folder, 2, "are folders, not EXR files"),
    "plates-8x8": (plates_8x8, 3, "at least 16 px on each side"),
    "plates-1px-high": (plates_1px_high, 3, "at least 16 px on each side"),
    "plate-sizes-differ": (plate_sizes_differ, 3, "plate.0003.exr: size 66x48 differs"),
    "key-of-another-size": (key_of_another_size, 3, "key is 32x24 but the plate is 64x48"),
    "key-missing": (key_missing, 3, "no such file"),
    "key-not-an-exr": (key_not_an_exr, 3, "key.0001.exr"),
    "key-frame-outside-the-frames": (key_frame_outside_the_frames, 2, "not among the frames"),
    "unknown-colorspace": (unknown_colorspace, 2, "unknown colour space"),
    "nan-in-a-read-channel": (nan_in_a_read_channel, 3, "NaN/Inf in channel G"),
    "plate-software-not-utf8": (
        plate_software_not_utf8,
        3,
        "plate.0003.exr: corrupt header: the value of attribute 'Software' is not valid UTF-8",
    ),
    "plate-attribute-name-not-utf8": (
        plate_attribute_name_not_utf8,
        3,
        "plate.0002.exr: corrupt header: attribute name 'studio\\xffnotes' is not valid",
    ),
    "key-colorspace-not-utf8": (
        key_colorspace_not_utf8,
        3,
        "key.0001.exr: corrupt header: the value of attribute 'colorspace' is not valid UTF-8",
    ),
    "output-folder-is-a-file": (output_folder_is_a_file, 4, "not_a_folder is not a folder (it is a file)"),
    "output-without-frame-token": (output_pattern_without_frame_token, 2, "no frame token"),
    "output-frame-token-99999999-digits": (output_frame_token_of_99999999_digits, 2, "digits"),
    "output-as-png": (output_as_png, 2, "OpenEXR sequences only"),
}
PATHS = ("embedded", "farm-task", "server-in-band", "server-shared-path", "server-job")
# A client of the server sends a list of frames, not a range: 2,000,000,000 frames cannot be sent.
NOT_EXPRESSIBLE = {("absurd-frame-range", "server-job")}


def folder_state(folder: Path) -> dict[str, str]:
    """Every entry under ``folder``: files by content hash, folders as such."""
    state = {}
    for p in sorted(folder.rglob("*")):
        state[str(p.relative_to(folder))] = "folder" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return state


@pytest.fixture(scope="module")
def servers(tmp_path_factory, free_port):
    """Two real server processes without networks: in-band only (no roots) and shared-path (roots = ``root``)."""
    root = tmp_path_factory.mktemp("allowed")
    inband, paths = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    procs = [
        spawn(["serve", "--bind", inband, "--log-level", "WARNING"]),
        spawn(["serve", "--bind", paths, "--allow-root", str(root), "--log-level", "WARNING"]),
    ]
    try:
        wait_hello(inband, procs[0])
        wait_hello(paths, procs[1])
        yield {"in-band": inband, "paths": paths, "root": root}
    finally:
        for proc in procs:
            stop_proc(proc)


def run_path(path: str, s: Shot, servers: dict, tmp_path: Path) -> tuple[int, str]:
    """(exit code, message) of the job on ``path``; the CLI paths run ``colorprop`` in this process (a farm
    task execs the same command), the server paths talk to the server processes."""
    if path == "server-job":
        frames = [int(f) for f in range(int(s.frames.split("-")[0]), int(s.frames.split("-")[1]) + 1)]
        options = {"method": "flow", **({"colorspace": s.colorspace} if s.colorspace else {})}
        with pytest.raises(C.ServerError) as err:
            C.colorize_paths(
                servers["paths"], s.input, s.output, frames, s.keys, options, timeout_s=5.0, job_timeout_s=60.0
            )
        return -1, str(err.value)
    args = [
        "colorize",
        "--input",
        s.input,
        "--output",
        s.output,
        "--frames",
        s.frames,
        "--method",
        "flow",
        "--progress",
        "none",
        "--weights",
        str(tmp_path / "no-weights"),
    ]
    args += [a for k, p in s.keys.items() for a in ("--key", f"{k}={p}")]
    args += ["--colorspace", s.colorspace] if s.colorspace else []
    if path == "farm-task":
        args += ["--segment", "1", "--progress", "lines"]
    elif path == "server-in-band":
        args += ["--server", servers["in-band"], "--timeout", "5"]
    elif path == "server-shared-path":
        args += ["--server", servers["paths"], "--timeout", "5"]
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        code = main(args)
    return code, stderr.getvalue()


@pytest.mark.parametrize("case, path", [(c, p) for c in CASES for p in PATHS if (c, p) not in NOT_EXPRESSIBLE])
def test_bad_input_fails_the_same_on_every_path_and_changes_nothing(case, path, servers, tmp_path):
    make_bad, code, words = CASES[case]
    s = good_shot(servers["root"] / f"{case}-{path}")
    make_bad(s)
    before = folder_state(s.folder)
    got, message = run_path(path, s, servers, tmp_path)
    assert words in message, message
    if path != "server-job":
        assert got == code, message
    assert folder_state(s.folder) == before, "the failed job changed files on disk"


def test_the_good_shot_passes_on_every_path(servers, tmp_path):
    """The table's base shot is good: each case fails because of its one change."""
    for path in PATHS:
        s = good_shot(servers["root"] / f"good-{path}")
        if path == "server-job":
            C.colorize_paths(servers["paths"], s.input, s.output, list(FRAMES), s.keys, {"method": "flow"})
        else:
            assert run_path(path, s, servers, tmp_path)[0] == 0
        assert [read_exr(s.folder / f"out.{f:04d}.exr").channels for f in FRAMES] == [("R", "G", "B", "A")] * 4


# ------------------------------------------------------------------ checks with their own set-up


def colorize(s: Shot, tmp_path: Path, *extra: str) -> tuple[int, str]:
    args = [
        "colorize",
        "--input",
        s.input,
        "--output",
        s.output,
        "--frames",
        s.frames,
        "--method",
        "flow",
        "--progress",
        "none",
        "--weights",
        str(tmp_path / "no-weights"),
        *extra,
    ]
    args += [a for k, p in s.keys.items() for a in ("--key", f"{k}={p}")]
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        code = main(args)
    return code, stderr.getvalue()


def test_an_infinite_pass_through_channel_passes_through_unchanged(tmp_path):
    """A depth pass with Z = +inf in the background is normal; only R, G, B are read, so it is not refused."""
    s = good_shot(tmp_path / "shot")
    for f in FRAMES:
        (s.folder / f"plate.{f:04d}.exr").unlink()
    write_plates(s.folder, channels=("R", "G", "B", "A", "Z"))
    for f in FRAMES:
        plate = read_exr(s.folder / f"plate.{f:04d}.exr")
        pixels = plate.pixels.copy()
        pixels[:, : W // 2, 4] = np.inf
        write_exr(s.folder / f"plate.{f:04d}.exr", pixels, plate.channels, template=plate, pixel_type="float")
    assert colorize(s, tmp_path)[0] == 0
    for f in FRAMES:
        out, plate = read_exr(s.folder / f"out.{f:04d}.exr"), read_exr(s.folder / f"plate.{f:04d}.exr")
        np.testing.assert_array_equal(out.channel("Z"), plate.channel("Z"))
        assert np.isinf(out.channel("Z")[:, : W // 2]).all() and np.isfinite(out.rgb()).all()


@pytest.mark.parametrize("stale", ["one-channel", "other-size"])
def test_skip_existing_recomputes_an_output_frame_of_the_wrong_size_or_channels(tmp_path, stale):
    s = good_shot(tmp_path / "shot")
    assert colorize(s, tmp_path)[0] == 0
    reference = {f: read_exr(s.folder / f"out.{f:04d}.exr").pixels for f in FRAMES}
    if stale == "one-channel":  # a stale gray frame under an output frame's name
        write_exr(s.folder / "out.0003.exr", np.full((H, W, 1), 0.5, np.float32), ("Y",))
    else:
        write_exr(s.folder / "out.0003.exr", np.full((H // 2, W, 4), 0.5, np.float32), ("R", "G", "B", "A"))
    code, message = colorize(s, tmp_path, "--skip-existing")
    assert code == 0 and "1 frame(s) written, 3 skipped" in message, message
    for f in FRAMES:
        np.testing.assert_array_equal(
            read_exr(s.folder / f"out.{f:04d}.exr").pixels, reference[f], err_msg=f"frame {f}"
        )


def test_output_under_a_regular_file_exits_4_with_the_cause(tmp_path):
    s = good_shot(tmp_path / "shot")
    (tmp_path / "plain").write_text("x")
    s.output = str(tmp_path / "plain" / "deeper" / "out.####.exr")
    code, message = colorize(s, tmp_path)
    assert code == 4 and "plain is not a folder (it is a file)" in message, message
    assert (tmp_path / "plain").read_text() == "x"


def read_only_folder(tmp_path: Path):
    """A folder on a read-only file system (a tmpfs mounted read-only when root may mount), else a folder
    without write permission (enough for a user that is not root)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return folder, lambda: folder.chmod(0o755)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"running as root and cannot mount a read-only tmpfs here: {done.stderr.decode().strip()}")
    return folder, lambda: subprocess.run(["umount", str(folder)], check=True)


@pytest.mark.parametrize("where", ["the-folder", "a-folder-to-create-in-it"])
def test_read_only_output_exits_4_naming_the_cause(tmp_path, where):
    s = good_shot(tmp_path / "shot")
    folder, restore = read_only_folder(tmp_path)
    try:
        s.output = str(folder / ("" if where == "the-folder" else "new") / "out.####.exr")
        code, message = colorize(s, tmp_path)
        assert code == 4, message
        assert ("read-only file system" if os.geteuid() == 0 else "no permission to write") in message, message
        assert list(folder.iterdir()) == []
    finally:
        restore()


def test_write_exr_reports_its_own_error_not_the_temp_cleanup(tmp_path):
    """The temp file's clean-up failing too (its folder is a file) must not replace the real error."""
    from colorprop.errors import ExrWriteError

    (tmp_path / "plain").write_text("x")
    with pytest.raises(ExrWriteError) as err:
        write_exr(tmp_path / "plain" / "o.exr", np.zeros((4, 4, 3), np.float32), ("R", "G", "B"))
    assert err.value.exit_code == 4 and str(tmp_path / "plain" / "o.exr") in str(err.value)


def test_plate_pixels_check_refuses_what_it_refused_without_the_copy():
    """check_plate_pixels passes a frame whose sum is finite without copying its read channels; every other frame
    goes to the exact check: finite values summing past float32's range pass, opposite infinities (their sum NaN)
    and a NaN beside a pass-through +inf are counted and named in their own channels."""
    from colorprop.errors import PixelError
    from colorprop.shot.preflight import check_plate_pixels

    channels = ("R", "G", "B", "A", "Z")
    pixels = np.full((H, W, len(channels)), 0.5, np.float32)
    check_plate_pixels(pixels, channels, "plate")
    pixels[..., :3] = np.finfo(np.float32).max / 2  # finite, but the frame sums to +inf
    with np.errstate(over="ignore"):
        assert not np.isfinite(np.sum(pixels))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the overflow on the way is the check's own business: no warning for the user
        check_plate_pixels(pixels, channels, "plate")
    pixels[..., :3] = 0.5
    pixels[:, : W // 2, 4] = np.inf  # a depth pass: passes through
    check_plate_pixels(pixels, channels, "plate")
    pixels[3, 5, 1], pixels[4, 6, 1] = np.inf, -np.inf
    with pytest.raises(
        PixelError, match=r"plate: plate has 2 pixel\(s\) with NaN/Inf in channel G; first at \(x=5, y=3\)"
    ):
        check_plate_pixels(pixels, channels, "plate")
    pixels[3, 5, 1] = pixels[4, 6, 1] = 0.5
    pixels[7, 2, 0] = np.nan
    with pytest.raises(PixelError, match=r"1 pixel\(s\) with NaN/Inf in channel R; first at \(x=2, y=7\)"):
        check_plate_pixels(pixels, channels, "plate")
