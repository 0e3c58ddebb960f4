"""kcptun's compression: the snappy *framing* format over a byte stream.

kcptun (unless ``--nocomp``) wraps each KCP session in golang/snappy's
buffered Writer, flushed after every write, and snappy's Reader; smux runs
on top.  This module is the same thing for a gkcp Session:
:class:`CompressedConn` wraps any connected stream (``recv``, ``sendall``,
``close``) and is itself one, so ``gkcp.smux`` runs over it unchanged.

The format (google/snappy framing_format.txt, as golang/snappy 0.0.2 writes
and reads it): a stream identifier chunk ``ff 06 00 00 "sNaPpY"`` before the
first data chunk, then chunks of ``|u8 type|u24le length|`` followed by the
masked CRC-32C of the uncompressed bytes (u32le) and the data: type 0x00 a
snappy block, 0x01 the bytes as they are.  A chunk holds at most 65536
uncompressed bytes.  Like Go's writer, a block is sent uncompressed unless
compression saves at least 1/8.  Like Go's reader: padding (0xfe) and
reserved skippable chunks (0x80-0xfd) are skipped, reserved unskippable
chunks (0x02-0x7f), a missing stream identifier, an oversized chunk or a bad
checksum end the stream with :class:`SnappyFrameError`.

The block codec is cramjam's (Rust ``snap``), the checksum google-crc32c's
(hardware CRC-32C): both per byte in compiled code.
"""
from __future__ import annotations

import collections
import errno
import struct
from typing import Any, Deque, List, Optional, Tuple

import cramjam
import google_crc32c

__all__ = ["CompressedConn", "FrameEncoder", "FrameDecoder", "SnappyFrameError",
           "STREAM_IDENTIFIER", "MAX_CHUNK_DATA", "masked_crc32c"]

STREAM_IDENTIFIER = b"\xff\x06\x00\x00sNaPpY"
MAX_CHUNK_DATA = 65536  # uncompressed bytes per chunk (framing format, golang/snappy maxBlockSize)
# golang/snappy's reader buffer: the largest chunk body it accepts
# (MaxEncodedLen(65536) = 76490, plus the checksum).
MAX_CHUNK_BODY = 76490 + 4

CHUNK_COMPRESSED = 0x00
CHUNK_UNCOMPRESSED = 0x01
CHUNK_PADDING = 0xFE
CHUNK_STREAM_IDENTIFIER = 0xFF
_CRC_SIZE = 4
_HEADER = struct.Struct("<I")        # type in the low byte, length in the upper 24 bits
_CHUNK_HEADER = struct.Struct("<II")  # type|length, masked CRC
_HEADER_SIZE = 4
_MASK_DELTA = 0xA282EAD8


class SnappyFrameError(ConnectionError):
    """The compressed stream is corrupt or uses a chunk type this reader
    must not skip; the stream cannot go on (golang/snappy ErrCorrupt /
    ErrUnsupported)."""

    def __init__(self, message: str) -> None:
        super().__init__(errno.EPROTO, "snappy stream: " + message)


def masked_crc32c(data: bytes) -> int:
    """The framing format's checksum: CRC-32C rotated right by 15 plus a
    constant, so that data containing its own CRC does not checksum badly."""
    c = google_crc32c.value(data)
    return (((c >> 15) | (c << 17)) + _MASK_DELTA) & 0xFFFFFFFF


