"""The span between two keys as three farm tasks (`colorize --direction forward|backward --state-dir`, then
`colorize --segment --state-dir` blending them): pixels equal to one embedded run, a killed pass resumes exactly,
pass files of another job are never blended. Real EXRs made here; `flow` (no weights) and `full` (shipped
weights) at 96x64. tests/test_farm.py runs the same through the OpenJD template with `openjd run`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from colorprop.engine.engine import Engine
from colorprop.io.exr import read_exr, write_exr
from colorprop.shot.passes import FINGERPRINT
from serverkit import wait_until
from test_pipeline import SPACE, run_cli, textured_frames, write_shot

N = 10  # keys at both ends: 1 and N


@pytest.fixture(scope="module")
def shot(tmp_path_factory) -> tuple[Path, str, str]:
    folder = tmp_path_factory.mktemp("shot")
    frames = textured_frames(N)
    plate, _ = write_shot(folder, frames)
    for k in (1, N):
        write_exr(
            folder / f"key.{k:04d}.exr", frames[k - 1], ("R", "G", "B"), extra_metadata={"oiio:ColorSpace": SPACE}
        )
    return folder, plate, f"1,{N}={folder}/key.####.exr"


def colorize(shot, out: Path, method: str, *extra: str) -> int:
    _, plate, keys = shot
    return run_cli("--input", plate, "--key", keys, "--output", str(out / "c.####.exr"), "--method", method, *extra)


def outputs(folder: Path) -> dict[int, np.ndarray]:
    return {int(p.name.split(".")[1]): read_exr(p).pixels for p in sorted(folder.glob("c.*.exr"))}


def pass_files(state: Path) -> dict[str, np.ndarray]:
    return {p.name: read_exr(p).pixels for p in sorted((state / f"1-{N}").glob("[!.]*.exr"))}


def assert_equal_frames(a: dict[int, np.ndarray], b: dict[int, np.ndarray]) -> None:
    assert sorted(a) == sorted(b) == list(range(1, N + 1))
    for f in a:
        np.testing.assert_array_equal(a[f], b[f], err_msg=f"frame {f}")


@pytest.fixture(scope="module")
def embedded(shot, tmp_path_factory) -> dict[str, dict[int, np.ndarray]]:
    """One embedded run of the whole shot per method: what the split must reproduce."""
    runs = {}
    for method in ("flow", "full"):
        out = tmp_path_factory.mktemp(f"embedded-{method}")
        assert colorize(shot, out, method) == 0
        runs[method] = outputs(out)
    return runs


def split_run(shot, tmp_path: Path, method: str) -> tuple[Path, Path]:
    """The farm's three tasks of the span (and the last key's segment), in-process."""
    out, state = tmp_path / "out", tmp_path / "passes"
    for direction in ("backward", "forward"):
        assert colorize(shot, out, method, "--segment", "1", "--direction", direction, "--state-dir", str(state)) == 0
    return out, state


@pytest.mark.parametrize("method", ["flow", "full"])
def test_forward_backward_and_blend_tasks_equal_the_embedded_run(shot, embedded, tmp_path, method):
    if method == "full":
        assert "full" in Engine.load().methods()
    out, state = split_run(shot, tmp_path, method)
    assert not list(out.glob("c.*.exr"))  # a pass writes no output frame
    stored = pass_files(state)
    assert sorted(stored) == sorted(f"{d}.{f}.exr" for d in ("forward", "backward") for f in range(2, N))
    # the last key's segment has no span: its pass tasks are no-ops
    assert colorize(shot, out, method, "--segment", str(N), "--direction", "forward", "--state-dir", str(state)) == 0
    assert len(pass_files(state)) == len(stored)
    for segment in (N, 1):
        assert colorize(shot, out, method, "--segment", str(segment), "--state-dir", str(state)) == 0
    assert_equal_frames(outputs(out), embedded[method])
    assert not state.exists()  # the blend removes the pass files once the span is written


def test_the_blend_task_uses_the_stored_passes(shot, embedded, tmp_path):
    """A stored pass frame is what is blended (not recomputed): changing one changes that output frame only."""
    out, state = split_run(shot, tmp_path, "flow")
    path = state / f"1-{N}" / "backward.5.exr"
    plate = read_exr(path)
    pixels = plate.pixels.copy()
    pixels[..., plate.channels.index("ab.a")] += 20.0
    write_exr(
        path, pixels, plate.channels, pixel_type="float", extra_metadata={FINGERPRINT: plate.metadata[FINGERPRINT]}
    )
    assert colorize(shot, out, "flow", "--segment", "1", "--state-dir", str(state)) == 0
    got = outputs(out)
    for f in range(1, N):
        same = np.array_equal(got[f], embedded["flow"][f])
        assert same == (f != 5), f"frame {f}"


@pytest.mark.parametrize("method", ["flow", "full"])
def test_a_killed_pass_resumes_exactly(shot, tmp_path, method):
    """A pass task killed after a few frames (its later frames missing, a temp file left) carries on from the
    stored frames: every pass file equals the uninterrupted pass's."""
    _, whole = split_run(shot, tmp_path / "whole", method)
    expected = pass_files(whole)
    _, state = split_run(shot, tmp_path / "killed", method)
    folder = state / f"1-{N}"
    for f in range(6, N):  # the forward pass was killed after frame 5
        (folder / f"forward.{f}.exr").unlink()
    for f in range(2, 4):  # the backward pass after frame 4 (it runs 9, 8, ...)
        (folder / f"backward.{f}.exr").unlink()
    (folder / ".forward.6.tmp-999-0123abcd.exr").write_bytes(b"half a frame")
    for direction in ("forward", "backward"):
        assert (
            colorize(
                shot, tmp_path / "out", method, "--segment", "1", "--direction", direction, "--state-dir", str(state)
            )
            == 0
        )
    resumed = pass_files(state)
    assert sorted(resumed) == sorted(expected)
    for name in expected:
        np.testing.assert_array_equal(resumed[name], expected[name], err_msg=name)


