"""kcptun's compression layer (gkcp/tunnel/compress.py) against golang/snappy
0.0.2 as kcptun uses it (tests/go/snappyframes: a buffered snappy.Writer
flushed after every Write, and snappy.Reader)."""
import hashlib
import random
import socket
import struct
import subprocess
from pathlib import Path

import cramjam
import pytest

from gkcp.bench.gobuild import build_go_program
from gkcp.tunnel.compress import (MAX_CHUNK_DATA, STREAM_IDENTIFIER, CompressedConn, FrameDecoder,
                                  FrameEncoder, SnappyFrameError, masked_crc32c)

TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def go_snappy():
    """Run the Go program: ``go_snappy("encode", records)`` gives Go's framed
    bytes for those writes; ``go_snappy("decode", stream)`` what Go's reader
    makes of a stream, or (None, its error) when it rejects it.  A missing Go
    toolchain fails the tests."""
    binary = build_go_program(TESTS / "go" / "snappyframes")

    def run(command, data):
        if command == "encode":
            data = b"".join(struct.pack("<I", len(r)) + r for r in data)
        proc = subprocess.run([binary, command], input=data, capture_output=True, timeout=60)
        if command == "decode" and proc.returncode == 1:
            return None, proc.stderr.decode()
        assert proc.returncode == 0, proc.stderr.decode()
        return proc.stdout if command == "encode" else (proc.stdout, "")
    return run


def text(rnd: random.Random, n: int) -> bytes:
    """Compressible bytes: words from a small vocabulary."""
    words = [b"kcp ", b"smux ", b"tunnel", b"gevent ", b"snappy", b"\n", b"0123", b"GET / HTTP/1.1\r\n"]
    out = bytearray()
    while len(out) < n:
        out += rnd.choice(words)
    return bytes(out[:n])


def sample_writes(seed: int = 7):
    rnd = random.Random(seed)
    return [b"a", b"hello world" * 3, text(rnd, 1000), rnd.randbytes(5000), text(rnd, 16), text(rnd, 17),
            b"\0" * 18, text(rnd, MAX_CHUNK_DATA), text(rnd, MAX_CHUNK_DATA + 1), text(rnd, 2 * MAX_CHUNK_DATA),
            bytes(200000), text(rnd, 40000) + rnd.randbytes(30000), rnd.randbytes(32776)]


def encode_all(writes):
    encoder = FrameEncoder()
    return b"".join(encoder.encode(w) for w in writes)


def test_frames_are_byte_identical_to_go(go_snappy):
    writes = sample_writes()
    assert encode_all(writes) == go_snappy("encode", writes)
    # Write by write too: chunk boundaries follow each Write+Flush.
    for w in writes:
        assert FrameEncoder().encode(w) == go_snappy("encode", [w])


def test_stream_layout():
    encoder = FrameEncoder()
    assert encoder.encode(b"") == b""            # Go's Flush of nothing writes nothing, not even the header
    first = encoder.encode(b"x")
    assert first[:10] == STREAM_IDENTIFIER
    # 1 byte does not compress: uncompressed chunk, length 5 = CRC + 1
    assert first[10:] == b"\x01\x05\x00\x00" + struct.pack("<I", masked_crc32c(b"x")) + b"x"
    assert encoder.encode(b"y")[:1] == b"\x01"  # the identifier only once
    # A write larger than a chunk is cut at 65536 bytes.
    big = encoder.encode(bytes(MAX_CHUNK_DATA + 5))
    decoder = FrameDecoder()
    decoder.feed(first)
    assert decoder.feed(big) == bytes(MAX_CHUNK_DATA + 5)


