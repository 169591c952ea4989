"""Where the CURVE key files of one client or worker are, in a folder written by ``colorprop keys``.

Standard library only: the DCC plug-ins, the client library and the server all use this one lookup.

Layout written by ``colorprop keys DIR`` (one folder per name, so a whole folder can be handed over)::

    DIR/server/server.key, server.key_secret          the server's pair (the secret never leaves it)
    DIR/server/authorized_clients/<name>.key          allow-lists the server reads
    DIR/server/authorized_workers/<name>.key
    DIR/clients/<name>/<name>.key, <name>.key_secret, server.key     hand this folder to the artist
    DIR/workers/<name>/<name>.key, <name>.key_secret, server.key     hand this folder to the worker host

Also read: a flat folder holding ``<name>.key_secret`` and ``server.key`` side by side, which is both
a folder handed to one artist (``DIR/clients/alice`` copied to their machine) and the layout older
versions wrote for everyone.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

CLIENTS, WORKERS = "clients", "workers"  # the role folders of the layout (and the two ZAP domains)
SERVER_FOLDER = "server"
SERVER_PUBLIC = "server.key"


class KeyFilesMissing(FileNotFoundError):
    """The key files of a name are not in the folder (in either layout); the message names what is
    missing and how to make it."""


class KeyFiles(NamedTuple):
    secret: Path  # <name>.key_secret: this client's or worker's key pair
    server_public: Path  # server.key: the public key of the server it connects to


def find_key_files(keys_dir: str | os.PathLike, name: str, role: str = CLIENTS) -> KeyFiles:
    """The secret key of ``name`` (a client, or a worker with ``role="workers"``) and the server's
    public key, from ``keys_dir``: ``<role>/<name>/`` of the ``colorprop keys`` layout, else the flat
    ``<name>.key_secret`` + ``server.key``. Raises KeyFilesMissing naming the files looked for."""
    if role not in (CLIENTS, WORKERS):
        raise ValueError(f"role must be {CLIENTS!r} or {WORKERS!r}, got {role!r}")
    d = Path(keys_dir)
    if not d.is_dir():
        raise KeyFilesMissing(f"CURVE keys folder {d} does not exist (or is not a folder)")
    tried = []
    for folder in (d / role / name, d):
        secret, server_public = folder / f"{name}.key_secret", folder / SERVER_PUBLIC
        if secret.is_file() and server_public.is_file():
            return KeyFiles(secret, server_public)
        tried.append(f"{secret} + {server_public}")
    flag = "--worker" if role == WORKERS else "--client"
    missing = [p for p in (d / role / name / f"{name}.key_secret", d / f"{name}.key_secret") if p.is_file()]
    what = (
        f"{missing[0]} is there but the server's public key {missing[0].parent / SERVER_PUBLIC} is not"
        if missing
        else f"no key pair named {name!r}"
    )
    raise KeyFilesMissing(
        f"CURVE keys in {d}: {what} (looked for {' or '.join(tried)}); "
        f"make it with `colorprop keys DIR {flag} {name}` on the server and copy "
        f"DIR/{role}/{name}/ here"
    )
