"""`colorprop keys`: the server/, clients/, workers/ layout, the old flat layout still read, a name that
keeps its role for good (a revoked artist's name never becomes a worker's), key names that are never
paths or hidden files, and both layouts served by a real CURVE server on 127.0.0.1."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import zmq.auth

from colorprop_client.client import Client, CurveKeys
from colorprop_client.keyfiles import KeyFilesMissing, find_key_files

from serverkit import ThreadServer

pytestmark = pytest.mark.usefixtures("watchdog")


def _keys(*args: str) -> int:
    from colorprop.cli.main import main

    return main(["keys", *args])


def _tree(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*"))


def _flat_keys(d: Path, clients=(), workers=()) -> None:
    """A keys folder as older versions wrote it: every pair side by side with the server's."""
    d.mkdir(parents=True)
    zmq.auth.create_certificates(str(d), "server")
    for folder, names in (("authorized_clients", clients), ("authorized_workers", workers)):
        (d / folder).mkdir()
        for n in names:
            zmq.auth.create_certificates(str(d), n)
            (d / folder / f"{n}.key").write_bytes((d / f"{n}.key").read_bytes())


def _connects(server_keys: Path, curve: CurveKeys, engine) -> bool:
    srv = ThreadServer(engine, curve_keys=str(server_keys))
    try:
        with Client(srv.address, timeout_s=2, retries=2, curve=curve) as c:
            return "flow" in c.hello()["engine"]["methods"]
    finally:
        srv.stop()


def test_keys_writes_server_clients_and_workers_folders(tmp_path, capsys):
    d = tmp_path / "k"
    assert _keys(str(d), "--client", "alice", "--client", "farm", "--worker", "gpu1") == 0
    written = json.loads(capsys.readouterr().out)
    assert written["clients"] == {"alice": str(d / "clients" / "alice"), "farm": str(d / "clients" / "farm")}
    assert _tree(d) == [
        "clients",
        "clients/alice",
        "clients/alice/alice.key",
        "clients/alice/alice.key_secret",
        "clients/alice/server.key",
        "clients/farm",
        "clients/farm/farm.key",
        "clients/farm/farm.key_secret",
        "clients/farm/server.key",
        "server",
        "server/authorized_clients",
        "server/authorized_clients/alice.key",
        "server/authorized_clients/farm.key",
        "server/authorized_workers",
        "server/authorized_workers/gpu1.key",
        "server/roles.json",
        "server/server.key",
        "server/server.key_secret",
        "workers",
        "workers/gpu1",
        "workers/gpu1/gpu1.key",
        "workers/gpu1/gpu1.key_secret",
        "workers/gpu1/server.key",
    ]
    # The server's folder holds no client's or worker's secret; every secret is readable by its owner only.
    assert [p.name for p in (d / "server").rglob("*.key_secret")] == ["server.key_secret"]
    for secret in d.rglob("*.key_secret"):
        assert oct(secret.stat().st_mode & 0o777) == "0o600", secret
    assert (d / "clients" / "alice" / "server.key").read_bytes() == (d / "server" / "server.key").read_bytes()
    # Running it again for the same names changes nothing.
    before = {p: p.read_bytes() for p in d.rglob("*") if p.is_file()}
    assert _keys(str(d), "--client", "alice", "--worker", "gpu1") == 0
    assert {p: p.read_bytes() for p in d.rglob("*") if p.is_file()} == before


def test_a_revoked_client_name_cannot_become_a_worker(tmp_path, capsys):
    """The documented revocation (remove the client's public key from the allow-list), then
    `colorprop keys DIR --worker alice`: it reused alice.key_secret, so the revoked artist registered as a
    worker and received other clients' jobs. Now it is refused, and so is re-listing the revoked key."""
    d = tmp_path / "k"
    assert _keys(str(d), "--client", "alice") == 0
    alice_public = (d / "clients" / "alice" / "alice.key").read_bytes()
    (d / "server" / "authorized_clients" / "alice.key").unlink()
    capsys.readouterr()
    assert _keys(str(d), "--worker", "alice") == 2
    err = capsys.readouterr().err
    assert "'alice' has been a client" in err and "cannot become a worker" in err
    assert not (d / "server" / "authorized_workers").exists() and not (d / "workers").exists()
    assert _keys(str(d), "--client", "alice") == 2  # the revoked key is not listed again
    assert "was revoked" in capsys.readouterr().err
    assert not (d / "server" / "authorized_clients" / "alice.key").exists()
    # Deleting the revoked pair gives alice a new key; the old one stays out; she is still never a worker.
    for f in (d / "clients" / "alice").iterdir():
        f.unlink()
    (d / "clients" / "alice").rmdir()
    assert _keys(str(d), "--client", "alice") == 0
    assert (d / "server" / "authorized_clients" / "alice.key").read_bytes() != alice_public
    assert _keys(str(d), "--worker", "alice") == 2
    # And the reverse: a worker's name never becomes a client's.
    assert _keys(str(d), "--worker", "gpu1") == 0 and _keys(str(d), "--client", "gpu1") == 2
    assert "'gpu1' has been a worker" in capsys.readouterr().err


