"""What a routed socket costs: ``python -m gkcp.bench bridge [--mb N] [--runs R]``.

One upload of N MB on 127.0.0.1, four ways, measured in this (client)
process -- MB/s and CPU seconds per MB (getrusage, user+sys, so the bridge's
greenlets are counted) over the timed transfer:

  kcp native       gkcp.dial + sendall to a KCPServer sink
  kcp bridged      a plain socket routed by gkcp.monkey.patch (kcp:// route), same sink
  kcptun native    a gkcp.smux stream over KCP (the route's own pool) to gkcp's
                   tunnel server, which forwards to a TCP sink
  kcptun bridged   a plain socket routed through that kcptun:// route

The sink reads an 8-byte length, then that many bytes, and answers the
count: the timing covers delivery, not just queueing.  The servers run in
child processes (their CPU is not counted).
"""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import struct  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from typing import Any, Callable, Dict, List, Optional, Tuple  # noqa: E402

import gevent  # noqa: E402

import gkcp  # noqa: E402
import gkcp.monkey  # noqa: E402
from gkcp import _bridge  # noqa: E402
from gkcp.route import parse_target  # noqa: E402

from .tunnel import free_port  # noqa: E402

KCP: Dict[str, Any] = dict(nodelay=1, interval=10, resend=2, nc=1, sndwnd=1024, rcvwnd=1024, stream=True)
KCP_QUERY = "nodelay=1&interval=10&resend=2&nc=1&sndwnd=1024&rcvwnd=1024&stream=1"
KCPTUN_FLAGS = ["--key", "bench", "--mode", "fast3", "--nocomp", "--sndwnd", "1024", "--rcvwnd", "1024"]
KCPTUN_QUERY = "key=bench&mode=fast3&nocomp=1&sndwnd=1024&rcvwnd=1024"
_LENGTH = struct.Struct("!Q")

# The sinks, in a child process: "kcp PORT" serves KCP, "tcp PORT" TCP.
SINK = r"""
from gevent import monkey; monkey.patch_all()
import struct, sys
from gevent.server import StreamServer
from gkcp.server import KCPServer

def handle(conn, address):
    head = b""
    while len(head) < 8:
        head += conn.recv(8 - len(head))
    (left,) = struct.unpack("!Q", head)
    total = left
    while left:
        left -= len(conn.recv(min(left, 1 << 20)))
    conn.sendall(struct.pack("!Q", total))

kind, port = sys.argv[1], int(sys.argv[2])
if kind == "kcp":
    server = KCPServer(("127.0.0.1", port), handle, nodelay=1, interval=10, resend=2, nc=1, sndwnd=1024,
                       rcvwnd=1024, stream=True)
else:
    server = StreamServer(("127.0.0.1", port), handle)
server.start()
print("ready", flush=True)
server.serve_forever()
"""


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def upload(conn: Any, nbytes: int) -> Tuple[float, float]:
    """(seconds, CPU seconds) to deliver nbytes through conn."""
    chunk = os.urandom(1 << 20)
    cpu, start = _cpu(), time.perf_counter()
    conn.sendall(_LENGTH.pack(nbytes))
    left = nbytes
    while left:
        n = min(left, len(chunk))
        conn.sendall(chunk[:n] if n < len(chunk) else chunk)
        left -= n
    answer = b""
    while len(answer) < 8:
        part = conn.recv(8 - len(answer))
        if not part:
            raise ConnectionError("the sink closed before answering")
        answer += part
    if _LENGTH.unpack(answer)[0] != nbytes:
        raise AssertionError("the sink counted %d bytes, not %d" % (_LENGTH.unpack(answer)[0], nbytes))
    return time.perf_counter() - start, _cpu() - cpu


def _child(args: List[str]) -> "subprocess.Popen[str]":
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=env, text=True)


def _wait_line(proc: "subprocess.Popen[str]", text: str, timeout: float = 20) -> None:
    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if text in line:
                return
        raise RuntimeError("%r exited before printing %r" % (proc.args, text))
    gevent.with_timeout(timeout, read)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gkcp.bench bridge", description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=50, help="megabytes per upload (default 50)")
    parser.add_argument("--runs", type=int, default=3, help="uploads per way; the median is shown (default 3)")
    args = parser.parse_args(argv)
    nbytes = args.mb * 1_000_000
    kcp_port, tcp_port, tunnel_port = free_port(socket.SOCK_DGRAM), free_port(), free_port(socket.SOCK_DGRAM)
    children = [_child([sys.executable, "-c", SINK, "kcp", str(kcp_port)]),
                _child([sys.executable, "-c", SINK, "tcp", str(tcp_port)]),
                _child([sys.executable, "-m", "gkcp", "tunnel", "server", "-l", "127.0.0.1:%d" % tunnel_port,
                        "-t", "127.0.0.1:%d" % tcp_port, "--quiet"] + KCPTUN_FLAGS)]
    try:
        _wait_line(children[0], "ready")
        _wait_line(children[1], "ready")
        _wait_line(children[2], "listening on")
        kcptun_url = "kcptun://127.0.0.1:%d?%s" % (tunnel_port, KCPTUN_QUERY)
        kcptun_target = parse_target(kcptun_url)
        gkcp.monkey.patch({("10.255.1.1", 1): "kcp://127.0.0.1:%d?%s" % (kcp_port, KCP_QUERY),
                           ("10.255.1.2", 1): kcptun_url})
        ways: Dict[str, Callable[[], Any]] = {
            "kcp native": lambda: gkcp.dial(("127.0.0.1", kcp_port), **KCP),
            "kcp bridged": lambda: socket.create_connection(("10.255.1.1", 1)),
            "kcptun native": lambda: _bridge._open(kcptun_target, 5.0),
            "kcptun bridged": lambda: socket.create_connection(("10.255.1.2", 1)),
        }
        print("upload of %d MB on 127.0.0.1, median of %d runs, the ways interleaved (client process CPU)"
              % (args.mb, args.runs))
        figures: Dict[str, List[Tuple[float, float]]] = {name: [] for name in ways}
        for _ in range(args.runs):  # interleaved: a load change on the machine hits every way alike
            for name, connect in ways.items():
                conn = connect()
                try:
                    seconds, cpu = upload(conn, nbytes)
                finally:
                    conn.close()
                figures[name].append((args.mb / seconds, cpu * 1000 / args.mb))
        print("%-16s %10s %12s" % ("path", "MB/s", "CPU ms/MB"))
        for name, runs in figures.items():
            print("%-16s %10.1f %12.2f" % (name, statistics.median(f[0] for f in runs),
                                           statistics.median(f[1] for f in runs)))
        return 0
    finally:
        gkcp.monkey.unpatch()
        for child in children:
            child.kill()
            child.wait(10)


if __name__ == "__main__":
    sys.exit(main())
