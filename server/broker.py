"""Broker for scale-out: clients on a frontend ROUTER, ``colorprop serve --worker`` processes on a
backend ROUTER (zguide's Paranoid Pirate queue, with Majordomo-style sticky routing per job).

* Workers announce themselves with READY (their capabilities and ``max_jobs``) and exchange
  heartbeats with the broker every ``heartbeat_s``; a worker silent for ``liveness`` heartbeats
  is dead.
* A job is pinned to one worker (the one with the fewest jobs) when it is opened; every later
  request of that job goes to the same worker.
* When a worker dies, each shared-path job it held is reopened on another worker (the shot starts
  again; outputs are written atomically and the stale temp files of the dead writer removed),
  with event numbers continuing where the client is, and the requests that were in flight are
  resent there. An in-band job cannot be replayed by the broker (the pixels were on the dead
  worker): its client gets ``failed``/``worker_lost`` and the client library resends the shot.
* The broker answers ping and hello itself, and "busy, retry in N s" when every worker is full or
  the client already runs ``max_jobs_per_client`` shots (on all workers together: each worker
  only sees its own share).
* Slots: a job holds a slot of its worker from its open until its terminal event. A refused open
  (error or busy from the worker), a refused restart, a finished job and a route nobody asked
  about for ``session_timeout_s`` all give the slot back.
* Workers authenticate with worker keys (``authorized_workers/``), clients with client keys: a
  client key cannot register as a worker.
"""

from __future__ import annotations

import json
import logging
import threading
import time

import zmq

from colorprop_client import protocol as P
from colorprop_client.protocol import ProtocolError

from . import framing as W
from .broker_routes import Inflight, Route, Worker
from .broker_workers import WorkerSide, send
from .config import ServerConfig
from .logs import log_event
from .curve_server import CurveServer
from .security import WORKERS_DOMAIN, check_bind_allowed, peer_identity
from .status import job_row

log = logging.getLogger("colorprop_server.broker")
request_log = logging.getLogger("colorprop_server.requests")


