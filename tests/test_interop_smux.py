"""gkcp.smux against Go's smux 1.5.16 (over kcp-go 5.6.1 or TCP), live, both
directions: every stream's payload is hash-checked on both sides, and each
side sees the other's FIN as EOF (the ops are described in tests/smuxpeer.py).
"""
import socket

import gevent
import pytest
from gevent import socket as gsocket

import gkcp
import smuxpeer
from gkcp import smux
from gkcp.bench import gobuild
from gkcp.bench.wire import stream_digest
from smuxpeer import SmuxPeer, run_opener, serve_stream

FAST = dict(nodelay=1, interval=10, resend=2, nc=1, sndwnd=1024, rcvwnd=1024, stream=True)
OPS = "UDEF"
STREAMS = 8
NBYTES = 300_000  # per stream: several frames, and more than a version-2 window
WAIT = 90  # seconds any one run may take on a loaded machine

# (smux version, transport, Go peer flags, gkcp Config changes)
CASES = {
    "v1-kcp": (1, "kcp", {}, {}),
    "v2-kcp": (2, "kcp", {}, {}),
    "v2-tcp": (2, "tcp", {}, {}),
    # small windows on both sides (many UPD round trips), Go's largest frames
    "v2-kcp-small-windows": (2, "kcp", {"streambuf": 16384, "smuxbuf": 65536, "framesize": 65535},
                             {"max_stream_buffer": 16384, "max_receive_buffer": 65536, "max_frame_size": 1000}),
    "v1-kcp-big-frames": (1, "kcp", {"framesize": 65535}, {"max_frame_size": 65535}),
}


def gkcp_dial(address, transport):
    if transport == "tcp":
        return gsocket.create_connection(address, timeout=10)
    return gkcp.dial(address, **FAST)


class Server:
    """A gkcp or TCP listener on 127.0.0.1 handing out one connection."""

    def __init__(self, transport):
        self.transport = transport
        if transport == "tcp":
            self.sock = gsocket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.bind(("127.0.0.1", 0))
            self.sock.listen(1)
        else:
            self.sock = gkcp.listen(("127.0.0.1", 0), **FAST)
        self.sock.settimeout(20)
        self.address = self.sock.getsockname()[:2]

    def accept(self):
        conn, _ = self.sock.accept()
        return conn

    def close(self):
        self.sock.close()


def expected(seed):
    return stream_digest(seed, NBYTES)


@pytest.mark.parametrize("case", CASES)
def test_gkcp_client_go_server(go_smux_peer_bin, case):
    version, transport, go_flags, changes = CASES[case]
    config = smux.Config(version=version, **changes)
    with SmuxPeer("listen", binary=go_smux_peer_bin, timeout=WAIT, streams=STREAMS, transport=transport,
                  smuxver=version, **go_flags) as peer:
        with smux.client(gkcp_dial(peer.address, transport), config) as mux:
            jobs = [gevent.spawn(run_opener, mux, OPS[i % len(OPS)], NBYTES, i + 1) for i in range(STREAMS)]
            done = gevent.joinall(jobs, timeout=WAIT, raise_error=True)
            assert len(done) == STREAMS, "streams still running after %d s" % WAIT
            assert mux.error is None
            assert mux.num_streams() == 0
            peer.wait()
    go_side = peer.stream_by_id()
    for i, job in enumerate(jobs):
        sid, hexdigest = job.get()
        assert sid % 2 == 1
        assert hexdigest == expected(i + 1)
        assert go_side[sid] == {"id": sid, "op": OPS[i % len(OPS)], "n": NBYTES, "hex": hexdigest}


@pytest.mark.parametrize("case", CASES)
def test_go_client_gkcp_server(go_smux_peer_bin, case):
    version, transport, go_flags, changes = CASES[case]
    config = smux.Config(version=version, **changes)
    server = Server(transport)
    try:
        with SmuxPeer("dial", binary=go_smux_peer_bin, addr=server.address, timeout=WAIT, streams=STREAMS,
                      ops=OPS, bytes=NBYTES, transport=transport, smuxver=version, **go_flags) as peer:
            with smux.server(server.accept(), config) as mux:
                mux.settimeout(20)
                jobs = [gevent.spawn(serve_stream, mux.accept_stream()) for _ in range(STREAMS)]
                done = gevent.joinall(jobs, timeout=WAIT, raise_error=True)
                assert len(done) == STREAMS, "streams still running after %d s" % WAIT
                assert mux.error is None
                peer.wait()
    finally:
        server.close()
    served = {job.get()["id"]: job.get() for job in jobs}
    go_side = peer.stream_by_id()
    assert sorted(served) == sorted(go_side) == [3 + 2 * i for i in range(STREAMS)]
    assert served == go_side
    # Go's goroutines open their streams in any order: match payloads, not ids
    assert sorted((s["op"], s["n"], s["hex"]) for s in served.values()) == sorted(
        (OPS[i % len(OPS)], NBYTES, expected(i + 1)) for i in range(STREAMS))


def test_keepalives_keep_both_sides_alive(go_smux_peer_bin):
    """Each side's NOPs are what keeps the other's short keepalive timeout
    from ending an idle session."""
    config = smux.Config(keepalive_interval=0.5, keepalive_timeout=2)
    with SmuxPeer("listen", binary=go_smux_peer_bin, timeout=WAIT, streams=1, keepalive=1,
                  keepalivetimeout=2) as peer:
        with smux.client(gkcp.dial(peer.address, **FAST), config) as mux:
            gevent.sleep(5)  # idle: only NOPs cross, both ways
            assert not mux.closed
            sid, hexdigest = run_opener(mux, "E", NBYTES, 7)
            assert mux.stats()["keepalives_in"] >= 3
            peer.wait()
    assert peer.streams == [{"id": sid, "op": "E", "n": NBYTES, "hex": expected(7)}]


def test_missing_smux_source_fails_the_build(monkeypatch, tmp_path):
    monkeypatch.setattr(smuxpeer, "SMUX_SRC", tmp_path / "absent")
    with pytest.raises(gobuild.GoBuildError, match="golang-github-xtaci-smux-dev"):
        smuxpeer.build_smux_peer()


def test_missing_go_fails_the_build(monkeypatch):
    monkeypatch.setattr(gobuild.shutil, "which", lambda name: None)
    with pytest.raises(gobuild.GoBuildError, match="Go toolchain"):
        smuxpeer.build_smux_peer()
