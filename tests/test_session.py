"""gkcp <-> gkcp over 127.0.0.1: transfers, many sessions, timeouts,
deadlines, close, bad input, argument validation, resource release."""
import errno
import hashlib
import os
import socket
import time

import gevent
import pytest

import gkcp
from gkcp._core import lib
from gkcp.engine import get_engine
from pyroles import play_send, play_sink, recv_exactly, run_with_deadline

FAST = dict(nodelay=1, interval=10, resend=2, nc=1, sndwnd=1024, rcvwnd=1024)


def wait_until(condition, timeout=10.0):
    end = time.monotonic() + timeout
    while not condition() and time.monotonic() < end:
        gevent.sleep(0.05)
    return condition()


def transfer(n, **options):
    """Send n random bytes client -> server; return (sent digest, received digest)."""
    with gkcp.listen(("127.0.0.1", 0), **options) as listener:
        listener.settimeout(10)
        box = {}

        def serve():
            session, _ = listener.accept()
            with session:
                box.update(play_sink(session, n))

        server = gevent.spawn(serve)
        with gkcp.dial(listener.getsockname(), **options) as client:
            result = run_with_deadline(play_send, client, n, 3)
        server.join(10)
        assert server.successful(), server.exception
    return result, box


@pytest.mark.parametrize("stream", [False, True], ids=["message", "stream"])
def test_50mb_transfer_sha256(stream):
    result, box = transfer(50_000_000, stream=stream, **FAST)
    assert result["sent"] == result["peer"] == box["hex"]


def test_fallback_io_path_delivers_same_bytes():
    result, box = transfer(5_000_000, mmsg=False, **FAST)
    assert result["sent"] == result["peer"] == box["hex"]


def test_message_mode_preserves_boundaries_and_splits_large_reads():
    with gkcp.listen(("127.0.0.1", 0), **FAST) as listener:
        client = gkcp.dial(listener.getsockname(), **FAST)
        client.sendall(b"first")
        client.sendall(b"second message")
        server, _ = listener.accept()
        server.settimeout(5)
        assert server.recv(100) == b"first"
        # a reader smaller than the message gets it in parts, nothing lost
        assert server.recv(6) == b"second"
        assert server.recv(100) == b" message"
        client.close()
        server.close()


def test_200_sessions_echo_64k_each():
    count, size = 200, 64 * 1024
    payloads = [os.urandom(size) for _ in range(count)]
    with gkcp.listen(("127.0.0.1", 0), **FAST) as listener:
        listener.settimeout(20)

        def echo(session):
            with session:
                data = recv_exactly(session, size)
                session.sendall(data)
                gevent.sleep(0.5)

        def acceptor():
            for _ in range(count):
                session, _ = listener.accept()
                gevent.spawn(echo, session)

        acc = gevent.spawn(acceptor)

        def client(i):
            with gkcp.dial(listener.getsockname(), **FAST) as s:
                s.settimeout(20)
                s.sendall(payloads[i])
                return hashlib.sha256(recv_exactly(s, size)).digest()

        jobs = [gevent.spawn(client, i) for i in range(count)]
        gevent.joinall(jobs, timeout=60)
        acc.join(5)
    for i, job in enumerate(jobs):
        assert job.successful(), job.exception
        assert job.value == hashlib.sha256(payloads[i]).digest()


def test_listener_applies_options_before_first_packet():
    """kcp-go's accepted sessions run with 32/32 windows until Accept; ours
    have the listener's windows from their first packet (docs/wire.md §6)."""
    with gkcp.listen(("127.0.0.1", 0), **FAST) as listener:
        client = gkcp.dial(listener.getsockname(), **FAST)
        client.sendall(os.urandom(200 * 1300))  # more than 32 segments
        gevent.sleep(0.3)  # the application is slow to accept
        server, _ = listener.accept()
        info = server.info()
        assert info["rcv_wnd"] == 1024 and info["snd_wnd"] == 1024
        # the early segments were all taken in although nobody read them
        assert info["nrcv_que"] + info["nrcv_buf"] > 32
        client.close()
        server.close()


def test_recv_timeout_and_deadlines():
    with gkcp.listen(("127.0.0.1", 0)) as listener:
        client = gkcp.dial(listener.getsockname())
        client.settimeout(0.2)
        with pytest.raises(socket.timeout):
            client.recv(10)
        client.settimeout(None)
        client.set_read_deadline(time.time() + 0.2)
        with pytest.raises(TimeoutError):
            client.recv(10)
        client.set_read_deadline(None)
        client.setblocking(False)
        with pytest.raises(BlockingIOError):
            client.recv(10)
        client.close()


def test_write_deadline_fires_when_window_is_full():
    # A peer that never answers: the send window (8 segments) fills up.
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        client = gkcp.dial(silent.getsockname(), sndwnd=8, connect_timeout=0)
        client.set_write_deadline(time.time() + 0.3)
        with pytest.raises(socket.timeout):
            for _ in range(100):
                client.send(os.urandom(1300))
        client.close()
    finally:
        silent.close()


