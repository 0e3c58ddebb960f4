"""``python -m gkcp run``: the program runs as python would run it (argv,
__main__, sys.path[0], exit status, tracebacks, -m), with gevent patched
and the routes in force; a routed connection is a real socket (select,
poll, selectors, MSG_PEEK, makefile, sendfile, setsockopt, settimeout,
half-close, non-blocking connect, getpeername) -- through gkcp's tunnel
server and Debian's kcptun-server to an HTTP/1.1 server -- and a kcp://
route reaches a KCPServer directly.  Bad routes are usage errors naming
the route."""
import os
import select
import socket
import subprocess
import sys
import time

import pytest

from legacy_servers import (RAW_PROGRAM, check, dead_tcp_port, http_server, kcptun_url, redis_server, run_program,
                            tunnel_server)
from tunnel_harness import REPO, free_port


# -- the program runs as under python ------------------------------------------------------

def test_script_argv_main_path_and_gevent(tmp_path):
    (tmp_path / "helper_mod.py").write_text("VALUE = 42\n")
    out = check(run_program(tmp_path, """
        import sys, os
        import gevent.monkey, socket
        import helper_mod                      # found through sys.path[0], the script's directory
        print("argv", sys.argv)
        print("name", __name__, sys.modules["__main__"].__dict__ is globals())
        print("path0", sys.path[0])
        print("patched", gevent.monkey.is_module_patched("socket"), helper_mod.VALUE)
    """, {}, args=["a", "--b", "-m"]))
    assert "argv ['%s', 'a', '--b', '-m']" % (tmp_path / "program.py") in out
    assert "name __main__ True" in out
    assert "path0 %s" % os.path.realpath(tmp_path) in out
    assert "patched True 42" in out


def test_exit_status_and_traceback(tmp_path):
    proc = run_program(tmp_path, "import sys\nprint('bye')\nsys.exit(7)\n", {})
    assert proc.returncode == 7 and proc.stdout == "bye\n"
    proc = run_program(tmp_path, "def f():\n    raise KeyError('boom')\nf()\n", {})
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert 'program.py", line 3, in <module>' in lines[1]
    assert lines[-1] == "KeyError: 'boom'"
    assert "gkcp" not in proc.stderr and "runpy" not in proc.stderr, proc.stderr
    proc = run_program(tmp_path, "raise SystemExit('fatal: no config')\n", {})
    assert proc.returncode == 1 and proc.stderr == "fatal: no config\n"


