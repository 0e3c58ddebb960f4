"""gkcp.smux sessions and streams between two gkcp peers in one process, over
gkcp sessions (KCP stream mode) and over TCP socket pairs, plus hostile peers
written frame by frame on a raw socket."""
import errno
import gc
import socket
import time

import gevent
import pytest
from gevent import socket as gsocket

import gkcp
from gkcp import smux
from gkcp._smux_proto import CMD_FIN, CMD_NOP, CMD_PSH, CMD_SYN, encode_frame
from conftest import resource_usage, wait_until
from smuxpeer import read_exact, run_opener, serve_stream

FAST = dict(nodelay=1, interval=10, resend=2, nc=1, sndwnd=1024, rcvwnd=1024, stream=True, linger=0.2)
TRANSPORTS = ["kcp", "tcp"]
WAIT = 60  # bound of any one wait on a loaded machine
QUICK = smux.Config(keepalive_interval=0.2, keepalive_timeout=0.8)


def connected(transport):
    """Two connected stream endpoints over gkcp sessions or TCP."""
    if transport == "tcp":
        return gsocket.socketpair()
    with gkcp.listen(("127.0.0.1", 0), **FAST) as listener:
        listener.settimeout(10)
        a = gkcp.dial(listener.getsockname(), **FAST)
        b, _ = listener.accept()  # accepted sessions outlive the listener
    return a, b


def mux_pair(transport, config=None, server_config=None):
    a, b = connected(transport)
    return smux.client(a, config), smux.server(b, server_config or config)


def raw_peer(config=None, client=True):
    """(a smux session, the raw socket at the other end of its connection)."""
    a, b = gsocket.socketpair()
    b.settimeout(10)
    return (smux.client if client else smux.server)(a, config), b


def raw_frames(sock, count):
    """count frames read from sock as (cmd, sid, payload)."""
    frames = []
    for _ in range(count):
        header = read_exact(sock, 8)
        payload = read_exact(sock, int.from_bytes(header[2:4], "little"))
        frames.append((header[1], int.from_bytes(header[4:], "little"), payload))
    return frames


def serve_all(mux, count):
    mux.settimeout(WAIT)
    return [gevent.spawn(serve_stream, mux.accept_stream()) for _ in range(count)]


# ------------------------------------------------------------ data transfer

@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_fifty_streams_of_a_megabyte(transport, version):
    config = smux.Config(version=version)
    client, server = mux_pair(transport, config)
    with client, server:
        acceptor = gevent.spawn(serve_all, server, 50)
        openers = [gevent.spawn(run_opener, client, "UDEF"[i % 4], 1 << 20, i + 1) for i in range(50)]
        assert len(gevent.joinall(openers, timeout=WAIT, raise_error=True)) == 50
        served = gevent.joinall(acceptor.get(timeout=WAIT), timeout=WAIT, raise_error=True)
        assert len(served) == 50
        by_id = {job.get()["id"]: job.get() for job in served}
        for job in openers:
            sid, hexdigest = job.get()
            assert by_id[sid]["hex"] == hexdigest
        assert wait_until(lambda: client.num_streams() == server.num_streams() == 0)
        assert client.error is None and server.error is None


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_half_close_then_a_big_reply(transport):
    """shutdown(SHUT_WR) is a FIN: the peer reads b'' and still sends (more
    than a version-2 window) to the half-closed side, which keeps reading."""
    client, server = mux_pair(transport, smux.Config(version=2))
    with client, server:
        stream = client.open_stream()
        stream.settimeout(WAIT)
        stream.sendall(b"request")
        stream.shutdown(socket.SHUT_WR)
        with pytest.raises(BrokenPipeError):
            stream.send(b"more")
        server.settimeout(WAIT)
        peer = server.accept_stream()
        peer.settimeout(WAIT)
        assert read_exact(peer, 7) == b"request"
        assert peer.recv(10) == b""
        assert peer.recv(10) == b""  # EOF stays
        reply = bytes(range(256)) * 4096  # 1 MiB
        sender = gevent.spawn(peer.sendall, reply)
        assert read_exact(stream, len(reply)) == reply
        sender.get(timeout=WAIT)
        peer.close()
        assert stream.recv(10) == b""
        stream.close()
        assert wait_until(lambda: client.num_streams() == server.num_streams() == 0)


