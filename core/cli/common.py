"""What several commands share: the progress printer, key specs, the frames to process, the --precision and
--device options, SIGTERM."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from colorprop.errors import InputError


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help ends with its default, unless the help already says it or there is none (a
    flag, or an option that is simply off when not given)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            return text
        return super()._get_help_string(action)


def use_help_formatter(parser: argparse.ArgumentParser) -> None:
    """``HelpFormatter`` for ``parser`` and every subcommand under it (those of extensions too)."""
    parser.formatter_class = HelpFormatter
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                use_help_formatter(sub)


class Progress:
    """A bar on a terminal; plain lines (and ``openjd_progress: N``) otherwise."""

    def __init__(self, stream=None, mode: str = "auto"):
        self.stream = stream or sys.stderr
        self.mode = ("bar" if self.stream.isatty() else "lines") if mode == "auto" else mode
        self.start = time.perf_counter()

    def __call__(self, event) -> None:
        if self.mode == "none":
            return
        pct = 100.0 * event.done / max(event.total, 1)
        state = "skipped (exists)" if event.skipped else f"{event.seconds:.2f} s"
        if self.mode == "bar":
            width = 30
            filled = int(width * event.done / max(event.total, 1))
            self.stream.write(
                f"\r[{'#' * filled}{'.' * (width - filled)}] {event.done}/{event.total} frame {event.frame} {state}   "
            )
            if event.done == event.total:
                self.stream.write("\n")
        else:
            self.stream.write(f"frame {event.frame} done ({event.done}/{event.total}, {state})\n")
            self.stream.write(f"openjd_progress: {pct:.1f}\n")
        self.stream.flush()


def parse_keys(specs: list[str], option: str = "--key") -> dict[int, str]:
    """``FRAME=PATH``, or ``FRAMES=PATTERN`` for a key sequence (``1,48=key.####.exr``: the farm form); the
    same for ``--key-matte`` (``option``: the option named in messages)."""
    from colorprop.io.sequence import FramePattern, parse_frames

    keys: dict[int, str] = {}
    for spec in specs:
        frame, sep, path = spec.partition("=")
        if not sep or not path or not frame.strip():
            raise InputError(f"{option} {spec!r}: expected FRAME=PATH, e.g. {option} 1=key.exr")
        single = frame.strip().lstrip("-").isdigit()
        try:
            pattern = None if single and Path(path).exists() else FramePattern(path)
        except InputError:  # no frame token: a plain file
            pattern = None
        if not single and pattern is None:
            raise InputError(f"{option} {spec!r}: several frames need a pattern, e.g. 1,48=key.####.exr")
        for f in parse_frames(frame):
            if f in keys:
                raise InputError(f"{option} {spec!r}: frame {f} is given twice")
            keys[f] = str(pattern.path(f)) if pattern is not None else path
    return keys


def add_key_matte_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--key-matte",
        action="append",
        metavar="FRAME=PATH",
        help="a matte for the key at FRAME (its alpha; without one, or with an opaque one, its first channel): "
        "the key colours only where it is > 0, softly at its edges (a partial key); same forms as --key",
    )


def input_frames(input_pattern: str, spec: str | None, allow_gaps: bool = False, option: str = "--input") -> list[int]:
    """The frames of ``--frames`` (``spec``), else every frame of ``input_pattern`` (option ``option``) on disk.
    InputError when none is
    (saying what padding the files of that name have, when it is another one), and, unless ``allow_gaps``, when
    frames are missing between the first and the last on disk: a hole in a plate sequence is an error, as in
    Nuke and Deadline, not something to colour across."""
    from colorprop.errors import SequenceError
    from colorprop.io.sequence import parse_frames
    from colorprop.shot.frames import format_frames
    from colorprop.shot.preflight import check_pattern

    if spec:
        return parse_frames(spec)
    pattern = check_pattern(input_pattern, option)
    frames = pattern.existing_frames()
    if not frames:
        on_disk = pattern.padding_on_disk()
        raise SequenceError(
            f"{option} {input_pattern}: matches no file"
            + (f"; the files of that name are padded to {on_disk}" if on_disk else "")
        )
    holes = [(a + 1, b - 1) for a, b in zip(frames, frames[1:]) if b - a > 1]  # never a list of a billion frames
    if holes and not allow_gaps:
        listed = format_frames([str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in holes])
        raise SequenceError(
            f"{option} {input_pattern}: frame(s) {listed} missing between {frames[0]} and "
            f"{frames[-1]} (first missing file: {pattern.path(holes[0][0])}); render them, give "
            "--frames for the frames to colour, or --allow-gaps to colour across the gap"
        )
    return frames


def on_sigterm(signum, frame) -> None:
    """A farm cancels with SIGTERM: unwind like Ctrl-C (temp file removed, exit 130)."""
    raise KeyboardInterrupt


def add_precision_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default=None,
        help="the networks' precision (default: $COLORPROP_PRECISION, else auto = bf16 where the "
        "CPU/GPU computes it natively; docs/BENCHMARKS.md)",
    )


def add_device_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--device",
        default="auto",
        help="auto | cpu | cuda | cuda:N | mps (auto: cuda when torch sees a GPU, else cpu); checked "
        "before anything runs (docs/SERVER.md, 'A GPU server')",
    )
