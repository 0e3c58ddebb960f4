"""The smux 1.5.16 wire protocol as a sans-I/O state machine (no sockets, no
clocks, no greenlets), in the manner of h11: feed it the bytes received, it
returns events and keeps the bytes to send.  gkcp.smux drives it.

Frame: an 8-byte header |u8 version|u8 cmd|u16le length|u32le stream id|,
then length payload bytes (PSH: data; UPD: |u32le consumed|u32le window|;
SYN, FIN, NOP: none).

What this machine does where smux 1.5.16 is silent or lax (none of it
affects a well-behaved smux peer):

- SYN, FIN and NOP with a payload, UPD with a payload other than 8 bytes, UPD
  in version 1, a SYN for stream 0 or for an id of this side's parity, and
  PSH/FIN/UPD for stream 0 or for a stream the peer cannot have opened yet
  (an id above every SYN seen from it, or above every id this side
  allocated) are protocol errors.  smux misparses the first few and
  silently drops the last.
- Frames for streams that were closed here (or refused) are dropped and
  counted, as smux does: the peer may not know yet.  So are data after the
  peer's FIN (kcptun's Go side can send a PSH that lost the race against its
  own FIN) and a second FIN.
- A SYN beyond ``backlog`` unaccepted streams is answered with a FIN (smux
  instead blocks its whole reader until the application accepts).
- Memory: buffered data of all streams is bounded by max_receive_buffer plus
  what one receive_data() call brings; the driver stops reading its
  connection while receive_budget <= 0 (smux's token bucket).  A version-2
  peer that ignores its window is held by that same bound.
"""
from __future__ import annotations

import collections
import errno
import struct
from typing import Any, Deque, Dict, List, NamedTuple, Optional, Tuple, Union

__all__ = ["SmuxError", "ProtocolError", "KeepaliveTimeout", "StreamIdsExhausted", "Protocol",
           "StreamOpened", "StreamRefused", "DataReceived", "StreamEnded", "WindowUpdated",
           "KeepaliveReceived", "encode_frame"]

# Commands (frame byte 1).  Version 1 knows SYN..NOP, version 2 adds UPD.
CMD_SYN = 0  # open a stream
CMD_FIN = 1  # the sender's side of the stream is done (EOF mark)
CMD_PSH = 2  # data
CMD_NOP = 3  # keepalive
CMD_UPD = 4  # version 2: |u32 consumed|u32 window| for one stream

HEADER = struct.Struct("<BBHI")  # version, cmd, payload length, stream id
HEADER_SIZE = HEADER.size


class SmuxError(ConnectionError):
    """An smux session ended or cannot go on (base of the errors below)."""


class ProtocolError(SmuxError):
    """The peer sent a frame smux forbids; the session ended."""

    def __init__(self, message: str) -> None:
        super().__init__(errno.EPROTO, "smux protocol error: " + message)


class KeepaliveTimeout(SmuxError):
    """Nothing arrived from the peer within the keepalive timeout; the session ended."""

    def __init__(self, seconds: float) -> None:
        super().__init__(errno.ETIMEDOUT, "smux keepalive timeout: nothing received for %g s" % seconds)


class StreamIdsExhausted(SmuxError):
    """This side used up its 32-bit stream ids (smux ErrGoAway): open a new
    session.  Existing streams keep working."""

    def __init__(self) -> None:
        super().__init__(errno.EADDRNOTAVAIL, "smux stream ids exhausted: start a new session")

UPD = struct.Struct("<II")  # consumed, window
UPD_SIZE = UPD.size
MAX_PAYLOAD = 0xFFFF  # the length field's limit
INITIAL_PEER_WINDOW = 262144  # smux's guess of a version-2 peer's window before its first UPD
_U32 = 0xFFFFFFFF
_UNLIMITED = 1 << 62  # send window of a version-1 stream
# A payload slice keeps the whole received chunk alive; slices smaller than a
# quarter of their chunk are copied, so pinned memory stays within 4x the
# bytes accounted for in the receive budget.
_PIN_RATIO = 4


def encode_frame(version: int, cmd: int, sid: int, payload: bytes = b"") -> bytes:
    """One frame's bytes (header and payload)."""
    return HEADER.pack(version, cmd, len(payload), sid) + payload


def _after(a: int, b: int) -> bool:
    """a is later than b in wrap-around uint32 arithmetic."""
    return 0 < ((a - b) & _U32) < 0x80000000


# ----------------------------------------------------------------- events

class StreamOpened(NamedTuple):
    """The peer opened stream sid; it waits in the backlog for accept()."""
    sid: int


