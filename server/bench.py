"""Server overhead against the embedded engine: same shot, same machine, median of N runs.

    python -m colorprop_server.bench --width 1280 --height 720 --frames 8 --repeats 5 --json out/bench_server.json

The server runs in its own process (as in production) on 127.0.0.1; the client streams frames
in-band and receives every result. Overhead = (server time - embedded time) / embedded time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .security import free_loopback_port


def _proc_cpu_s(pid: int) -> float:
    """user+system CPU seconds of a process (Linux /proc), all its threads."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def _shot(width: int, height: int, frames: int, seed: int = 0) -> tuple[dict, dict]:
    """A smooth moving pattern (optical flow has something to follow) and a colour key."""
    import numpy as np

    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    plates = {}
    for i in range(1, frames + 1):
        v = 0.5 + 0.4 * np.sin((x + 3 * i) / 37.0) * np.cos((y + 2 * i) / 23.0)
        plates[i] = np.repeat(v[..., None], 3, axis=2).astype(np.float32)
    key = plates[1] * np.array([1.0, 0.6, 0.3], np.float32)
    return plates, {1: key}


def bench_server_overhead(width: int = 1280, height: int = 720, frames: int = 8, repeats: int = 5,
                          method: str = "flow", json_path: str | None = None, address: str | None = None,
                          timeout_s: float = 60.0) -> dict[str, Any]:
    """Median wall time of one shot, embedded vs through a server; writes JSON when asked."""
    import numpy as np

    from colorprop.engine.engine import Engine, ShotOptions
    from colorprop.shot.pipeline import ArraySink, ArraySource, KeyImage, run_shot
    from colorprop_client.client import Client, colorize_arrays

    plates, keys = _shot(width, height, frames)
    engine = Engine.load()
    options = ShotOptions.from_dict({"method": method})
    proc = None
    if address is None:
        address = f"tcp://127.0.0.1:{free_loopback_port()}"
        proc = subprocess.Popen([sys.executable, "-m", "colorprop_server", "serve", "--bind", address,
                                 "--log-level", "WARNING"], stdout=subprocess.DEVNULL)
    client = Client(address, timeout_s=timeout_s, retries=1)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                Client(address, timeout_s=1.0, retries=1).hello()
                break
            except Exception:
                if time.monotonic() > deadline or (proc is not None and proc.poll() is not None):
                    raise RuntimeError(f"server at {address} did not start")
        embedded, remote, cpu_emb, cpu_srv = [], [], [], []
        ref = ArraySink()
        for r in range(repeats + 1):  # the first round warms both up and is not counted
            sink = ArraySink()
            t0, c0 = time.perf_counter(), time.process_time()
            run_shot(engine, ArraySource(plates), {k: KeyImage(v) for k, v in keys.items()}, options, sink)
            t_emb, c_emb = time.perf_counter() - t0, time.process_time() - c0
            s0 = _proc_cpu_s(proc.pid) if proc is not None else float("nan")
            t0, c0 = time.perf_counter(), time.process_time()
            res = colorize_arrays(client, plates, keys, {"method": method})
            t_srv, c_cli = time.perf_counter() - t0, time.process_time() - c0
            c_srv = c_cli + (_proc_cpu_s(proc.pid) - s0 if proc is not None else float("nan"))
            if r == 0:
                ref = sink
                same = all(np.array_equal(res[f][0], ref.results[f].rgb) for f in plates)
                if not same:
                    raise AssertionError("server results differ from the embedded engine")
                continue
            embedded.append(t_emb)
            remote.append(t_srv)
            cpu_emb.append(c_emb)
            cpu_srv.append(c_srv)
    finally:
        client.close()
        if proc is not None:
            proc.terminate()
            proc.wait(30)
    emb, srv = statistics.median(embedded), statistics.median(remote)
    result = {
        "benchmark": "server_overhead", "width": width, "height": height, "frames": frames, "repeats": repeats,
        "method": method, "embedded_s": round(emb, 4), "server_s": round(srv, 4),
        "embedded_per_frame_ms": round(1000 * emb / frames, 2), "server_per_frame_ms": round(1000 * srv / frames, 2),
        "overhead_pct": round(100.0 * (srv - emb) / emb, 2), "identical": True,
        # CPU seconds (all threads; server mode = client + server process): robust on a loaded box
        "embedded_cpu_s": round(statistics.median(cpu_emb), 4), "server_cpu_s": round(statistics.median(cpu_srv), 4),
        "cpu_overhead_pct": round(100.0 * (statistics.median(cpu_srv) - statistics.median(cpu_emb))
                                  / statistics.median(cpu_emb), 2),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "embedded_runs_s": [round(t, 4) for t in embedded], "server_runs_s": [round(t, 4) for t in remote],
        "cpu_count": os.cpu_count(),
    }
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(result, indent=2) + "\n")
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m colorprop_server.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=720)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--method", default="flow")
    p.add_argument("--json", default=None)
    p.add_argument("--address", default=None, help="an already running server (default: start one)")
    args = p.parse_args(argv)
    r = bench_server_overhead(args.width, args.height, args.frames, args.repeats, args.method, args.json, args.address)
    print(json.dumps(r))
    print(f"{'':10}{'shot s':>10}{'ms/frame':>10}{'CPU s':>10}")
    print(f"{'embedded':10}{r['embedded_s']:>10.3f}{r['embedded_per_frame_ms']:>10.1f}{r['embedded_cpu_s']:>10.3f}")
    print(f"{'server':10}{r['server_s']:>10.3f}{r['server_per_frame_ms']:>10.1f}{r['server_cpu_s']:>10.3f}")
    print(f"overhead {r['overhead_pct']:+.1f} % wall, {r['cpu_overhead_pct']:+.1f} % CPU "
          f"({args.width}x{args.height}, {args.frames} frames, median of {args.repeats}, load {r['load_average'][0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
