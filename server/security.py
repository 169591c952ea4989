"""CURVE keys and the loopback rule.

Layout written by :func:`generate_keys` (``colorprop keys DIR``)::

    DIR/server.key, DIR/server.key_secret        the server's (or broker's) key pair
    DIR/<name>.key, DIR/<name>.key_secret        one pair per client name (default: client, worker)
    DIR/authorized_clients/<name>.key            the allow-list: public keys the server accepts

Give artists ``<name>.key_secret`` and ``server.key``; keep ``server.key_secret`` on the server.
Remove a file from ``authorized_clients/`` to revoke a client (restart the server).
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import threading
from pathlib import Path
from typing import Any

import zmq

AUTHORIZED = "authorized_clients"


class SecurityError(Exception):
    """Refused configuration (e.g. a non-loopback bind without CURVE)."""


def is_loopback(address: str) -> bool:
    """True for ipc://, inproc:// and tcp:// on 127.0.0.0/8, ::1 or localhost."""
    if address.startswith(("ipc://", "inproc://")):
        return True
    m = re.fullmatch(r"tcp://(\[[^\]]+\]|[^:/]+):(\d+|\*)", address)
    if m is None:
        return False
    host = m.group(1).strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # "*", interface names, host names: may reach the network


def check_bind_allowed(address: str, curve_keys: str | None) -> None:
    if not is_loopback(address) and not curve_keys:
        raise SecurityError(
            f"refusing to bind {address} without CURVE: anything but loopback needs --curve-keys DIR "
            "(make keys with `colorprop keys DIR`)"
        )


def generate_keys(keys_dir: str | os.PathLike, clients: tuple[str, ...] = ("client", "worker")) -> dict[str, Any]:
    """Create the server key pair (kept if present) and one pair per client name, and put each
    client's public key in ``authorized_clients/``. Returns the paths written."""
    import zmq.auth

    d = Path(keys_dir)
    d.mkdir(parents=True, exist_ok=True)
    (d / AUTHORIZED).mkdir(exist_ok=True)
    written: dict[str, Any] = {"dir": str(d), "clients": {}}
    if not (d / "server.key_secret").exists():
        zmq.auth.create_certificates(str(d), "server")
    os.chmod(d / "server.key_secret", 0o600)
    written["server_public"] = str(d / "server.key")
    for name in clients:
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name) or name == "server":
            raise ValueError(f"client name {name!r}: use letters, digits, _ . - (and not 'server')")
        if not (d / f"{name}.key_secret").exists():
            zmq.auth.create_certificates(str(d), name)
        os.chmod(d / f"{name}.key_secret", 0o600)
        shutil.copyfile(d / f"{name}.key", d / AUTHORIZED / f"{name}.key")
        written["clients"][name] = str(d / f"{name}.key_secret")
    return written


class CurveServer:
    """Starts zmq.auth's ThreadAuthenticator with the allow-list and makes sockets CURVE servers."""

    def __init__(self, context: zmq.Context, keys_dir: str | os.PathLike):
        import zmq.auth
        from zmq.auth.thread import ThreadAuthenticator

        d = Path(keys_dir)
        secret_file = d / "server.key_secret"
        if not secret_file.exists():
            raise SecurityError(f"{secret_file} not found: run `colorprop keys {d}`")
        allowed = d / AUTHORIZED
        if not allowed.is_dir() or not any(allowed.glob("*.key")):
            raise SecurityError(f"{allowed} holds no client keys: run `colorprop keys {d}`")
        self.public, self.secret = zmq.auth.load_certificate(str(secret_file))
        self.auth = ThreadAuthenticator(context)
        self.auth.start()
        self.auth.configure_curve(domain="*", location=str(allowed))

    def apply(self, sock: zmq.Socket) -> None:
        sock.curve_secretkey = self.secret
        sock.curve_publickey = self.public
        sock.curve_server = True

    def stop(self, timeout_s: float = 5.0) -> None:
        """zmq.auth's stop() joins its thread without a timeout, and was seen to hang a test run once:
        shutting the server down must never wait on it for more than ``timeout_s``."""
        stopper = threading.Thread(target=self.auth.stop, name="curve-auth-stop", daemon=True)
        stopper.start()
        stopper.join(timeout_s)


def curve_client_keys(keys_dir: str | os.PathLike, name: str) -> tuple[bytes, bytes, bytes]:
    """(public, secret, server_public) for a client or worker named ``name``."""
    import zmq.auth

    d = Path(keys_dir)
    public, secret = zmq.auth.load_certificate(str(d / f"{name}.key_secret"))
    server_public, _ = zmq.auth.load_certificate(str(d / "server.key"))
    return public, secret, server_public
