"""The native Session (gkcp.dial / create_connection / patch_create_connection)
is not a real socket: what it cannot do fails loudly, never silently --
MSG_PEEK and every other flag raise ValueError instead of being ignored
(MSG_PEEK would consume the data), a str raises the socket module's
TypeError, fileno() is -1 (select refuses it at once), and socket methods
it lacks are missing rather than half there.  Routed sockets (gkcp.monkey.patch,
gkcp run) are the real-socket path; see tests/test_run.py."""
import select
import socket

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
    for name in ("sendfile", "dup", "detach"):
        assert not hasattr(client, name), name
