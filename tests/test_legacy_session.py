"""The native Session (gkcp.dial / create_connection / patch_create_connection)
is not a real socket: what it cannot do fails loudly, never silently --
MSG_PEEK and every other flag raise ValueError instead of being ignored
(MSG_PEEK would consume the data), a str raises the socket module's
TypeError, fileno() is -1 (select refuses it at once), and socket methods
it lacks (dup, detach: there is no descriptor) are missing rather than half
there.  Routed sockets (gkcp.monkey.patch,
gkcp run) are the real-socket path; see tests/test_run.py."""
import hashlib
import os
import select
import socket

import gevent
import pytest

import gkcp


@pytest.fixture
def session():
    listener = gkcp.listen(("127.0.0.1", 0), nodelay=1, interval=10)
    client = gkcp.dial(listener.getsockname(), nodelay=1, interval=10)
    client.sendall(b"hello")
    server, _ = listener.accept()
    yield client, server
    client.close()
    server.close()
    listener.close()


@pytest.mark.parametrize("flag", ["MSG_PEEK", "MSG_WAITALL", "MSG_DONTWAIT", "MSG_OOB", "MSG_TRUNC"])
def test_every_flag_is_refused_not_ignored(session, flag):
    client, server = session
    value = getattr(socket, flag)
    for call in (lambda: server.recv(5, value), lambda: server.recv_into(bytearray(5), 0, value),
                 lambda: client.send(b"x", value), lambda: client.sendall(b"x", value)):
        with pytest.raises(ValueError, match="flags are not supported on a KCP session, got %d" % value):
            call()
    assert server.recv(5) == b"hello"  # nothing was consumed by the refused peek


def test_str_and_descriptor(session):
    client, _ = session
    with pytest.raises(TypeError, match="a bytes-like object is required, not 'str'"):
        client.send("text")
    assert client.fileno() == -1
    with pytest.raises(ValueError):
        select.select([client], [], [], 0)  # a negative descriptor is refused at once
    for name in ("dup", "detach"):
        assert not hasattr(client, name), name


def test_timeout_attribute_and_sendfile(session, tmp_path):
    client, server = session
    assert server.recv(5) == b"hello"
    assert client.timeout is None
    client.settimeout(7)
    assert client.timeout == 7.0 == client.gettimeout()
    data = os.urandom(700_000)
    path = tmp_path / "payload"
    path.write_bytes(data)
    got = bytearray()

    def read() -> None:
        server.settimeout(10)
        while len(got) < 699_000:
            got.extend(server.recv(65536))

    reader = gevent.spawn(read)
    with open(path, "rb") as f:
        assert client.sendfile(f, offset=1000, count=500_000) == 500_000
        assert f.tell() == 501_000  # left after what was sent, as socket.sendfile leaves it
        assert client.sendfile(f, offset=501_000) == 199_000  # to the end
    reader.get(timeout=20)
    assert hashlib.sha256(got).digest() == hashlib.sha256(data[1000:]).digest()
    with open(path, "r") as text, pytest.raises(ValueError, match="binary mode"):
        client.sendfile(text)
    with open(path, "rb") as f:
        with pytest.raises(ValueError, match="count must be a positive integer"):
            client.sendfile(f, count=0)
        with pytest.raises(TypeError, match="offset must be an int"):
            client.sendfile(f, offset=1.5)
