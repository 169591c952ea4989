"""The README's first command, `colorprop example`, run as a user runs it: the installed CLI, shipped weights."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np

from colorprop.colour import convert
from colorprop.io.exr import read_exr

ROOT = Path(__file__).resolve().parents[1]


def test_colorprop_example_colours_the_bundled_shot(tmp_path):
    exe = shutil.which("colorprop") or str(Path(__import__("sys").executable).with_name("colorprop"))
    out = tmp_path / "example"
    run = subprocess.run([exe, "example", "--output", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "method 'full'" in run.stdout  # the shipped weights are used, not the flow fallback
    plates = sorted((ROOT / "examples" / "shot").glob("plate.*.exr"))
    results = sorted(out.glob("colour.*.exr"))
    assert len(results) == len(plates) == 24
    assert (out / "contact_sheet.png").stat().st_size > 10_000
    # the last frame: colour appears, and the plate's luminance is kept
    plate, result = read_exr(plates[-1]), read_exr(results[-1])
    lab = convert.linear_rec709_to_lab(result.rgb())
    assert float(np.hypot(lab[..., 1], lab[..., 2]).mean()) > 5.0
    y_plate = convert.luminance(convert.to_linear_rec709(plate.rgb(), plate.colorspace or "Linear Rec.709 (sRGB)"))
    y_out = convert.luminance(convert.to_linear_rec709(result.rgb(), result.colorspace or "Linear Rec.709 (sRGB)"))
    assert np.allclose(y_out, y_plate, rtol=2e-3, atol=1e-3)
