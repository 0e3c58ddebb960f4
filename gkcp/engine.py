"""The fixed set of greenlets that drives the C core.

Per gevent hub there is one :class:`Engine`: one C engine (every session of
the hub, in one timer heap) and one *updater* greenlet that flushes whichever
sessions are due, then sleeps until the next deadline.  Per UDP socket there is
one Endpoint (gkcp._endpoint) whose *reader*, a callback of the hub's watcher
on the socket, lets C drain the socket and then has the engine :meth:`deliver
<Engine.deliver>` the batch's events (readable, writable, new session,
ended) to Python: the engine sets a session's :class:`Wakeups`, offers new
sessions to their socket's ``on_accept`` and releases sockets whose last
lingering session is gone; then it resumes the greenlets those events woke,
one switch each, before the hub goes back to its loop.  It knows no session,
listener or option type.  Python therefore runs once per batch and once per
application call, never once per packet.
"""
from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional

import gevent
from gevent.hub import get_hub
from gevent.monkey import get_original

from ._blocking import Signal, WakeQueue
from ._busypoll import BusyPoll
from ._log import log
from ._core import ffi, lib

if TYPE_CHECKING:
    from ._endpoint import Endpoint

__all__ = ["Engine", "Wakeups", "get_engine", "now_ms", "thread_ident"]

# The OS thread's identity and storage even after gevent.monkey.patch_thread(),
# which turns threading.get_ident/local into per-greenlet ones: an engine
# belongs to a hub, and a hub to an OS thread, not to a greenlet.
thread_ident = get_original("_thread", "get_ident")
_thread_local = get_original("_thread", "_local")

_EVENTS_PER_CALL = 256

# Read once: an attribute of the cffi lib costs as much as a small C call,
# and dispatch runs on every wake-up of the reader.
_EV_READABLE = lib.GK_EV_READ | lib.GK_EV_DEAD
_EV_WRITABLE = lib.GK_EV_WRITE | lib.GK_EV_DEAD
_EV_DEAD = lib.GK_EV_DEAD
_EV_ACCEPT = lib.GK_EV_ACCEPT
_EV_FREED = lib.GK_EV_FREED
_take_events = lib.gk_engine_take_events
_engine_flush = lib.gk_engine_flush
_pending = lib.gk_engine_pending
_PENDING_WAKE = lib.GK_PENDING_WAKE
_PENDING_EVENTS = lib.GK_PENDING_EVENTS


def now_ms(_monotonic: Any = time.monotonic) -> int:
    """The core's clock: milliseconds, wrapping at 2**32 (only differences matter)."""
    return int(_monotonic() * 1000) & 0xFFFFFFFF


def _key(ptr: Any) -> int:
    return int(ffi.cast("uintptr_t", ptr))


class Wakeups:
    """The signals a session's blocked greenlets wait on, set by the engine
    from the C events (registered with the engine from a session's creation
    to its close; it refers to no session)."""

    __slots__ = ("readable", "writable", "on_dead")

    def __init__(self, queue: WakeQueue, on_dead: Optional[Callable[[], None]] = None) -> None:
        self.readable = Signal(queue)
        self.writable = Signal(queue)
        self.on_dead = on_dead  # called once when the core ended the session (GK_EV_DEAD)


