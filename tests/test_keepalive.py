"""Keepalive and reset detection (issue 10): a session silent for `keepalive`
seconds asks the peer for its window; a live peer (gkcp or kcp-go) answers
and is kept however long it stays idle, a dead one ends the session after
`keepalive_timeout` (ConnectionAbortedError, errno ETIMEDOUT), and a peer
that forgot the conversation ends it with ConnectionResetError.  Short
settings here; the defaults get one check and one soak run."""
import errno
import os
import signal
import socket
import time

import gevent
import pytest
from gevent import socket as gsocket

import gkcp
from corerig import segment
from gopeer import GoPeer, PayloadStream, stream_digest
from helpers import core_stat
from lossy_relay import LossyRelay
from pyroles import recv_exactly, run_with_deadline, wait_process

FAST = dict(nodelay=1, interval=10, resend=2, nc=1)
KA = dict(keepalive=0.5, keepalive_timeout=2.0)
HANG_GUARD = 5.0  # seconds past the keepalive timeout: a bound against hangs
KCP_WASK, KCP_WINS = 83, 84


def _blocked_recv_outcome(session, limit):
    """(exception or data, seconds) of one recv blocked for up to limit."""
    session.settimeout(limit)
    started = time.monotonic()
    try:
        outcome = session.recv(100)
    except OSError as error:
        outcome = error
    return outcome, time.monotonic() - started


def _assert_keepalive_ended(outcome):
    assert isinstance(outcome, ConnectionAbortedError), outcome
    assert outcome.errno == errno.ETIMEDOUT and "keepalive" in str(outcome)


def test_defaults_probe_every_10_s_and_end_after_30_s():
    options = gkcp.Options()
    assert (options.keepalive, options.keepalive_timeout, options.connect_timeout) == (10.0, 30.0, 10.0)


def test_the_timeout_must_leave_room_for_a_probe():
    with pytest.raises(ValueError, match="keepalive_timeout"):
        gkcp.Options(keepalive=5, keepalive_timeout=5).validate()
    gkcp.Options(keepalive=0, keepalive_timeout=0).validate()  # off: the timeout is unused


def test_an_idle_gkcp_pair_is_kept_and_probes_sparingly():
    with gkcp.listen(("127.0.0.1", 0), **KA, **FAST) as listener:
        client = gkcp.dial(listener.getsockname(), **KA, **FAST)
        listener.settimeout(5)
        server, _ = listener.accept()
        probes = core_stat("KeepaliveProbes")
        gevent.sleep(3 * KA["keepalive_timeout"])  # idle well past the timeout
        sent = core_stat("KeepaliveProbes") - probes
        # one side's probe is life for the other: about one per interval per pair
        assert 0 < sent <= 2 * (3 * KA["keepalive_timeout"] / KA["keepalive"]) + 2, sent
        client.sendall(b"still here")
        server.settimeout(5)
        assert server.recv(100) == b"still here"
        server.close()
        client.close()


def test_keepalive_0_sends_nothing_while_idle():
    """Counted on the wire between the two (a relay's counters): the
    process-wide OutPkts also counts what sessions an earlier test left
    lingering retransmit meanwhile."""
    with gkcp.listen(("127.0.0.1", 0), keepalive=0, **FAST) as listener, \
            LossyRelay(listener.getsockname()) as relay:
        client = gkcp.dial(relay.address, keepalive=0, **FAST)
        listener.settimeout(5)
        server, _ = listener.accept()
        gevent.sleep(0.2)
        before = relay.total("in")
        gevent.sleep(1.5)
        assert relay.total("in") == before
        server.close()
        client.close()


def _fake_peers(count, listener_address, answer_ask):
    """count UDP sockets that each send one window tell to the listener;
    with answer_ask they also answer its window ask once (so the listener
    accepts them), and then fall silent for good."""
    socks = []
    for i in range(count):
        sock = gsocket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.sendto(segment(0x5000 + i, KCP_WINS), listener_address)
        socks.append(sock)
    if answer_ask:
        for i, sock in enumerate(socks):
            with gevent.Timeout(10):
                while sock.recv(2048)[4] != KCP_WASK:
                    pass
            sock.sendto(segment(0x5000 + i, KCP_WINS), listener_address)
    return socks


