"""Session: a KCP conversation with the interface of a connected socket.

Blocking calls cooperate with gevent: a greenlet waiting in ``recv`` or
``send`` yields to the hub until the reader or updater greenlet signals that
data arrived or the send window opened.  Timeouts follow the socket module
(``settimeout``; ``socket.timeout`` is ``TimeoutError``) and Go's net.Conn
(absolute deadlines).
"""
from __future__ import annotations

import errno
import functools
import io
import math
import operator
import itertools
import os
import socket
import time
from typing import Any, Dict, Optional, Tuple

from ._addr import from_sockaddr, parse_address, resolve, to_sockaddr
from ._blocking import Blocking, Signal, closed_error, parse_timeout
from ._core import ffi, lib
from ._endpoint import Endpoint, c_config, check_udp_socket, make_crypt, open_udp_socket
from ._log import session_ended
from .engine import Engine, Wakeups, get_engine, now_ms, thread_ident as _thread_ident
from .options import Options, duration_ms, int_argument, make_options

__all__ = ["Session"]

_INFO_FIELDS = [name for name, _ in ffi.typeof("gk_kcp_info").fields]
# Bytes one recv/send call moves at most, as a stream socket may return
# fewer: bounds the engine's shared receive buffer (a KCP message, at most
# 255 fragments of an MTU, always fits whole).
_MAX_IO = 1 << 20
_SENDFILE_PIECE = 1 << 18  # read and queued per step of sendfile()
# bound once: a cffi lib attribute costs as much as a small C call
_sess_recv = lib.gk_sess_recv
_sess_send = lib.gk_sess_send


def _log_end(csess: Any) -> None:
    """Why the core ended a session (its Wakeups' on_dead: the core posts
    GK_EV_DEAD once, when it ends the session itself, never after the
    application closed it, when the engine no longer holds the Wakeups)."""
    session_ended(lib.gk_sess_status(csess), lib.gk_sess_conv(csess), _peer_of(csess))


