"""Listener: accepts KCP sessions on one UDP socket (kcp-go's Listener).

Sessions are keyed by the peer's address, as kcp-go does; a packet from an
unknown address starts a session, which is built with the listener's options
*before* that packet is processed (kcp-go applies them only after Accept,
which can stall a client for seconds behind a zero window)."""
from __future__ import annotations

import collections
import socket
from typing import Any, Deque, Optional, Tuple


from ._addr import resolve
from ._blocking import Blocking, Signal, closed_error
from ._core import lib
from ._endpoint import Endpoint, check_udp_socket, make_crypt, open_udp_socket
from ._log import counter_watch
from .engine import get_engine
from .options import Options, make_options
from .session import Session

__all__ = ["Listener", "listen"]


class Listener(Blocking):
    """Accepts sessions like a listening socket: ``accept()`` returns
    ``(session, address)`` and honours ``settimeout``.

    A datagram from a new address starts an *unproven* session that
    acknowledges nothing and asks the peer for its window; only when the
    peer's answer comes back (one round trip) is the session counted, put in
    the backlog and handed to ``accept()``.  At most ``backlog`` sessions
    wait to be accepted: one proven while the backlog is full is freed and
    counted in AcceptDrops (nothing was acknowledged, so its peer resends and
    is served once there is room).  Unproven sessions are bounded per socket
    (the oldest evicted: UnprovenEvicted) and expire after 4 s
    (UnprovenExpired); see docs/reliability.md, "How the bounds work"."""

    def __init__(self, sock: socket.socket, options: Options, crypt: Tuple[Any, bool]) -> None:
        self._engine = get_engine()
        self._options = options
        # sessions not yet accepted, with their C session (valid while the session is open)
        self._pending: Deque[Tuple[Session, Any]] = collections.deque()
        self._ready = Signal(self._engine.wake_queue)
        self._timeout: Optional[float] = socket.getdefaulttimeout()
        self._endpoint: Optional[Endpoint] = Endpoint(self._engine, sock, True, options, crypt,
                                                      on_accept=self._on_accept)
        self._address = sock.getsockname()

    def _on_accept(self, csess: Any) -> None:
        assert self._endpoint is not None
        counter_watch.check()
        self._endpoint.acquire()
        self._pending.append((Session(self._engine, self._endpoint, csess, self._options), csess))
        self._ready.set()

    def accept(self) -> Tuple[Session, Tuple[Any, ...]]:
        """The next new session and its peer address; blocks (cooperatively)
        up to the timeout, then raises socket.timeout."""

        def attempt() -> Optional[Tuple[Session, Tuple[Any, ...]]]:
            if self._endpoint is None:
                raise closed_error()
            self._engine.check_thread()
            counter_watch.check()
            while self._pending:
                session, csess = self._pending.popleft()
                if not session.closed:
                    lib.gk_sess_accepted(csess)
                    return session, session.getpeername()
            return None

        return self._block_until(attempt, self._ready)

    def getsockname(self) -> Tuple[Any, ...]:
        if self._endpoint is None:
            raise closed_error()
        return self._address

    @property
    def options(self) -> Options:
        return self._options

    @property
    def closed(self) -> bool:
        return self._endpoint is None

    def close(self) -> None:
        """Idempotent.  Stops accepting and closes sessions not yet accepted;
        accepted sessions keep working (the UDP socket stays open until the
        last of them is closed), as with TCP."""
        endpoint = self._endpoint
        if endpoint is None:
            return
        self._engine.check_thread()
        self._endpoint = None
        endpoint.stop_listening()
        while self._pending:
            self._pending.popleft()[0].close()
        self._ready.set()
        endpoint.release()

    def __enter__(self) -> "Listener":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return "<gkcp.Listener %s%s>" % (self._address, " closed" if self.closed else "")


def listen(address: Any, *, sock: Optional[socket.socket] = None, **options: Any) -> Listener:
    """A Listener on address ((host, port) or 'host:port'), or on an existing
    UDP socket (kcp-go's ServeConn).  Options: see gkcp.Options."""
    opts = make_options(**options)
    if sock is None:
        family, sockaddr = resolve(address, passive=True)
    else:
        check_udp_socket(sock)
    crypt = make_crypt(opts)
    if sock is None:  # a cipher dropped on failure is freed with its last reference
        sock = open_udp_socket(family, opts, bind_to=sockaddr)
    return Listener(sock, opts, crypt)
