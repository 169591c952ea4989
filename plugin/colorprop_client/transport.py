"""Lazy Pirate request/reply (zguide ch. 4) over one DEALER socket: every request is sent with LINGER 0 and a
fresh request id; the reply is awaited with ``poll`` for at most ``timeout_s``; on silence the socket is closed
and reopened and the request resent, at most ``retries`` times, then :class:`ServerUnavailable` is raised.
Nothing here blocks forever.

A socket monitor watches the connection: a lost connection ends the wait at once (the request died with it), a
server whose connection is up and answers ZeroMQ heartbeats is slow, not dead, and is waited for up to
``live_wait_s``; a CURVE handshake the server refused raises :class:`AuthenticationFailed` instead of looking
like an absent server.
"""

from __future__ import annotations

import time
from typing import Any, Mapping, Sequence

import numpy as np
import zmq

from . import protocol as P
from .curve_keys import CurveKeys
from .errors import AuthenticationFailed, ProtocolError, ServerUnavailable, handshake_failure, raise_for_reply

# Give-up defaults (library, `colorize --server`, DCC plug-ins): a dead or absent server is reported
# within DEFAULT_RETRIES x DEFAULT_TIMEOUT_S + LONG_POLL_S = 4.6 s at most (a killed server: about
# 2 x DEFAULT_TIMEOUT_S, since the dropped connection is seen at once).
DEFAULT_TIMEOUT_S = 1.2
DEFAULT_RETRIES = 3
# A server whose connection is up and answers heartbeats is waited for this long per request (a big
# frame on a slow link, a loaded machine); a silent connection is dropped after HEARTBEAT_TIMEOUT_MS.
LIVE_WAIT_S = 60.0
HEARTBEAT_IVL_MS, HEARTBEAT_TIMEOUT_MS = 500, 1500
_LINK_EVENTS = (
    zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_DISCONNECTED
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
)


