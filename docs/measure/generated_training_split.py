"""The generated clips training may read: cut-free excerpts of the two comfyui packages outside validation.

    .venv/bin/python docs/measure/generated_training_split.py [CACHE] [--write]     (default .cache)

For every clip of comfyui-video (31) and comfyui-a02 (10) — packages of generated clips that no validation range
comes from (validation holds the whole comfyui-a01 package) — finds the cuts, jumps and black frames over the whole
clip by validation_split.py's own tests (``range_changes``), cuts the clip there, keeps each piece of at least
MIN_FRAMES frames from 3 frames after its cut, and leaves out a clip whose colourfulness (mean Lab chroma over its
frames at 256 px) is under MIN_CHROMA (gray turntables) or that a contact sheet showed unfit (LEFT_OUT). Prints one
line per clip; with --write, records the excerpts as split.json's ``train_generated`` list (the runs of a training
config with ``"train_lists": ["train", "train_generated"]``), which ``validation.training_entries`` guards like
``train``.
"""

from __future__ import annotations

import json
import sys
from importlib import resources
from pathlib import Path

import numpy as np

from colorprop.colour.convert import linear_rec709_to_lab
from colorprop.data.clips import clip_info, clip_path, load_split, read_frames
from colorprop.data.validation import is_validation_clip
from colorprop.measure.metrics import colourfulness

sys.path.insert(0, str(Path(__file__).parent))
from dev_split import histogram_distances  # noqa: E402
from validation_split import range_changes  # noqa: E402

PREFIXES = ("comfy_video_", "comfy_a02_")
MIN_FRAMES = 50  # a training run is 50 frames (TrainConfig.fusion_frames)
AFTER_CUT = 3  # an excerpt starts this many frames after a cut (as split.json's bbb excerpts)
MIN_CHROMA = 6.0  # Lab units: under it a clip is nearly colourless
LEFT_OUT = {  # seen on a contact sheet (first, middle and last frame of each kept clip)
    "comfy_video_video_wan_vace_inpainting-1": "a red inpainting mask is drawn over the picture",
}


def excerpts(path: Path) -> tuple[list[list[int]], dict]:
    frames = int(clip_info(path)["frames"])
    changes = range_changes(path, 0, frames, histogram_distances(path))
    breaks = sorted(set(changes["cuts"] + changes["jumps"]) | {b + 1 for b in changes["black"]} | set(changes["black"]))
    pieces, start = [], 0
    for b in breaks + [frames]:
        first = start + (AFTER_CUT if start else 0)
        if b - first >= MIN_FRAMES and not any(first <= k < b for k in changes["black"]):
            pieces.append([first, b - first])
        start = b
    return pieces, {"frames": frames, **{k: changes[k] for k in ("cuts", "jumps", "black")}}


def main(argv: list[str]) -> int:
    cache = Path(next((a for a in argv if not a.startswith("--")), ".cache"))
    split = load_split()
    entries = []
    for path in sorted(p for p in (cache / "clips").iterdir() if p.name.startswith(PREFIXES)):
        name = path.stem
        assert not is_validation_clip(name, split), name
        pieces, found = excerpts(clip_path(cache, name))
        labs, _ = read_frames(path, 0, None, 256)
        chroma = float(np.mean([colourfulness(linear_rec709_to_lab(f)) for f in labs[::5]]))
        kept = bool(pieces) and chroma >= MIN_CHROMA and name not in LEFT_OUT
        why = LEFT_OUT.get(name) or ("colourless" if pieces else f"no cut-free piece of {MIN_FRAMES} frames")
        print(
            f"{name:55s} {found['frames']:4d} frames chroma {chroma:5.1f} cuts {found['cuts']} jumps "
            f"{found['jumps']} black {len(found['black'])} -> {pieces if kept else why}"
        )
        if kept:
            entries.append({"clip": name, "excerpts": pieces, "colourfulness": round(chroma, 1)})
    total = sum(n for e in entries for _, n in e["excerpts"])
    print(f"{len(entries)} clips, {sum(len(e['excerpts']) for e in entries)} excerpts, {total} frames")
    if "--write" in argv:  # appended as the split's last key, one line an entry (the file is hand-formatted)
        path = Path(str(resources.files("colorprop.data").joinpath("split.json")))
        text = path.read_text()
        if "train_generated" in split:
            raise SystemExit(f"{path}: already has train_generated; remove it first")
        lines = ",\n".join("  " + json.dumps(e, ensure_ascii=False) for e in entries)
        text = text.rstrip()[:-1].rstrip() + ',\n "train_generated": [\n' + lines + "\n ]\n}\n"
        json.loads(text)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
