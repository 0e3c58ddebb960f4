"""Real servers and tunnel servers for the legacy-program tests
(tests/test_run.py, tests/test_legacy_apps.py), each a child process on a
free 127.0.0.1 port, stopped on exit; and running an unmodified script
under ``python -m gkcp run``.

redis-server, memcached and kcptun-server are Debian packages; a missing one
raises (the test fails, never skips).  Every wait is bounded.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from tunnel_harness import REPO, Tunnel, free_port

START_TIMEOUT = 15.0
KEY = "legacy-test-key"
#: what both tunnel servers and the routes agree on (kcptun flags; the URL spells them as parameters)
TUNNEL_FLAGS = ["--key", KEY, "--mode", "fast3"]
TUNNEL_QUERY = "key=%s&mode=fast3" % KEY

#: the HTTP/1.1 keep-alive server: /small answers with the port of the connection it came on
#: (X-Client-Port), /big with BIG_BODY_SIZE deterministic bytes (SHA-256 in X-Sha256)
HTTP_SERVER = r'''
import hashlib, http.server, random, sys
BODY = random.Random(1234).randbytes(int(sys.argv[2]))
DIGEST = hashlib.sha256(BODY).hexdigest()

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = BODY if self.path == "/big" else ("ok %s" % self.path).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Client-Port", str(self.client_address[1]))
        self.send_header("X-Sha256", DIGEST if self.path == "/big" else "")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
'''
BIG_BODY_SIZE = 5_000_000


def binary(name: str) -> str:
    """Path of a Debian server binary; RuntimeError (a failure, not a skip) when missing."""
    path = shutil.which(name) or "/usr/bin/" + name
    if not os.access(path, os.X_OK):
        raise RuntimeError("%s is not installed (Debian: apt-get install %s)" % (name, name))
    return path


def wait_tcp(port: int, proc: subprocess.Popen, what: str, timeout: float = START_TIMEOUT) -> None:
    end = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None:
                raise AssertionError("%s exited with %s" % (what, proc.returncode))
            if time.monotonic() > end:
                raise AssertionError("%s not listening on 127.0.0.1:%d after %g s" % (what, port, timeout))
            time.sleep(0.05)


@contextlib.contextmanager
def daemon(command: Sequence[str], port: int, what: str) -> Iterator[int]:
    """Run command until the block ends (SIGTERM, then SIGKILL); yields port once it accepts."""
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(list(command), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    try:
        try:
            wait_tcp(port, proc, what)
        except AssertionError as exc:
            log.seek(0)
            raise AssertionError("%s\n%s" % (exc, log.read().decode(errors="replace"))) from None
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


def redis_server() -> "contextlib.AbstractContextManager[int]":
    port = free_port()
    return daemon([binary("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                   "--appendonly", "no"], port, "redis-server")


def memcached() -> "contextlib.AbstractContextManager[int]":
    port = free_port()
    command = [binary("memcached"), "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-m", "64"]
    if os.geteuid() == 0:
        command += ["-u", "root"]  # memcached refuses to run as root otherwise
    return daemon(command, port, "memcached")


def http_server() -> "contextlib.AbstractContextManager[int]":
    port = free_port()
    return daemon([sys.executable, "-c", HTTP_SERVER, str(port), str(BIG_BODY_SIZE)], port, "http.server")


@contextlib.contextmanager
def tunnel_server(impl: str, target_port: int, flags: Sequence[str] = TUNNEL_FLAGS) -> Iterator[int]:
    """A kcptun-compatible server ("kcptun": Debian's kcptun-server, "gkcp":
    gkcp tunnel server) forwarding to 127.0.0.1:target_port; yields its UDP port."""
    kcp_port = free_port(socket.SOCK_DGRAM)
    with Tunnel(impl, "server", ["-l", "127.0.0.1:%d" % kcp_port, "-t", "127.0.0.1:%d" % target_port,
                                 "--quiet"] + list(flags)) as server:
        server.wait_log("listening on")
        yield kcp_port


def kcptun_url(kcp_port: int, extra: str = "") -> str:
    return "kcptun://127.0.0.1:%d?%s%s" % (kcp_port, TUNNEL_QUERY, "&" + extra if extra else "")


#: A program using a routed connection as a raw socket (select, poll, selectors, MSG_PEEK,
#: makefile, sendfile, setsockopt, settimeout, half-close, non-blocking connect,
#: getpeername): argv half-close|full-close, a dead port, the HTTP server's port.
RAW_PROGRAM = r"""
    import errno, os, select, selectors, socket, sys, tempfile
    HALF_CLOSE = sys.argv[1] == "half-close"
    DEAD, HTTP_PORT = int(sys.argv[2]), int(sys.argv[3])

    def request(path):
        return b"GET %s HTTP/1.1\r\nHost: legacy\r\n\r\n" % path.encode()

    def response(f):
        status = f.readline()
        assert status.startswith(b"HTTP/1.1 200"), status
        length = None
        while True:
            line = f.readline()
            if line in (b"\r\n", b""):
                break
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        return f.read(length)

    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    s.settimeout(10)
    s.connect(("10.255.0.4", 80))
    assert s.getpeername() == ("10.255.0.4", 80), s.getpeername()
    assert s._sock.getpeername()[0] == "127.0.0.1"   # the kernel connected to this host only
    assert s.fileno() >= 0 and s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1

    s.sendall(request("/select"))
    assert select.select([s], [], [], 10)[0] == [s]
    assert s.recv(12, socket.MSG_PEEK) == b"HTTP/1.1 200"   # peeked, still there
    f = s.makefile("rb")
    assert response(f) == b"ok /select"

    with tempfile.TemporaryFile() as body:
        body.write(request("/sendfile"))
        body.seek(0)
        s.sendfile(body)
    poller = select.poll()
    poller.register(s, select.POLLIN)
    assert poller.poll(10000)
    assert response(f) == b"ok /sendfile"

    selector = selectors.DefaultSelector()
    selector.register(s, selectors.EVENT_READ)
    s.sendall(request("/selectors"))
    assert selector.select(10)
    assert response(f) == b"ok /selectors"

    s.settimeout(0.3)
    try:
        s.recv(1)
        raise AssertionError("recv returned with nothing to read")
    except socket.timeout:
        pass
    s.settimeout(10)

    if HALF_CLOSE:  # our FIN reaches the server, which answers and then ends: EOF comes back
        s.sendall(request("/last"))
        s.shutdown(socket.SHUT_WR)
        assert response(f) == b"ok /last"
        assert f.read() == b""
    f.close()
    s.close()

    n = socket.socket()                      # non-blocking connect, then wait for writable
    n.setblocking(False)
    assert n.connect_ex(("10.255.0.4", 80)) in (0, errno.EINPROGRESS)
    assert select.select([], [n], [], 10)[1] == [n]
    n.setblocking(True)
    n.sendall(request("/nonblocking"))
    assert response(n.makefile("rb")) == b"ok /nonblocking"
    n.close()

    assert socket.gethostbyname("web.legacy.test").startswith("127.255.")
    d = socket.socket()
    d.connect(("web.legacy.test", 80))       # a routed name, connected to without a lookup
    d.sendall(request("/by-name"))
    assert response(d.makefile("rb")) == b"ok /by-name"
    d.close()

    try:                                     # unrouted: plain TCP, refused as ever
        socket.create_connection(("127.0.0.1", DEAD), timeout=5)
        raise AssertionError("connected to a dead port")
    except ConnectionRefusedError:
        pass
    try:                                     # a routed name on another port resolves as ever: here, not at all
        socket.create_connection(("web.legacy.test", 81), timeout=5)
        raise AssertionError("connected to an unresolvable name")
    except socket.gaierror:
        pass
    # "localhost" is routed on the dead port only: its other ports are plain TCP, looked up or not
    assert socket.create_connection(("localhost", DEAD), timeout=10).getpeername() == ("127.255.0.1", DEAD)
    plain = socket.create_connection(("localhost", HTTP_PORT), timeout=10)
    assert plain.getpeername()[1] == HTTP_PORT
    plain.close()
    plain = socket.create_connection((socket.gethostbyname("localhost"), HTTP_PORT), timeout=10)
    assert plain.getpeername()[1] == HTTP_PORT
    plain.sendall(request("/plain"))
    assert response(plain.makefile("rb")) == b"ok /plain"
    plain.close()
    print("raw ok")
