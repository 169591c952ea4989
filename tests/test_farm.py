"""Farm behaviour: segments, exit codes, SIGTERM, and the Open Job Description template run with
`openjd run` on the example shot: uninterrupted, killed part-way, resumed (outputs must be equal).

Method flow everywhere (no weights, ~0.1 s a frame); the whole file takes ~40 s on 2 cores.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from colorprop.cli.main import main
from colorprop.io.exr import read_exr, write_exr
from colorprop.shot.segments import format_range, key_segments
from serverkit import wait_until

ROOT = Path(__file__).resolve().parents[1]
SHOT = ROOT / "examples" / "shot"
TEMPLATE = ROOT / "plugin" / "farm" / "colorprop_shot" / "template.yaml"
BIN = Path(sys.executable).parent
COLORPROP = BIN / "colorprop"
OPENJD = BIN / "openjd"
KEYS = (1, 12)  # two keys: two segments, two tasks
FRAMES = range(1, 25)

needs_openjd = pytest.mark.skipif(not OPENJD.exists(), reason="openjd-cli not installed (pip install -e '.[test]')")


@pytest.fixture(scope="module")
def keys_dir(tmp_path_factory) -> Path:
    """Keys for frames 1 and 12 (frame 12's key is frame 1's: any colour does for equality tests)."""
    folder = tmp_path_factory.mktemp("keys")
    for k in KEYS:
        shutil.copy(SHOT / "key.0001.exr", folder / f"key.{k:04d}.exr")
    return folder


def key_arg(keys_dir: Path) -> str:
    return f"{','.join(map(str, KEYS))}={keys_dir}/key.####.exr"


def frames_of(folder: Path, name: str = "colour") -> dict[int, np.ndarray]:
    return {int(p.name.split(".")[1]): read_exr(p).pixels for p in sorted(folder.glob(f"{name}.*.exr"))}


def assert_same_pixels(a: dict[int, np.ndarray], b: dict[int, np.ndarray]) -> None:
    assert sorted(a) == sorted(b) == list(FRAMES)
    for f in a:
        np.testing.assert_array_equal(a[f], b[f], err_msg=f"frame {f}")


def no_tty_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("COLORPROP_SERVER", None)
    return env


def outside_venv_env() -> dict[str, str]:
    """As a farm worker's shell: no COLORPROP_SERVER, and neither the venv nor its bin/ on PATH."""
    env = no_tty_env()
    env.pop("VIRTUAL_ENV", None)
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if p and Path(p).resolve() != BIN.resolve()
    )
    return env


