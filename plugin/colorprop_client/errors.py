"""The client's errors: what the server answered (error, busy), why a connection failed (no answer, a refused
CURVE handshake), and how a job ended (failed, lost, cancelled). ``raise_for_reply`` turns a reply into them."""

from __future__ import annotations

import zmq

from . import protocol as P
from .curve_keys import CurveKeys
from .protocol import ProtocolError

__all__ = [
    "ServerError",
    "ServerUnavailable",
    "ServerStopping",
    "AuthenticationFailed",
    "ServerBusy",
    "JobFailed",
    "JobLost",
    "JobCancelled",
    "CancelledByUser",
    "ProtocolError",
    "handshake_failure",
    "raise_for_reply",
]


class ServerError(Exception):
    """The server answered with an error. ``code`` is one of ``protocol.E_*``."""

    def __init__(self, code: str, message: str, field: str | None = None):
        self.code = code
        self.field = field
        super().__init__(f"server error [{code}]: {message}" + (f" (field {field!r})" if field else ""))


class ServerUnavailable(ServerError):
    """No reply from the server within ``timeout_s`` after all retries."""

    def __init__(self, address: str, tries: int, timeout_s: float):
        super().__init__("unavailable", f"no reply from {address} after {tries} tries of {timeout_s:g} s")


class ServerStopping(ServerUnavailable):
    """The server answered that it is shutting down: it takes no new work while it tells running jobs why they
    ended. For the caller that is a server unavailable, like one that does not answer (``colorize --server``
    exit 6: retry once it is back), not a failed request."""

    def __init__(self, address: str, message: str):
        ServerError.__init__(self, P.E_SHUTDOWN, f"{address} is shutting down ({message}); retry once it is back")


class AuthenticationFailed(ServerError):
    """A server is there but refused this client's CURVE handshake (key not in its allow-list, wrong
    ``server.key``, or one side without CURVE). Retrying does not help: fix the keys. ``cause`` is one of
    ``KEY_NOT_LISTED``, ``CLIENT_HAS_NO_KEYS``, ``SERVER_HAS_NO_CURVE``, ``WRONG_SERVER_KEY`` (a plug-in says
    what to fix in its own words); ``curve`` the keys this client used (None: none)."""

    KEY_NOT_LISTED, CLIENT_HAS_NO_KEYS = "key_not_listed", "client_has_no_keys"
    SERVER_HAS_NO_CURVE, WRONG_SERVER_KEY = "server_has_no_curve", "wrong_server_key"

    def __init__(self, address: str, reason: str, cause: str = KEY_NOT_LISTED, curve: CurveKeys | None = None):
        self.address, self.reason, self.cause, self.curve = address, reason, cause, curve
        super().__init__("auth", f"{address} refused the connection: {reason}")


def handshake_failure(event: int, value: int, curve: bool) -> tuple[str, str]:
    """(cause, why) a CURVE handshake failed, from the client's socket monitor event."""
    if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
        return AuthenticationFailed.KEY_NOT_LISTED, (
            f"this client's CURVE key is not in the server's authorized_clients/ (status {value}); "
            "ask for a key from `colorprop keys DIR --client NAME` on the server"
        )
    if not curve:  # (a mechanism mismatch may also show as "no detail": the server hung up first)
        return AuthenticationFailed.CLIENT_HAS_NO_KEYS, (
            "the server uses CURVE and this client has no keys (set $COLORPROP_CURVE_KEYS), or it is not a "
            f"colorprop server (handshake event {event:#x}, {value:#x})"
        )
    if event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL and value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
        return AuthenticationFailed.SERVER_HAS_NO_CURVE, "this client uses CURVE keys and the server does not"
    return AuthenticationFailed.WRONG_SERVER_KEY, "CURVE handshake failed: is server.key the public key of this server?"


class ServerBusy(ServerError):
    """The server's queue is full; ``retry_after_s`` says when to try again."""

    def __init__(self, message: str, retry_after_s: float):
        self.retry_after_s = float(retry_after_s)
        super().__init__("busy", f"{message}; retry in {self.retry_after_s:g} s")


class JobFailed(ServerError):
    """The shot failed on the server (bad pixels, engine error, worker lost...)."""


class JobLost(JobFailed):
    """The job is gone: the server restarted or shut down, the session timed out, or the worker
    running it died. Resending the shot is safe (``colorize_arrays(restarts=...)`` does it)."""


class JobCancelled(ServerError):
    def __init__(self, job_id: str):
        super().__init__("cancelled", f"job {job_id} was cancelled")


def raise_for_reply(msg: P.Message, address: str = "the server") -> None:
    if msg.type == P.ERROR:
        code, text = str(msg.get("code", P.E_INTERNAL)), str(msg.get("message", ""))
        if code == P.E_SHUTDOWN:
            raise ServerStopping(address, text)
        if code in (P.E_UNKNOWN_JOB, P.E_WORKER_LOST):
            raise JobLost(code, text, msg.get("field"))
        raise ServerError(code, text, msg.get("field"))
    if msg.type == P.BUSY:
        raise ServerBusy(str(msg.get("message", "server busy")), float(msg.get("retry_after_s", 1.0)))


class CancelledByUser(Exception):
    """The artist pressed cancel (raised by ``CancellableClient``)."""
