"""A listener under spoofed, malformed and replayed traffic.

A session reaches accept() only once its peer has answered the listener's
window ask (see GK_UNPROVEN_* in csrc/sess.h); unproven sessions are bounded
and expire.  With crypt, a replayed datagram is dropped (InReplays) before it
can reach any session.  Real kcp-go and gkcp peers are still accepted.

    python tests/test_listener_bounds.py latency   # accept latency figures
"""
import os
import random
import socket
import struct
import sys
import time

import gevent
import pytest
from gevent import socket as gsocket

import gkcp
from gkcp._core import lib

from conftest import wait_until
from corerig import PUSH, WASK, WINS, CoreRig, recv_all, segment
from gopeer import GoPeer, stream_digest
from pyroles import play_sink, recv_exactly, snmp_delta, wait_process

LIFETIME = lib.GK_UNPROVEN_LIFETIME_MS / 1000.0
FAST = dict(nodelay=1, interval=10, resend=2, nc=1)


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def from_many_ports(addr, count, payload, first_port=12000, batch=100):
    """Send payload(i) once from each of count distinct local ports
    (127.0.0.1), a batch of sockets at a time, yielding between batches so
    the listener's reader keeps up.  Returns the ports used."""
    ports, port = [], first_port
    while len(ports) < count:
        socks = []
        while len(socks) < batch and len(ports) < count:
            assert port < 65536, "ran out of free ports"
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                s.close()
                port += 1
                continue
            s.sendto(payload(len(ports)), addr)
            socks.append(s)
            ports.append(port)
            port += 1
        for s in socks:
            s.close()
        gevent.sleep(0.002)
    return ports


class AcceptCounter:
    """The README's accept loop, counting what it gets."""

    def __init__(self, listener):
        self.sessions = []
        self._greenlet = gevent.spawn(self._run, listener)

    def _run(self, listener):
        listener.settimeout(None)
        while True:
            session, _ = listener.accept()
            self.sessions.append(session)

    def stop(self):
        self._greenlet.kill()
        for s in self.sessions:
            s.close()


# ---------------------------------------------------------------- spoofed sources

@pytest.mark.parametrize("options", [{}, dict(data_shards=10, parity_shards=3)], ids=["default", "fec"])
def test_spoofed_sources_never_reach_accept_and_cost_little(options):
    # with FEC, every unproven session also holds an encoder for its asks
    n = 20_000
    with gkcp.listen(("127.0.0.1", 0), **options) as listener:
        endpoint = listener._endpoint
        counter = AcceptCounter(listener)
        before, rss_before = gkcp.snmp(), rss_kib()
        from_many_ports(listener.getsockname(), n,
                        lambda i: segment(0x10000 + i, PUSH, data=b"spoofed %05d" % i))
        assert wait_until(lambda: snmp_delta(before)["InPkts"] >= n, 10)
        gevent.sleep(0.2)
        grown_mb = (rss_kib() - rss_before) / 1024
        during = lib.gk_udp_unproven(endpoint.c)
        sent = snmp_delta(before)["OutPkts"]
        assert wait_until(lambda: lib.gk_udp_sessions(endpoint.c) == 0, LIFETIME + 3)
        delta = snmp_delta(before)
        counter.stop()
        print("20,000 spoofed sources (%s): RSS +%.1f MB, %d unproven at once, %d accepted, "
              "%d datagrams sent back, counters %s" % (
                  options or "default options", grown_mb, during, len(counter.sessions), sent,
                  {k: delta[k] for k in ("UnprovenEvicted", "UnprovenExpired", "PassiveOpens")}))
        # (CurrEstab is process-wide: earlier tests' lingering sessions may end meanwhile)
        assert counter.sessions == [] and delta["PassiveOpens"] == 0 and delta["CurrEstab"] <= 0
        assert 0 < during <= lib.GK_UNPROVEN_MAX
        assert grown_mb < 50
        # every source was answered by one window ask, then evicted or expired
        assert delta["UnprovenEvicted"] + delta["UnprovenExpired"] == n
        assert delta["UnprovenExpired"] <= lib.GK_UNPROVEN_MAX
        assert lib.gk_udp_unproven(endpoint.c) == 0