class Session(Blocking):
    """A KCP session (kcp-go's UDPSession), usable wherever a connected
    stream socket is expected.

    Obtain one from :func:`gkcp.dial`, :func:`gkcp.create_connection` or
    :meth:`gkcp.Listener.accept`.  KCP has no close handshake: ``close()``
    flushes and keeps retransmitting unacknowledged data for up to
    ``linger`` seconds.  A peer that goes silent is found by keepalive
    (recv/send raise ConnectionAbortedError(ETIMEDOUT)), ``dead_link`` and
    ``idle_timeout``; one that forgot the conversation (closed or restarted)
    by its acknowledgements going back (ConnectionResetError).
    """

    family: int
    type = socket.SOCK_STREAM
    proto = 0

    def __init__(self, engine: Engine, endpoint: Endpoint, csess: Any, options: Options) -> None:
        self._engine = engine
        self._thread_id = engine.thread_id
        self._endpoint = endpoint
        self._c = csess
        self._options = options
        self.id: int = lib.gk_sess_id(csess)
        self.conv: int = lib.gk_sess_conv(csess)
        self.family = endpoint.sock.family
        wakeups = Wakeups(engine.wake_queue, functools.partial(_log_end, csess))
        self._readable: Signal = wakeups.readable
        self._writable: Signal = wakeups.writable
        self._timeout: Optional[float] = socket.getdefaulttimeout()
        self._read_deadline: Optional[float] = None
        self._write_deadline: Optional[float] = None
        self._io_refs = 0
        self._close_requested = False
        self._shut_rd = False
        self._shut_wr = False
        self._peer = self._read_peer()
        engine.add_session(self.id, wakeups)

    # -- engine side -------------------------------------------------------------

    def _live(self) -> Any:
        c = self._c
        if c is None:
            raise closed_error()
        if _thread_ident() != self._thread_id:  # Engine.check_thread, inlined: once per call
            self._engine.check_thread()
        return c

    def _read_peer(self) -> Tuple[Any, ...]:
        return _peer_of(self._c)

    def _ended(self, code: int, reading: bool) -> Any:
        status = -code
        if status == lib.GK_ST_IDLE:
            if reading:
                return b""
            raise ConnectionAbortedError(errno.ETIMEDOUT, "peer silent for more than %s s (idle_timeout)"
                                         % self._options.idle_timeout)
        if status == lib.GK_ST_DEADLINK:
            raise ConnectionAbortedError(errno.ETIMEDOUT, "dead link: a segment was sent %d times "
                                         "without acknowledgement" % self._options.dead_link)
        if status == lib.GK_ST_KEEPALIVE:
            raise ConnectionAbortedError(errno.ETIMEDOUT, "keepalive: no packet from the peer for %s s; it did not "
                                         "answer the window asks sent every %s s (keepalive_timeout)"
                                         % (self._options.keepalive_timeout, self._options.keepalive))
        if status == lib.GK_ST_RESET:
            raise ConnectionResetError(errno.ECONNRESET, "the peer no longer knows this conversation (its session "
                                       "was closed or its process restarted): it acknowledges less than it had")
        raise ConnectionResetError(errno.ECONNRESET, "the peer started a new conversation from its address")

    # -- reading --------------------------------------------------------------------

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        """Up to bufsize bytes (at most 1 MiB per call); in message mode at
        most one message (its next part if bufsize is smaller).  Returns b''
        once the session ended by idle timeout or was shut down for reading."""
        if bufsize.__class__ is not int:
            int_argument("bufsize", bufsize)
        if bufsize < 0:
            raise ValueError("negative buffersize in recv")
        if flags.__class__ is not int or flags:
            _no_flags(flags)
        size = min(bufsize, _MAX_IO)
        buf = self._engine.scratch_buffer(size)
        n = self._recv(buf, size)
        if isinstance(n, bytes):
            return n
        return ffi.buffer(buf, n)[:]

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        """Like socket.recv_into: fill buffer (or its first nbytes, at most
        1 MiB per call) and return the count."""
        try:
            view = ffi.from_buffer(buffer, require_writable=True)
        except (TypeError, BufferError):
            raise TypeError("recv_into() argument 'buffer' must be read-write bytes-like object, not %s"
                            % type(buffer).__name__) from None
        if nbytes.__class__ is not int:
            int_argument("nbytes", nbytes)
        if nbytes < 0:
            raise ValueError("negative buffersize in recv_into")
        if flags.__class__ is not int or flags:
            _no_flags(flags)
        size = len(view) if nbytes == 0 else nbytes
        if size > len(view):
            raise ValueError("buffer too small for requested bytes")
        n = self._recv(view, min(size, _MAX_IO))
        return 0 if isinstance(n, bytes) else n

    def _recv(self, buf: Any, size: int) -> Any:
        """How many bytes were read into buf, or b'' at the end of the session."""
        c = self._live()
        if size == 0:
            return b""
        # data waiting is the common case: one try before the wait loop's set-up
        tried = False
        if not self._shut_rd:
            n = _sess_recv(c, buf, size, now_ms())
            if n > 0:
                return n
            tried = n == 0

        def attempt() -> Any:
            c = self._live()
            if self._shut_rd:
                return b""
            n = _sess_recv(c, buf, size, now_ms())
            if n > 0:
                return n
            if n < 0:
                return self._ended(n, reading=True)
            return None

        return self._block_until(attempt, self._readable, lambda: self._read_deadline, tried)

    # -- writing ---------------------------------------------------------------------

    def send(self, data: Any, flags: int = 0) -> int:
        """Queue as much of data as the send window takes (blocking until
        some fits, at most 1 MiB per call) and return the count."""
        view = _bytes_view(data)
        _no_flags(flags)
        self._writer_live()
        if len(view) == 0:
            return 0
        size = min(len(view), _MAX_IO)

        def attempt() -> Optional[int]:
            n = _sess_send(self._writer_live(), view, size, now_ms())
            if n < 0:
                self._ended(n, reading=False)
            if n == 0:
                return None
            self._engine.wake_if_needed()
            return n

        return self._block_until(attempt, self._writable, lambda: self._write_deadline)

    def sendall(self, data: Any, flags: int = 0) -> None:
        """Queue all of data; the timeout bounds the whole call, as in the
        socket module."""
        view = _bytes_view(data)
        if flags.__class__ is not int or flags:
            _no_flags(flags)
        c = self._writer_live()
        total = len(view)
        # the window has room: the common case, without the wait loop's set-up
        sent = _sess_send(c, view, min(total, _MAX_IO), now_ms()) if total else 0
        if sent < 0:
            self._ended(sent, reading=False)
        if sent:
            self._engine.wake_if_needed()
            if sent == total:
                return

        def attempt() -> Optional[bool]:
            nonlocal sent
            while sent < total:
                n = _sess_send(self._writer_live(), view + sent, min(total - sent, _MAX_IO), now_ms())
                if n < 0:
                    self._ended(n, reading=False)
                if n == 0:
                    return None
                self._engine.wake_if_needed()
                sent += n
            return True

        self._block_until(attempt, self._writable, lambda: self._write_deadline)

    def _writer_live(self) -> Any:
        c = self._live()
        if self._shut_wr:
            raise BrokenPipeError(errno.EPIPE, "Broken pipe (session shut down for writing)")
        return c

    # -- timeouts and deadlines ----------------------------------------------------------

    def set_deadline(self, t: Optional[float]) -> None:
        """Absolute time (time.time()) after which reads and writes raise
        socket.timeout; None clears it (Go's SetDeadline)."""
        self._read_deadline = self._write_deadline = _deadline(t)
        self._readable.set()  # waiting greenlets re-evaluate their limit
        self._writable.set()

    def set_read_deadline(self, t: Optional[float]) -> None:
        self._read_deadline = _deadline(t)
        self._readable.set()

    def set_write_deadline(self, t: Optional[float]) -> None:
        self._write_deadline = _deadline(t)
        self._writable.set()

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._c is None

    def close(self) -> None:
        """Idempotent.  Flushes, then keeps retransmitting unacknowledged data
        in the background for up to ``linger`` seconds; the session's memory
        and, for a dialed session, its UDP socket are released after that.
        With makefile() objects still open, the close happens when the last
        of them is closed (as with socket.socket)."""
        self._close_requested = True
        if self._io_refs <= 0:
            self._real_close()

    def _real_close(self) -> None:
        c = self._c
        if c is None:
            return
        self._engine.check_thread()
        self._c = None
        freed = lib.gk_sess_close(c, now_ms(), duration_ms(self._options.linger))
        self._engine.forget_session(self.id, self._endpoint, lingering=not freed)
        self._readable.set()
        self._writable.set()

    def __del__(self) -> None:
        try:
            if self._c is not None:
                self._real_close()
        except Exception:  # interpreter shutdown: the core may be gone already
            pass

    def shutdown(self, how: int) -> None:
        """KCP has no half-close on the wire: SHUT_WR makes later sends raise
        BrokenPipeError (queued data is still delivered); SHUT_RD makes later
        recv calls return b''."""
        self._live()
        if int_argument("how", how) not in (socket.SHUT_RD, socket.SHUT_WR, socket.SHUT_RDWR):
            raise ValueError("how must be SHUT_RD, SHUT_WR or SHUT_RDWR")
        if how in (socket.SHUT_RD, socket.SHUT_RDWR):
            self._shut_rd = True
            self._readable.set()
        if how in (socket.SHUT_WR, socket.SHUT_RDWR):
            self._shut_wr = True
            self._writable.set()

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._c is None else "peer=%s" % (self._peer,)
        return "<gkcp.Session conv=%#010x %s>" % (self.conv, state)

    # -- socket-like extras ----------------------------------------------------------

    def getpeername(self) -> Tuple[Any, ...]:
        self._live()
        return self._peer

    def getsockname(self) -> Tuple[Any, ...]:
        self._live()
        return self._endpoint.sock.getsockname()

    def fileno(self) -> int:
        """-1: a session has no descriptor of its own (a dialed session's UDP
        socket must not be read by anyone but gkcp), so select()-style
        polling is not possible; use greenlets."""
        return -1

    def setsockopt(self, level: int, option: int, value: Any) -> None:
        """TCP_NODELAY maps to KCP's ack no-delay; other options raise
        OSError(ENOPROTOOPT), which stdlib clients tolerate."""
        self._live()
        int_argument("level", level)
        int_argument("option", option)
        if level == socket.IPPROTO_TCP and option == socket.TCP_NODELAY:
            try:
                on = operator.index(value)
            except TypeError:
                raise TypeError("TCP_NODELAY value must be an int, not %s" % type(value).__name__) from None
            self.set_ack_no_delay(on != 0)
            return
        raise OSError(errno.ENOPROTOOPT, "Protocol not available (KCP session)")

    def getsockopt(self, level: int, option: int, buflen: int = 0) -> int:
        """TCP_NODELAY, and SO_ERROR: the UDP socket's pending error (e.g.
        ECONNREFUSED once an ICMP port unreachable answered a dialed
        session), cleared by reading it."""
        self._live()
        int_argument("level", level)
        int_argument("option", option)
        int_argument("buflen", buflen)
        if level == socket.IPPROTO_TCP and option == socket.TCP_NODELAY:
            return int(bool(self._options.ack_nodelay))
        if level == socket.SOL_SOCKET and option == socket.SO_ERROR:
            return self._endpoint.take_error()
        raise OSError(errno.ENOPROTOOPT, "Protocol not available (KCP session)")

    @property
    def timeout(self) -> Optional[float]:
        """What settimeout set, as socket.socket.timeout."""
        return self._timeout

    def sendfile(self, file: Any, offset: int = 0, count: Optional[int] = None) -> int:
        """As socket.socket.sendfile: send a binary file's bytes from offset
        (count of them, else to its end), return how many, and leave the
        file positioned after them.  KCP has no kernel sendfile, so they are
        read and sent in pieces (the socket module's fallback for non-TCP)."""
        if "b" not in getattr(file, "mode", "b"):
            raise ValueError("file should be opened in binary mode")
        if int_argument("offset", offset) < 0:
            raise ValueError("offset must be >= 0, got %d" % offset)
        if count is not None and int_argument("count", count) <= 0:
            raise ValueError("count must be a positive integer (got %r)" % count)
        self._writer_live()
        if offset:
            file.seek(offset)
        total = 0
        try:
            while count is None or total < count:
                piece = file.read(_SENDFILE_PIECE if count is None else min(_SENDFILE_PIECE, count - total))
                if not piece:
                    break
                self.sendall(piece)
                total += len(piece)
        finally:
            if total and hasattr(file, "seek"):
                file.seek(offset + total)
        return total

    def makefile(self, mode: str = "r", buffering: Optional[int] = None, *, encoding: Optional[str] = None,
                 errors: Optional[str] = None, newline: Optional[str] = None) -> Any:
        """A file object over the session, as socket.socket.makefile."""
        if not isinstance(mode, str) or not set(mode) <= {"r", "w", "b"}:
            raise ValueError("invalid mode %r (only r, w, b allowed)" % (mode,))
        if buffering is None:
            buffering = -1
        if int_argument("buffering", buffering) < 0:
            buffering = io.DEFAULT_BUFFER_SIZE
        writing = "w" in mode
        reading = "r" in mode or not writing
        binary = "b" in mode
        if buffering == 0 and not binary:
            raise ValueError("unbuffered streams must be binary")
        rawmode = ("r" if reading else "") + ("w" if writing else "")
        raw = socket.SocketIO(self, rawmode)  # type: ignore[arg-type]
        self._io_refs += 1
        if buffering == 0:
            return raw
        try:
            if reading and writing:
                buffer: Any = io.BufferedRWPair(raw, raw, buffering)
            elif reading:
                buffer = io.BufferedReader(raw, buffering)
            else:
                buffer = io.BufferedWriter(raw, buffering)
            if binary:
                return buffer
            text = io.TextIOWrapper(buffer, encoding, errors, newline)
        except BaseException:  # e.g. an unknown encoding: the session must stay closable
            raw.close()
            raise
        text.mode = mode  # type: ignore[misc]
        return text

    def _decref_socketios(self) -> None:
        if self._io_refs > 0:
            self._io_refs -= 1
        if self._close_requested and self._io_refs <= 0:
            self._real_close()

    # -- KCP tuning (kcp-go's UDPSession setters) ----------------------------------------

    def _reconfigure(self, **changes: Any) -> None:
        c = self._live()
        options = make_options(self._options, **changes)
        if options.header_bytes() != self._options.header_bytes():
            raise ValueError("FEC and crypto are fixed when a session is created")
        if lib.gk_sess_configure(c, c_config(options)) < 0:
            raise ValueError("the core refused %r" % (changes,))
        self._options = options

    def set_nodelay(self, nodelay: int, interval: int, resend: int, nc: int) -> None:
        """kcp-go SetNoDelay: e.g. (1, 10, 2, 1) for the lowest latency."""
        self._reconfigure(nodelay=nodelay, interval=interval, resend=resend, nc=nc)

    def set_window_size(self, sndwnd: int, rcvwnd: int) -> None:
        self._reconfigure(sndwnd=sndwnd, rcvwnd=rcvwnd)

    def set_mtu(self, mtu: int) -> None:
        self._reconfigure(mtu=mtu)

    def set_stream_mode(self, enable: bool) -> None:
        self._reconfigure(stream=enable)

    def set_ack_no_delay(self, enable: bool) -> None:
        self._reconfigure(ack_nodelay=enable)

    def set_write_delay(self, enable: bool) -> None:
        self._reconfigure(write_delay=enable)

    def set_dead_link(self, transmissions: int) -> None:
        self._reconfigure(dead_link=transmissions)

    def set_idle_timeout(self, seconds: Optional[float]) -> None:
        self._reconfigure(idle_timeout=seconds)

    @property
    def options(self) -> Options:
        return self._options

    # -- statistics ------------------------------------------------------------------

    def info(self) -> Dict[str, int]:
        """KCP state: windows, queue lengths, RTT estimates, retransmissions."""
        c = self._live()
        info = ffi.new("gk_kcp_info *")
        lib.gk_sess_get_info(c, info)
        return {name: getattr(info, name) for name in _INFO_FIELDS}

    @property
    def rto(self) -> int:
        """Current retransmission timeout, ms."""
        return self.info()["rx_rto"]

    @property
    def srtt(self) -> int:
        """Smoothed round-trip time, ms."""
        return self.info()["rx_srtt"]

    @property
    def srttvar(self) -> int:
        """Round-trip time variation, ms."""
        return self.info()["rx_rttvar"]

    def pending(self) -> int:
        """Segments queued or in flight."""
        return lib.gk_sess_waitsnd(self._live())


