"""gkcp.server: KCPServer keeps StreamServer's contract (handlers, listener
forms, spawn/pool limits, graceful stop), KCPWSGIServer serves pywsgi over
KCP, TLS runs over a session, and sessions refuse foreign OS threads."""
import http.client
import os
import socket
import ssl
import sys
import threading
import time

import gevent
import gevent.server
import gevent.socket
import pytest
from gevent.pool import Pool

import gkcp
import gkcp.monkey
from gkcp.server import KCPServer, KCPWSGIServer

FAST = dict(nodelay=1, interval=10, resend=2, nc=1)
EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


def streamserver_echo(sock, address):
    """Written for gevent.server.StreamServer; used unchanged over KCP."""
    rfile = sock.makefile("rb")
    try:
        for line in rfile:
            if line == b"quit\n":
                sock.sendall(b"bye %s\n" % str(type(sock).__name__).encode())
                break
            sock.sendall(line.upper())
    finally:
        rfile.close()


def talk(sock):
    rfile = sock.makefile("rb")
    replies = []
    for line in (b"hello\n", b"x" * 5000 + b"\n", b"quit\n"):
        sock.sendall(line)
        replies.append(rfile.readline())
    rfile.close()
    return replies


def kcp_client(server, timeout=5):
    return gkcp.create_connection(server.address, timeout=timeout, **FAST)


def bounded(greenlets, timeout=10):
    gevent.joinall(greenlets, timeout=timeout)
    for g in greenlets:
        assert g.successful(), g.exception
    return [g.value for g in greenlets]


@pytest.fixture
def servers():
    """Servers made by a test, stopped afterwards whatever happened."""
    made = []
    yield made
    for server in made:
        server.stop(timeout=0.5)


def test_streamserver_handler_runs_unchanged_over_kcp(servers):
    tcp = gevent.server.StreamServer(("127.0.0.1", 0), streamserver_echo)
    kcp = KCPServer(("127.0.0.1", 0), streamserver_echo, **FAST)
    servers += [tcp, kcp]
    tcp.start()
    kcp.start()
    with gevent.socket.create_connection(tcp.address, timeout=5) as sock:
        over_tcp = talk(sock)
    with kcp_client(kcp) as session:
        over_kcp = talk(session)
    assert over_tcp[:2] == over_kcp[:2] == [b"HELLO\n", b"X" * 5000 + b"\n"]
    assert over_tcp[2] == b"bye socket\n" and over_kcp[2] == b"bye Session\n"


@pytest.mark.parametrize("form", ["tuple", "string", "listener"])
def test_listener_forms_and_addresses(form, servers):
    if form == "listener":
        listener = gkcp.listen(("127.0.0.1", 0), **FAST)
        server = KCPServer(listener, streamserver_echo)
        assert server.address == listener.getsockname()
    else:
        server = KCPServer(("127.0.0.1", 0) if form == "tuple" else "127.0.0.1:0", streamserver_echo, **FAST)
    servers.append(server)
    assert not server.started
    server.start()
    assert server.started and server.server_host == "127.0.0.1" and server.server_port > 0
    assert server.address == (server.server_host, server.server_port)
    with kcp_client(server) as session:
        assert talk(session)[0] == b"HELLO\n"
    server.stop()
    assert not server.started and server.closed
    server.stop()  # idempotent
    server.close()


def test_bad_arguments_fail_at_construction():
    with pytest.raises(TypeError, match="unknown option"):
        KCPServer(("127.0.0.1", 0), streamserver_echo, nodelya=1)
    with pytest.raises(ValueError, match="interval"):
        KCPServer(("127.0.0.1", 0), streamserver_echo, interval=1)
    with gkcp.listen(("127.0.0.1", 0)) as listener:
        with pytest.raises(TypeError, match="Listener"):
            KCPServer(listener, streamserver_echo, nodelay=1)
    with pytest.raises(TypeError, match="handle"):
        KCPServer(("127.0.0.1", 0))
    with pytest.raises(ValueError):
        KCPServer("no-port-here", streamserver_echo)