class FrameEncoder:
    """Sans-I/O writer: :meth:`encode` turns one write into the bytes kcptun's
    ``CompStream.Write`` puts on the wire for it (the stream identifier
    first, once, then chunks of up to 65536 bytes)."""

    def __init__(self) -> None:
        self._wrote_identifier = False

    def encode(self, data: Any) -> bytes:
        # google-crc32c takes bytes only; smux hands over bytes already.
        if not isinstance(data, bytes):
            data = bytes(data)
        if not data:
            return b""
        parts: List[Any] = []  # bytes and cramjam Buffers
        if not self._wrote_identifier:
            self._wrote_identifier = True
            parts.append(STREAM_IDENTIFIER)
        for start in range(0, len(data), MAX_CHUNK_DATA):
            chunk = data if len(data) <= MAX_CHUNK_DATA else data[start:start + MAX_CHUNK_DATA]
            size = len(chunk)
            checksum = masked_crc32c(chunk)
            compressed = cramjam.snappy.compress_raw(chunk)
            if len(compressed) >= size - size // 8:
                parts.append(_CHUNK_HEADER.pack(CHUNK_UNCOMPRESSED | (size + _CRC_SIZE) << 8, checksum))
                parts.append(chunk)
            else:
                parts.append(_CHUNK_HEADER.pack(CHUNK_COMPRESSED | (len(compressed) + _CRC_SIZE) << 8,
                                                checksum))
                parts.append(compressed)
        return b"".join(parts)


class FrameDecoder:
    """Sans-I/O reader: :meth:`feed` takes bytes as they arrive, in any
    pieces, and returns the data of every chunk they complete (b'' when
    none).  Memory is bounded: at most one incomplete chunk (76 KiB) waits.
    After an error every later call raises it again."""

    def __init__(self) -> None:
        self._pending = bytearray()
        self._seen_identifier = False
        self._error: Optional[SnappyFrameError] = None

    @property
    def pending(self) -> int:
        """Bytes of an incomplete chunk held back."""
        return len(self._pending)

    def feed(self, data: Any) -> bytes:
        if self._error is not None:
            raise self._error
        if self._pending:
            self._pending += data
            buf: Any = self._pending
        else:
            buf = data
        out: List[Any] = []
        view = memoryview(buf).cast("B")
        pos = 0
        end = view.nbytes
        try:
            while end - pos >= _HEADER_SIZE:
                word, = _HEADER.unpack_from(view, pos)
                kind = word & 0xFF
                length = word >> 8
                if not self._seen_identifier and kind != CHUNK_STREAM_IDENTIFIER:
                    raise SnappyFrameError("data before the stream identifier")
                if length > MAX_CHUNK_BODY:
                    raise SnappyFrameError("chunk of %d bytes exceeds %d" % (length, MAX_CHUNK_BODY))
                if CHUNK_UNCOMPRESSED < kind < 0x80:
                    raise SnappyFrameError("reserved unskippable chunk type 0x%02x" % kind)
                if end - pos - _HEADER_SIZE < length:
                    break
                body = view[pos + _HEADER_SIZE:pos + _HEADER_SIZE + length]
                pos += _HEADER_SIZE + length
                if kind <= CHUNK_UNCOMPRESSED:
                    out.append(self._chunk_data(kind, body))
                elif kind == CHUNK_STREAM_IDENTIFIER:
                    if bytes(body) != STREAM_IDENTIFIER[_HEADER_SIZE:]:
                        raise SnappyFrameError("bad stream identifier")
                    self._seen_identifier = True
                # else padding or a reserved skippable chunk: skipped
                body.release()  # the pending bytearray is resized below
        except SnappyFrameError as exc:
            self._error = exc
            self._pending = bytearray()
            raise
        finally:
            view.release()
        if buf is self._pending:
            del self._pending[:pos]
        elif pos < end:
            self._pending += memoryview(data).cast("B")[pos:]
        return out[0] if len(out) == 1 else b"".join(out)

    @staticmethod
    def _chunk_data(kind: int, body: memoryview) -> bytes:
        if body.nbytes < _CRC_SIZE:
            raise SnappyFrameError("chunk shorter than its checksum")
        checksum = body[0] | body[1] << 8 | body[2] << 16 | body[3] << 24
        payload = body[_CRC_SIZE:]
        if kind == CHUNK_COMPRESSED:
            try:
                size = cramjam.snappy.decompress_raw_len(payload)
            except cramjam.DecompressionError:
                raise SnappyFrameError("corrupt compressed chunk") from None
            if size > MAX_CHUNK_DATA:
                raise SnappyFrameError("compressed chunk decodes to %d bytes, more than %d"
                                       % (size, MAX_CHUNK_DATA))
            try:
                data = bytes(cramjam.snappy.decompress_raw(payload))
            except cramjam.DecompressionError:
                raise SnappyFrameError("corrupt compressed chunk") from None
        else:
            if payload.nbytes > MAX_CHUNK_DATA:
                raise SnappyFrameError("uncompressed chunk of %d bytes, more than %d"
                                       % (payload.nbytes, MAX_CHUNK_DATA))
            data = bytes(payload)
        if masked_crc32c(data) != checksum:
            raise SnappyFrameError("checksum mismatch")
        return data


