"""One UDP socket of the engine: :class:`Endpoint` (its C state and reader
greenlet) and the factories that build what sessions and listeners put on
it: the socket itself, its cipher and the C configuration of its sessions."""
from __future__ import annotations

import math
import socket
from typing import Any, Callable, Optional, Tuple

from gevent import socket as gsocket
from gevent.monkey import get_original

from ._core import ffi, lib
from .engine import Engine, now_ms
from .options import Options, duration_ms

__all__ = ["Endpoint", "c_config", "check_udp_socket", "make_crypt", "open_udp_socket"]

# What a caller may hand to dial/listen as sock=: a stdlib socket (even when
# gevent.monkey has replaced socket.socket) or a gevent one.
_SOCKET_TYPES = (get_original("socket", "socket"), gsocket.socket)

_BATCHES_PER_WAKEUP = 8
_read_held = lib.gk_udp_read_held  # bound once: a cffi lib attribute costs as much as a small C call


def c_config(options: Options) -> Any:
    cfg = ffi.new("gk_config *")
    for name in ("mtu", "sndwnd", "rcvwnd", "nodelay", "interval", "resend", "nc",
                 "data_shards", "parity_shards", "dead_link"):
        setattr(cfg, name, getattr(options, name))
    cfg.stream = int(bool(options.stream))
    cfg.ack_nodelay = int(bool(options.ack_nodelay))
    cfg.write_delay = int(bool(options.write_delay))
    cfg.idle_timeout_ms = 0 if options.idle_timeout is None else max(1, duration_ms(options.idle_timeout))
    if options.keepalive:
        cfg.keepalive_ms = max(1, duration_ms(options.keepalive))
        cfg.keepalive_timeout_ms = max(1, duration_ms(options.keepalive_timeout))
    return cfg


class Endpoint:
    """One UDP socket, its C state and its reader (a hub watcher callback).

    Reference counted: the Listener (or dialing Session) holds one reference and
    every session on the socket one more, including closed sessions that are
    still retransmitting their last data.  The socket is closed when the count
    reaches zero.
    """

    def __init__(self, engine: Engine, sock: socket.socket, listening: bool, options: Options,
                 crypt: Tuple[Any, bool], on_accept: Optional[Callable[[Any], None]] = None) -> None:
        """crypt: make_crypt(options), made before the socket so that a bad
        key fails without leaving a socket open."""
        self.engine = engine
        self.sock = sock
        self.crypt, self._owns_crypt = crypt
        self.on_accept = on_accept
        self.refs = 1
        self._error = 0  # errno of the last failed socket read (SO_ERROR), 0 if none
        self.on_error: Optional[Callable[[], None]] = None  # called after a read failed (a dial waits on it)
        sock.setblocking(False)
        crypt_ptr = self.crypt.ptr if self.crypt is not None else ffi.NULL
        self._c = lib.gk_udp_new(engine.c, sock.fileno(), int(listening), c_config(options),
                                 crypt_ptr, options.batch, options.backlog)
        if self._c == ffi.NULL:
            raise MemoryError("gk_udp_new failed")
        if not options.mmsg:
            lib.gk_udp_set_mmsg(self._c, 0)
        self._io = engine.hub.loop.io(sock.fileno(), 1)
        self.busy_poll_us = math.ceil(options.busy_poll * 1e6)  # 0: off
        engine.add_endpoint(self)
        self._io.start(self._on_readable)

    @property
    def c(self) -> Any:
        return self._c

    def acquire(self) -> None:
        self.refs += 1

    def release(self) -> None:
        self.refs -= 1
        if self.refs == 0:
            self._close()

    def take_error(self) -> int:
        """The pending socket error (an errno, 0 if none), cleared as
        getsockopt(SOL_SOCKET, SO_ERROR) clears it."""
        error, self._error = self._error, 0
        return error

    def stop_listening(self) -> None:
        self.on_accept = None
        if self._c is not None:
            lib.gk_udp_stop_listening(self._c)

    def _on_readable(self) -> None:
        """The reader: the watcher's callback, in the hub.  It reads at most
        _BATCHES_PER_WAKEUP batches, so a busy socket cannot starve the
        rest of the loop; the level-triggered watcher calls again while
        datagrams are left."""
        c = self._c
        if c is None:
            return
        now = now_ms()
        rc = _read_held(c, now, _BATCHES_PER_WAKEUP)
        self.engine.deliver(now)
        if rc < 0:
            self._read_failed(rc)

    def _read_failed(self, rc: int) -> None:
        # e.g. ECONNREFUSED: an ICMP port unreachable on a connected
        # socket.  The kernel cleared it by reporting it, so waiting again
        # cannot spin; keep it for SO_ERROR.
        self._error = -rc
        if self.on_error is not None:
            self.on_error()

    def take_read_error(self) -> None:
        """An error a read inside a send met (gk_sess_send drains a socket
        nobody read for an interval), handled as the reader would."""
        if self._c is not None:
            rc = lib.gk_udp_take_error(self._c)
            if rc < 0:
                self._read_failed(rc)

    def _close(self) -> None:
        if self._c is None:
            return
        engine = self.engine
        engine.remove_endpoint(self)
        lib.gk_udp_free(self._c)
        self._c = None
        if self._owns_crypt:
            self.crypt.close()
        # Closing the watcher first means libev stops watching the descriptor
        # before it is closed (and its number reused); the reader may be
        # running (a greenlet it resumed closed the last session), and finds
        # _c gone when it resumes.
        self._io.close()
        self.sock.close()


def open_udp_socket(family: int, options: Options, bind_to: Any = None,
                    connect_to: Any = None) -> socket.socket:
    """A UDP socket set up as gkcp needs it: large buffers (the OS default
    loses most packets at large windows), optional SO_REUSEPORT, bound, and
    connected for a dialed session: the kernel then drops datagrams from any
    other address and reports ICMP errors (ECONNREFUSED)."""
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if options.sockbuf:
            for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                sock.setsockopt(socket.SOL_SOCKET, opt, options.sockbuf)
        if options.reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if bind_to is not None:
            sock.bind(bind_to)
        if connect_to is not None:
            sock.connect(connect_to)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def check_udp_socket(sock: Any, family: Optional[int] = None) -> None:
    """sock, given to dial or listen, is an open UDP socket (of family, if given)."""
    if not isinstance(sock, _SOCKET_TYPES):
        raise TypeError("sock must be a UDP socket.socket, not %s" % type(sock).__name__)
    if sock.fileno() < 0:
        raise ValueError("sock is closed")
    if sock.type != socket.SOCK_DGRAM:
        raise ValueError("sock must be a UDP (SOCK_DGRAM) socket")
    if family is not None and sock.family != family:
        raise ValueError("sock is %s but the address is %s" % (socket.AddressFamily(sock.family).name,
                                                                socket.AddressFamily(family).name))


def make_crypt(options: Options) -> Tuple[Any, bool]:
    """(BlockCrypt or None, whether the endpoint owns it and must close it)."""
    cipher = options.cipher()
    if cipher is None:
        return None, False
    if isinstance(cipher, str):
        from .crypt import new_crypt
        return new_crypt(cipher, bytes(options.key)), True
    return cipher, False
