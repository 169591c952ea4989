"""The socket loops: a standalone ROUTER server, and a Paranoid Pirate worker behind a broker.

Both run a :class:`~colorprop_server.service.Service` in the socket thread; job threads wake the
loop through a pipe, so a finished frame is answered immediately without busy polling.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from typing import Any

import zmq
from zmq.utils.monitor import parse_monitor_message

from colorprop_client import protocol as P

from . import framing as W
from .config import ServerConfig
from .logs import log_event
from .curve_server import CurveServer
from .security import check_bind_allowed, check_connect_allowed, curve_client_keys, peer_identity
from .service import Service

log = logging.getLogger("colorprop_server")


class _WakePipe:
    def __init__(self) -> None:
        self.r, self.w = os.pipe()
        os.set_blocking(self.r, False)
        os.set_blocking(self.w, False)

    def wake(self) -> None:
        try:
            os.write(self.w, b"x")
        except (BlockingIOError, OSError):
            pass  # pipe full (already woken) or closed at shutdown

    def drain(self) -> None:
        try:
            while os.read(self.r, 4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def close(self) -> None:
        for fd in (self.r, self.w):
            try:
                os.close(fd)
            except OSError:
                pass


def load_engine(config: ServerConfig) -> Any:
    if config.engine is not None:
        return config.engine
    from colorprop.engine.engine import Engine

    t0 = time.monotonic()
    engine = Engine.load(config.weights_dir, config.device)
    if engine.weights_error is not None and config.weights_dir is not None:
        from colorprop.errors import WeightsError

        # Asked for by name (a manifest that reads, a network file that does not): a flow-only server would
        # hide the mistake until an artist asks for `full`.
        raise WeightsError(f"--weights {config.weights_dir}: {engine.weights_error}")
    desc = engine.describe()
    level = logging.INFO if engine.weights_error is None else logging.WARNING
    log_event(
        log,
        "engine_loaded",
        level,
        device=desc["device"],
        precision=desc["precision"],
        weights=(desc["weights"] or {}).get("folder"),
        weights_version=(desc["weights"] or {}).get("version"),
        weights_error=engine.weights_error,
        methods=engine.methods(),
        s=round(time.monotonic() - t0, 2),
    )
    return engine


class Server:
    """A standalone server (``mode="server"``) or a broker worker (``mode="worker"``).

    ``run()`` blocks until ``stop()`` (or SIGTERM/SIGINT when ``serve`` installed handlers), then
    cancels the jobs, lets the frame in flight finish (at most ``shutdown_grace_s``), answers the
    waiting long-polls and returns.
    """

    def __init__(self, config: ServerConfig, context: zmq.Context | None = None):
        # Refuse an insecure address before loading anything (a clean exit 2, in a second).
        if config.broker:
            check_connect_allowed(config.broker, config.curve_keys)
        else:
            check_bind_allowed(config.bind, config.curve_keys)
        self.config = config
        self.ctx = context or zmq.Context.instance()
        self._stop = threading.Event()
        self._pipe = _WakePipe()
        self.engine = load_engine(config)
        self.service = Service(config, self.engine, self._pipe.wake)
        self.ready = threading.Event()
        self.endpoint: str | None = None
        self.metrics_port: int | None = None

    def _start_metrics(self) -> None:
        if self.config.metrics_port is not None:
            self.metrics_port = self.service.metrics.serve(self.config.metrics_host, self.config.metrics_port, log)

    def stop(self) -> None:
        self._stop.set()
        self._pipe.wake()

    # ------------------------------------------------------------------ standalone ROUTER
    def run(self) -> None:
        self._start_metrics()
        try:
            if self.config.broker:
                return self._run_worker()
            return self._run_router()
        finally:
            self.service.metrics.close()

    def _run_router(self) -> None:
        curve = CurveServer(self.ctx, self.config.curve_keys) if self.config.curve_keys else None
        sock = self.ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, self.config.max_message_bytes + P.MAX_HEADER_BYTES)
        if curve:
            curve.apply(sock)
        try:
            sock.bind(self.config.bind)
            self.endpoint = sock.getsockopt(zmq.LAST_ENDPOINT).decode()
            log_event(log, "listening", endpoint=self.endpoint, curve=bool(curve))
            self.ready.set()
            self._loop(sock, self._router_recv)
        finally:
            sock.close(linger=0)
            if curve:
                curve.stop()
            self._pipe.close()

    def _router_recv(self, sock: zmq.Socket) -> None:
        frames = sock.recv_multipart(copy=False)
        if len(frames) < 2:
            return
        ident = frames[0].bytes
        self.service.handle(
            frames[1:], peer_identity(frames[1]), lambda out, ident=ident: self._send(sock, [ident, *out])
        )

    @staticmethod
    def _send(sock: zmq.Socket, frames: list) -> None:
        try:
            sock.send_multipart(frames, copy=False, flags=zmq.NOBLOCK)
        except zmq.Again:
            log.warning("reply dropped: peer not reading")
        except zmq.ZMQError as exc:
            log.warning("reply dropped: %s", exc)

    def _loop(self, sock: zmq.Socket, on_readable: Any, on_idle: Any = None) -> None:
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(self._pipe.r, zmq.POLLIN)
        service = self.service
        shutdown_started: float | None = None
        drain_until: float | None = None
        while True:
            if self._stop.is_set() and shutdown_started is None:
                shutdown_started = time.monotonic()
                log_event(log, "shutdown", jobs=len(service.active_jobs()))
                service.shutdown()
            if shutdown_started is not None:
                # Stopping: the frames in flight finish (at most shutdown_grace_s), then the clients
                # have shutdown_drain_s to fetch why their jobs ended, then the loop ends.
                now = time.monotonic()
                if drain_until is None and not service.threads_alive():
                    drain_until = now + self.config.shutdown_drain_s
                if (
                    now - shutdown_started > self.config.shutdown_grace_s
                    or drain_until is not None
                    and (service.all_told() or now > drain_until)
                ):
                    service.tick()  # answer waiting long-polls with the final events
                    break
            nd = service.next_deadline()
            timeout = 100 if nd is None else max(0, min(100, int((nd - time.monotonic()) * 1000) + 1))
            events = dict(poller.poll(timeout))
            if self._pipe.r in events:
                self._pipe.drain()
            if sock in events:
                for _ in range(64):  # bounded burst, then tick
                    if not sock.poll(0, zmq.POLLIN):
                        break
                    on_readable(sock)
            if on_idle is not None:
                on_idle(sock)
            service.tick()
        # Give the last replies a moment to leave before the socket closes.
        time.sleep(0.05)

    # ------------------------------------------------------------------ worker (Paranoid Pirate)
    def _worker_socket(self) -> tuple[zmq.Socket, zmq.Socket]:
        """A DEALER connected to the broker, READY queued, and the monitor that reports a refused handshake."""
        keys = (
            curve_client_keys(self.config.curve_keys, self.config.curve_client_name) if self.config.curve_keys else None
        )
        sock = self.ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, self.config.max_message_bytes + P.MAX_HEADER_BYTES)
        if keys:
            sock.curve_publickey, sock.curve_secretkey, sock.curve_serverkey = keys
        monitor = sock.get_monitor_socket(_HANDSHAKE_FAILED)
        sock.connect(self.config.broker)
        caps = dict(self.service.capabilities(), worker={"pid": os.getpid()})
        sock.send_multipart([W.WORKER_PROTO, W.READY, json.dumps(caps).encode()])
        return sock, monitor

    def _handshake_refusal(self, monitor: zmq.Socket) -> str | None:
        """Why the broker refused this worker's connection (its monitor's latest event), or None."""
        why = None
        while monitor.poll(0):
            event = parse_monitor_message(monitor.recv_multipart())["event"]
            if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                why = (
                    f"the broker refused the CURVE key {self.config.curve_client_name!r}: it is not one of its "
                    "worker keys (a client key cannot serve as a worker; `colorprop keys DIR --worker NAME` "
                    "makes one and lists it with the broker)"
                )
            else:
                why = (
                    "the CURVE handshake with the broker failed: is the server key in --curve-keys the "
                    "broker's public key, and does the broker use CURVE?"
                )
        return why

    def _run_worker(self) -> None:
        cfg = self.config
        interval = cfg.heartbeat_s
        try:
            first, monitor = self._worker_socket()
        except Exception:
            self._pipe.close()
            raise
        state = {
            "sock": first,
            "monitor": monitor,
            "broker_seen": time.monotonic(),
            "hb_sent": 0.0,
            "backoff": interval,
        }
        self.endpoint = cfg.broker
        self.ready.set()
        log_event(log, "worker_connected", broker=cfg.broker)

        def on_readable(sock: zmq.Socket) -> None:
            frames = sock.recv_multipart(copy=False)
            state["broker_seen"] = time.monotonic()
            state["backoff"] = interval
            if len(frames) < 2 or frames[0].bytes != W.WORKER_PROTO:
                return
            cmd = frames[1].bytes
            if cmd == W.REQUEST and len(frames) >= 5:
                env, identity = frames[2].bytes, frames[3].bytes.decode("utf-8", "replace")
                self.service.handle(
                    frames[4:], identity, lambda out, env=env: self._send(sock, [W.WORKER_PROTO, W.REPLY, env, *out])
                )
            elif cmd == W.DISCONNECT:
                state["reconnect"] = True

        def on_idle(sock: zmq.Socket) -> None:
            now = time.monotonic()
            if now - state["hb_sent"] >= interval:
                try:  # not connected yet (or refused): nothing to tell, the liveness check decides
                    sock.send_multipart([W.WORKER_PROTO, W.HEARTBEAT], flags=zmq.NOBLOCK)
                except zmq.ZMQError:
                    pass
                state["hb_sent"] = now
            refused = self._handshake_refusal(state["monitor"])
            if refused:  # the broker is there and said no: say so, once per connection, not "broker lost"
                log_event(
                    log, "worker_refused", logging.ERROR, broker=cfg.broker, reason=refused, retry_in_s=state["backoff"]
                )
                raise _Reconnect()
            if state.pop("reconnect", False) or now - state["broker_seen"] > interval * cfg.liveness:
                # The broker is gone (or forgot us): it has given our jobs to others, so drop them.
                log_event(log, "broker_lost", logging.WARNING, reconnect_in_s=state["backoff"])
                self.service.cancel_all("broker lost")
                raise _Reconnect()

        while not self._stop.is_set():
            sock = state["sock"]
            try:
                self._loop(sock, on_readable, on_idle)
                break
            except _Reconnect:
                _close_with_monitor(sock, state["monitor"])
                self._stop.wait(state["backoff"])
                state["backoff"] = min(state["backoff"] * 2, 32 * interval)
                state["sock"], state["monitor"] = self._worker_socket()
                state["broker_seen"] = time.monotonic()
        try:
            state["sock"].send_multipart([W.WORKER_PROTO, W.DISCONNECT], flags=zmq.NOBLOCK)
        except zmq.ZMQError:
            pass
        _close_with_monitor(state["sock"], state["monitor"], linger=100)
        self._pipe.close()


class _Reconnect(Exception):
    pass


_HANDSHAKE_FAILED = (
    zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
)


def _close_with_monitor(sock: zmq.Socket, monitor: zmq.Socket, linger: int = 0) -> None:
    sock.disable_monitor()
    monitor.close(linger=0)
    sock.close(linger=linger)


def serve(config: ServerConfig | None = None, install_signals: bool = True) -> None:
    """Run a server (or a worker, when ``config.broker`` is set) until SIGTERM/SIGINT."""
    config = config or ServerConfig()
    server = Server(config)
    if install_signals and threading.current_thread() is threading.main_thread():
        previous = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, lambda *_: server.stop())
        try:
            server.run()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    else:
        server.run()