class Engine:
    """The C engine of one gevent hub, its updater greenlet and event dispatch."""

    def __init__(self, hub: Any) -> None:
        self.hub = hub
        self.thread_id = thread_ident()
        self._c = ffi.gc(lib.gk_engine_new(os.urandom(48)), lib.gk_engine_free)
        if self._c == ffi.NULL:
            raise MemoryError("gk_engine_new failed")
        self._events = ffi.new("gk_event[]", _EVENTS_PER_CALL)
        # id -> a session's Wakeups.  A plain dict (a WeakValueDictionary's get
        # is a Python call per event): Wakeups holds no reference to its
        # session, so a session the application dropped is still freed by GC,
        # and its close (or __del__) removes the entry.
        self._sessions: Dict[int, Wakeups] = {}
        self._lingering: Dict[int, "Endpoint"] = {}  # id -> endpoint a closed session still uses
        self._endpoints: Dict[int, "Endpoint"] = {}  # udp pointer -> Endpoint
        self.wake_queue = WakeQueue(hub)  # resumes the greenlets the sessions' Signals woke
        # the updater's: a Signal's timed wait ends without raising (an Event's
        # throws gevent.Timeout into the greenlet at every interval)
        self._wake = Signal(self.wake_queue)
        self._updater: Optional[gevent.Greenlet] = None
        self._busy_poll: Optional[BusyPoll] = None  # made for the first socket with busy_poll > 0
        self._flush_scheduled = False
        self.scratch = ffi.new("uint8_t[]", 1 << 16)

    @property
    def c(self) -> Any:
        return self._c

    def check_thread(self) -> None:
        if thread_ident() != self.thread_id:
            raise RuntimeError("a gkcp object is bound to the gevent hub of the thread that created it; "
                               "use it from that thread")

    def scratch_buffer(self, size: int) -> Any:
        if size > len(self.scratch):
            self.scratch = ffi.new("uint8_t[]", size)
        return self.scratch

    # -- registration ----------------------------------------------------------

    def add_session(self, sess_id: int, wakeups: Wakeups) -> None:
        self._sessions[sess_id] = wakeups
        self.poke()

    def forget_session(self, sess_id: int, endpoint: "Endpoint", lingering: bool) -> None:
        """A session was closed by the application: either freed already, or
        lingering in C until its data is acknowledged (GK_EV_FREED follows)."""
        self._sessions.pop(sess_id, None)
        if lingering:
            self._lingering[sess_id] = endpoint
            self.poke()
        else:
            endpoint.release()

    def add_endpoint(self, endpoint: "Endpoint") -> None:
        self._endpoints[_key(endpoint.c)] = endpoint
        if endpoint.busy_poll_us:
            if self._busy_poll is None:
                try:
                    self._busy_poll = BusyPoll(self.hub.loop)
                except NotImplementedError as exc:
                    endpoint.busy_poll_us = 0  # the socket works as without the option
                    log.warning("busy_poll ignored: %s", exc)
            if self._busy_poll is not None:
                self._busy_poll.add(endpoint.sock.fileno(), endpoint.busy_poll_us)
        self.poke()

    def remove_endpoint(self, endpoint: "Endpoint") -> None:
        """Before the endpoint's socket is closed."""
        self._endpoints.pop(_key(endpoint.c), None)
        if endpoint.busy_poll_us and self._busy_poll is not None:
            self._busy_poll.discard(endpoint.sock.fileno())

    # -- the updater -----------------------------------------------------------------

    def wake_if_needed(self) -> None:
        """After a C call that may have made a session due sooner, or read
        a socket (a send after a long busy spell: gk_sess_send)."""
        pending = _pending(self._c)
        if pending & _PENDING_WAKE:
            self._wake.set()
        if pending & _PENDING_EVENTS:
            for endpoint in list(self._endpoints.values()):
                endpoint.take_read_error()
            self.flush_after_wakeups(self.dispatch())

    def poke(self) -> None:
        """Something may be due sooner than the updater thinks: wake it."""
        if self._updater is None or self._updater.dead:
            self._updater = gevent.spawn(self._run_updater)
        else:
            self._wake.set()

    def _run_updater(self) -> None:
        # Runs while any socket is open, so that gevent.wait() can return
        # once the application has closed everything.
        while self._endpoints:
            self._wake.clear()
            wait = lib.gk_engine_update(self._c, now_ms())
            self.dispatch()
            self._wake.wait(wait / 1000.0)

    # -- input and output ------------------------------------------------------------

    def deliver(self, read_at: int) -> None:
        """In the hub, after gk_udp_read_held read a batch at read_at
        (now_ms()): hand out its events, resume the greenlets they woke
        (each runs until it blocks again, so a reply it sends carries the
        batch's ACKs), then flush what the input still holds (the ACKs
        nobody's reply carried)."""
        queue = self.wake_queue
        queue.hold()
        try:
            woke = self.dispatch()
        finally:
            queue.drain()
        # Nobody woken: no time passed in Python since the read.
        _engine_flush(self._c, now_ms() if woke else read_at)
        self.wake_if_needed()

    def flush_after_wakeups(self, woke: bool) -> None:
        """After C input outside the reader (a send that read the socket,
        gk_sess_send): flush what it left waiting (ACKs mostly) at once if
        nobody was woken, else from a hub callback that runs after the
        woken greenlets (gevent runs callbacks in order), so that their
        replies carry those ACKs."""
        if not woke:
            _engine_flush(self._c, now_ms())
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            self.hub.loop.run_callback(self._flush_queued)

    def _flush_queued(self) -> None:
        self._flush_scheduled = False
        _engine_flush(self._c, now_ms())

    # -- events --------------------------------------------------------------------

    def dispatch(self) -> bool:
        """Hand every pending C event to its Python object; True if any
        session was notified (a greenlet may have been woken)."""
        events = self._events
        sessions = self._sessions
        woke = False
        while True:
            n = _take_events(self._c, events, _EVENTS_PER_CALL)
            for i in range(n):
                ev = events[i]
                flags = ev.flags
                if flags & _EV_FREED:
                    endpoint = self._lingering.pop(ev.id, None)
                    if endpoint is not None:
                        endpoint.release()
                    continue
                if flags & _EV_ACCEPT:
                    endpoint = self._endpoints.get(_key(lib.gk_sess_udp(ev.sess)))
                    if endpoint is not None and endpoint.on_accept is not None:
                        endpoint.on_accept(ev.sess)
                    else:
                        lib.gk_sess_close(ev.sess, now_ms(), 0)
                        continue
                wakeups = sessions.get(ev.id)
                if wakeups is not None:
                    if flags & _EV_READABLE:
                        wakeups.readable.set()
                    if flags & _EV_WRITABLE:
                        wakeups.writable.set()
                    if flags & _EV_DEAD and wakeups.on_dead is not None:
                        wakeups.on_dead()
                    woke = True
            if n < _EVENTS_PER_CALL:
                return woke


_per_thread = _thread_local()


def get_engine() -> Engine:
    """The engine of the current thread's gevent hub (created on first use)."""
    hub = get_hub()
    engine = getattr(_per_thread, "engine", None)
    if engine is None or engine.hub is not hub:
        engine = Engine(hub)
        _per_thread.engine = engine
    return engine
