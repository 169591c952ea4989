"""The client's Lazy Pirate promises, each against a real socket on 127.0.0.1: a stale reply (to an earlier
request) is discarded, a busy server is retried until it has room, the client never overruns the server's
frame buffer, and a cancel ends a job early and frees its slot at once."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import zmq

from colorprop_client import protocol as P
from colorprop_client.client import Client, ServerBusy, colorize_arrays, colorize_paths
from colorprop_server.session import Session

from serverkit import HeldRoots, ThreadServer, embedded, make_shot, wait_until, write_plates

pytestmark = pytest.mark.usefixtures("watchdog")


def test_stale_replies_to_earlier_requests_are_discarded(free_port):
    """A raw ROUTER answers every request first with replies to an old request id (a PONG, an ERROR, and an
    undecodable frame carrying that id), then with the real reply: the client returns the real one."""
    ctx = zmq.Context.instance()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    address = f"tcp://127.0.0.1:{free_port()}"
    router.bind(address)
    answered = []

    def serve() -> None:
        for _ in range(2):
            if not router.poll(10_000):
                return
            peer, *frames = router.recv_multipart()
            msg = P.decode(frames, expect=P.REQUEST_TYPES)
            router.send_multipart([peer, *P.encode(P.PONG, "an-old-request")])
            router.send_multipart([peer, *P.error_reply("an-old-request", P.E_INTERNAL, "stale failure")])
            router.send_multipart([peer, b'{"id": "an-old-request", "v": 1, "type": "nonsense"}'])
            router.send_multipart(
                [peer, *P.encode(P.CAPABILITIES if msg.type == P.HELLO else P.PONG, msg.id, marker="the real reply")]
            )
            answered.append(msg.id)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with Client(address, timeout_s=5, retries=1) as c:
            caps = c.hello()
            reply = c.request(P.PING)
    finally:
        thread.join(15)
        router.close(0)
    assert caps["marker"] == "the real reply" and caps["type"] == P.CAPABILITIES
    assert reply.get("marker") == "the real reply" and reply.id == answered[1]


class BusyCountingClient(Client):
    """A client that counts the ``busy`` replies it gets (the colorize loops retry them)."""

    busy = 0

    def request(self, *args, **kw):
        try:
            return super().request(*args, **kw)
        except ServerBusy:
            self.busy += 1
            raise


def test_a_busy_server_is_retried_until_a_slot_frees(engine):
    """One job slot, held by another client until this one has been answered busy: colorize_arrays waits (busy,
    retried), and once the slot is closed it returns the same pixels as an embedded run."""
    srv = ThreadServer(engine, max_jobs=1)
    frames, keys = make_shot(4, seed=81)
    got, errors = {}, []
    try:
        with Client(srv.address, timeout_s=2) as other, BusyCountingClient(srv.address, timeout_s=2) as waiting:
            holder = other.open_shot(keys, {"method": "flow"}, list(frames))

            def colorize() -> None:
                try:
                    got.update(colorize_arrays(waiting, frames, keys, {"method": "flow"}, busy_wait_s=60))
                except BaseException as exc:  # reported below
                    errors.append(exc)

            worker = threading.Thread(target=colorize)
            worker.start()
            assert wait_until(lambda: waiting.busy >= 1 or not worker.is_alive(), 30), "never answered busy"
            assert not got and not errors  # it had no slot while the other job held it
            holder.close()
            worker.join(60)
    finally:
        srv.stop()
    assert not errors and not worker.is_alive(), errors
    ref = embedded(engine, frames, keys)
    for f in frames:
        np.testing.assert_array_equal(got[f][0], ref[f][0], err_msg=f"frame {f}")


class PeakSession(Session):
    """A server session that records the most in-band frames it held waiting (``peak_inbox``) and the most results
    it held unfetched (``peak_results``), counted where they are added, under the session's lock."""

    made: list["PeakSession"] = []

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.peak_inbox = self.peak_results = 0
        self.inbox = _PeakDict(self)
        PeakSession.made.append(self)

    def push(self, event, arrays=None):
        with self.cond:  # re-entrant: push takes it too
            super().push(event, arrays)
            self.peak_results = max(self.peak_results, self.undelivered_results())


class _PeakDict(dict):
    def __init__(self, session: PeakSession):
        super().__init__()
        self.session = session

    def __setitem__(self, frame, item):
        super().__setitem__(frame, item)
        self.session.peak_inbox = max(self.session.peak_inbox, len(self))