def test_serve_forever_returns_after_stop_and_stop_ends_accepting(servers):
    server = KCPServer(("127.0.0.1", 0), streamserver_echo, **FAST)
    servers.append(server)
    runner = gevent.spawn(server.serve_forever)
    gevent.sleep(0.05)
    assert server.started
    port = server.server_port
    with kcp_client(server) as session:
        assert talk(session)[0] == b"HELLO\n"
    server.stop()
    runner.join(5)
    assert runner.dead and runner.successful()
    with pytest.raises(ConnectionRefusedError):  # the server's socket is closed
        gkcp.create_connection(("127.0.0.1", port), timeout=5, **FAST)


def test_graceful_stop_waits_for_handlers_then_kills_the_slow_ones(servers):
    finished, killed = [], []

    def handle(session, address):
        request = session.recv(100)
        try:
            gevent.sleep(0.3 if request == b"quick" else 30)
            session.sendall(b"done " + request)
            finished.append(request)
        except gevent.GreenletExit:
            killed.append(request)
            raise

    server = KCPServer(("127.0.0.1", 0), handle, spawn=Pool(10), **FAST)
    servers.append(server)
    server.start()
    clients = [kcp_client(server) for _ in range(4)]
    for i, client in enumerate(clients):
        client.sendall(b"quick" if i < 2 else b"slow")
    deadline = time.monotonic() + 5
    while len(server.pool) < 4 and time.monotonic() < deadline:
        gevent.sleep(0.01)
    assert len(server.pool) == 4
    start = time.monotonic()
    server.stop(timeout=1.0)
    took = time.monotonic() - start
    assert 0.9 < took < 3.0
    assert sorted(finished) == [b"quick", b"quick"] and killed == [b"slow", b"slow"]
    assert len(server.pool) == 0
    for client in clients[:2]:
        assert client.recv(100) == b"done quick"  # replies queued before stop still arrive
    for client in clients:
        client.close()


@pytest.mark.parametrize("spawn", [Pool(2), 2], ids=["Pool(2)", "int 2"])
def test_pool_of_two_limits_concurrent_handlers(spawn, servers):
    active, peak, served = [0], [0], []

    def handle(session, address):
        active[0] += 1
        peak[0] = max(peak[0], active[0])
        try:
            data = session.recv(100)
            gevent.sleep(0.1)
            session.sendall(data)
            served.append(data)
        finally:
            active[0] -= 1

    server = KCPServer(("127.0.0.1", 0), handle, spawn=spawn, **FAST)
    servers.append(server)
    server.start()

    def client(i):
        with gkcp.create_connection(server.address, timeout=10, **FAST) as session:
            session.sendall(b"client %d" % i)
            return session.recv(100)

    replies = bounded([gevent.spawn(client, i) for i in range(7)])
    assert replies == [b"client %d" % i for i in range(7)]
    assert peak[0] == 2 and len(served) == 7


def test_spawn_none_handles_in_the_accept_greenlet(servers):
    seen = []

    def handle(session, address):
        seen.append(gevent.getcurrent())
        session.sendall(session.recv(10))

    server = KCPServer(("127.0.0.1", 0), handle, spawn=None, **FAST)
    servers.append(server)
    server.start()
    for _ in range(2):
        with kcp_client(server) as session:
            session.sendall(b"ping")
            assert session.recv(10) == b"ping"
    assert seen[0] is seen[1] is server._acceptor


def test_failing_handler_does_not_stop_the_server(servers, capsys):
    def handle(session, address):
        if session.recv(10) == b"boom":
            raise ValueError("handler failure")
        session.sendall(b"fine")

    server = KCPServer(("127.0.0.1", 0), handle, **FAST)
    servers.append(server)
    server.start()
    with kcp_client(server) as bad:
        bad.sendall(b"boom")
        gevent.sleep(0.1)
    with kcp_client(server) as good:
        good.sendall(b"ok?")
        assert good.recv(10) == b"fine"
    assert server.started