def test_in_the_old_flat_layout_a_revoked_client_key_is_never_made_a_worker_key(tmp_path, capsys):
    """The issue's reproduction in the layout it was found in: alice.key_secret left beside the server's
    after her public key was removed. Nothing is written; the message says what to do."""
    d = tmp_path / "old"
    _flat_keys(d, clients=("alice",))
    (d / "authorized_clients" / "alice.key").unlink()
    before = _tree(d)
    assert _keys(str(d), "--worker", "alice") == 2
    assert "flat layout" in capsys.readouterr().err
    assert _tree(d) == before
    # Moved to the new layout as the message says: alice's leftover secret still blocks her name.
    (d / "server").mkdir()
    for name in ("server.key", "server.key_secret", "authorized_clients", "authorized_workers"):
        os.rename(d / name, d / "server" / name)
    assert _keys(str(d), "--worker", "alice") == 2
    assert "never takes over an earlier key" in capsys.readouterr().err
    assert _keys(str(d), "--worker", "gpu1") == 0  # a new name: a new pair, made now
    assert (d / "workers" / "gpu1" / "gpu1.key").read_bytes() != (d / "alice.key").read_bytes()


@pytest.mark.parametrize("name", [".", "..", ".hidden", "../evil", "a/b", "", "server", "x" * 65, "é"])
def test_a_key_name_is_never_a_path_or_a_hidden_file(tmp_path, capsys, name):
    """`keys DIR --worker .` wrote the hidden files ..key and ..key_secret."""
    d = tmp_path / "k"
    for flag in ("--worker", "--client"):
        assert _keys(str(d), flag, name) == 2
        assert "key name" in capsys.readouterr().err
    assert not d.exists() and not list(tmp_path.rglob("*.key*"))


def test_find_key_files_reads_both_layouts_and_names_what_is_missing(tmp_path):
    new, old = tmp_path / "new", tmp_path / "old"
    from colorprop_server.security import generate_keys

    generate_keys(new, ("alice",), ("gpu1",))
    _flat_keys(old, clients=("alice",))
    assert find_key_files(new, "alice") == (new / "clients/alice/alice.key_secret", new / "clients/alice/server.key")
    assert find_key_files(new, "gpu1", "workers").secret == new / "workers/gpu1/gpu1.key_secret"
    assert find_key_files(new / "clients" / "alice", "alice").secret.parent == new / "clients" / "alice"  # handed over
    assert find_key_files(old, "alice") == (old / "alice.key_secret", old / "server.key")
    with pytest.raises(KeyFilesMissing, match="no key pair named 'bob'.*colorprop keys DIR --client bob"):
        find_key_files(new, "bob")
    with pytest.raises(KeyFilesMissing, match="no key pair named 'alice'"):
        find_key_files(new, "alice", "workers")  # a client's pair is not a worker's
    (old / "server.key").unlink()
    with pytest.raises(KeyFilesMissing, match="alice.key_secret is there but the server's public key"):
        find_key_files(old, "alice")
    with pytest.raises(KeyFilesMissing, match="does not exist"):
        find_key_files(tmp_path / "nowhere", "alice")


def test_a_curve_server_serves_both_layouts(tmp_path, engine):
    """A real CURVE server on 127.0.0.1 reading the new layout (the keys folder, or its server/ folder
    copied alone) and the old flat one; each client connects with the files find_key_files gives it."""
    from colorprop_server.security import generate_keys

    new, old = tmp_path / "new", tmp_path / "old"
    generate_keys(new, ("alice",), ())
    _flat_keys(old, clients=("bob",))
    alice = CurveKeys.from_files(*find_key_files(new, "alice"))
    bob = CurveKeys.from_files(*find_key_files(old, "bob"))
    assert _connects(new, alice, engine)
    assert _connects(new / "server", alice, engine)
    assert _connects(old, bob, engine)


def test_a_keys_folder_that_cannot_be_written_is_exit_4_naming_it(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert _keys(str(blocker / "keys"), "--client", "alice") == 4
    err = capsys.readouterr().err
    assert f"cannot write CURVE keys in {blocker / 'keys'}" in err and "Traceback" not in err
