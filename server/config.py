"""Server configuration: one frozen dataclass, every default in one place."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from colorprop_client import protocol as P

DEFAULT_BIND = P.DEFAULT_ADDRESS
DEFAULT_BACKEND_BIND = "tcp://127.0.0.1:5558"


@dataclass(frozen=True)
class ServerConfig:
    bind: str = DEFAULT_BIND  # ROUTER address (server, or broker frontend)
    weights_dir: str | None = None
    device: str = "auto"
    allowed_roots: tuple[str, ...] = ()  # shared-path mode works only under these folders
    curve_keys: str | None = None  # folder from `colorprop keys`: server.key_secret + authorized_clients/
    curve_client_name: str = "worker"  # worker mode: <curve_keys>/<name>.key_secret authenticates to the broker
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


def read_config_file(path: str | Path, schema: dict[str, tuple[type, ...]]) -> dict[str, Any]:
    """A flat TOML file of options: key -> value, every key in ``schema`` and of one of its types.
    Raises InputError (exit 2) naming the file and the key."""
    from colorprop.errors import InputError

    try:
        with open(path, "rb") as f:
            values = tomllib.load(f)
    except OSError as err:
        raise InputError(f"config file {path}: {err.strerror or err}") from None
    except tomllib.TOMLDecodeError as err:
        raise InputError(f"config file {path}: not valid TOML: {err}") from None
    for key, value in values.items():
        if key not in schema:
            raise InputError(f"config file {path}: unknown key {key!r} (known: {', '.join(sorted(schema))})")
        types = schema[key]
        if isinstance(value, bool) and bool not in types or not isinstance(value, types):
            names = " or ".join({bool: "true/false", int: "an integer", float: "a number", str: "a string",
                                 list: "a list of strings"}[t] for t in types)
            raise InputError(f"config file {path}: {key} must be {names}, got {type(value).__name__} {value!r}")
        if isinstance(value, list) and not all(isinstance(v, str) for v in value):
            raise InputError(f"config file {path}: {key} must be a list of strings, got {value!r}")
    return values