def test_recv_into_makefile_and_socket_names():
    client, server = mux_pair("tcp")
    with client, server:
        stream = client.open_stream()
        stream.settimeout(WAIT)
        server.settimeout(WAIT)
        assert stream.fileno() == -1 and stream.type == socket.SOCK_STREAM
        assert stream.getpeername() == client.getpeername()
        assert stream.getsockname() == client.getsockname()
        writer = stream.makefile("wb")
        writer.write(b"line one\nline two\n")
        writer.flush()
        peer = server.accept_stream()
        peer.settimeout(WAIT)
        reader = peer.makefile("r")
        assert reader.readline() == "line one\n"
        assert reader.readline() == "line two\n"
        writer.close()
        stream.close()  # a makefile object may outlive close(), as with sockets
        assert reader.read() == ""
        reader.close()
        peer.close()
        assert peer.closed
        other = client.open_stream()
        other.sendall(b"0123456789")
        peer = server.accept_stream()
        peer.settimeout(WAIT)
        buf = bytearray(20)
        assert peer.recv_into(buf, 4) == 4 and buf[:4] == b"0123"
        assert peer.recv_into(memoryview(buf)[4:]) == 6  # the rest of the same frame
        assert bytes(buf[:10]) == b"0123456789"
        with pytest.raises(TypeError):
            peer.recv_into(b"readonly")
        with pytest.raises(ValueError):
            peer.recv(-1)
        with pytest.raises(ValueError):
            peer.recv_into(buf, 100)


# ---------------------------------------------------- timeouts and deadlines

def test_timeouts_and_deadlines():
    client, server = mux_pair("tcp")
    with client, server:
        stream = client.open_stream()
        stream.settimeout(0.1)
        assert stream.gettimeout() == 0.1
        start = time.monotonic()
        with pytest.raises(socket.timeout):
            stream.recv(10)
        assert time.monotonic() - start >= 0.09
        stream.setblocking(False)
        assert not stream.getblocking()
        with pytest.raises(BlockingIOError):
            stream.recv(10)
        stream.setblocking(True)
        stream.set_read_deadline(time.time() - 1)
        with pytest.raises(socket.timeout):
            stream.recv(10)
        stream.set_read_deadline(None)
        # a deadline set while a reader waits wakes it at the new limit
        waiter = gevent.spawn(stream.recv, 10)
        gevent.sleep(0.05)
        stream.set_deadline(time.time() + 0.1)
        with pytest.raises(socket.timeout):
            waiter.get(timeout=5)
        stream.set_deadline(None)
        with pytest.raises(TypeError):
            stream.settimeout("1")
        with pytest.raises(ValueError):
            stream.settimeout(-1)
        with pytest.raises(TypeError):
            stream.set_deadline("soon")
        # accept honours the session's timeout and deadline
        server.settimeout(WAIT)
        peer = server.accept_stream()
        server.settimeout(0.05)
        with pytest.raises(socket.timeout):
            server.accept_stream()
        server.settimeout(0.0)
        with pytest.raises(BlockingIOError):
            server.accept_stream()
        server.settimeout(None)
        server.set_deadline(time.time() + 0.05)
        with pytest.raises(socket.timeout):
            server.accept_stream()
        server.set_deadline(None)
        # after all that, the stream works
        stream.settimeout(WAIT)
        stream.sendall(b"still fine")
        peer.settimeout(WAIT)
        assert read_exact(peer, 10) == b"still fine"


