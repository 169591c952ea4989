"""`colorprop eval --split validation|dev`: which ranges are scored, and the per-range report against flow."""

import json

import numpy as np
import pytest
from PIL import Image

from colorprop.cli.main import main as cli_main
from colorprop.data import clips as clips_mod
from colorprop.errors import InputError
from colorprop.measure.eval_report import format_per_range


def _moving_clip(path, frames=8, size=(48, 32)):
    """An animated WebP: a red square sliding over a blue-green gradient."""
    h, w = size[1], size[0]
    base = np.zeros((h, w, 3), np.uint8)
    base[..., 1] = np.linspace(40, 200, w, dtype=np.uint8)[None]
    base[..., 2] = 150
    images = []
    for k in range(frames):
        f = base.copy()
        f[8:20, 4 + 2 * k : 16 + 2 * k] = (220, 40, 30)
        images.append(Image.fromarray(f))
    images[0].save(path, save_all=True, append_images=images[1:], duration=40, lossless=True)


@pytest.fixture
def tiny_splits(tmp_path, monkeypatch):
    (tmp_path / "clips").mkdir()
    _moving_clip(tmp_path / "clips" / "seen.webp")
    _moving_clip(tmp_path / "clips" / "unseen.webp", frames=9)
    split = {
        "dev": [{"clip": "seen", "start_frame": 0, "num_frames": 8, "width": 48}],
        "validation": [{"clip": "unseen", "start_frame": 1, "num_frames": 8, "width": 48}],
        "train": [],
    }
    monkeypatch.setattr(clips_mod, "load_split", lambda: split)
    return tmp_path


@pytest.mark.parametrize("split, scored", [("validation", "unseen@1"), ("dev", "seen@0")])
def test_eval_scores_the_ranges_of_the_split_it_is_given(tiny_splits, split, scored, capsys):
    out = tiny_splits / f"{split}.json"
    code = cli_main(
        [
            "eval",
            "--split",
            split,
            "--methods",
            "gray,flow",
            "--n",
            "3,7",
            "--cache",
            str(tiny_splits),
            "--json",
            str(out),
        ]
    )
    assert code == 0
    results = json.loads(out.read_text())
    assert results["split"] == split and list(results["clips"]) == [scored]
    printed = capsys.readouterr().out
    assert ("unseen sources" if split == "validation" else "seen sources") in printed


def test_eval_names_a_range_that_is_not_in_the_split(tiny_splits, capsys):
    code = cli_main(
        [
            "eval",
            "--split",
            "validation",
            "--clips",
            "seen@0",
            "--methods",
            "flow",
            "--cache",
            str(tiny_splits),
            "--json",
            str(tiny_splits / "x.json"),
        ]
    )
    assert code == InputError.exit_code
    assert "--clips: no range seen@0 in the validation split; its ranges: unseen@1" in capsys.readouterr().err
    assert not (tiny_splits / "x.json").exists()


def test_per_range_report_names_the_losers():
    def clip(flow, full, apart=False):
        return {
            "report_apart": apart,
            "methods": {
                "flow": {"mean_first_n": dict(zip(("10", "50"), flow))},
                "full": {"mean_first_n": dict(zip(("10", "50"), full))},
            },
        }

    results = {
        "ns": [10, 50],
        "clips": {
            "a@0": clip((40.0, 35.0), (40.5, 36.0)),
            "b@0": clip((38.0, 30.0), (38.1, 29.6)),
            "c@0": clip((45.0, 44.0), (44.0, 44.0), apart=True),
        },
    }
    text = format_per_range(results, ["flow", "full"])
    assert "| a@0 | 40.00 | 40.50 | 35.00 | 36.00 | +0.50 | +1.00 | +0.50 |" in text
    assert text.strip().endswith("full more than 0.3 dB below flow at some N: b@0 -0.40, c@0 (apart) -1.00")
    assert format_per_range(results, ["full"]) == ""
