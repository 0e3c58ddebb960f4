"""The Go peer's roles (tests/go/peer) played by gkcp sessions, so every
pairing -- gkcp<->kcp-go in both directions, gkcp<->gkcp -- runs the same
byte-exact, hash-checked exchange.  Each function returns hex digests."""
from __future__ import annotations

import contextlib
import hashlib
import time
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Optional, Tuple

import gevent

from gopeer import PayloadStream, stream_digest

CHUNK = 65536


def pieces(session: Any, n: int):
    """Yield what session receives until exactly n bytes have come."""
    got = 0
    while got < n:
        piece = session.recv(min(CHUNK, n - got))
        if not piece:
            raise EOFError("session ended after %d of %d bytes" % (got, n))
        got += len(piece)
        yield piece


def recv_exactly(session: Any, n: int) -> bytes:
    return b"".join(pieces(session, n))


def play_send(session: Any, n: int, seed: int = 1) -> Dict[str, str]:
    """Pairs with 'sink': send n payload bytes, read the peer's digest."""
    for piece in PayloadStream(seed).chunks(n):
        session.sendall(piece)
    peer = recv_exactly(session, 32).hex()
    return {"sent": stream_digest(seed, n), "peer": peer}


def play_sink(session: Any, n: int) -> Dict[str, str]:
    """Pairs with 'send': read n bytes, answer with their digest."""
    h = hashlib.sha256()
    for piece in pieces(session, n):
        h.update(piece)
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


# ------------------------------------------------------------ transfers
#
# One hash-checked transfer between gkcp and the Go peer (or two gkcp
# sessions), optionally through a LossyRelay, shared by the interop test
# modules.  Each returns a Transfer whose `digests` must all be equal for the
# data to have arrived intact; the caller asserts that, so a mismatch shows
# every digest in the failure.

# kcp-go's fast mode with 1024-segment windows, the same on both sides.
FAST = dict(nodelay=1, interval=10, resend=2, nc=1, sndwnd=1024, rcvwnd=1024)


class Transfer(NamedTuple):
    digests: List[str]       # all equal iff the data arrived intact
    go: Any                  # the GoPeer (after exit), or None for gkcp<->gkcp
    relay: Optional[dict]    # final LossyRelay counters, or None


@contextlib.contextmanager
def maybe_relay(server_addr, relay: Optional[dict]) -> Iterator[Tuple[Any, Any]]:
    """Yield (address clients should use, LossyRelay or None); relay is a
    dict of LossyRelay keyword arguments or None for a direct path."""
    if relay is None:
        yield tuple(server_addr), None
        return
    from lossy_relay import LossyRelay
    with LossyRelay(tuple(server_addr), **relay) as r:
        yield r.address, r


def _stats(r: Any) -> Optional[dict]:
    return None if r is None else r.stop()


def to_go_listener(go_peer_bin: str, role: str, n: int, py_opts: dict, go_opts: dict, *,
                   seed: int = 7, relay: Optional[dict] = None, timeout: float = 60,
                   payload: Optional[Callable[[], Any]] = None) -> Transfer:
    """gkcp dials a Go listener playing role ('sink', 'source' or 'echo') and
    plays the other part.  For 'echo', payload() yields the chunks to send
    (default: the seed's stream)."""
    from gopeer import GoPeer
    import gkcp
    with GoPeer("listen", role=role, nbytes=n, seed=seed, binary=go_peer_bin,
                timeout=timeout, **go_opts) as srv:
        with maybe_relay(srv.address, relay) as (target, r):
            with gkcp.dial(target, **py_opts) as session:
                if role == "sink":
                    ours = run_with_deadline(play_send, session, n, seed, timeout=timeout)
                elif role == "source":
                    ours = run_with_deadline(play_recv, session, n, timeout=timeout)
                else:
                    chunks = payload() if payload else PayloadStream(seed).chunks(n)
                    ours = run_with_deadline(play_echo, session, chunks, timeout=timeout)
            wait_process(srv, 30)
            stats = _stats(r)
    theirs = srv.result
    if role == "sink":
        digests = [ours["sent"], ours["peer"], theirs["hex"]]
    elif role == "source":
        digests = [ours["hex"], stream_digest(seed, n), theirs["sent"], theirs["peer"]]
    else:
        digests = [ours["sent"], ours["recv"]]
    return Transfer(digests, srv, stats)


