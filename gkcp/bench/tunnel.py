"""``python -m gkcp.bench tunnel``: gkcp's kcptun-compatible tunnel against
Debian's kcptun 20210922, same machine, same run.

For each implementation it starts a server end and a client end (two
processes: ``python -m gkcp tunnel server|client`` or kcptun-server and
kcptun-client; ``--pairs all`` adds the mixed pairs) with the same flags, then uploads N bytes (default 48 MB)
over one TCP connection: this process's uploader -> client end -> KCP ->
server end -> this process's sink, which answers with the SHA-256 of what it
received (the figure only counts when it matches).  MB/s runs from connect to
that digest; CPU is user + system time of the two tunnel processes over the
same interval (/proc/<pid>/stat before and after, so start-up never counts),
per MB moved.  The payload is random bytes (incompressible, like TLS
traffic): with compression on, both implementations try every chunk and
send it uncompressed.  ``--payload text`` sends compressible bytes instead.

Default flags: --crypt aes --mode fast3 --smuxver 2
--sndwnd 2048 --rcvwnd 2048, kcptun's other defaults (compression on, FEC
10/3, MTU 1350).  ``--flags "..."`` replaces the extra flags.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Dict, List, Optional, Tuple

from ..demo import parse_size

MB = 1e6
DEFAULT_FLAGS = "--crypt aes --key gkcp-bench --mode fast3 --smuxver 2 --sndwnd 2048 --rcvwnd 2048 --quiet"
IMPLEMENTATIONS = ("kcptun", "gkcp")
#: --pairs: (client, server) implementations measured; the first is the reference
PAIRS = {"same": [("kcptun", "kcptun"), ("gkcp", "gkcp")],
         "all": [("kcptun", "kcptun"), ("gkcp", "gkcp"), ("gkcp", "kcptun"), ("kcptun", "gkcp")]}
_TICKS = os.sysconf("SC_CLK_TCK")
_START_TIMEOUT = 20.0
_TRANSFER_TIMEOUT = 600.0
_BLOCK = 1 << 20


class BenchError(RuntimeError):
    pass


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads), from /proc."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime (fields 14, 15)


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A 127.0.0.1 port of that kind (SOCK_STREAM, SOCK_DGRAM) nobody is bound to now."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kcptun_binary(role: str) -> str:
    """Path of Debian's kcptun-client or kcptun-server; BenchError when missing."""
    path = shutil.which("kcptun-" + role) or "/usr/bin/kcptun-" + role
    if not os.access(path, os.X_OK):
        raise BenchError("kcptun-%s not found (Debian: apt-get install kcptun)" % role)
    return path


def command(impl: str, role: str) -> List[str]:
    if impl == "gkcp":
        return [sys.executable, "-m", "gkcp", "tunnel", role]
    return [kcptun_binary(role)]