class Broker(WorkerSide):
    """The frontend (clients: ``_on_client``) and the loop; the backend's half is ``WorkerSide``."""

    def __init__(self, config: ServerConfig, context: zmq.Context | None = None):
        self.config = config
        self.ctx = context or zmq.Context.instance()
        self.workers: dict[bytes, Worker] = {}
        self.routes: dict[str, Route] = {}
        self.jobs_retried = 0
        self._stop = threading.Event()
        self.ready = threading.Event()
        self.frontend_endpoint: str | None = None
        self.backend_endpoint: str | None = None
        from .metrics import BrokerMetrics

        self.metrics = BrokerMetrics(
            lambda: {
                "colorprop_broker_workers": ("workers connected", len(self.workers)),
                "colorprop_broker_jobs_running": (
                    "jobs routed to a worker and not finished",
                    sum(1 for r in self.routes.values() if not r.finished),
                ),
                "colorprop_broker_jobs_retried": (
                    "shared-path jobs restarted on another worker since start",
                    self.jobs_retried,
                ),
            }
        )
        self.metrics_port: int | None = None

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        cfg = self.config
        for addr in (cfg.bind, cfg.backend_bind):
            check_bind_allowed(addr, cfg.curve_keys)
        curve = CurveServer(self.ctx, cfg.curve_keys, workers=True) if cfg.curve_keys else None
        if cfg.metrics_port is not None:
            self.metrics_port = self.metrics.serve(cfg.metrics_host, cfg.metrics_port, log)
        front = self.ctx.socket(zmq.ROUTER)
        back = self.ctx.socket(zmq.ROUTER)
        for s in (front, back):
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.MAXMSGSIZE, cfg.max_message_bytes + P.MAX_HEADER_BYTES)
        if curve:
            curve.apply(front)
            curve.apply(back, WORKERS_DOMAIN)
        try:
            front.bind(cfg.bind)
            back.bind(cfg.backend_bind)
            self.frontend_endpoint = front.getsockopt(zmq.LAST_ENDPOINT).decode()
            self.backend_endpoint = back.getsockopt(zmq.LAST_ENDPOINT).decode()
            log_event(
                log,
                "broker_listening",
                frontend=self.frontend_endpoint,
                backend=self.backend_endpoint,
                curve=bool(curve),
            )
            self.ready.set()
            self._loop(front, back)
        finally:
            for s in (front, back):
                s.close(linger=0)
            if curve:
                curve.stop()
            self.metrics.close()

    # ------------------------------------------------------------------ loop
    def _loop(self, front: zmq.Socket, back: zmq.Socket) -> None:
        poller = zmq.Poller()
        poller.register(front, zmq.POLLIN)
        poller.register(back, zmq.POLLIN)
        interval = self.config.heartbeat_s
        next_hb = time.monotonic() + interval
        while not self._stop.is_set():
            events = dict(poller.poll(int(min(interval, 0.1) * 1000)))
            if back in events:
                for _ in range(64):
                    if not back.poll(0, zmq.POLLIN):
                        break
                    self._on_worker(back.recv_multipart(copy=False), front, back)
            if front in events:
                for _ in range(64):
                    if not front.poll(0, zmq.POLLIN):
                        break
                    self._on_client(front.recv_multipart(copy=False), front, back)
            now = time.monotonic()
            if now >= next_hb:
                for w in list(self.workers.values()):
                    send(back, [w.ident, W.WORKER_PROTO, W.HEARTBEAT])
                next_hb = now + interval
            for w in [w for w in self.workers.values() if w.expiry < now]:
                self._worker_died(w, front, back)
            # The worker drops a session nobody asked about for session_timeout_s: so do we.
            idle = self.config.session_timeout_s + interval * self.config.liveness
            for r in [r for r in self.routes.values() if now - r.last_seen > idle]:
                self._forget(r)
        for w in self.workers.values():
            send(back, [w.ident, W.WORKER_PROTO, W.DISCONNECT])

    # ------------------------------------------------------------------ workers
    def _release(self, r: Route) -> None:
        """The job finished (or can run no more): its worker's slot is free; the route stays for the
        client's last fetches and close."""
        r.finished = True
        if r.worker in self.workers:
            self.workers[r.worker].jobs.discard(r.job)

    def _forget(self, r: Route) -> None:
        self._release(r)
        self.routes.pop(r.job, None)

    # ------------------------------------------------------------------ clients
    def _on_client(self, frames: list, front: zmq.Socket, back: zmq.Socket) -> None:
        if len(frames) < 2:
            return
        env, body = frames[0].bytes, frames[1:]
        identity = peer_identity(frames[1]).encode()
        t0 = time.monotonic()

        def reply(out: list, status: str | None = None) -> None:
            send(front, [env, *out])
            self.metrics.requests.labels(str(status)).inc()
            log_event(
                request_log,
                "request",
                client=identity.decode(),
                broker=True,
                status=status,
                ms=round((time.monotonic() - t0) * 1000, 2),
            )

        try:
            msg = P.decode(body, self.config.max_message_bytes, expect=P.REQUEST_TYPES)
        except ProtocolError as exc:
            reply(P.error_reply(exc.request_id, exc.code, exc.message, exc.field), "error")
            return
        if msg.type == P.PING:
            reply(P.encode(P.PONG, msg.id, time=time.time(), workers=len(self.workers), jobs=len(self.routes)), "pong")
            return
        if msg.type == P.STATUS:
            reply(P.encode(P.JOBS, msg.id, jobs=self._jobs(identity), workers=len(self.workers)), "jobs")
            return
        if msg.type == P.HELLO:
            if not self.workers:
                reply(P.encode(P.BUSY, msg.id, message="no worker connected", retry_after_s=2.0), "busy")
                return
            caps = dict(next(iter(self.workers.values())).caps)
            caps["broker"] = {"workers": len(self.workers)}
            reply(P.encode(P.CAPABILITIES, msg.id, **caps), "capabilities")
            return
        job = msg.get("job")
        if not isinstance(job, str) or not 0 < len(job) <= 64:
            reply(P.error_reply(msg.id, P.E_BAD_INPUT, "job must be a string", "job"), "error")
            return
        r = self.routes.get(job)
        if msg.type == P.OPEN_SHOT and r is None:
            running = self._running_jobs_of(identity)
            if running >= self.config.max_jobs_per_client:  # each worker counts only the jobs it holds
                reply(
                    P.encode(
                        P.BUSY,
                        msg.id,
                        message=f"client {identity.decode('utf-8', 'replace')} already has "
                        f"{running} shots running (the per-client limit)",
                        retry_after_s=2.0,
                    ),
                    "busy",
                )
                return
            w = self._pick_worker()
            if w is None:
                reply(
                    P.encode(
                        P.BUSY,
                        msg.id,
                        message="all workers are full" if self.workers else "no worker connected",
                        retry_after_s=2.0,
                    ),
                    "busy",
                )
                return
            mode = msg.get("mode") if msg.get("mode") in P.MODES else P.MODE_INBAND
            r = Route(
                job,
                w.ident,
                mode,
                # (a live session is not replayed: its edits live on the worker that died; its client hears
                # worker_lost and opens it again)
                [bytes(f.bytes) for f in body] if mode == P.MODE_PATHS and msg.get("live") is not True else None,
                identity,
                frames=len(msg.get("frames")) if isinstance(msg.get("frames"), list) else 0,
            )
            self.routes[job] = r
            w.jobs.add(job)
        if r is None:
            reply(P.error_reply(msg.id, P.E_UNKNOWN_JOB, f"no job {job} on this broker", "job"), "error")
            return
        r.last_seen = time.monotonic()
        if r.worker is None:
            if msg.type == P.CLOSE:
                self._forget(r)
                reply(P.encode(P.ACK, msg.id, job=job, closed=True), "ack")
            else:
                self._answer_failed(r, env, body, front)
            return
        self._forward(r, env, identity, body, msg.id, msg.type, back)
        if msg.type == P.CLOSE:
            self._forget(r)

    def _running_jobs_of(self, identity: bytes) -> int:
        """The client's shots that hold a worker's slot, on every worker (a job failed for good holds none)."""
        return sum(1 for r in self.routes.values() if r.identity == identity and not r.finished and r.failed is None)

    def _jobs(self, identity: bytes) -> list[dict]:
        """The status listing: every route (other clients' job ids cut short), with its worker."""
        now = time.monotonic()
        asker = identity.decode("utf-8", "replace")  # (identities are str.encode()d: decoding keeps them apart)
        return [
            dict(
                job_row(
                    r.job,
                    r.identity.decode("utf-8", "replace"),
                    asker,
                    "failed" if r.failed is not None and r.worker is None else r.state,
                    r.mode,
                    r.frames_done,
                    r.frames,
                    now - r.created,
                ),
                worker=r.worker.hex()[:16] if r.worker else None,
            )
            for r in self.routes.values()
        ]

    def _forward(
        self, r: Route, env: bytes, identity: bytes, body: list, rid: str, mtype: str, back: zmq.Socket
    ) -> None:
        w = self.workers.get(r.worker)
        if w is None:
            return
        frames = [f if isinstance(f, (bytes, bytearray)) else f.bytes for f in body]
        w.inflight[rid] = Inflight(env, identity, frames, r.job, mtype)
        send(back, [w.ident, W.WORKER_PROTO, W.REQUEST, env, identity, *frames])

    def _answer_failed(self, r: Route, env: bytes, body: list, front: zmq.Socket) -> None:
        try:
            head = json.loads(bytes(body[0]) if isinstance(body[0], (bytes, bytearray)) else body[0].bytes)
            rid = head.get("id", "-")
            mtype = head.get("type")
        except ValueError:
            rid, mtype = "-", None
        failed = r.failed or {"kind": P.EV_FAILED, "code": P.E_WORKER_LOST, "message": "worker lost"}
        if mtype == P.FETCH:
            ev = dict(failed, seq=r.last_seq + 1)
            send(front, [env, *P.encode(P.EVENTS, rid, job=r.job, state="failed", events=[ev])])
        else:
            send(front, [env, *P.error_reply(rid, str(failed["code"]), str(failed["message"]), "job")])


def run_broker(config: ServerConfig, install_signals: bool = True) -> None:
    import signal

    broker = Broker(config)
    if install_signals and threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: broker.stop())
    broker.run()
