"""colorprop inference server (ZeroMQ): one engine, many artists, a versioned protocol.

``serve(config)`` runs a standalone server (or a worker when ``config.broker`` is set);
``run_broker(config)`` runs the scale-out broker; ``generate_keys(dir)`` makes CURVE keys.
Importing this package loads neither zmq, torch nor the engine: that happens when used.
"""

from .config import ServerConfig

__all__ = ["ServerConfig", "serve", "run_broker", "generate_keys", "Server", "Broker"]


def serve(config: ServerConfig | None = None, install_signals: bool = True) -> None:
    """Run a server (or a worker when ``config.broker`` is set) until SIGTERM/SIGINT."""
    from .server import serve as _serve

    _serve(config, install_signals)


def run_broker(config: ServerConfig, install_signals: bool = True) -> None:
    from .broker import run_broker as _run_broker

    _run_broker(config, install_signals)


def __getattr__(name: str):
    if name == "Server":
        from .server import Server

        return Server
    if name == "Broker":
        from .broker import Broker

        return Broker
    if name == "generate_keys":  # CURVE key pairs and allow-lists (``colorprop keys``)
        from .security import generate_keys

        return generate_keys
    raise AttributeError(name)