def test_accept_timeout():
    with gkcp.listen(("127.0.0.1", 0)) as listener:
        listener.settimeout(0.1)
        with pytest.raises(socket.timeout):
            listener.accept()


def test_close_is_idempotent_and_use_after_close_is_ebadf():
    with gkcp.listen(("127.0.0.1", 0)) as listener:
        client = gkcp.dial(listener.getsockname())
        client.close()
        client.close()
        for call in (lambda: client.recv(1), lambda: client.send(b"x"), lambda: client.sendall(b"x")):
            with pytest.raises(OSError) as info:
                call()
            assert info.value.errno == errno.EBADF
    with pytest.raises(OSError) as info:
        listener.accept()
    assert info.value.errno == errno.EBADF


def test_close_wakes_a_blocked_reader():
    with gkcp.listen(("127.0.0.1", 0)) as listener:
        client = gkcp.dial(listener.getsockname())
        reader = gevent.spawn(client.recv, 10)
        gevent.sleep(0.05)
        client.close()
        reader.join(2)
        assert isinstance(reader.exception, OSError) and reader.exception.errno == errno.EBADF


def test_close_lingers_until_data_is_delivered():
    data = os.urandom(2_000_000)
    with gkcp.listen(("127.0.0.1", 0), **FAST) as listener:
        listener.settimeout(10)

        def serve():
            server, _ = listener.accept()
            server.settimeout(10)
            with server:
                return recv_exactly(server, len(data))

        reader = gevent.spawn(serve)
        client = gkcp.dial(listener.getsockname(), **FAST)
        client.settimeout(10)
        client.sendall(data)
        client.close()  # returns at once; the engine keeps retransmitting
        reader.join(15)
        assert reader.successful(), reader.exception
        assert reader.value == data


def test_sessions_and_sockets_are_freed():
    with gkcp.listen(("127.0.0.1", 0), **FAST) as listener:
        server_endpoint = listener._endpoint
        clients = [gkcp.dial(listener.getsockname(), **FAST) for _ in range(20)]
        for c in clients:
            c.sendall(b"hello")
        servers = [listener.accept()[0] for _ in clients]
        assert lib.gk_udp_sessions(server_endpoint.c) == 20
        client_sockets = [c._endpoint.sock for c in clients]
        for s in servers + clients:
            s.close()
    # every C session freed, every UDP socket closed, nothing left registered
    engine = get_engine()
    assert wait_until(lambda: server_endpoint.c is None and all(c._endpoint.c is None for c in clients))
    assert all(sock.fileno() == -1 for sock in client_sockets + [server_endpoint.sock])
    assert not any(e in engine._endpoints.values() for e in [server_endpoint] + [c._endpoint for c in clients])


def test_idle_timeout_ends_session():
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        before = gkcp.snmp()["DeadLinks"]
        client = gkcp.dial(silent.getsockname(), idle_timeout=0.3, interval=10, connect_timeout=0)
        client.settimeout(5)
        assert client.recv(10) == b""  # the silent peer counts as gone
        with pytest.raises(ConnectionAbortedError, match="idle_timeout") as info:
            client.send(b"x")
        assert info.value.errno == errno.ETIMEDOUT
        # DeadLinks is process-wide: a session another test left lingering may
        # end in the same window, so this session adds at least one
        assert gkcp.snmp()["DeadLinks"] >= before + 1
        client.close()
    finally:
        silent.close()


def test_dead_link_ends_session_with_error():
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        client = gkcp.dial(silent.getsockname(), dead_link=3, nodelay=1, interval=10, connect_timeout=0)
        client.settimeout(10)
        client.sendall(b"nobody hears this")
        with pytest.raises(ConnectionAbortedError) as info:
            client.recv(10)
        assert info.value.errno == errno.ETIMEDOUT
        client.close()
    finally:
        silent.close()


def test_garbage_through_the_socket_is_dropped_and_counted():
    with gkcp.listen(("127.0.0.1", 0), **FAST) as listener:
        client = gkcp.dial(listener.getsockname(), **FAST)
        client.sendall(b"before")
        server, _ = listener.accept()
        server.settimeout(5)
        assert server.recv(100) == b"before"
        addr = listener.getsockname()
        before = gkcp.snmp()
        junk = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        conv = client.conv.to_bytes(4, "little")
        bad = [b"", b"x", os.urandom(23), os.urandom(1400),
               conv + bytes([81, 0]) + bytes(18),                                 # truncated header
               conv + bytes([81, 0, 0, 1]) + bytes(12) + (10**6).to_bytes(4, "little"),  # absurd len
               conv + bytes([99, 0]) + bytes(18) + bytes(4)]                      # unknown cmd
        for payload in bad:
            junk.sendto(payload, addr)
        # the same garbage from the client's own address hits its session
        client_sock = client._endpoint.sock
        for payload in bad[2:]:
            client_sock.sendto(payload, addr)
        gevent.sleep(0.2)
        junk.close()
        after = gkcp.snmp()
        dropped = sum(after[k] - before[k] for k in ("InErrs", "KCPInErrors"))
        assert dropped >= len(bad) - 1
        client.sendall(b"after")
        assert server.recv(100) == b"after"
        client.close()
        server.close()