@pytest.fixture(scope="module")
def reference(tmp_path_factory, keys_dir) -> dict[int, np.ndarray]:
    """One uninterrupted, unsegmented CLI run: what every farm run must reproduce exactly."""
    out = tmp_path_factory.mktemp("reference")
    proc = subprocess.run(
        [
            str(COLORPROP),
            "colorize",
            "--input",
            str(SHOT / "plate.####.exr"),
            "--key",
            key_arg(keys_dir),
            "--output",
            str(out / "colour.####.exr"),
            "--method",
            "flow",
        ],
        capture_output=True,
        text=True,
        env=no_tty_env(),
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    # Off a TTY: plain lines and openjd_progress, never a carriage-return bar.
    assert "openjd_progress: 100.0" in proc.stderr and "\r" not in proc.stderr
    return frames_of(out)


# ---------------------------------------------------------------- segments and exit codes (in-process)


def test_key_segments_partition_frames():
    frames = list(range(1, 25))
    segments = key_segments(frames, [20, 10])
    assert [(s.key, s.frames[0], s.frames[-1], s.keys) for s in segments] == [(10, 1, 19, [10, 20]), (20, 20, 24, [20])]
    assert sum((s.frames for s in segments), []) == frames
    one = key_segments(frames, [1])
    assert len(one) == 1 and one[0].frames == frames  # one key: one sequential task
    assert format_range([1, 2, 3, 7, 9, 10]) == "1-3,7,9-10"


def test_list_segments_json(capsys, keys_dir):
    rc = main(["colorize", "--input", str(SHOT / "plate.####.exr"), "--key", key_arg(keys_dir), "--list-segments"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["keys"] == "1,12"
    assert [(s["key"], s["frames"], s["keys"]) for s in out["segments"]] == [(1, "1-11", [1, 12]), (12, "12-24", [12])]


@pytest.mark.parametrize(
    "extra, code",
    [
        (["--segment", "5"], 2),  # not a key frame
        (["--frames", "2-24"], 2),  # key 1 outside the range
        (["--frames", "1-30"], 2),  # plate frames missing
        (["--method", "flow", "--output", "{plate}"], 2),  # would overwrite the input
    ],
)
def test_exit_codes(tmp_path, keys_dir, extra, code):
    argv = [
        "colorize",
        "--input",
        str(SHOT / "plate.####.exr"),
        "--key",
        key_arg(keys_dir),
        "--method",
        "flow",
        "--progress",
        "none",
        "--output",
        str(tmp_path / "o.####.exr"),
    ]
    argv += [a.replace("{plate}", str(SHOT / "plate.####.exr")) for a in extra]
    assert main(argv) == code
    assert not list(tmp_path.glob("o.*.exr"))  # checked before the first frame is written


def test_missing_output_is_bad_input(keys_dir):
    assert main(["colorize", "--input", str(SHOT / "plate.####.exr"), "--key", key_arg(keys_dir)]) == 2


def cli_signalling_itself(signame: str, done: int) -> str:
    """Python source that runs the colorprop CLI and sends itself ``signame`` as it prints the progress line of its
    ``done``-th frame, in a task that writes output frames (not a pass task's, ``--direction``): the signal arrives
    at a known frame, however busy the machine (a test that watches for files and then signals races the frames
    still being computed)."""
    return f"""
import os, signal, sys
from colorprop.cli.main import main


class SignalAtFrame:
    def __init__(self, stream):
        self.stream = stream

    def write(self, text):
        written = self.stream.write(text)
        if " done ({done}/" in text and "--direction" not in sys.argv:
            self.stream.flush()
            os.kill(os.getpid(), signal.{signame})
        return written

    def __getattr__(self, name):
        return getattr(self.stream, name)


sys.stderr = SignalAtFrame(sys.stderr)
sys.exit(main(sys.argv[1:]))
"""


def test_sigterm_exits_130_without_partial_frames(tmp_path, keys_dir):
    """A farm cancels with SIGTERM, here as the 2nd of segment 12's 13 frames is reported done: exit 130, the two
    frames reported done under their final names, complete (the one still being written behind is finished),
    nothing else and no temp files."""
    out = tmp_path / "colour.####.exr"
    argv = ["colorize", "--input", str(SHOT / "plate.####.exr"), "--key", key_arg(keys_dir), "--output", str(out)]
    argv += ["--method", "flow", "--segment", "12", "--progress", "lines"]
    proc = subprocess.run(
        [sys.executable, "-c", cli_signalling_itself("SIGTERM", 2), *argv],
        capture_output=True,
        text=True,
        env=no_tty_env(),
        timeout=300,
    )
    assert proc.returncode == 130 and "colorprop: interrupted" in proc.stderr, proc.stderr
    reported = [int(m) for m in re.findall(r"^frame (\d+) done \(", proc.stderr, re.MULTILINE)]
    assert reported == [12, 13], proc.stderr
    written = sorted(tmp_path.glob("colour.*.exr"))
    assert [p.name for p in written] == ["colour.0012.exr", "colour.0013.exr"]
    for path in written:
        read_exr(path)
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


# ---------------------------------------------------------------- the OpenJD template


def openjd(*args: str, **kwargs):
    """``openjd`` run as on a worker: outside the venv (the template's environment must find colorprop)."""
    return subprocess.Popen(
        [str(OPENJD), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=outside_venv_env(),
        start_new_session=True,
        **kwargs,
    )


def finish(run: subprocess.Popen, timeout: float = 300) -> str:
    """The run's log once it exits; on timeout the whole process tree is killed first (no stray tasks)."""
    try:
        log, _ = run.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(run)
        raise
    return log


def kill_tree(run: subprocess.Popen) -> None:
    """SIGKILL ``run`` and every process below it, and wait until each is gone (dead or a zombie): after this,
    nothing of the run writes any more."""
    pids = [run.pid, *descendants(run.pid)]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    run.communicate(timeout=30)
    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in pids):
        assert time.monotonic() < deadline, "a killed process is still running"
        time.sleep(0.01)


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, or a pid gone from /proc, is dead)."""
    return process_state(pid) not in (None, "Z", "X")


def process_state(pid: int) -> str | None:
    """The state letter of ``pid`` in /proc (R, S, T: stopped, Z: zombie, ...); None once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def template_params(
    keys_dir: Path, out: Path, existing: str = "resume", venv: Path | None = BIN.parent, command: Path | None = None
) -> list[str]:
    params = {
        "PlateDirectory": SHOT,
        "PlateName": "plate.####.exr",
        "KeyDirectory": keys_dir,
        "KeyName": "key.####.exr",
        "KeyFrames": ",".join(map(str, KEYS)),
        "OutputDirectory": out,
        "OutputName": "colour.####.exr",
        "Method": "flow",
        "ExistingFrames": existing,
    }
    if venv is not None:
        params["ColorpropEnvironment"] = venv
    if command is not None:
        params["ColorpropCommand"] = command
    return [a for name, value in params.items() for a in ("-p", f"{name}={value}")]


def stopped(run: subprocess.Popen) -> bool:
    """True once a process below ``run`` is stopped (SIGSTOP); asserts that ``run`` has not finished first."""
    assert run.poll() is None, "finished before it could be interrupted"
    return any(process_state(pid) == "T" for pid in descendants(run.pid))


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (openjd runs its actions in sessions of their own)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


@needs_openjd
def test_openjd_check():
    proc = subprocess.run([str(OPENJD), "check", str(TEMPLATE)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@needs_openjd
def test_openjd_run_killed_then_resumed_equals_uninterrupted(tmp_path, keys_dir, reference):
    # 1. An uninterrupted farm run (two tasks, one per key) gives the unsegmented run's pixels.
    full = tmp_path / "full"
    run = openjd("run", str(TEMPLATE), *template_params(keys_dir, full, existing="overwrite"))
    log = finish(run)
    assert run.returncode == 0, log
    assert f"colorprop: using {BIN / 'colorprop'}" in log  # found through ColorpropEnvironment, not PATH
    assert "openjd_progress:" in log and "--segment 1" in log and "--segment 12" in log
    assert_same_pixels(frames_of(full), reference)

    # 2. A run killed (SIGKILL, the whole process tree) in its first task that writes frames: colorprop stops itself
    # (SIGSTOP) as it reports its 4th frame done, so the kill finds 3 frames written and the 4th written or not.
    resumed = tmp_path / "resumed"
    stopping = tmp_path / "colorprop-stopping-at-frame-4"
    stopping.write_text(f"#!{sys.executable}\n" + cli_signalling_itself("SIGSTOP", 4))
    stopping.chmod(0o755)
    run = openjd("run", str(TEMPLATE), *template_params(keys_dir, resumed, command=stopping))
    try:
        assert wait_until(lambda: stopped(run), 300, 0.01), "no task stopped at its 4th frame"
    finally:
        kill_tree(run)
    left = sorted(resumed.glob("colour.*.exr"))
    assert len(left) in (3, 4), left
    for path in left:  # a killed task never leaves a half-written frame under a final name
        read_exr(path)

    # 3. The same template resumes (ExistingFrames=resume): finished frames kept, the rest coloured.
    run = openjd("run", str(TEMPLATE), *template_params(keys_dir, resumed))
    log = finish(run)
    assert run.returncode == 0, log
    skipped = sum(
        int(line.split(" skipped")[0].rsplit(",", 1)[1]) for line in log.splitlines() if "frame(s) written" in line
    )
    assert skipped == len(left)  # finished frames are kept, not redone
    assert_same_pixels(frames_of(resumed), reference)


@needs_openjd
def test_openjd_task_failing_mid_shot_exits_3_naming_the_frame(tmp_path):
    """Plate frame 5 of 8 truncated (header whole: the task starts): the task fails with the message naming
    the file and exit code 3, as docs/FARM.md says; frames 1-4 are kept."""
    from serverkit import broken_shot, written_frames

    plate, key, out, bad = broken_shot(tmp_path, "unreadable")
    params = {
        "PlateDirectory": Path(plate).parent,
        "PlateName": "plate.####.exr",
        "KeyDirectory": Path(key).parent,
        "KeyName": "key.exr",
        "KeyFrames": "1",
        "Frames": "1-8",
        "OutputDirectory": Path(out).parent,
        "OutputName": "o.####.exr",
        "Method": "flow",
        "ExistingFrames": "overwrite",
        "ColorpropEnvironment": BIN.parent,
    }
    run = openjd("run", str(TEMPLATE), *[a for k, v in params.items() for a in ("-p", f"{k}={v}")])
    log = finish(run)
    assert run.returncode != 0, log
    assert f"colorprop: error: cannot read EXR {bad}: pixel data unreadable" in log, log
    assert re.search(r"exited with code: 3 \(unsigned\)", log), log
    assert "ERROR executing action: 'Run Step 'Colorize'" in log
    assert written_frames(out) == [1, 2, 3, 4]


@needs_openjd
@pytest.mark.parametrize("keys", [(1, 24), (1, 12, 24)], ids=["keys-at-both-ends", "three-keys"])
def test_openjd_run_splits_spans_into_pass_and_blend_tasks(tmp_path, keys):
    """Between neighbouring keys the template runs a forward pass task, a backward pass task and a blend task
    (docs/FARM.md): the frames equal one embedded run of the whole shot, and the pass files are gone after."""
    keys_dir = tmp_path / "keys"
    keys_dir.mkdir()
    for k in keys:  # the true colour is unknown here: the key frame's own key, shifted in hue per key
        pixels = read_exr(SHOT / "key.0001.exr").pixels
        write_exr(keys_dir / f"key.{k:04d}.exr", pixels[..., [k % 3, (k + 1) % 3, (k + 2) % 3]], ("R", "G", "B"))
    key_spec = f"{','.join(map(str, keys))}={keys_dir}/key.####.exr"
    embedded = tmp_path / "embedded"
    assert (
        main(
            [
                "colorize",
                "--input",
                str(SHOT / "plate.####.exr"),
                "--key",
                key_spec,
                "--method",
                "flow",
                "--progress",
                "none",
                "--output",
                str(embedded / "colour.####.exr"),
            ]
        )
        == 0
    )
    farm = tmp_path / "farm"
    params = template_params(keys_dir, farm, existing="overwrite") + ["-p", f"KeyFrames={','.join(map(str, keys))}"]
    run = openjd("run", str(TEMPLATE), *params)
    log = finish(run)
    assert run.returncode == 0, log
    for a, b in zip(keys, keys[1:]):
        for direction in ("forward", "backward"):
            assert f"colorprop: {direction} pass of segment {a}: {b - a - 1} frame(s) stored" in log
    assert log.count("no forward pass to run") == 1  # the last key has no span
    assert log.count("frame(s) written") == len(keys)  # one blend/segment task per key
    assert_same_pixels(frames_of(farm), frames_of(embedded))
    assert not (farm / ".colorprop-passes").exists()


@needs_openjd
def test_openjd_retried_pass_tasks_recover_from_any_corruption_of_their_pass_files(tmp_path):
    """The Passes step run, then its pass files spoilt as a disk or another job can (cut short, NaN with a
    valid stamp, another size, another job's stamp), then the step run again as a farm retries it: each task
    checks its files in full and computes the bad ones again, the files equal those of the first run, and the
    Colorize step gives the pixels of one uninterrupted embedded run, bit for bit. A truncated file used to
    block its span for good (each retry checked only the header and failed alike)."""
    from test_passes import corrupt

    keys = (1, 24)
    keys_dir = tmp_path / "keys"
    keys_dir.mkdir()
    for k in keys:
        pixels = read_exr(SHOT / "key.0001.exr").pixels
        write_exr(keys_dir / f"key.{k:04d}.exr", pixels[..., [k % 3, (k + 1) % 3, (k + 2) % 3]], ("R", "G", "B"))
    embedded = tmp_path / "embedded"
    assert (
        main(
            [
                "colorize",
                "--input",
                str(SHOT / "plate.####.exr"),
                "--key",
                f"1,24={keys_dir}/key.####.exr",
                "--method",
                "flow",
                "--progress",
                "none",
                "--output",
                str(embedded / "colour.####.exr"),
            ]
        )
        == 0
    )
    farm = tmp_path / "farm"
    params = template_params(keys_dir, farm) + ["-p", "KeyFrames=1,24"]
    run = openjd("run", str(TEMPLATE), *params, "--step", "Passes")
    log = finish(run)
    assert run.returncode == 0, log
    span = farm / ".colorprop-passes" / "1-24"
    first = {p.name: read_exr(p).pixels for p in span.glob("[!.]*.exr")}
    assert len(first) == 2 * 22
    spoilt = {
        "forward.5.exr": "truncated",
        "forward.9.exr": "nan",
        "backward.20.exr": "wrong-size",
        "backward.12.exr": "foreign-stamp",
    }
    for name, how in spoilt.items():
        corrupt(span / name, how)
    run = openjd("run", str(TEMPLATE), *params, "--step", "Passes")  # the retry
    log = finish(run)
    assert run.returncode == 0, log
    assert "forward pass of segment 1: 19 frame(s) stored, 3 kept" in log, log  # from frame 5 on (2..4 kept)
    assert "backward pass of segment 1: 19 frame(s) stored, 3 kept" in log, log  # from frame 20 down (23..21)
    retried = {p.name: read_exr(p).pixels for p in span.glob("[!.]*.exr")}
    assert sorted(retried) == sorted(first)
    for name in first:
        np.testing.assert_array_equal(retried[name], first[name], err_msg=name)
    run = openjd("run", str(TEMPLATE), *params, "--step", "Colorize", "--no-run-dependencies")
    log = finish(run)
    assert run.returncode == 0, log
    assert_same_pixels(frames_of(farm), frames_of(embedded))
    assert not (farm / ".colorprop-passes").exists()


def has_serve() -> bool:
    try:
        import colorprop_server.cli  # noqa: F401
    except ImportError:
        return False
    return True


@needs_openjd
@pytest.mark.skipif(not has_serve(), reason="this colorprop has no `serve` command")
def test_openjd_run_with_session_server(tmp_path):
    """ServerMode=serve: session setup starts one `colorprop serve`, tasks get COLORPROP_SERVER through
    openjd_env, pixels equal an embedded run, and session exit stops the server."""
    embedded = tmp_path / "embedded"
    assert (
        main(
            [
                "colorize",
                "--input",
                str(SHOT / "plate.####.exr"),
                "--key",
                f"1={SHOT / 'key.0001.exr'}",
                "--frames",
                "1-8",
                "--method",
                "flow",
                "--progress",
                "none",
                "--output",
                str(embedded / "colour.####.exr"),
            ]
        )
        == 0
    )
    served = tmp_path / "served"
    params = template_params(SHOT, served) + ["-p", "KeyFrames=1", "-p", "Frames=1-8", "-p", "ServerMode=serve"]
    run = openjd("run", str(TEMPLATE), *params)
    log = finish(run)
    assert run.returncode == 0, log
    assert "openjd_env: COLORPROP_SERVER=ipc://" in log and "--server ipc://" in log
    pid = int(log.split("COLORPROP_SERVE_PID=")[1].split()[0])
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    a, b = frames_of(embedded), frames_of(served)
    assert sorted(a) == sorted(b) == list(range(1, 9))
    for f in a:
        np.testing.assert_array_equal(a[f], b[f], err_msg=f"frame {f}")


@needs_openjd
def test_openjd_run_outside_the_venv_without_the_environment_says_what_to_set(tmp_path, keys_dir):
    """No ColorpropEnvironment and no colorprop on PATH: the job stops before any task, saying what to set
    (not 'command not found' in every task)."""
    run = openjd("run", str(TEMPLATE), *template_params(keys_dir, tmp_path / "out", venv=None))
    log = finish(run)
    assert run.returncode != 0
    assert "'colorprop' is not on this worker's PATH" in log and "set ColorpropEnvironment" in log
    assert "colorprop task:" not in log and not (tmp_path / "out").exists()


@needs_openjd
def test_openjd_run_with_an_environment_that_has_no_colorprop_fails_clearly(tmp_path, keys_dir):
    run = openjd("run", str(TEMPLATE), *template_params(keys_dir, tmp_path / "out", venv=tmp_path))
    log = finish(run)
    assert run.returncode != 0 and f"ColorpropEnvironment {tmp_path} has no bin/colorprop" in log


def test_job_bundle_files_name_template_parameters():
    yaml = pytest.importorskip("yaml")  # comes with openjd-cli

    template = yaml.safe_load(TEMPLATE.read_text())
    assert template["specificationVersion"] == "jobtemplate-2023-09"
    names = {p["name"] for p in template["parameterDefinitions"]}
    values = yaml.safe_load((TEMPLATE.parent / "parameter_values.yaml").read_text())["parameterValues"]
    assert {v["name"] for v in values if not v["name"].startswith("deadline:")} <= names
    assets = yaml.safe_load((TEMPLATE.parent / "asset_references.yaml").read_text())
    assert set(assets["assetReferences"]) == {"inputs", "outputs"}
    # every step asks for a bash-capable worker with CPUs and memory enough for a 4K shot
    for step in template["steps"]:
        req = step["hostRequirements"]
        assert {a["name"]: a["anyOf"] for a in req["attributes"]} == {"attr.worker.os.family": ["linux", "macos"]}
        amounts = {a["name"]: a["min"] for a in req["amounts"]}
        assert amounts["amount.worker.vcpu"] >= 2 and amounts["amount.worker.memory"] >= 4096


@needs_openjd
@pytest.mark.parametrize(
    "full_keys, source, server_mode",
    [((1,), "alpha", "embedded"), ((1, 24), "matte", "embedded"), ((1,), "matte", "serve")],
    ids=["one-key-alpha", "span-matte", "session-server-matte"],
)
def test_openjd_run_with_a_partial_key_equals_the_embedded_run(tmp_path, full_keys, source, server_mode):
    """PartialKeyFrames=12: frame 12's key (its alpha, or a KeyMatteName matte) colours a box over the full keys'
    result. The tasks are the full keys' only (a partial key is no segment) and every task reads the partial key;
    the frames equal one embedded run with the same keys, also when the Colorize task runs on the session's
    server (the matte read there, protocol 2)."""
    if server_mode == "serve" and not has_serve():
        pytest.skip("this colorprop has no `serve` command")
    keys_dir = tmp_path / "keys"
    keys_dir.mkdir()
    for k in full_keys:
        pixels = read_exr(SHOT / "key.0001.exr").pixels
        write_exr(keys_dir / f"key.{k:04d}.exr", pixels[..., [k % 3, (k + 1) % 3, (k + 2) % 3]], ("R", "G", "B"))
    plate = np.repeat(read_exr(SHOT / "plate.0012.exr").pixels[..., :1], 3, axis=2)
    matte = np.zeros(plate.shape[:2], np.float32)
    matte[100:180, 180:320] = 1.0
    painted = plate * np.array([0.3, 0.6, 1.0], np.float32)
    if source == "alpha":  # premultiplied, as EXR is
        write_exr(keys_dir / "key.0012.exr", np.dstack([painted * matte[..., None], matte]), ("R", "G", "B", "A"))
        partial_args, extra_params = ["--key", f"12={keys_dir}/key.0012.exr"], []
    else:
        write_exr(keys_dir / "key.0012.exr", painted, ("R", "G", "B"))
        write_exr(keys_dir / "matte.0012.exr", matte[..., None], ("Y",))
        partial_args = ["--key", f"12={keys_dir}/key.0012.exr", "--key-matte", f"12={keys_dir}/matte.0012.exr"]
        extra_params = ["-p", "KeyMatteName=matte.####.exr"]
    full_spec = f"{','.join(map(str, full_keys))}={keys_dir}/key.####.exr"
    embedded = tmp_path / "embedded"
    argv = ["colorize", "--input", str(SHOT / "plate.####.exr"), "--key", full_spec, *partial_args]
    assert main([*argv, "--method", "flow", "--progress", "none", "--output", str(embedded / "colour.####.exr")]) == 0
    farm = tmp_path / "farm"
    params = template_params(keys_dir, farm, existing="overwrite")
    params += ["-p", f"KeyFrames={','.join(map(str, full_keys))}", "-p", "PartialKeyFrames=12", *extra_params]
    params += ["-p", f"ServerMode={server_mode}"]
    run = openjd("run", str(TEMPLATE), *params)
    log = finish(run)
    assert run.returncode == 0, log
    tasks = [line for line in log.splitlines() if "colorprop task:" in line]
    assert len(tasks) == 3 * len(full_keys)  # per full key: two pass tasks and one Colorize task
    assert all(f"--key 12={keys_dir}/key.####.exr" in t for t in tasks), tasks
    assert all(("--key-matte 12=" in t) == (source == "matte") for t in tasks), tasks
    assert "--segment 12" not in log and log.count("frame(s) written") == len(full_keys)
    assert ("--server ipc://" in log) == (server_mode == "serve")
    assert_same_pixels(frames_of(farm), frames_of(embedded))


@needs_openjd
@pytest.mark.parametrize("server_mode", ["embedded", "serve"])
def test_openjd_regrade_of_a_colour_plate_by_a_partial_key_only(tmp_path, server_mode):
    """Regrade=true, KeyFrames empty, PartialKeyFrames=6: one object of a colour plate fixed by one painted key. The
    job is one segment (each step's one task; the pass tasks have nothing to do), every task gets --regrade, and the
    frames equal the embedded `colorize --regrade` bit for bit; away from the painted object they are the plate's."""
    if server_mode == "serve" and not has_serve():
        pytest.skip("this colorprop has no `serve` command")
    plate_dir, keys_dir = tmp_path / "plate", tmp_path / "keys"
    plate_dir.mkdir(), keys_dir.mkdir()
    frames = range(1, 11)
    tint = np.array([1.0, 0.8, 0.55], np.float32)  # a colour plate (half floats, as the output is written)
    for f in frames:
        write_exr(
            plate_dir / f"plate.{f:04d}.exr",
            read_exr(SHOT / f"plate.{f:04d}.exr").pixels[..., :3] * tint,
            ("R", "G", "B"),
        )
    plate = {f: read_exr(plate_dir / f"plate.{f:04d}.exr").pixels for f in frames}
    matte = np.zeros(plate[6].shape[:2], np.float32)
    matte[100:180, 180:320] = 1.0
    painted = plate[6] * np.array([0.3, 0.6, 1.0], np.float32) * matte[..., None]  # premultiplied, as EXR is
    write_exr(keys_dir / "key.0006.exr", np.dstack([painted, matte]), ("R", "G", "B", "A"))
    embedded = tmp_path / "embedded"
    argv = ["colorize", "--input", str(plate_dir / "plate.####.exr"), "--key", f"6={keys_dir}/key.0006.exr"]
    argv += ["--regrade", "--method", "flow", "--progress", "none", "--output", str(embedded / "colour.####.exr")]
    assert main(argv) == 0
    farm = tmp_path / "farm"
    params = template_params(keys_dir, farm, existing="overwrite") + ["-p", f"PlateDirectory={plate_dir}"]
    params += ["-p", "KeyFrames=", "-p", "PartialKeyFrames=6", "-p", "Regrade=true", "-p", f"ServerMode={server_mode}"]
    run = openjd("run", str(TEMPLATE), *params)
    log = finish(run)
    assert run.returncode == 0, log
    assert log.count("no forward pass to run") == log.count("no backward pass to run") == 1, log
    tasks = [line for line in log.splitlines() if "colorprop task:" in line]
    assert len(tasks) == 1 and "--regrade" in tasks[0] and "--segment" not in tasks[0], tasks
    assert ("--server ipc://" in tasks[0]) == (server_mode == "serve")
    got, want = frames_of(farm), frames_of(embedded)
    assert sorted(got) == sorted(want) == list(frames)
    away = np.ones(matte.shape, bool)
    away[40:220, 120:380] = False  # the painted box and as far as the shot moves it in 5 frames, with room
    for f in frames:
        np.testing.assert_array_equal(got[f], want[f], err_msg=f"frame {f}")
        np.testing.assert_array_equal(got[f][..., :3][away], plate[f][away], err_msg=f"frame {f}")
    inner = (slice(110, 170), slice(190, 310))
    assert np.abs(got[6][inner][..., :3] - plate[6][inner]).max() > 0.05  # the object is regraded
