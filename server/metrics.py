"""Prometheus metrics of a server (or worker) and of a broker, in the text exposition format over
HTTP (``--metrics-port``; loopback unless ``--metrics-host`` says otherwise).

Counters are updated where things happen (``Service``); the queue's state (sessions, jobs running,
jobs waiting for the compute turn, frames per second) is read when scraped. Client labels are the
client identity (CURVE key name, or address), bounded: past ``MAX_CLIENT_LABELS`` distinct clients
the rest count as ``other``, so a flood of addresses cannot grow the exposition without end.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any, Callable

from .logs import log_event

try:
    from prometheus_client import CollectorRegistry, Counter
    from prometheus_client.core import GaugeMetricFamily
    from prometheus_client.exposition import ThreadingWSGIServer, make_wsgi_app
except ModuleNotFoundError:  # an environment installed before it was a dependency: all but metrics works
    CollectorRegistry = None

MAX_CLIENT_LABELS = 32
RATE_WINDOW_S = 60.0
# A scrape sends its request at once; a connection silent this long is closed, so idle or
# half-open connections cannot pile up threads (one per connection).
READ_TIMEOUT_S = 10.0


class _ClientLabels:
    def __init__(self, limit: int = MAX_CLIENT_LABELS):
        self.limit, self.seen, self.lock = limit, set(), threading.Lock()

    def __call__(self, client: str) -> str:
        with self.lock:
            if client in self.seen or len(self.seen) < self.limit:
                self.seen.add(client)
                return client
        return "other"


class _Gauges:
    """A collector whose values come from a function at scrape time: {name: (help, value)}."""

    def __init__(self, read: Callable[[], dict[str, tuple[str, float]]]):
        self.read = read

    def collect(self):
        for name, (text, value) in self.read().items():
            yield GaugeMetricFamily(name, text, value=value)


class _Uncounted:
    """Stands in for a Counter when prometheus_client is missing (``serve`` then says so)."""

    def labels(self, *_: Any) -> "_Uncounted":
        return self

    def inc(self, *_: Any) -> None:
        pass


def _counter(*args: Any, **kw: Any) -> Any:
    return Counter(*args, **kw) if CollectorRegistry is not None else _Uncounted()


def _serve_registry(registry: Any, host: str, port: int) -> Any:
    """The metrics page of ``registry`` over HTTP on host:port, served by a daemon thread (a thread
    per connection, each closed after READ_TIMEOUT_S of silence). A port in use is a refused
    setting (exit 2 naming --metrics-port), not a traceback."""
    import socket
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from .config import setting_error

    if registry is None:
        from colorprop.errors import InputError

        raise InputError(
            "--metrics-port needs prometheus_client: pip install prometheus-client (or reinstall colorprop)"
        )

    class Handler(WSGIRequestHandler):
        timeout = READ_TIMEOUT_S  # StreamRequestHandler sets it on the connection's socket

        def handle(self) -> None:
            try:
                super().handle()
            except (TimeoutError, ConnectionError):
                self.close_connection = True

        def log_message(self, *_: Any) -> None:
            pass  # one line per scrape would drown the journal

    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
    except (OSError, UnicodeError) as err:
        raise setting_error("--metrics-host", host, f"not an address of this machine ({err})") from None
    server_class = type("MetricsServer", (ThreadingWSGIServer,), {"address_family": family})
    try:
        http = make_server(host, port, make_wsgi_app(registry), server_class, handler_class=Handler)
    except OSError as err:
        raise setting_error("--metrics-port", port, f"cannot listen on {host}:{port}: {err.strerror or err}") from None
    threading.Thread(target=http.serve_forever, name="metrics-http", daemon=True).start()
    return http


class ServerMetrics:
    """The counters of one server or worker (one registry each: several can live in one process)."""

    def __init__(self, state: Callable[[], dict[str, Any]]):
        self.registry = CollectorRegistry() if CollectorRegistry is not None else None
        self.client = _ClientLabels()
        r = self.registry
        self.jobs_started = _counter("colorprop_jobs_started", "shots opened", ["client"], registry=r)
        self.jobs_finished = _counter(
            "colorprop_jobs_finished",
            "shots ended, by final state (done, failed, cancelled)",
            ["client", "state"],
            registry=r,
        )
        self.frames = _counter("colorprop_frames", "frames coloured", ["client"], registry=r)
        self.requests = _counter("colorprop_requests", "requests answered, by type", ["type"], registry=r)
        self.errors = _counter(
            "colorprop_errors", "error replies and failed shots, by error code", ["code"], registry=r
        )
        self._frame_times: deque[float] = deque()
        self._lock = threading.Lock()
        self._state = state
        if self.registry is not None:
            self.registry.register(_Gauges(self._gauges))
        self._http: Any = None

    def job_started(self, client: str) -> None:
        self.jobs_started.labels(self.client(client)).inc()

    def job_finished(self, client: str, state: str, code: str | None = None) -> None:
        self.jobs_finished.labels(self.client(client), state).inc()
        if code:
            self.errors.labels(code).inc()

    def frame_done(self, client: str) -> None:
        self.frames.labels(self.client(client)).inc()
        with self._lock:
            self._frame_times.append(time.monotonic())

    def request(self, type: str, error_code: str | None) -> None:
        self.requests.labels(type).inc()
        if error_code:
            self.errors.labels(error_code).inc()

    def frames_per_second(self) -> float:
        now = time.monotonic()
        with self._lock:
            while self._frame_times and self._frame_times[0] < now - RATE_WINDOW_S:
                self._frame_times.popleft()
            return len(self._frame_times) / RATE_WINDOW_S

    def _gauges(self) -> dict[str, tuple[str, float]]:
        s = self._state()
        return {
            "colorprop_sessions": ("shot sessions held (running or waiting to be fetched)", s["sessions"]),
            "colorprop_jobs_running": ("shots running", s["active_jobs"]),
            "colorprop_queue_depth": ("running shots waiting for the compute turn", s["waiting_for_turn"]),
            "colorprop_frames_per_second": (
                f"frames coloured per second over the last {RATE_WINDOW_S:g} s",
                self.frames_per_second(),
            ),
        }

    def serve(self, host: str, port: int, log: logging.Logger) -> int:
        """Start the HTTP endpoint and log its address on ``log``; returns the port (``port`` 0: one the
        OS picked)."""
        self._http = _serve_registry(self.registry, host, port)
        bound = int(self._http.server_address[1])
        log_event(log, "metrics_listening", url=f"http://{host}:{bound}/metrics")
        return bound

    def close(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None


class BrokerMetrics:
    def __init__(self, state: Callable[[], dict[str, tuple[str, float]]]):
        self.registry = CollectorRegistry() if CollectorRegistry is not None else None
        self.requests = _counter(
            "colorprop_broker_requests",
            "requests the broker answered itself (ping, hello, busy, errors), by reply type",
            ["status"],
            registry=self.registry,
        )
        if self.registry is not None:
            self.registry.register(_Gauges(state))
        self._http: Any = None

    serve = ServerMetrics.serve
    close = ServerMetrics.close