def test_300_one_packet_fakes_never_become_sessions_and_300_silent_ones_end():
    count = 300
    with gkcp.listen(("127.0.0.1", 0), backlog=2 * count, **KA, **FAST) as listener:
        expired = core_stat("UnprovenExpired")
        fakes = _fake_peers(count, listener.getsockname(), answer_ask=False)
        started = time.monotonic()
        # never proven: freed after the unproven lifetime (4 s), never accepted
        deadline = started + 4 + HANG_GUARD
        while core_stat("UnprovenExpired") - expired < count and time.monotonic() < deadline:
            gevent.sleep(0.05)
        assert core_stat("UnprovenExpired") - expired == count
        listener.settimeout(0)
        with pytest.raises(BlockingIOError):
            listener.accept()
        for sock in fakes:
            sock.close()

        timeouts = core_stat("KeepaliveTimeouts")
        estab = core_stat("CurrEstab")
        fakes = _fake_peers(count, listener.getsockname(), answer_ask=True)
        listener.settimeout(5)
        sessions = [listener.accept()[0] for _ in range(count)]
        started = time.monotonic()
        readers = [gevent.spawn(_blocked_recv_outcome, s, KA["keepalive_timeout"] + HANG_GUARD)
                   for s in sessions]
        gevent.joinall(readers, timeout=KA["keepalive_timeout"] + 2 * HANG_GUARD)
        elapsed = time.monotonic() - started
        for reader in readers:
            _assert_keepalive_ended(reader.get(block=False)[0])
        assert core_stat("KeepaliveTimeouts") - timeouts == count
        for s in sessions:
            s.close()
        assert core_stat("CurrEstab") == estab
        for sock in fakes:
            sock.close()
    print("300 accepted silent fakes ended after %.2f s (keepalive_timeout %s s)"
          % (elapsed, KA["keepalive_timeout"]))


def test_a_gkcp_server_that_closed_the_session_is_a_reset():
    with gkcp.listen(("127.0.0.1", 0), **KA, **FAST) as listener:
        client = gkcp.dial(listener.getsockname(), **KA, **FAST)
        client.sendall(b"x" * 5000)
        listener.settimeout(5)
        server, _ = listener.accept()
        server.settimeout(5)
        assert recv_exactly(server, 5000) == b"x" * 5000
        server.close()  # all acknowledged: freed at once, the listener forgets it
        outcome, elapsed = _blocked_recv_outcome(client, KA["keepalive"] + HANG_GUARD)
        assert isinstance(outcome, ConnectionResetError), outcome
        assert "no longer knows" in str(outcome)
        client.close()
        print("gkcp peer reset found after %.2f s" % elapsed)


def test_stale_acknowledgements_are_not_a_reset_but_a_peer_behind_after_a_second_is():
    peer = gsocket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    peer.settimeout(5)
    conv = 0x777
    dialing = gevent.spawn(gkcp.dial, peer.getsockname(), conv=conv, keepalive=0, **FAST)
    _, address = peer.recvfrom(2048)
    peer.sendto(segment(conv, KCP_WINS, una=0), address)
    client = dialing.get(timeout=5)
    resets = core_stat("PeerResets")
    for sn in range(3):
        peer.sendto(segment(conv, 81, sn=sn, una=0, data=b"d%d" % sn), address)
    peer.sendto(segment(conv, KCP_WINS, una=5), address)
    for _ in range(3):  # a burst of duplicated old datagrams: doubt, one ask
        peer.sendto(segment(conv, KCP_WINS, una=2), address)
    peer.sendto(segment(conv, 81, sn=3, una=5, data=b"d3"), address)  # live again: doubt cleared
    client.settimeout(5)
    assert recv_exactly(client, 8) == b"d0d1d2d3"
    gevent.sleep(1.2)  # longer than the confirmation delay: still no reset
    assert core_stat("PeerResets") == resets and not client.closed
    client.sendall(b"alive?")  # the session still works
    # now the peer forgets: behind, then behind again after the re-ask a second later
    started = time.monotonic()
    peer.sendto(segment(conv, KCP_WINS, una=0), address)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        data = peer.recv(2048)
        if data[4] == KCP_WASK and time.monotonic() - started >= 1.0:
            break
    peer.sendto(segment(conv, KCP_WINS, una=0), address)
    with pytest.raises(ConnectionResetError):
        client.recv(100)
    assert core_stat("PeerResets") == resets + 1
    client.close()
    peer.close()


# -- against the live kcp-go peer -------------------------------------------------


def test_kcp_go_server_killed_while_gkcp_blocks_in_recv(go_peer_bin):
    with GoPeer("listen", role="echo", nbytes=0, binary=go_peer_bin, timeout=60, interval=10) as srv:
        client = gkcp.dial(srv.address, **KA, **FAST)
        client.sendall(b"echo me")
        client.settimeout(5)
        assert recv_exactly(client, 7) == b"echo me"
        os.kill(srv.proc.pid, signal.SIGKILL)
        outcome, elapsed = _blocked_recv_outcome(client, KA["keepalive_timeout"] + HANG_GUARD)
    _assert_keepalive_ended(outcome)
    assert elapsed < KA["keepalive_timeout"] + HANG_GUARD
    client.close()
    print("recv ended %.2f s after the kcp-go server was killed" % elapsed)


