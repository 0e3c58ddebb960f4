"""How a blocked greenlet is resumed: Signal and WakeQueue (gkcp._blocking)
on their own, and the reader that drains the queue inside its own watcher
callback, so that a round trip costs one switch into each waiting greenlet
and none into a reader greenlet or an Event's hub callback."""
import os
import time

import gevent
import greenlet
import pytest
from gevent.hub import get_hub

import gkcp
from gkcp._blocking import Signal, WakeQueue
from pyroles import recv_exactly

FAST = dict(nodelay=1, interval=10, resend=2, nc=1, sndwnd=1024, rcvwnd=1024)


@pytest.fixture
def queue():
    return WakeQueue(get_hub())


def test_wait_returns_at_once_when_set(queue):
    signal = Signal(queue)
    signal.set()
    assert signal.is_set() and signal.wait(0) and signal.wait()
    signal.clear()
    assert not signal.is_set()


def test_wait_times_out_and_leaves_no_waiter(queue):
    signal = Signal(queue)
    start = time.monotonic()
    assert signal.wait(0.05) is False
    assert time.monotonic() - start >= 0.04
    assert signal._waiters == []
    assert signal.wait(0) is False


def test_a_timeout_after_a_busy_spell_is_measured_from_now(queue):
    """The loop's cached time is stale after the greenlet kept the CPU: a
    timer started from it would end the wait early (a timeout too soon)."""
    signal = Signal(queue)
    for _ in range(5):
        busy_until = time.monotonic() + 0.06
        while time.monotonic() < busy_until:
            pass
        start = time.monotonic()
        assert signal.wait(0.05) is False
        assert time.monotonic() - start >= 0.045


def test_set_from_a_greenlet_wakes_every_waiter_in_order(queue):
    signal = Signal(queue)
    woken = []

    def waiter(name):
        assert signal.wait(5)
        woken.append(name)

    waiters = [gevent.spawn(waiter, name) for name in "abc"]
    gevent.sleep(0)  # all three block
    assert len(signal._waiters) == 3
    gevent.spawn(signal.set).join()
    gevent.joinall(waiters, timeout=5)
    assert woken == ["a", "b", "c"]


def test_set_in_the_hub_while_held_waits_for_drain(queue):
    """The reader holds the queue while it dispatches: the waiters run when
    it drains, not from a hub callback of their own."""
    signal = Signal(queue)
    woken = []
    waiter = gevent.spawn(lambda: woken.append(signal.wait(5)))
    gevent.sleep(0)

    def reader():  # runs in the hub, as a watcher callback does
        queue.hold()
        signal.set()
        assert woken == []  # not resumed yet
        queue.drain()
        assert woken == [True]  # resumed inside drain, before it returned

    get_hub().loop.run_callback(reader)
    waiter.join(5)
    assert woken == [True]


def test_a_killed_waiter_is_forgotten_and_a_late_wake_is_ignored(queue):
    signal = Signal(queue)
    waiter = gevent.spawn(signal.wait)
    gevent.sleep(0)
    queue.hold()
    signal.set()  # the waiter is queued ...
    waiter.kill()  # ... and killed before the queue drains
    assert waiter.dead
    queue.drain()  # switching to its ended wait must do nothing
    assert signal._waiters == []


def test_a_timed_out_waiter_is_not_resumed_in_its_next_wait(queue):
    """A wake queued for a wait that already timed out must not resume the
    greenlet inside a later, unrelated wait."""
    first, second = Signal(queue), Signal(queue)
    results = []

    def waiter():
        results.append(first.wait(0.01))
        results.append(second.wait(0.2))

    g = gevent.spawn(waiter)
    gevent.sleep(0)
    queue.hold()
    first.set()  # queued but not drained: the 10 ms timer resumes the greenlet first
    gevent.sleep(0.05)
    assert results == [True]  # the timer fired, but the flag was set: a wake, not a timeout
    queue.drain()  # the stale wake: second.wait must go on waiting
    g.join(5)
    assert results == [True, False]


def _switches_into(target_filter, action):
    count = 0

    def trace(event, args):
        nonlocal count
        if event in ("switch", "throw") and target_filter(args[1]):
            count += 1

    old = greenlet.settrace(trace)
    try:
        action()
    finally:
        greenlet.settrace(old)
    return count


def test_a_round_trip_switches_once_into_each_waiting_greenlet():
    """Per echoed message: the hub switches into the server's greenlet once
    and into the client's once (the reader runs in the hub and resumes them
    itself): 400 switches for 200 round trips.  Through a reader greenlet and
    gevent Events it took twice as many (801): hub -> reader, then the
    Event's hub callback -> waiter, for every wake-up."""
    rounds = 200
    with gkcp.listen(("127.0.0.1", 0), **FAST) as listener:
        def echo():
            session, _ = listener.accept()
            with session:
                while True:
                    data = session.recv(65536)
                    if not data:
                        return
                    session.sendall(data)

        server = gevent.spawn(echo)
        try:
            with gkcp.dial(listener.getsockname(), **FAST) as client:
                client.settimeout(30)
                for _ in range(20):  # past the handshake
                    client.sendall(b"w" * 64)
                    assert recv_exactly(client, 64) == b"w" * 64
                hub = get_hub()

                def round_trips():
                    for i in range(rounds):
                        message = os.urandom(64)
                        client.sendall(message)
                        assert recv_exactly(client, 64) == message, i

                switches = _switches_into(lambda g: g is not hub, round_trips)
        finally:
            server.kill()
    # 2 per round trip, plus the few wake-ups of the 10 ms updater
    assert switches <= 2.5 * rounds, switches
