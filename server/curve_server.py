"""The server's and the broker's CURVE side: a ZAP authenticator with one allow-list per domain (clients; and
workers on a broker) that names each accepted peer by its key's name and logs every refused handshake."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import zmq
from zmq.auth.thread import ThreadAuthenticator

from .logs import log_event
from .security import CLIENTS_DOMAIN, check_server_keys, server_folder

log = logging.getLogger("colorprop_server.security")


def allow_list(folder: Path) -> dict[bytes, str]:
    """z85 public key -> key name, from the ``<name>.key`` files of an allow-list folder."""
    import zmq.auth

    names = {}
    for f in sorted(folder.glob("*.key")):
        public, _ = zmq.auth.load_certificate(str(f))
        names[public] = f.stem
    return names


class CurveServer:
    """A ZAP authenticator with one allow-list per domain (clients; and workers on a broker) that
    names each accepted peer by its key's name and logs every refused key with its address."""

    def __init__(self, context: zmq.Context, keys_dir: str | os.PathLike, workers: bool = False):
        import zmq.auth

        lists = check_server_keys(keys_dir, workers)
        self.allowed: dict[str, dict[bytes, str]] = {domain: allow_list(folder) for domain, folder in lists.items()}
        self.public, self.secret = zmq.auth.load_certificate(str(server_folder(keys_dir) / "server.key_secret"))
        self.auth = _Authenticator(context, self.allowed)
        self.auth.start()
        for domain in self.allowed:
            self.auth.configure_curve_callback(domain, self.auth)
        self._watchers: list[threading.Thread] = []

    def apply(self, sock: zmq.Socket, domain: str = CLIENTS_DOMAIN) -> None:
        sock.zap_domain = domain.encode()
        sock.curve_secretkey = self.secret
        sock.curve_publickey = self.public
        sock.curve_server = True
        self._watch(sock, domain)

    def _watch(self, sock: zmq.Socket, domain: str) -> None:
        """Log the handshakes that fail before ZAP is asked (a client without CURVE, or one holding
        another server's public key). libzmq's monitor names only our own endpoint here, not the
        peer's address; refusals by key (ZAP) are logged with the address by the authenticator. Best
        effort: a client that sees the failure first and hangs up may leave no line."""
        monitor = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
        thread = threading.Thread(
            target=_log_handshake_failures, args=(monitor, domain), daemon=True, name=f"curve-watch-{domain}"
        )
        thread.start()
        self._watchers.append(thread)

    def stop(self, timeout_s: float = 5.0) -> None:
        """zmq.auth's stop() joins its thread without a timeout, and was seen to hang a test run once:
        shutting the server down must never wait on it for more than ``timeout_s``. (Call after the
        sockets are closed: their monitors then end the watcher threads.)"""
        stopper = threading.Thread(target=self.auth.stop, name="curve-auth-stop", daemon=True)
        stopper.start()
        stopper.join(timeout_s)
        for t in self._watchers:
            t.join(timeout_s)


def _log_handshake_failures(monitor: zmq.Socket, domain: str) -> None:
    from zmq.utils.monitor import recv_monitor_message

    try:
        while True:
            ev = recv_monitor_message(monitor)
            if ev["event"] == zmq.EVENT_MONITOR_STOPPED:
                break
            if (
                ev["event"] == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                and ev["value"] == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH
            ):
                reason = "security mechanism mismatch: a client without CURVE keys"
            elif ev["event"] == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
                reason = f"CURVE protocol error {ev['value']:#x}: not a colorprop client, or wrong server.key"
            else:
                reason = (
                    "handshake ended early: a client without CURVE keys or with another server's key "
                    "(server.key) that hung up first"
                )
            log_event(
                log,
                "auth_failed",
                logging.WARNING,
                side=domain,
                endpoint=ev["endpoint"].decode(errors="replace"),
                reason=reason,
            )
    except zmq.ZMQError:
        pass
    finally:
        monitor.close(linger=0)


class _Authenticator(ThreadAuthenticator):
    """ThreadAuthenticator whose CURVE check is a lookup in our allow-lists: the accepted peer's
    User-Id is its key name; a refusal is logged with the peer's address and the domain."""

    def __init__(self, context: zmq.Context, allowed: dict[str, dict[bytes, str]]):
        super().__init__(context)
        self._keys = allowed  # (the base class's _allowed is its address allow-list)
        self._address = "?"

    async def handle_zap_message(self, msg: list[bytes]) -> None:
        self._address = msg[3].decode("utf-8", "replace") if len(msg) > 3 else "?"
        await super().handle_zap_message(msg)

    def callback(self, domain: str, z85_key: bytes) -> bool:
        if z85_key in self._keys.get(domain, {}):
            return True
        known = [d for d, names in self._keys.items() if z85_key in names]
        log_event(
            log,
            "auth_failed",
            logging.WARNING,
            peer=self._address,
            side=domain,
            reason=f"a {known[0][:-1]} key, not a {domain[:-1]} key"
            if known
            else f"unknown CURVE key {z85_key.decode('ascii', 'replace')[:8]}...",
        )
        return False

    def curve_user_id(self, client_public_key: bytes) -> str:
        from zmq.utils import z85

        key = z85.encode(client_public_key)
        for names in self._keys.values():
            if key in names:
                return names[key]
        return key.decode("ascii")
