"""`colorprop preview`: a contact sheet of any EXR sequence (a result, a plate), with its confidence
matte as a second row on request, and the keys with their mattes as a last row, to look at a shot without a
DCC."""

from __future__ import annotations

import sys

from colorprop.cli.common import add_key_matte_argument, input_frames, parse_keys


def add_parser(sub) -> None:
    from colorprop.shot.sheet import SHEET_COLUMNS, THUMB_WIDTH

    p = sub.add_parser(
        "preview",
        help="contact sheet of an EXR sequence (optional confidence row)",
        description="Draw evenly spaced frames of a sequence as thumbnails into one 8-bit image.",
    )
    p.add_argument("-i", "--input", required=True, help="the sequence, e.g. 'out.####.exr' (also %%04d, @@@@)")
    p.add_argument(
        "-o",
        "--output",
        required=True,
        help="the sheet to write, 8-bit sRGB, in the format its extension names: PNG, JPEG, TIFF, or any "
        "other OpenImageIO writes (an .exr holds the same display-referred values, as half floats)",
    )
    p.add_argument("--frames", help="frames to pick from: 1-100, 1-100x2 (default: every frame on disk)")
    p.add_argument(
        "--confidence",
        action="store_true",
        help="add a row with the colorprop.confidence matte (written by colorize --confidence)",
    )
    p.add_argument(
        "--key",
        action="append",
        metavar="FRAME=PATH",
        help="add a row with this key, as colorize reads it: a partial key (alpha, or --key-matte) over a "
        "checkerboard where it does not colour; repeat for several keys",
    )
    add_key_matte_argument(p)
    p.add_argument("--key-colorspace", help="colour space of the keys, as for colorize")
    p.add_argument("--colorspace", help="colour space of the sequence (default: file metadata, else Linear Rec.709)")
    p.add_argument("--columns", type=int, default=SHEET_COLUMNS, help="thumbnails per row")
    p.add_argument("--width", type=int, default=THUMB_WIDTH, help="width of one thumbnail in pixels")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from colorprop.errors import InputError
    from colorprop.io.sequence import FramePattern
    from colorprop.shot.frames import CONFIDENCE_CHANNEL
    from colorprop.shot.preflight import check_key_matte, check_mattes_have_keys, check_plates_exist, read_key
    from colorprop.shot.sheet import SheetRow, contact_sheet

    if args.columns < 1 or args.width < 16:
        raise InputError("--columns must be at least 1 and --width at least 16")
    frames = input_frames(args.input, args.frames, allow_gaps=True)  # a sheet of what is there, holes and all
    check_plates_exist(FramePattern(args.input), frames, lambda path: path)
    key_paths = parse_keys(args.key or [])
    matte_paths = {k: Path(p) for k, p in parse_keys(args.key_matte or [], "--key-matte").items()}
    check_mattes_have_keys(matte_paths, key_paths)
    keys, notes = {}, []
    for k, path in key_paths.items():
        keys[k] = read_key(Path(path), args.colorspace, args.key_colorspace, None, matte_paths.get(k))
        check_key_matte(keys[k], notes)  # the errors and notes of colorize's pre-flight
    for note in notes:
        print(f"colorprop: note: {note}", file=sys.stderr)
    rows = [SheetRow(args.input, None, args.colorspace)]
    if args.confidence:
        rows.append(SheetRow(args.input, CONFIDENCE_CHANNEL))
    sheet = contact_sheet(rows, frames, Path(args.output), args.columns, args.width, keys)
    print(f"colorprop preview: {min(args.columns, len(frames))} of {len(frames)} frames -> {sheet}", file=sys.stderr)
    return 0
