"""`colorprop train`: train F_w and F_f (two stages) and write weights + manifest."""

from __future__ import annotations

from colorprop.cli.common import add_device_argument


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train F_w and F_f (two stages) and write weights + manifest")
    p.add_argument("--config", default=None, help="JSON training config (default: the shipped one)")
    p.add_argument("--out", default="runs/train", help="run folder (checkpoints, log)")
    p.add_argument("--weights-out", default=None, help="write the final weights folder here")
    p.add_argument("--smoke", action="store_true", help="a few-minute run on tiny data (tests use it)")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoints")
    add_device_argument(p)
    p.add_argument(
        "--max-steps",
        type=int,
        default=None,
        help="take at most this many training steps, checkpoint and exit 75; finish with --resume",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    from colorprop.engine.devices import check_device
    from colorprop.training.train import run_train_command

    check_device(args.device)  # before the run folder is made
    return run_train_command(args)
