"""What the kcp-go reference peer (gkcp/bench/goref/peer, built by
gkcp.bench.gobuild) and gkcp's own peer (``python -m gkcp.bench.peer``)
share: the payload stream and the output line protocol.

tests/gopeer.py imports these too, so the test harness and the benchmark
can never disagree about a byte or a line.  The module itself needs neither
gevent nor the C core (importing it loads the gkcp package, which does).
"""
from __future__ import annotations

import hashlib
import json
from typing import Iterator, Optional, Sequence

CHUNK = 65536  # payload chunk size, as in the peer


# ------------------------------------------------------------------- payload

def payload_chunk(seed: int, k: int) -> bytes:
    """Chunk k of seed's stream: SHAKE128(b"gkcp-peer" + u64le(seed) + u64le(k))."""
    hdr = (b"gkcp-peer" + (seed & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "little")
           + k.to_bytes(8, "little"))
    return hashlib.shake_128(hdr).digest(CHUNK)


class PayloadStream:
    """The peer's payload for a seed, byte for byte: chunk k (65536 bytes) is
    SHAKE128(b"gkcp-peer" + u64le(seed) + u64le(k))."""

    def __init__(self, seed: int = 1, offset: int = 0):
        self.seed = seed
        self.pos = offset
        self._k = -1
        self._buf = b""

    def read(self, n: int) -> bytes:
        out = []
        while n > 0:
            k, off = divmod(self.pos, CHUNK)
            if k != self._k:
                self._k, self._buf = k, payload_chunk(self.seed, k)
            piece = self._buf[off:off + n]
            out.append(piece)
            n -= len(piece)
            self.pos += len(piece)
        return out[0] if len(out) == 1 else b"".join(out)

    def chunks(self, n: int, size: int = CHUNK) -> Iterator[bytes]:
        """Yield the next n bytes in pieces of at most size bytes."""
        while n > 0:
            piece = self.read(min(size, n))
            n -= len(piece)
            yield piece


def stream_bytes(seed: int, n: int, offset: int = 0) -> bytes:
    """n payload bytes of the given seed starting at offset."""
    return PayloadStream(seed, offset).read(n)


def stream_digest(seed: int, n: int) -> str:
    """SHA-256 hex of the first n payload bytes of seed (what SEND/SOURCE report)."""
    h = hashlib.sha256()
    for piece in PayloadStream(seed).chunks(n):
        h.update(piece)
    return h.hexdigest()


def percentile(sorted_samples: Sequence[float], p: float) -> float:
    """Nearest-rank percentile, computed exactly as the Go peer's pct()."""
    rank = int(p / 100 * len(sorted_samples) + 0.999999)
    rank = min(max(rank, 1), len(sorted_samples))
    return sorted_samples[rank - 1]


# ------------------------------------------------------------- line protocol

RESULT_KINDS = ("SINK", "SOURCE", "ECHO", "SEND", "RECV", "RTT")


def parse_line(line: str) -> Optional[dict]:
    """Parse one peer output line into a dict with 'kind'; None for blank lines.

    Unknown lines come back as {'kind': 'UNKNOWN', 'line': line}.
    """
    line = line.rstrip("\r\n")
    if not line:
        return None
    kind, _, rest = line.partition(" ")
    a = rest.split()
    try:
        if kind == "READY":
            host, _, port = rest.rpartition(":")
            return {"kind": kind, "addr": rest, "host": host, "port": int(port)}
        if kind == "SINK":
            return {"kind": kind, "n": int(a[0]), "hex": a[1], "seconds": float(a[2])}
        if kind == "SOURCE":
            return {"kind": kind, "n": int(a[0]), "sent": a[1], "peer": a[2]}
        if kind == "ECHO" and len(a) == 1:
            return {"kind": kind, "n": int(a[0])}
        if kind == "ECHO":
            return {"kind": kind, "n": int(a[0]), "sent": a[1], "recv": a[2],
                    "seconds": float(a[3])}
        if kind == "SEND":
            return {"kind": kind, "n": int(a[0]), "sent": a[1], "peer": a[2],
                    "seconds": float(a[3]), "mbps": float(a[4])}
        if kind == "RECV":
            return {"kind": kind, "n": int(a[0]), "hex": a[1], "seconds": float(a[2])}
        if kind == "RTT":
            return {"kind": kind, "count": int(a[0]), "p50_us": float(a[1]),
                    "p99_us": float(a[2])}
        if kind in ("CPU", "WORK"):
            return {"kind": kind, "user": float(a[0]), "sys": float(a[1])}
        if kind == "SNMP":
            return {"kind": kind, "snmp": json.loads(rest)}
        if kind == "STAT":
            return {"kind": kind, **{k: int(v) for k, v in
                                     (x.split("=", 1) for x in a)}}
        if kind in ("EXIT", "TIMEOUT"):
            return {"kind": kind}
        if kind == "ERROR":
            return {"kind": kind, "msg": rest}
    except (IndexError, ValueError) as e:
        return {"kind": "UNKNOWN", "line": line, "error": str(e)}
    return {"kind": "UNKNOWN", "line": line}
