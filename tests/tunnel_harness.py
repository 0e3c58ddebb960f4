"""Running tunnel ends (Debian's kcptun binaries or ``python -m gkcp tunnel``)
as child processes, a TCP echo target, and hash-checked transfers through
them; shared by tests/test_tunnel*.py and tests/test_interop_kcptun.py.

Everything listens on 127.0.0.1 ports the kernel picked free; every wait is
bounded; a ``Tunnel`` is a context manager that ends its process (SIGTERM,
then SIGKILL) and keeps its log for the failure message.  The test process
runs gevent: the echo target and the transfers are greenlets, waiting for a
child polls with gevent.sleep.
"""
from __future__ import annotations

import hashlib
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Tuple

import gevent
from gevent import socket as gsocket
from gevent.server import StreamServer

# Shared with the benchmark (python -m gkcp.bench tunnel), which must not import from tests/.
from gkcp.bench import tunnel as bench_tunnel
from gkcp.bench.tunnel import free_port  # noqa: F401  (re-exported for the tests)

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0


def kcptun_binary(role: str) -> str:
    """Path of Debian's kcptun-client/-server; a RuntimeError (a test
    failure, never a skip) when it is not installed."""
    return bench_tunnel.kcptun_binary(role)


class Tunnel:
    """One tunnel end as a child process: ``impl`` "gkcp" or "kcptun",
    ``role`` "client" or "server", ``flags`` kcptun-style."""

    def __init__(self, impl: str, role: str, flags: Sequence[str], env: Optional[dict] = None) -> None:
        if impl == "kcptun":
            command = [kcptun_binary(role)]
        elif impl == "gkcp":
            command = [sys.executable, "-m", "gkcp", "tunnel", role]
        else:
            raise ValueError(impl)
        self.impl, self.role = impl, role
        self.command = command + list(flags)
        self._log = tempfile.TemporaryFile()
        child_env = dict(os.environ, **(env or {}))
        child_env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in [child_env.get("PYTHONPATH")] if p])
        self.proc = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, env=child_env, cwd=str(REPO))

    def log(self) -> str:
        """Everything the process printed (kept after it ended)."""
        if self._log.closed:
            return self._final_log
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def wait_log(self, text: str, timeout: float = START_TIMEOUT) -> None:
        """Until text appears in the output (the process is up), or fail."""
        end = time.monotonic() + timeout
        while text not in self.log():
            if self.proc.poll() is not None:
                raise AssertionError("%s exited with %s:\n%s" % (self.command, self.proc.returncode, self.log()))
            if time.monotonic() > end:
                raise AssertionError("%s did not log %r in %g s:\n%s" % (self.command, text, timeout, self.log()))
            gevent.sleep(0.05)

    def wait_exit(self, timeout: float = STOP_TIMEOUT) -> Optional[int]:
        end = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < end:
            gevent.sleep(0.05)
        return self.proc.poll()

    def stop(self) -> Optional[int]:
        """SIGTERM, then SIGKILL after STOP_TIMEOUT; the exit status of the first."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        status = self.wait_exit()
        if status is None:
            self.proc.kill()
            self.proc.wait(STOP_TIMEOUT)
        return status

    def __enter__(self) -> "Tunnel":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
        self._final_log = self.log()
        self._log.close()


def wait_tcp(port: int, timeout: float = START_TIMEOUT) -> None:
    """Until something accepts TCP connections on 127.0.0.1:port."""
    end = time.monotonic() + timeout
    while True:
        try:
            gsocket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > end:
                raise AssertionError("nothing listening on 127.0.0.1:%d after %g s" % (port, timeout))
            gevent.sleep(0.05)


class EchoServer:
    """TCP echo on 127.0.0.1 (a greenlet server): echoes until EOF, then
    closes.  ``connections`` counts accepted connections, ``active`` the
    ones still open."""

    def __init__(self) -> None:
        self.connections = 0
        self.active = 0
        self.server = StreamServer(("127.0.0.1", 0), self._echo)
        self.server.start()
        self.port = self.server.server_port

    def _echo(self, sock, address) -> None:
        self.connections += 1
        self.active += 1
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                sock.sendall(data)
        except OSError:
            pass
        finally:
            sock.close()
            self.active -= 1

    def __enter__(self) -> "EchoServer":
        return self

    def __exit__(self, *exc) -> None:
        self.server.stop(timeout=1)


def payload(seed: int, nbytes: int) -> bytes:
    """Half compressible text, half random bytes, so the snappy framing
    carries both compressed and uncompressed chunks."""
    rnd = random.Random(seed)
    words = [b"kcptun ", b"gkcp ", b"smux ", b"snappy ", b"\r\n", b"GET /index.html HTTP/1.1"]
    text = bytearray()
    while len(text) < nbytes // 2:
        text += rnd.choice(words)
    data = bytes(text[:nbytes // 2]) + rnd.randbytes(nbytes - nbytes // 2)
    return data


def echo_through(port: int, nbytes: int, seed: int, timeout: float = 120.0) -> Tuple[str, str]:
    """Send nbytes through 127.0.0.1:port while reading the echo back;
    close only after all came back (kcptun closes both directions at the
    first EOF).  Returns (sha256 sent, sha256 received)."""
    data = payload(seed, nbytes)
    sock = gsocket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        sender = gevent.spawn(sock.sendall, data)
        received = hashlib.sha256()
        count = 0
        while count < nbytes:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received.update(chunk)
            count += len(chunk)
        sender.join(timeout)
        if not sender.successful():
            raise AssertionError("sending through port %d failed: %r" % (port, sender.exception))
    finally:
        sock.close()
    return hashlib.sha256(data).hexdigest(), received.hexdigest()


def parallel_echo(port: int, connections: int, nbytes: int, timeout: float = 240.0) -> List[Tuple[str, str]]:
    """echo_through on `connections` connections at once; their digests."""
    jobs = [gevent.spawn(echo_through, port, nbytes, seed) for seed in range(connections)]
    gevent.joinall(jobs, timeout=timeout)
    failed = [j for j in jobs if not j.successful()]
    for job in jobs:
        job.kill()
    if failed:
        raise AssertionError("%d of %d transfers failed; first: %r" % (len(failed), connections,
                                                                          failed[0].exception))
    return [job.value for job in jobs]


def tunnel_pair(client_impl: str, server_impl: str, target_port: int, flags: Iterable[str] = (),
                client_flags: Iterable[str] = (), server_flags: Iterable[str] = ()) -> Tuple[Tunnel, Tunnel, int]:
    """Start a server end (KCP on a free UDP port, target 127.0.0.1:target_port)
    and a client end (TCP on a free port) with the shared flags; returns
    (server, client, the client's TCP port) once both have bound their sockets."""
    kcp_port, local_port = free_port(socket.SOCK_DGRAM), free_port()
    flags = list(flags)
    server = Tunnel(server_impl, "server", ["-l", "127.0.0.1:%d" % kcp_port, "-t", "127.0.0.1:%d" % target_port]
                    + flags + list(server_flags))
    try:
        server.wait_log("listening on")
        client = Tunnel(client_impl, "client", ["-l", "127.0.0.1:%d" % local_port, "-r", "127.0.0.1:%d" % kcp_port]
                        + flags + list(client_flags))
    except BaseException:
        server.__exit__()
        raise
    try:
        client.wait_log("listening on")  # both log it once their socket is bound
    except BaseException:
        client.__exit__()
        server.__exit__()
        raise
    return server, client, local_port