def test_v2_send_waits_for_the_window_then_resumes():
    client, server = mux_pair("tcp", smux.Config(version=2, max_stream_buffer=32768))
    with client, server:
        stream = client.open_stream()
        stream.settimeout(0.3)
        data = b"w" * 400_000
        sent = 0
        with pytest.raises(socket.timeout):
            while True:
                sent += stream.send(memoryview(data)[sent:])
        assert sent == 262144  # smux's initial guess of the peer's window, no more
        server.settimeout(WAIT)
        peer = server.accept_stream()
        peer.settimeout(WAIT)
        stream.settimeout(WAIT)
        sender = gevent.spawn(stream.sendall, memoryview(data)[sent:])
        assert read_exact(peer, len(data)) == data
        sender.get(timeout=WAIT)


def test_a_timeout_never_cuts_a_frame():
    """gevent.Timeout striking a sender at any point: the chunks it managed to
    hand over arrive whole and in order, and the session goes on."""
    client, server = mux_pair("kcp", smux.Config(version=1, max_frame_size=65535))
    with client, server:
        stream = client.open_stream()
        server.settimeout(WAIT)
        peer = server.accept_stream()
        peer.settimeout(WAIT)

        def read_all():
            pieces = []
            while piece := peer.recv(1 << 20):
                pieces.append(piece)
            return b"".join(pieces)

        reader = gevent.spawn(read_all)
        chunk = bytes(range(256)) * 256
        sent = 0
        for attempt in range(40):
            try:
                with gevent.Timeout(0.0003 * attempt):
                    while True:
                        sent += stream.send(chunk)
            except gevent.Timeout:
                pass
        stream.settimeout(WAIT)
        stream.sendall(b"end")
        stream.shutdown(socket.SHUT_WR)
        received = reader.get(timeout=WAIT)
        assert received.endswith(b"end")
        whole, rest = divmod(len(received) - 3, len(chunk))
        assert rest == 0 and whole * len(chunk) >= sent > 0
        assert received[:-3] == chunk * whole
        assert client.error is None and server.error is None


# ------------------------------------------------------- close and lifecycle

@pytest.mark.parametrize("transport", TRANSPORTS)
def test_stream_close(transport):
    client, server = mux_pair(transport)
    with client, server:
        stream = client.open_stream()
        stream.sendall(b"bye")
        server.settimeout(WAIT)
        peer = server.accept_stream()
        peer.settimeout(WAIT)
        assert client.num_streams() == 1
        stream.close()
        stream.close()  # idempotent
        assert stream.closed and client.num_streams() == 0
        for call in (lambda: stream.recv(1), lambda: stream.send(b"x"), lambda: stream.shutdown(socket.SHUT_WR)):
            with pytest.raises(OSError) as info:
                call()
            assert info.value.errno == errno.EBADF
        assert read_exact(peer, 3) == b"bye"
        assert peer.recv(1) == b""  # the FIN
        peer.sendall(b"into the void")  # dropped by the closed side, no error
        peer.close()
        assert wait_until(lambda: server.num_streams() == 0)
        assert wait_until(lambda: client.stats()["dropped_frames"] >= 2)  # the PSH and the FIN
        assert client.error is None and server.error is None


def test_session_close_semantics():
    client, server = mux_pair("tcp")
    stream = client.open_stream()
    stream.sendall(b"x")
    server.settimeout(WAIT)
    peer = server.accept_stream()
    peer.settimeout(WAIT)
    peer.sendall(b"buffered")
    assert wait_until(lambda: client._proto.buffered(stream.id) == 8)
    blocked_accept = gevent.spawn(client.accept_stream)
    blocked_recv = gevent.spawn(peer.recv, 100)  # got b"x" already? read it first
    gevent.sleep(0.05)
    with client:
        assert not client.closed
    assert client.closed and client.error is None and client.num_streams() == 0
    client.close()  # idempotent
    assert client.wait_closed(0)
    with pytest.raises(OSError) as info:
        blocked_accept.get(timeout=5)
    assert info.value.errno == errno.EBADF
    assert stream.recv(100) == b"buffered"  # what arrived before is still readable
    for call in (lambda: stream.recv(1), lambda: stream.send(b"y"), client.open_stream):
        with pytest.raises(OSError) as info:
            call()
        assert info.value.errno == errno.EBADF
    assert all(g.dead for g in client._greenlets)
    # the peer's session sees the connection end: its streams get the error
    assert blocked_recv.get(timeout=5) == b"x"
    with pytest.raises(ConnectionResetError):
        peer.recv(100)
    assert server.wait_closed(5) and isinstance(server.error, ConnectionResetError)
    stream.close()
    peer.close()


