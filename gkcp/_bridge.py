"""Routed connections as real sockets: what gkcp.monkey.patch() does when a
program connects to a routed address.

The program's own socket object is connected, by its own connect, to a
loopback TCP listener of this process (one per OS thread and address
family); the accepted far end is bridged, in two greenlets, to the route's
stream -- an smux stream over a shared KCP session (kcptun://) or a KCP
session of its own (kcp://).  So the program holds a genuine connected TCP
socket: fileno(), select/poll/selectors, MSG_PEEK, setsockopt, sendfile,
makefile, ssl wrapping, timeouts all behave as the kernel makes them.  The
route is opened (and for KCP, its server verified) *before* the loopback
connect, so connect() fails as TCP would when the server is down.

The copying is gkcp.tunnel.relay's: each direction until EOF, then a
half-close of the other side (the program's shutdown(SHUT_WR) becomes smux's
FIN, the server's FIN the program's EOF).
"""
from __future__ import annotations

import errno
import fcntl
import gc
import logging
import socket
import sys
import termios
import time
from typing import Any, Callable, Dict, Optional, Set, Tuple

import gevent
from gevent import socket as gsocket
from gevent.event import AsyncResult
from gevent.lock import Semaphore
from gevent.monkey import get_original

from .route import KcptunTarget, Target
from .session import Session as KcpSession, dial
from .tunnel.endpoints import TunnelClient
from .tunnel.relay import Traffic, relay

__all__ = ["connect", "drain", "close_all", "close_pools_except", "peer_of", "is_loopback_leg", "bridges", "traffic"]

log = logging.getLogger("gkcp.monkey")

#: bytes a bridge reads at once: a loopback read returns what is there, and larger smux writes cost less per
#: byte (an upload over kcptun:// costs the CPU of a native smux stream at 256 KiB, +25 % at 64 KiB)
COPY_SIZE = 262144
#: seconds between two looks of drain()
DRAIN_POLL = 0.05
#: seconds the loopback leg may take (it is local: only a stuck process exceeds this)
LOOPBACK_TIMEOUT = 5.0

_thread_ident = get_original("_thread", "get_ident")

# Counters of every bridge of the process (bytes up towards the routes, down back).
traffic = Traffic()
# local (host, port) of a routed program socket -> the address it connected to
_peers: Dict[Tuple[str, int], Tuple[Any, ...]] = {}
# bridge greenlet -> (the far end of the loopback leg, the route's stream)
_bridges: Dict[gevent.Greenlet, Tuple[Any, Any]] = {}
_acceptors: Dict[Tuple[int, int], "_Acceptor"] = {}
_pools: Dict[Tuple[int, str], "_KcptunPool"] = {}


class _Acceptor:
    """The loopback listener program sockets connect to; hands each accepted
    far end to the connect() waiting for it, found by the program socket's
    local address.  A connection nobody claims (another local process) is
    closed after LOOPBACK_TIMEOUT."""

    def __init__(self, family: int) -> None:
        sock = gsocket.socket(family, socket.SOCK_STREAM)
        try:
            sock.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
            sock.listen(socket.SOMAXCONN)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self.address = sock.getsockname()
        self._slots: Dict[Tuple[str, int], AsyncResult] = {}
        self._loop = gevent.spawn(self._accept_loop)

    def _slot(self, local: Tuple[str, int]) -> AsyncResult:
        slot = self._slots.get(local)
        if slot is None:
            slot = self._slots[local] = AsyncResult()
        return slot

    def _accept_loop(self) -> None:
        while True:
            try:
                far, address = self.sock.accept()
            except OSError as exc:  # EMFILE and the like: the waiting connect times out
                log.warning("gkcp routing: loopback accept failed: %s", exc)
                gevent.sleep(0.1)
                continue
            local = address[:2]
            self._slot(local).set(far)
            gevent.spawn_later(LOOPBACK_TIMEOUT, self._drop_unclaimed, local, far)

    def _drop_unclaimed(self, local: Tuple[str, int], far: Any) -> None:
        slot = self._slots.get(local)
        if slot is not None and slot.ready() and slot.value is far:
            del self._slots[local]
            far.close()

    def claim(self, local: Tuple[str, int]) -> Any:
        slot = self._slot(local)
        try:
            far = slot.get(timeout=LOOPBACK_TIMEOUT)
        except gevent.Timeout:
            raise socket.timeout("gkcp routing: the loopback leg was not accepted within %g s"
                                 % LOOPBACK_TIMEOUT) from None
        finally:
            if self._slots.get(local) is slot:
                del self._slots[local]
        return far

    def close(self) -> None:
        self._loop.kill()
        self.sock.close()
        for slot in self._slots.values():
            if slot.ready():
                slot.value.close()
        self._slots.clear()


def _acceptor(family: int) -> _Acceptor:
    key = (_thread_ident(), family)
    acceptor = _acceptors.get(key)
    if acceptor is None:
        acceptor = _acceptors[key] = _Acceptor(family)
    return acceptor