def test_dash_m_module(tmp_path):
    (tmp_path / "tool.py").write_text("import sys\nprint('tool', __name__, sys.argv)\nsys.exit(3)\n")
    proc = subprocess.run([sys.executable, "-m", "gkcp", "run", "-m", "tool", "x", "-y"], cwd=str(tmp_path),
                          env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout == "tool __main__ ['%s', 'x', '-y']\n" % (tmp_path / "tool.py")
    proc = subprocess.run([sys.executable, "-m", "gkcp", "run", "-m", "no_such_module_here"], cwd=str(tmp_path),
                          env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "No module named no_such_module_here" in proc.stderr


@pytest.mark.parametrize("route,message", [
    ("10.0.0.1:80", "expected HOST:PORT=URL"),
    ("10.0.0.1=kcptun://h:1", "must be 'host:port'"),
    ("10.0.0.1:80=http://h:1", "route 10.0.0.1:80 -> http://h:1: the scheme must be kcptun:// or kcp://"),
    ("10.0.0.1:80=kcptun://h", "route 10.0.0.1:80 -> kcptun://h: the server port is missing"),
    ("10.0.0.1:80=kcptun://h:1?mode=turbo", "--mode turbo: unknown mode"),
    ("10.0.0.1:80=kcptun://h:1?conn=0", "--conn 0: must be in 1..65535"),
    ("10.0.0.1:80=kcptun://h:1?bogus=1", "unknown client flag 'bogus'"),
    ("10.0.0.1:80=kcptun://h:1?localaddr=:1", "localaddr is not a route parameter"),
    ("10.0.0.1:80=kcptun://h:1?key=a&key=b", "parameter 'key' given twice"),
    ("10.0.0.1:80=kcp://h:1?interval=1", "interval"),
    ("10.0.0.1:80=kcp://h:1?nodelay=yes-please", "nodelay=yes-please: not an integer"),
    ("10.0.0.1:80=kcp://h:1?crypt=aes", "needs key"),
    ("10.0.0.1:80=kcp://h:1?connect_timeout=-1", "connect_timeout=-1: must be a positive"),
])
def test_bad_route_is_a_usage_error_naming_it(tmp_path, route, message):
    proc = subprocess.run([sys.executable, "-m", "gkcp", "run", "--route", route, "nothing.py"], cwd=str(tmp_path),
                          env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_usage_errors_and_help(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    for argv, status in ([], 2), (["--route"], 2), (["--frobnicate", "x.py"], 2), (["--help"], 0):
        proc = subprocess.run([sys.executable, "-m", "gkcp", "run"] + argv, cwd=str(tmp_path), env=env,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == status, (argv, proc.stderr)
        assert "--route HOST:PORT=URL" in proc.stdout + proc.stderr
    proc = subprocess.run([sys.executable, "-m", "gkcp", "--help"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert "run" in proc.stdout and "--route" in proc.stdout


# -- a routed connection is a real socket ----------------------------------------------------

@pytest.mark.parametrize("server", ["gkcp", "kcptun"])
def test_raw_socket_program_with_select(tmp_path, server):
    # kcptun closes a stream both ways when either direction ends, so the
    # half-close is checked through gkcp's server, which passes the FIN on.
    mode = "half-close" if server == "gkcp" else "full-close"
    with http_server() as http_port, tunnel_server(server, http_port) as kcp_port:
        url = kcptun_url(kcp_port)
        dead = dead_tcp_port()
        routes = {"10.255.0.4:80": url, "web.legacy.test:80": url, "localhost:%d" % dead: url}
        out = check(run_program(tmp_path, RAW_PROGRAM, routes, args=[mode, str(dead), str(http_port)]))
    assert "raw ok" in out


KCP_SERVER = r"""
from gevent import monkey; monkey.patch_all()
import sys
from gkcp.server import KCPWSGIServer

BODY = bytes(range(256)) * 4096

def app(environ, start_response):
    body = BODY if environ["PATH_INFO"] == "/big" else environ["PATH_INFO"].encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]

server = KCPWSGIServer(("127.0.0.1", 0), app, log=None, nodelay=1, interval=10, resend=2, nc=1,
                       sndwnd=256, rcvwnd=256)
server.start()
print(server.server_port, flush=True)
server.serve_forever()
"""

KCP_PROGRAM = """
    import hashlib
    import requests
    session = requests.Session()
    for i in range(10):
        assert session.get("http://10.255.0.5:8000/n%d" % i, timeout=30).content == b"/n%d" % i
    body = session.get("http://10.255.0.5:8000/big", timeout=60).content
    assert body == bytes(range(256)) * 4096
    print("kcp ok")
"""


def test_kcp_route_to_a_kcp_server(tmp_path):
    server = subprocess.Popen([sys.executable, "-c", KCP_SERVER], stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ, PYTHONPATH=str(REPO)))
    try:
        ready, _, _ = select.select([server.stdout], [], [], 30)
        assert ready, "the KCP server did not start"
        port = int(server.stdout.readline())
        url = "kcp://127.0.0.1:%d?nodelay=1&interval=10&resend=2&nc=1&sndwnd=256&rcvwnd=256" % port
        out = check(run_program(tmp_path, KCP_PROGRAM, {"10.255.0.5:8000": url}))
    finally:
        server.kill()
        server.wait(10)
    assert "kcp ok" in out


def test_kcp_route_to_nothing_is_refused_at_connect(tmp_path):
    start = time.monotonic()
    out = check(run_program(tmp_path, """
        import socket
        try:
            socket.create_connection(("10.255.0.6", 9), timeout=20)
        except ConnectionRefusedError as exc:
            print("refused", exc)
    """, {"10.255.0.6:9": "kcp://127.0.0.1:%d" % free_port(socket.SOCK_DGRAM)}))
    assert out.startswith("refused [Errno 111] gkcp route 10.255.0.6:9 -> kcp://127.0.0.1:"), out
    assert time.monotonic() - start < 6     # python's start-up included: the ICMP error ends the connect


REFUSED_PROGRAM = """
    import socket, sys, time
    start = time.monotonic()
    try:
        socket.create_connection(("10.255.0.9", 9), timeout=20)
    except ConnectionRefusedError as exc:
        print("refused", __name__, sys.argv[1:], round(time.monotonic() - start, 3), exc)
"""


@pytest.mark.parametrize("how", ["dash-m", "no-separator"])
def test_routes_apply_to_a_module_and_to_a_script_without_separator(tmp_path, how):
    """``gkcp run --route R -m pkg.tool args`` and ``gkcp run --route R
    script.py args`` (no ``--``): the route is in force for both (the kcp://
    target has nothing listening, so the connect is refused by gkcp's
    route, not by TCP to 10.255.0.9, which would time out)."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    name = "pkg/tool.py" if how == "dash-m" else "program.py"
    routes = {"10.255.0.9:9": "kcp://127.0.0.1:%d" % free_port(socket.SOCK_DGRAM)}
    out = check(run_program(tmp_path, REFUSED_PROGRAM, routes, args=["x", "-y"], name=name,
                            module=how == "dash-m", separator=False))
    words = out.split()
    assert words[:4] == ["refused", "__main__", "['x',", "'-y']"], out
    assert float(words[4]) < 2 and "gkcp route 10.255.0.9:9 -> kcp://" in out, out


def test_writes_made_just_before_exit_reach_the_server(tmp_path):
    """The program writes 2 MB to a routed socket and exits without reading
    the reply or closing: the bytes still arrive, as TCP's kernel buffers
    would deliver them (gkcp run drains the bridges before exiting)."""
    import hashlib
    import random
    import redis
    value = random.Random(5).randbytes(2_000_000)
    with redis_server() as redis_port, tunnel_server("gkcp", redis_port) as kcp_port:
        check(run_program(tmp_path, """
            import random, socket
            value = random.Random(5).randbytes(2_000_000)
            s = socket.create_connection(("10.255.0.8", 6379))
            s.sendall(b"*3\\r\\n$3\\r\\nSET\\r\\n$4\\r\\nlast\\r\\n$%d\\r\\n%s\\r\\n" % (len(value), value))
        """, {"10.255.0.8:6379": kcptun_url(kcp_port)}))
        stored = redis.Redis("127.0.0.1", redis_port, socket_timeout=10).get("last")
    assert stored is not None and hashlib.sha256(stored).digest() == hashlib.sha256(value).digest()


TLS_ECHO = r"""
import socket, ssl, sys, threading
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(sys.argv[2], sys.argv[3])
listener = socket.create_server(("127.0.0.1", int(sys.argv[1])))

def echo(conn):
    try:
        with context.wrap_socket(conn, server_side=True) as tls:
            while True:
                data = tls.recv(65536)
                if not data:
                    break
                tls.sendall(data)
    except (OSError, ssl.SSLError):
        pass

while True:
    threading.Thread(target=echo, args=(listener.accept()[0],), daemon=True).start()
"""

TLS_PROGRAM = """
    import socket, ssl, sys
    context = ssl.create_default_context(cafile=sys.argv[1])
    with context.wrap_socket(socket.create_connection(("10.255.0.10", 443), timeout=20),
                             server_hostname="localhost") as tls:   # connected, then wrapped
        assert tls.getpeername() == ("10.255.0.10", 443)
        data = b"tls over kcp " * 20000
        tls.sendall(data)
        got = b""
        while len(got) < len(data):
            got += tls.recv(65536)
        assert got == data
        print("version", tls.version())
    tls = context.wrap_socket(socket.socket(), server_hostname="localhost")  # wrapped, then connected
    tls.settimeout(20)
    tls.connect(("10.255.0.10", 443))
    tls.sendall(b"second")
    assert tls.recv(6) == b"second"
    tls.close()
    print("tls ok")
"""


def test_tls_over_a_routed_socket(tmp_path):
    """ssl wraps a routed socket either way round (SSLSocket.connect is
    routed too); the certificate is verified against the name, end to end
    through the tunnel."""
    from legacy_servers import daemon
    cert, key = REPO / "examples" / "tls_test_cert.pem", REPO / "examples" / "tls_test_key.pem"
    port = free_port()
    with daemon([sys.executable, "-c", TLS_ECHO, str(port), str(cert), str(key)], port, "TLS echo"), \
            tunnel_server("gkcp", port) as kcp_port:
        out = check(run_program(tmp_path, TLS_PROGRAM, {"10.255.0.10:443": kcptun_url(kcp_port)}, args=[str(cert)]))
    assert "version TLSv1.3" in out and "tls ok" in out


def test_bridge_benchmark_runs():
    """python -m gkcp.bench bridge: the four ways, each with its figures (no speed is asserted)."""
    proc = subprocess.run([sys.executable, "-m", "gkcp.bench", "bridge", "--mb", "2", "--runs", "1"], cwd=str(REPO),
                          env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {line[:16].strip(): line[16:].split() for line in proc.stdout.splitlines()[2:]}
    assert set(rows) == {"kcp native", "kcp bridged", "kcptun native", "kcptun bridged"}, proc.stdout
    assert all(len(figures) == 2 and all(float(f) > 0 for f in figures) for figures in rows.values()), proc.stdout