def test_pass_files_of_another_job_are_computed_again(shot, embedded, tmp_path):
    """Pass files stamped by another job (here: another key at frame 1) are never blended."""
    folder, plate, _ = shot
    other = tmp_path / "other-key"
    other.mkdir()
    write_exr(
        other / "key.0001.exr",
        np.full((64, 96, 3), 0.3, np.float32) * [1.0, 0.2, 0.1],
        ("R", "G", "B"),
        extra_metadata={"oiio:ColorSpace": SPACE},
    )
    write_exr(
        other / f"key.{N:04d}.exr",
        read_exr(folder / f"key.{N:04d}.exr").pixels,
        ("R", "G", "B"),
        extra_metadata={"oiio:ColorSpace": SPACE},
    )
    state, out = tmp_path / "passes", tmp_path / "out"
    for direction in ("forward", "backward"):
        assert (
            run_cli(
                "--input",
                plate,
                "--key",
                f"1,{N}={other}/key.####.exr",
                "--output",
                str(tmp_path / "x.####.exr"),
                "--method",
                "flow",
                "--segment",
                "1",
                "--direction",
                direction,
                "--state-dir",
                str(state),
            )
            == 0
        )
    for segment in (1, N):
        assert colorize(shot, out, "flow", "--segment", str(segment), "--state-dir", str(state)) == 0
    assert_equal_frames(outputs(out), embedded["flow"])


def corrupt(path: Path, how: str) -> None:
    """Spoil a pass file as a disk, a copy or another job can: its stamp kept valid except for ``foreign-stamp``."""
    plate = read_exr(path)
    stamp = {FINGERPRINT: plate.metadata[FINGERPRINT], "compression": "none"}
    if how == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif how == "nan":  # in the blend weight: 600 non-finite values were blended into the output
        pixels = plate.pixels.copy()
        pixels[10:30, 20:50, plate.channels.index("carried")] = np.nan
        write_exr(path, pixels, plate.channels, pixel_type="float", extra_metadata=stamp)
    elif how == "wrong-size":  # was a ValueError traceback
        write_exr(path, plate.pixels[:-8, :-8], plate.channels, pixel_type="float", extra_metadata=stamp)
    elif how == "missing-channel":
        keep = [i for i, c in enumerate(plate.channels) if c != "carried"]
        write_exr(
            path, plate.pixels[..., keep], [plate.channels[i] for i in keep], pixel_type="float", extra_metadata=stamp
        )
    elif how == "foreign-stamp":
        write_exr(
            path, plate.pixels, plate.channels, pixel_type="float", extra_metadata={**stamp, FINGERPRINT: "0" * 32}
        )
    else:
        raise ValueError(how)


CORRUPTIONS = ["truncated", "nan", "wrong-size", "missing-channel", "foreign-stamp"]


