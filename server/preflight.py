"""What ``colorprop serve`` (server or worker) and ``colorprop broker`` check before anything loads or
listens, so that a bad setting is one line and exit 2 (a systemd unit does not restart on 2) instead of
a traceback, a spinning loop or a server that fails every job later:

* every setting's type, range and finiteness (``config.check_settings``);
* the loopback-or-CURVE rule, and the key files the role needs (named when missing);
* that each address it will listen on (``--bind``, ``--backend``, ``--metrics-port``) is free;
* a server's ``--weights`` folder: given and unusable is exit 5; the default one missing is a WARNING
  that the server offers ``flow`` only.
"""

from __future__ import annotations

import errno
import logging
import re
import socket

from colorprop.errors import InputError

from .config import ServerConfig, check_settings, setting_error
from .logs import log_event
from .security import SecurityError, check_bind_allowed, check_connect_allowed, check_server_keys, curve_client_keys

log = logging.getLogger("colorprop_server")

SERVER, WORKER, BROKER = "server", "worker", "broker"
_TCP = re.compile(r"tcp://(\[[^\]]+\]|[^:/]+):(\d+|\*)")


def check_can_start(config: ServerConfig, role: str) -> ServerConfig:
    """``config`` if a ``role`` process may start with it; else InputError (exit 2) naming the option,
    or WeightsError (exit 5) for an unusable ``--weights``."""
    check_settings(config)
    try:
        if role == WORKER:
            check_connect_allowed(config.broker, config.curve_keys)
            if config.curve_keys:
                curve_client_keys(config.curve_keys, config.curve_client_name)
        else:
            listens = [("--bind", config.bind)] + ([("--backend", config.backend_bind)] if role == BROKER else [])
            for _, address in listens:
                check_bind_allowed(address, config.curve_keys)
            if config.curve_keys:
                check_server_keys(config.curve_keys, workers=role == BROKER)
            for option, address in listens:
                check_address_free(option, address)
    except SecurityError as err:
        raise InputError(str(err)) from None
    if config.metrics_port:  # (0: a free port the OS picks)
        check_port_free("--metrics-port", config.metrics_host, config.metrics_port)
    if role != BROKER and config.engine is None:
        _check_weights(config.weights_dir)
    return config


def check_address_free(option: str, address: str) -> None:
    """A tcp:// address another process listens on is refused (exit 2 naming ``option``), as is a host
    that is not this machine's; ipc://, inproc:// and port ``*`` are not checked."""
    m = _TCP.fullmatch(address)
    if m is None or m.group(2) == "*":
        return
    host = m.group(1).strip("[]")
    if host not in {name for _, name in socket.if_nameindex()}:  # (ZeroMQ also binds interface names)
        check_port_free(option, host, int(m.group(2)), shown=address)


def check_port_free(option: str, host: str, port: int, shown: object = None) -> None:
    shown = port if shown is None else shown
    try:
        infos = socket.getaddrinfo(
            None if host == "*" else host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except (OSError, UnicodeError) as err:
        raise setting_error(option, shown, f"{host} is not a host name or address ({err})") from None
    # ZeroMQ (without its IPv6 option) listens on a name's IPv4 address: check that one first.
    family, kind, proto, _, sockaddr = sorted(infos, key=lambda i: i[0] != socket.AF_INET)[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as ZeroMQ and the HTTP server do
        try:
            s.bind(sockaddr)
        except OSError as err:
            why = (
                "is in use by another process"
                if err.errno == errno.EADDRINUSE
                else f"cannot be listened on: {err.strerror or err}"
            )
            raise setting_error(option, shown, f"{host}:{port} {why}") from None


def bind_error(listens: dict[str, str], err: Exception) -> InputError:
    """A ZeroMQ bind that failed after the pre-flight (another process took a port in between)."""
    return InputError(f"{' / '.join(listens)} {' / '.join(map(repr, listens.values()))}: cannot be listened on: {err}")


def _check_weights(weights_dir: str | None) -> None:
    from colorprop.engine.weights import read_manifest
    from colorprop.errors import WeightsError

    try:
        read_manifest(weights_dir)
    except WeightsError as err:
        if weights_dir is not None:  # asked for by name: starting without them would hide the mistake
            raise WeightsError(f"--weights {weights_dir}: {err}") from None
        log_event(
            log,
            "weights_missing",
            logging.WARNING,
            reason=str(err),
            consequence="this server offers the flow method only",
        )
