"""Quality against the working width: what colouring ~1080p dev clips at a smaller working width costs in
Lab-PSNR against the same run at full resolution (docs/BENCHMARKS.md)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np


QUALITY_CLIPS = {"bbb@4340": 1920, "pose2sim_t2_cam01@0": 1080}  # dev ranges decoded at ~1080p (bbb from 720p)


def working_width_quality(
    widths: list[int],
    method: str = "full",
    frames: int = 10,
    upsamples: tuple[str, ...] = ("guided",),
    carries: tuple[str, ...] = ("full", "working"),
    cache: str | None = None,
    log=print,
) -> dict:
    """Lab-PSNR (mean over the ``frames`` frames after key frame 1) of dev clips at ~1080p coloured at
    each working width, against the same run at full resolution (the width of the clip)::

        python -c "from colorprop.measure.width_quality import working_width_quality as q; q([480, 640, 960], 'flow')"

    Rows: each width × upsampling × carry (``ShotOptions.carry``), labelled ``<width>/<upsample>/carry <c>``.
    """
    from colorprop.colour import convert
    from colorprop.data.clips import clip_path, dev_entry_name, load_split, read_frames
    from colorprop.engine.engine import Engine, ShotOptions
    from colorprop.measure.metrics import lab_psnr
    from colorprop.shot.frames import ArraySink, ArraySource, KeyImage
    from colorprop.shot.pipeline import run_shot

    engine = Engine.load(None)
    space = "Linear Rec.709 (sRGB)"
    dev = {dev_entry_name(e): e for e in load_split()["dev"]}  # a clip may have several dev ranges
    cache = cache or os.environ.get("COLORPROP_CACHE") or str(Path(__file__).resolve().parents[2] / ".cache")
    results: dict = {"method": method, "frames": frames, "clips": {}}
    for entry_name, width in QUALITY_CLIPS.items():
        name = dev[entry_name]["clip"]
        clip, _ = read_frames(clip_path(cache, name), dev[entry_name]["start_frame"], frames + 1, width)
        true = [convert.linear_rec709_to_lab(f) for f in clip]
        gray = {i + 1: np.repeat(convert.luminance(f)[..., None], 3, axis=2) for i, f in enumerate(clip)}
        rows = {}
        runs = [(width, "guided", "full")] + [(w, u, c) for w in widths for u in upsamples for c in carries]
        for ww, up, carry in runs:
            t0 = time.perf_counter()
            sink = ArraySink()
            run_shot(
                engine,
                ArraySource(gray, colorspace=space),
                {1: KeyImage(clip[0], space)},
                ShotOptions(method=method, colorspace=space, working_width=ww, upsample=up, carry=carry),
                sink,
            )
            psnr = [
                lab_psnr(convert.linear_rec709_to_lab(sink.results[f].rgb), true[f - 1])
                for f in sorted(sink.results)
                if f != 1
            ]
            label = "full" if ww == width else f"{ww}/{up}/carry {carry}"
            rows[label] = {"psnr": float(np.mean(psnr)), "seconds_per_frame": (time.perf_counter() - t0) / len(clip)}
            log(f"  {name:20s} {method:5s} {label:14s} {rows[label]['psnr']:7.3f} dB")
        results["clips"][name] = {"size": list(clip[0].shape[1::-1]), "rows": rows}
    labels = next(iter(results["clips"].values()))["rows"]
    results["mean_minus_full_db"] = {
        label: float(np.mean([c["rows"][label]["psnr"] - c["rows"]["full"]["psnr"] for c in results["clips"].values()]))
        for label in labels
    }
    return results
