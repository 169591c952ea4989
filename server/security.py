"""CURVE keys, who may connect as what, and the loopback rule.

Layout written by :func:`generate_keys` (``colorprop keys DIR``; ``colorprop_client.keyfiles`` finds a
client's or worker's files in it)::

    DIR/server/server.key, server.key_secret      the server's (or broker's) key pair
    DIR/server/authorized_clients/<name>.key      clients: may send requests (server, broker front end)
    DIR/server/authorized_workers/<name>.key      workers: may register with a broker's back end
    DIR/server/roles.json                         every name ever issued, and its role
    DIR/clients/<name>/                           <name>.key, <name>.key_secret, server.key: for the artist
    DIR/workers/<name>/                           the same, for a worker host

The server reads only ``DIR/server/`` (no client's secret needs to be on it); the flat layout older
versions wrote (``DIR/server.key_secret``, ``DIR/authorized_clients/`` ...) is still read.

The two allow-lists are separate ZAP domains: a client's key cannot register as a worker (and so
can never receive other artists' pixels or answer for a worker). A name keeps its role for good:
a worker receives other clients' jobs, so a client's name (revoked or not) never becomes a worker's,
nor the reverse, and a worker's key pair is always made new, never taken from an earlier key.
Remove a file from an allow-list to revoke a key (restart the server); that name's key is then never
allowed again (``colorprop keys`` refuses to list it until its folder is deleted and a new pair made).
"""

from __future__ import annotations

import ipaddress
import os
import json
import re
import socket
import tempfile
from pathlib import Path
from typing import Any

import zmq

from colorprop_client.keyfiles import CLIENTS, SERVER_FOLDER, WORKERS, KeyFilesMissing, find_key_files

from .config import check_key_name

AUTHORIZED = "authorized_clients"
AUTHORIZED_WORKERS = "authorized_workers"
CLIENTS_DOMAIN, WORKERS_DOMAIN = CLIENTS, WORKERS  # ZAP domains of the two allow-lists = the role folders
ALLOW_LISTS = {CLIENTS: AUTHORIZED, WORKERS: AUTHORIZED_WORKERS}
ROLES_FILE = "roles.json"
_ROLE_WORD = {CLIENTS: "client", WORKERS: "worker"}


class SecurityError(Exception):
    """Refused configuration (e.g. a non-loopback bind or broker without CURVE)."""


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


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (for a process told where to bind)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_bind_allowed(address: str, curve_keys: str | None) -> None:
    _check_loopback_or_curve(
        address,
        curve_keys,
        f"refusing to bind {address} without CURVE: anything but loopback needs --curve-keys DIR "
        "(make keys with `colorprop keys DIR`)",
    )


def check_connect_allowed(address: str, curve_keys: str | None) -> None:
    _check_loopback_or_curve(
        address,
        curve_keys,
        f"refusing to connect to {address} without CURVE: a broker off this machine needs "
        "--curve-keys DIR (with a worker key pair from `colorprop keys DIR --worker NAME`)",
    )


def _check_loopback_or_curve(address: str, curve_keys: str | None, refusal: str) -> None:
    """The one rule: anything but loopback needs CURVE keys; else SecurityError(``refusal``)."""
    if not is_loopback(address) and not curve_keys:
        raise SecurityError(refusal)


def server_folder(keys_dir: str | os.PathLike) -> Path:
    """Where the server's key pair and allow-lists are: ``DIR/server/``, else ``DIR`` itself (the flat
    layout of older versions, or ``DIR/server/`` copied to the server host and named directly)."""
    d = Path(keys_dir)
    return d / SERVER_FOLDER if (d / SERVER_FOLDER / "server.key_secret").is_file() else d


def check_server_keys(keys_dir: str | os.PathLike, workers: bool = False) -> dict[str, Path]:
    """The allow-list folder of each domain a server (``workers``: a broker) serves, after checking
    that its key pair and every allow-list are there; SecurityError naming what is missing."""
    d = Path(keys_dir)
    if not d.is_dir():
        raise SecurityError(f"--curve-keys {d}: no such folder; make the keys with `colorprop keys {d}`")
    s = server_folder(d)
    if not (s / "server.key_secret").is_file():
        raise SecurityError(
            f"--curve-keys {d}: the server's key {d / SERVER_FOLDER / 'server.key_secret'} "
            f"is missing; make it with `colorprop keys {d}`"
        )
    lists = {CLIENTS: s / AUTHORIZED, **({WORKERS: s / AUTHORIZED_WORKERS} if workers else {})}
    for domain, folder in lists.items():
        if not any(folder.glob("*.key")):
            raise SecurityError(f"{folder} holds no keys: run `colorprop keys {d} --{_ROLE_WORD[domain]} NAME`")
    return lists


