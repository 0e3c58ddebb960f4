"""Timeouts and cooperative waits with the socket module's semantics, shared
by Session and Listener: one set of checks for settimeout, one wait loop for
every blocking call (recv, send, sendall, accept), and the flag those calls
wait on (Signal) with the queue that resumes them (WakeQueue)."""
from __future__ import annotations

import errno
import math
import operator
import socket
import time
from typing import Any, Callable, List, Optional, TypeVar

from gevent.hub import Waiter

__all__ = ["Blocking", "Signal", "WakeQueue", "closed_error", "parse_timeout"]

T = TypeVar("T")

_NS_LIMIT = 2 ** 63  # CPython keeps a socket timeout as int64 nanoseconds (and takes a C long flag)


def parse_timeout(timeout: Any) -> Optional[float]:
    """A socket.settimeout argument as CPython reads it: the same errors
    and messages (ValueError for NaN or a negative value, OverflowError
    beyond int64 nanoseconds, TypeError for a non-number), stored as whole
    nanoseconds rounded up.  One deliberate difference: a bool is a
    TypeError (settimeout(True) is almost always a mix-up with setblocking)."""
    if timeout is None:
        return None
    if isinstance(timeout, bool):
        raise TypeError("timeout must be a number of seconds or None, not bool")
    if isinstance(timeout, float):
        if math.isnan(timeout):
            raise ValueError("Invalid value NaN (not a number)")
        scaled = timeout * 1e9
        if not -_NS_LIMIT <= scaled < _NS_LIMIT:
            raise OverflowError("timestamp out of range for platform time_t")
        ns = math.ceil(scaled) if scaled >= 0 else math.floor(scaled)
    else:
        try:
            seconds = operator.index(timeout)
        except TypeError:
            raise TypeError("'%s' object cannot be interpreted as an integer" % type(timeout).__name__) from None
        ns = seconds * 10 ** 9
        if not -_NS_LIMIT <= ns < _NS_LIMIT:
            raise OverflowError("timestamp too large to convert to C _PyTime_t")
    if ns < 0:
        raise ValueError("Timeout value out of range")
    return float(ns // 10 ** 9) if ns % 10 ** 9 == 0 else ns / 1e9


def closed_error() -> OSError:
    """What a socket call raises after close()."""
    return OSError(errno.EBADF, "Bad file descriptor (session closed)")


class WakeQueue:
    """Greenlets to resume, in the order their Signals were set.

    gevent's Event resumes a waiter through a hub callback per Event and its
    link list; this queue resumes each with one switch.  The engine's reader
    holds the queue while it hands out a batch's events and drains it
    before it returns to the loop, so a greenlet blocked in recv() runs
    inside the same hub iteration that read its data, and its reply leaves
    before the input's ACKs are flushed (they ride in it).  Set from any
    other greenlet, the queue drains from one hub callback."""

    __slots__ = ("hub", "_waiters", "_held", "_scheduled")

    def __init__(self, hub: Any) -> None:
        self.hub = hub
        self._waiters: List[Waiter] = []
        self._held = False
        self._scheduled = False

    def add(self, waiters: List[Waiter]) -> None:
        self._waiters.extend(waiters)
        if not self._held and not self._scheduled:
            self._scheduled = True
            self.hub.loop.run_callback(self._drain_scheduled)

    def hold(self) -> None:
        """The caller (in the hub) drains the queue itself, soon."""
        self._held = True

    def drain(self) -> None:
        """In the hub: resume every queued greenlet in turn; each runs until
        it blocks again (a Waiter whose wait already ended ignores it)."""
        self._held = False
        waiters = self._waiters
        while waiters:
            ready = waiters[:]
            del waiters[:]
            for waiter in ready:
                waiter.switch(True)

    def _drain_scheduled(self) -> None:
        self._scheduled = False
        self.drain()


class Signal:
    """A flag blocked greenlets wait on, with gevent.event.Event's set,
    clear, is_set and wait; set() hands the waiters to a WakeQueue."""

    __slots__ = ("_flag", "_waiters", "_queue")

    def __init__(self, queue: WakeQueue) -> None:
        self._flag = False
        self._waiters: List[Waiter] = []
        self._queue = queue

    def is_set(self) -> bool:
        return self._flag

    def set(self) -> None:
        self._flag = True
        if self._waiters:
            self._queue.add(self._waiters)
            self._waiters = []

    def clear(self) -> None:
        self._flag = False

    def wait(self, timeout: Optional[float] = None) -> bool:
        """True once set (at once if it is), False if timeout seconds passed first."""
        if self._flag:
            return True
        hub = self._queue.hub
        waiter = Waiter(hub)
        self._waiters.append(waiter)
        timer = None
        if timeout is not None:
            timer = hub.loop.timer(max(timeout, 0.0))
            # update: measured from now, not from the loop's cached time,
            # which is stale after a busy spell (the wait would end early)
            timer.start(waiter.switch, False, update=True)
        try:
            woken = waiter.get()
        finally:
            if timer is not None:
                timer.close()
            if waiter in self._waiters:  # timed out, or the greenlet was killed
                self._waiters.remove(waiter)
        return bool(woken) or self._flag


def _no_deadline() -> Optional[float]:
    return None


class Blocking:
    """settimeout/gettimeout/setblocking/getblocking as on a socket, and the
    loop every blocking call runs: try, and while nothing is ready wait for
    an event up to the timeout (per call) and an optional absolute deadline."""

    _timeout: Optional[float]

    def settimeout(self, timeout: Optional[float]) -> None:
        self._timeout = parse_timeout(timeout)

    def gettimeout(self) -> Optional[float]:
        return self._timeout

    def setblocking(self, flag: bool) -> None:
        try:
            blocking = operator.index(flag)
        except TypeError:
            raise TypeError("'%s' object cannot be interpreted as an integer" % type(flag).__name__) from None
        if not -_NS_LIMIT <= blocking < _NS_LIMIT:
            raise OverflowError("Python int too large to convert to C long")
        self._timeout = None if blocking else 0.0

    def getblocking(self) -> bool:
        return self._timeout != 0.0

    def _block_until(self, attempt: Callable[[], Optional[T]], event: Any,
                     deadline: Callable[[], Optional[float]] = _no_deadline, tried: bool = False) -> T:
        """attempt()'s first result other than None.  Raises BlockingIOError
        in non-blocking mode and socket.timeout once the timeout or the
        deadline (a time.time() value, read again after each wake-up) passes.
        tried: the caller has just made the first attempt itself (and found
        nothing), so the loop starts by waiting."""
        timeout = self._timeout
        end = None
        while True:
            if tried:
                tried = False
            else:
                result = attempt()
                if result is not None:
                    return result
            # Only other greenlets set the event and none ran since attempt()
            # found nothing, so clearing it now cannot lose a wake-up.
            event.clear()
            if timeout == 0.0:
                raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")
            if end is None and timeout is not None:
                end = time.monotonic() + timeout
            limit = None if end is None else end - time.monotonic()
            at = deadline()
            if at is not None:
                left = at - time.time()
                limit = left if limit is None else min(limit, left)
            if (limit is not None and limit <= 0) or not event.wait(limit):
                raise socket.timeout("timed out")
