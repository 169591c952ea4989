"""The broker's backend: workers announce themselves (READY), send heartbeats and replies, and die; a job
of a dead worker is restarted on another (shared paths) or failed to its client (in-band). A half of
``Broker`` (``broker.py`` has the frontend and the loop), sharing its ``workers`` and ``routes``."""

from __future__ import annotations

import json
import logging
import time

import zmq

from colorprop_client import protocol as P

from . import framing as W
from .broker_routes import Worker
from .logs import log_event
from .security import peer_identity

log = logging.getLogger("colorprop_server.broker")


def send(sock: zmq.Socket, frames: list) -> None:
    try:
        sock.send_multipart(frames, flags=zmq.NOBLOCK)
    except zmq.ZMQError as exc:
        log.warning("message dropped: %s", exc)


class WorkerSide:
    def _on_worker(self, frames: list, front: zmq.Socket, back: zmq.Socket) -> None:
        if len(frames) < 3 or frames[1].bytes != W.WORKER_PROTO:
            return
        ident, cmd = frames[0].bytes, frames[2].bytes
        now = time.monotonic()
        expiry = now + self.config.heartbeat_s * self.config.liveness
        w = self.workers.get(ident)
        if cmd == W.READY:
            try:
                caps = json.loads(frames[3].bytes) if len(frames) > 3 else {}
            except ValueError:
                caps = {}
            if w is None:
                self.workers[ident] = Worker(ident, caps if isinstance(caps, dict) else {}, expiry)
                log_event(
                    log,
                    "worker_ready",
                    worker=ident.hex()[:16],
                    identity=peer_identity(frames[0]),
                    workers=len(self.workers),
                )
            return
        if w is None:
            return  # unknown (expired) worker: it will notice the silence and reconnect
        w.expiry = expiry
        if cmd == W.REPLY and len(frames) >= 5:
            self._on_reply(w, frames[3].bytes, frames[4:], front)
        elif cmd == W.DISCONNECT:  # a worker stopping cleanly: its shared-path jobs move on too
            self._worker_died(w, front, back)

    def _on_reply(self, w: Worker, env: bytes, out: list, front: zmq.Socket) -> None:
        try:
            head = json.loads(out[0].bytes)
        except ValueError:
            head = {}
        if not isinstance(head, dict):
            head = {}
        rid, rtype = head.get("id", ""), head.get("type")
        entry = w.inflight.pop(rid, None) if isinstance(rid, str) else None
        job = entry.job if entry else head.get("job")
        r = self.routes.get(job) if isinstance(job, str) else None
        refused = rtype in (P.ERROR, P.BUSY)
        if isinstance(rid, str) and rid.startswith(W.RETRY_PREFIX):  # the reply to our own restart of a job
            if r is not None and refused:
                log_event(log, "job_retry_refused", logging.WARNING, job=r.job, reply=rtype, code=head.get("code"))
                self._release(r)
                r.worker = None
                r.failed = {
                    "kind": P.EV_FAILED,
                    "code": P.E_WORKER_LOST,
                    "message": f"the worker running this job died and its restart was refused: "
                    f"{head.get('message', rtype)}",
                }
            return
        if r is not None and entry is not None and entry.type == P.OPEN_SHOT and refused:
            self._forget(r)  # the worker refused the open: no job there, no slot held
        elif r is not None and rtype == P.EVENTS:
            for ev in head.get("events", []):
                if isinstance(ev, dict) and isinstance(ev.get("seq"), int):
                    r.last_seq = max(r.last_seq, ev["seq"])
                    if ev.get("kind") == P.EV_PROGRESS and type(ev.get("done")) is int:
                        r.frames_done = ev["done"]
                    if ev.get("kind") in P.TERMINAL_EVENTS:
                        r.state = str(ev["kind"])
                        self._release(r)
        elif r is not None and rtype == P.ERROR and head.get("code") == P.E_UNKNOWN_JOB:
            self._forget(r)
        send(front, [env, *out])

    def _worker_died(self, w: Worker, front: zmq.Socket, back: zmq.Socket | None) -> None:
        self.workers.pop(w.ident, None)
        log_event(
            log, "worker_lost", logging.WARNING, worker=w.ident.hex()[:16], jobs=len(w.jobs), workers=len(self.workers)
        )
        for job in list(w.jobs):
            r = self.routes.get(job)
            if r is None:
                continue
            r.worker = None
            target = (
                self._pick_worker()
                if (
                    r.mode == P.MODE_PATHS
                    and r.open_frames is not None
                    and r.retries < self.config.job_retries
                    and back is not None
                )
                else None
            )
            if target is not None:
                r.retries += 1
                self.jobs_retried += 1
                r.worker = target.ident
                target.jobs.add(job)
                head = json.loads(bytes(r.open_frames[0]))
                head.update(id=W.RETRY_PREFIX + P.new_id()[:24], seq_base=r.last_seq + 1)
                send(
                    back,
                    [
                        target.ident,
                        W.WORKER_PROTO,
                        W.REQUEST,
                        W.BROKER_ENVELOPE,
                        r.identity,
                        json.dumps(head).encode(),
                        *r.open_frames[1:],
                    ],
                )
                # Tell the client (the event numbers continue after the one it has seen).
                r.failed = None
                log_event(log, "job_retried", logging.WARNING, job=job, worker=target.ident.hex()[:16], retry=r.retries)
            else:
                r.failed = {
                    "kind": P.EV_FAILED,
                    "code": P.E_WORKER_LOST,
                    "message": "the worker running this job died"
                    + (
                        "; in-band jobs must be resent by the client"
                        if r.mode == P.MODE_INBAND
                        else "; no worker left to retry it"
                    ),
                }
        for rid, req in w.inflight.items():
            r = self.routes.get(req.job)
            if r is not None and r.worker is not None and back is not None:
                self._forward(r, req.env, req.identity, req.frames, rid, req.type, back)
            elif r is not None and r.failed is not None:
                self._answer_failed(r, req.env, req.frames, front)
            elif r is None and req.type == P.OPEN_SHOT:  # an open that died with the worker: busy, retry
                send(front, [req.env, *P.encode(P.BUSY, rid, message="the worker died", retry_after_s=1.0)])

    def _pick_worker(self) -> Worker | None:
        free = [w for w in self.workers.values() if len(w.jobs) < w.capacity]
        return min(free, key=lambda w: len(w.jobs)) if free else None