def test_max_accept_lets_handlers_run_during_an_accept_burst(servers):
    order = []

    def handle(session, address):
        order.append("handler")

    class Server(KCPServer):
        max_accept = 3

        def do_read(self):
            args = super().do_read()
            order.append("accept")
            return args

    # all sessions are waiting before the server starts: one burst of accepts
    listener = gkcp.listen(("127.0.0.1", 0), **FAST)
    clients = [gkcp.dial(listener.getsockname(), **FAST) for _ in range(6)]
    for client in clients:
        client.sendall(b"x")
    deadline = time.monotonic() + 5
    while len(listener._pending) < 6 and time.monotonic() < deadline:
        gevent.sleep(0.01)
    server = Server(listener, handle)
    servers.append(server)
    server.start()
    while len(order) < 12 and time.monotonic() < deadline:
        gevent.sleep(0.01)
    assert order[:4] == ["accept"] * 3 + ["handler"]
    for client in clients:
        client.close()


def test_session_behaves_like_a_socket_for_handler_and_client(servers):
    """What code written for sockets relies on, across a KCPServer: file
    objects in every mode, timeouts, non-blocking mode, and b'' once the
    other side's session has ended (seen through idle_timeout: no FIN)."""
    def handle(session, address):
        f = session.makefile("rwb")
        f.write(f.readline().upper())
        f.flush()
        f.close()

    server = KCPServer(("127.0.0.1", 0), handle, **FAST)
    servers.append(server)
    server.start()
    session = gkcp.create_connection(server.address, timeout=5, idle_timeout=0.5, **FAST)
    with session:
        session.setblocking(False)
        with pytest.raises(BlockingIOError):
            session.recv(10)
        session.settimeout(0.05)
        with pytest.raises(socket.timeout):
            session.recv(10)
        session.settimeout(5)
        wfile, rfile = session.makefile("wb", buffering=4), session.makefile("rb")
        wfile.write(b"line over kcp\n")
        wfile.flush()
        assert rfile.readline() == b"LINE OVER KCP\n"
        start = time.monotonic()
        assert rfile.read() == b""  # the handler returned and closed; silence ends it
        assert 0.4 < time.monotonic() - start < 3
        wfile.close()
        rfile.close()


# -- pywsgi over KCP ---------------------------------------------------------------

def wsgi_app(environ, start_response):
    body = environ["wsgi.input"].read() if environ["REQUEST_METHOD"] == "POST" else b""
    reply = b"%s %s %d:%s" % (environ["REQUEST_METHOD"].encode(), environ["PATH_INFO"].encode(),
                              len(body), body[-8:])
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(reply)))])
    return [reply]


@pytest.fixture
def wsgi_server():
    server = KCPWSGIServer(("127.0.0.1", 0), wsgi_app, log=None, idle_timeout=5, **FAST)
    server.start()
    gkcp.monkey.patch_create_connection({server.address: FAST})
    yield server
    gkcp.monkey.unpatch()
    server.stop(timeout=0.5)


def test_wsgi_500_sequential_requests(wsgi_server):
    host, port = wsgi_server.address
    conn = http.client.HTTPConnection(host, port, timeout=10)  # keep-alive
    for i in range(400):
        conn.request("GET", "/seq/%d" % i)
        response = conn.getresponse()
        assert (response.status, response.read()) == (200, b"GET /seq/%d 0:" % i)
        assert isinstance(conn.sock, gkcp.Session)
    conn.close()
    for i in range(100):  # a new session per request
        conn = http.client.HTTPConnection(host, port, timeout=10)
        body = os.urandom(3000 + i)
        conn.request("POST", "/new/%d" % i, body=body, headers={"Connection": "close"})
        response = conn.getresponse()
        assert response.read() == b"POST /new/%d %d:%s" % (i, len(body), body[-8:])
        conn.close()


def test_wsgi_50_concurrent_requests(wsgi_server):
    host, port = wsgi_server.address

    def client(i):
        conn = http.client.HTTPConnection(host, port, timeout=10)
        body = os.urandom(20000 + i)
        conn.request("POST", "/c/%d" % i, body=body)
        response = conn.getresponse()
        got = response.read()
        conn.close()
        return got == b"POST /c/%d %d:%s" % (i, len(body), body[-8:])

    assert bounded([gevent.spawn(client, i) for i in range(50)], timeout=20) == [True] * 50


