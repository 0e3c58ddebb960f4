"""smux: many socket-like streams over one connection, byte-compatible with
Go's github.com/xtaci/smux 1.5.16 (the multiplexer kcptun runs over KCP).

    import gkcp, gkcp.smux as smux

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
greenlets: one reader per session feeding the state machine, serialized
writes (frames of different streams interleave, one frame's bytes never do),
and the keepalive.
"""
from __future__ import annotations

import dataclasses
import socket
from typing import Any, Optional, Tuple

from ._smux_proto import (  # noqa: F401  (re-exported: the public exceptions)
    KeepaliveTimeout, ProtocolError, SmuxError, StreamIdsExhausted)

__all__ = ["Config", "client", "server", "Session", "Stream", "SmuxError", "ProtocolError",
           "KeepaliveTimeout", "StreamIdsExhausted"]


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

    def replace(self, **changes: Any) -> "Config":
        """A copy with the given fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


def client(conn: Any, config: Optional[Config] = None) -> "Session":
    """A client-side smux session over conn (its streams get odd ids).

    conn is any connected stream with ``recv``, ``sendall`` and ``close``
    (a gkcp Session, preferably in stream mode, or a TCP socket).  The smux
    session owns conn from now on: closing the session closes it."""
    raise NotImplementedError


def server(conn: Any, config: Optional[Config] = None) -> "Session":
    """A server-side smux session over conn (its streams get even ids);
    otherwise as :func:`client`."""
    raise NotImplementedError


class Session:
    """One smux session over one connection (smux.Session).

    Get one from :func:`client` or :func:`server`.  Either side may open
    streams and accept the other side's.  The session ends when ``close()`` is
    called, the connection fails or reaches EOF, the peer sends a bad frame
    (:class:`ProtocolError`) or stays silent past the keepalive timeout
    (:class:`KeepaliveTimeout`); ``error`` then says why and every blocked
    call on it or its streams wakes up."""

    config: Config
    is_client: bool

    def open_stream(self) -> "Stream":
        """A new stream (its SYN is queued at once; data may follow
        immediately).  Never waits for the peer.  Raises OSError(EBADF) after
        close(), the session's error once it ended, StreamIdsExhausted when
        the 32-bit id space is used up (smux's ErrGoAway: open a new session)."""
        raise NotImplementedError

    def accept_stream(self) -> "Stream":
        """The next stream the peer opened; blocks up to the session's timeout
        (settimeout/set_deadline) and then raises socket.timeout, or
        BlockingIOError when non-blocking.  After the session ended it raises
        OSError(EBADF) (closed here) or the error that ended it."""
        raise NotImplementedError

    def settimeout(self, timeout: Optional[float]) -> None:
        """Timeout of accept_stream(), as socket.settimeout (None: block)."""
        raise NotImplementedError

    def gettimeout(self) -> Optional[float]:
        raise NotImplementedError

    def set_deadline(self, t: Optional[float]) -> None:
        """Absolute time.time() after which accept_stream() raises
        socket.timeout; None clears it (smux Session.SetDeadline)."""
        raise NotImplementedError

    def num_streams(self) -> int:
        """Streams opened or accepted and not yet closed (0 once the session
        ended), as smux NumStreams; streams waiting to be accepted count."""
        raise NotImplementedError

    @property
    def closed(self) -> bool:
        """True once the session ended, for whatever reason (smux IsClosed)."""
        raise NotImplementedError

    @property
    def error(self) -> Optional[BaseException]:
        """Why the session ended: None while open or after a plain close();
        ProtocolError, KeepaliveTimeout, or the connection's error
        (ConnectionResetError for EOF) otherwise."""
        raise NotImplementedError

    def wait_closed(self, timeout: Optional[float] = None) -> bool:
        """Block until the session ended (True) or timeout seconds passed
        (False); for supervisors such as kcptun's reconnecting client."""
        raise NotImplementedError

    def close(self) -> None:
        """Idempotent; ends the session as smux Session.Close does: no FIN is
        sent for open streams, the connection is closed at once (data still
        queued in a gkcp Session lingers there), every stream becomes closed
        for writing (send raises OSError(EBADF)) while recv still returns the
        data already received and then raises OSError(EBADF); waiting calls
        wake up.  Greenlets of the session are gone when close() returns."""
        raise NotImplementedError

    def stats(self) -> dict:
        """Counters: frames and bytes in and out, refused SYNs, frames dropped
        for closed streams, keepalives sent and received."""
        raise NotImplementedError

    def getpeername(self) -> Tuple[Any, ...]:
        """The connection's peer address."""
        raise NotImplementedError

    def getsockname(self) -> Tuple[Any, ...]:
        """The connection's local address."""
        raise NotImplementedError

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class Stream:
    """One smux stream, usable wherever a connected stream socket is
    expected (names, exceptions and timeouts follow the socket module;
    deadlines are absolute time.time() values, as Go's net.Conn).

    EOF is real and per stream: after the peer's FIN (its shutdown(SHUT_WR)
    or close()) recv returns the remaining data and then b''.  A Go smux peer
    sends FIN only from Close(), after which it drops whatever it receives for
    that stream.
    """

    family = socket.AF_UNSPEC
    type = socket.SOCK_STREAM
    proto = 0

    @property
    def id(self) -> int:
        """The stream id on the wire (odd: opened by the client side)."""
        raise NotImplementedError

    @property
    def session(self) -> Session:
        raise NotImplementedError

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        """Up to bufsize bytes; b'' after the peer's FIN (once the data before
        it was read) or after shutdown(SHUT_RD)."""
        raise NotImplementedError

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        """Like socket.recv_into; 0 at EOF."""
        raise NotImplementedError

    def send(self, data: Any, flags: int = 0) -> int:
        """Send as much of data as the peer's window takes (version 2; all of
        it with version 1), blocking until some fits, in frames of at most
        max_frame_size; returns the count.  Once a frame's write started it is
        written whole: timeouts apply to waiting for the window and for the
        connection, not to a frame in the middle of being written."""
        raise NotImplementedError

    def sendall(self, data: Any, flags: int = 0) -> None:
        """Send all of data; the timeout bounds the whole call."""
        raise NotImplementedError

    def makefile(self, mode: str = "r", buffering: Optional[int] = None, *, encoding: Optional[str] = None,
                 errors: Optional[str] = None, newline: Optional[str] = None) -> Any:
        """A file object over the stream, as socket.socket.makefile."""
        raise NotImplementedError

    def shutdown(self, how: int) -> None:
        """SHUT_WR sends FIN once (the peer reads b''), later sends raise
        BrokenPipeError; SHUT_RD drops buffered and later data (still
        counted as read, so a version-2 peer is not stalled) and recv returns
        b''; SHUT_RDWR both."""
        raise NotImplementedError

    def close(self) -> None:
        """Idempotent; as smux Stream.Close: sends FIN unless already sent,
        drops unread data (returning its room to the session), and forgets
        the stream (frames the peer still sends for it are dropped).  Later
        calls raise OSError(EBADF).  With makefile() objects open, this
        happens when the last of them is closed, as with sockets."""
        raise NotImplementedError

    @property
    def closed(self) -> bool:
        raise NotImplementedError

    def settimeout(self, timeout: Optional[float]) -> None:
        raise NotImplementedError

    def gettimeout(self) -> Optional[float]:
        raise NotImplementedError

    def setblocking(self, flag: bool) -> None:
        raise NotImplementedError

    def getblocking(self) -> bool:
        raise NotImplementedError

    def set_deadline(self, t: Optional[float]) -> None:
        """Absolute time.time() after which recv and send raise
        socket.timeout; None clears it."""
        raise NotImplementedError

    def set_read_deadline(self, t: Optional[float]) -> None:
        raise NotImplementedError

    def set_write_deadline(self, t: Optional[float]) -> None:
        raise NotImplementedError

    def getpeername(self) -> Tuple[Any, ...]:
        """The session connection's peer address (smux RemoteAddr)."""
        raise NotImplementedError

    def getsockname(self) -> Tuple[Any, ...]:
        raise NotImplementedError

    def fileno(self) -> int:
        """-1: a stream has no descriptor; use greenlets, not select()."""
        return -1

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
