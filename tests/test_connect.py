"""A dial verifies its peer (issue 10): it returns once a KCP endpoint with the
same crypt, key and FEC shape answered its window ask, fails fast with
ConnectionRefusedError on an ICMP port unreachable, and raises socket.timeout
naming the likely causes when nothing answers.  Against gkcp and the live
kcp-go 5.6.1 peer (a missing Go toolchain fails these tests, never skips)."""
import socket
import time

import gevent
import pytest
from gevent import socket as gsocket

import gkcp
from corerig import segment
from gopeer import GoPeer
from helpers import core_stat, free_udp_port
from pyroles import play_send, run_with_deadline, wait_process

FAST = dict(nodelay=1, interval=10, resend=2, nc=1)
KCP_WASK, KCP_WINS = 83, 84
HANG_GUARD = 5.0  # seconds: a bound against hangs, not a speed requirement


def _raw_udp(port=0):
    sock = gsocket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", port))
    return sock


@pytest.mark.parametrize("connect", ["dial", "create_connection"])
def test_nothing_listening_is_refused_by_the_icmp_error(connect):
    port = free_udp_port()
    started = time.monotonic()
    with pytest.raises(ConnectionRefusedError) as info:
        if connect == "dial":
            gkcp.dial(("127.0.0.1", port), **FAST)
        else:
            gkcp.create_connection(("127.0.0.1", port), timeout=30, **FAST)
    # The exception's type is the proof that the ICMP error ended the connect:
    # running out of connect_timeout (10 s, 30 s) raises socket.timeout.
    elapsed = time.monotonic() - started
    assert elapsed < HANG_GUARD
    assert str(port) in str(info.value)
    print("%s refused in %.2f ms" % (connect, elapsed * 1000))


def test_a_gkcp_listener_answers_and_accepts_in_the_same_round_trip():
    with gkcp.listen(("127.0.0.1", 0), **FAST) as listener:
        expired_before = core_stat("UnprovenExpired")
        client = gkcp.dial(listener.getsockname(), **FAST)
        # the dial answered the listener's own ask: accepted with nothing
        # written, as soon as the listener's reader runs
        listener.settimeout(HANG_GUARD)
        server, peer = listener.accept()
        assert peer == client.getsockname()
        server.sendall(b"server speaks first")
        client.settimeout(10)
        assert client.recv(100) == b"server speaks first"
        assert core_stat("UnprovenExpired") == expired_before
        server.close()
        client.close()


def test_wrong_key_times_out_naming_the_likely_causes():
    with gkcp.listen(("127.0.0.1", 0), crypt="aes", key=b"k" * 32, **FAST) as listener:
        started = time.monotonic()
        with pytest.raises(socket.timeout) as info:
            gkcp.dial(listener.getsockname(), crypt="aes", key=b"x" * 32, connect_timeout=1.0, **FAST)
        elapsed = time.monotonic() - started
        assert 1.0 <= elapsed < 1.0 + HANG_GUARD
        for cause in ("key", "nothing listens"):
            assert cause in str(info.value)
        assert gkcp.dial(listener.getsockname(), crypt="aes", key=b"k" * 32, **FAST).close() is None


def test_create_connection_timeout_bounds_the_connect():
    silent = _raw_udp()
    try:
        started = time.monotonic()
        with pytest.raises(socket.timeout):
            gkcp.create_connection(silent.getsockname(), timeout=0.5, **FAST)  # connect_timeout 10
        assert 0.5 <= time.monotonic() - started < 0.5 + HANG_GUARD
    finally:
        silent.close()


def test_the_dial_asks_again_when_the_first_ask_is_lost():
    port = free_udp_port()
    catcher = _raw_udp(port)
    dialing = gevent.spawn(gkcp.dial, ("127.0.0.1", port), **FAST)
    catcher.settimeout(5)
    data = catcher.recv(2048)
    assert data[4] == KCP_WASK  # the connect probe
    catcher.close()  # the first ask is "lost": nobody answered it
    with gkcp.listen(("127.0.0.1", port), **FAST) as listener:
        client = dialing.get(timeout=HANG_GUARD)  # a later ask reached the listener
        listener.settimeout(5)
        server, _ = listener.accept()
        client.sendall(b"after a re-ask")
        server.settimeout(5)
        assert server.recv(100) == b"after a re-ask"
        server.close()
        client.close()


