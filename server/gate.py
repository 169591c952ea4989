"""Who may compute and who may hold memory: the compute turn handed round-robin between jobs
(``FairGate``), and the budgets that answer ``busy`` to a new shot or an in-band frame (job slots,
per-client limits, each client's fair share of the memory budget)."""

from __future__ import annotations

import threading
from collections import deque
from typing import TYPE_CHECKING, Callable, Iterable

from .config import ServerConfig

if TYPE_CHECKING:
    from .session import Session


class Stopped(Exception):
    """Raised inside a job thread when its session is cancelled or dropped."""


class FairGate:
    """One compute turn at a time, granted to waiting jobs in FIFO order (= round-robin, since a
    job that gives the turn back and asks again queues behind the others)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._holder: str | None = None
        self._waiting: deque[str] = deque()

    def acquire(self, job: str, stopped: Callable[[], bool]) -> None:
        with self._cond:
            if self._holder == job:
                return
            self._waiting.append(job)
            try:
                while not (self._holder is None and self._waiting[0] == job):
                    if stopped():
                        raise Stopped()
                    self._cond.wait(0.05)
            except BaseException:
                self._waiting.remove(job)
                self._cond.notify_all()
                raise
            self._waiting.popleft()
            self._holder = job

    def release(self, job: str) -> None:
        with self._cond:
            if self._holder == job:
                self._holder = None
                self._cond.notify_all()

    def waiting(self) -> int:
        with self._cond:
            return len(self._waiting)


def open_busy(config: ServerConfig, sessions: Iterable[Session], client: str, key_bytes: int) -> str | None:
    """Why a new shot must wait (``busy``), or None: all slots taken, this client's share taken,
    or its keys would not fit in its share of the memory budget."""
    sessions = list(sessions)
    active = [s for s in sessions if not s.finished]
    if len(active) >= config.max_jobs:
        return f"{config.max_jobs} shots already running"
    mine = sum(1 for s in active if s.client == client)
    if mine >= config.max_jobs_per_client:
        return f"client {client} already has {mine} shots running (the per-client limit)"
    return memory_busy(config, sessions, client, key_bytes)


def frame_busy(config: ServerConfig, sessions: Iterable[Session], client: str, nbytes: int) -> str | None:
    """Why an in-band frame must wait (``busy``), or None: this client's buffered frames, or its
    share of the memory budget."""
    sessions = list(sessions)
    mine = sum(len(s.inbox) for s in sessions if s.client == client)
    if mine >= config.max_client_buffered_frames:
        return f"client {client} has {mine} frames waiting (the per-client limit)"
    return memory_busy(config, sessions, client, nbytes)


def memory_busy(config: ServerConfig, sessions: Iterable[Session], client: str, nbytes: int) -> str | None:
    """Why ``client`` must wait before holding ``nbytes`` more pixels, or None.

    The budget is shared fairly: each client with work (a running shot or pixels held) may always
    hold an equal share of it, whatever the others hold; past its share a client is let in only while
    the budget has room. So a client that filled the budget alone keeps what it holds, but its next
    keys and frames wait (``busy``) as soon as another client has work, and the other is never
    refused within its share. (While the first still holds more than its share, the total can pass
    the budget by the newcomers' shares; it comes back under as the first one's shots end.)"""
    held: dict[str, int] = {}
    running = {client}
    for s in sessions:
        held[s.client] = held.get(s.client, 0) + s.held_bytes()
        if not s.finished:
            running.add(s.client)
    with_work = running | {c for c, n in held.items() if n}
    share = config.max_memory_bytes // len(with_work)
    mine, total = held.get(client, 0), sum(held.values())
    if mine + nbytes <= share or total + nbytes <= config.max_memory_bytes:
        return None
    return (
        f"the server's memory budget ({config.max_memory_bytes >> 20} MiB) is full and client {client} "
        f"would hold {(mine + nbytes) >> 20} MiB, above its share ({share >> 20} MiB: an equal part among "
        f"{len(with_work)} client(s) with work)"
    )