class CompressedConn:
    """A connected stream whose bytes travel snappy-framed over ``conn``
    (kcptun's ``generic.CompStream``).  Each ``sendall`` is encoded and
    written at once (kcptun flushes after every write); ``recv`` returns
    decoded bytes.  One writer at a time (smux serializes its frames);
    closing this closes ``conn``."""

    def __init__(self, conn: Any, recv_size: int = 65536) -> None:
        self.conn = conn
        self._encoder = FrameEncoder()
        self._decoder = FrameDecoder()
        self._ready: Deque[bytes] = collections.deque()  # decoded, not yet read
        self._offset = 0  # of the first unread byte in _ready[0]
        self._recv_size = recv_size
        self._eof = False

    def sendall(self, data: Any, flags: int = 0) -> None:
        encoded = self._encoder.encode(data)
        if encoded:
            self.conn.sendall(encoded)

    def send(self, data: Any, flags: int = 0) -> int:
        """Everything or an exception: a chunk is never half sent."""
        self.sendall(data)
        return memoryview(data).nbytes

    def _fill(self) -> bool:
        """Read until some decoded bytes are ready; False at EOF."""
        while not self._ready:
            if self._eof:
                return False
            raw = self.conn.recv(self._recv_size)
            if not raw:
                self._eof = True
                if self._decoder.pending:
                    raise SnappyFrameError("stream ended inside a chunk")
                return False
            decoded = self._decoder.feed(raw)
            if decoded:
                self._ready.append(decoded)
        return True

    def _take(self, limit: int) -> memoryview:
        """Up to limit ready bytes (a view valid until the next call)."""
        head, start = self._ready[0], self._offset
        end = min(len(head), start + limit)
        if end == len(head):
            self._ready.popleft()
            self._offset = 0
        else:
            self._offset = end
        return memoryview(head)[start:end]

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        if bufsize < 0:
            raise ValueError("negative buffersize in recv")
        if not bufsize or not self._fill():
            return b""
        head = self._ready[0]
        if not self._offset and len(head) <= bufsize:  # the common case: no copy
            self._ready.popleft()
            return head
        return bytes(self._take(bufsize))

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        target = memoryview(buffer).cast("B")
        size = nbytes or target.nbytes
        if not size or not self._fill():
            return 0
        piece = self._take(size)
        target[:piece.nbytes] = piece
        return piece.nbytes

    def close(self) -> None:
        self.conn.close()

    def shutdown(self, how: int) -> None:
        self.conn.shutdown(how)

    def settimeout(self, timeout: Optional[float]) -> None:
        self.conn.settimeout(timeout)

    def gettimeout(self) -> Optional[float]:
        return self.conn.gettimeout()

    def getpeername(self) -> Tuple[Any, ...]:
        return self.conn.getpeername()

    def getsockname(self) -> Tuple[Any, ...]:
        return self.conn.getsockname()

    @property
    def closed(self) -> bool:
        return bool(getattr(self.conn, "closed", False))

    def __enter__(self) -> "CompressedConn":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
