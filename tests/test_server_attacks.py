"""Attacks on a real `colorprop serve` process on 127.0.0.1, as a hostile or careless client with
write access to the shared folders would try them: each must stay impossible.

- a link planted at the writer's temp name (or swapped in while it writes) must not get a file
  outside the allowed roots overwritten;
- `skip_existing` must not read an output frame that links outside the roots;
- a plate swapped for a link to outside the roots between its roots check and its open must not be
  read (reads go through the descriptor that was checked);
- a frame token of 99,999,999 digits is refused at once; a 20,000-frame shot must not stall the socket
  thread (held in the middle of its path checks, the server still answers), and SIGTERM ends the process
  in bounded time.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from colorprop_client import protocol as P
from colorprop_client.client import Client, ServerError, colorize_paths

from serverkit import make_shot, spawn, stop_proc, wait_hello, write_plates

pytestmark = pytest.mark.usefixtures("watchdog")


@pytest.fixture(scope="module")
def served(tmp_path_factory, free_port):
    """A server process whose allowed root is ``root``; ``outside`` is a folder next to it."""
    base = tmp_path_factory.mktemp("attacks")
    root, outside = base / "root", base / "outside"
    root.mkdir()
    outside.mkdir()
    address = f"tcp://127.0.0.1:{free_port()}"
    proc = spawn(["serve", "--bind", address, "--allow-root", str(root), "--log-level", "WARNING"])
    try:
        wait_hello(address, proc)
        yield address, proc, root, outside
    finally:
        stop_proc(proc)


def _victim(outside, name="victim.exr") -> tuple:
    path = outside / name
    path.write_bytes(b"not yours to overwrite")
    return path, path.read_bytes()


def test_links_at_temp_and_final_names_never_redirect_a_write(served):
    """The issue's reproduction: links planted at the predictable temp name of every frame before
    the job runs: the job succeeds and the victim keeps its bytes. A link at a final name that
    leads outside is refused before anything is written."""
    address, proc, root, outside = served
    victim, before = _victim(outside)
    frames, keys = make_shot(8, seed=61)
    plate, key = write_plates(root / "sh1", frames, keys[1])
    out = root / "sh1" / "o"
    out.mkdir()
    for f in frames:
        (out / f".o.{f:04d}.tmp-{proc.pid}.exr").symlink_to(victim)
    report = colorize_paths(
        address, plate, str(out / "o.####.exr"), list(frames), {1: key}, {"method": "flow"}, timeout_s=5
    )
    assert report["frames_written"] == list(frames)
    assert victim.read_bytes() == before
    for f in frames:
        assert (out / f"o.{f:04d}.exr").is_file() and not (out / f"o.{f:04d}.exr").is_symlink()
    out2 = root / "sh1" / "o2"
    out2.mkdir()
    (out2 / "o.0006.exr").symlink_to(victim)
    with pytest.raises(ServerError) as err:
        colorize_paths(
            address, plate, str(out2 / "o.####.exr"), list(frames), {1: key}, {"method": "flow"}, timeout_s=5
        )
    assert err.value.code == P.E_PATH and "o.0006.exr" in str(err.value)
    assert victim.read_bytes() == before and sorted(p.name for p in out2.iterdir()) == ["o.0006.exr"]


def test_temp_files_swapped_for_links_while_writing_never_redirect_a_write(served):
    """A client watching the output folder replaces each new temp file by a link to the victim
    while the server writes. The output may be wrong (the client owns that folder), but the bytes
    go into the file the server created, never to the victim."""
    address, proc, root, outside = served
    victim, before = _victim(outside, "victim2.exr")
    frames, keys = make_shot(8, seed=63)
    plate, key = write_plates(root / "sh3", frames, keys[1])
    out = root / "sh3" / "o"
    out.mkdir()
    swaps = []
    stop = threading.Event()

    def swapper():
        while not stop.is_set():
            for name in os.listdir(out):
                p = out / name
                if ".tmp-" in name and not p.is_symlink():
                    try:
                        p.unlink()
                        p.symlink_to(victim)
                        swaps.append(name)
                    except OSError:
                        pass

    t = threading.Thread(target=swapper)
    t.start()
    try:
        colorize_paths(address, plate, str(out / "o.####.exr"), list(frames), {1: key}, {"method": "flow"}, timeout_s=5)
    except ServerError:
        pass  # a frame swapped under the writer may fail the job: the point is where the bytes went
    finally:
        stop.set()
        t.join(10)
    print(f"{len(swaps)} temp files swapped for links while the server wrote")
    assert victim.read_bytes() == before
    assert sorted(p.name for p in outside.iterdir() if p.name.startswith("victim2")) == ["victim2.exr"]


def test_skip_existing_does_not_read_an_output_frame_linking_outside(served):
    from colorprop.io.exr import write_exr

    address, proc, root, outside = served
    frames, keys = make_shot(5, seed=62)
    plate, key = write_plates(root / "sh2", frames, keys[1])
    secret = outside / "secret.exr"
    write_exr(secret, np.full((48, 64, 3), (0.9, 0.1, 0.1), np.float32), ("R", "G", "B"), pixel_type="float")
    out = root / "sh2" / "o"
    out.mkdir()
    (out / "o.0002.exr").symlink_to(secret)
    with pytest.raises(ServerError) as err:
        colorize_paths(
            address,
            plate,
            str(out / "o.####.exr"),
            list(frames),
            {1: key},
            {"method": "flow"},
            timeout_s=5,
            skip_existing=True,
        )
    assert err.value.code == P.E_PATH and "o.0002.exr" in str(err.value) and "outside" in str(err.value)
    assert not (out / "o.0003.exr").exists()  # nothing was carried on from the secret frame


def test_a_plate_swapped_for_a_link_after_its_check_is_refused_not_read(engine, tmp_path):
    """The race of a check-then-open read, made deterministic: the server's roots check itself swaps
    frame 3 for a link to a file outside the roots right after it has passed (as an attacker winning the
    race would). The read goes through the descriptor opened without following links: refused, naming
    the frame; frames 1-2 are written, nothing of the outside file reaches an output."""
    from colorprop.io.exr import read_exr, write_exr
    from colorprop_server.paths import AllowedRoots

    from serverkit import ThreadServer

    root, outside = tmp_path / "root", tmp_path / "outside"
    frames, keys = make_shot(5, seed=63)
    plate, key = write_plates(root / "sh", frames, keys[1])
    outside.mkdir()
    secret = outside / "secret.exr"
    write_exr(secret, np.full((48, 64, 3), (0.9, 0.1, 0.1), np.float32), ("R", "G", "B"), pixel_type="float")
    target = root / "sh" / "plate.0003.exr"

    class SwapAfterCheck(AllowedRoots):
        def check_file(self, path):
            real = super().check_file(path)
            if Path(path) == target and not target.is_symlink():
                (root / "sh" / "link.tmp").symlink_to(secret)
                os.replace(root / "sh" / "link.tmp", target)
            return real

    srv = ThreadServer(engine, allowed_roots=(str(root),))
    srv.service.roots = SwapAfterCheck((str(root),))
    out = root / "sh" / "o"
    try:
        with pytest.raises(ServerError) as err:
            colorize_paths(
                srv.address, plate, str(out / "o.####.exr"), list(frames), {1: key}, {"method": "flow"}, timeout_s=5
            )
    finally:
        srv.stop()
    assert err.value.code == P.E_PATH and str(target) in str(err.value) and "link" in str(err.value)
    assert target.is_symlink() and read_exr(target).pixels[0, 0, 0] == np.float32(0.9)  # a read by path gets the secret
    assert sorted(p.name for p in out.glob("*.exr")) == ["o.0001.exr", "o.0002.exr"]


def test_opened_file_reads_the_checked_file_by_descriptor(tmp_path):
    from colorprop.errors import ExrReadError
    from colorprop.io.exr import read_exr, write_exr
    from colorprop_server.paths import AllowedRoots, PathRefused

    roots = AllowedRoots((str(tmp_path),))
    good = tmp_path / "good.exr"
    write_exr(good, np.full((4, 5, 3), 0.5, np.float32), ("R", "G", "B"), pixel_type="float")
    with roots.opened_file(good) as through:
        assert str(through).startswith("/proc/self/fd/")
        assert (os.stat(through).st_dev, os.stat(through).st_ino) == (os.stat(good).st_dev, os.stat(good).st_ino)
        assert read_exr(through).pixels.shape == (4, 5, 3)
    cut = tmp_path / "cut.exr"
    cut.write_bytes(good.read_bytes()[:-40])
    with pytest.raises(ExrReadError) as err, roots.opened_file(cut) as through:
        read_exr(through)
    assert err.value.path == str(cut) and "/proc/self/fd" not in str(err.value)  # named as the client named it
    with pytest.raises(ExrReadError, match="no such file"), roots.opened_file(tmp_path / "missing.exr"):
        pass
    os.mkfifo(tmp_path / "fifo.exr")
    with pytest.raises(PathRefused, match="not a regular file"), roots.opened_file(tmp_path / "fifo.exr"):
        pass  # refused without blocking on the FIFO


def _raw_open(address: str, **fields) -> P.Message:
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(address)
    try:
        sock.send_multipart(P.encode(P.OPEN_SHOT, "attack-1", **fields))
        assert sock.poll(10_000), "no answer to the open"
        return P.decode(sock.recv_multipart(), expect=P.REPLY_TYPES)
    finally:
        sock.close(0)


def _long_shot(root: Path, n: int = P.MAX_FRAMES_PER_SHOT) -> dict:
    """A shot of ``n`` frames (the largest allowed), with shared paths: its pre-flight checks every frame's paths
    against the roots."""
    return dict(
        job="long-shot",
        mode=P.MODE_PATHS,
        frames=list(range(1, n + 1)),
        input=str(root / "sh" / "p.%08d.exr"),
        output=str(root / "sh" / "o.%08d.exr"),
        keys={"1": str(root / "sh" / "key.exr")},
        options={"method": "flow"},
    )


def test_a_long_shots_path_checks_do_not_stall_the_socket_thread(engine, tmp_path):
    """A shot's per-frame path checks run in its job thread: held in the middle of them (at output frame 100 of
    200), the job stands there while the server answers ten pings, a hello and a status that lists it. Had the
    socket thread run the checks, it would stand there too and nothing would be answered (the hold lasts 120 s,
    a try 10 s): a count of answers, not a latency a loaded machine could miss. (The hold stands for the time
    the largest shot's checks take; that shot is opened on a real process below.)"""
    from serverkit import HeldRoots, ThreadServer

    root = tmp_path / "root"
    (root / "sh").mkdir(parents=True)
    srv = ThreadServer(engine, allowed_roots=(str(root),))
    hold = srv.service.roots = HeldRoots((str(root),), "o.00000100.exr")
    try:
        reply = _raw_open(srv.address, **_long_shot(root, 200))
        assert reply.type == P.OPENED, reply.header
        assert hold.held.wait(60), "the checks never reached output frame 100"
        with Client(srv.address, timeout_s=10, retries=1, live_wait_s=10) as c:
            pongs = [c.ping() for _ in range(10)]
            assert c.hello()["limits"]["max_frames_per_shot"] == P.MAX_FRAMES_PER_SHOT
            jobs = c.status()
            c.request(P.CLOSE, job="long-shot")  # the server then stops without waiting for anyone to fetch
        assert hold.held.is_set() and not hold.released.is_set()  # all of it answered while the job stood there
        assert len(pongs) == 10 and [(j["job"], j["state"]) for j in jobs] == [("long-shot", "running")], jobs
        assert hold.held_in.startswith("colorprop-job-"), hold.held_in
    finally:
        hold.release()
        srv.stop()


@pytest.mark.slow
def test_huge_frame_token_is_refused_and_sigterm_ends_a_long_shot(tmp_path, free_port):
    root = tmp_path / "root"
    (root / "sh").mkdir(parents=True)
    address = f"tcp://127.0.0.1:{free_port()}"
    proc = spawn(["serve", "--bind", address, "--allow-root", str(root), "--log-level", "WARNING"])
    try:
        wait_hello(address, proc)
        # 1. A 99,999,999-digit frame token with 2,000 frames: refused at once.
        reply = _raw_open(
            address,
            job="huge-token",
            mode=P.MODE_PATHS,
            frames=list(range(1, 2001)),
            input=str(root / "sh" / "p.####.exr"),
            output=str(root / "%99999999d.exr"),
            keys={"1": str(root / "sh" / "key.exr")},
            options={"method": "flow"},
        )
        assert reply.type == P.ERROR and reply.get("code") == P.E_BAD_INPUT
        assert reply.get("field") == "output" and str(P.MAX_FRAME_PADDING) in reply.get("message")
        # 2. The largest shot allowed opens (its per-frame checks run in the job thread) ...
        reply = _raw_open(address, **_long_shot(root))
        assert reply.type == P.OPENED, reply.header
        with Client(address, timeout_s=5, retries=1) as c:
            assert [j["job"] for j in c.status()] == ["long-shot"]
        # 3. ... and SIGTERM ends the process in bounded time, the time from the signal to the exit.
        t_term = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(15)
        term_s = time.monotonic() - t_term
    finally:
        stop_proc(proc, signal.SIGKILL)
    assert rc == 0 and term_s < 10.0, (rc, term_s)