class End:
    """One tunnel process; output kept in a temporary file."""

    def __init__(self, impl: str, role: str, flags: List[str]) -> None:
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(command(impl, role) + flags, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        self.name = "%s %s" % (impl, role)

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def wait_ready(self) -> None:
        end = time.monotonic() + _START_TIMEOUT
        while "listening on" not in self.output():
            if self.proc.poll() is not None or time.monotonic() > end:
                raise BenchError("%s did not start:\n%s" % (self.name, self.output()[-2000:]))
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


class Sink(threading.Thread):
    """Accepts one connection, reads nbytes, answers their SHA-256."""

    def __init__(self, nbytes: int) -> None:
        super().__init__(daemon=True)
        self.nbytes = nbytes
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(_TRANSFER_TIMEOUT)
        self.port = self.listener.getsockname()[1]
        self.error: Optional[BaseException] = None

    def run(self) -> None:
        try:
            conn, _ = self.listener.accept()
            with conn:
                conn.settimeout(_TRANSFER_TIMEOUT)
                digest = hashlib.sha256()
                buf = bytearray(_BLOCK)
                view = memoryview(buf)
                left = self.nbytes
                while left:
                    n = conn.recv_into(view[:min(left, _BLOCK)])
                    if not n:
                        raise BenchError("the sink saw EOF with %d bytes to go" % left)
                    digest.update(view[:n])
                    left -= n
                conn.sendall(digest.digest())
                conn.recv(1)  # the uploader closes after reading the digest
        except BaseException as exc:  # reported by the main thread
            self.error = exc
        finally:
            self.listener.close()


def make_block(kind: str) -> bytes:
    if kind == "random":
        return os.urandom(_BLOCK)
    words = [b"kcptun ", b"gkcp ", b"GET /index.html HTTP/1.1\r\n", b"Host: example.org\r\n", b"0123456789"]
    out = bytearray()
    rnd = __import__("random").Random(1)
    while len(out) < _BLOCK:
        out += rnd.choice(words)
    return bytes(out[:_BLOCK])


def pair_name(pair: Tuple[str, str]) -> str:
    """(client, server) implementations as the table shows them."""
    return pair[0] if pair[0] == pair[1] else "%s->%s" % pair


def upload(pair: Tuple[str, str], flags: List[str], nbytes: int, block: bytes) -> Dict[str, float]:
    """One measured upload through a fresh (client, server) pair of tunnel ends."""
    impl = pair_name(pair)
    sink = Sink(nbytes)
    kcp_port, local_port = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM)
    server = End(pair[1], "server", ["-l", "127.0.0.1:%d" % kcp_port, "-t", "127.0.0.1:%d" % sink.port] + flags)
    client = None
    try:
        server.wait_ready()
        client = End(pair[0], "client", ["-l", "127.0.0.1:%d" % local_port, "-r", "127.0.0.1:%d" % kcp_port] + flags)
        client.wait_ready()
        sink.start()
        expected = hashlib.sha256()
        for start in range(0, nbytes, _BLOCK):
            expected.update(block[:min(_BLOCK, nbytes - start)])
        cpu_before = cpu_seconds(client.proc.pid) + cpu_seconds(server.proc.pid)
        began = time.monotonic()
        with socket.create_connection(("127.0.0.1", local_port), timeout=_TRANSFER_TIMEOUT) as conn:
            view = memoryview(block)
            for start in range(0, nbytes, _BLOCK):
                conn.sendall(view[:min(_BLOCK, nbytes - start)])
            digest = b""
            while len(digest) < 32:
                piece = conn.recv(32 - len(digest))
                if not piece:
                    break
                digest += piece
            seconds = time.monotonic() - began
            cpu = cpu_seconds(client.proc.pid) + cpu_seconds(server.proc.pid) - cpu_before
        sink.join(10)
        if sink.error is not None:
            raise BenchError("%s: %s" % (impl, sink.error))
        if digest != expected.digest():
            raise BenchError("%s: the data arrived corrupted or incomplete" % impl)
        return {"mbps": nbytes / MB / seconds, "seconds": seconds, "cpu_s": cpu,
                "cpu_ms_per_mb": 1000.0 * cpu / (nbytes / MB)}
    finally:
        if client is not None:
            client.stop()
        server.stop()


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gkcp.bench tunnel", description=__doc__.split("\n\n")[0])
    parser.add_argument("--bytes", type=parse_size, default=48_000_000, help="upload size (default 48M)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per implementation; medians shown")
    parser.add_argument("--flags", default=DEFAULT_FLAGS, help="flags for all four ends (default: %(default)s)")
    parser.add_argument("--payload", choices=("random", "text"), default="random")
    parser.add_argument("--only", choices=IMPLEMENTATIONS, help="measure one implementation only")
    parser.add_argument("--pairs", choices=sorted(PAIRS), default="same",
                        help="same: gkcp+gkcp and kcptun+kcptun; all: also gkcp client->kcptun server "
                        "and kcptun client->gkcp server")
    parser.add_argument("--json", metavar="PATH", help="write every run's figures here")
    args = parser.parse_args(argv)
    if args.bytes < 1 or args.repeat < 1:
        parser.error("--bytes and --repeat must be positive")
    flags = shlex.split(args.flags)
    block = make_block(args.payload)
    pairs = [(args.only, args.only)] if args.only else PAIRS[args.pairs]
    runs: Dict[str, List[Dict[str, float]]] = {pair_name(pair): [] for pair in pairs}
    print("tunnel upload: %.0f MB over one TCP connection, payload %s, flags: %s"
          % (args.bytes / MB, args.payload, " ".join(flags)))
    try:
        for _ in range(args.repeat):
            for pair in pairs:  # interleaved, so drift on a shared machine hits all
                runs[pair_name(pair)].append(upload(pair, flags, args.bytes, block))
    except BenchError as exc:
        print("error: %s" % exc, file=sys.stderr)
        return 1
    medians = {impl: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for impl, rs in runs.items()}
    reference = medians.get("kcptun")
    print("%-15s %9s %12s %12s" % ("client->server", "MB/s", "CPU s", "CPU ms/MB"))
    for name, m in medians.items():
        ratios = ("" if reference is None or name == "kcptun" else "   (%.2fx, %.2fx)" % (
            m["mbps"] / reference["mbps"], m["cpu_ms_per_mb"] / reference["cpu_ms_per_mb"]))
        print("%-15s %9.1f %12.2f %12.2f%s" % (name, m["mbps"], m["cpu_s"], m["cpu_ms_per_mb"], ratios))
    if reference is not None and "gkcp" in medians:
        print("gkcp/kcptun: throughput %.2fx (goal >= 1.0), CPU per MB %.2fx (goal <= 1.0)"
              % (medians["gkcp"]["mbps"] / reference["mbps"],
                 medians["gkcp"]["cpu_ms_per_mb"] / reference["cpu_ms_per_mb"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"flags": flags, "bytes": args.bytes, "payload": args.payload, "runs": runs,
                       "medians": medians}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