class StreamRefused(NamedTuple):
    """The peer's SYN for sid found the backlog full: a FIN was queued for it."""
    sid: int


class DataReceived(NamedTuple):
    """size bytes were buffered for stream sid (read them with read())."""
    sid: int
    size: int


class StreamEnded(NamedTuple):
    """The peer sent FIN for sid: after the buffered data, the stream is at EOF."""
    sid: int


class WindowUpdated(NamedTuple):
    """Version 2: the peer reported consumed bytes and its window for sid."""
    sid: int
    consumed: int
    window: int


class KeepaliveReceived(NamedTuple):
    """A NOP frame arrived."""


Event = Union[StreamOpened, StreamRefused, DataReceived, StreamEnded, WindowUpdated, KeepaliveReceived]
_KEEPALIVE = KeepaliveReceived()


class _Stream:
    """Per-stream state; counters are uint32 and wrap, as in smux."""

    __slots__ = ("chunks", "head", "buffered", "remote_fin", "local_fin", "read_closed",
                 "num_read", "incr", "num_written", "peer_consumed", "peer_window")

    def __init__(self) -> None:
        self.chunks: Deque[Any] = collections.deque()  # bytes or memoryview pieces, oldest first
        self.head = 0  # bytes of chunks[0] already read
        self.buffered = 0
        self.remote_fin = False
        self.local_fin = False
        self.read_closed = False
        self.num_read = 0  # v2: bytes the application consumed
        self.incr = 0  # v2: consumed since the last UPD sent
        self.num_written = 0  # v2: payload bytes framed for sending
        self.peer_consumed = 0
        self.peer_window = INITIAL_PEER_WINDOW