def test_masked_crc_known_answer():
    # framing_format.txt: masked CRC-32C; CRC-32C("123456789") = 0xe3069283
    c = 0xE3069283
    assert masked_crc32c(b"123456789") == (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def test_go_reads_ours_and_we_read_go_in_any_pieces(go_snappy):
    rnd = random.Random(11)
    for trial in range(4):
        writes = [text(rnd, rnd.randrange(1, 90000)) if rnd.random() < 0.6 else rnd.randbytes(rnd.randrange(1, 70000))
                  for _ in range(12)]
        plain = b"".join(writes)
        decoded, err = go_snappy("decode", encode_all(writes))
        assert err == "" and hashlib.sha256(decoded).digest() == hashlib.sha256(plain).digest()
        stream = go_snappy("encode", writes)
        decoder = FrameDecoder()
        out, pos = [], 0
        while pos < len(stream):
            step = rnd.choice([1, 3, 4, 7, 100, 4096, 65536, 200000])
            out.append(decoder.feed(stream[pos:pos + step]))
            pos += step
            assert decoder.pending <= 76494 + 4
        assert b"".join(out) == plain and decoder.pending == 0


def chunk(kind: int, body: bytes) -> bytes:
    return struct.pack("<I", kind | len(body) << 8) + body


def data_chunk(kind: int, payload: bytes, crc_of: bytes = None) -> bytes:
    return chunk(kind, struct.pack("<I", masked_crc32c(payload if crc_of is None else crc_of)) + payload)


SKIPPABLE = [
    STREAM_IDENTIFIER + chunk(0xFE, b"\0" * 9) + data_chunk(1, b"abc"),      # padding
    STREAM_IDENTIFIER + chunk(0x80, b"whatever") + data_chunk(1, b"abc"),    # reserved skippable
    STREAM_IDENTIFIER + chunk(0xFD, b"") + data_chunk(1, b"abc") + STREAM_IDENTIFIER,  # identifier again
]

CORRUPT = {
    "no identifier": data_chunk(1, b"abc"),
    "bad identifier": chunk(0xFF, b"sNaPpX"),
    "short identifier": chunk(0xFF, b"sNaPp"),
    "reserved unskippable": STREAM_IDENTIFIER + chunk(0x02, b"\0" * 8),
    "checksum": STREAM_IDENTIFIER + data_chunk(1, b"abc", crc_of=b"abd"),
    "compressed checksum": STREAM_IDENTIFIER + data_chunk(0, bytes(cramjam.snappy.compress_raw(b"a" * 100)),
                                                          crc_of=b"b" * 100),
    "chunk shorter than crc": STREAM_IDENTIFIER + chunk(1, b"\0\0"),
    "uncompressed too long": STREAM_IDENTIFIER + data_chunk(1, bytes(MAX_CHUNK_DATA + 1)),
    "oversized chunk": STREAM_IDENTIFIER + struct.pack("<I", 0x80 | 76495 << 8),
    "garbage block": STREAM_IDENTIFIER + data_chunk(0, b"\xff\xff\xff\xff\xff\x0f"),
    "block decodes too long": STREAM_IDENTIFIER + data_chunk(0, b"\x81\x80\x04" + b"\0" * 8),
}


@pytest.mark.parametrize("stream", SKIPPABLE)
def test_skippable_chunks_as_go(go_snappy, stream):
    assert go_snappy("decode", stream) == (b"abc", "")
    assert FrameDecoder().feed(stream) == b"abc"


@pytest.mark.parametrize("name", sorted(CORRUPT))
def test_corrupt_streams_rejected_as_go(go_snappy, name):
    stream = CORRUPT[name]
    decoded, err = go_snappy("decode", stream)
    assert decoded is None and err, "Go accepted %s" % name
    decoder = FrameDecoder()
    with pytest.raises(SnappyFrameError):
        decoder.feed(stream)
    with pytest.raises(SnappyFrameError):  # the error sticks
        decoder.feed(b"")


def test_mutated_streams_never_crash_or_lie():
    """A small fuzz: flipped, cut and spliced valid streams either decode to
    exactly what Go's reader would accept (checksums make a wrong output
    practically impossible) or raise SnappyFrameError; memory stays bounded."""
    rnd = random.Random(5)
    writes = sample_writes(3)[:8]
    stream = encode_all(writes)
    plain = b"".join(writes)
    for trial in range(400):
        mutated = bytearray(stream)
        for _ in range(rnd.randrange(1, 4)):
            op = rnd.randrange(3)
            i = rnd.randrange(len(mutated))
            if op == 0:
                mutated[i] ^= 1 << rnd.randrange(8)
            elif op == 1:
                del mutated[i:i + rnd.randrange(1, 64)]
            else:
                mutated[i:i] = rnd.randbytes(rnd.randrange(1, 16))
        decoder = FrameDecoder()
        out = []
        try:
            for pos in range(0, len(mutated), 5000):
                out.append(decoder.feed(bytes(mutated[pos:pos + 5000])))
                assert decoder.pending <= 76494 + 4
        except SnappyFrameError:
            continue
        got = b"".join(out)
        # Whatever decoded is made of whole original writes' bytes in order,
        # or of chunks the mutation left intact: it must be a checksummed
        # piece, so never bytes that were not sent.
        assert got == plain[:len(got)] or all(piece in plain for piece in out if piece)


def test_compressed_conn_over_a_socket_pair():
    a, b = socket.socketpair()
    left, right = CompressedConn(a), CompressedConn(b)
    try:
        rnd = random.Random(2)
        payload = text(rnd, 300000) + rnd.randbytes(100000)
        left.sendall(payload[:1])
        left.sendall(memoryview(payload)[1:])   # any bytes-like object
        a.shutdown(socket.SHUT_WR)
        got = bytearray()
        buf = bytearray(7000)
        while True:
            if len(got) % 2:
                n = right.recv_into(buf)
                chunk = bytes(buf[:n])
            else:
                chunk = right.recv(12345)
            if not chunk:
                break
            got += chunk
        assert bytes(got) == payload
        assert right.recv(10) == b""
    finally:
        left.close()
        right.close()


def test_compressed_conn_eof_inside_a_chunk_is_an_error():
    a, b = socket.socketpair()
    right = CompressedConn(b)
    try:
        a.sendall(STREAM_IDENTIFIER + data_chunk(1, b"abcdef")[:-2])
        a.shutdown(socket.SHUT_WR)
        with pytest.raises(SnappyFrameError):
            right.recv(100)
    finally:
        a.close()
        right.close()
