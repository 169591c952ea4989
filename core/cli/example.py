"""`colorprop example`: colour the bundled example shot and draw a contact sheet.

Output: <out>/colour.####.exr and <out>/contact_sheet.png (plate | result per row).
"""

from __future__ import annotations

import sys
from pathlib import Path


def add_parser(sub) -> None:
    from colorprop.engine.propagate import METHODS

    p = sub.add_parser("example", help="colour the bundled example shot (writes EXRs and a contact sheet)")
    p.add_argument("-o", "--output", default="out/example", help="output folder")
    p.add_argument("--method", choices=METHODS, default=None, help="default: full when weights are shipped, else flow")
    p.set_defaults(func=lambda args: run_example(args.output, args.method))


def run_example(output: str, method: str | None = None) -> int:
    from colorprop.cli.common import Progress
    from colorprop.data.example import example_shot_dir
    from colorprop.engine.engine import Engine, ShotOptions
    from colorprop.io.sequence import FramePattern
    from colorprop.shot.pipeline import colorize_sequence
    from colorprop.shot.sheet import SheetRow, contact_sheet

    shot = example_shot_dir()
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    engine = Engine.load()
    method = method or ("full" if "full" in engine.methods() else "flow")
    if method == "flow" and "full" not in engine.methods():
        print(f"colorprop: no trained weights found ({engine.weights_error}); using the flow baseline", file=sys.stderr)
    plate = str(shot / "plate.####.exr")
    frames = FramePattern(plate).existing_frames()
    report = colorize_sequence(
        engine,
        plate,
        {1: str(shot / "key.0001.exr")},
        str(out / "colour.####.exr"),
        frames,
        ShotOptions(method=method),
        progress=Progress(),
    )
    sheet = contact_sheet([SheetRow(plate), SheetRow(str(out / "colour.####.exr"))], frames, out / "contact_sheet.png")
    print(
        f"colorprop example: {len(report.frames_written)} frames with method '{method}' in "
        f"{report.seconds:.1f} s -> {out}/colour.####.exr, contact sheet {sheet}"
    )
    return 0