class Protocol:
    """One end of an smux session.

    Receiving: ``receive_data(bytes)`` parses every complete frame and
    returns the events; stop reading the connection while
    ``receive_budget <= 0`` and resume once reads brought it above 0.
    Sending: ``open_stream()``, ``frame_data()``, ``close_write()``,
    ``close_stream()``, ``queue_nop()`` and reads (version-2 UPD) queue
    frames; ``frame_data`` returns its frames behind those already queued,
    ``data_to_send()`` takes the queued ones alone.  Write them in the order
    received from these calls.

    A bad frame raises ProtocolError; the machine then refuses everything
    (``error`` holds it) and nothing of the bad frame reached any stream.
    Counters are in ``stats``.
    """

    def __init__(self, *, client: bool, version: int = 1, max_frame_size: int = 32768,
                 max_receive_buffer: int = 4194304, max_stream_buffer: int = 65536,
                 backlog: int = 1024) -> None:
        if version not in (1, 2):
            raise ValueError("version must be 1 or 2, got %r" % (version,))
        if not 1 <= max_frame_size <= MAX_PAYLOAD:
            raise ValueError("max_frame_size must be in 1..65535, got %r" % (max_frame_size,))
        self.client = client
        self.version = version
        self.max_frame_size = max_frame_size
        self.max_receive_buffer = max_receive_buffer
        self.max_stream_buffer = max_stream_buffer
        self.backlog = backlog
        self.error: Optional[ProtocolError] = None
        self.receive_budget = max_receive_buffer  # smux's token bucket
        self._streams: Dict[int, _Stream] = {}
        self._accept_queue: Deque[int] = collections.deque()
        self._ids_exhausted = False
        self._last_own_sid = 0  # none allocated yet
        self._highest_peer_sid = 0  # no peer SYN seen yet (0 is never a stream)
        self._partial = bytearray()  # an incomplete frame from the last receive_data
        self._outbox = bytearray()
        self._activity = False
        self._upd_threshold = max_stream_buffer // 2
        self.stats: Dict[str, int] = dict.fromkeys((
            "frames_in", "frames_out", "bytes_in", "bytes_out", "streams_opened", "streams_accepted",
            "streams_refused", "dropped_frames", "dropped_bytes", "keepalives_in", "keepalives_out",
            "window_updates_in", "window_updates_out"), 0)

    # -- receiving ----------------------------------------------------------------

    def receive_data(self, data: bytes) -> List[Event]:
        """Parse data (any split of the byte stream) and return the events of
        the complete frames in it.  The machine keeps slices of data, so pass
        bytes, never a buffer that will be reused."""
        if self.error is not None:
            raise self.error
        if not isinstance(data, bytes):
            data = bytes(data)
        events: List[Event] = []
        if not data:
            return events
        self._activity = True
        try:
            offset = 0
            if self._partial:
                offset = self._finish_partial(data, events)
                if self._partial:
                    return events
            self._parse(data, offset, events)
        except ProtocolError as exc:
            self.error = exc
            self._partial = bytearray()
            raise
        return events

    def _finish_partial(self, data: bytes, events: List[Event]) -> int:
        """Complete the frame begun in an earlier call; returns the offset in
        data after it (len(data) if still incomplete)."""
        partial = self._partial
        taken = 0
        if len(partial) < HEADER_SIZE:
            taken = min(HEADER_SIZE - len(partial), len(data))
            partial += data[:taken]
            if len(partial) < HEADER_SIZE:
                return taken
        _, cmd, length, sid = self._check_header(partial, 0)
        want = HEADER_SIZE + length - len(partial)
        more = min(want, len(data) - taken)
        partial += memoryview(data)[taken:taken + more]
        taken += more
        if len(partial) < HEADER_SIZE + length:
            return taken
        self._partial = bytearray()
        self._frame(cmd, length, sid, bytes(memoryview(partial)[HEADER_SIZE:]), events)
        return taken

    def _parse(self, data: bytes, offset: int, events: List[Event]) -> None:
        end = len(data)
        view = memoryview(data)
        pin_floor = end // _PIN_RATIO
        while end - offset >= HEADER_SIZE:
            _, cmd, length, sid = self._check_header(data, offset)
            stop = offset + HEADER_SIZE + length
            if stop > end:
                break
            start = offset + HEADER_SIZE
            payload = view[start:stop] if length >= pin_floor else data[start:stop]
            self._frame(cmd, length, sid, payload, events)
            offset = stop
        if offset < end:
            self._partial = bytearray(view[offset:])

    def _check_header(self, buf: Any, offset: int) -> Tuple[int, int, int, int]:
        """The header at offset, if smux allows it at all (before its payload
        arrived, so an oversized claim is refused at once)."""
        version, cmd, length, sid = HEADER.unpack_from(buf, offset)
        if version != self.version:
            raise ProtocolError("frame version %d on a version %d session" % (version, self.version))
        if cmd == CMD_PSH:
            return version, cmd, length, sid
        if cmd in (CMD_SYN, CMD_FIN, CMD_NOP):
            if length:
                raise ProtocolError("cmd %d frame with a %d-byte payload (stream %d)" % (cmd, length, sid))
        elif cmd == CMD_UPD:
            if self.version == 1:
                raise ProtocolError("UPD frame on a version 1 session (stream %d)" % sid)
            if length != UPD_SIZE:
                raise ProtocolError("UPD frame with a %d-byte payload (stream %d)" % (length, sid))
        else:
            raise ProtocolError("unknown cmd %d (stream %d)" % (cmd, sid))
        return version, cmd, length, sid

    def _frame(self, cmd: int, length: int, sid: int, payload: Any, events: List[Event]) -> None:
        """Apply one complete, header-checked frame."""
        stats = self.stats
        stats["frames_in"] += 1
        if cmd == CMD_NOP:
            stats["keepalives_in"] += 1
            events.append(_KEEPALIVE)
            return
        if cmd == CMD_PSH and not length:
            return  # smux ignores empty PSH frames, whatever the stream
        if cmd == CMD_SYN:
            self._syn(sid, events)
            return
        stream = self._streams.get(sid)
        if stream is None:
            self._unknown_stream(cmd, sid, length)
            return
        if cmd == CMD_PSH:
            if stream.remote_fin or stream.read_closed:
                stats["dropped_frames"] += 1
                stats["dropped_bytes"] += length
                if not stream.remote_fin:
                    self._count_read(sid, stream, length)
                return
            stream.chunks.append(payload)
            stream.buffered += length
            self.receive_budget -= length
            stats["bytes_in"] += length
            events.append(DataReceived(sid, length))
        elif cmd == CMD_FIN:
            if stream.remote_fin:
                stats["dropped_frames"] += 1
                return
            stream.remote_fin = True
            events.append(StreamEnded(sid))
        else:  # CMD_UPD
            consumed, window = UPD.unpack(payload)
            if _after(consumed, stream.num_written):
                raise ProtocolError("stream %d: peer consumed %d bytes, more than the %d sent"
                                    % (sid, consumed, stream.num_written))
            stream.peer_consumed = consumed
            stream.peer_window = window
            stats["window_updates_in"] += 1
            events.append(WindowUpdated(sid, consumed, window))

    def _syn(self, sid: int, events: List[Event]) -> None:
        if sid == 0 or sid % 2 == self.client:
            raise ProtocolError("SYN for stream %d, not an id the %s side may open"
                                % (sid, "server" if self.client else "client"))
        if sid in self._streams:
            self.stats["dropped_frames"] += 1  # smux ignores a repeated SYN
            return
        if sid > self._highest_peer_sid:
            self._highest_peer_sid = sid
        if len(self._accept_queue) >= self.backlog:
            self._queue(CMD_FIN, sid)
            self.stats["streams_refused"] += 1
            events.append(StreamRefused(sid))
            return
        self._streams[sid] = _Stream()
        self._accept_queue.append(sid)
        events.append(StreamOpened(sid))

    def _unknown_stream(self, cmd: int, sid: int, length: int) -> None:
        """A frame for a stream not in the table: closed here, refused, or
        (an error) never opened."""
        highest = self._last_own_sid if sid % 2 == self.client else self._highest_peer_sid
        if sid == 0 or sid > highest:
            raise ProtocolError("cmd %d frame for stream %d, which was never opened" % (cmd, sid))
        self.stats["dropped_frames"] += 1
        self.stats["dropped_bytes"] += length if cmd == CMD_PSH else 0

    def take_activity(self) -> bool:
        """Whether any bytes arrived since the last call (keepalive timeout)."""
        active, self._activity = self._activity, False
        return active

    # -- streams ------------------------------------------------------------------------

    def open_stream(self) -> int:
        """Allocate the next stream id and queue its SYN; returns the id.
        Raises StreamIdsExhausted once the id space is used up (smux ErrGoAway)."""
        self._check_open()
        if self._ids_exhausted:
            raise StreamIdsExhausted()
        # smux counts from 1 (client) or 0 (server) and adds 2 before each
        # use: a client's streams are 3, 5, 7..., a server's 2, 4, 6...
        sid = ((self._last_own_sid or int(self.client)) + 2) & _U32
        if sid < 2:  # wrapped around: smux's "sid == sid % 2"
            self._ids_exhausted = True
            raise StreamIdsExhausted()
        self._last_own_sid = sid
        self._streams[sid] = _Stream()
        self._queue(CMD_SYN, sid)
        self.stats["streams_opened"] += 1
        return sid

    def accept(self) -> Optional[int]:
        """The oldest stream the peer opened that was not accepted yet, or None."""
        while self._accept_queue:
            sid = self._accept_queue.popleft()
            if sid in self._streams:
                self.stats["streams_accepted"] += 1
                return sid
        return None

    @property
    def accept_pending(self) -> int:
        """Streams waiting in the backlog."""
        return len(self._accept_queue)

    def has_stream(self, sid: int) -> bool:
        return sid in self._streams

    @property
    def num_streams(self) -> int:
        """Streams in the table: opened here, accepted, or in the backlog."""
        return len(self._streams)

    def buffered(self, sid: int) -> int:
        """Bytes received for sid and not read yet."""
        return self._stream(sid).buffered

    def at_eof(self, sid: int) -> bool:
        """Nothing left to read on sid: the peer's FIN came and its data was
        read, or reading was shut down here."""
        stream = self._stream(sid)
        return stream.read_closed or (stream.remote_fin and not stream.buffered)

    def remote_fin(self, sid: int) -> bool:
        return self._stream(sid).remote_fin

    def read(self, sid: int, size: int) -> bytes:
        """Up to size buffered bytes of sid (b'' if none): consumes them,
        returns their room to receive_budget and, in version 2, queues a UPD
        when smux would (at the first read, then after each half window)."""
        stream = self._stream(sid)
        if not stream.buffered or size <= 0:
            return b""
        chunks = stream.chunks
        head = stream.head
        pieces = []
        want = size
        while chunks and want:
            first = chunks[0]
            left = len(first) - head
            if left > want:
                pieces.append(first[head:head + want])
                head += want
                break
            pieces.append(first[head:] if head else first)
            chunks.popleft()
            head = 0
            want -= left
        stream.head = head
        out = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        if type(out) is not bytes:
            out = bytes(out)
        self._take(sid, stream, len(out))
        return out

    def read_into(self, sid: int, buffer: memoryview) -> int:
        """Like read(), copying into buffer (a writable byte memoryview); returns the count."""
        stream = self._stream(sid)
        size = len(buffer)
        if not stream.buffered or size <= 0:
            return 0
        chunks = stream.chunks
        head = stream.head
        copied = 0
        while chunks and copied < size:
            first = chunks[0]
            take = min(len(first) - head, size - copied)
            buffer[copied:copied + take] = first[head:head + take]
            copied += take
            head += take
            if head == len(first):
                chunks.popleft()
                head = 0
        stream.head = head
        self._take(sid, stream, copied)
        return copied

    def _take(self, sid: int, stream: _Stream, n: int) -> None:
        """n buffered bytes of stream left the machine (read or dropped as read)."""
        stream.buffered -= n
        self.receive_budget += n
        self._count_read(sid, stream, n)

    def _count_read(self, sid: int, stream: _Stream, n: int) -> None:
        if self.version == 2:
            stream.num_read = (stream.num_read + n) & _U32
            stream.incr += n
            if stream.incr >= self._upd_threshold or stream.num_read == n:
                self._queue(CMD_UPD, sid, UPD.pack(stream.num_read, self.max_stream_buffer))
                self.stats["window_updates_out"] += 1
                stream.incr = 0

    def shutdown_read(self, sid: int) -> None:
        """Drop what sid buffered and all it receives from now on (counted as
        read, so a version-2 peer's window keeps moving)."""
        stream = self._stream(sid)
        stream.read_closed = True
        stream.chunks.clear()
        stream.head = 0
        if stream.buffered:
            self._take(sid, stream, stream.buffered)

    def send_window(self, sid: int) -> int:
        """Bytes sid may send now: the peer's window minus its unconsumed
        data in version 2 (never negative), unlimited in version 1."""
        stream = self._stream(sid)
        if self.version == 1:
            return _UNLIMITED
        inflight = (stream.num_written - stream.peer_consumed) & _U32
        return max(0, min(stream.peer_window, 0x7FFFFFFF) - inflight)

    def frame_data(self, sid: int, data: Any) -> Tuple[List[Any], int]:
        """Frame as much of data (bytes-like) as the send window takes, in
        frames of at most max_frame_size.  Returns (parts, n): the byte
        strings to write, in order (frames queued earlier first, then headers
        and slices of data), and the count of data bytes framed (0 when the
        window is closed or data is empty).  Raises BrokenPipeError after
        close_write(sid)."""
        stream = self._stream(sid)
        if stream.local_fin:
            raise BrokenPipeError(errno.EPIPE, "Broken pipe (smux stream %d shut down for writing)" % sid)
        view = memoryview(data)
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
        n = min(len(view), self.send_window(sid))
        parts: List[Any] = []
        if self._outbox:
            parts.append(self.data_to_send())
        if n <= 0:
            return parts, 0
        view = view[:n]
        pack = HEADER.pack
        version, frame_size = self.version, self.max_frame_size
        frames = 0
        for start in range(0, n, frame_size):
            piece = view[start:start + frame_size]
            parts.append(pack(version, CMD_PSH, len(piece), sid))
            parts.append(piece)
            frames += 1
        stream.num_written = (stream.num_written + n) & _U32
        self.stats["frames_out"] += frames
        self.stats["bytes_out"] += n
        return parts, n

    def close_write(self, sid: int) -> bool:
        """Queue sid's FIN unless it was queued before; True if queued now."""
        stream = self._stream(sid)
        if stream.local_fin:
            return False
        stream.local_fin = True
        self._queue(CMD_FIN, sid)
        return True

    def close_stream(self, sid: int) -> None:
        """Forget sid (smux Stream.Close): its FIN is queued unless sent
        before, unread data is dropped and its room returned to the budget;
        frames still arriving for it are dropped."""
        stream = self._streams.get(sid)
        if stream is None:
            return
        if not stream.local_fin:
            stream.local_fin = True
            self._queue(CMD_FIN, sid)
        self.receive_budget += stream.buffered
        del self._streams[sid]

    def _stream(self, sid: int) -> _Stream:
        try:
            return self._streams[sid]
        except KeyError:
            raise KeyError("no smux stream %d" % sid) from None

    # -- sending ---------------------------------------------------------------------------

    def queue_nop(self) -> None:
        """Queue a keepalive NOP (stream id 0, as smux sends it)."""
        self._queue(CMD_NOP, 0)
        self.stats["keepalives_out"] += 1

    def _queue(self, cmd: int, sid: int, payload: bytes = b"") -> None:
        self._outbox += HEADER.pack(self.version, cmd, len(payload), sid)
        self._outbox += payload
        self.stats["frames_out"] += 1

    @property
    def has_data_to_send(self) -> bool:
        return bool(self._outbox)

    def data_to_send(self) -> bytes:
        """The queued control frames (b'' if none), removed from the queue."""
        out = bytes(self._outbox)
        self._outbox.clear()
        return out

    def _check_open(self) -> None:
        if self.error is not None:
            raise self.error
