"""smux: many socket-like streams over one connection, byte-compatible with
Go's github.com/xtaci/smux 1.5.16 (the multiplexer kcptun runs over KCP).

    import socket, gkcp, gkcp.smux as smux

    # client side: any connected byte stream (a gkcp Session, a TCP socket)
    conn = gkcp.dial(("127.0.0.1", 29900), stream=True, nodelay=1, interval=10, resend=2, nc=1)
    with smux.client(conn, smux.Config(version=2)) as mux:
        with mux.open_stream() as stream:
            stream.sendall(b"hello")
            stream.shutdown(socket.SHUT_WR)        # FIN: the peer's recv returns b''
            reply = stream.recv(100)

    # server side
    mux = smux.server(session)
    stream = mux.accept_stream()                   # honours mux.settimeout()

The wire protocol itself (frames, stream states, flow control) is the
sans-I/O state machine in :mod:`gkcp._smux_proto`; this module adds the
greenlets: one reader per session feeding the state machine, one writer that
alone writes the connection (control frames first, then the streams' data in
request order, so frames of different streams interleave and one frame's
bytes never do), and the keepalive.
"""
from __future__ import annotations

import collections
import dataclasses
import errno
import socket
import time
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple, TypeVar

import gevent
from gevent.event import Event
from gevent.monkey import get_original

from ._blocking import Blocking
from ._smux_proto import (  # noqa: F401  (re-exported: the public exceptions)
    DataReceived, KeepaliveTimeout, Protocol, ProtocolError, SmuxError, StreamEnded, StreamIdsExhausted,
    StreamOpened, WindowUpdated)
from .options import _int_in, _seconds, int_argument
from .session import Session as _KcpSession, _deadline, _no_flags

__all__ = ["Config", "client", "server", "Session", "Stream", "SmuxError", "ProtocolError",
           "KeepaliveTimeout", "StreamIdsExhausted"]

T = TypeVar("T")
# The OS thread's identity even after gevent.monkey.patch_thread(), which makes
# threading.get_ident() per greenlet: a session belongs to a hub's OS thread.
_thread_ident = get_original("_thread", "get_ident")
_READ_SIZE = 131072  # bytes asked of the connection per read: a few frames at once
_WRITE_BATCH = 262144  # the writer joins requests up to this many bytes into one write
_FRAMES_PER_REQUEST = 4  # a send() hands the writer at most this many full frames


def _closed_error(what: str) -> OSError:
    return OSError(errno.EBADF, "Bad file descriptor (%s closed)" % what)


def _byte_view(data: Any) -> memoryview:
    view = memoryview(data)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    return view


@dataclasses.dataclass(frozen=True)
class Config:
    """smux settings; the defaults are smux.DefaultConfig() (kcptun's too,
    except that kcptun sets max_receive_buffer from --smuxbuf, max_stream_buffer
    from --streambuf, keepalive_interval from --keepalive and version from
    --smuxver).  Both ends must use the same version.  Invalid values raise
    ValueError or TypeError naming the field, as smux.VerifyConfig does.

    version             1 or 2 (2 adds per-stream flow control, UPD frames)
    keepalive_disabled  True: no NOP frames and no keepalive timeout
    keepalive_interval  seconds between NOP frames sent
    keepalive_timeout   seconds without any frame received that end the
                        session (>= keepalive_interval); not applied while this
                        side has stopped reading because its buffers are full
    max_frame_size      largest payload of a frame this side sends (1..65535);
                        frames received may be up to 65535 (the field's limit)
    max_receive_buffer  bytes received but not yet read, summed over all
                        streams; at this limit the session stops reading its
                        connection (back-pressure through the transport)
    max_stream_buffer   version 2: the window this side grants each stream
    backlog             streams opened by the peer and not yet accepted; a
                        SYN beyond it is refused with a FIN (smux has a fixed
                        1024 and stalls the whole session instead)
    """

    version: int = 1
    keepalive_disabled: bool = False
    keepalive_interval: float = 10.0
    keepalive_timeout: float = 30.0
    max_frame_size: int = 32768
    max_receive_buffer: int = 4194304
    max_stream_buffer: int = 65536
    backlog: int = 1024

    def __post_init__(self) -> None:
        _int_in("Config.version", self.version, 1, 2)
        if not isinstance(self.keepalive_disabled, bool):
            raise TypeError("Config.keepalive_disabled must be a bool, got %r" % (self.keepalive_disabled,))
        _seconds("Config.keepalive_interval", self.keepalive_interval)
        _seconds("Config.keepalive_timeout", self.keepalive_timeout)
        if not self.keepalive_disabled:
            if not self.keepalive_interval > 0:
                raise ValueError("Config.keepalive_interval must be positive, got %r" % (self.keepalive_interval,))
            if self.keepalive_timeout < self.keepalive_interval:
                raise ValueError("Config.keepalive_timeout (%r) must not be smaller than keepalive_interval (%r)"
                                 % (self.keepalive_timeout, self.keepalive_interval))
        _int_in("Config.max_frame_size", self.max_frame_size, 1, 65535)
        _int_in("Config.max_receive_buffer", self.max_receive_buffer, 1, 1 << 62)
        _int_in("Config.max_stream_buffer", self.max_stream_buffer, 1, 0x7FFFFFFF)
        if self.max_stream_buffer > self.max_receive_buffer:
            raise ValueError("Config.max_stream_buffer (%d) must not be larger than max_receive_buffer (%d)"
                             % (self.max_stream_buffer, self.max_receive_buffer))
        _int_in("Config.backlog", self.backlog, 1, 1 << 30)

    def replace(self, **changes: Any) -> "Config":
        """A copy with the given fields changed (validated again)."""
        return dataclasses.replace(self, **changes)



