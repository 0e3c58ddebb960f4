"""A dialed session talks to the address it dialed and to nothing else.

Before the fix, the first datagram to arrive on a dialing socket, from any
source and with any conv, became the session's peer: one 24-byte packet from
a third address sent before the server's first reply redirected every later
send to the attacker.  Now other sources are dropped and counted
(InWrongPeer), with gkcp's own socket, a socket the caller passed in, and a
connected one (whose ICMP errors reach recv as ECONNREFUSED)."""
import errno
import resource
import socket

import gevent
import pytest

import gkcp
from gkcp._core import lib

from conftest import wait_until
from corerig import PUSH, WINS, CoreRig, recv_all, segment
from pyroles import recv_exactly, snmp_delta

FAST = dict(nodelay=1, interval=10, resend=2, nc=1)


def exchange(listener, client, data):
    """client sends data (it fits the windows, so before accept), the
    accepted session gets it intact and replies."""
    client.settimeout(10)
    client.sendall(data)
    listener.settimeout(10)
    server, _ = listener.accept()
    with server:
        server.settimeout(10)
        assert recv_exactly(server, len(data)) == data
        server.sendall(b"reply")
        assert recv_exactly(client, 5) == b"reply"


def _connected(sock):
    try:
        sock.getpeername()
        return True
    except OSError:
        return False


def test_core_drops_and_counts_other_sources():
    with CoreRig(start=0) as rig:
        server, attacker = rig.sink(), rig.sink()
        dialer = rig.udp(listening=False)
        sess = rig.dial(dialer, server.getsockname(), conv=5, announce=False)
        before = lib.gk_stats.InWrongPeer
        attacker.sendto(segment(5, WINS), rig.address(dialer))
        rig.step(1)
        assert lib.gk_stats.InWrongPeer == before + 1
        assert lib.gk_sess_send(sess, b"hi", 2, rig.now) == 2
        rig.step(1)
        assert recv_all(attacker) == [] and len(recv_all(server)) >= 1


def _own_socket(kind):
    if kind == "gkcp's":
        return None
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return sock


@pytest.mark.parametrize("sock_kind", ["gkcp's", "caller's unconnected"])
@pytest.mark.parametrize("conv_kind", ["wrong conv", "right conv"])
def test_packet_from_a_third_address_cannot_redirect_the_session(sock_kind, conv_kind):
    data = bytes(range(256)) * 80   # fits the windows: sent before accept
    with gkcp.listen(("127.0.0.1", 0), **FAST) as listener, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as attacker:
        attacker.bind(("127.0.0.1", 0))
        attacker.setblocking(False)
        before = gkcp.snmp()
        # announce=False: the server has not heard of the client yet, so
        # nothing from the server can arrive before the attacker's packet
        client = gkcp.dial(listener.getsockname(), sock=_own_socket(sock_kind), announce=False, **FAST)
        conv = client.conv if conv_kind == "right conv" else client.conv ^ 0x5A5A5A5A
        target = client.getsockname()
        attacker.sendto(segment(conv, WINS), target)
        attacker.sendto(segment(conv, PUSH, data=b"injected"), target)
        # a connected socket (dial's own) has the kernel drop them; the core
        # drops and counts them on any other
        expected = 0 if _connected(client._endpoint.sock) else 2
        assert wait_until(lambda: snmp_delta(before)["InWrongPeer"] == expected, 5)
        with client:
            exchange(listener, client, data)
            assert client.getpeername() == listener.getsockname()
        gevent.sleep(0.1)
        assert recv_all(attacker) == []
        assert snmp_delta(before)["InWrongPeer"] == expected


def test_connected_socket_sends_and_receives():
    data = b"over a connected socket " * 800
    for mmsg in (True, False):
        with gkcp.listen(("127.0.0.1", 0), **FAST) as listener:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.connect(listener.getsockname())
            with gkcp.dial(listener.getsockname(), sock=sock, mmsg=mmsg, **FAST) as client:
                exchange(listener, client, data)


def test_port_unreachable_on_a_connected_socket_is_reported_once_without_spinning():
    closed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    closed.bind(("127.0.0.1", 0))
    addr = closed.getsockname()
    closed.close()                               # nobody listens there: ICMP port unreachable
    for mmsg in (1, 0):
        with CoreRig(start=0) as rig:
            dialer = rig.udp(listening=False)
            lib.gk_udp_set_mmsg(dialer, mmsg)
            rig.socks[dialer].connect(addr)
            rig.dial(dialer, addr)               # announces itself: the kernel answers with ICMP
            results = []
            for _ in range(50):
                rc = lib.gk_udp_read(dialer, rig.now, 8)
                results.append(rc)
                if rc < 0:
                    break
                gevent.sleep(0.01)
            assert results[-1] == -errno.ECONNREFUSED
            assert lib.gk_udp_read(dialer, rig.now, 8) == 0   # reported once, then quiet


def test_gevent_reader_does_not_spin_on_a_refused_connected_socket():
    closed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    closed.bind(("127.0.0.1", 0))
    addr = closed.getsockname()
    closed.close()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect(addr)
    with gkcp.dial(addr, sock=sock, connect_timeout=0, **FAST) as client:
        client.sendall(b"to nobody")
        gevent.sleep(0.2)
        used = resource.getrusage(resource.RUSAGE_SELF)
        gevent.sleep(1.0)
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (after.ru_utime - used.ru_utime) + (after.ru_stime - used.ru_stime)
        # retransmitting every few tens of ms costs milliseconds; a reader
        # woken again and again by the error would burn the whole second
        assert cpu < 0.5, cpu
