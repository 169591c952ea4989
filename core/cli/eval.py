"""`colorprop eval`: Lab-PSNR of the methods on the validation or dev ranges (the paper's protocol)."""

from __future__ import annotations

from colorprop.cli.common import add_precision_argument


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="Lab-PSNR of the methods on the validation or dev ranges (the paper's protocol)")
    p.add_argument(
        "--split",
        default="dev",
        choices=("validation", "dev"),
        help="validation: sources nothing trains or tunes on (judge every decision here); "
        "dev: the seen sources (core/data/split.json)",
    )
    p.add_argument("--methods", default="gray,flow,local,global,full", help="comma-separated methods to compare")
    p.add_argument("--n", default="10,20,30,40,50", help="frame counts to average over")
    p.add_argument("--keys", default="first", help="key frames of each clip: first | first,last")
    p.add_argument(
        "--clips", default=None, help="comma-separated range names of the split, <clip>@<start> (default: all)"
    )
    p.add_argument("--json", default="out/eval.json", help="where to write the results")
    p.add_argument("--plot", default=None, help="PNG of PSNR per frame index (Figure 9)")
    p.add_argument("--markdown", default=None, help="write the table as Markdown here")
    p.add_argument(
        "--record-in-manifest", action="store_true", help="store the table in the weights' manifest.json (metrics)"
    )
    p.add_argument(
        "--suggest",
        action="store_true",
        help="also check suggest-keys: top suggestion among the 5 worst frames, gain of a key there "
        "over one at the midpoint (two more runs per clip and method)",
    )
    p.add_argument(
        "--partial",
        action="store_true",
        help="with one key: also paint a partial key (the true colour inside the worst 10 %% of the one-key "
        "run's pixels) at the frame suggest-keys names, and measure what it fixes and what it leaves alone",
    )
    p.add_argument("--weights", default=None, help="weights folder (default: the shipped ones)")
    add_precision_argument(p)
    p.add_argument("--cache", default=None, help="footage cache (default .cache/ or $COLORPROP_CACHE)")
    p.set_defaults(func=run)


def run(args) -> int:
    from colorprop.measure.evaluate import run_eval_command

    return run_eval_command(args)
