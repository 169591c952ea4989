"""CURVE key material of a client: its own key pair and the server's public key, as ``colorprop keys`` writes them."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class CurveKeys:
    """CURVE key material for the client: its own key pair and the server's public key (z85 bytes)."""

    public: bytes
    secret: bytes
    server_public: bytes

    @classmethod
    def from_files(cls, client_secret_file: str | os.PathLike, server_public_file: str | os.PathLike) -> "CurveKeys":
        """Load ``<name>.key_secret`` and ``server.key`` as written by ``colorprop keys``."""
        from zmq.auth import load_certificate

        public, secret = load_certificate(os.fspath(client_secret_file))
        server_public, _ = load_certificate(os.fspath(server_public_file))
        if not secret:
            raise ValueError(f"{client_secret_file} holds no secret key")
        return cls(public, secret, server_public)

    @classmethod
    def from_dir(cls, keys_dir: str | os.PathLike, name: str = "client") -> "CurveKeys":
        d = os.fspath(keys_dir)
        return cls.from_files(os.path.join(d, f"{name}.key_secret"), os.path.join(d, "server.key"))
