"""`colorprop suggest-keys`: where the artist should paint the next key (shot/suggest.py decides).

``--from 'out.####.exr'`` ranks the frames of a shot already coloured with ``--confidence`` by the matte in its
files (seconds; nothing is computed again). Prints a short table, or with ``--json`` one JSON object the DCC nodes
read: ``{"method" (null with --from), "from" (with --from), "keys", "count",
"suggestions": [{"frame", "expected_error", "mean_confidence", "low_fraction"}],
"frames": [{"frame", "expected_error", "mean_confidence", "low_fraction"}]}``, suggestions weakest first;
``expected_error`` = mean(1 − confidence), the expected share of wrong pixels.
"""

from __future__ import annotations

import json
import sys

from colorprop.cli.common import add_key_matte_argument, input_frames, parse_keys
from colorprop.errors import InputError


def add_parser(sub) -> None:
    from colorprop.engine.propagate import METHODS

    p = sub.add_parser(
        "suggest-keys", help="the weakest frames (lowest confidence, spread over the shot): where to paint the next key"
    )
    p.add_argument("-i", "--input", help="plate sequence, e.g. 'plate.####.exr' (required, unless --from)")
    p.add_argument(
        "--key",
        action="append",
        metavar="FRAME=PATH",
        help="a colour key frame, as for colorize (a partial one too); repeat for several keys (required, "
        "unless --from; with --from, its frame is never suggested and its file is not read)",
    )
    add_key_matte_argument(p)
    p.add_argument(
        "--from",
        dest="from_output",
        metavar="PATTERN",
        help="rank the frames of a shot already coloured with `colorize --confidence`, e.g. "
        "'out.####.exr', by the matte in its files: seconds, nothing computed again, no plate read",
    )
    p.add_argument("--frames", default=None, help="frame range, e.g. 1-100 (default: all input frames)")
    p.add_argument(
        "--allow-gaps",
        action="store_true",
        help="without --frames: use the frames on disk across any missing ones (as colorize --allow-gaps)",
    )
    p.add_argument("--count", type=int, default=3, help="how many frames to suggest")
    p.add_argument("--method", choices=METHODS, default=None, help="default: full when weights are shipped, else flow")
    p.add_argument("--colorspace", default=None, help="OCIO colour space of the plates (default: file metadata)")
    p.add_argument(
        "--key-colorspace",
        default=None,
        help="OCIO colour space of the keys (default: sRGB for integer images, the plate's for float)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object (for the DCC nodes)")
    p.set_defaults(func=run)


def run(args) -> int:
    from colorprop.engine.engine import Engine, ShotOptions
    from colorprop.shot.preflight import check_sequence_job
    from colorprop.shot.suggest import confidence_per_frame, suggest_frames

    if args.count < 1:
        raise InputError(f"--count {args.count}: must be at least 1")
    if args.from_output:
        method, keys, summary = None, sorted(parse_keys(args.key or [])), summary_of_output(args)
    else:
        if not args.input or not args.key:
            raise InputError("suggest-keys needs --input and --key (or --from an output coloured with --confidence)")
        key_paths = parse_keys(args.key)
        frames = input_frames(args.input, args.frames, allow_gaps=args.allow_gaps)
        engine = Engine.load(None)
        method = args.method or ("full" if engine.models is not None else "flow")
        options = ShotOptions.from_dict({"method": method, "colorspace": args.colorspace})
        checked = check_sequence_job(
            args.input,
            key_paths,
            None,
            sorted(frames),
            options,  # nothing is written
            key_colorspace=args.key_colorspace,
            key_mattes=parse_keys(args.key_matte or [], "--key-matte"),
        )
        for note in checked.notes:
            print(f"colorprop: note: {note}", file=sys.stderr)
        keys = sorted(checked.keys)
        summary = confidence_per_frame(engine, checked.source(), checked.keys, options)
    chosen = suggest_frames(summary, keys, args.count)
    report = {
        "method": method,
        **({"from": args.from_output} if args.from_output else {}),
        "keys": keys,
        "count": args.count,
        "suggestions": [
            {
                "frame": s.frame,
                "expected_error": round(s.expected_error, 4),
                "mean_confidence": round(s.mean_confidence, 4),
                "low_fraction": round(s.low_fraction, 4),
            }
            for s in chosen
        ],
        "frames": [
            {
                "frame": f,
                "expected_error": round(1.0 - v["mean"], 4),
                "mean_confidence": round(v["mean"], 4),
                "low_fraction": round(v["low_fraction"], 4),
            }
            for f, v in sorted(summary.items())
        ],
    }
    if getattr(args, "json", False):
        print(json.dumps(report, indent=1))
        return 0
    source = f"the matte of {args.from_output}" if args.from_output else f"method {method}"
    print(
        f"suggested key frames ({source}, keys {', '.join(map(str, keys)) or 'not given'}): "
        + (", ".join(str(s.frame) for s in chosen) or "none")
    )
    print(f"{'frame':>6s} {'expected error':>14s} {'mean conf':>9s} {'low (<0.5)':>10s}")
    for s in chosen:
        print(f"{s.frame:6d} {s.expected_error:14.1%} {s.mean_confidence:9.3f} {s.low_fraction:10.1%}")
    sys.stdout.flush()
    return 0


def summary_of_output(args) -> dict[int, dict]:
    """The confidence summaries of ``--from``'s frames (``--frames``, else every frame on disk)."""
    from colorprop.shot.preflight import check_pattern, check_plates_exist
    from colorprop.shot.suggest import confidence_of_output

    frames = input_frames(args.from_output, args.frames, allow_gaps=args.allow_gaps, option="--from")
    pattern = check_pattern(args.from_output, "--from")
    check_plates_exist(pattern, frames, lambda path: path)
    return confidence_of_output(pattern, frames)