class Transport:
    """One server or broker's request/reply channel (the Lazy Pirate). Not thread-safe: one per thread."""

    def __init__(
        self,
        address: str = P.DEFAULT_ADDRESS,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        retries: int = DEFAULT_RETRIES,
        curve: CurveKeys | None = None,
        context: zmq.Context | None = None,
        live_wait_s: float = LIVE_WAIT_S,
    ):
        self.address = address
        self.timeout_s = float(timeout_s)
        self.retries = max(1, int(retries))
        self.live_wait_s = max(float(live_wait_s), self.timeout_s)
        self.curve = curve
        self._ctx = context or zmq.Context.instance()
        self._sock: zmq.Socket | None = None
        self._monitor: zmq.Socket | None = None
        self._link_up = False  # handshake done and no disconnect since (the monitor says)
        self._resets_in_handshake = 0  # "no detail" handshake failures since the last good handshake
        self._try_reset_in_handshake = False  # this try ended in such a reset
        self.max_message_bytes = P.DEFAULT_MAX_MESSAGE_BYTES

    def _connect(self) -> zmq.Socket:
        s = self._ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        if self.curve is not None:
            s.curve_publickey = self.curve.public
            s.curve_secretkey = self.curve.secret
            s.curve_serverkey = self.curve.server_public
        s.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
        s.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
        self._monitor = s.get_monitor_socket(_LINK_EVENTS)
        self._link_up = False
        s.connect(self.address)
        return s

    def _drop_socket(self) -> None:
        if self._sock is not None:
            self._sock.disable_monitor()
            self._sock.close(linger=0)
            self._sock = None
        if self._monitor is not None:
            self._monitor.close(linger=0)
            self._monitor = None

    def _link_events(self) -> bool:
        """Read the monitor's events; False when the connection was lost (the request died with it).
        Raises AuthenticationFailed when the server refused the handshake."""
        from zmq.utils.monitor import recv_monitor_message

        lost = False
        while self._monitor is not None and self._monitor.poll(0, zmq.POLLIN):
            ev = recv_monitor_message(self._monitor)
            kind, value = ev["event"], ev["value"]
            if kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._link_up, self._resets_in_handshake = True, 0
            elif kind == zmq.EVENT_DISCONNECTED:
                lost, self._link_up = lost or self._link_up, False
            elif kind == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL and self._resets_in_handshake == 0:
                # A connection reset mid-handshake (a server killed while its kernel still accepted, a
                # restart) looks like this once; a server that refuses us does it on every connect.
                self._resets_in_handshake += 1
                self._try_reset_in_handshake = lost = True
            else:
                self._drop_socket()
                cause, reason = handshake_failure(kind, value, self.curve is not None)
                raise AuthenticationFailed(self.address, reason, cause, self.curve)
        return not lost

    def request(
        self,
        type: str,
        arrays: Mapping[str, np.ndarray] | Sequence[tuple[str, np.ndarray]] | None = None,
        wait_s: float = 0.0,
        **fields: Any,
    ) -> P.Message:
        """Send one request and return the decoded reply. ``wait_s`` extends the reply timeout
        for long-polls (``wait_ms`` in ``fields``); a resend after silence does not long-poll, so a
        dead server is given up within ``retries x timeout_s + wait_s``. A lost connection ends a try
        at once; a connection that is up (heartbeats answered) is waited on up to ``live_wait_s``.
        Raises ServerUnavailable after ``retries`` silent tries, AuthenticationFailed when the server
        refuses the CURVE handshake, ServerBusy or ServerError for busy/error replies, ProtocolError
        for a malformed reply."""
        rid = P.new_id()
        frames = P.encode(type, rid, arrays, **fields)
        for attempt in range(self.retries + 1):
            if attempt == self.retries and not self._try_reset_in_handshake:
                break
            # (a last try that ended in a reset mid-handshake gets one more: a server refusing the handshake
            # does that on every connect, a restarting one does not; that try ended at once, so a dead server
            # is still given up within retries x timeout_s)
            self._try_reset_in_handshake = False
            if attempt == 1 and wait_s > 0 and "wait_ms" in fields:
                wait_s = 0.0
                frames = P.encode(type, rid, arrays, **dict(fields, wait_ms=0))
            if self._sock is None:
                self._sock = self._connect()
            if not self._send(frames):
                continue
            start = time.monotonic()
            end, live_end = start + self.timeout_s + wait_s, start + self.live_wait_s + wait_s
            poller = zmq.Poller()
            poller.register(self._sock, zmq.POLLIN)
            poller.register(self._monitor, zmq.POLLIN)
            while True:
                if not self._link_events():
                    break  # the connection dropped: this request is lost with it
                now = time.monotonic()
                left = (live_end if self._link_up else end) - now
                if left <= 0:
                    break
                ready = dict(poller.poll(int(min(left, 0.25) * 1000) + 1))
                if self._sock not in ready:
                    continue
                reply = self._sock.recv_multipart(copy=False)
                try:
                    msg = P.decode(reply, max_message_bytes=self.max_message_bytes, expect=P.REPLY_TYPES)
                except ProtocolError as exc:
                    if exc.request_id not in (rid, None):
                        continue  # a stale reply to an earlier, abandoned request
                    raise
                if msg.id != rid:
                    continue  # stale reply from a previous try: discard (Lazy Pirate)
                raise_for_reply(msg, self.address)
                return msg
            # Silence: the socket may hold a half-sent request or a dead connection; start over.
            self._drop_socket()
        raise ServerUnavailable(self.address, self.retries, self.timeout_s)

    def _send(self, frames: list) -> bool:
        """Queue a request without ever blocking: a DEALER with no connection to hand it to (a refused
        handshake, a reconnect in progress) would wait in ``send`` forever. False (socket dropped) when
        nothing took it within ``timeout_s``: a silent try. A refused handshake raises AuthenticationFailed."""
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLOUT)
        poller.register(self._monitor, zmq.POLLIN)  # a refused handshake is told at once, not after timeout_s
        end = time.monotonic() + self.timeout_s
        while (left := end - time.monotonic()) > 0:
            ready = dict(poller.poll(int(left * 1000) + 1))
            self._link_events()
            if ready.get(self._sock, 0) & zmq.POLLOUT:
                try:
                    self._sock.send_multipart(frames, copy=len(frames) == 1, flags=zmq.NOBLOCK)
                    return True
                except zmq.Again:
                    pass
        self._link_events()
        self._drop_socket()
        return False

    def close(self) -> None:
        self._drop_socket()

    def __enter__(self) -> "Transport":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
