"""gkcp.monkey: routed create_connection reaches KCP for listed (host, port)
pairs only, legacy clients work unchanged, unpatch restores plain TCP and
the original functions, and everything holds after gevent.monkey.patch_all()
(checked in a child process, which patch_all cannot leak out of)."""
import http.client
import http.server
import os
import re
import socket
import subprocess
import sys
import textwrap
import threading
import xmlrpc.client
import xmlrpc.server

import gevent
import gevent.socket
import pytest

import gkcp
import gkcp.monkey
from gkcp.server import KCPWSGIServer

FAST = dict(nodelay=1, interval=10, resend=2, nc=1)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def app_saying(word):
    def app(environ, start_response):
        body = b"%s %s" % (word, environ["PATH_INFO"].encode())
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
    return app


def get(host, port, path="/"):
    conn = http.client.HTTPConnection(host, port, timeout=5)
    try:
        conn.request("GET", path)
        return conn.getresponse().read()
    finally:
        conn.close()


@pytest.fixture(autouse=True)
def always_unpatch():
    yield
    gkcp.monkey.unpatch()


class SayTCP(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = b"tcp " + self.path.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def kcp_and_tcp_on_one_port():
    """A KCP (UDP) and a TCP web server on the same port number: which one
    answers shows which transport create_connection chose.  The TCP one is
    the stdlib's in a real thread, since this process is not monkeypatched
    and http.client's plain sockets block the whole thread."""
    for _ in range(20):
        kcp = KCPWSGIServer(("127.0.0.1", 0), app_saying(b"kcp"), log=None, idle_timeout=5, **FAST)
        kcp.start()
        try:
            tcp = http.server.ThreadingHTTPServer(kcp.address, SayTCP)
        except OSError:  # the TCP port of that number is taken: try another
            kcp.stop()
            continue
        thread = threading.Thread(target=tcp.serve_forever, kwargs=dict(poll_interval=0.05), daemon=True)
        thread.start()
        yield kcp.address
        kcp.stop(timeout=0.5)
        tcp.shutdown()
        tcp.server_close()
        thread.join(5)
        return
    pytest.fail("no port number free for both UDP and TCP")


def test_routed_address_goes_over_kcp_and_back_to_tcp_after_unpatch(kcp_and_tcp_on_one_port):
    host, port = kcp_and_tcp_on_one_port
    assert get(host, port, "/a") == b"tcp /a"
    gkcp.monkey.patch_create_connection({(host, port): FAST})
    assert get(host, port, "/b") == b"kcp /b"
    conn = http.client.HTTPConnection(host, port, timeout=5)
    conn.request("GET", "/c")
    assert isinstance(conn.sock, gkcp.Session)
    assert conn.getresponse().read() == b"kcp /c"
    conn.close()
    gkcp.monkey.unpatch()
    assert get(host, port, "/d") == b"tcp /d"


def test_unrouted_addresses_stay_tcp_and_refusals_are_tcp_ones(kcp_and_tcp_on_one_port):
    host, port = kcp_and_tcp_on_one_port
    gkcp.monkey.patch_create_connection({(host, port): FAST})
    # matching is on the (host, port) the caller passes, without resolving names
    assert get("localhost", port, "/e") == b"tcp /e"
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((host, port + 1 if port < 65535 else port - 1), timeout=2)


def test_unpatch_puts_back_the_very_same_functions():
    originals = socket.create_connection, gevent.socket.create_connection
    gkcp.monkey.unpatch()  # unpatching what was never patched changes nothing
    assert (socket.create_connection, gevent.socket.create_connection) == originals
    gkcp.monkey.patch_create_connection({("127.0.0.1", 1): FAST})
    wrapped = socket.create_connection
    assert wrapped is not originals[0] and gevent.socket.create_connection is not originals[1]
    gkcp.monkey.patch_create_connection({("127.0.0.1", 2): FAST})  # again: routes replaced, no double wrap
    assert socket.create_connection is wrapped and wrapped.__wrapped__ is originals[0]
    assert gkcp.monkey.routes() == {("127.0.0.1", 2): FAST}
    gkcp.monkey.unpatch()
    gkcp.monkey.unpatch()
    assert socket.create_connection is originals[0] and gevent.socket.create_connection is originals[1]
    assert not gkcp.monkey.is_patched() and gkcp.monkey.routes() == {}


def test_bad_routes_are_refused_before_patching():
    original = socket.create_connection
    with pytest.raises(TypeError, match="unknown option"):
        gkcp.monkey.patch_create_connection({("127.0.0.1", 9): {"nodelai": 1}})
    with pytest.raises(ValueError):
        gkcp.monkey.patch_create_connection({"no-port": FAST})
    assert socket.create_connection is original and not gkcp.monkey.is_patched()


def test_route_keys_forms_timeouts_and_source_address():
    with gkcp.listen(("127.0.0.1", 0), **FAST) as listener:
        port = listener.getsockname()[1]
        gkcp.monkey.patch_create_connection({"LocalHost:%d" % port: FAST, ("127.0.0.1", port): FAST})
        with socket.create_connection(("localhost", port)) as s:  # host names ignore case
            assert isinstance(s, gkcp.Session) and s.gettimeout() is None
        with gevent.socket.create_connection(("127.0.0.1", port), 2.5) as s:
            assert isinstance(s, gkcp.Session) and s.gettimeout() == 2.5
        with socket.create_connection(("127.0.0.1", port), timeout=None,
                                      source_address=("127.0.0.1", 0)) as s:
            assert s.getsockname()[0] == "127.0.0.1" and s.gettimeout() is None
            s.sendall(b"ping")
            listener.settimeout(5)
            # each verified dial answered the listener's window ask, so all
            # three were accepted, in order
            accepted = [listener.accept() for _ in range(3)]
            for server, _ in accepted:
                server.close()
            assert accepted[-1][1] == s.getsockname()


def xmlrpc_app():
    dispatcher = xmlrpc.server.SimpleXMLRPCDispatcher(allow_none=True)
    dispatcher.register_function(lambda a, b: a * b, "mul")
    dispatcher.register_function(lambda: "kcp", "transport")

    def app(environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        reply = dispatcher._marshaled_dispatch(environ["wsgi.input"].read(length))
        start_response("200 OK", [("Content-Type", "text/xml"), ("Content-Length", str(len(reply)))])
        return [reply]
    return app


def test_xmlrpc_client_unchanged_over_kcp_then_tcp_after_unpatch():
    server = KCPWSGIServer(("127.0.0.1", 0), xmlrpc_app(), log=None, idle_timeout=5, **FAST)
    server.start()
    try:
        url = "http://127.0.0.1:%d/RPC2" % server.server_port
        gkcp.monkey.patch_create_connection({server.address: FAST})
        proxy = xmlrpc.client.ServerProxy(url)
        assert [proxy.mul(6, 7) for _ in range(20)] == [42] * 20  # one kept-alive session
        assert proxy.transport() == "kcp"
        gkcp.monkey.unpatch()
        with pytest.raises(ConnectionRefusedError):  # no TCP listener on that port number
            xmlrpc.client.ServerProxy(url).mul(1, 1)
    finally:
        server.stop(timeout=0.5)


CHILD = textwrap.dedent("""
    from gevent import monkey
    monkey.patch_all()
    import http.client, socket, threading
    import gevent.socket
    import gkcp, gkcp.monkey
    from gkcp.server import KCPWSGIServer

    FAST = dict(nodelay=1, interval=10, resend=2, nc=1)

    def app(environ, start_response):
        body = environ["PATH_INFO"].encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]

    server = KCPWSGIServer(("127.0.0.1", 0), app, log=None, idle_timeout=5, **FAST)
    server.start()
    assert socket.create_connection is gevent.socket.create_connection  # patch_all's
    gkcp.monkey.patch_create_connection({server.address: FAST})
    results = {}

    def worker(i):  # a "thread" that patch_all turned into a greenlet
        conn = http.client.HTTPConnection(*server.address, timeout=5)
        for j in range(5):
            conn.request("GET", "/t%d/%d" % (i, j))
            assert isinstance(conn.sock, gkcp.Session)
            results[(i, j)] = conn.getresponse().read()
        conn.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    assert results == {(i, j): b"/t%d/%d" % (i, j) for i in range(20) for j in range(5)}, results
    gkcp.monkey.unpatch()
    assert socket.create_connection is gevent.socket.create_connection
    try:
        socket.create_connection(server.address, timeout=2)
    except ConnectionRefusedError:
        pass
    else:
        raise AssertionError("TCP connection to a UDP-only port")
    server.stop(timeout=0.5)
    print("child ok")
""")


def test_after_patch_all_with_threads_turned_into_greenlets():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "child ok" in done.stdout


# -- patch(): every TCP connect to a routed address, a real socket bridged to KCP --------

def test_patch_refuses_bad_routes_naming_them():
    cases = [({("10.0.0.1", 80): "tcp://h:1"}, "route 10.0.0.1:80 -> tcp://h:1: the scheme must be"),
             ({"10.0.0.1:80": "kcptun://h:1?mode=warp"}, "route 10.0.0.1:80 -> kcptun://h:1?mode=warp: --mode warp"),
             ({"Web.Example:80": "kcp://h:1?sndwnd=0"}, "route web.example:80 -> kcp://h:1?sndwnd=0: sndwnd"),
             ({("10.0.0.1", 0): "kcp://h:1"}, "port 0"),
             ({":80": "kcp://h:1"}, "the host is missing")]
    for routes, message in cases:
        with pytest.raises(ValueError, match=re.escape(message)):
            gkcp.monkey.patch(routes)
    with pytest.raises(TypeError, match="the target must be a URL string"):
        gkcp.monkey.patch({("10.0.0.1", 80): dict(nodelay=1)})
    assert not gkcp.monkey.is_patched()


def test_patch_needs_gevent_monkey_patching():
    """This process is not monkey patched: a bridge could never run while
    the program blocks in a plain socket call."""
    with pytest.raises(RuntimeError, match="patch_all"):
        gkcp.monkey.patch({("10.0.0.1", 80): "kcp://127.0.0.1:9"})
    assert not gkcp.monkey.is_patched()


PATCH_CHILD = textwrap.dedent("""
    from gevent import monkey
    monkey.patch_all()
    import hashlib, os, socket, sys, threading
    import gevent.socket
    from gevent.server import StreamServer
    import gkcp.monkey

    kcp_port, target_port = int(sys.argv[1]), int(sys.argv[2])

    def echo(sock, address):
        while True:
            data = sock.recv(65536)
            if not data:
                break
            sock.sendall(data)
        sock.close()

    StreamServer(("127.0.0.1", target_port), echo).start()
    originals = (gevent.socket.socket.getpeername, socket.getaddrinfo, socket.gethostbyname)
    url = "kcptun://127.0.0.1:%d?key=legacy-test-key&mode=fast3" % kcp_port
    gkcp.monkey.patch({("10.255.0.9", 7): url, "echo.legacy.test:7": url})
    assert gkcp.monkey.routed() == {("10.255.0.9", 7): url, ("echo.legacy.test", 7): url}
    digests = {}

    def worker(i):  # a "thread" that patch_all turned into a greenlet
        data = os.urandom(200_000 + i)
        host = "10.255.0.9" if i % 2 else "echo.legacy.test"
        with socket.create_connection((host, 7), timeout=20) as s:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)  # the FIN crosses gkcp's tunnel server: the echo ends
            got = bytearray()
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
        digests[i] = hashlib.sha256(data).digest() == hashlib.sha256(got).digest()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert digests == {i: True for i in range(10)}, digests

    held = socket.create_connection(("10.255.0.9", 7), timeout=20)
    held.sendall(b"ping")
    assert held.recv(4) == b"ping"
    gkcp.monkey.unpatch()
    assert held.recv(4) == b""  # unpatch ended the routed connections
    assert "_internal_connect" not in gevent.socket.socket.__dict__
    assert (gevent.socket.socket.getpeername, socket.getaddrinfo, socket.gethostbyname) == originals
    assert gkcp.monkey.routed() == {} and not gkcp.monkey.is_patched()
    try:
        socket.create_connection(("127.0.0.1", kcp_port), timeout=5)  # plain TCP again: nothing there
    except ConnectionRefusedError:
        pass
    else:
        raise AssertionError("TCP connection to a UDP-only port")
    print("child ok")
""")


def test_patch_in_code_then_unpatch(tmp_path):
    from legacy_servers import tunnel_server
    from tunnel_harness import free_port
    target_port = free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    with tunnel_server("gkcp", target_port) as kcp_port:
        done = subprocess.run([sys.executable, "-c", PATCH_CHILD, str(kcp_port), str(target_port)], env=env,
                              capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "child ok" in done.stdout
