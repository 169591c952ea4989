"""`colorprop bench`: time each stage at 480p..4K; JSON + table."""

from __future__ import annotations

from colorprop.cli.common import add_device_argument


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="time each stage at 480p..4K; JSON + table")
    p.add_argument("--sizes", default="854x480,1280x720,1920x1080,3840x2160", help="plate sizes WxH to time")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per size (the median is reported)")
    p.add_argument("--json", default="out/bench.json", help="where to write the results")
    add_device_argument(p)
    p.add_argument("--precisions", default="fp32", help="for the networks: fp32, bf16 or both (fp32,bf16)")
    p.add_argument(
        "--methods",
        help="methods to time, e.g. full or full,flow (default: full when weights load, and flow, the ratio reference)",
    )
    p.add_argument(
        "--busy-neighbour",
        action="store_true",
        help="time each row idle, then beside a CPU-bound process pinned to one core (started and "
        "stopped by the bench), and report both and busy/idle",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    from colorprop.engine.devices import check_device
    from colorprop.measure.bench import run_bench_command

    check_device(args.device)  # before a plate is made or a child started
    return run_bench_command(args)
