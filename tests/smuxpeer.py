"""Drive the Go smux peer (tests/go/smuxpeer: smux 1.5.16 over kcp-go 5.6.1
or TCP) from Python; its usage and line protocol are in its main.go.

    binary = build_smux_peer()
    with SmuxPeer("listen", binary=binary, streams=4, smuxver=2) as peer:
        host, port = peer.address
        ... open 4 streams to it, each starting with request(op, n, seed) ...
        peer.wait()
        peer.streams     # [{'id': 3, 'op': 'U', 'n': ..., 'hex': ...}, ...]

Per-stream ops (what the opener does): U send n payload bytes, read their
32-byte SHA-256, then EOF; D read n payload bytes, then EOF; E send n bytes
and read them back, then EOF; F send n bytes, then close.  The acceptor
closes its stream when its part is done.
"""
from __future__ import annotations

import hashlib
import struct
import subprocess
from pathlib import Path
from typing import Any, Dict, List, Tuple

import gevent

from gkcp.bench.gobuild import GOPATH, GoBuildError, build_go_program
from gkcp.bench.wire import PayloadStream
from gopeer import GoPeer

SMUX_SRC = GOPATH / "src" / "github.com" / "xtaci" / "smux"
SRC_DIR = Path(__file__).resolve().parent / "go" / "smuxpeer"
REQUEST = struct.Struct("<cQQ")  # op, n, seed: the first bytes of every stream


def build_smux_peer() -> str:
    """The Go smux peer's binary (built on first use).  Raises GoBuildError,
    never skips, when Go, kcp-go's or smux's source is missing."""
    if not SMUX_SRC.is_dir():
        raise GoBuildError(f"smux source not found at {SMUX_SRC} "
                           "(Debian: apt-get install golang-github-xtaci-smux-dev)")
    return build_go_program(SRC_DIR)


def request(op: str, n: int, seed: int) -> bytes:
    return REQUEST.pack(op.encode(), n, seed)


def capture(binary: str, version: int) -> Tuple[bytes, bytes]:
    """The bytes Go smux writes (client to server, server to client) for the
    fixed exchange of `smuxpeer capture`."""
    proc = subprocess.run([binary, "capture", f"-smuxver={version}", "-timeout=20s"],
                          capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        raise RuntimeError("smuxpeer capture failed: " + proc.stdout + proc.stderr)
    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines())
    return bytes.fromhex(lines["C2S"]), bytes.fromhex(lines["S2C"])


class SmuxPeer(GoPeer):
    """One run of `smuxpeer listen` or `smuxpeer dial` (process handling as
    GoPeer: context manager, wait(), READY/ERROR/TIMEOUT lines).  settings
    are the peer's flags without the dash (streams, ops, bytes, transport,
    smuxver, smuxbuf, streambuf, framesize, keepalive, sndwnd, rcvwnd, linger)."""

    def __init__(self, cmd: str, *, binary: str, addr: Any = None, timeout: float = 60,
                 **settings: Any) -> None:
        super().__init__(cmd, role="", addr=addr, timeout=timeout, binary=binary)
        if isinstance(addr, tuple):
            addr = f"{addr[0]}:{addr[1]}"
        self.argv = [binary, cmd, f"-addr={addr or '127.0.0.1:0'}", f"-timeout={timeout}s"]
        self.argv += [f"-{name}={value}" for name, value in settings.items()]

    @property
    def streams(self) -> List[Dict[str, Any]]:
        """The STREAM lines so far, parsed."""
        self._read()
        out = []
        for line in self.lines:
            kind, _, rest = line.partition(" ")
            if kind == "STREAM":
                sid, op, n, digest = rest.split()
                out.append({"id": int(sid), "op": op, "n": int(n), "hex": digest})
        return out

    def stream_by_id(self) -> Dict[int, Dict[str, Any]]:
        return {s["id"]: s for s in self.streams}

    @property
    def done(self) -> bool:
        self._read()
        return "DONE" in self.lines


# ------------------------------------------------- the Python side of the ops

def read_exact(stream: Any, n: int) -> bytes:
    """n bytes from stream; AssertionError at an early EOF."""
    pieces = []
    while n:
        piece = stream.recv(min(n, 65536))
        assert piece, "EOF %d bytes early" % n
        pieces.append(piece)
        n -= len(piece)
    return b"".join(pieces)


def expect_eof(stream: Any) -> None:
    assert stream.recv(1) == b"", "data where EOF was expected"


def send_payload(stream: Any, seed: int, n: int) -> str:
    """Send n payload bytes of seed; their SHA-256 hex."""
    digest = hashlib.sha256()
    for piece in PayloadStream(seed).chunks(n):
        digest.update(piece)
        stream.sendall(piece)
    return digest.hexdigest()


def check_payload(stream: Any, seed: int, n: int) -> str:
    """Read n bytes and compare them to seed's payload; their SHA-256 hex."""
    expected = PayloadStream(seed)
    digest = hashlib.sha256()
    left = n
    while left:
        piece = stream.recv(min(left, 65536))
        assert piece, "EOF after %d of %d payload bytes" % (n - left, n)
        assert piece == expected.read(len(piece)), "payload differs at byte %d" % (n - left)
        digest.update(piece)
        left -= len(piece)
    return digest.hexdigest()


def run_opener(mux: Any, op: str, n: int, seed: int, timeout: float = 60) -> Tuple[int, str]:
    """Open a stream on the smux session mux and run op as the opener;
    returns (stream id, SHA-256 hex of the payload it carried)."""
    with mux.open_stream() as stream:
        stream.settimeout(timeout)
        stream.sendall(request(op, n, seed))
        if op == "U":
            hexdigest = send_payload(stream, seed, n)
            assert read_exact(stream, 32).hex() == hexdigest, "the acceptor's digest differs"
        elif op == "D":
            hexdigest = check_payload(stream, seed, n)
        elif op == "E":
            sender = gevent.spawn(send_payload, stream, seed, n)
            hexdigest = check_payload(stream, seed, n)
            assert sender.get(timeout=timeout) == hexdigest
        elif op == "F":
            return stream.id, send_payload(stream, seed, n)  # closing sends the FIN it waits for
        else:
            raise ValueError("unknown op %r" % op)
        expect_eof(stream)
        return stream.id, hexdigest


def serve_stream(stream: Any, timeout: float = 60) -> Dict[str, Any]:
    """The acceptor's part of one stream, then close it; returns what a
    STREAM line says (id, op, n, hex)."""
    with stream:
        stream.settimeout(timeout)
        op, n, seed = REQUEST.unpack(read_exact(stream, REQUEST.size))
        op = op.decode()
        if op == "U":
            hexdigest = check_payload(stream, seed, n)
            stream.sendall(bytes.fromhex(hexdigest))
        elif op == "D":
            hexdigest = send_payload(stream, seed, n)
        elif op == "E":
            digest = hashlib.sha256()
            left = n
            while left:
                piece = stream.recv(min(left, 65536))
                assert piece, "EOF before the echo was complete"
                digest.update(piece)
                stream.sendall(piece)
                left -= len(piece)
            hexdigest = digest.hexdigest()
        elif op == "F":
            hexdigest = check_payload(stream, seed, n)
            expect_eof(stream)
        else:
            raise AssertionError("unknown op %r" % op)
        return {"id": stream.id, "op": op, "n": n, "hex": hexdigest}