def client(conn: Any, config: Optional[Config] = None) -> "Session":
    """A client-side smux session over conn (its streams get odd ids).

    conn is any connected stream with ``recv``, ``sendall`` and ``close``
    (a gkcp Session, preferably in stream mode, or a TCP socket).  The smux
    session owns conn from now on: it makes it blocking (``settimeout(None)``,
    so that a frame is never cut by a timeout) and closing the session closes
    it."""
    return Session(conn, config, is_client=True)


def server(conn: Any, config: Optional[Config] = None) -> "Session":
    """A server-side smux session over conn (its streams get even ids);
    otherwise as :func:`client`."""
    return Session(conn, config, is_client=False)


class _WriteRequest:
    """Data of one stream waiting for the writer greenlet, which wakes the
    stream's writers (its _writable event) when it is done."""

    __slots__ = ("stream", "view", "started", "finished", "sent", "error")

    def __init__(self, stream: "Stream", view: memoryview) -> None:
        self.stream = stream
        self.view = view
        self.started = False  # the writer took it: framed, to be written whole
        self.finished = False
        self.sent = 0
        self.error: Optional[BaseException] = None

    def finish(self, error: Optional[BaseException] = None) -> None:
        if error is not None:
            self.error = error
        self.finished = True
        self.stream._writable.set()


