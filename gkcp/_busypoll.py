"""Busy polling before the hub sleeps (the ``busy_poll`` option).

A round trip on a 2-vCPU virtual machine is dominated by wake-ups, not by
work: a process asleep in ``epoll_wait`` that a datagram wakes from another
CPU resumes ~40 µs later (a plain Python UDP ping-pong between two processes
measured here: 85 µs p50 blocking, 6 µs polling, 7 µs with both on one CPU).
Go's scheduler and kernels with SO_BUSY_POLL answer this by spinning for a
short while before sleeping; so does this module, for the hub of sockets
opened with ``busy_poll`` > 0.

Just before the hub's loop would sleep (a libev prepare watcher, when no
gevent callback or watcher is pending), C polls those sockets without
sleeping for up to the current *window*; a datagram arriving meanwhile makes
the loop's own poll return at once.  The window adapts as KVM's halt polling
does: it doubles (from 10 µs up to the largest ``busy_poll`` of the hub's
sockets) after a sleep that a poll of that length would have saved, and
halves after a sleep longer than that (down to 0: an idle hub does not
spin).  What it costs: up to one window of CPU per sleep while traffic is
frequent, nothing once the hub is idle; during a spin the hub does not
notice its other watchers (timers, other descriptors) for up to the window.
"""
from __future__ import annotations

import time
from typing import Any, Dict

from ._core import ffi, lib

__all__ = ["BusyPoll", "MAX_SOCKETS"]

MAX_SOCKETS: int = lib.GK_SPIN_MAX_FDS  #: sockets polled (the most recently added ones beyond this are not)
_MIN_WINDOW_US = 10
_spin = lib.gk_spin_readable
_monotonic_ns = time.monotonic_ns


class BusyPoll:
    """The busy polling of one hub's loop, over the sockets added to it."""

    def __init__(self, loop: Any) -> None:
        """Raises NotImplementedError on a loop that does not tell whether it
        is about to sleep (gevent's libev loop does; libuv's does not)."""
        callbacks = getattr(loop, "_callbacks", None)
        if callbacks is None or not hasattr(loop, "pendingcnt"):
            raise NotImplementedError("busy_poll needs gevent's libev loop, not %s" % type(loop).__module__)
        self._loop = loop
        self._callbacks = callbacks  # gevent's queue of run_callback()s: the loop will not sleep
        self._budgets: Dict[int, int] = {}  # fd -> its busy_poll in µs
        self._fds = ffi.new("int[]", MAX_SOCKETS)
        self._nfds = 0
        self._limit_us = 0
        self.window_us = 0
        self.hits = self.misses = 0  # spins that caught a datagram / that ended with the window
        self._slept_at = 0  # monotonic ns when the loop went to sleep unspun or after a failed spin; 0: it did not
        # Not holding the loop alive (gevent.wait() still returns once nothing
        # else runs), and last of the loop's prepare watchers: after gevent's
        # own, which runs the callbacks queued with run_callback.
        self._prepare = loop.prepare(ref=False, priority=loop.MINPRI)
        self._check = loop.check(ref=False)

    def add(self, fd: int, budget_us: int) -> None:
        """Poll fd too, for up to budget_us µs (1..GK_SPIN_MAX_US)."""
        self._budgets[fd] = budget_us
        self._refresh()

    def discard(self, fd: int) -> None:
        """Stop polling fd (before it is closed); the watchers stop with the last one."""
        if self._budgets.pop(fd, None) is not None:
            self._refresh()

    def _refresh(self) -> None:
        fds = list(self._budgets)[:MAX_SOCKETS]
        for i, fd in enumerate(fds):
            self._fds[i] = fd
        self._nfds = len(fds)
        self._limit_us = max(self._budgets.values(), default=0)
        self.window_us = min(self.window_us, self._limit_us)
        if self._nfds and not self._prepare.active:
            self._prepare.start(self._before_sleep)
            self._check.start(self._after_poll)
        elif not self._nfds and self._prepare.active:
            self._prepare.stop()
            self._check.stop()
            self._slept_at = 0

    def _before_sleep(self) -> None:
        loop = self._loop
        if loop.pendingcnt or len(self._callbacks):
            self._slept_at = 0  # the loop will not sleep: nothing to save
            return
        window = self.window_us
        if window:
            if _spin(self._fds, self._nfds, window) == 1:
                self.hits += 1
                self._slept_at = 0  # a datagram came: the loop's poll returns at once
                return
            self.misses += 1
        self._slept_at = _monotonic_ns()

    def _after_poll(self) -> None:
        slept_at = self._slept_at
        if not slept_at:
            return
        self._slept_at = 0
        slept_us = (_monotonic_ns() - slept_at) // 1000
        if slept_us <= self._limit_us:  # a poll this long would have saved the sleep
            self.window_us = min(self._limit_us, max(2 * self.window_us, _MIN_WINDOW_US))
        else:
            window = self.window_us // 2
            self.window_us = window if window >= _MIN_WINDOW_US else 0
