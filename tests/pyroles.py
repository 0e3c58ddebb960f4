"""The Go peer's roles (tests/go/peer) played by gkcp sessions, so every
pairing -- gkcp<->kcp-go in both directions, gkcp<->gkcp -- runs the same
byte-exact, hash-checked exchange.  Each function returns hex digests."""
from __future__ import annotations

import hashlib
import time
from typing import Any, Callable, Dict, Tuple

import gevent

from gopeer import PayloadStream, stream_digest

CHUNK = 65536


def recv_exactly(session: Any, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        piece = session.recv(min(CHUNK, n - len(out)))
        if not piece:
            raise EOFError("session ended after %d of %d bytes" % (len(out), n))
        out += piece
    return bytes(out)


def play_send(session: Any, n: int, seed: int = 1) -> Dict[str, str]:
    """Pairs with 'sink': send n payload bytes, read the peer's digest."""
    for piece in PayloadStream(seed).chunks(n):
        session.sendall(piece)
    peer = recv_exactly(session, 32).hex()
    return {"sent": stream_digest(seed, n), "peer": peer}


def play_sink(session: Any, n: int) -> Dict[str, str]:
    """Pairs with 'send': read n bytes, answer with their digest."""
    h = hashlib.sha256()
    got = 0
    while got < n:
        piece = session.recv(min(CHUNK, n - got))
        if not piece:
            raise EOFError("session ended after %d of %d bytes" % (got, n))
        h.update(piece)
        got += len(piece)
    session.sendall(h.digest())
    return {"hex": h.hexdigest()}


def play_recv(session: Any, n: int) -> Dict[str, str]:
    """Pairs with 'source': open with one byte, read n bytes, send digest."""
    session.sendall(b"\x01")
    return play_sink(session, n)


def play_source(session: Any, n: int, seed: int = 1) -> Dict[str, str]:
    """Pairs with 'recv': wait for the opening byte, then act as 'send'."""
    recv_exactly(session, 1)
    return play_send(session, n, seed)


def run_with_deadline(fn: Callable[..., Any], *args: Any, timeout: float = 120) -> Any:
    """Run fn in a greenlet; raise if it fails or exceeds timeout."""
    g = gevent.spawn(fn, *args)
    g.join(timeout)
    if not g.ready():
        g.kill()
        raise TimeoutError("%s did not finish in %s s" % (fn.__name__, timeout))
    return g.get()


def wait_process(peer: Any, timeout: float) -> None:
    """Let the hub run while a Go peer finishes (GoPeer.wait sleeps the thread)."""
    end = time.monotonic() + timeout
    while peer.running and time.monotonic() < end:
        gevent.sleep(0.02)
    peer.wait(timeout=max(0.1, end - time.monotonic()))


def pair_digests(result: Dict[str, str]) -> Tuple[str, str]:
    return result.get("sent", result.get("hex")), result.get("peer", result.get("hex"))