def test_connect_timeout_0_is_the_unverified_kcp_go_dial():
    silent = _raw_udp()
    try:
        started = time.monotonic()
        client = gkcp.dial(silent.getsockname(), connect_timeout=0, **FAST)
        assert time.monotonic() - started < 1.0  # returned without waiting for any answer
        with gevent.Timeout(5):
            announce = silent.recv(2048)
        assert announce[4] == KCP_WINS and len(announce) == 24  # kcp-go-style announce, no ask
        client.close()
    finally:
        silent.close()


def test_any_valid_packet_proves_the_peer():
    # a peer that never answers a window ask with a window tell, but sends
    # a well-formed segment of the conversation, is alive all the same
    peer = _raw_udp()
    try:
        dialing = gevent.spawn(gkcp.dial, peer.getsockname(), conv=0x1234, **FAST)
        with gevent.Timeout(5):
            _, address = peer.recvfrom(2048)
        peer.sendto(segment(0x1234, 82, sn=7), address)  # an ACK of nothing
        dialing.get(timeout=HANG_GUARD).close()
    finally:
        peer.close()


# -- against the live kcp-go peer -------------------------------------------------


@pytest.mark.parametrize("crypt,fec", [(None, False), ("aes", False), (None, True), ("salsa20", True)])
def test_a_silent_kcp_go_server_is_connected_to(go_peer_bin, crypt, fec):
    # kcp-go's sink writes nothing first: only its answer to the window ask
    # proves it; interval 100 (kcp-go's default) bounds when it answers
    n = 200_000
    key = b"s" * 32
    settings = dict(crypt=crypt, key=key if crypt else None)
    shards = dict(ds=10, ps=3) if fec else {}
    py_shards = dict(data_shards=10, parity_shards=3) if fec else {}
    with GoPeer("listen", role="sink", nbytes=n, binary=go_peer_bin, timeout=30, interval=100,
                **settings, **shards) as srv:
        started = time.monotonic()
        session = gkcp.dial(srv.address, crypt=crypt, key=key if crypt else None, **py_shards)
        connect_s = time.monotonic() - started
        with session:
            result = run_with_deadline(play_send, session, n, 3)
        wait_process(srv, 20)
    assert result["peer"] == result["sent"] == srv.result["hex"]
    assert connect_s < HANG_GUARD, connect_s
    print("connected to a silent kcp-go server (interval 100) in %.1f ms" % (connect_s * 1000))


@pytest.mark.parametrize("go,py", [
    (dict(crypt="aes", key=b"g" * 32), dict(crypt="aes", key=b"p" * 32)),
    (dict(crypt="aes", key=b"g" * 32), dict(crypt="twofish", key=b"g" * 32)),
    (dict(crypt="aes", key=b"g" * 32), {}),
    ({}, dict(crypt="aes", key=b"g" * 32)),
], ids=["other-key", "other-cipher", "crypt-only-there", "crypt-only-here"])
def test_a_kcp_go_server_with_other_crypt_settings_times_out(go_peer_bin, go, py):
    with GoPeer("listen", role="sink", nbytes=1000, binary=go_peer_bin, timeout=30, **go) as srv:
        started = time.monotonic()
        with pytest.raises(socket.timeout) as info:
            gkcp.dial(srv.address, connect_timeout=1.5, **py)
        assert 1.5 <= time.monotonic() - started < 1.5 + HANG_GUARD
        assert "key" in str(info.value)


def test_an_fec_shape_mismatch_still_connects_to_kcp_go(go_peer_bin):
    # kcp-go (and gkcp) read FEC data packets whatever their own FEC
    # setting, so only crypt settings can make a dial go unanswered
    n = 100_000
    with GoPeer("listen", role="sink", nbytes=n, binary=go_peer_bin, timeout=30, ds=4, ps=2) as srv:
        with gkcp.dial(srv.address, data_shards=10, parity_shards=3) as session:
            result = run_with_deadline(play_send, session, n, 5)
        wait_process(srv, 20)
    assert result["peer"] == result["sent"] == srv.result["hex"]


def test_a_kcp_go_server_that_exited_refuses(go_peer_bin):
    with GoPeer("listen", role="sink", nbytes=1000, binary=go_peer_bin, timeout=30) as srv:
        address = srv.address
    started = time.monotonic()
    with pytest.raises(ConnectionRefusedError):
        gkcp.dial(address)
    assert time.monotonic() - started < HANG_GUARD
