"""The busy_poll option (gkcp._busypoll): the C poll it spins on, the
adaptive window of a hub talking to a live kcp-go echo, the window falling to
0 once the hub idles, the watchers stopping with the last busy socket, and
the option's range."""
import errno
import hashlib
import os
import socket

import gevent
import pytest

import gkcp
from gkcp._core import ffi, lib
from gkcp.engine import get_engine
from conftest import wait_until
from gopeer import GoPeer
from pyroles import recv_exactly

FAST = dict(nodelay=1, interval=10, resend=2, nc=1)


@pytest.fixture
def udp_pair():
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    a.bind(("127.0.0.1", 0))
    b.connect(a.getsockname())
    yield a, b
    a.close()
    b.close()


def test_the_spin_reports_a_waiting_datagram_and_leaves_it_there(udp_pair):
    a, b = udp_pair
    fds = ffi.new("int[]", [b.fileno(), a.fileno()])
    assert lib.gk_spin_readable(fds, 2, 200) == 0  # nothing came within 200 µs
    b.send(b"ping")
    assert lib.gk_spin_readable(fds, 2, 200) == 1
    assert lib.gk_spin_readable(fds, 2, 0) == 1  # a zero budget still polls once
    assert a.recv(10) == b"ping"  # not consumed by the poll
    assert lib.gk_spin_readable(fds, 2, 0) == 0


def test_the_spin_refuses_bad_arguments(udp_pair):
    fds = ffi.new("int[]", [udp_pair[0].fileno()] * (lib.GK_SPIN_MAX_FDS + 1))
    for nfds, budget in [(0, 10), (-1, 10), (lib.GK_SPIN_MAX_FDS + 1, 10), (1, lib.GK_SPIN_MAX_US + 1)]:
        assert lib.gk_spin_readable(fds, nfds, budget) == -errno.EINVAL
    assert lib.gk_spin_readable(fds, lib.GK_SPIN_MAX_FDS, 0) == 0


@pytest.mark.parametrize("value", [0.0101, 1, -1e-6, float("nan"), float("inf")])
def test_the_option_is_bounded(value):
    with pytest.raises(ValueError, match="busy_poll"):
        gkcp.dial(("127.0.0.1", 9), busy_poll=value)
    with pytest.raises(TypeError, match="busy_poll"):
        gkcp.listen(("127.0.0.1", 0), busy_poll="0.0001")


def test_round_trips_with_kcp_go_spin_and_an_idle_hub_stops_spinning(go_peer_bin):
    busy = get_engine()._busy_poll
    assert busy is None or not busy._prepare.active  # no other test left a busy socket open
    payload = os.urandom(64)
    with GoPeer("listen", role="echo", nbytes=0, binary=go_peer_bin, timeout=60, interval=10) as srv:
        client = gkcp.dial(srv.address, busy_poll=0.0002, **FAST)
        client.settimeout(10)
        busy = get_engine()._busy_poll
        assert busy._prepare.active and busy._check.active
        digest = hashlib.sha256()
        for _ in range(300):
            client.sendall(payload)
            digest.update(recv_exactly(client, len(payload)))
        assert digest.digest() == hashlib.sha256(payload * 300).digest()
        # kcp-go answers within tens of µs: the hub's sleeps were short, the
        # window grew, and spins caught datagrams
        assert busy.hits > 100, (busy.hits, busy.misses)
        for _ in range(8):
            gevent.sleep(0.01)  # sleeps far longer than the limit: the window halves each time
        assert busy.window_us == 0
        spins = busy.hits + busy.misses
        gevent.sleep(0.05)
        assert busy.hits + busy.misses == spins  # an idle hub does not spin
        client.close()
    assert not busy._prepare.active and not busy._check.active and busy._nfds == 0


def test_a_busy_poll_listener_serves_and_closes_cleanly():
    with gkcp.listen(("127.0.0.1", 0), busy_poll=0.0001, **FAST) as listener:
        listener.settimeout(10)
        client = gkcp.dial(listener.getsockname(), busy_poll=0.0001, **FAST)
        client.sendall(b"hello")
        server, _ = listener.accept()
        server.settimeout(10)
        assert recv_exactly(server, 5) == b"hello"
        assert get_engine()._busy_poll._nfds == 2
        server.close()
        client.close()
    # the client's socket once its closed session's linger ends
    assert wait_until(lambda: get_engine()._busy_poll._nfds == 0)


def test_a_loop_that_cannot_tell_it_is_about_to_sleep_is_refused():
    from gkcp._busypoll import BusyPoll
    with pytest.raises(NotImplementedError, match="libev"):
        BusyPoll(object())
