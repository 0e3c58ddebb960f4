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
sockets) after a wait -- the failed spin and the sleep after it -- that a
poll of that length would have saved, and halves after a longer wait (down
to 0: an idle hub does not spin).  On a busy machine a spinner delays the
peer it waits for, where a sleeper is woken ahead of the busy work
(measured under two CPU-bound processes: RTT p50 43 µs sleeping, 150-170
µs spinning with a fixed window): the waits then grow past the limit and
close the window, and a spin that loses its CPU (C sees two polls far
apart) stops spinning for a second, twice as long for each further
preemption without a successful spin in between (up to 64 s).  What it
costs: up to one window of CPU per wait while traffic is frequent, nothing
once the hub is idle; during a spin the hub does not notice its other
watchers (timers, other descriptors) for up to the window.
"""
from __future__ import annotations

import time
from typing import Any, Dict

from ._core import ffi, lib

__all__ = ["BusyPoll", "MAX_SOCKETS"]

MAX_SOCKETS: int = lib.GK_SPIN_MAX_FDS  #: sockets polled (the most recently added ones beyond this are not)
_MIN_WINDOW_US = 10
# After a spin lost its CPU: no spinning for 1 s, doubled for each further
# preemption without a spin that caught a datagram in between, up to 64 s
# (on a machine that stays busy, spinning is retried ever more rarely).
_PAUSE_NS = 1_000_000_000
_PAUSE_DOUBLINGS_MAX = 6
_READABLE, _PREEMPTED = lib.GK_SPIN_READABLE, lib.GK_SPIN_PREEMPTED
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
        self.hits = self.misses = 0  # spins that caught a datagram / that ended without one
        self.preempted = 0  # spins that lost their CPU
        self._preempted_in_a_row = 0  # preemptions since the last spin that caught a datagram
        self._paused_until = 0  # monotonic ns: the window stays 0 until then (after a preempted spin)
        self._waiting_since = 0  # monotonic ns when the loop began to wait (spin, then sleep); 0: it did not
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
            self._waiting_since = 0

    def _before_sleep(self) -> None:
        loop = self._loop
        if loop.pendingcnt or len(self._callbacks):
            self._waiting_since = 0  # the loop will not sleep: nothing to save
            return
        window = self.window_us
        began = _monotonic_ns()
        if window:
            rc = _spin(self._fds, self._nfds, window)
            if rc == _READABLE:
                self.hits += 1
                self._preempted_in_a_row = 0
                self._waiting_since = 0  # a datagram came: the loop's poll returns at once
                return
            self.misses += 1
            if rc == _PREEMPTED:
                self.preempted += 1
                self.window_us = 0
                pause = _PAUSE_NS << min(self._preempted_in_a_row, _PAUSE_DOUBLINGS_MAX)
                self._preempted_in_a_row += 1
                self._paused_until = _monotonic_ns() + pause
        self._waiting_since = began

    def _after_poll(self) -> None:
        since = self._waiting_since
        if not since:
            return
        self._waiting_since = 0
        now = _monotonic_ns()
        if now < self._paused_until:
            return
        # the whole wait, the failed spin included: when it is no longer
        # than the limit, a longer spin would have saved the sleep; when it
        # is, spinning was wasted (also when the peer answers late because
        # spinners keep it off a busy CPU)
        if (now - since) // 1000 <= self._limit_us:
            self.window_us = min(self._limit_us, max(2 * self.window_us, _MIN_WINDOW_US))
        else:
            window = self.window_us // 2
            self.window_us = window if window >= _MIN_WINDOW_US else 0