def test_resources_flat_after_session_and_stream_cycles():
    def cycle():
        client, server = mux_pair("kcp", QUICK)
        with client, server:
            for _ in range(3):
                stream = client.open_stream()
                stream.settimeout(WAIT)
                stream.sendall(b"ping")
                server.settimeout(WAIT)
                with server.accept_stream() as peer:
                    peer.settimeout(WAIT)
                    assert read_exact(peer, 4) == b"ping"
                    peer.sendall(b"pong")
                assert read_exact(stream, 4) == b"pong"
                assert stream.recv(1) == b""
                stream.close()

    # Earlier tests in the same process may still hold sessions (lingering
    # or not yet collected): compare with what was there before, not with 0.
    before = resource_usage()["engine_sessions"]
    for _ in range(5):
        cycle()
    assert wait_until(lambda: resource_usage()["engine_sessions"] <= before)
    base = resource_usage()
    for _ in range(40):
        cycle()
    gc.collect()
    wait_until(lambda: all(resource_usage()[k] <= base[k] for k in base if k != "rss_kib"), timeout=15)
    grown = {k: v - base[k] for k, v in resource_usage().items()}
    assert all(grown[k] <= 0 for k in grown if k != "rss_kib"), grown


def test_many_streams_in_one_session_leave_nothing():
    client, server = mux_pair("tcp")
    with client, server:
        server.settimeout(WAIT)
        for i in range(300):
            stream = client.open_stream()
            stream.sendall(b"%d" % i)
            peer = server.accept_stream()
            peer.close()
            stream.close()
        assert wait_until(lambda: client.num_streams() == server.num_streams() == 0)
        assert not client._streams and not server._streams
        assert client._proto.receive_budget == client.config.max_receive_buffer
        assert wait_until(lambda: server._proto.receive_budget == server.config.max_receive_buffer)


# ------------------------------------------------------------- keepalive

@pytest.mark.parametrize("transport", TRANSPORTS)
def test_keepalive_timeout_with_a_silent_peer(transport):
    a, b = connected(transport)  # b never says a word
    try:
        mux = smux.client(a, QUICK)
        stream = mux.open_stream()
        start = time.monotonic()
        with pytest.raises(smux.KeepaliveTimeout):
            stream.recv(10)
        assert time.monotonic() - start >= 0.75
        assert mux.closed and isinstance(mux.error, smux.KeepaliveTimeout)
        assert mux.error.errno == errno.ETIMEDOUT
        with pytest.raises(smux.KeepaliveTimeout):
            mux.accept_stream()
        assert mux.stats()["keepalives_out"] >= 3
    finally:
        b.close()


def test_keepalive_keeps_an_idle_session():
    client, server = mux_pair("kcp", QUICK)
    with client, server:
        gevent.sleep(2)
        assert not client.closed and not server.closed
        assert client.stats()["keepalives_in"] >= 5


def test_no_keepalive_timeout_while_reading_is_paused():
    """smux: a session that stopped reading because its buffers are full
    does not blame the peer for the silence."""
    config = QUICK.replace(max_receive_buffer=65536, max_stream_buffer=65536)
    client, server = mux_pair("tcp", config, server_config=smux.Config(keepalive_disabled=True))
    with client, server:
        peer = server.open_stream()
        data = b"p" * 500_000
        sender = gevent.spawn(peer.sendall, data)  # blocks: the client stops reading its socket
        assert wait_until(lambda: client._proto.receive_budget <= 0)
        gevent.sleep(2)  # more than two keepalive timeouts, nothing read
        assert not client.closed
        client.settimeout(WAIT)
        stream = client.accept_stream()
        stream.settimeout(WAIT)
        assert read_exact(stream, len(data)) == data
        sender.get(timeout=WAIT)


