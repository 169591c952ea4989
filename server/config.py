"""Server configuration: one frozen dataclass, every default in one place."""

from __future__ import annotations

import math
import os
import re
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from colorprop_client import protocol as P

DEFAULT_BIND = P.DEFAULT_ADDRESS
DEFAULT_BACKEND_BIND = "tcp://127.0.0.1:5558"


@dataclass(frozen=True)
class ServerConfig:
    bind: str = DEFAULT_BIND  # ROUTER address (server, or broker frontend)
    weights_dir: str | None = None
    device: str = "auto"
    allowed_roots: tuple[str, ...] = ()  # shared-path mode works only under these folders
    curve_keys: str | None = None  # folder from `colorprop keys` (its server/ holds the key pair and allow-lists)
    curve_client_name: str = (
        "worker"  # worker mode: the pair in <curve_keys>/workers/<name>/ authenticates to the broker
    )
    max_jobs: int = 8  # active shots at once; more get "busy, retry in N s"
    max_jobs_per_client: int = 4  # active shots of one client (CURVE key name, or address)
    max_client_buffered_frames: int = 16  # in-band frames waiting on the server, per client (all its jobs)
    max_memory_bytes: int = 4 << 30  # keys + buffered frames + unfetched results of all jobs; then "busy"
    max_buffered_frames: int = 8  # in-band frames waiting on the server, per job
    max_pending_results: int = 8  # results computed but not yet fetched, per job (then the job waits)
    max_message_bytes: int = 1 << 30  # declared and actual size of one message
    max_frame_pixels: int = 8192 * 8192
    max_frames_per_shot: int = P.MAX_FRAMES_PER_SHOT
    max_wait_ms: int = 5000  # longest long-poll a fetch may ask for
    max_events_per_fetch: int = 32
    session_timeout_s: float = 120.0  # a session nobody asked about for this long is dropped
    shutdown_grace_s: float = 30.0  # SIGTERM: wait this long for in-flight frames, then exit
    shutdown_drain_s: float = 3.0  # then this long for clients to fetch why their jobs ended
    # Broker / worker (Paranoid Pirate)
    broker: str | None = None  # worker mode: connect to this broker backend
    backend_bind: str = DEFAULT_BACKEND_BIND  # broker mode: where workers connect
    heartbeat_s: float = 1.0
    liveness: int = 3  # heartbeats missed before the peer is declared dead
    job_retries: int = 2  # broker: how often a shared-path job is restarted after its worker died
    metrics_port: int | None = None  # Prometheus text endpoint (HTTP) on this port; None: off
    metrics_host: str = "127.0.0.1"
    engine: Any = field(default=None, compare=False, repr=False)  # an already loaded Engine (tests, bench)

    def limits(self) -> dict[str, Any]:
        return {
            "max_jobs": self.max_jobs,
            "max_jobs_per_client": self.max_jobs_per_client,
            "max_client_buffered_frames": self.max_client_buffered_frames,
            "max_memory_bytes": self.max_memory_bytes,
            "max_buffered_frames": self.max_buffered_frames,
            "max_message_bytes": self.max_message_bytes,
            "max_frame_pixels": self.max_frame_pixels,
            "max_frames_per_shot": self.max_frames_per_shot,
            "max_wait_ms": self.max_wait_ms,
            "session_timeout_s": self.session_timeout_s,
        }


# ---------------------------------------------------------------- settings checked before anything listens

MAX_CONFIG_BYTES = 1 << 20  # a config file is a few hundred bytes; /dev/zero must not fill the memory


class _Range(NamedTuple):
    option: str  # how a user sets it (named in the message); config-file key = option without dashes, _ for -
    kind: type  # int or float
    low: float
    high: float
    unit: int = 1  # the option counts in these (MiB options set byte fields)


SETTING_RANGES: dict[str, _Range] = {
    "max_jobs": _Range("--max-jobs", int, 1, 10_000),
    "max_jobs_per_client": _Range("--max-jobs-per-client", int, 1, 10_000),
    "max_client_buffered_frames": _Range("max_client_buffered_frames", int, 1, 100_000),
    "max_memory_bytes": _Range("--max-memory-mb", int, 1 << 20, 1 << 50, 1 << 20),
    "max_buffered_frames": _Range("max_buffered_frames", int, 1, 100_000),
    "max_pending_results": _Range("max_pending_results", int, 1, 100_000),
    "max_message_bytes": _Range("--max-message-mb", int, 1 << 20, 1 << 40, 1 << 20),
    "max_frame_pixels": _Range("max_frame_pixels", int, 16 * 16, P.MAX_DIM * P.MAX_DIM),
    "max_frames_per_shot": _Range("max_frames_per_shot", int, 1, P.MAX_FRAMES_PER_SHOT),
    "max_wait_ms": _Range("max_wait_ms", int, 0, 600_000),
    "max_events_per_fetch": _Range("max_events_per_fetch", int, 1, 10_000),
    "session_timeout_s": _Range("--session-timeout", float, 1.0, 7 * 86400.0),
    "shutdown_grace_s": _Range("shutdown_grace_s", float, 0.0, 3600.0),
    "shutdown_drain_s": _Range("shutdown_drain_s", float, 0.0, 3600.0),
    # Below 50 ms the broker's loop and the workers do little but heartbeat (0 spun at 97 % CPU).
    "heartbeat_s": _Range("--heartbeat", float, 0.05, 3600.0),
    "liveness": _Range("liveness", int, 1, 1000),
    "job_retries": _Range("--job-retries", int, 0, 100),
    "metrics_port": _Range("--metrics-port", int, 0, 65535),  # 0: a free port the OS picks
}
ADDRESS_OPTIONS = {"bind": "--bind", "backend_bind": "--backend", "broker": "--broker"}
_KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # also a file name: never ".", ".." or hidden


