"""`colorprop serve`, `colorprop broker` and `colorprop keys`: argparse glue.

core's CLI calls :func:`add_cli` with its subparsers (entry point ``colorprop.cli`` in pyproject.toml).
Nothing heavy is imported here: zmq, torch and the engine load only when a command runs.
"""

from __future__ import annotations

import argparse
import functools
import json

from .config import DEFAULT_BACKEND_BIND, DEFAULT_BIND, ServerConfig, read_config_file
from .logs import LOG_FORMATS


def add_cli(subparsers) -> None:
    """Add the ``serve``, ``broker``, ``keys`` and ``status`` subcommands."""
    add_serve(subparsers)
    add_broker(subparsers)
    add_keys(subparsers)
    add_status(subparsers)


def _common(p) -> None:
    p.add_argument(
        "--config",
        metavar="FILE",
        default=None,
        help="TOML file setting any of these options (key = option name with _; flags given here win); "
        "see docs/server.example.toml, docs/worker.example.toml, docs/broker.example.toml",
    )
    p.add_argument(
        "--curve-keys",
        metavar="DIR",
        default=None,
        help="CURVE keys from `colorprop keys DIR`; required to bind anything but loopback",
    )
    p.add_argument("--max-jobs", type=int, default=8, help="shots served at once; more get 'busy, retry in N s'")
    p.add_argument(
        "--max-jobs-per-client",
        type=int,
        default=4,
        help="shots one client (CURVE key name, or address) may run at once",
    )
    p.add_argument(
        "--max-memory-mb",
        type=int,
        default=4096,
        help="pixels held for clients (keys, frames waiting, results not fetched); then 'busy'",
    )
    p.add_argument("--session-timeout", type=float, default=120.0, help="drop a silent client's session after S s")
    p.add_argument("--max-message-mb", type=int, default=1024, help="largest accepted message (MiB)")
    p.add_argument("--heartbeat", type=float, default=1.0, help="broker/worker heartbeat interval (s)")
    p.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="requests are logged at INFO",
    )
    p.add_argument(
        "--log-format",
        default="text",
        choices=LOG_FORMATS,
        help="text lines, or one JSON object per line (time, level, logger, event, fields)",
    )
    p.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        metavar="PORT",
        help="serve Prometheus metrics over HTTP on this port (default: off)",
    )
    p.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        help="address the metrics endpoint listens on (loopback unless you open it)",
    )
    _track_given(p)


def _track_given(parser: argparse.ArgumentParser) -> None:
    """Make parsing record which options the command line gave (``args._given``): those override the
    config file; the rest take the file's value, else their default."""
    for action in parser._actions:
        if action.option_strings and action.dest not in ("help", "config"):
            action.__class__ = _given_class(type(action))


@functools.cache
def _given_class(base: type) -> type:
    class Given(base):
        def __call__(self, parser, namespace, values, option_string=None):
            super().__call__(parser, namespace, values, option_string)
            namespace._given = getattr(namespace, "_given", frozenset()) | {self.dest}

    return Given


def _config_schema(parser: argparse.ArgumentParser) -> dict[str, tuple[type, ...]]:
    """Config-file key -> accepted TOML types, from the command's own options (one definition)."""
    schema = {}
    for a in parser._actions:
        if not a.option_strings or a.dest in ("help", "config"):
            continue
        if isinstance(a, argparse._StoreTrueAction):
            schema[a.dest] = (bool,)
        elif isinstance(a, argparse._AppendAction):
            schema[a.dest] = (list,)
        else:
            schema[a.dest] = {int: (int,), float: (int, float)}.get(a.type, (str,))
    return schema


def _apply_config_file(args) -> None:
    """Fill in the options the command line did not give from ``--config FILE``."""
    if not args.config:
        return
    parser = args._parser
    values = read_config_file(args.config, _config_schema(parser), example=args._example)
    given = getattr(args, "_given", frozenset())
    for action in parser._actions:
        if action.dest in values and action.dest not in given:
            value = values[action.dest]
            if isinstance(value, str) and callable(action.type):
                value = action.type(value)
            if action.choices is not None and value not in action.choices:
                from colorprop.errors import InputError

                raise InputError(f"{args.config}: {action.dest} must be one of {list(action.choices)}, got {value!r}")
            setattr(args, action.dest, value)


def _start(args) -> None:
    """What serve and broker do first: the config file, then logging."""
    from .logs import setup_logging

    _apply_config_file(args)
    setup_logging(args.log_level, args.log_format)


