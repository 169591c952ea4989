"""`colorprop bench`: seconds per frame for each stage and end to end, peak memory, at 480p..4K.

For every plate size a synthetic shot is written (textured ACEScg RGBA half-float EXRs, zip, moving
a few pixels a frame, so DIS and the matching do real work). Then, for each method (the learned
``full`` when weights load, and the classical ``flow`` as the ratio reference, always in the same
run) and each device, one **child process** measures:

* stages, one frame at a time in the product's own functions: ``exr_read`` (read_exr),
  ``colour_in`` (plate space -> linear -> L, L at the working size), ``dis_flow`` (DIS pre-alignment),
  ``F_s``, ``F_f`` (the networks, as Propagator.step runs them for `full`), ``upsample`` (chroma and
  confidence to full resolution), ``colour_out`` (Lab -> plate space, and the carried state back at
  the working size), ``exr_write`` (write_exr of R,G,B + pass-through channels);
* ``end_to_end``: ``run_shot`` on the EXR sequence, as ``colorprop colorize`` runs it (reading and
  writing overlapped with compute): the interval between successive finished frames; ``end_to_end_cpu``: the
  process's CPU time (every thread) over those intervals, and ``cpu_use`` the one over the other (the cores kept
  busy: at the usable CPUs the run is CPU-bound, below them something waits);
* ``peak_rss_mib``: the child's ru_maxrss, so sizes and methods never share a peak.

The child runs the thread policy (engine/threads.py) with the count the command decided, as every command
does. With ``neighbour=True`` (``--busy-neighbour``) each row is measured twice, idle and then beside a
CPU-bound process pinned to one core (measure/neighbour.py), and ``busy_to_idle`` gives the ratio of the
two ``end_to_end`` times.

Each figure is the median over ``repeats`` frames after one warm-up frame. Timings are not
assertions: they depend on the machine and on what else runs on it (recorded in ``machine``).
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from colorprop.measure.bench_setup import PLATE_NAME, PLATE_SPACE, machine_info, write_plates

STAGES = ("exr_read", "colour_in", "dis_flow", "F_s", "F_f", "upsample", "colour_out", "exr_write")  # full runs no F_w
BUSY = "busy neighbour"  # a row's load beside the --busy-neighbour process (else "idle")


# ---------------------------------------------------------------- one measurement (child process)


def measure(
    folder: str,
    method: str,
    device: str,
    repeats: int,
    working_width: int | None,
    weights: str | None,
    precision: str = "fp32",
    threads: int | None = None,
) -> dict:
    """Stage and end-to-end seconds per frame of ``method`` on the shot in ``folder`` (see module doc), with
    ``threads`` compute threads (None: as the thread policy decides)."""
    from colorprop.engine.threads import apply_thread_policy

    apply_thread_policy(threads)  # before torch loads, as `colorprop` does before each command
    import torch

    from colorprop.engine.engine import Engine, ShotOptions
    from colorprop.io.exr import read_exr
    from colorprop.shot.frames import ExrSequenceSink, ExrSequenceSource, load_key, overlapped_io
    from colorprop.shot.pipeline import run_shot
    from colorprop.shot.working import ShotColour
    from colorprop.engine.propagate import Propagator, StageClock

    engine = Engine.load(
        Path(weights) if weights else None, device=device, require=method != "flow", precision=precision
    )
    options = (
        ShotOptions(method=method) if working_width is None else ShotOptions(method=method, working_width=working_width)
    )
    frames = list(range(1, repeats + 3))  # key, warm-up, repeats
    plates = str(Path(folder) / PLATE_NAME)
    key = load_key(Path(folder) / "key.exr", None)
    out = Path(folder) / f"out-{method}-{device}"
    torch_device = engine.models.device if engine.models is not None else torch.device("cpu")

    # Stages, frame by frame, in the pipeline's own functions.
    source = ExrSequenceSource(plates, frames)
    sink = ExrSequenceSink(str(out / "stages.####.exr"))
    stage_rows: list[dict[str, float]] = []
    with torch.inference_mode():
        shot = ShotColour(options, source.read(frames[0]))
        key_prep = shot.prepare(source.read(frames[0]))
        prev_full = shot.key_ab(key)
        propagator = Propagator(method, key_prep.L_work, shot.to_work(prev_full), engine.models)
        for frame in frames[1:]:
            clock = StageClock(torch_device)
            propagator.clock = clock
            with clock("exr_read"):
                plate = source.read(frame)
            with clock("colour_in"):
                prep = shot.prepare(plate)
            pending = propagator.step(prep.L_work)
            ab, confidence, _ = pending.colour
            with clock("upsample"):
                ab_full, conf_full = shot.to_full(ab, confidence, prep.L_full, prev_full, pending.flow)
            with clock("colour_out"):
                result = shot.finish(prep, ab_full, conf_full)
                prev_full = shot.state_ab(result.rgb, sink.pixel_dtype)
            with clock("exr_write"):
                sink.write(frame, result)
            propagator.accept(pending, shot.to_work(prev_full))
            stage_rows.append(clock.seconds)
    measured = stage_rows[1:]  # the first propagated frame is the warm-up
    stages = {
        name: (statistics.median(r.get(name, 0.0) for r in measured) if name in measured[0] else None)
        for name in STAGES
    }

    # End to end, as `colorprop colorize` runs it.
    finished: list[tuple[float, float]] = []  # (wall, process CPU) as each frame is done
    start = time.perf_counter()
    with overlapped_io(ExrSequenceSource(plates, frames), ExrSequenceSink(str(out / "shot.####.exr"))) as io:
        report = run_shot(
            engine,
            *io[:1],
            {frames[0]: key},
            options,
            io[1],
            progress=lambda ev: finished.append((time.perf_counter(), time.process_time())),
        )
    total = time.perf_counter() - start
    # frame k done -> frame k+1 done; drop the key -> warm-up interval
    intervals, cpu_intervals = (np.diff([f[i] for f in finished])[1:] for i in (0, 1))
    assert len(report.frames_written) == len(frames)
    check = read_exr(out / f"shot.{frames[-1]:04d}.exr")  # the written frame is a whole plate
    return {
        "method": method,
        "device": str(torch_device) if method != "flow" else "cpu",
        "precision": precision if method != "flow" else "fp32",
        "working_size": list(shot.work_size),
        "upsample": options.upsample,
        "stages": stages,
        "stage_sum": float(sum(v for v in stages.values() if v is not None)),
        "end_to_end": float(np.median(intervals)),
        "end_to_end_cpu": float(np.median(cpu_intervals)),
        "cpu_use": float(np.sum(cpu_intervals) / np.sum(intervals)),
        "end_to_end_mean_with_key": total / len(frames),
        "frames": len(frames),
        "channels_out": list(check.channels),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "torch_threads": torch.get_num_threads(),
    }


def _child_main(argv: list[str]) -> int:
    request = json.loads(argv[0])
    print("BENCH-RESULT " + json.dumps(measure(**request)))
    return 0


def run_child(request: dict, timeout: float | None = None) -> dict:
    """``measure`` in a fresh interpreter, so its peak RSS is its own."""
    proc = subprocess.run(
        [sys.executable, "-m", "colorprop.measure.bench", json.dumps(request)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH-RESULT "):
            return json.loads(line[len("BENCH-RESULT ") :])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-8:]
    raise RuntimeError(
        f"bench child {request['method']}/{request['device']} failed (exit {proc.returncode}): " + "\n".join(tail)
    )


# ---------------------------------------------------------------- the command


def parse_sizes(text: str) -> list[tuple[int, int]]:
    from colorprop.errors import InputError

    sizes = []
    for item in text.split(","):
        try:
            w, h = (int(v) for v in item.strip().lower().split("x"))
        except ValueError:
            raise InputError(f"--sizes: {item!r} is not WIDTHxHEIGHT") from None
        if w < 16 or h < 16:
            raise InputError(f"--sizes: {item!r} is too small (at least 16x16)")
        sizes.append((w, h))
    return sizes


def bench(
    sizes: list[tuple[int, int]],
    repeats: int = 5,
    device: str = "auto",
    methods: list[str] | None = None,
    working_width: int | None = None,
    weights: str | None = None,
    precisions: tuple[str, ...] = ("fp32",),
    log=print,
    threads: int | None = None,
    neighbour: bool = False,
) -> dict:
    """Every (size, method, device, precision) row; see the module docstring. ``methods`` default: full
    (when weights load) and flow. ``precisions`` apply to the learned methods (flow has no networks).
    ``threads``: the children's compute threads (None: the thread policy's default). ``neighbour``: each row
    idle, then again beside a busy neighbour (rows' ``load``; ``busy_to_idle``)."""
    import torch

    from colorprop.engine.engine import Engine
    from colorprop.engine.threads import decide_threads
    from colorprop.measure.neighbour import BusyNeighbour

    if methods is None:
        engine = Engine.load(Path(weights) if weights else None)
        methods = ["full", "flow"] if engine.models is not None else ["flow"]
        if engine.models is None:
            log(f"colorprop bench: no weights ({engine.weights_error}); timing flow only")
        del engine
    devices = ["cpu"]
    if device in ("auto", "cuda") and torch.cuda.is_available():
        devices = ["cuda", "cpu"] if device == "auto" else ["cuda"]
    elif device not in ("auto", "cpu"):
        devices = [device]
    from colorprop.engine.weights import default_weights_dir

    results = {
        "command": "colorprop bench",
        "repeats": repeats,
        "machine": machine_info(),
        "weights": str(Path(weights) if weights else default_weights_dir()),
        "plate": {"colorspace": PLATE_SPACE, "channels": "RGBA", "pixel_type": "half", "compression": "zip"},
        "stages": list(STAGES),
        "threads": decide_threads(threads).count,
        "rows": [],
        "ratio_to_flow": {},
    }
    if neighbour:
        results["busy_to_idle"], results["neighbour"] = {}, {"cpu": None, "cpu_share": []}
    for w, h in sizes:
        with tempfile.TemporaryDirectory(prefix=f"colorprop-bench-{w}x{h}-") as folder:
            t0 = time.perf_counter()
            write_plates(Path(folder), w, h, repeats + 2)
            log(f"colorprop bench: {w}x{h}: plates written ({time.perf_counter() - t0:.1f} s)")
            for method in methods:
                for dev, prec in (
                    [("cpu", "fp32")] if method == "flow" else [(d, p) for d in devices for p in precisions]
                ):
                    request = {
                        "folder": folder,
                        "method": method,
                        "device": dev,
                        "repeats": repeats,
                        "working_width": working_width,
                        "weights": weights,
                        "precision": prec,
                        "threads": results["threads"],
                    }
                    row = {"size": f"{w}x{h}", "width": w, "height": h, "load": "idle", **run_child(request)}
                    results["rows"].append(row)
                    log(format_row(row))
                    if neighbour:
                        # bounded: the neighbour ends by itself should this process die mid-row
                        with BusyNeighbour(seconds=3600) as busy:
                            busy_row = {**row, "load": BUSY, **run_child(request)}
                        results["neighbour"]["cpu"] = busy.cpu
                        results["neighbour"]["cpu_share"].append(busy.cpu_share)
                        results["rows"].append(busy_row)
                        results["busy_to_idle"][row_key(row)] = busy_row["end_to_end"] / row["end_to_end"]
                        log(format_row(busy_row))
        for load in ("idle", BUSY):
            flow = next(
                (r for r in results["rows"] if r["size"] == f"{w}x{h}" and r["method"] == "flow" and r["load"] == load),
                None,
            )
            for r in results["rows"]:
                if flow is not None and r["size"] == f"{w}x{h}" and r["method"] != "flow" and r["load"] == load:
                    results["ratio_to_flow"][row_key(r)] = r["end_to_end"] / flow["end_to_end"]
    results["machine"]["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    return results


def row_key(row: dict) -> str:
    """size/method/device/precision, and ``/busy neighbour`` for a row measured beside one."""
    key = f"{row['size']}/{row['method']}/{row['device']}/{row.get('precision', 'fp32')}"
    return key if row.get("load", "idle") == "idle" else f"{key}/{row['load']}"


def format_row(row: dict) -> str:
    return (
        f"  {row['size']:>10s} {row['method']:5s} {row['device']:4s} {row.get('precision', 'fp32')} "
        f"work {row['working_size'][0]}x"
        f"{row['working_size'][1]}: {row['end_to_end']:.3f} s/frame end to end, "
        f"peak {row['peak_rss_mib']:.0f} MiB" + ("" if row.get("load", "idle") == "idle" else f", {row['load']}")
    )


def format_table(results: dict) -> str:
    """Markdown: one row per (size, method, device); medians in seconds per frame."""
    head = (
        ["size", "method", "device", "precision", "working"]
        + list(STAGES)
        + ["stage sum", "end to end", "× flow", "peak RSS MiB"]
    )
    loads = "busy_to_idle" in results  # a --busy-neighbour run: which load, and busy / idle
    head += ["load", "× idle"] if loads else []
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results["rows"]:
        ratio = results["ratio_to_flow"].get(row_key(r))
        cells = [
            r["size"],
            r["method"],
            r["device"],
            r.get("precision", "fp32"),
            f"{r['working_size'][0]}x{r['working_size'][1]}",
        ]
        cells += ["–" if r["stages"][s] is None else f"{r['stages'][s]:.3f}" for s in STAGES]
        cells += [
            f"{r['stage_sum']:.3f}",
            f"**{r['end_to_end']:.3f}**",
            "1" if r["method"] == "flow" else (f"{ratio:.2f}" if ratio else "–"),
            f"{r['peak_rss_mib']:.0f}",
        ]
        if loads:
            busy = results["busy_to_idle"].get(row_key({**r, "load": "idle"}))
            cells += [r["load"], "1" if r["load"] == "idle" else (f"{busy:.2f}" if busy else "–")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_bench_command(args) -> int:
    sizes = parse_sizes(args.sizes)
    if args.repeats < 1:
        from colorprop.errors import InputError

        raise InputError(f"--repeats: {args.repeats}; at least 1")
    methods = [m.strip() for m in args.methods.split(",")] if getattr(args, "methods", None) else None
    precisions = tuple(p.strip() for p in getattr(args, "precisions", "fp32").split(","))
    results = bench(
        sizes,
        args.repeats,
        args.device,
        methods,
        getattr(args, "working_width", None),
        getattr(args, "weights", None),
        precisions,
        log=lambda s: print(s, file=sys.stderr),
        threads=getattr(args, "threads", None),
        neighbour=getattr(args, "busy_neighbour", False),
    )
    print(format_table(results))
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"colorprop bench: wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