def test_wsgi_server_splits_pywsgi_and_kcp_arguments():
    log = []

    class Log:
        def write(self, line):
            log.append(line)

    server = KCPWSGIServer("127.0.0.1:0", wsgi_app, log=Log(), environ={"x.y": 1}, backlog=7,
                           spawn=3, **FAST)
    try:
        assert server.kcp_options["backlog"] == 7 and server.pool.size == 3
        server.start()
        assert server.socket.options.backlog == 7 and server.socket.options.interval == 10
        assert server.environ["x.y"] == 1 and server.environ["SERVER_PORT"] == str(server.server_port)
        with kcp_client(server) as session:
            session.sendall(b"GET /logged HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            rfile = session.makefile("rb")
            assert rfile.readline().startswith(b"HTTP/1.1 200")
            rfile.close()
        deadline = time.monotonic() + 5
        while not log and time.monotonic() < deadline:
            gevent.sleep(0.01)
        assert "/logged" in "".join(log)
    finally:
        server.stop(timeout=0.5)
    with pytest.raises(TypeError, match="certfile"):
        KCPWSGIServer(("127.0.0.1", 0), wsgi_app, certfile="x.pem")


# -- TLS over KCP ---------------------------------------------------------------------

def test_tls_round_trip_over_kcp(servers):
    sys.path.insert(0, EXAMPLES)
    try:
        import tls_over_kcp
    finally:
        sys.path.remove(EXAMPLES)
    cert = os.path.join(EXAMPLES, "tls_test_cert.pem")
    key = os.path.join(EXAMPLES, "tls_test_key.pem")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = KCPServer(("127.0.0.1", 0), tls_over_kcp.tls_echo_handler(context), **FAST)
    servers.append(server)
    server.start()
    # round_trip writes everything before reading the echo: the message must
    # fit what the two directions' windows (32 segments each) can hold
    message = os.urandom(60_000)
    reply, version, _ = tls_over_kcp.round_trip(server.address, cert, message)
    assert reply == message.upper() and version in ("TLSv1.2", "TLSv1.3")

    # the certificate is really checked: a name it does not carry fails
    with kcp_client(server) as session:
        tls = tls_over_kcp.TLSSession(ssl.create_default_context(cafile=cert), session,
                                      server_hostname="not-localhost")
        with pytest.raises(ssl.SSLCertVerificationError):
            tls.do_handshake()


# -- threads ----------------------------------------------------------------------------

def test_session_from_a_real_os_thread_raises_runtime_error(servers):
    server = KCPServer(("127.0.0.1", 0), streamserver_echo, **FAST)
    servers.append(server)
    server.start()
    session = kcp_client(server)
    errors = []

    def misuse():
        for call in (lambda: session.recv(10), lambda: session.sendall(b"x\n"),
                     lambda: server.socket.accept(), session.close):
            try:
                call()
            except RuntimeError as ex:
                errors.append(str(ex))

    thread = threading.Thread(target=misuse)
    thread.start()
    deadline = time.monotonic() + 5
    while thread.is_alive() and time.monotonic() < deadline:
        gevent.sleep(0.01)
    assert not thread.is_alive(), "a foreign thread blocked instead of failing"
    assert len(errors) == 4 and all("thread that created it" in e for e in errors)
    assert talk(session)[0] == b"HELLO\n"  # still fine in its own thread
    session.close()


def test_a_real_os_thread_dials_with_its_own_hub(servers):
    server = KCPServer(("127.0.0.1", 0), streamserver_echo, **FAST)
    servers.append(server)
    server.start()
    box = {}

    def in_thread():
        with gkcp.create_connection(server.address, timeout=5, **FAST) as session:
            box["replies"] = talk(session)

    thread = threading.Thread(target=in_thread)
    thread.start()
    deadline = time.monotonic() + 10
    while thread.is_alive() and time.monotonic() < deadline:
        gevent.sleep(0.01)  # the server runs in this thread's hub meanwhile
    thread.join(1)
    assert box["replies"][0] == b"HELLO\n"
