"""``python -m colorprop_server serve|broker|keys ...``: the same commands as ``colorprop``, without core's CLI."""

from __future__ import annotations

import argparse
import sys

from .cli import add_cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m colorprop_server")
    sub = parser.add_subparsers(dest="command", required=True)
    add_cli(sub)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except Exception as err:  # typed errors carry exit codes
        code = getattr(err, "exit_code", None)
        if code is None:
            raise
        print(f"colorprop: error: {err}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