def test_serve_and_dial_over_existing_sockets():
    lsock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    lsock.bind(("127.0.0.1", 0))
    csock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with gkcp.listen(None, sock=lsock, **FAST) as listener:
        client = gkcp.dial(lsock.getsockname(), sock=csock, **FAST)
        client.sendall(b"over my own socket")
        server, addr = listener.accept()
        assert addr == csock.getsockname()[:2] or addr[1] == csock.getsockname()[1]
        server.settimeout(5)
        assert server.recv(100) == b"over my own socket"
        client.close()
        server.close()


def test_makefile_round_trip():
    with gkcp.listen(("127.0.0.1", 0), stream=True, **FAST) as listener:
        client = gkcp.dial(listener.getsockname(), stream=True, **FAST)
        wfile = client.makefile("wb")
        wfile.write(b"line one\nline two\n")
        wfile.flush()
        server, _ = listener.accept()
        server.settimeout(5)
        rfile = server.makefile("rb")
        assert rfile.readline() == b"line one\n"
        assert rfile.readline() == b"line two\n"
        rfile.close()
        wfile.close()
        client.close()
        server.close()
        assert client.closed and server.closed


@pytest.mark.parametrize("kwargs, exc", [
    (dict(sndwnd=0), ValueError),
    (dict(rcvwnd=70000), ValueError),
    (dict(mtu=49), ValueError),
    (dict(mtu=1501), ValueError),
    (dict(interval=1), ValueError),
    (dict(mtu="1400"), TypeError),
    (dict(data_shards=0, parity_shards=3), ValueError),
    (dict(data_shards=200, parity_shards=100), ValueError),
    (dict(crypt="aes"), ValueError),
    (dict(bogus=1), TypeError),
    (dict(idle_timeout=-1), ValueError),
])
def test_invalid_options_raise(kwargs, exc):
    with pytest.raises(exc):
        gkcp.dial(("127.0.0.1", 9), **kwargs)
    with pytest.raises(exc):
        gkcp.listen(("127.0.0.1", 0), **kwargs)


@pytest.mark.parametrize("address, exc", [
    ("no-port", ValueError),
    (("127.0.0.1", 70000), ValueError),
    (("127.0.0.1", "80"), TypeError),
    (12345, TypeError),
    ((b"127.0.0.1", 80), TypeError),
])
def test_bad_addresses_raise(address, exc):
    with pytest.raises(exc):
        gkcp.dial(address)


def test_bad_timeouts_and_conv_raise():
    with gkcp.listen(("127.0.0.1", 0)) as listener:
        client = gkcp.dial(listener.getsockname())
        with pytest.raises(ValueError):
            client.settimeout(-1)
        with pytest.raises(TypeError):
            client.settimeout("1")
        client.close()
        with pytest.raises(ValueError):
            listener.settimeout(-0.5)
    with pytest.raises(ValueError):
        gkcp.dial(("127.0.0.1", 9), conv=-1)


def test_create_connection_mirrors_socket_module():
    with gkcp.listen(("127.0.0.1", 0), **FAST) as listener:
        session = gkcp.create_connection(listener.getsockname(), timeout=2.5, **FAST)
        assert session.gettimeout() == 2.5
        session.sendall(b"ping")
        server, _ = listener.accept()
        server.settimeout(5)
        assert server.recv(4) == b"ping"
        assert session.getpeername() == listener.getsockname()
        session.close()
        server.close()


def test_tuning_and_stats():
    with gkcp.listen(("127.0.0.1", 0)) as listener:
        client = gkcp.dial(listener.getsockname())
        client.set_nodelay(1, 10, 2, 1)
        client.set_window_size(256, 512)
        client.set_mtu(1200)
        client.set_stream_mode(True)
        client.set_ack_no_delay(True)
        client.set_write_delay(False)
        info = client.info()
        assert (info["nodelay"], info["interval"], info["fastresend"], info["nocwnd"]) == (1, 10, 2, 1)
        assert (info["snd_wnd"], info["rcv_wnd"], info["mtu"], info["stream"]) == (256, 512, 1200, 1)
        assert info["mss"] == 1200 - 24
        with pytest.raises(ValueError):
            client.set_mtu(2000)
        client.sendall(b"x" * 5000)
        server, _ = listener.accept()
        server.settimeout(5)
        recv_exactly(server, 5000)
        assert client.rto > 0 and client.srtt >= 0 and client.srttvar >= 0
        client.close()
        server.close()


def test_dial_announces_so_the_server_can_speak_first():
    with gkcp.listen(("127.0.0.1", 0), **FAST) as listener:
        listener.settimeout(5)
        client = gkcp.dial(listener.getsockname(), **FAST)
        server, _ = listener.accept()  # the client has written nothing
        server.sendall(b"220 greeting")
        client.settimeout(5)
        assert client.recv(100) == b"220 greeting"
        client.close()
        server.close()
        quiet = gkcp.dial(listener.getsockname(), announce=False, connect_timeout=0, **FAST)
        listener.settimeout(0.3)
        with pytest.raises(socket.timeout):
            listener.accept()
        quiet.close()
