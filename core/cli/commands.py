"""Subcommands other than `colorize`, each importing its machinery only when run.

The server commands live in colorprop_server (core never imports zmq); they are imported lazily.
"""

from __future__ import annotations

from colorprop.cli.main import add_precision_argument


def add_all(sub) -> None:
    add_example(sub)
    add_eval(sub)
    add_data(sub)
    add_train(sub)
    add_bench(sub)
    add_suggest_keys(sub)
    add_server(sub)


def add_example(sub) -> None:
    p = sub.add_parser("example", help="colour the bundled example shot (writes EXRs and a contact sheet)")
    p.add_argument("--output", default="out/example", help="output folder (default out/example)")
    p.add_argument("--method", default=None, help="default: full when weights are shipped, else flow")

    def run(args):
        from colorprop.shot.example import run_example

        return run_example(args.output, args.method)

    p.set_defaults(func=run)


def add_eval(sub) -> None:
    p = sub.add_parser("eval", help="Lab-PSNR of the methods on the dev clips (the paper's protocol)")
    p.add_argument("--methods", default="gray,flow,local,global,full")
    p.add_argument("--n", default="10,20,30,40,50", help="frame counts to average over")
    p.add_argument("--keys", default="first", help="first | first,last")
    p.add_argument("--clips", default=None, help="comma-separated dev clip names (default: all)")
    p.add_argument("--json", default="out/eval.json", help="where to write the results")
    p.add_argument("--plot", default=None, help="PNG of PSNR per frame index (Figure 9)")
    p.add_argument("--markdown", default=None, help="write the table as Markdown here")
    p.add_argument("--record-in-manifest", action="store_true",
                   help="store the table in the weights' manifest.json (metrics)")
    p.add_argument("--weights", default=None)
    add_precision_argument(p)
    p.add_argument("--cache", default=None, help="footage cache (default .cache/ or $COLORPROP_CACHE)")

    def run(args):
        from colorprop.measure.evaluate import run_eval_command

        return run_eval_command(args)

    p.set_defaults(func=run)


def add_data(sub) -> None:
    p = sub.add_parser("data", help="footage for training and evaluation")
    dsub = p.add_subparsers(dest="data_command", required=True)
    f = dsub.add_parser("fetch", help="get the clips and stills of shared/DATA.md into the cache")
    f.add_argument("--cache", default=None, help="cache folder (default $COLORPROP_CACHE or <repo>/.cache)")
    f.add_argument("--sources", nargs="+", default=None, choices=("clips", "stills"))
    f.add_argument("--quick", action="store_true", help="only what the dev split needs")

    def run(args):
        from colorprop.data.fetch import main as fetch_main

        argv = (["--cache", args.cache] if args.cache else []) + (["--sources", *args.sources] if args.sources else [])
        return fetch_main(argv + (["--quick"] if args.quick else []))

    f.set_defaults(func=run)


def add_train(sub) -> None:
    p = sub.add_parser("train", help="train F_w and F_f (two stages) and write weights + manifest")
    p.add_argument("--config", default=None, help="JSON training config (default: the shipped one)")
    p.add_argument("--out", default="runs/train", help="run folder (checkpoints, log)")
    p.add_argument("--weights-out", default=None, help="write the final weights folder here")
    p.add_argument("--smoke", action="store_true", help="a few-minute run on tiny data (tests use it)")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoints")
    p.add_argument("--device", default="auto")

    def run(args):
        from colorprop.training.train import run_train_command

        return run_train_command(args)

    p.set_defaults(func=run)


def add_bench(sub) -> None:
    p = sub.add_parser("bench", help="time each stage at 480p..4K; JSON + table")
    p.add_argument("--sizes", default="854x480,1280x720,1920x1080,3840x2160")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", default="out/bench.json")
    p.add_argument("--device", default="auto")
    p.add_argument("--precisions", default="fp32", help="for the networks: fp32, bf16 or both (fp32,bf16)")

    def run(args):
        from colorprop.measure.bench import run_bench_command

        return run_bench_command(args)

    p.set_defaults(func=run)


def add_suggest_keys(sub) -> None:
    p = sub.add_parser("suggest-keys", help="frames where confidence drops most: where to paint the next key")
    p.add_argument("--input", required=True)
    p.add_argument("--key", action="append", required=True, metavar="FRAME=PATH")
    p.add_argument("--frames", default=None)
    p.add_argument("--count", type=int, default=3)
    p.add_argument("--method", default=None)
    p.add_argument("--colorspace", default=None)
    p.add_argument("--json", action="store_true", help="print one JSON object (for the DCC nodes)")

    def run(args):
        from colorprop.shot.suggest import run_suggest_command

        return run_suggest_command(args)

    p.set_defaults(func=run)


def add_server(sub) -> None:
    try:
        from colorprop_server import cli as server_cli  # noqa: F401  (imports zmq only when present)
    except ImportError:
        return
    server_cli.add_cli(sub)