def generate_keys(
    keys_dir: str | os.PathLike, clients: tuple[str, ...] = ("client",), workers: tuple[str, ...] = ("worker",)
) -> dict[str, Any]:
    """Create the server key pair (kept if present) and one pair per client and worker name in its
    own folder, and put each public key in its allow-list. Running it again for a listed name keeps
    that pair. Refused (ValueError, nothing written): a bad name, a name that has had the other role,
    a name whose key was revoked, a folder in the flat layout. Returns the folders written."""
    d = Path(keys_dir)
    for name in (*clients, *workers):
        check_key_name("--client" if name in clients else "--worker", name)
    both = set(clients) & set(workers)
    if both:
        raise ValueError(f"{sorted(both)}: a name is a client or a worker, not both")
    if (d / "server.key_secret").is_file() and not (d / SERVER_FOLDER).is_dir():
        raise ValueError(
            f"{d} holds keys in the flat layout of older versions (still read, no longer written): "
            f"make a new folder with `colorprop keys NEWDIR ...` and hand out its clients/<name>/ "
            f"folders, or move server.key, server.key_secret, {AUTHORIZED}/ and {AUTHORIZED_WORKERS}/ "
            f"into {d / SERVER_FOLDER}/ first"
        )
    roles = _issued_roles(d)
    for role, names in ((CLIENTS, clients), (WORKERS, workers)):
        for name in names:
            _check_issuable(d, name, role, roles.get(name))
    s = d / SERVER_FOLDER
    s.mkdir(parents=True, exist_ok=True)
    if not (s / "server.key_secret").is_file():
        _new_pair(s, "server")
    written: dict[str, Any] = {"dir": str(d), "server_public": str(s / "server.key"), CLIENTS: {}, WORKERS: {}}
    for role, names in ((CLIENTS, clients), (WORKERS, workers)):
        for name in names:
            folder = d / role / name
            if not (folder / f"{name}.key_secret").is_file():  # new name, or its revoked folder was deleted
                folder.parent.mkdir(exist_ok=True)
                _new_pair(folder, name)
            _replace_file(folder / "server.key", (s / "server.key").read_bytes())
            (s / ALLOW_LISTS[role]).mkdir(exist_ok=True)
            _replace_file(s / ALLOW_LISTS[role] / f"{name}.key", (folder / f"{name}.key").read_bytes())
            roles[name] = role
            written[role][name] = str(folder)
    _replace_file(s / ROLES_FILE, json.dumps(dict(sorted(roles.items())), indent=1).encode())
    return written


def _issued_roles(d: Path) -> dict[str, str]:
    """name -> role of every name this keys folder has issued: the record, the role folders and the
    allow-lists; a flat layout's ``<name>.key_secret`` counts as taken by both roles ("flat")."""
    s = d / SERVER_FOLDER
    try:
        roles = json.loads((s / ROLES_FILE).read_text("utf-8"))
    except (OSError, ValueError):
        roles = {}
    roles = {k: v for k, v in roles.items() if v in (CLIENTS, WORKERS)} if isinstance(roles, dict) else {}
    for role in (CLIENTS, WORKERS):
        for found in (
            *(p.name for p in (d / role).glob("*") if p.is_dir()),
            *(p.stem for p in (s / ALLOW_LISTS[role]).glob("*.key")),
            *(p.stem for p in (d / ALLOW_LISTS[role]).glob("*.key")),
        ):
            roles.setdefault(found, role)
    for flat in d.glob("*.key_secret"):
        if flat.stem != "server":
            roles.setdefault(flat.stem, "flat")
    return roles


def _check_issuable(d: Path, name: str, role: str, had: str | None) -> None:
    word = _ROLE_WORD[role]
    if had == "flat":
        raise ValueError(
            f"{name!r}: {d / (name + '.key_secret')} already holds a key of that name (flat layout, "
            f"maybe revoked); a {word} never takes over an earlier key or name: pick another name"
        )
    if had is not None and had != role:
        raise ValueError(
            f"{name!r} has been a {_ROLE_WORD[had]} of {d} and cannot become a {word}: a worker receives "
            f"other clients' jobs, so a name (and its key) keeps its role for good; pick another name"
        )
    folder = d / role / name
    listed = d / SERVER_FOLDER / ALLOW_LISTS[role] / f"{name}.key"
    if (folder / f"{name}.key").is_file() and not (
        listed.is_file() and listed.read_bytes() == (folder / f"{name}.key").read_bytes()
    ):
        raise ValueError(
            f"{word} {name!r} was revoked ({listed} removed): its key is never allowed again; to give "
            f"{name} a new key, delete {folder}/ and run this again"
        )


def _new_pair(folder: Path, name: str) -> None:
    """A new key pair ``folder/<name>.key`` + ``<name>.key_secret`` (mode 600), made in a temp folder
    and renamed into place: an interrupted run leaves no half pair."""
    import zmq.auth

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{name}.tmp-"))
    zmq.auth.create_certificates(str(tmp), name)
    os.chmod(tmp / f"{name}.key_secret", 0o600)
    if folder.exists():  # the server's folder (it holds the allow-lists too): the files, public key first
        for f in (f"{name}.key", f"{name}.key_secret"):
            os.replace(tmp / f, folder / f)
        tmp.rmdir()
    else:
        os.rename(tmp, folder)


def _replace_file(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def peer_identity(frame: zmq.Frame) -> str:
    """Who sent ``frame``: the name of the CURVE key the authenticator accepted, else the peer's
    address (``local`` for ipc:// and inproc://)."""
    for prop in ("User-Id", "Peer-Address"):
        try:
            value = frame.get(prop)
        except (zmq.ZMQError, UnicodeDecodeError):
            value = None
        if value:
            return str(value)
    return "local"


def curve_client_keys(keys_dir: str | os.PathLike, name: str, role: str = WORKERS) -> tuple[bytes, bytes, bytes]:
    """(public, secret, server_public) of the worker (or client) ``name``; SecurityError naming the
    missing or unreadable file."""
    import zmq.auth

    try:
        files = find_key_files(keys_dir, name, role)
        public, secret = zmq.auth.load_certificate(str(files.secret))
        server_public, _ = zmq.auth.load_certificate(str(files.server_public))
    except KeyFilesMissing as err:
        raise SecurityError(str(err)) from None
    except (OSError, ValueError) as err:
        raise SecurityError(f"CURVE keys in {keys_dir} for {name!r}: {err}") from None
    if not secret:
        raise SecurityError(f"{files.secret} holds no secret key")
    return public, secret, server_public
