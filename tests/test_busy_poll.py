"""The busy_poll option (gkcp._busypoll): the C poll it spins on, the
adaptive window of a hub talking to a live kcp-go echo, the window falling to
0 once the hub idles, the watchers stopping with the last busy socket, and
the option's range."""
import errno
import hashlib
import os
import signal
import socket
import subprocess
import sys
import time

import gevent
import pytest
from gevent.hub import get_hub

import gkcp
from gkcp import _busypoll
from gkcp._core import ffi, lib
from gkcp.engine import get_engine
from conftest import wait_until
from gopeer import GoPeer
from pyroles import recv_exactly
from tunnel_harness import REPO

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
    # nothing came within 200 µs (or the test lost its CPU meanwhile, which the spin reports)
    assert lib.gk_spin_readable(fds, 2, 200) in (lib.GK_SPIN_NOTHING, lib.GK_SPIN_PREEMPTED)
    b.send(b"ping")
    assert lib.gk_spin_readable(fds, 2, 200) == lib.GK_SPIN_READABLE
    assert lib.gk_spin_readable(fds, 2, 0) == lib.GK_SPIN_READABLE  # a zero budget still polls once
    assert a.recv(10) == b"ping"  # not consumed by the poll
    assert lib.gk_spin_readable(fds, 2, 0) == lib.GK_SPIN_NOTHING


SPIN_UNTIL_PREEMPTED = """
import socket, sys
from gkcp._core import ffi, lib
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
fds = ffi.new("int[]", [s.fileno()])
print("spinning", flush=True)
for _ in range(2000):  # 10 ms spins, 20 s at most
    rc = lib.gk_spin_readable(fds, 1, 10000)
    if rc != lib.GK_SPIN_NOTHING:
        print("rc", rc, flush=True)
        break
"""


def test_a_spin_that_loses_its_cpu_says_so():
    """A child spins on a socket nothing sends to; stopped for 20 ms
    (SIGSTOP, as a busy CPU or a hypervisor would take it away), its spin
    returns GK_SPIN_PREEMPTED instead of spinning on."""
    child = subprocess.Popen([sys.executable, "-c", SPIN_UNTIL_PREEMPTED], stdout=subprocess.PIPE, text=True,
                             env=dict(os.environ, PYTHONPATH=str(REPO)))
    try:
        assert child.stdout.readline() == "spinning\n"
        time.sleep(0.05)
        child.send_signal(signal.SIGSTOP)
        time.sleep(0.02)
        child.send_signal(signal.SIGCONT)
        out, _ = child.communicate(timeout=30)
    finally:
        child.kill()
        child.wait(10)
    assert out == "rc %d\n" % lib.GK_SPIN_PREEMPTED, out


class _Clock:
    def __init__(self):
        self.ns = 10 ** 12

    def __call__(self):
        return self.ns

    def advance(self, us):
        self.ns += us * 1000


@pytest.fixture
def machine(monkeypatch, udp_pair):
    """A BusyPoll on the hub's loop (its watchers never run: the test does
    not yield) driven by hand: a fake clock and a fake spin result."""
    clock = _Clock()
    spin = {"rc": lib.GK_SPIN_NOTHING}
    monkeypatch.setattr(_busypoll, "_monotonic_ns", clock)
    monkeypatch.setattr(_busypoll, "_spin", lambda fds, n, window: spin["rc"])
    busy = _busypoll.BusyPoll(get_hub().loop)
    busy.add(udp_pair[0].fileno(), 100)

    def sleep(us, rc=lib.GK_SPIN_NOTHING):
        """One turn of the loop: about to sleep (spinning first if the
        window is open, with result rc), then woken after us µs."""
        spin["rc"] = rc
        busy._before_sleep()
        clock.advance(us)
        busy._after_poll()
        return busy.window_us

    yield busy, sleep, clock
    busy.discard(udp_pair[0].fileno())
    assert not busy._prepare.active


def test_the_window_doubles_after_short_sleeps_and_halves_to_0_after_long_ones(machine):
    busy, sleep, _ = machine
    assert [sleep(5) for _ in range(6)] == [10, 20, 40, 80, 100, 100]  # capped at busy_poll
    assert sleep(30, lib.GK_SPIN_READABLE) == 100  # a spin that caught a datagram leaves it
    assert [sleep(10_000) for _ in range(4)] == [50, 25, 12, 0]
    assert (busy.hits, busy.misses) == (1, 9)
    assert sleep(10_000) == 0 and (busy.hits, busy.misses) == (1, 9)  # a closed window does not spin


def test_a_preempted_spin_closes_the_window_for_a_second(machine):
    busy, sleep, clock = machine
    for _ in range(5):
        sleep(5)
    assert busy.window_us == 100
    assert sleep(5, lib.GK_SPIN_PREEMPTED) == 0
    assert busy.preempted == 1
    assert [sleep(5) for _ in range(3)] == [0, 0, 0]  # short sleeps do not reopen it yet
    clock.advance(1_000_000)
    assert [sleep(5) for _ in range(5)] == [10, 20, 40, 80, 100]
    assert sleep(5, lib.GK_SPIN_PREEMPTED) == 0  # again, without a caught datagram between: 2 s
    clock.advance(1_000_000)
    assert sleep(5) == 0
    clock.advance(1_000_000)
    assert [sleep(5) for _ in range(5)] == [10, 20, 40, 80, 100]
    assert sleep(5, lib.GK_SPIN_READABLE) == 100  # a caught datagram: the next pause is 1 s again
    assert sleep(5, lib.GK_SPIN_PREEMPTED) == 0
    clock.advance(1_000_000)
    assert sleep(5) == 10
    assert busy.preempted == 3


def test_no_spin_when_the_loop_has_callbacks_to_run(machine):
    busy, sleep, _ = machine
    for _ in range(5):
        sleep(5)
    get_hub().loop.run_callback(lambda: None)
    assert sleep(5) == 100 and busy.hits + busy.misses == 4  # neither spun nor counted as a sleep
    gevent.sleep(0)  # runs the callback


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
        # window grew, and spins caught datagrams (unless they lost their CPU
        # to the kcp-go process: spinning then pauses)
        assert busy.hits > 100 or busy.preempted, (busy.hits, busy.misses, busy.preempted)
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