class _KcptunPool(TunnelClient):
    """kcptun's client without its TCP listener: streams round robin over
    ``conn`` KCP+smux sessions to one server, a session (re)made when its
    slot is empty, ended or expired.  Unlike kcptun's client, a session that
    cannot be made fails the connect at once (kcptun retries every second
    forever): the program's connect() gets the error."""

    def __init__(self, target: KcptunTarget) -> None:
        super().__init__(target.config)
        self._slot_lock = Semaphore()
        if target.config.autoexpire > 0:
            self.spawn(self._scavenge)

    def _wait_session(self) -> Any:
        return self._create_session()

    def open_stream(self, wait: float) -> Any:
        if not self._slot_lock.acquire(timeout=wait):
            raise socket.timeout("timed out waiting for another connect to the same route")
        try:
            # dial() verifies the server within this many seconds (self.options feeds its keywords)
            self.options["connect_timeout"] = wait
            session = self.session_for_next_stream()
            if self._refused(session):  # the server went away since: a fresh, verified session or the error
                session.close()
                session = self.session_for_next_stream()
        finally:
            self._slot_lock.release()
        return session.open_stream()

    def _refused(self, session: Any) -> bool:
        """Whether an ICMP port unreachable came back for session's KCP
        socket (its server's process is gone; smux keepalives, every
        --keepalive seconds, or any write draw it within a round trip)."""
        for mux, kcp in self._muxes:
            if mux is session and not kcp.closed:
                return bool(kcp.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == errno.ECONNREFUSED)
        return False


def _open(target: Target, wait: float) -> Any:
    """The route's stream: a new smux stream (kcptun://) or KCP session (kcp://)."""
    if isinstance(target, KcptunTarget):
        key = (_thread_ident(), target.url)
        pool = _pools.get(key)
        if pool is None:
            pool = _pools[key] = _KcptunPool(target)
        return pool.open_stream(wait)
    return dial(target.server, **dict(target.options, connect_timeout=wait))


def _labelled(exc: OSError, label: str) -> OSError:
    """exc with the route in its message, of the same type (connect_ex and
    the program's handlers see the errno and class they expect)."""
    if isinstance(exc, socket.timeout):
        return socket.timeout("%s: %s" % (label, exc))
    if exc.errno is None:
        return type(exc)("%s: %s" % (label, exc))
    return type(exc)(exc.errno, "%s: %s" % (label, exc.strerror or exc))


def connect(sock: Any, loopback_connect: Callable[[Any, Any], Any], target: Target, peer: Tuple[Any, ...],
            label: str) -> None:
    """Connect the program's socket *sock* through *target*; *peer* is what
    its getpeername() reports.  Raises what a TCP connect raises:
    ConnectionRefusedError, socket.timeout (the route's connect_timeout or
    the socket's timeout, the shorter), other OSErrors."""
    timeout = sock.gettimeout()
    wait = target.connect_timeout if not timeout else min(timeout, target.connect_timeout)
    try:
        stream = _open(target, wait)
    except OSError as exc:
        raise _labelled(exc, label) from None
    try:
        acceptor = _acceptor(sock.family)
        sock.settimeout(LOOPBACK_TIMEOUT)  # also when non-blocking: connected on return, as after a TCP connect
        try:
            loopback_connect(sock, acceptor.address)
        finally:
            sock.settimeout(timeout)
        local = sock.getsockname()[:2]
        far = acceptor.claim(local)
    except BaseException:
        stream.close()
        raise
    _peers[local] = peer
    bridge = gevent.spawn(_run_bridge, far, stream, local, label)
    _bridges[bridge] = (far, stream)
    bridge.link(lambda done: _bridges.pop(done, None))


def _run_bridge(far: Any, stream: Any, local: Tuple[str, int], label: str) -> None:
    try:
        relay(far, stream, traffic, upward_from_tcp=True, label=label, copy_size=COPY_SIZE)
    finally:
        if _peers.get(local) is not None:
            del _peers[local]


def peer_of(local: Tuple[Any, ...]) -> Optional[Tuple[Any, ...]]:
    """The routed address of the program socket bound to local, if any."""
    return _peers.get(local[:2])


def is_loopback_leg(peer: Tuple[Any, ...]) -> bool:
    return any(peer[:2] == acceptor.address[:2] for acceptor in _acceptors.values())


def bridges() -> int:
    """Routed connections being bridged now."""
    return len(_bridges)


def _unread(sock: Any) -> int:
    """Bytes waiting in a socket's receive queue (0 once closed)."""
    try:
        raw = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
    except (OSError, ValueError):
        return 0
    return int.from_bytes(raw, sys.byteorder)


def _unacknowledged() -> int:
    """KCP segments of routed connections not yet acknowledged by their servers."""
    sessions = [kcp for pool in _pools.values() for _, kcp in pool._muxes]
    sessions += [stream for _, stream in _bridges.values() if isinstance(stream, KcpSession)]
    return sum(kcp.pending() for kcp in sessions if not kcp.closed)


def drain(timeout: float) -> bool:
    """Wait, at most timeout seconds, until what programs wrote to routed
    sockets has been read by the bridges and acknowledged by the servers
    (what the kernel does for TCP after a process wrote and exited).
    Sockets nobody references any more are collected first, so their
    bridges pass the EOF on.  True if everything was delivered."""
    gc.collect()
    end = time.monotonic() + timeout
    last = None
    while True:
        state = (traffic.up, sum(_unread(far) for far, _ in _bridges.values()), _unacknowledged())
        if state[1:] == (0, 0) and state == last:  # and nothing moved since the last look
            return True
        if time.monotonic() >= end:
            return False
        last = state
        gevent.sleep(DRAIN_POLL)


def close_all() -> None:
    """End every bridge (the program's routed sockets see EOF), close the
    kcptun sessions and the loopback listeners."""
    gevent.killall(list(_bridges))
    for pool in list(_pools.values()):
        pool.close()
    _pools.clear()
    for acceptor in list(_acceptors.values()):
        acceptor.close()
    _acceptors.clear()
    _peers.clear()


def close_pools_except(urls: Set[str]) -> None:
    """Close the kcptun session pools of routes no longer in force."""
    for key in [k for k in _pools if k[1] not in urls]:
        _pools.pop(key).close()

