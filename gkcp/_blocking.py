"""Timeouts and cooperative waits with the socket module's semantics, shared
by Session and Listener: one set of checks for settimeout, one wait loop for
every blocking call (recv, send, sendall, accept)."""
from __future__ import annotations

import errno
import math
import operator
import socket
import time
from typing import Any, Callable, Optional, TypeVar

from gevent.event import Event

__all__ = ["Blocking", "closed_error", "parse_timeout"]

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

    def _block_until(self, attempt: Callable[[], Optional[T]], event: Event,
                     deadline: Callable[[], Optional[float]] = _no_deadline) -> T:
        """attempt()'s first result other than None.  Raises BlockingIOError
        in non-blocking mode and socket.timeout once the timeout or the
        deadline (a time.time() value, read again after each wake-up) passes."""
        timeout = self._timeout
        end = None
        while True:
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