def test_malformed_datagrams_from_many_ports_create_nothing():
    rng = random.Random(5)
    conv = 0xC0FFEE
    ok = segment(conv, PUSH, data=b"x" * 10)
    shapes = [
        lambda: b"",
        lambda: os.urandom(rng.randrange(1, 24)),
        lambda: os.urandom(rng.randrange(24, 1400)),
        lambda: ok[:-1],                                              # truncated payload
        lambda: ok + os.urandom(rng.randrange(1, 24)),                # trailing bytes
        lambda: ok + segment(conv + 1, PUSH, sn=1),                   # conv changes mid-datagram
        lambda: ok + segment(conv, 99, sn=1),                         # unknown cmd later on
        lambda: segment(conv, PUSH)[:20] + struct.pack("<I", 10**6),  # absurd len
    ]
    n = 5_000
    with gkcp.listen(("127.0.0.1", 0)) as listener:
        endpoint = listener._endpoint
        before = gkcp.snmp()
        from_many_ports(listener.getsockname(), n, lambda i: shapes[i % len(shapes)](), first_port=40000)
        assert wait_until(lambda: snmp_delta(before)["InPkts"] >= n, 10)
        gevent.sleep(0.1)
        delta = snmp_delta(before)
        # no session, not even an unproven one: nothing was answered either
        assert lib.gk_udp_sessions(endpoint.c) == 0 and lib.gk_udp_unproven(endpoint.c) == 0
        assert delta["UnprovenEvicted"] == delta["UnprovenExpired"] == 0
        assert delta["InErrs"] + delta["KCPInErrors"] == n
        listener.settimeout(0)
        with pytest.raises(BlockingIOError):
            listener.accept()


def test_one_spoofed_datagram_gets_three_small_asks_and_is_freed():
    """What a spoofed source can make the listener send: one 24-byte window
    ask per datagram, two re-asks, nothing else (no ACK, so nothing is ever
    acknowledged for it); then the session is freed.  Clock-driven."""
    with CoreRig(start=1000) as rig:
        lis = rig.udp(listening=True, ack_nodelay=1)
        victim = rig.sink()
        victim.sendto(segment(9, PUSH, data=b"a" * 100), rig.address(lis))
        rig.step(0)
        replies = recv_all(victim)
        for _ in range(20):
            rig.step(250)
            replies += recv_all(victim)
        assert [(len(r), r[4]) for r in replies] == [(24, WASK)] * 3
        assert all(struct.unpack_from("<I", r, 16)[0] == 0 for r in replies)   # una 0
        assert rig.accepted == [] and lib.gk_udp_sessions(lis) == 0


def test_answer_proves_the_session_and_its_first_data_is_kept():
    """A raw peer that answers the window ask with a window tell is accepted,
    and the data it sent before (never acknowledged until then) is read."""
    with CoreRig(start=5) as rig:
        lis = rig.udp(listening=True)
        peer = rig.sink()
        peer.sendto(segment(3, PUSH, data=b"first flight"), rig.address(lis))
        rig.step(0)
        assert [r[4] for r in recv_all(peer)] == [WASK] and rig.accepted == []
        peer.sendto(segment(3, WINS, wnd=32), rig.address(lis))
        rig.step(1)
        assert len(rig.accepted) == 1 and lib.gk_udp_unproven(lis) == 0
        buf = bytearray(100)
        from gkcp._core import ffi
        n = lib.gk_sess_recv(rig.accepted[0], ffi.from_buffer(buf), 100, rig.now)
        assert bytes(buf[:n]) == b"first flight"
        rig.run(3)
        acks = [r for r in recv_all(peer) if r[4] == 82]
        assert acks and struct.unpack_from("<I", acks[0], 16)[0] == 1   # una now covers sn 0


def test_unproven_pool_evicts_the_oldest():
    with CoreRig(start=0) as rig:
        lis = rig.udp(listening=True)
        before = lib.gk_stats.UnprovenEvicted
        addr = rig.address(lis)
        from_many_ports(addr, lib.GK_UNPROVEN_MAX + 10, lambda i: segment(i, PUSH), first_port=30000)
        for _ in range(10):
            rig.step(1)
        assert lib.gk_udp_unproven(lis) == lib.GK_UNPROVEN_MAX
        assert lib.gk_stats.UnprovenEvicted - before == 10


