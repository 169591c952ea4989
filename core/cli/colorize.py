"""`colorprop colorize`: colour an EXR sequence from key frame(s), here or on a server (``--server``)."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

from colorprop.cli.common import (
    Progress,
    add_device_argument,
    add_precision_argument,
    add_key_matte_argument,
    input_frames,
    on_sigterm,
    parse_keys,
)
from colorprop.errors import InputError


def add_parser(sub) -> None:
    from colorprop.engine.engine import ShotOptions
    from colorprop.engine.propagate import METHODS

    default = ShotOptions()
    p = sub.add_parser(
        "colorize",
        help="colour an EXR sequence from key frame(s)",
        description="Colour every frame of a plate sequence from one or more colour keys.",
    )
    p.add_argument("-i", "--input", required=True, help="plate sequence, e.g. 'plate.####.exr' (also %%04d, @@@@)")
    p.add_argument(
        "--key",
        action="append",
        required=True,
        metavar="FRAME=PATH",
        help="a colour key frame (EXR, PNG, TIFF, JPEG, DPX, ...); repeat for several keys, or "
        "FRAMES=PATTERN (1,48=key.####.exr); a key with alpha colours only where alpha > 0 (a partial key)",
    )
    out = p.add_mutually_exclusive_group(required=True)
    out.add_argument(
        "-o",
        "--output",
        metavar="PATTERN",
        help="output EXR sequence, e.g. 'out.####.exr'; never an input or a key (required, unless --list-segments)",
    )
    out.add_argument(
        "--list-segments",
        action="store_true",
        help="print the independent key-to-key segments as JSON and exit (instead of --output)",
    )
    p.add_argument(
        "--frames",
        help="frame range: 1-100, 1-100x2, 1-10,20-30 (default: all input frames; a frame "
        "missing between the first and the last is an error, see --allow-gaps)",
    )
    p.add_argument(
        "--allow-gaps",
        action="store_true",
        help="without --frames: colour the frames on disk across any missing ones (the colour is "
        "carried from the frame before a gap to the one after it)",
    )
    p.add_argument(
        "--method",
        choices=METHODS,
        default=default.method,
        help="full | local | global (ablations) | flow (classical DIS baseline)",
    )
    p.add_argument(
        "--colorspace",
        help="OCIO colour space of the plates (and of float keys) (default: file "
        "metadata, else 'Linear Rec.709 (sRGB)'); names from $OCIO when set",
    )
    p.add_argument(
        "--key-colorspace",
        help="OCIO colour space of the keys (default: sRGB for 8/16-bit integer images such as PNG, "
        "JPEG, TIFF, DPX; the plate's for float images such as EXR)",
    )
    add_key_matte_argument(p)
    p.add_argument(
        "--working-width",
        type=int,
        default=default.working_width,
        help="width at which the networks run; above the plate width, the plate width is used",
    )
    p.add_argument("--upsample", choices=("guided", "bilinear"), default=default.upsample, help="chroma upsampling")
    p.add_argument(
        "--carry",
        choices=("full", "working"),
        default=default.carry,
        help="carry the last frame's colour at plate resolution (full: sharper) or at the working "
        "width (the networks' size)",
    )
    p.add_argument("--confidence", action="store_true", help="write a colorprop.confidence channel")
    p.add_argument(
        "--regrade", action="store_true", help="the key is a regrade of a colour plate: propagate the change only"
    )
    p.add_argument(
        "--skip-existing",
        action="store_true",
        help="resume: keep complete output frames already on disk (of the right size and channels)",
    )
    p.add_argument("--pixel-type", choices=("half", "float"), default="half", help="output EXR pixel type")
    p.add_argument(
        "--weights", help="weights folder (default: $COLORPROP_WEIGHTS, else the shipped core/engine/shipped_weights/)"
    )
    add_device_argument(p)
    add_precision_argument(p)
    p.add_argument(
        "--server",
        metavar="ADDRESS",
        help="run on a colorprop server, e.g. tcp://127.0.0.1:5557 (default: here, embedded)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds per try for a server answer (default: the client's 1.2 s; 3 tries, so a dead "
        "server is reported within 5 s; a live, slow one is waited for)",
    )
    p.add_argument(
        "--progress",
        choices=("auto", "bar", "lines", "none"),
        default="auto",
        help="auto: a bar on a terminal, lines (with openjd_progress) otherwise",
    )
    p.add_argument(
        "--segment",
        type=int,
        metavar="KEY",
        help="colour only the segment of this key frame (a farm task; see --list-segments)",
    )
    p.add_argument(
        "--state-dir",
        metavar="DIR",
        help="keep the forward and backward passes between two keys in this folder (float EXRs, "
        "removed once the span's frames are written); a killed run resumes from them, and "
        "--segment KEY --state-dir DIR blends what --direction tasks stored (default: a "
        "temporary folder)",
    )
    p.add_argument(
        "--cache",
        metavar="DIR",
        help="keep what no key changes (flows, features) and each frame's result in this folder, so a second run "
        "after a key edit computes only what the edit changes and writes only the frames that change (bit for bit "
        "the run without it; safe to delete; docs/KEYS.md, 'Re-runs')",
    )
    p.add_argument(
        "--cache-max-gb",
        type=float,
        default=8.0,
        help="with --cache: the folder's bound; the least recently used entries go beyond it",
    )
    p.add_argument(
        "--direction",
        choices=("forward", "backward"),
        help="with --segment and --state-dir: only run this pass of the segment's span to the next "
        "key and store it, writing no output frame (a farm task; docs/FARM.md)",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    from colorprop.engine.devices import check_device
    from colorprop.engine.engine import ShotOptions
    from colorprop.shot.preflight import check_mattes_have_keys

    if not args.server:  # (a server runs on its own device)
        check_device(args.device)
    keys = parse_keys(args.key)
    args.key_mattes = parse_keys(args.key_matte or [], "--key-matte")
    check_mattes_have_keys(args.key_mattes, keys)
    options = ShotOptions.from_dict(
        {
            "method": args.method,
            "colorspace": args.colorspace,
            "working_width": args.working_width,
            "upsample": args.upsample,
            "carry": args.carry,
            "write_confidence": args.confidence,
            "regrade": args.regrade,
        }
    )
    frames = input_frames(args.input, args.frames, allow_gaps=args.allow_gaps)
    # The segments are cut at the full keys only (partial keys are layers over them): read which keys are.
    full = full_key_frames(keys, args.key_mattes) if args.list_segments or args.segment is not None else sorted(keys)
    if args.list_segments:
        import json

        from colorprop.shot.segments import key_segments

        if not full:
            raise InputError(
                "--list-segments: every key is partial, and segments are cut at full keys; colour the shot in one "
                "task (no --segment)"
            )
        segments = key_segments(sorted(frames), full)
        print(
            json.dumps(
                {"keys": ",".join(str(s.key) for s in segments), "segments": [s.to_json() for s in segments]}, indent=2
            )
        )
        return 0
    from colorprop.shot.segments import check_segment_request, key_segment

    check_segment_request(args.segment, args.direction, args.state_dir, full)  # before the output folder is made
    if args.direction is not None:
        owned = key_segment(sorted(frames), full, args.segment)
        if owned is not None and len(owned.keys) == 1:  # the last key: no span to a next key, no pass (a farm no-op)
            print(
                f"colorprop: segment {args.segment} has no next key: no {args.direction} pass to run", file=sys.stderr
            )
            return 0
    if args.server and (args.direction is not None or args.state_dir is not None):
        raise InputError(
            "--direction/--state-dir with --server: the server runs whole shots; run the passes embedded (no --server)"
        )
    if args.server and args.cache is not None:
        raise InputError("--cache with --server: the server keeps its own; run embedded (no --server) to use DIR")
    if args.cache_max_gb <= 0:
        raise InputError(f"--cache-max-gb {args.cache_max_gb}: must be above 0")
    if args.segment is not None and args.server:
        owned = key_segment(sorted(frames), full, args.segment)
        if owned.frames != sorted(frames):
            raise InputError(
                f"--segment {args.segment} with --server: the server runs whole shots only; "
                "run this segment embedded (no --server)"
            )
        args.segment = None  # the segment is the whole shot
    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        report = colorize(args, keys, frames, options, Progress(mode=args.progress))
    finally:
        signal.signal(signal.SIGTERM, previous)
    for note in report.notes:
        print(f"colorprop: note: {note}", file=sys.stderr)
    if args.direction is not None:
        print(
            f"colorprop: {args.direction} pass of segment {args.segment}: {len(report.frames_written)} frame(s) "
            f"stored, {len(report.frames_skipped)} kept (already stored), {report.seconds:.1f} s, method "
            f"{options.method}",
            file=sys.stderr,
        )
        return 0
    unchanged = f" ({len(report.frames_unchanged)} unchanged since the last run)" if args.cache else ""
    print(
        f"colorprop: {len(report.frames_written)} frame(s) written, {len(report.frames_skipped)} skipped "
        f"(already complete){unchanged}, {report.seconds:.1f} s, method {options.method}",
        file=sys.stderr,
    )
    return 0


def full_key_frames(keys: dict[int, str], key_mattes: dict[int, str]) -> list[int]:
    """The frames of the full keys, ascending: a key with a --key-matte, or with an alpha that is not opaque
    everywhere, is partial (``frames.load_key``)."""
    from colorprop.shot.preflight import read_key

    mattes = {k: Path(p) for k, p in key_mattes.items()}
    return sorted(k for k, path in keys.items() if not read_key(Path(path), None, None, None, mattes.get(k)).is_partial)


def colorize(args, keys, frames, options, progress):
    if args.server:
        from colorprop.cli.plugins import remote_colorizer  # zmq lives outside core

        return remote_colorizer()(
            args.server,
            args.input,
            keys,
            args.output,
            frames,
            options,
            progress,
            skip_existing=args.skip_existing,
            timeout_s=args.timeout,
            pixel_type=args.pixel_type,
            key_colorspace=args.key_colorspace,
            key_mattes=args.key_mattes,
        )
    from colorprop.engine.engine import Engine
    from colorprop.shot.cache import ShotCache
    from colorprop.shot.pipeline import colorize_sequence

    cache = ShotCache(args.cache, max_bytes=int(args.cache_max_gb * 1024**3)) if args.cache else None
    engine = Engine.load(Path(args.weights) if args.weights else None, device=args.device, precision=args.precision)
    return colorize_sequence(
        engine,
        args.input,
        keys,
        args.output,
        frames,
        options,
        progress=progress,
        skip_existing=args.skip_existing,
        pixel_type=args.pixel_type,
        segment=args.segment,
        key_colorspace=args.key_colorspace,
        direction=args.direction,
        state_dir=Path(args.state_dir) if args.state_dir else None,
        key_mattes=args.key_mattes,
        cache=cache,
    )