# --------------------------------------------- bounded buffers, hostile peers

@pytest.mark.parametrize("version", [1, 2])
def test_a_peer_that_never_reads_bounds_memory(version):
    config = smux.Config(version=version, max_receive_buffer=262144, max_stream_buffer=65536)
    client, server = mux_pair("kcp", config)
    with client, server:
        stream = client.open_stream()
        stream.settimeout(1)
        sent = 0
        with pytest.raises(socket.timeout):
            while sent < 50_000_000:
                sent += stream.send(b"m" * 65536)
        # version 2: the window stops the stream; version 1: the server stops
        # reading its session and KCP's windows stop the sender
        assert sent < 10_000_000
        proto = server._proto
        assert proto.receive_budget >= -smux._READ_SIZE
        assert sum(proto.buffered(sid) for sid in [stream.id]) <= config.max_receive_buffer + smux._READ_SIZE
        assert client.error is None and server.error is None


def test_v2_a_stalled_stream_does_not_block_another():
    config = smux.Config(version=2, max_receive_buffer=1 << 20, max_stream_buffer=65536)
    client, server = mux_pair("kcp", config)
    with client, server:
        stalled = client.open_stream()
        stalled.settimeout(1)
        with pytest.raises(socket.timeout):
            stalled.sendall(b"s" * 1_000_000)  # nobody reads it
        server.settimeout(WAIT)
        server.accept_stream()  # accepted, never read
        acceptor = gevent.spawn(lambda: serve_stream(server.accept_stream()))
        sid, hexdigest = run_opener(client, "U", 3_000_000, 5)
        assert acceptor.get(timeout=WAIT)["hex"] == hexdigest
        assert server.error is None and client.error is None


def test_syn_flood_is_bounded_by_the_backlog():
    mux, raw = raw_peer(smux.Config(backlog=16), client=False)
    with mux:
        flood = b"".join(encode_frame(1, CMD_SYN, 2 * i + 1) for i in range(5000))
        gevent.spawn(raw.sendall, flood)
        refused = raw_frames(raw, 5000 - 16)
        assert {cmd for cmd, _, _ in refused} == {CMD_FIN}
        assert [sid for _, sid, _ in refused] == [2 * i + 1 for i in range(16, 5000)]
        assert mux.num_streams() == 16 and mux.stats()["streams_refused"] == 5000 - 16
        mux.settimeout(WAIT)
        accepted = [mux.accept_stream().id for _ in range(16)]
        assert accepted == [2 * i + 1 for i in range(16)]
        assert mux.error is None
    raw.close()


@pytest.mark.parametrize("bad", [encode_frame(7, CMD_NOP, 0), encode_frame(1, 9, 3),
                                 encode_frame(1, CMD_PSH, 1001, b"x"), encode_frame(1, CMD_SYN, 9)],
                         ids=["version", "cmd", "psh-unopened", "syn-parity"])
def test_protocol_error_ends_the_session_cleanly(bad):
    mux, raw = raw_peer(client=True)
    stream = mux.open_stream()
    other = mux.open_stream()
    assert raw_frames(raw, 2) == [(CMD_SYN, 3, b""), (CMD_SYN, 5, b"")]
    waiting = gevent.spawn(other.recv, 10)
    raw.sendall(encode_frame(1, CMD_PSH, 3, b"kept") + bad + encode_frame(1, CMD_PSH, 3, b"never"))
    assert mux.wait_closed(5)
    assert isinstance(mux.error, smux.ProtocolError) and mux.error.errno == errno.EPROTO
    assert stream.recv(100) == b"kept"
    with pytest.raises(smux.ProtocolError):
        stream.recv(100)
    with pytest.raises(smux.ProtocolError):
        waiting.get(timeout=5)
    with pytest.raises(smux.ProtocolError):
        mux.open_stream()
    assert raw.recv(10) == b""  # the connection was closed
    raw.close()