def command_config(args) -> tuple[str, ServerConfig]:
    """The role ("server", "worker" or "broker") and the settings a ``serve`` or ``broker`` command line
    asks for (after :func:`_start` applied its config file), not yet checked."""
    from colorprop.errors import InputError

    common = dict(
        curve_keys=args.curve_keys,
        max_jobs=args.max_jobs,
        max_jobs_per_client=args.max_jobs_per_client,
        max_memory_bytes=args.max_memory_mb << 20,
        session_timeout_s=args.session_timeout,
        max_message_bytes=args.max_message_mb << 20,
        heartbeat_s=args.heartbeat,
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
        bind=args.bind,
    )
    if args._command == "broker":
        return "broker", ServerConfig(backend_bind=args.backend, job_retries=args.job_retries, **common)
    if args.worker != bool(args.broker):
        raise InputError("--worker and --broker ADDR go together")
    return ("worker" if args.worker else "server"), ServerConfig(
        broker=args.broker,
        allowed_roots=tuple(args.allow_root),
        weights_dir=args.weights,
        device=args.device,
        curve_client_name=args.curve_client_name,
        **common,
    )


def _settings(args) -> ServerConfig:
    """The command's settings, every one checked, and the addresses, keys and weights its role needs
    (``preflight``), before anything loads or listens."""
    from .preflight import check_can_start

    role, config = command_config(args)
    return check_can_start(config, role)


def _run_checked(run, config: ServerConfig, listens: dict[str, str]) -> int:
    """``run(config)``; a refusal found only while starting (a port taken since the pre-flight) is
    exit 2 naming the option, not a traceback."""
    import zmq
    from colorprop.errors import InputError

    from .preflight import bind_error
    from .security import SecurityError

    try:
        run(config)
    except SecurityError as err:
        raise InputError(str(err)) from None
    except zmq.ZMQError as err:
        if err.errno not in (zmq.EADDRINUSE, zmq.EADDRNOTAVAIL, zmq.EINVAL) or not listens:
            raise
        raise bind_error(listens, err) from None
    return 0