def test_the_client_never_overruns_the_servers_buffers(engine, monkeypatch):
    """A window of 12 against a server that holds 2 waiting frames and 2 unfetched results per job: the job
    completes, identical, and the server never held more than its limits, counted inside it at every frame
    received and every result made. The first result's handler waits until the job holds 2 unfetched results
    (it then waits for a fetch), and the frames the client sends meanwhile fill the 2 waiting places: both limits
    are reached, none is passed."""
    import colorprop_server.service

    monkeypatch.setattr(colorprop_server.service, "Session", PeakSession)
    PeakSession.made.clear()
    srv = ThreadServer(engine, max_buffered_frames=2, max_pending_results=2)
    frames, keys = make_shot(14, seed=82)
    got = {}

    def on_result(frame, rgb, confidence):
        if not got:
            assert wait_until(lambda: PeakSession.made[0].peak_results >= 2, 30), "results never waited for a fetch"
        got[frame] = rgb.copy()

    try:
        colorize_arrays(srv.address, frames, keys, {"method": "flow"}, window=12, timeout_s=5, on_result=on_result)
    finally:
        srv.stop()
    ref = embedded(engine, frames, keys)
    assert sorted(got) == sorted(frames)
    for f in frames:
        np.testing.assert_array_equal(got[f], ref[f][0], err_msg=f"frame {f}")
    (session,) = PeakSession.made
    assert (session.peak_inbox, session.peak_results) == (2, 2)


def test_cancel_ends_a_job_early_and_frees_its_slot_at_once(engine, tmp_path):
    """A 24-frame shared-path job on a one-slot server, cancelled while the server reads frame 3 (held there,
    with the compute turn, until the cancel is acknowledged): the frame in flight finishes and nothing after it
    is written (frames 1-3, no temp file left), the job ends cancelled, and the next job opens without a busy
    wait."""
    frames, keys = make_shot(24, h=144, w=192, seed=83)
    plate, key = write_plates(tmp_path / "sh", frames, keys[1])
    srv = ThreadServer(engine, max_jobs=1, allowed_roots=(str(tmp_path),))
    hold = srv.service.roots = HeldRoots((str(tmp_path),), "plate.0003.exr", at="open")
    out = tmp_path / "sh" / "o"
    try:
        with Client(srv.address, timeout_s=5) as c:
            job = c.open_shot({1: key}, {"method": "flow"}, list(frames), P.MODE_PATHS, plate, str(out / "o.####.exr"))
            assert hold.held.wait(60), "the job never read frame 3"
            job.cancel()
            hold.release()
            for _ in job.events(timeout_s=60):
                pass
            assert job.finished.kind == P.EV_CANCELLED, job.finished.info
            job.close()
            report = colorize_paths(
                c,
                plate,
                str(tmp_path / "sh" / "again" / "a.####.exr"),
                [1, 2, 3],
                {1: key},
                {"method": "flow"},
                busy_wait_s=0.0,
            )
    finally:
        hold.release()
        srv.stop()
    assert sorted(p.name for p in out.iterdir()) == ["o.0001.exr", "o.0002.exr", "o.0003.exr"]
    assert report["frames_written"] == [1, 2, 3]


def test_a_request_nothing_can_take_is_a_silent_try_not_a_hang(free_port):
    """A DEALER with no connection to hand a message to (here: ZMQ_IMMEDIATE towards a port nobody listens on;
    in the field a refused handshake or a reconnect in progress) blocks in a plain ``send`` for ever. The client
    never blocks there: each such try counts as silence and the call gives up in about retries x timeout."""
    from colorprop_client.client import ServerUnavailable

    ctx = zmq.Context()
    ctx.setsockopt(zmq.IMMEDIATE, 1)  # its sockets queue only to completed connections: there are none
    outcome = {}

    def call() -> None:
        with Client(f"tcp://127.0.0.1:{free_port()}", timeout_s=0.3, retries=3, context=ctx) as c:
            t0 = time.monotonic()
            try:
                c.ping()
            except ServerUnavailable:
                outcome["unavailable_after_s"] = time.monotonic() - t0

    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    worker.join(10.0)
    assert not worker.is_alive(), "the client blocked in send"
    assert outcome["unavailable_after_s"] < 3 * 0.3 + 1.0
    ctx.term()