@pytest.mark.parametrize("how", CORRUPTIONS)
def test_the_blend_computes_an_unsound_pass_file_again_and_never_uses_it(shot, embedded, tmp_path, how):
    """A pass file spoilt after its task (NaN, another size, cut short, ...) with a valid stamp: the blend task
    checks each file as it checks a plate and computes the bad one again: the pixels of one embedded run."""
    out, state = split_run(shot, tmp_path, "flow")
    corrupt(state / f"1-{N}" / "backward.5.exr", how)
    corrupt(state / f"1-{N}" / "forward.7.exr", how)
    for segment in (N, 1):
        assert colorize(shot, out, "flow", "--segment", str(segment), "--state-dir", str(state)) == 0
    assert_equal_frames(outputs(out), embedded["flow"])
    assert not state.exists()


@pytest.mark.parametrize("how", CORRUPTIONS)
def test_a_retried_pass_task_recovers_from_any_corruption_of_its_own_files(shot, embedded, tmp_path, how):
    """The pass task run again (a farm's retry) checks every file of its pass in full, not just the header, and
    computes again from the first bad one: the files equal an uninterrupted pass's, and the blend the embedded
    run. A truncated file blocked its span for good before: each retry found it 'present' and failed alike."""
    out, state = split_run(shot, tmp_path, "flow")
    expected = pass_files(state)
    corrupt(state / f"1-{N}" / "forward.4.exr", how)
    corrupt(state / f"1-{N}" / "backward.6.exr", how)
    for direction in ("forward", "backward"):
        assert colorize(shot, out, "flow", "--segment", "1", "--direction", direction, "--state-dir", str(state)) == 0
    retried = pass_files(state)
    assert sorted(retried) == sorted(expected)
    for name in expected:
        np.testing.assert_array_equal(retried[name], expected[name], err_msg=name)
    for segment in (N, 1):
        assert colorize(shot, out, "flow", "--segment", str(segment), "--state-dir", str(state)) == 0
    assert_equal_frames(outputs(out), embedded["flow"])


COLORPROP = Path(sys.executable).parent / "colorprop"
LONG = 40  # frames of the shot the process tests stop part-way: a span that takes a while after its frame 2


@pytest.fixture(scope="module")
def long_shot(tmp_path_factory) -> tuple[Path, str, str]:
    folder = tmp_path_factory.mktemp("long-shot")
    frames = textured_frames(LONG, shift=0.5)
    plate, _ = write_shot(folder, frames)
    for k in (1, LONG):
        write_exr(
            folder / f"key.{k:04d}.exr", frames[k - 1], ("R", "G", "B"), extra_metadata={"oiio:ColorSpace": SPACE}
        )
    return folder, plate, f"1,{LONG}={folder}/key.####.exr"


@pytest.fixture(scope="module")
def long_embedded(long_shot, tmp_path_factory) -> dict[int, np.ndarray]:
    out = tmp_path_factory.mktemp("long-embedded")
    assert colorize(long_shot, out, "flow") == 0
    return outputs(out)


def assert_same_outputs(folder: Path, expected: dict[int, np.ndarray]) -> None:
    got = outputs(folder)
    assert sorted(got) == sorted(expected)
    for f in got:
        np.testing.assert_array_equal(got[f], expected[f], err_msg=f"frame {f}")