def add_serve(subparsers) -> None:
    p = subparsers.add_parser(
        "serve",
        help="run the colorprop server (or a worker behind a broker)",
        description="Load the networks once and serve colorization over ZeroMQ until SIGTERM/SIGINT.",
    )
    p.add_argument("--bind", default=DEFAULT_BIND, help=f"ROUTER address (default {DEFAULT_BIND})")
    p.add_argument("--worker", action="store_true", help="run as a worker of a broker (needs --broker)")
    p.add_argument("--broker", metavar="ADDR", default=None, help="broker backend address, e.g. tcp://gpu-host:5558")
    p.add_argument(
        "--allow-root",
        action="append",
        default=[],
        metavar="DIR",
        help="folder under which shared-path jobs may read and write; repeat for several",
    )
    p.add_argument("--weights", default=None, help="weights folder (default: the shipped ones)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument(
        "--curve-client-name",
        default="worker",
        help="worker mode: which worker key pair (DIR/workers/NAME/ from `colorprop keys DIR --worker NAME`)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="compute threads (torch, OpenCV, OpenImageIO, colorprop's pool) (default: $COLORPROP_THREADS, "
        "else the CPUs this process may use: affinity and cgroup quota)",
    )
    _common(p)
    p.set_defaults(
        func=run_serve,
        _parser=p,
        _command="serve",
        _example="docs/server.example.toml (docs/worker.example.toml for a worker)",
    )


def run_serve(args) -> int:
    from colorprop.engine.threads import apply_thread_policy

    from .server import serve

    _start(args)
    from_file = args.threads is not None and "threads" not in getattr(args, "_given", frozenset())
    apply_thread_policy(args.threads, f"{args.config}: threads" if from_file else "--threads")  # before torch loads
    config = _settings(args)
    return _run_checked(serve, config, {} if config.broker else {"--bind": config.bind})


def add_broker(subparsers) -> None:
    p = subparsers.add_parser(
        "broker", help="run the scale-out broker (clients in front, `serve --worker` processes behind)"
    )
    p.add_argument("--bind", default=DEFAULT_BIND, help=f"client-facing address (default {DEFAULT_BIND})")
    p.add_argument(
        "--backend", default=DEFAULT_BACKEND_BIND, help=f"address workers connect to (default {DEFAULT_BACKEND_BIND})"
    )
    p.add_argument("--job-retries", type=int, default=2, help="restarts of a shared-path job whose worker died")
    _common(p)
    p.set_defaults(func=run_broker_command, _parser=p, _command="broker", _example="docs/broker.example.toml")


def run_broker_command(args) -> int:
    from .broker import run_broker

    _start(args)
    config = _settings(args)
    return _run_checked(run_broker, config, {"--bind": config.bind, "--backend": config.backend_bind})


def add_keys(subparsers) -> None:
    p = subparsers.add_parser(
        "keys",
        help="make CURVE keys for the server, its clients and a broker's workers",
        description="Make (or add to) a keys folder: server/ (the server's key pair and the allow-lists "
        "authorized_clients/ and authorized_workers/), clients/NAME/ and workers/NAME/ (a key pair and "
        "server.key: the folder to hand over). A name keeps its role for good; a revoked key is never "
        "listed again. Exit 4 when the folder cannot be written. Without --client or "
        "--worker: a client named 'client' and a worker named 'worker'.",
    )
    p.add_argument("dir", help="folder for the keys (server.key_secret stays on the server)")
    p.add_argument(
        "--client",
        action="append",
        default=None,
        metavar="NAME",
        help="client key pair to make and allow on the client side (repeat)",
    )
    p.add_argument(
        "--worker",
        action="append",
        default=None,
        metavar="NAME",
        help="worker key pair to make and allow on a broker's worker side only (repeat)",
    )
    p.set_defaults(func=run_keys)


def run_keys(args) -> int:
    from colorprop.errors import ColorpropError, InputError

    from .security import generate_keys

    class KeysNotWritten(ColorpropError):
        exit_code = 4  # README: cannot write output

    names = {"clients": tuple(args.client or ()), "workers": tuple(args.worker or ())}
    try:
        written = generate_keys(args.dir, **(names if any(names.values()) else {}))  # else its default names
    except ValueError as err:
        raise InputError(str(err)) from None
    except OSError as err:
        raise KeysNotWritten(
            f"cannot write CURVE keys in {args.dir}: {err.strerror or err}"
            f"{' (' + err.filename + ')' if err.filename else ''}"
        ) from None
    print(json.dumps(written, indent=2))
    return 0


def add_status(subparsers) -> None:
    p = subparsers.add_parser(
        "status",
        help="list the jobs of a server or broker",
        description="One line per job: id, client, state, frames done/total, age. Other clients' job ids show "
        "their first 8 characters only. Exit 6 when nothing answers, 7 when the server refuses "
        "this client's CURVE keys.",
    )
    p.add_argument("address", help="the server's or broker's address, e.g. tcp://render-01:5557")
    p.add_argument("--json", action="store_true", help="print the reply's job list as JSON")
    p.add_argument(
        "--curve-keys",
        metavar="DIR",
        default=None,
        help="client keys for a CURVE server (default: $COLORPROP_CURVE_KEYS)",
    )
    p.add_argument(
        "--curve-name", default=None, help="which key pair in DIR (default: $COLORPROP_CURVE_NAME, else client)"
    )
    p.set_defaults(func=run_status)


def run_status(args) -> int:
    from colorprop.errors import InputError
    from colorprop_client import client as C
    from colorprop_client import protocol as P

    from .config import check_address
    from .remote import RemoteJobError, client_curve_keys, connection_error

    check_address("ADDRESS", args.address)  # (ZeroMQ's own refusal of "foo" was a traceback)
    try:
        with C.Client(args.address, curve=client_curve_keys(args.curve_keys, args.curve_name)) as client:
            jobs = client.status()
    except (C.AuthenticationFailed, C.ServerUnavailable) as err:
        raise connection_error(err) from None
    except C.ServerError as err:
        if err.code == P.E_PROTOCOL:
            raise InputError(f"{args.address} does not know the status request (an older server): {err}") from None
        raise RemoteJobError(str(err)) from None
    if args.json:
        print(json.dumps(jobs, indent=2))
        return 0
    rows = [("JOB", "CLIENT", "STATE", "FRAMES", "AGE")]
    for j in sorted(jobs, key=lambda j: -float(j.get("age_s", 0))):
        rows.append(
            (
                str(j.get("job")),
                str(j.get("client")),
                str(j.get("state")),
                f"{j.get('frames_done', 0)}/{j.get('frames', 0)}",
                _age(float(j.get("age_s", 0))),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    if not jobs:
        print(f"(no jobs on {args.address})")
    return 0


def _age(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"
