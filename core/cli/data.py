"""`colorprop data fetch`: footage for training and evaluation."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("data", help="footage for training and evaluation")
    dsub = p.add_subparsers(dest="data_command", required=True)
    f = dsub.add_parser("fetch", help="get the clips and stills of core/data/sources.py into the cache")
    f.add_argument("--cache", default=None, help="cache folder (default $COLORPROP_CACHE or <repo>/.cache)")
    f.add_argument(
        "--sources",
        nargs="+",
        default=None,
        choices=("clips", "stills"),
        help="what to fetch (default: clips and stills)",
    )
    f.add_argument("--quick", action="store_true", help="only what the dev and validation splits need")
    f.set_defaults(func=run_fetch)


def run_fetch(args) -> int:
    from colorprop.data.fetch import main as fetch_main

    argv = (["--cache", args.cache] if args.cache else []) + (["--sources", *args.sources] if args.sources else [])
    return fetch_main(argv + (["--quick"] if args.quick else []))
