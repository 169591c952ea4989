"""CURVE key material of a client: its own key pair and the server's public key, as ``colorprop keys`` writes them.

One lookup for every client (``colorize --server``, ``colorprop status``, the Nuke node, the Blender add-on):
an artist is given ``NAME.key_secret`` (this client's key pair) and ``server.key`` (the server's public
key), as ``colorprop keys DIR --client NAME`` writes them. Explicit files win (a plug-in's 'client key' and
'server key' fields), the server's key defaulting to ``server.key`` beside the client's; else the folder
``$COLORPROP_CURVE_KEYS`` and the name ``$COLORPROP_CURVE_NAME`` (default ``client``), found in that folder
by ``keyfiles.find_key_files``. Without a file or a folder there are no keys: plain connections, which a
server accepts on loopback only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

from .keyfiles import CLIENTS, SERVER_PUBLIC, KeyFilesMissing, find_key_files

KEYS_DIR_ENV, KEY_NAME_ENV = "COLORPROP_CURVE_KEYS", "COLORPROP_CURVE_NAME"
DEFAULT_NAME = "client"
SECRET_SUFFIX = ".key_secret"  # <name>.key_secret: a key pair, as zmq.auth.create_certificates writes it


class KeyFileError(ValueError):
    """A CURVE key file that is missing or is not a key file; the message names the file."""

    def __init__(self, path: str, reason: str):
        self.path, self.reason = path, reason
        super().__init__(f"CURVE key file {path}: {reason}")


KEY_ERRORS = (KeyFileError, KeyFilesMissing)  # what finding and loading keys raises; each message names the files


@dataclass(frozen=True)
class CurveKeys:
    """CURVE key material for the client: its own key pair and the server's public key (z85 bytes), with
    where they came from (``name``: the key's name, which the server knows this client by)."""

    public: bytes
    secret: bytes
    server_public: bytes
    name: str = ""
    secret_file: str = ""
    server_file: str = ""

    @classmethod
    def from_files(cls, client_secret_file: str | os.PathLike, server_public_file: str | os.PathLike) -> "CurveKeys":
        """Load ``<name>.key_secret`` and ``server.key`` as written by ``colorprop keys``. KeyFileError names a
        missing or unreadable file."""
        secret_file, server_file = os.fspath(client_secret_file), os.fspath(server_public_file)
        public, secret = _load(
            secret_file, "this client's key (NAME.key_secret from `colorprop keys DIR --client NAME`)"
        )
        if not secret:
            raise KeyFileError(secret_file, "holds no secret key: give the client NAME.key_secret, not NAME.key")
        server_public, _ = _load(server_file, "the server's public key (server.key from its keys folder)")
        name = os.path.basename(secret_file)
        name = name[: -len(SECRET_SUFFIX)] if name.endswith(SECRET_SUFFIX) else name
        return cls(public, secret, server_public, name, secret_file, server_file)

    @classmethod
    def from_dir(cls, keys_dir: str | os.PathLike, name: str = DEFAULT_NAME, role: str = CLIENTS) -> "CurveKeys":
        """The keys of ``name`` in a ``colorprop keys`` folder (either layout: ``keyfiles.find_key_files``)."""
        return cls.from_files(*find_key_files(keys_dir, name, role))

    @property
    def identity(self) -> str:
        """Who the server sees: ``alice (CURVE key Zx8a...)``; the key's start is what its log prints of a
        refused key."""
        return f"{self.name or 'this key'} (CURVE key {self.public.decode('ascii', 'replace')[:8]}...)"


def _load(path: str, what: str) -> tuple[bytes, bytes | None]:
    from zmq.auth import load_certificate

    if not os.path.isfile(path):
        raise KeyFileError(path, f"no such key file; it should hold {what}")
    try:
        return load_certificate(path)
    except (OSError, ValueError) as err:
        raise KeyFileError(path, f"not a CURVE key file ({err}); it should hold {what}") from None


def key_files(
    client_secret: str | os.PathLike | None = None,
    server_public: str | os.PathLike | None = None,
    keys_dir: str | os.PathLike | None = None,
    name: str | None = None,
    environ: Mapping[str, str] = os.environ,
) -> tuple[str, str] | None:
    """(client secret key file, server public key file) from what is given, else the defaults above; None when
    there is neither a file nor a folder (no CURVE). KeyFilesMissing when the folder lacks the name's keys."""
    client_secret, server_public = os.fspath(client_secret or ""), os.fspath(server_public or "")
    if client_secret:
        return client_secret, server_public or os.path.join(os.path.dirname(client_secret), SERVER_PUBLIC)
    keys_dir = os.fspath(keys_dir or environ.get(KEYS_DIR_ENV) or "")
    if not keys_dir:
        if server_public:
            raise KeyFileError(
                server_public, "a server key alone cannot connect: set this client's key (NAME.key_secret) too"
            )
        return None
    found = find_key_files(keys_dir, name or environ.get(KEY_NAME_ENV) or DEFAULT_NAME)
    return str(found.secret), server_public or str(found.server_public)


def find_curve_keys(
    client_secret: str | os.PathLike | None = None,
    server_public: str | os.PathLike | None = None,
    keys_dir: str | os.PathLike | None = None,
    name: str | None = None,
    environ: Mapping[str, str] = os.environ,
) -> CurveKeys | None:
    """The keys :func:`key_files` finds, loaded; None without any. Raises one of ``KEY_ERRORS``."""
    files = key_files(client_secret, server_public, keys_dir, name, environ)
    return None if files is None else CurveKeys.from_files(*files)