class Session(Blocking):
    """One smux session over one connection (smux.Session).

    Get one from :func:`client` or :func:`server`.  Either side may open
    streams and accept the other side's.  The session ends when ``close()`` is
    called, the connection fails or reaches EOF, the peer sends a bad frame
    (:class:`ProtocolError`) or stays silent past the keepalive timeout
    (:class:`KeepaliveTimeout`); ``error`` then says why and every blocked
    call on it or its streams wakes up."""

    def __init__(self, conn: Any, config: Optional[Config], is_client: bool) -> None:
        if config is None:
            config = Config()
        elif not isinstance(config, Config):
            raise TypeError("config must be a gkcp.smux.Config or None, got %r" % (config,))
        for method in ("recv", "sendall", "close"):
            if not callable(getattr(conn, method, None)):
                raise TypeError("conn must be a connected socket-like object with recv, sendall and close; "
                                "%r has no %s()" % (conn, method))
        if callable(getattr(conn, "settimeout", None)):
            conn.settimeout(None)
        self.config = config
        self.is_client = is_client
        self._conn = conn
        self._thread = _thread_ident()
        self._proto = Protocol(client=is_client, version=config.version, max_frame_size=config.max_frame_size,
                               max_receive_buffer=config.max_receive_buffer,
                               max_stream_buffer=config.max_stream_buffer, backlog=config.backlog)
        self._streams: Dict[int, Stream] = {}
        self._requests: Deque[_WriteRequest] = collections.deque()
        self._writer_wake = Event()
        self._budget_open = Event()
        self._budget_open.set()
        self._accept_ready = Event()
        self._ended = Event()
        self._error: Optional[BaseException] = None
        self._timeout: Optional[float] = None
        self._deadline: Optional[float] = None
        self._request_bytes = max(config.max_frame_size * _FRAMES_PER_REQUEST, 65536)
        self._greenlets = [gevent.spawn(self._read_loop), gevent.spawn(self._write_loop)]
        if not config.keepalive_disabled:
            self._greenlets.append(gevent.spawn(self._keepalive_loop))

    # -- the session's greenlets -----------------------------------------------------

    def _read_loop(self) -> None:
        proto, conn, streams = self._proto, self._conn, self._streams
        try:
            while True:
                while proto.receive_budget <= 0:  # back-pressure: leave the data in the transport
                    self._budget_open.clear()
                    self._budget_open.wait()
                    if self._ended.is_set():
                        return
                data = conn.recv(_READ_SIZE)
                if not data:
                    raise ConnectionResetError(errno.ECONNRESET, "smux: the connection reached EOF")
                for event in proto.receive_data(data):
                    if isinstance(event, (DataReceived, StreamEnded)):
                        stream = streams.get(event.sid)
                        if stream is not None:
                            stream._readable.set()
                    elif isinstance(event, WindowUpdated):
                        stream = streams.get(event.sid)
                        if stream is not None:
                            stream._writable.set()
                    elif isinstance(event, StreamOpened):
                        self._accept_ready.set()
                if proto.has_data_to_send:
                    self._writer_wake.set()
        except gevent.GreenletExit:
            raise
        except BaseException as exc:  # noqa: B902  (whatever stopped the reader ends the session)
            self._end(exc)

    def _write_loop(self) -> None:
        proto, conn, requests = self._proto, self._conn, self._requests
        wake = self._writer_wake
        try:
            while True:
                if not requests and not proto.has_data_to_send:
                    wake.clear()
                    wake.wait()
                    continue
                parts: List[Any] = []
                batch: List[_WriteRequest] = []
                size = 0
                while requests and size < _WRITE_BATCH:
                    request = requests.popleft()
                    request.started = True
                    batch.append(request)
                    try:
                        framed, request.sent = proto.frame_data(request.stream._sid, request.view)
                    except KeyError:  # closed while its data waited
                        request.error = _closed_error("smux stream")
                        continue
                    except BrokenPipeError as exc:  # shut down for writing meanwhile
                        request.error = exc
                        continue
                    parts += framed
                    size += request.sent
                if proto.has_data_to_send:
                    parts.append(proto.data_to_send())
                if parts:
                    conn.sendall(parts[0] if len(parts) == 1 else b"".join(parts))
                for request in batch:
                    request.finish()
        except gevent.GreenletExit:
            raise
        except BaseException as exc:  # noqa: B902
            self._end(exc)

    def _keepalive_loop(self) -> None:
        """smux's keepalive: a NOP every interval; the session ends when a
        whole timeout period passed without a byte from the peer, unless the
        reader had stopped because the receive buffers are full."""
        proto = self._proto
        interval, period = self.config.keepalive_interval, self.config.keepalive_timeout
        now = time.monotonic()
        next_ping, next_check = now + interval, now + period
        while True:
            gevent.sleep(max(0.0, min(next_ping, next_check) - time.monotonic()))
            now = time.monotonic()
            if now >= next_ping:
                proto.queue_nop()
                self._writer_wake.set()
                next_ping = max(next_ping + interval, now)
            if now >= next_check:
                if not proto.take_activity() and proto.receive_budget > 0:
                    self._end(KeepaliveTimeout(period))
                    return
                next_check = max(next_check + period, now)

    def _end(self, error: Optional[BaseException]) -> None:
        """End the session once: stop the greenlets, close the connection,
        wake every waiter."""
        if self._ended.is_set():
            return
        self._error = error
        self._ended.set()
        current = gevent.getcurrent()
        gevent.killall([g for g in self._greenlets if g is not current], block=True)
        try:
            self._conn.close()
        except OSError:
            pass
        for request in self._requests:
            request.finish(self._failure())
        self._requests.clear()
        for stream in self._streams.values():
            stream._readable.set()
            stream._writable.set()
        self._accept_ready.set()
        self._budget_open.set()

    def _failure(self) -> BaseException:
        """The exception for calls on this ended session."""
        error = self._error
        if error is None:
            return _closed_error("smux session")
        return error.with_traceback(None)

    def _check_thread(self) -> None:
        if _thread_ident() != self._thread:
            raise RuntimeError("a gkcp.smux session is bound to the gevent hub of the thread that created it; "
                               "use it and its streams from that thread")

    def _check_live(self) -> None:
        self._check_thread()
        if self._ended.is_set():
            raise self._failure()

    # -- used by streams -------------------------------------------------------------------

    def _enqueue(self, stream: "Stream", view: memoryview) -> _WriteRequest:
        """Hand up to one request's worth of view to the writer."""
        request = _WriteRequest(stream, view[:self._request_bytes])
        self._requests.append(request)
        self._writer_wake.set()
        return request

    def _withdraw(self, request: _WriteRequest) -> None:
        """Take back a request the writer has not started."""
        self._requests.remove(request)

    def _after_read(self) -> None:
        proto = self._proto
        if proto.has_data_to_send:
            self._writer_wake.set()
        if proto.receive_budget > 0:
            self._budget_open.set()

    def _forget(self, stream: "Stream") -> None:
        self._streams.pop(stream._sid, None)
        if not self._ended.is_set():
            self._proto.close_stream(stream._sid)
            self._after_read()

    # -- public API ---------------------------------------------------------------------------

    def open_stream(self) -> "Stream":
        """A new stream (its SYN is queued at once; data may follow
        immediately).  Never waits for the peer.  Raises OSError(EBADF) after
        close(), the session's error once it ended, StreamIdsExhausted when
        the 32-bit id space is used up (smux's ErrGoAway: open a new session)."""
        self._check_live()
        sid = self._proto.open_stream()
        self._writer_wake.set()
        stream = self._streams[sid] = Stream(self, sid)
        return stream

    def accept_stream(self) -> "Stream":
        """The next stream the peer opened; blocks up to the session's timeout
        (settimeout/set_deadline) and then raises socket.timeout, or
        BlockingIOError when non-blocking.  After the session ended it raises
        OSError(EBADF) (closed here) or the error that ended it."""
        def attempt() -> Optional[Stream]:
            self._check_live()
            sid = self._proto.accept()
            if sid is None:
                return None
            stream = self._streams[sid] = Stream(self, sid)
            return stream

        return self._block_until(attempt, self._accept_ready, lambda: self._deadline)

    def set_deadline(self, t: Optional[float]) -> None:
        """Absolute time.time() after which accept_stream() raises
        socket.timeout; None clears it (smux Session.SetDeadline)."""
        self._deadline = _deadline(t)
        self._accept_ready.set()  # a waiting accept re-evaluates its limit

    def num_streams(self) -> int:
        """Streams opened or accepted and not yet closed (0 once the session
        ended), as smux NumStreams; streams waiting to be accepted count."""
        return 0 if self._ended.is_set() else self._proto.num_streams

    @property
    def closed(self) -> bool:
        """True once the session ended, for whatever reason (smux IsClosed)."""
        return bool(self._ended.is_set())

    @property
    def error(self) -> Optional[BaseException]:
        """Why the session ended: None while open or after a plain close();
        ProtocolError, KeepaliveTimeout, or the connection's error
        (ConnectionResetError for EOF) otherwise."""
        return self._error

    def wait_closed(self, timeout: Optional[float] = None) -> bool:
        """Block until the session ended (True) or timeout seconds passed
        (False); for supervisors such as kcptun's reconnecting client."""
        return bool(self._ended.wait(timeout))

    def close(self) -> None:
        """Idempotent; ends the session as smux Session.Close does: no FIN is
        sent for open streams, the connection is closed at once (data still
        queued in a gkcp Session lingers there), every stream becomes closed
        for writing (send raises OSError(EBADF)) while recv still returns the
        data already received and then raises OSError(EBADF); waiting calls
        wake up.  Greenlets of the session are gone when close() returns."""
        self._check_thread()
        self._end(None)

    def stats(self) -> Dict[str, int]:
        """Counters of the state machine: frames and payload bytes in and
        out, streams opened, accepted and refused, frames dropped for closed
        streams, keepalives and window updates each way."""
        return dict(self._proto.stats)

    def getpeername(self) -> Tuple[Any, ...]:
        """The connection's peer address."""
        return tuple(self._conn.getpeername())

    def getsockname(self) -> Tuple[Any, ...]:
        """The connection's local address."""
        return tuple(self._conn.getsockname())

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "%d streams" % self.num_streams()
        return "<gkcp.smux.Session %s v%d %s>" % ("client" if self.is_client else "server",
                                                  self.config.version, state)