# ------------------------------------------------------------------- real peers

def _serve_one(listener, reply=None):
    listener.settimeout(20)
    session, _ = listener.accept()
    accepted = time.monotonic()
    return session, accepted


def test_kcp_go_dialer_that_writes_first_is_accepted(go_peer_bin):
    n = 200_000
    with gkcp.listen(("127.0.0.1", 0), **FAST) as listener:
        def serve():
            session, _ = _serve_one(listener)
            with session:
                return play_sink(session, n)
        server = gevent.spawn(serve)
        with GoPeer("dial", addr=listener.getsockname(), role="send", nbytes=n, seed=3,
                    binary=go_peer_bin, timeout=30, mode="fast3") as cli:
            server.join(30)
            assert server.successful(), server.exception
            wait_process(cli, 15)
        assert server.value["hex"] == cli.result["sent"] == cli.result["peer"] == stream_digest(3, n)


@pytest.mark.parametrize("interval", [10, 100])
def test_kcp_go_dialer_that_waits_for_a_reply_is_accepted(go_peer_bin, interval):
    """kcp-go writes one small message and waits for the echo: it sends
    nothing else until the listener's window ask, which it answers on its
    next flush."""
    with gkcp.listen(("127.0.0.1", 0), **FAST) as listener:
        def serve():
            session, _ = _serve_one(listener)
            session.settimeout(20)
            with session:
                for _ in range(3):
                    session.sendall(recv_exactly(session, 64))
        server = gevent.spawn(serve)
        with GoPeer("dial", addr=listener.getsockname(), role="rtt", count=3, size=64,
                    binary=go_peer_bin, timeout=30, nodelay=1, interval=interval, resend=2, nc=1) as cli:
            server.join(30)
            assert server.successful(), server.exception
            wait_process(cli, 15)
        first_us = cli.result["p99_us"]
        print("kcp-go (interval %d) first round trip incl. accept: %.1f ms" % (interval, first_us / 1000))


@pytest.mark.parametrize("announce", [True, False])
def test_gkcp_dialer_is_accepted(announce):
    """announce=True: the server speaks first; announce=False: the client
    does."""
    with gkcp.listen(("127.0.0.1", 0), **FAST) as listener:
        def serve():
            session, _ = _serve_one(listener)
            session.settimeout(10)
            with session:
                if announce:
                    session.sendall(b"server first")
                    return recv_exactly(session, 5)
                got = recv_exactly(session, 12)
                session.sendall(b"reply")
                return got
        server = gevent.spawn(serve)
        start = time.monotonic()
        with gkcp.dial(listener.getsockname(), announce=announce, **FAST) as client:
            client.settimeout(10)
            if announce:
                assert recv_exactly(client, 12) == b"server first"
                client.sendall(b"hello")
            else:
                client.sendall(b"client first")
                assert recv_exactly(client, 5) == b"reply"
            server.join(10)
            assert server.successful(), server.exception
            assert server.value == (b"hello" if announce else b"client first")
        print("gkcp dialer (announce=%s): exchange incl. accept %.1f ms" % (
            announce, (time.monotonic() - start) * 1000))


# ------------------------------------------------------------------- replays