def test_connection_eof_reaches_every_stream():
    mux, raw = raw_peer()
    stream = mux.open_stream()
    raw.sendall(encode_frame(1, CMD_PSH, 3, b"last words"))
    raw.close()
    assert mux.wait_closed(5)
    assert stream.recv(100) == b"last words"
    with pytest.raises(ConnectionResetError):
        stream.recv(100)


def test_hostile_but_legal_frames():
    """Zero-length PSH, repeated FIN, data after FIN, NOPs with any id."""
    mux, raw = raw_peer(client=False)
    with mux:
        frames = [encode_frame(1, CMD_SYN, 1), encode_frame(1, CMD_PSH, 1), encode_frame(1, CMD_PSH, 1, b"ok"),
                  encode_frame(1, CMD_FIN, 1), encode_frame(1, CMD_FIN, 1), encode_frame(1, CMD_PSH, 1, b"late"),
                  encode_frame(1, CMD_NOP, 77)]
        raw.sendall(b"".join(frames))
        mux.settimeout(WAIT)
        stream = mux.accept_stream()
        stream.settimeout(WAIT)
        assert read_exact(stream, 2) == b"ok"
        assert stream.recv(10) == b""
        assert wait_until(lambda: mux.stats()["keepalives_in"] == 1)
        assert mux.error is None


# ----------------------------------------------------------- configuration

@pytest.mark.parametrize("field, value, error", [
    ("version", 3, ValueError), ("version", True, TypeError), ("version", "1", TypeError),
    ("keepalive_disabled", 1, TypeError),
    ("keepalive_interval", 0, ValueError), ("keepalive_interval", "10", TypeError),
    ("keepalive_timeout", 5, ValueError),  # smaller than the interval
    ("max_frame_size", 0, ValueError), ("max_frame_size", 65536, ValueError), ("max_frame_size", 1.5, TypeError),
    ("max_receive_buffer", 0, ValueError),
    ("max_stream_buffer", 0, ValueError), ("max_stream_buffer", 1 << 31, ValueError),
    ("max_stream_buffer", 8 << 20, ValueError),  # larger than max_receive_buffer
    ("backlog", 0, ValueError),
])
def test_config_validation_names_the_field(field, value, error):
    with pytest.raises(error, match=field):
        smux.Config(**{field: value})


def test_config_defaults_are_smux_defaults():
    config = smux.Config()
    assert (config.version, config.keepalive_interval, config.keepalive_timeout, config.max_frame_size,
            config.max_receive_buffer, config.max_stream_buffer) == (1, 10, 30, 32768, 4194304, 65536)
    assert smux.Config(keepalive_disabled=True, keepalive_interval=0).keepalive_disabled
    assert config.replace(version=2).version == 2
    with pytest.raises(ValueError, match="version"):
        config.replace(version=0)


def test_other_threads_are_refused():
    import threading
    client, server = mux_pair("tcp")
    with client, server:
        stream = client.open_stream()
        errors = []

        def foreign():
            for call in (client.open_stream, client.accept_stream, client.close, lambda: stream.recv(1),
                         lambda: stream.send(b"x"), stream.close):
                try:
                    call()
                except RuntimeError as exc:
                    errors.append(exc)

        thread = threading.Thread(target=foreign)
        thread.start()
        thread.join(10)
        assert len(errors) == 6 and all("thread" in str(e) for e in errors)
        assert not client.closed and not stream.closed


def test_client_checks_its_arguments():
    with pytest.raises(TypeError, match="config"):
        smux.client(gsocket.socketpair()[0], {"version": 2})
    with pytest.raises(TypeError, match="recv"):
        smux.client(object())
