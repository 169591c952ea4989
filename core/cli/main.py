"""`colorprop`: the one command-line tool.

    colorprop colorize --input 'plate.####.exr' --key 1=key.exr --output 'out.####.exr' --frames 1-51
    colorprop preview | example | eval | data fetch | train | bench | suggest-keys | serve | broker | keys

Exit codes: 0 success; 1 other failure; 2 bad input (pattern, range, option, key); 3 unreadable or bad
pixels (EXR, NaN/Inf, size); 4 cannot write output; 5 weights missing or corrupt; 6 server
unavailable; 7 refused by the server (CURVE keys); 130 cancelled/interrupted (Ctrl-C, or SIGTERM from a farm).

One module per command in this folder (each ``add_parser(subparsers)``); commands from other packages
(``serve``, ``broker``, ``keys`` from colorprop_server) come in through cli/plugins.py.
"""

from __future__ import annotations

import argparse
import sys

from colorprop import __version__
from colorprop.cli import bench, colorize, data, example, preview, suggest_keys, train
from colorprop.cli import eval as evaluate
from colorprop.cli.common import use_help_formatter
from colorprop.cli.plugins import add_extension_commands
from colorprop.engine.threads import THREADS_ENV, apply_thread_policy, quiet_openmp
from colorprop.errors import ColorpropError

COMMANDS = (colorize, preview, example, evaluate, data, train, bench, suggest_keys)
# The commands that compute (torch, OpenCV, OpenImageIO): each takes --threads, and the thread policy runs
# before the command does (engine/threads.py). ``serve`` runs it itself, once its config file is read.
COMPUTING_COMMANDS = ("colorize", "preview", "example", "eval", "train", "bench", "suggest-keys")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="colorprop", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"colorprop {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    add_extension_commands(sub)
    for name, command in sub.choices.items():
        if name in COMPUTING_COMMANDS and "--threads" not in command._option_string_actions:
            add_threads_argument(command)
    use_help_formatter(parser)
    return parser


def add_threads_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help=f"compute threads for torch, OpenCV, OpenImageIO and colorprop's own pool (default: "
        f"${THREADS_ENV}, else the CPUs this process may use: its affinity and cgroup quota)",
    )


def main(argv: list[str] | None = None) -> int:
    quiet_openmp()  # before build_parser: the commands' defaults import torch, which reads it once
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # --help/--version (0) or a usage error (2), already printed by argparse
        return int(done.code or 0)
    try:
        if args.command in COMPUTING_COMMANDS:
            apply_thread_policy(getattr(args, "threads", None))
        return int(args.func(args) or 0)
    except ColorpropError as err:
        print(f"colorprop: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("colorprop: interrupted", file=sys.stderr)
        return 130
    except OSError as err:
        print(f"colorprop: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