def _peer_of(csess: Any) -> Tuple[Any, ...]:
    raw = ffi.new("char[128]")
    n = lib.gk_sess_peer(csess, raw, 128)
    return from_sockaddr(ffi.buffer(raw, n)[:])


def _deadline(t: Optional[float]) -> Optional[float]:
    if t is None:
        return None
    if isinstance(t, bool) or not isinstance(t, (int, float)):
        raise TypeError("deadline must be a time.time() value or None, not %s" % type(t).__name__)
    try:
        at = float(t)
    except OverflowError:
        at = math.inf
    if not math.isfinite(at):
        raise ValueError("deadline must be a finite time.time() value, got %r" % (t,))
    return at


def _bytes_view(data: Any) -> Any:
    try:
        return ffi.from_buffer(data)
    except TypeError:
        raise TypeError("a bytes-like object is required, not %r" % type(data).__name__) from None


def _no_flags(flags: Any) -> None:
    if int_argument("flags", flags) != 0:
        raise ValueError("flags are not supported on a KCP session, got %d" % flags)


_DEFAULT = object()


def dial(address: Any, *, conv: Optional[int] = None, sock: Optional[socket.socket] = None,
         source_address: Optional[Tuple[str, int]] = None, **options: Any) -> Session:
    """A session to address ((host, port) or 'host:port'), over a new UDP
    socket connected to it, or over sock (kcp-go's NewConn; the session then
    owns it).  conv defaults to 32 random bits.  Options: see gkcp.Options.

    KCP has no handshake; the dial makes one from a window ask (WASK), which
    kcp-go and gkcp peers answer on their next flush: it returns once a
    valid KCP packet comes back (the peer lives and has the same crypt and
    key; a gkcp listener accepts the session in the same round
    trip), asking again after 0.25, 0.5, 1, 2 s and then every 2 s.  It
    raises ConnectionRefusedError when an ICMP port unreachable comes back
    (own socket only: it is connected), and socket.timeout (TimeoutError)
    after connect_timeout seconds without an answer.  connect_timeout=0:
    return at once, unverified (kcp-go's Dial); with announce=True one
    window-tell segment then goes out so the peer's listener accepts the
    session before this side writes (a server may then speak first)."""
    opts = make_options(**options)
    if conv is None:
        conv = int.from_bytes(os.urandom(4), "little")
    elif not 0 <= int_argument("conv", conv) <= 0xFFFFFFFF:
        raise ValueError("conv must be in 0..2**32-1, got %d" % conv)
    if source_address is not None:
        if sock is not None:
            raise ValueError("give either sock or source_address, not both")
        parse_address(source_address, "source_address")
    family, sockaddr = resolve(address)
    if sockaddr[1] == 0:
        raise ValueError("address: port 0 cannot be dialed, got %r" % (address,))
    if sock is not None:
        check_udp_socket(sock, family)
    crypt = make_crypt(opts)
    if sock is None:  # a cipher dropped on failure is freed with its last reference
        bind_to = source_address or ("::" if family == socket.AF_INET6 else "0.0.0.0", 0)
        sock = open_udp_socket(family, opts, bind_to=bind_to, connect_to=sockaddr)
    engine = get_engine()
    endpoint = Endpoint(engine, sock, False, opts, crypt)
    raw = to_sockaddr(family, sockaddr)
    verify = opts.connect_timeout > 0
    announce = int(bool(opts.announce) and not verify)  # the ask creates the peer's session itself
    csess = lib.gk_udp_dial(endpoint.c, raw, len(raw), conv, announce, now_ms())
    if csess == ffi.NULL:
        endpoint.release()
        raise OSError("could not create a session to %r" % (address,))
    session = Session(engine, endpoint, csess, opts)
    if verify:
        _connect(session, opts.connect_timeout, address)
    return session