class CaptureRelay:
    """A greenlet forwarding between one client and a server through its own
    socket, keeping a copy of every client datagram: what an on-path
    attacker records."""

    def __init__(self, server_addr):
        self.server_addr = server_addr
        self.sock = gsocket.socket(gsocket.AF_INET, gsocket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.client_addr = None
        self.captured = []
        self._greenlet = gevent.spawn(self._run)

    @property
    def address(self):
        return self.sock.getsockname()

    def _run(self):
        while True:
            data, src = self.sock.recvfrom(2048)
            if src == self.server_addr:
                if self.client_addr is not None:
                    self.sock.sendto(data, self.client_addr)
            else:
                self.client_addr = src
                self.captured.append(data)
                self.sock.sendto(data, self.server_addr)

    def close(self):
        self._greenlet.kill()
        self.sock.close()


def test_replayed_datagrams_never_open_sessions_and_are_counted():
    key = os.urandom(16)
    with gkcp.listen(("127.0.0.1", 0), crypt="aes", key=key, **FAST) as listener:
        endpoint = listener._endpoint
        relay = CaptureRelay(listener.getsockname())
        try:
            with gkcp.dial(relay.address, crypt="aes", key=key, **FAST) as client:
                client.sendall(b"captured on the way")
                server, _ = _serve_one(listener)
                server.settimeout(10)
                assert recv_exactly(server, 19) == b"captured on the way"
                captured = list(relay.captured)
                # the client's announce, its data (and its answer to the window ask)
                assert len(captured) >= 2

                # replayed from 5,000 other addresses: nothing opens
                before = gkcp.snmp()
                ports = from_many_ports(listener.getsockname(), 5_000,
                                        lambda i: captured[i % len(captured)], first_port=20000)
                assert wait_until(lambda: snmp_delta(before)["InReplays"] >= len(ports), 10)
                gevent.sleep(0.1)
                delta = snmp_delta(before)
                assert delta["InReplays"] == len(ports)
                assert delta["PassiveOpens"] == 0 and lib.gk_udp_unproven(endpoint.c) == 0
                assert lib.gk_udp_sessions(endpoint.c) == 1
                listener.settimeout(0)
                with pytest.raises(BlockingIOError):
                    listener.accept()

                # replayed to the original address: dropped, the session goes on
                before = gkcp.snmp()
                for data in captured:
                    relay.sock.sendto(data, listener.getsockname())
                assert wait_until(lambda: snmp_delta(before)["InReplays"] == len(captured), 5)
                client.sendall(b"still working")
                assert recv_exactly(server, 13) == b"still working"

                # forged and tampered packets are still caught by the CRC
                before = gkcp.snmp()
                wrong = gkcp.crypt.new_crypt("aes", os.urandom(16))
                tampered = bytearray(captured[1])
                tampered[30] ^= 1
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as forger:
                    forger.sendto(wrong.seal(bytes(20) + segment(1, PUSH, data=b"forged")),
                                  listener.getsockname())
                    forger.sendto(bytes(tampered), listener.getsockname())
                    assert wait_until(lambda: snmp_delta(before)["InCsumErrors"] == 2, 5)
                assert snmp_delta(before)["InReplays"] == 0
                assert lib.gk_udp_sessions(endpoint.c) == 1
                server.close()
        finally:
            relay.close()


# ---------------------------------------------------------------- figures

def accept_latency_figures(go_peer_bin: str, rounds: int = 5) -> None:
    """Median first round trip (accept included) of kcp-go and gkcp dialers
    against a gkcp listener: run with the core before and after the proof
    round trip to compare."""
    import statistics
    for interval in (10, 100):
        samples = []
        for _ in range(rounds):
            with gkcp.listen(("127.0.0.1", 0), **FAST) as listener:
                def serve():
                    session, _ = _serve_one(listener)
                    with session:
                        session.sendall(recv_exactly(session, 64))
                server = gevent.spawn(serve)
                with GoPeer("dial", addr=listener.getsockname(), role="rtt", count=1, size=64,
                            binary=go_peer_bin, timeout=30, nodelay=1, interval=interval,
                            resend=2, nc=1) as cli:
                    server.join(30)
                    wait_process(cli, 15)
                samples.append(cli.result["p50_us"] / 1000)
        print("kcp-go dialer, interval %3d: first round trip incl. accept, median of %d: %.1f ms %s"
              % (interval, rounds, statistics.median(samples), ["%.1f" % s for s in samples]))
    for interval in (10, 100):
        samples = []
        for _ in range(rounds):
            opts = dict(FAST, interval=interval)
            with gkcp.listen(("127.0.0.1", 0), **opts) as listener:
                start = time.monotonic()
                client = gkcp.dial(listener.getsockname(), announce=False, **opts)
                client.sendall(b"x")
                _serve_one(listener)[0].close()
                samples.append((time.monotonic() - start) * 1000)
                client.close()
        print("gkcp dialer,  interval %3d: dial to accept, median of %d: %.1f ms %s"
              % (interval, rounds, statistics.median(samples), ["%.1f" % s for s in samples]))


if __name__ == "__main__":
    if sys.argv[1:] == ["latency"]:
        import gopeer
        accept_latency_figures(gopeer.build_peer())