def setting_error(option: str, value: Any, why: str) -> Exception:
    """The one message of a refused setting (exit 2): the option, the config-file key, the value."""
    from colorprop.errors import InputError

    key = option.lstrip("-").replace("-", "_")
    where = f"{option} (`{key}` in a config file)" if option.startswith("--") else option
    return InputError(f"{where}: {why}, got {value!r}")


def check_address(option: str, address: Any) -> None:
    """A ZeroMQ address ``tcp://HOST:PORT`` (port 1-65535 or ``*``), ``ipc://PATH`` or ``inproc://NAME``."""
    if not P.is_address(address):
        raise setting_error(option, address, f"must be an address like {P.ADDRESS_FORMS}")


def check_key_name(option: str, name: Any) -> None:
    """A CURVE key name is also a file and folder name: never a path, ".", ".." or a hidden file."""
    if not isinstance(name, str) or not _KEY_NAME.fullmatch(name) or name == "server":
        from colorprop.errors import InputError

        raise InputError(
            f"{option} {name!r}: a key name is 1-64 letters, digits, _ . - starting with a letter "
            "or digit (and not 'server')"
        )


def check_settings(config: ServerConfig) -> ServerConfig:
    """Every setting of a ``serve`` or ``broker`` command, checked before anything loads or listens:
    its type, its range and (numbers) that it is finite. Raises InputError (exit 2) naming the option
    and the value. Programs building a ServerConfig themselves (tests, bench) may go outside these."""
    for name, r in SETTING_RANGES.items():
        value = getattr(config, name)
        if value is None and name == "metrics_port":
            continue
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        shown = value // r.unit if numeric and isinstance(value, int) else value  # in the option's unit (MiB)
        if not numeric or r.kind is int and not isinstance(value, int):
            raise setting_error(r.option, shown, "must be " + ("an integer" if r.kind is int else "a number"))
        if not math.isfinite(value) or not r.low <= value <= r.high:
            if r.kind is int:
                raise setting_error(
                    r.option, shown, f"must be an integer from {int(r.low) // r.unit:,} to {int(r.high) // r.unit:,}"
                )
            raise setting_error(r.option, shown, f"must be a finite number from {r.low:g} to {r.high:g}")
    for name, option in ADDRESS_OPTIONS.items():
        if getattr(config, name) is not None:
            check_address(option, getattr(config, name))
    from colorprop.engine.devices import check_device

    check_device(config.device, "--device")  # its form, and that this torch and machine have it
    check_key_name("--curve-client-name", config.curve_client_name)
    if not isinstance(config.metrics_host, str) or not config.metrics_host:
        raise setting_error("--metrics-host", config.metrics_host, "must be a host name or address")
    for option, value in (("--weights", config.weights_dir), ("--curve-keys", config.curve_keys)):
        if value is not None and (not isinstance(value, str) or not value or "\0" in value):
            raise setting_error(option, value, "must be a folder")
    for root in config.allowed_roots:
        if not isinstance(root, str) or not root or "\0" in root:
            raise setting_error("--allow-root", root, "must be a folder")
    return config


def read_config_file(path: str | Path, schema: dict[str, tuple[type, ...]], example: str = "") -> dict[str, Any]:
    """A flat TOML file of options: key -> value, every key in ``schema`` and of one of its types.
    Only a regular file is read, at most MAX_CONFIG_BYTES of it (a FIFO would hang, /dev/zero grow
    without end). Raises InputError (exit 2) naming the file and the key."""
    from colorprop.errors import InputError

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as err:
        raise InputError(f"config file {path}: {err.strerror or err}") from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InputError(f"config file {path}: not a regular file")
        try:
            data = f.read(MAX_CONFIG_BYTES + 1)
        except OSError as err:
            raise InputError(f"config file {path}: {err.strerror or err}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise InputError(f"config file {path}: larger than {MAX_CONFIG_BYTES >> 20} MiB; not a config file")
    try:
        values = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise InputError(f"config file {path}: not UTF-8 text (byte {err.start})") from None
    except tomllib.TOMLDecodeError as err:
        raise InputError(f"config file {path}: not valid TOML: {err}") from None
    for key, value in values.items():
        if key not in schema:
            raise InputError(
                f"config file {path}: unknown key {key!r} for this command (known: "
                f"{', '.join(sorted(schema))}){'; see ' + example if example else ''}"
            )
        types = schema[key]
        if isinstance(value, bool) and bool not in types or not isinstance(value, types):
            names = " or ".join(
                {bool: "true/false", int: "an integer", float: "a number", str: "a string", list: "a list of strings"}[
                    t
                ]
                for t in types
            )
            raise InputError(f"config file {path}: {key} must be {names}, got {type(value).__name__} {value!r}")
        if isinstance(value, list) and not all(isinstance(v, str) for v in value):
            raise InputError(f"config file {path}: {key} must be a list of strings, got {value!r}")
    return values
