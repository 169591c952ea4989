"""What the broker knows of each worker (its slots and the requests in flight there) and of each job (its
route: which worker holds it, how to restart it, what its client has seen)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class Worker:
    ident: bytes
    caps: dict
    expiry: float
    jobs: set = field(default_factory=set)  # jobs routed here and not yet finished (the slots held)
    inflight: dict = field(default_factory=dict)  # request id -> Inflight

    @property
    def capacity(self) -> int:
        return int((self.caps.get("limits") or {}).get("max_jobs", 1))


@dataclass
class Inflight:
    env: bytes
    identity: bytes
    frames: list
    job: str
    type: str


@dataclass
class Route:
    job: str
    worker: bytes | None
    mode: str
    open_frames: list | None  # the original open_shot (shared-path jobs only, for a restart)
    identity: bytes = b""  # the client's CURVE key name or address, passed on to the worker
    last_seq: int = -1
    retries: int = 0
    failed: dict | None = None  # terminal event to hand out once the worker is lost for good
    finished: bool = False  # a terminal event went by: the worker's slot is free again
    last_seen: float = field(default_factory=time.monotonic)
    created: float = field(default_factory=time.monotonic)
    state: str = "running"  # then the kind of the terminal event seen (done, failed, cancelled)
    frames_done: int = 0  # from the progress events going by
    frames: int = 0
