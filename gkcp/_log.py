"""gkcp's library logger, ``logging.getLogger("gkcp")``.

A NullHandler is installed, so nothing is printed unless the application
configures logging.  Records are made per session or per interval, never per
packet: why a session ended (INFO; DEBUG for the idle timeout the
application asked for), listener drops counted by the C core (a WARNING at
most once per :attr:`CounterWatch.interval`), handler errors in the servers
(ERROR with the traceback)."""
from __future__ import annotations

import logging
import time
from typing import Any, Callable, Dict, Tuple

from ._core import lib

log = logging.getLogger("gkcp")
log.addHandler(logging.NullHandler())

_END_REASONS: Dict[int, Tuple[int, str]] = {
    lib.GK_ST_DEADLINK: (logging.INFO, "dead link (a segment reached dead_link transmissions)"),
    lib.GK_ST_IDLE: (logging.DEBUG, "idle_timeout (nothing heard from the peer)"),
    lib.GK_ST_KEEPALIVE: (logging.INFO, "keepalive timeout (the peer answered no window ask)"),
    lib.GK_ST_RESET: (logging.INFO, "reset (the peer no longer knows the conversation)"),
    lib.GK_ST_REPLACED: (logging.INFO, "replaced (the peer's address started a new conversation)"),
}


def session_ended(status: int, conv: int, peer: Any) -> None:
    """Log why a session ended; called once per session, when the core
    reports the end."""
    level, reason = _END_REASONS.get(status, (logging.INFO, "status %d" % status))
    if log.isEnabledFor(level):
        log.log(level, "session conv=%d peer=%s ended: %s", conv, peer, reason)


class CounterWatch:
    """Warns when process-wide SNMP counters of refused work grow.

    :meth:`check` (called per accepted session or accept call, never per
    packet) compares the counters with the last warning's and logs one
    WARNING naming those that grew, at most once per :attr:`interval`
    seconds: growth within the interval is reported with the next one."""

    #: seconds between two warnings
    interval = 10.0

    #: counter -> what its growth means for the operator
    COUNTERS: Dict[str, str] = {
        "AcceptDrops": "sessions dropped: the accept backlog was full (accept faster or raise backlog)",
        "UnprovenEvicted": "unproven sessions evicted: more new peers than the listener's pool holds "
                           "(a flood of spoofed or silent peers?)",
        "InReplays": "authentic datagrams seen before (replays or network duplicates)",
    }

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._quiet_until = 0.0
        self._seen = self._counts()

    @staticmethod
    def _counts() -> Tuple[int, ...]:
        stats = lib.gk_stats
        return tuple(getattr(stats, name) for name in CounterWatch.COUNTERS)

    def reset(self) -> None:
        """Forget the growth so far; the next growth is reported at once."""
        self._seen = self._counts()
        self._quiet_until = 0.0

    def check(self) -> None:
        counts = self._counts()
        if counts == self._seen:
            return
        now = self._clock()
        if now < self._quiet_until:
            return
        self._quiet_until = now + self.interval
        grown = ["%s +%d: %s" % (name, new - old, meaning)
                 for (name, meaning), new, old in zip(self.COUNTERS.items(), counts, self._seen) if new > old]
        self._seen = counts
        log.warning("listeners refused work: %s", "; ".join(grown))


counter_watch = CounterWatch()
