"""Fixtures shared by the test modules: free ports, the hang watchdog, and the server tests' engine
and module server (helpers that are not fixtures live in serverkit.py)."""

from __future__ import annotations

import faulthandler

import pytest


@pytest.fixture(scope="session")
def free_port():
    """A function returning a TCP port on 127.0.0.1 that nothing listens on (call it once per port)."""
    from colorprop_server.security import free_loopback_port

    return free_loopback_port


@pytest.fixture
def watchdog(request, tmp_path_factory):
    """No test using this may hang the suite: after 300 s every thread's stack is dumped to
    ``<this run's basetemp>/watchdog-<test>.txt`` and the run exits (to a file of this run, since
    pytest captures the terminal and concurrent runs must not overwrite each other's dumps)."""
    name = "".join(c if c.isalnum() else "_" for c in request.node.name)[:80]
    path = tmp_path_factory.getbasetemp() / f"watchdog-{name}.txt"
    with open(path, "w") as log:
        faulthandler.dump_traceback_later(300, exit=True, file=log)
        yield path
        faulthandler.cancel_dump_traceback_later()


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    """An engine without weights (method flow only), whatever weights the checkout ships."""
    from colorprop.engine.engine import Engine

    return Engine.load(tmp_path_factory.mktemp("no-weights"))


@pytest.fixture(scope="module")
def server(engine, tmp_path_factory):
    """One in-process server for the module, with an allowed root and small limits so oversize is
    cheap to provoke. Its clients all come from 127.0.0.1, one identity without CURVE keys: the
    per-client budgets are lifted so eight of them can share it as eight artists would."""
    from serverkit import ThreadServer

    root = tmp_path_factory.mktemp("allowed")
    srv = ThreadServer(engine, allowed_roots=(str(root),), max_message_bytes=4 << 20, session_timeout_s=2.0,
                       max_jobs=8, max_jobs_per_client=8, max_client_buffered_frames=64)
    srv.root = root
    yield srv
    srv.stop()