def from_go_dialer(go_peer_bin: str, role: str, n: int, py_opts: dict, go_opts: dict, *,
                   seed: int = 11, relay: Optional[dict] = None, timeout: float = 60) -> Transfer:
    """A Go dialer playing role ('send', 'recv' or 'echo') against a gkcp
    listener that plays the other part ('echo': gkcp echoes n bytes)."""
    from gopeer import GoPeer
    import gkcp
    with gkcp.listen(("127.0.0.1", 0), **py_opts) as listener:
        listener.settimeout(timeout)

        def serve():
            session, _ = listener.accept()
            with session:
                if role == "send":
                    return play_sink(session, n)
                if role == "recv":
                    return play_source(session, n, seed)
                return play_echo_back(session, n)

        server = gevent.spawn(serve)
        try:
            with maybe_relay(listener.getsockname(), relay) as (target, r):
                with GoPeer("dial", addr=target, role=role, nbytes=n, seed=seed,
                            binary=go_peer_bin, timeout=timeout, **go_opts) as cli:
                    server.join(timeout + 10)
                    if not server.ready():
                        raise TimeoutError("gkcp server did not finish")
                    ours = server.get()
                    wait_process(cli, 30)
                stats = _stats(r)
        finally:
            server.kill()
    theirs = cli.result
    if role == "send":
        digests = [ours["hex"], theirs["sent"], theirs["peer"]]
    elif role == "recv":
        digests = [ours["sent"], stream_digest(seed, n), theirs["hex"]]
    else:
        digests = [theirs["sent"], theirs["recv"]]
    return Transfer(digests, cli, stats)


def gkcp_pair(n: int, client_opts: dict, server_opts: dict, *, seed: int = 5,
              relay: Optional[dict] = None, timeout: float = 60) -> Transfer:
    """A gkcp client sends n bytes to a gkcp listener (optionally through a
    relay); the listener answers with their digest."""
    import gkcp
    with gkcp.listen(("127.0.0.1", 0), **server_opts) as listener:
        listener.settimeout(timeout)

        def serve():
            session, _ = listener.accept()
            with session:
                return play_sink(session, n)

        server = gevent.spawn(serve)
        try:
            with maybe_relay(listener.getsockname(), relay) as (target, r):
                with gkcp.dial(target, **client_opts) as session:
                    sent = run_with_deadline(play_send, session, n, seed, timeout=timeout)
                server.join(10)
                if not server.ready():
                    raise TimeoutError("gkcp server did not finish")
                stats = _stats(r)
            return Transfer([sent["sent"], sent["peer"], server.get()["hex"]], None, stats)
        finally:
            server.kill()


def play_echo(session: Any, chunks: Any) -> Dict[str, str]:
    """Pairs with 'echo': write the chunks while reading the same number of
    bytes back; digests of both."""
    sent = hashlib.sha256()
    total = [0]

    def writer():
        for piece in chunks:
            sent.update(piece)
            total[0] += len(piece)
            session.sendall(piece)

    w = gevent.spawn(writer)
    try:
        back = hashlib.sha256()
        got = 0
        while not (w.ready() and got >= total[0]):
            piece = session.recv(CHUNK)
            if not piece:
                raise EOFError("session ended after %d bytes echoed" % got)
            back.update(piece)
            got += len(piece)
        w.get()
    finally:
        w.kill()
    return {"sent": sent.hexdigest(), "recv": back.hexdigest()}


def play_echo_back(session: Any, n: int) -> Dict[str, int]:
    """Pairs with dial 'echo': send back every byte until n have passed."""
    for piece in pieces(session, n):
        session.sendall(piece)
    return {"n": n}


def snmp_delta(before: Dict[str, int]) -> Dict[str, int]:
    """gkcp counters grown since the snapshot `before` (gkcp.snmp())."""
    import gkcp
    return {k: v - before.get(k, 0) for k, v in gkcp.snmp().items()}