# Seconds between the connect probes: the first answers come within a round
# trip and the peer's interval; later ones cover loss on long paths.
_REASK_DELAYS = (0.25, 0.5, 1.0, 2.0)


def _connect(session: Session, timeout: float, address: Any) -> None:
    """Ask the peer until it answers (see dial); closes session on failure."""
    endpoint = session._endpoint
    endpoint.on_error = session._readable.set
    end = time.monotonic() + timeout
    try:
        for attempt in itertools.count():
            lib.gk_sess_ask(session._live(), now_ms())
            ask_by = time.monotonic() + _REASK_DELAYS[min(attempt, len(_REASK_DELAYS) - 1)]
            while True:
                session._readable.clear()
                if lib.gk_sess_heard(session._c):
                    return
                error = endpoint.take_error()
                if error == errno.ECONNREFUSED:
                    raise ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused: nothing listens on "
                                                 "%s (ICMP port unreachable)" % (address,))
                left = min(ask_by, end) - time.monotonic()
                if left <= 0 or not session._readable.wait(left):
                    break
            if time.monotonic() >= end:
                raise socket.timeout("no KCP answer from %s within %s s (connect_timeout): nothing listens there "
                                     "and no ICMP error came back (a firewall drops UDP?), or the peer uses "
                                     "another crypt or key (with crypt, every datagram fails its check)"
                                     % (address, timeout))
    except BaseException:
        session.close()  # nothing was queued: freed at once
        raise
    finally:
        endpoint.on_error = None


def create_connection(address: Any, timeout: Any = _DEFAULT, source_address: Optional[Tuple[str, int]] = None,
                      **options: Any) -> Session:
    """socket.create_connection for KCP: a verified dial (see dial) whose
    Session has the given timeout (default: socket.getdefaulttimeout(); the
    checks of settimeout) and KCP options.  As with TCP, a positive timeout
    also bounds the connect: it waits min(timeout, connect_timeout)."""
    timeout = socket.getdefaulttimeout() if timeout is _DEFAULT else parse_timeout(timeout)
    wait = make_options(**options).connect_timeout
    if timeout and wait:
        options["connect_timeout"] = min(wait, timeout)
    session = dial(address, source_address=source_address, **options)
    session.settimeout(timeout)
    return session