class Stream(Blocking):
    """One smux stream, usable wherever a connected stream socket is
    expected (names, exceptions and timeouts follow the socket module;
    deadlines are absolute time.time() values, as Go's net.Conn).

    EOF is real and per stream: after the peer's FIN (its shutdown(SHUT_WR)
    or close()) recv returns the remaining data and then b''.  This side may
    go on sending after the peer's FIN (half-close).  A Go smux peer, though,
    sends FIN only from Close(), after which it drops whatever it receives
    for that stream and sends no more window updates: a version-2 writer
    waiting for its window then waits until its timeout or close().

    The session holds every stream until it is closed: close the streams you
    are done with.
    """

    family = socket.AF_UNSPEC
    type = socket.SOCK_STREAM
    proto = 0

    def __init__(self, session: Session, sid: int) -> None:
        self._session = session
        self._proto = session._proto
        self._sid = sid
        self._readable = Event()
        self._writable = Event()
        self._timeout: Optional[float] = socket.getdefaulttimeout()
        self._read_deadline: Optional[float] = None
        self._write_deadline: Optional[float] = None
        self._closed = False
        self._close_requested = False
        self._io_refs = 0
        self._shut_wr = False

    @property
    def id(self) -> int:
        """The stream id on the wire (odd: opened by the client side)."""
        return self._sid

    @property
    def session(self) -> Session:
        return self._session

    def _check_open(self) -> None:
        self._session._check_thread()
        if self._closed:
            raise _closed_error("smux stream")

    # -- reading -------------------------------------------------------------------------

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        """Up to bufsize bytes; b'' after the peer's FIN (once the data before
        it was read) or after shutdown(SHUT_RD).  Once the session ended, the
        data received before is still returned, then its error raised."""
        if int_argument("bufsize", bufsize) < 0:
            raise ValueError("negative buffersize in recv")
        _no_flags(flags)
        return self._receive(lambda: self._proto.read(self._sid, bufsize), bufsize, b"")

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        """Like socket.recv_into; 0 at EOF."""
        try:
            view = _byte_view(buffer)
        except TypeError:
            view = None
        if view is None or view.readonly:
            raise TypeError("recv_into() argument 'buffer' must be read-write bytes-like object, not %s"
                            % type(buffer).__name__)
        if int_argument("nbytes", nbytes) < 0:
            raise ValueError("negative buffersize in recv_into")
        _no_flags(flags)
        if nbytes:
            if nbytes > len(view):
                raise ValueError("buffer too small for requested bytes")
            view = view[:nbytes]
        return self._receive(lambda: self._proto.read_into(self._sid, view), len(view), 0)

    def _receive(self, take: Callable[[], T], size: int, at_eof: T) -> T:
        """take()'s first non-empty result; at_eof at the stream's EOF (or
        for a zero size), waiting up to the timeout while there is nothing."""
        def attempt() -> Optional[T]:
            self._check_open()
            got = take()
            if got:
                self._session._after_read()
                return got
            if not size or self._proto.at_eof(self._sid):
                return at_eof
            self._session._check_live()
            return None

        return self._block_until(attempt, self._readable, lambda: self._read_deadline)

    # -- writing -------------------------------------------------------------------------

    def _check_send(self) -> None:
        self._check_open()
        if self._shut_wr:
            raise BrokenPipeError(errno.EPIPE, "Broken pipe (smux stream shut down for writing)")
        self._session._check_live()

    def _send(self, view: memoryview, whole: bool) -> int:
        """Send view (all of it if whole, else what one request takes)
        through the writer greenlet; returns the count sent."""
        session, proto, sid = self._session, self._proto, self._sid
        sent = 0
        request: Optional[_WriteRequest] = None

        def attempt() -> Optional[int]:
            nonlocal sent, request
            while True:
                if request is not None:
                    if not request.finished:
                        return None
                    if request.error is not None:
                        raise request.error.with_traceback(None)
                    sent += request.sent
                    request = None
                    if sent == len(view) or (sent and not whole):
                        return sent
                self._check_send()
                if proto.send_window(sid) <= 0:
                    return None
                request = session._enqueue(self, view[sent:])

        try:
            return self._block_until(attempt, self._writable, lambda: self._write_deadline)
        except BaseException as exc:
            if request is not None and not request.started:
                session._withdraw(request)
            elif request is not None and not whole and isinstance(exc, socket.timeout) and request.error is None:
                # Framed: the writer writes it whole, however long the
                # connection takes; like data in a socket's send buffer, it
                # counts as sent.
                return sent + request.sent
            raise

    def send(self, data: Any, flags: int = 0) -> int:
        """Send as much of data as the peer's window takes (version 2; all of
        it, up to a few frames, with version 1), blocking until some fits, in
        frames of at most max_frame_size; returns the count.  Timeouts bound
        the wait for the window and for the writer greenlet; data the writer
        has taken is written whole (a frame is never cut) and counts as sent,
        like data in a socket's send buffer."""
        view = _byte_view(data)
        _no_flags(flags)
        self._check_send()
        return self._send(view, whole=False) if len(view) else 0

    def sendall(self, data: Any, flags: int = 0) -> None:
        """Send all of data; the timeout bounds the whole call (after a
        timeout, how much was sent is unknown, as with sockets)."""
        view = _byte_view(data)
        _no_flags(flags)
        self._check_send()
        if len(view):
            self._send(view, whole=True)

    # socket.socket.makefile over recv_into and send, with the same bookkeeping
    makefile = _KcpSession.makefile

    _decref_socketios = _KcpSession._decref_socketios

    # -- lifecycle -------------------------------------------------------------------------

    def shutdown(self, how: int) -> None:
        """SHUT_WR sends FIN once (the peer reads b''), later sends raise
        BrokenPipeError; SHUT_RD drops buffered and later data (still
        counted as read, so a version-2 peer is not stalled) and recv returns
        b''; SHUT_RDWR both."""
        self._check_open()
        if how not in (socket.SHUT_RD, socket.SHUT_WR, socket.SHUT_RDWR):
            raise ValueError("how must be SHUT_RD, SHUT_WR or SHUT_RDWR")
        session = self._session
        if how in (socket.SHUT_RD, socket.SHUT_RDWR):
            if not session.closed:
                self._proto.shutdown_read(self._sid)
                session._after_read()
            self._readable.set()
        if how in (socket.SHUT_WR, socket.SHUT_RDWR):
            self._shut_wr = True
            if not session.closed and self._proto.close_write(self._sid):
                session._writer_wake.set()
            self._writable.set()

    def close(self) -> None:
        """Idempotent; as smux Stream.Close: sends FIN unless already sent,
        drops unread data (returning its room to the session), and forgets
        the stream (frames the peer still sends for it are dropped).  Later
        calls raise OSError(EBADF).  With makefile() objects open, this
        happens when the last of them is closed, as with sockets."""
        self._session._check_thread()
        self._close_requested = True
        if self._io_refs <= 0:
            self._real_close()

    def _real_close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._session._forget(self)
        self._readable.set()
        self._writable.set()

    @property
    def closed(self) -> bool:
        return self._closed

    def set_deadline(self, t: Optional[float]) -> None:
        """Absolute time.time() after which recv and send raise
        socket.timeout; None clears it."""
        self.set_read_deadline(t)
        self.set_write_deadline(t)

    def set_read_deadline(self, t: Optional[float]) -> None:
        self._read_deadline = _deadline(t)
        self._readable.set()  # a waiting reader re-evaluates its limit

    def set_write_deadline(self, t: Optional[float]) -> None:
        self._write_deadline = _deadline(t)
        self._writable.set()

    def getpeername(self) -> Tuple[Any, ...]:
        """The session connection's peer address (smux RemoteAddr)."""
        self._check_open()
        return self._session.getpeername()

    def getsockname(self) -> Tuple[Any, ...]:
        self._check_open()
        return self._session.getsockname()

    def fileno(self) -> int:
        """-1: a stream has no descriptor; use greenlets, not select()."""
        return -1

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return "<gkcp.smux.Stream %d%s>" % (self._sid, " closed" if self._closed else "")