def start(shot, out: Path, *extra: str, env: dict | None = None) -> subprocess.Popen:
    """``colorprop colorize`` (flow) as its own process, its progress lines on a pipe."""
    _, plate, keys = shot
    return subprocess.Popen(
        [
            str(COLORPROP),
            "colorize",
            "--input",
            plate,
            "--key",
            keys,
            "--output",
            str(out / "c.####.exr"),
            "--method",
            "flow",
            "--progress",
            "lines",
            *extra,
        ],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def wait_for_line(proc: subprocess.Popen, words: str) -> None:
    """Read ``proc``'s progress until a line holds ``words`` (it exits first: the test failed to catch it)."""
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if words in line:
            return
    raise AssertionError(f"exited ({proc.wait()}) before {words!r}: {''.join(seen)}")


def waits_for_a_lock(pid: int) -> bool:
    """``pid`` is blocked waiting for a file lock (a '->' line of /proc/locks)."""
    return any(
        line.split()[1] == "->" and line.split()[5] == str(pid)
        for line in Path("/proc/locks").read_text().splitlines()
        if len(line.split()) > 5
    )


def test_two_blends_of_one_span_at_once_both_write_it_whole(long_shot, long_embedded, tmp_path):
    """Two blend tasks of the same span on one state dir (a farm retry beside a slow first try): the second
    waits for the first, both exit 0, the frames are the embedded run's. Before, the one that finished first
    removed the pass files under the other, which failed 'pass file missing; run the pass again'.
    Deterministic: the first is stopped (SIGSTOP) mid-blend until the second is seen waiting for it, or done."""
    out, state = split_run(long_shot, tmp_path, "flow")
    first = start(long_shot, out, "--segment", "1", "--state-dir", str(state))
    wait_for_line(first, "frame 2 done")
    first.send_signal(signal.SIGSTOP)
    try:
        second = start(long_shot, out, "--segment", "1", "--state-dir", str(state))
        assert wait_until(lambda: second.poll() is not None or waits_for_a_lock(second.pid), timeout=120)
    finally:
        first.send_signal(signal.SIGCONT)
    for proc in (first, second):
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    assert colorize(long_shot, out, "flow", "--segment", str(LONG), "--state-dir", str(state)) == 0
    assert_same_outputs(out, long_embedded)
    assert not state.exists()


def test_a_killed_embedded_run_leaves_its_passes_only_until_the_next_run(long_shot, long_embedded, tmp_path):
    """kill -9 of an embedded two-key run mid-span leaves its pass folder under $TMPDIR (nothing can remove it
    then); the next embedded run removes it, and never the folder of a run that is alive (here stopped with
    SIGSTOP while the next one runs). A run that ends, however, removes its own."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp)}
    killed = start(long_shot, tmp_path / "killed", env=env)
    wait_for_line(killed, "frame 2 done")
    killed.kill()
    killed.communicate(timeout=60)
    left = list(tmp.glob("colorprop-passes-*"))
    assert len(left) == 1 and list(left[0].rglob("*.exr")), left  # its pass files: ~3 MB a frame at 480x270

    alive = start(long_shot, tmp_path / "alive", env=env)
    wait_for_line(alive, "frame 2 done")
    alive.send_signal(signal.SIGSTOP)
    try:
        _, err = start(long_shot, tmp_path / "next", env=env).communicate(timeout=300)
        remaining = list(tmp.glob("colorprop-passes-*"))
    finally:
        alive.send_signal(signal.SIGCONT)
    _, alive_err = alive.communicate(timeout=300)
    assert alive.returncode == 0, alive_err
    assert left[0] not in remaining and len(remaining) == 1, (left, remaining, err)  # the alive run's, kept
    assert not list(tmp.iterdir())  # each run that ended removed its own
    assert_same_outputs(tmp_path / "next", long_embedded)
    assert_same_outputs(tmp_path / "alive", long_embedded)


@pytest.mark.parametrize(
    "extra",
    [
        ["--segment", "1", "--direction", "forward"],  # nowhere to store the pass
        ["--direction", "forward", "--state-dir", "{tmp}"],  # which span?
        ["--segment", "1", "--state-dir", "{tmp}", "--server", "tcp://127.0.0.1:9"],  # the server runs whole shots
    ],
)
def test_pass_options_that_cannot_work_are_bad_input(shot, tmp_path, extra, capsys):
    assert colorize(shot, tmp_path, "flow", *[a.replace("{tmp}", str(tmp_path / "s")) for a in extra]) == 2
    assert "--direction" in capsys.readouterr().err
    assert not list(tmp_path.glob("**/*.exr"))


def test_the_embedded_run_blends_each_frame_as_the_forward_pass_makes_it(tmp_path):
    """The backward pass is stored first; then each frame is written as soon as the forward pass has made it
    (progress and in-band results stream as the run goes, not after both passes)."""
    from colorprop.colour import convert
    from colorprop.engine.engine import ShotOptions
    from colorprop.shot.frames import ArraySink, ArraySource, KeyImage
    from colorprop.shot.pipeline import run_shot

    frames = textured_frames(N)
    gray = {i + 1: np.repeat(convert.luminance(f)[..., None], 3, 2) for i, f in enumerate(frames)}
    keys = {1: KeyImage(frames[0], SPACE), N: KeyImage(frames[-1], SPACE)}
    state = tmp_path / "passes"
    seen: dict[int, tuple[list[int], list[int]]] = {}

    class Watching(ArraySink):
        def write(self, frame, result):
            stored = [p.name.split(".") for p in (state / f"1-{N}").glob("[!.]*.exr")]
            seen[frame] = (
                sorted(int(f) for d, f, _ in stored if d == "forward"),
                sorted(int(f) for d, f, _ in stored if d == "backward"),
            )
            super().write(frame, result)

    run_shot(
        Engine(None, "flow only"),
        ArraySource(gray, colorspace=SPACE),
        keys,
        ShotOptions(method="flow"),
        Watching(),
        state_dir=state,
    )
    for f in range(2, N):
        assert seen[f] == (list(range(2, f + 1)), list(range(2, N))), f
    assert not state.exists()
