"""The span between two keys as three farm tasks (`colorize --direction forward|backward --state-dir`, then
`colorize --segment --state-dir` blending them): pixels equal to one embedded run, a killed pass resumes exactly,
pass files of another job are never blended. Real EXRs made here; `flow` (no weights) and `full` (shipped
weights) at 96x64. tests/test_farm.py runs the same through the OpenJD template with `openjd run`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from colorprop.engine.engine import Engine
from colorprop.io.exr import read_exr, write_exr
from colorprop.shot.passes import FINGERPRINT
from test_pipeline import SPACE, run_cli, textured_frames, write_shot

N = 10  # keys at both ends: 1 and N


@pytest.fixture(scope="module")
def shot(tmp_path_factory) -> tuple[Path, str, str]:
    folder = tmp_path_factory.mktemp("shot")
    frames = textured_frames(N)
    plate, _ = write_shot(folder, frames)
    for k in (1, N):
        write_exr(folder / f"key.{k:04d}.exr", frames[k - 1], ("R", "G", "B"), extra_metadata={"oiio:ColorSpace": SPACE})
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
    write_exr(path, pixels, plate.channels, pixel_type="float", extra_metadata={FINGERPRINT: plate.metadata[FINGERPRINT]})
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
        assert colorize(shot, tmp_path / "out", method, "--segment", "1", "--direction", direction,
                        "--state-dir", str(state)) == 0
    resumed = pass_files(state)
    assert sorted(resumed) == sorted(expected)
    for name in expected:
        np.testing.assert_array_equal(resumed[name], expected[name], err_msg=name)


def test_pass_files_of_another_job_are_computed_again(shot, embedded, tmp_path):
    """Pass files stamped by another job (here: another key at frame 1) are never blended."""
    folder, plate, _ = shot
    other = tmp_path / "other-key"
    other.mkdir()
    write_exr(other / "key.0001.exr", np.full((64, 96, 3), 0.3, np.float32) * [1.0, 0.2, 0.1], ("R", "G", "B"),
              extra_metadata={"oiio:ColorSpace": SPACE})
    write_exr(other / f"key.{N:04d}.exr", read_exr(folder / f"key.{N:04d}.exr").pixels, ("R", "G", "B"),
              extra_metadata={"oiio:ColorSpace": SPACE})
    state, out = tmp_path / "passes", tmp_path / "out"
    for direction in ("forward", "backward"):
        assert run_cli("--input", plate, "--key", f"1,{N}={other}/key.####.exr", "--output", str(tmp_path / "x.####.exr"),
                       "--method", "flow", "--segment", "1", "--direction", direction, "--state-dir", str(state)) == 0
    for segment in (1, N):
        assert colorize(shot, out, "flow", "--segment", str(segment), "--state-dir", str(state)) == 0
    assert_equal_frames(outputs(out), embedded["flow"])


@pytest.mark.parametrize("extra", [
    ["--segment", "1", "--direction", "forward"],  # nowhere to store the pass
    ["--direction", "forward", "--state-dir", "{tmp}"],  # which span?
    ["--segment", "1", "--state-dir", "{tmp}", "--server", "tcp://127.0.0.1:9"],  # the server runs whole shots
])
def test_pass_options_that_cannot_work_are_bad_input(shot, tmp_path, extra, capsys):
    assert colorize(shot, tmp_path, "flow", *[a.replace("{tmp}", str(tmp_path / "s")) for a in extra]) == 2
    assert "--direction" in capsys.readouterr().err
    assert not list(tmp_path.glob("**/*.exr"))


def test_the_embedded_run_blends_each_frame_as_the_forward_pass_makes_it(tmp_path):
    """The backward pass is stored first; then each frame is written as soon as the forward pass has made it
    (progress and in-band results stream as the run goes, not after both passes)."""
    from colorprop.colour import convert
    from colorprop.engine.engine import ShotOptions
    from colorprop.shot.pipeline import ArraySink, ArraySource, KeyImage, run_shot

    frames = textured_frames(N)
    gray = {i + 1: np.repeat(convert.luminance(f)[..., None], 3, 2) for i, f in enumerate(frames)}
    keys = {1: KeyImage(frames[0], SPACE), N: KeyImage(frames[-1], SPACE)}
    state = tmp_path / "passes"
    seen: dict[int, tuple[list[int], list[int]]] = {}

    class Watching(ArraySink):
        def write(self, frame, result):
            stored = [p.name.split(".") for p in (state / f"1-{N}").glob("[!.]*.exr")]
            seen[frame] = (sorted(int(f) for d, f, _ in stored if d == "forward"),
                           sorted(int(f) for d, f, _ in stored if d == "backward"))
            super().write(frame, result)

    run_shot(Engine(None, "flow only"), ArraySource(gray, colorspace=SPACE), keys, ShotOptions(method="flow"),
             Watching(), state_dir=state)
    for f in range(2, N):
        assert seen[f] == (list(range(2, f + 1)), list(range(2, N))), f
    assert not state.exists()