def test_kcp_go_client_killed_while_the_gkcp_server_blocks_in_recv(go_peer_bin):
    with gkcp.listen(("127.0.0.1", 0), **KA, **FAST) as listener:
        with GoPeer("dial", addr=listener.getsockname(), role="recv", nbytes=1000, binary=go_peer_bin,
                    timeout=60, interval=10) as cli:
            listener.settimeout(10)
            server, _ = listener.accept()
            server.settimeout(10)
            assert recv_exactly(server, 1) == b"\x01"  # the client's opening byte
            os.kill(cli.proc.pid, signal.SIGKILL)
            outcome, elapsed = _blocked_recv_outcome(server, KA["keepalive_timeout"] + HANG_GUARD)
        _assert_keepalive_ended(outcome)
        server.close()
    print("server recv ended %.2f s after the kcp-go client was killed" % elapsed)


def _idle_kcp_go_client_is_kept(go_peer_bin, silence, keepalive):
    n = 100_000
    with gkcp.listen(("127.0.0.1", 0), **keepalive, **FAST) as listener:
        with GoPeer("dial", addr=listener.getsockname(), role="recv", nbytes=n, binary=go_peer_bin,
                    timeout=silence + 60, interval=10, seed=4) as cli:
            listener.settimeout(10)
            server, _ = listener.accept()
            server.settimeout(10)
            assert recv_exactly(server, 1) == b"\x01"
            timeouts = core_stat("KeepaliveTimeouts")
            gevent.sleep(silence)  # both sides silent: gkcp probes, kcp-go answers
            assert core_stat("KeepaliveTimeouts") == timeouts
            for piece in PayloadStream(4).chunks(n):
                server.sendall(piece)
            digest = run_with_deadline(recv_exactly, server, 32, timeout=20)
            server.close()
            wait_process(cli, 20)
    assert digest.hex() == stream_digest(4, n) == cli.result["hex"]


def test_an_idle_kcp_go_client_that_talks_again_is_kept(go_peer_bin):
    _idle_kcp_go_client_is_kept(go_peer_bin, 4 * KA["keepalive_timeout"], KA)


@pytest.mark.soak
def test_an_idle_kcp_go_client_is_kept_for_45_s_with_default_keepalive(go_peer_bin):
    _idle_kcp_go_client_is_kept(go_peer_bin, 45, {})


def test_an_idle_kcp_go_server_that_is_talked_to_again_is_kept(go_peer_bin):
    with GoPeer("listen", role="echo", nbytes=0, binary=go_peer_bin, timeout=60, interval=10) as srv:
        with gkcp.dial(srv.address, **KA, **FAST) as client:
            client.settimeout(10)
            client.sendall(b"before")
            assert recv_exactly(client, 6) == b"before"
            probes = core_stat("KeepaliveProbes")
            gevent.sleep(4 * KA["keepalive_timeout"])
            assert core_stat("KeepaliveProbes") > probes  # it was asked, and answered
            client.sendall(b"after")
            assert recv_exactly(client, 5) == b"after"


def test_a_kcp_go_server_that_closed_the_session_is_a_reset_and_leaves_a_phantom(go_peer_bin):
    # kcp-go's echo ends its session after n bytes; the listener then
    # answers gkcp's next probe from a new session of the same conv (una 0):
    # gkcp ends with ConnectionResetError, kcp-go accepted a phantom session
    # that lives until its application closes it (here: -idle 1.5 s)
    n = 20_000
    with GoPeer("listen", role="echo", nbytes=n, sessions=2, idle=1.5, binary=go_peer_bin,
                timeout=60, interval=10, linger=1) as srv:
        client = gkcp.dial(srv.address, **KA, **FAST)
        client.sendall(os.urandom(n))
        client.settimeout(10)
        assert len(recv_exactly(client, n)) == n
        outcome, elapsed = _blocked_recv_outcome(client, 10)
        assert isinstance(outcome, ConnectionResetError), outcome
        client.close()
        wait_process(srv, 20)
    echoed = [r["n"] for r in srv.results]
    assert echoed == [n, 0], echoed  # the second session is the phantom: it never got a byte
    print("reset found %.2f s after the echo finished" % elapsed)