"""

#: the connect timeout (seconds) the legacy test programs give their library (default 10): the
#: plain-python controls set it short, as their connects to routed addresses go nowhere useful
CONNECT_TIMEOUT_ENV = "LEGACY_CONNECT_TIMEOUT"


def run_program(tmp_path: Path, source: str, routes: Dict[str, str], args: Sequence[str] = (),
                timeout: float = 120, gkcp: bool = True, env: Optional[Dict[str, str]] = None,
                name: str = "program.py", module: bool = False,
                separator: bool = True) -> subprocess.CompletedProcess:
    """Write source (dedented) to tmp_path/name and run it under ``python -m
    gkcp run --route KEY=URL ... -- name`` (or plain python with gkcp=False).
    module=True runs it as ``-m`` the module name is for (``pkg/mod.py``:
    ``-m pkg.mod``, found from tmp_path, the working directory; no ``--``);
    separator=False leaves out the ``--`` before the script."""
    script = tmp_path / name
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(textwrap.dedent(source))
    command: List[str] = [sys.executable]
    if gkcp:
        command += ["-m", "gkcp", "run"]
        for key, url in routes.items():
            command += ["--route", "%s=%s" % (key, url)]
        if separator and not module:
            command.append("--")
    if module:
        assert name.endswith(".py"), name
        command += ["-m", name[:-3].replace("/", ".")]
    else:
        command.append(str(script))
    command += list(args)
    child_env = dict(os.environ, **(env or {}))
    child_env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in [child_env.get("PYTHONPATH")] if p])
    return subprocess.run(command, cwd=str(tmp_path), env=child_env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout)


def check(proc: subprocess.CompletedProcess, status: int = 0) -> str:
    """proc's stdout once it exited with status (its output in the failure message)."""
    assert proc.returncode == status, "exit %s (expected %s)\nstdout:\n%s\nstderr:\n%s" % (
        proc.returncode, status, proc.stdout, proc.stderr)
    return proc.stdout


def dead_tcp_port() -> int:
    """A 127.0.0.1 TCP port nothing listens on: the 'unreachable without gkcp' control."""
    return free_port()


__all__: Tuple[str, ...] = ("redis_server", "memcached", "http_server", "tunnel_server", "kcptun_url",
                            "run_program", "check", "dead_tcp_port", "TUNNEL_FLAGS", "BIG_BODY_SIZE",
                            "CONNECT_TIMEOUT_ENV", "RAW_PROGRAM")