def test_a_peer_resetting_every_handshake_is_a_refusal_even_with_one_try(monkeypatch):
    """A CURVE server that hangs up first on a client without keys resets every connect mid-handshake ("no
    detail"). The first reset alone could be a restart; with ``retries=1`` (the plug-ins' connect) the one try
    ended there, and a Nuke node was told "no colorprop server answers" instead of what to fix. One more
    connect tells the two apart: the refusal is reported."""
    import socket
    import struct

    from colorprop_client.client import AuthenticationFailed
    from colorprop_client.transport import Transport

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.settimeout(0.1)
    port = listener.getsockname()[1]
    sent: list[bool] = []  # one per try: the client queued its request on that connection
    peer_wanted = threading.Event()  # cleared when the test is done with the peer
    peer_wanted.set()
    send = Transport._send
    monkeypatch.setattr(Transport, "_send", lambda self, frames: sent.append(send(self, frames)) or sent[-1])

    def reset_every_handshake() -> None:
        accepted = 0
        while peer_wanted.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue  # (a short accept timeout: the thread ends soon after the test)
            except OSError:
                return  # the test closed the listener
            accepted += 1
            conn.settimeout(10.0)
            conn.recv(10)  # the handshake is under way
            # A server refuses after its key check, when the request is queued: wait for that, not a guessed time.
            wait_until(lambda: len(sent) >= accepted or not peer_wanted.is_set(), 30, step=0.01)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with RST
            conn.close()

    peer = threading.Thread(target=reset_every_handshake, daemon=True)
    peer.start()
    try:
        with Client(f"tcp://127.0.0.1:{port}", timeout_s=2.0, retries=1) as c:
            with pytest.raises(AuthenticationFailed, match="uses CURVE and this client has no keys") as refused:
                c.ping()
        assert refused.value.cause == AuthenticationFailed.CLIENT_HAS_NO_KEYS
    finally:
        peer_wanted.clear()
        listener.close()
        peer.join(5.0)


def test_a_connection_reset_mid_handshake_is_a_lost_server_not_a_refused_key():
    """A server killed while its kernel still accepts connections resets the client's reconnect in the middle of the
    ZeroMQ handshake ("no detail" failure, ECONNRESET). That is a dead server (exit 6 from `colorize --server`), not
    a CURVE refusal (exit 7): CI once saw the kill test told "the server uses CURVE and this client has no keys"."""
    import socket
    import struct

    from colorprop_client.client import AuthenticationFailed, ServerUnavailable

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]

    def accept_then_die() -> None:
        conn, _ = listener.accept()
        conn.recv(10)  # the start of the client's ZMTP greeting: the handshake is under way
        listener.close()  # nobody listens any more (first: a reconnect must find no listener, as after kill -9)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with RST
        conn.close()

    server = threading.Thread(target=accept_then_die, daemon=True)
    server.start()
    with Client(f"tcp://127.0.0.1:{port}", timeout_s=0.4, retries=3) as c:
        t0 = time.monotonic()
        with pytest.raises(ServerUnavailable):
            try:
                c.ping()
            except AuthenticationFailed as exc:
                pytest.fail(f"a reset connection was reported as a refused handshake: {exc}")
        assert time.monotonic() - t0 < 3 * 0.4 + 1.0
    server.join(5.0)
    assert not server.is_alive(), "the client never connected"


def test_frame_window_sends_asked_frames_first_and_keeps_the_window():
    """The in-band send order: in order while fewer than ``size`` sent ahead await their result; a frame the
    engine asks for goes next, even one sent before (a restarted run), and is not sent ahead again."""
    from colorprop_client.colorize import FrameWindow

    w = FrameWindow([1, 2, 3, 4, 5], size=2)
    for f in (1, 2):
        assert w.next_frame() == f
        w.sent(f)
    assert w.next_frame() is None  # two await their result
    w.answered(1)
    assert w.next_frame() == 3
    w.sent(3)
    w.asked_for(5)
    w.asked_for(1)  # resent although answered: the engine restarted
    w.asked_for(5)  # asked twice: sent once
    for asked in (5, 1):
        assert w.next_frame() == asked
        w.sent(asked)
    assert w.next_frame() is None and not w.all_sent_answered()
    for f in (2, 3, 5):
        w.answered(f)
    assert w.all_sent_answered() and w.unanswered() == [4]
    assert w.next_frame() == 4  # 5 was sent on request, so it is not sent ahead again
    w.sent(4)
    assert w.next_frame() is None
