"""The interface through which other packages add to core's CLI, without core importing them.

Two entry-point groups (``[project.entry-points."..."]`` in pyproject.toml), read with
importlib.metadata when the parser is built or ``--server`` is used:

``colorprop.cli``
    Each entry point is ``add(subparsers) -> None``: it adds subcommands (``colorprop_server``
    adds ``serve``, ``broker`` and ``keys``), each with ``set_defaults(func=...)``.
``colorprop.remote``
    The entry point named ``colorize`` runs ``colorprop colorize --server ADDRESS``: it is called as
    ``colorize(address, input_pattern, keys, output_pattern, frames, options, progress,
    skip_existing=..., timeout_s=..., pixel_type=..., key_colorspace=...)`` with ``keys`` {frame: path}; returns a
    ``ShotReport``; the same contract as ``pipeline.colorize_sequence``.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from typing import Callable

from colorprop.errors import InputError

CLI_GROUP = "colorprop.cli"
REMOTE_GROUP = "colorprop.remote"


def cli_extensions() -> list[EntryPoint]:
    return sorted(entry_points(group=CLI_GROUP), key=lambda ep: ep.name)


def add_extension_commands(subparsers) -> None:
    """Every installed ``colorprop.cli`` extension adds its subcommands. One that cannot be imported
    (e.g. pyzmq missing) is left out; its commands are then absent from ``--help``."""
    for ep in cli_extensions():
        try:
            add = ep.load()
        except ImportError:
            continue
        add(subparsers)


def remote_colorizer() -> Callable:
    """The installed ``colorprop.remote`` ``colorize`` callable; InputError if there is none."""
    found = [ep for ep in entry_points(group=REMOTE_GROUP) if ep.name == "colorize"]
    if not found:
        raise InputError(
            "--server: no server client is installed (the colorprop_server package registers "
            f"it under the entry-point group {REMOTE_GROUP!r}; reinstall with `pip install -e .`)"
        )
    try:
        return found[0].load()
    except ImportError as err:
        raise InputError(f"--server: the server client cannot be loaded ({err}); is pyzmq installed?") from None
