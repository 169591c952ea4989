"""Server overhead against the embedded engine: same shot, same machine, median of N runs; and a
second client's shot time beside one that fills the memory budget with large keys (``--hog``).

    python -m colorprop_server.bench --width 1280 --height 720 --frames 8 --repeats 5 --json out/bench_server.json
    python -m colorprop_server.bench --hog --width 1280 --height 720 --frames 8 --repeats 3 --json out/bench_hog.json

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


def _serve(address: str, *options: str) -> subprocess.Popen:
    """``colorprop serve`` on ``address`` in its own process, as in production."""
    command = [sys.executable, "-m", "colorprop_server", "serve", "--bind", address, "--log-level", "WARNING"]
    return subprocess.Popen([*command, *options], stdout=subprocess.DEVNULL)


def _written(result: dict[str, Any], json_path: str | None) -> dict[str, Any]:
    """``result``, written to ``json_path`` first when one is given."""
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(result, indent=2) + "\n")
    return result


def bench_server_overhead(
    width: int = 1280,
    height: int = 720,
    frames: int = 8,
    repeats: int = 5,
    method: str = "flow",
    json_path: str | None = None,
    address: str | None = None,
    timeout_s: float = 60.0,
) -> dict[str, Any]:
    """Median wall time of one shot, embedded vs through a server; writes JSON when asked."""
    import numpy as np

    from colorprop.engine.engine import Engine, ShotOptions
    from colorprop.shot.frames import ArraySink, ArraySource, KeyImage
    from colorprop.shot.pipeline import run_shot
    from colorprop_client.client import Client, colorize_arrays

    plates, keys = _shot(width, height, frames)
    engine = Engine.load()
    options = ShotOptions.from_dict({"method": method})
    proc = None
    if address is None:
        address = f"tcp://127.0.0.1:{free_loopback_port()}"
        proc = _serve(address)
    client = Client(address, timeout_s=timeout_s, retries=1)
    try:
        _wait_for_server(address, proc)
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
        "benchmark": "server_overhead",
        "width": width,
        "height": height,
        "frames": frames,
        "repeats": repeats,
        "method": method,
        "embedded_s": round(emb, 4),
        "server_s": round(srv, 4),
        "embedded_per_frame_ms": round(1000 * emb / frames, 2),
        "server_per_frame_ms": round(1000 * srv / frames, 2),
        "overhead_pct": round(100.0 * (srv - emb) / emb, 2),
        "identical": True,
        # CPU seconds (all threads; server mode = client + server process): robust on a loaded box
        "embedded_cpu_s": round(statistics.median(cpu_emb), 4),
        "server_cpu_s": round(statistics.median(cpu_srv), 4),
        "cpu_overhead_pct": round(
            100.0 * (statistics.median(cpu_srv) - statistics.median(cpu_emb)) / statistics.median(cpu_emb), 2
        ),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "embedded_runs_s": [round(t, 4) for t in embedded],
        "server_runs_s": [round(t, 4) for t in remote],
        "cpu_count": os.cpu_count(),
    }
    return _written(result, json_path)


def bench_memory_hog(
    width: int = 1280,
    height: int = 720,
    frames: int = 8,
    repeats: int = 3,
    method: str = "flow",
    budget_mb: int = 256,
    json_path: str | None = None,
    timeout_s: float = 60.0,
) -> dict[str, Any]:
    """bob's shot through a server (CURVE keys tell the two clients apart), alone and then while alice holds
    as many open shots with large float32 keys as the memory budget (``budget_mb``) lets her: median wall
    times and their ratio; writes JSON when asked."""
    import math
    import tempfile

    import numpy as np

    from colorprop_client.client import Client, CurveKeys, ServerBusy, colorize_arrays

    from .security import generate_keys

    plates, keys = _shot(width, height, frames)
    tmp = tempfile.TemporaryDirectory(prefix="colorprop-bench-hog-")
    generate_keys(Path(tmp.name) / "keys", ("alice", "bob"), ())
    alice, bob = (CurveKeys.from_dir(Path(tmp.name) / "keys", n) for n in ("alice", "bob"))
    address = f"tcp://127.0.0.1:{free_loopback_port()}"
    proc = _serve(address, "--curve-keys", str(Path(tmp.name) / "keys"), "--max-memory-mb", str(budget_mb))
    side = math.isqrt((budget_mb << 20) // (3 * 3 * 4))  # three keys fill the budget to within one row
    big = np.full((side, side, 3), 0.25, np.float32)
    hog_jobs, hog_refused, alone, beside = [], None, [], []
    try:
        _wait_for_server(address, proc, bob)
        for r in range(repeats + 1):  # the first run warms up and is not counted
            t0 = time.perf_counter()
            ref = colorize_arrays(address, plates, keys, {"method": method}, curve=bob, timeout_s=timeout_s)
            if r:
                alone.append(time.perf_counter() - t0)
        hog = Client(address, timeout_s=timeout_s, retries=1, curve=alice)
        try:
            while len(hog_jobs) < 4:
                try:
                    hog_jobs.append(hog.open_shot({1: big}, {"method": method}, [1, 2, 3]))
                except ServerBusy as err:
                    hog_refused = str(err)
                    break
            for _ in range(repeats):
                t0 = time.perf_counter()
                res = colorize_arrays(
                    address, plates, keys, {"method": method}, curve=bob, timeout_s=timeout_s, busy_wait_s=timeout_s
                )
                beside.append(time.perf_counter() - t0)
                if not all(np.array_equal(res[f][0], ref[f][0]) for f in plates):
                    raise AssertionError("bob's results beside the hog differ from his results alone")
        finally:
            for job in hog_jobs:
                job.close()
            hog.close()
    finally:
        proc.terminate()
        proc.wait(30)
        tmp.cleanup()
    t_alone, t_beside = statistics.median(alone), statistics.median(beside)
    result = {
        "benchmark": "memory_hog",
        "width": width,
        "height": height,
        "frames": frames,
        "repeats": repeats,
        "method": method,
        "budget_mb": budget_mb,
        "hog_key": [side, side, 3],
        "hog_shots": len(hog_jobs),
        "hog_held_mb": round(len(hog_jobs) * big.nbytes / 2**20, 1),
        "hog_refused": hog_refused,
        "alone_s": round(t_alone, 4),
        "beside_hog_s": round(t_beside, 4),
        "ratio": round(t_beside / t_alone, 3),
        "alone_runs_s": [round(t, 4) for t in alone],
        "beside_hog_runs_s": [round(t, 4) for t in beside],
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "cpu_count": os.cpu_count(),
    }
    return _written(result, json_path)


def _wait_for_server(address: str, proc: subprocess.Popen | None, curve: Any = None, timeout_s: float = 120.0) -> None:
    from colorprop_client.client import Client

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with Client(address, timeout_s=1.0, retries=1, curve=curve) as c:
                c.hello()
            return
        except Exception:
            if time.monotonic() > deadline or (proc is not None and proc.poll() is not None):
                raise RuntimeError(f"server at {address} did not start") from None


def _print_table(result: dict, columns: list[str], rows: list[tuple[str, list[float]]], footer: str) -> None:
    """The JSON line, then a small table and a line saying what was measured."""
    print(json.dumps(result))
    print(f"{'':14}" + "".join(f"{c:>14}" for c in columns))
    for name, values in rows:
        print(f"{name:14}" + "".join(f"{v:>14.3f}" for v in values))
    print(footer)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m colorprop_server.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=720)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--method", default="flow")
    p.add_argument("--json", default=None)
    p.add_argument("--address", default=None, help="an already running server (default: start one)")
    p.add_argument(
        "--hog",
        action="store_true",
        help="instead: a shot's time alone and beside a client that fills the memory budget with large keys",
    )
    p.add_argument("--budget-mb", type=int, default=256, help="--hog: the server's --max-memory-mb")
    args = p.parse_args(argv)
    if args.hog:
        r = bench_memory_hog(args.width, args.height, args.frames, args.repeats, args.method, args.budget_mb, args.json)
        _print_table(
            r,
            ["bob's shot s"],
            [("alone", [r["alone_s"]]), ("beside alice", [r["beside_hog_s"]])],
            f"ratio {r['ratio']:.2f} (alice holds {r['hog_held_mb']} MiB of the {args.budget_mb} MiB budget "
            f"in {r['hog_shots']} shots; {args.width}x{args.height}, {args.frames} frames, median of "
            f"{args.repeats}, load {r['load_average'][0]})",
        )
        return 0
    r = bench_server_overhead(args.width, args.height, args.frames, args.repeats, args.method, args.json, args.address)
    _print_table(
        r,
        ["shot s", "ms/frame", "CPU s"],
        [(name, [r[f"{name}_s"], r[f"{name}_per_frame_ms"], r[f"{name}_cpu_s"]]) for name in ("embedded", "server")],
        f"overhead {r['overhead_pct']:+.1f} % wall, {r['cpu_overhead_pct']:+.1f} % CPU ({args.width}x"
        f"{args.height}, {args.frames} frames, median of {args.repeats}, load {r['load_average'][0]})",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
