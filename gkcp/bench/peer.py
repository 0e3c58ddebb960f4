"""gkcp's twin of the kcp-go reference peer (tests/go/peer/main.go): the same
command line, roles, payload and output lines, so the benchmark can start
either implementation at either end and treat both alike.

    python -m gkcp.bench.peer listen -addr 127.0.0.1:0 -role sink|source|echo -bytes N -sessions K ...
    python -m gkcp.bench.peer dial -addr host:port -role send|recv|echo|rtt -bytes N [-count M -size B] ...

Flags are Go's (``-flag value``, ``-flag=value``, ``--flag``; booleans as
``-stream`` or ``-stream=false``).  Two only exist for kcp-go's sake and are
accepted without effect here: ``-tellwnd`` (gkcp applies a listener's
options before an accepted session's first packet, so there is no window to
re-announce) and ``-lockcrypt`` (the C core is single-threaded).
``-acceptdelay`` sleeps after accept, as the Go peer does.

Output (one write per line): READY, SINK, SOURCE, ECHO, EXIT, SEND, RECV,
RTT, WORK (CPU of the timed part: first session's start to last result),
CPU (getrusage of this process), SNMP (gkcp.snmp() as JSON), TIMEOUT +
STAT (exit 3), ERROR (exit 1; 2 for usage) -- see main.go for the formats.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import socket
import sys
import threading
import time
from typing import Any, Dict, List, NoReturn, Optional

import gevent

import gkcp
from gkcp.crypt import kcptun_key, new_crypt

from .wire import CHUNK, PayloadStream, percentile

MODES = {
    "default": (0, 100, 0, 0),  # kcp-go NewKCP
    "normal": (0, 40, 2, 1),    # kcptun presets
    "fast": (0, 30, 2, 1),
    "fast2": (1, 20, 2, 1),
    "fast3": (1, 10, 2, 1),
}
NODELAY_DEFAULTS = {"nodelay": 0, "interval": 100, "resend": 0, "nc": 0}

# kcptun's key cut per cipher name (the Go peer's keyCut)
KEY_CUT = {
    "aes": 32, "aes-128": 16, "aes-192": 24, "twofish": 32, "sm4": 16,
    "blowfish": 32, "cast5": 16, "3des": 24, "tea": 16, "xtea": 16,
    "salsa20": 32, "xor": 32, "none": 32,
}

_out_lock = threading.Lock()  # the -timeout thread may report while greenlets do
_progress = {"bytes_in": 0, "bytes_out": 0, "sessions_done": 0}


# ---------------------------------------------------------------- output

def emit(line: str) -> None:
    data = (line + "\n").encode()
    with _out_lock:
        os.write(1, data)


def cpu_line() -> None:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    emit("CPU %.6f %.6f" % (ru.ru_utime, ru.ru_stime))


# The timed part's CPU: benchmarks divide the work of a transfer, not the
# interpreter's start-up, by the bytes moved.
_work: Dict[str, Any] = {"begin": None, "end": None}


def mark_work_begin() -> None:
    if _work["begin"] is None:
        _work["begin"] = resource.getrusage(resource.RUSAGE_SELF)


def mark_work_end() -> None:
    _work["end"] = resource.getrusage(resource.RUSAGE_SELF)


def work_line() -> None:
    begin, end = _work["begin"], _work["end"]
    if begin is not None and end is not None:
        emit("WORK %.6f %.6f" % (end.ru_utime - begin.ru_utime, end.ru_stime - begin.ru_stime))


def snmp_line() -> None:
    emit("SNMP " + json.dumps(gkcp.snmp(), separators=(",", ":")))


def die(code: int, message: str) -> NoReturn:
    emit("ERROR " + message)
    # A greenlet cannot end the process with SystemExit; exit like Go's os.Exit.
    os._exit(code)


# ---------------------------------------------------------------- settings

def _go_bool(text: str) -> bool:
    value = text.lower()
    if value in ("1", "t", "true"):
        return True
    if value in ("0", "f", "false"):
        return False
    raise argparse.ArgumentTypeError("invalid boolean %r" % text)


class _UsageParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        die(2, "usage: " + message)


def build_parser(cmd: str) -> argparse.ArgumentParser:
    p = _UsageParser(prog="python -m gkcp.bench.peer " + cmd, allow_abbrev=False)

    def flag(name: str, **kw: Any) -> None:
        kw.setdefault("dest", name)
        p.add_argument("-" + name, "--" + name, **kw)

    def boolean(name: str, default: bool, help: str) -> None:
        flag(name, type=_go_bool, nargs="?", const=True, default=default, help=help)

    flag("addr", default="127.0.0.1:0", help="listen / dial address")
    if cmd == "listen":
        flag("role", default="sink", help="sink|source|echo")
        flag("sessions", type=int, default=1, help="sessions to serve (concurrently) before exiting")
        flag("acceptdelay", type=float, default=0.0, help="seconds to wait after accept")
        boolean("tellwnd", True, "accepted, no effect (gkcp never has kcp-go's window stall)")
    else:
        flag("role", default="send", help="send|recv|echo|rtt")
    flag("count", type=int, default=100, help="dial rtt: round trips")
    flag("size", type=int, default=64, help="dial rtt: bytes per round trip")
    flag("bytes", type=int, default=1 << 20, help="payload bytes (listen echo: 0 = until -idle / -timeout)")
    for name in NODELAY_DEFAULTS:  # default None: explicit values override -mode
        flag(name, type=int, default=None, help="SetNoDelay %s" % name)
    flag("mode", default="", help="normal|fast|fast2|fast3|default")
    flag("sndwnd", type=int, default=32, help="send window (segments)")
    flag("rcvwnd", type=int, default=32, help="receive window (segments)")
    flag("mtu", type=int, default=1400, help="MTU (UDP payload bytes)")
    boolean("stream", False, "stream mode")
    boolean("acknodelay", False, "ack no-delay")
    boolean("writedelay", False, "write delay")
    flag("ds", type=int, default=0, help="FEC data shards (0 = off)")
    flag("ps", type=int, default=0, help="FEC parity shards (0 = off)")
    flag("crypt", default="", help="kcptun cipher name; empty = no crypto header")
    flag("key", default="", help="key bytes in hex (cut per cipher like kcptun)")
    flag("pass", dest="pass_", default="", help="passphrase, kcptun derivation")
    boolean("lockcrypt", False, "accepted, no effect (single-threaded core)")
    flag("sockbuf", type=int, default=4 << 20, help="socket buffer bytes (0 = leave alone)")
    flag("timeout", type=float, default=60.0, help="overall deadline in seconds")
    flag("linger", type=float, default=3.0, help="seconds to wait for our last data to be acknowledged")
    flag("idle", type=float, default=0.0, help="per-read idle limit in seconds (0 = none)")
    flag("seed", type=int, default=1, help="payload seed")
    flag("busypoll", type=float, default=0.0, help="gkcp's busy_poll option, seconds (not a kcp-go flag)")
    return p


def parse_config(cmd: str, argv: List[str]) -> argparse.Namespace:
    c = build_parser(cmd).parse_args(argv)
    preset = dict(NODELAY_DEFAULTS)
    if c.mode and c.mode != "manual":
        if c.mode not in MODES:
            die(2, "usage: unknown -mode %r" % c.mode)
        preset = dict(zip(NODELAY_DEFAULTS, MODES[c.mode]))
    for name, value in preset.items():
        if getattr(c, name) is None:
            setattr(c, name, value)
    if min(c.bytes, c.count, c.size, getattr(c, "sessions", 0)) < 0:
        die(2, "usage: negative -bytes/-sessions/-count/-size")
    return c


def block_crypt(c: argparse.Namespace) -> Any:
    """The BlockCrypt kcptun (and the Go peer) build from -crypt/-key/-pass."""
    if not c.crypt:
        if c.key or c.pass_:
            die(1, "-key/-pass given without -crypt")
        return None
    if c.crypt not in KEY_CUT:
        die(1, "unknown -crypt %r" % c.crypt)
    if c.key and c.pass_:
        die(1, "give -key or -pass, not both")
    try:
        key = bytes.fromhex(c.key) if c.key else kcptun_key(c.pass_ or "it's a secrect")
    except ValueError as e:
        die(1, "-key: %s" % e)
    return new_crypt(c.crypt, key[:KEY_CUT[c.crypt]])


def session_options(c: argparse.Namespace) -> Dict[str, Any]:
    opts: Dict[str, Any] = dict(
        nodelay=c.nodelay, interval=c.interval, resend=c.resend, nc=c.nc,
        sndwnd=c.sndwnd, rcvwnd=c.rcvwnd, mtu=c.mtu, stream=c.stream,
        ack_nodelay=c.acknodelay, write_delay=c.writedelay,
        data_shards=c.ds, parity_shards=c.ps, sockbuf=c.sockbuf, busy_poll=c.busypoll)
    block = block_crypt(c)
    if block is not None:
        opts["block"] = block
    return opts


# ---------------------------------------------------------------- I/O helpers

def set_idle(c: argparse.Namespace, s: gkcp.Session) -> None:
    if c.idle > 0:
        s.set_read_deadline(time.time() + c.idle)


def write_stream(s: gkcp.Session, seed: int, n: int) -> bytes:
    """Write n payload bytes in the Go peer's 64 KiB writes; their SHA-256."""
    h = hashlib.sha256()
    for piece in PayloadStream(seed).chunks(n):
        h.update(piece)
        s.sendall(piece)
        _progress["bytes_out"] += len(piece)
    return h.digest()


def read_hash(c: argparse.Namespace, s: gkcp.Session, n: int) -> bytes:
    h = hashlib.sha256()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    left = n
    while left > 0:
        set_idle(c, s)
        m = s.recv_into(buf, min(CHUNK, left))
        if m == 0:
            raise EOFError("read after %d of %d bytes: session ended" % (n - left, n))
        h.update(view[:m])
        left -= m
        _progress["bytes_in"] += m
    return h.digest()


def read_full(c: argparse.Namespace, s: gkcp.Session, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        set_idle(c, s)
        piece = s.recv(n - len(out))
        if not piece:
            raise EOFError("session ended after %d of %d bytes" % (len(out), n))
        out += piece
    _progress["bytes_in"] += n
    return bytes(out)


def write_all(s: gkcp.Session, data: bytes) -> None:
    s.sendall(data)
    _progress["bytes_out"] += len(data)


def linger_and_close(c: argparse.Namespace, s: gkcp.Session) -> None:
    """Like the Go peer's waitSent: our last data acknowledged (or -linger
    passed) before closing, since the process exits right after."""
    end = time.monotonic() + c.linger
    while s.pending() and time.monotonic() < end:
        gevent.sleep(0.002)
    s.close()


# ---------------------------------------------------------------- listen

def serve(c: argparse.Namespace, s: gkcp.Session) -> None:
    mark_work_begin()
    start = time.monotonic()
    try:
        if c.role == "sink":
            digest = read_hash(c, s, c.bytes)
            seconds = time.monotonic() - start
            write_all(s, digest)
            emit("SINK %d %s %.6f" % (c.bytes, digest.hex(), seconds))
        elif c.role == "source":
            read_full(c, s, 1)
            sent = write_stream(s, c.seed, c.bytes)
            peer = read_full(c, s, 32)
            emit("SOURCE %d %s %s" % (c.bytes, sent.hex(), peer.hex()))
        else:
            serve_echo(c, s)
    except (OSError, EOFError) as e:
        die(1, "%s: %s" % (c.role, e))
    mark_work_end()
    linger_and_close(c, s)


def serve_echo(c: argparse.Namespace, s: gkcp.Session) -> None:
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    n = 0
    while c.bytes == 0 or n < c.bytes:
        set_idle(c, s)
        try:
            m = s.recv_into(buf)
        except socket.timeout:
            if c.idle > 0:  # the idle limit ends an echo session normally
                break
            raise
        if m == 0:
            break
        _progress["bytes_in"] += m
        write_all(s, view[:m])
        n += m
    emit("ECHO %d" % n)


def listen(c: argparse.Namespace) -> None:
    if c.role not in ("sink", "source", "echo"):
        die(2, "usage: listen -role must be sink|source|echo, not %r" % c.role)
    try:
        listener = gkcp.listen(c.addr, **session_options(c))
    except (OSError, ValueError, TypeError) as e:
        die(1, "listen: %s" % e)
    host, port = listener.getsockname()[:2]
    emit("READY %s:%d" % (host, port))

    workers = []
    for _ in range(c.sessions):
        session, _addr = listener.accept()
        if c.acceptdelay > 0:
            gevent.sleep(c.acceptdelay)
        workers.append(gevent.spawn(_serve_counted, c, session))
    gevent.joinall(workers, raise_error=True)
    listener.close()
    emit("EXIT")


def _serve_counted(c: argparse.Namespace, s: gkcp.Session) -> None:
    serve(c, s)
    _progress["sessions_done"] += 1


# ---------------------------------------------------------------- dial

def dial(c: argparse.Namespace) -> None:
    if c.role not in ("send", "recv", "echo", "rtt"):
        die(2, "usage: dial -role must be send|recv|echo|rtt, not %r" % c.role)
    opts = session_options(c)
    mark_work_begin()
    start = time.monotonic()
    try:
        s = gkcp.dial(c.addr, **opts)
    except (OSError, ValueError, TypeError) as e:
        die(1, "dial: %s" % e)
    try:
        if c.role == "send":
            sent = write_stream(s, c.seed, c.bytes)
            peer = read_full(c, s, 32)
            elapsed = time.monotonic() - start
            emit("SEND %d %s %s %.6f %.3f" % (c.bytes, sent.hex(), peer.hex(), elapsed,
                                              c.bytes / elapsed / 1e6))
        elif c.role == "recv":
            write_all(s, b"\x01")
            digest = read_hash(c, s, c.bytes)
            elapsed = time.monotonic() - start
            write_all(s, digest)
            emit("RECV %d %s %.6f" % (c.bytes, digest.hex(), elapsed))
        elif c.role == "echo":
            writer = gevent.spawn(write_stream, s, c.seed, c.bytes)
            got = read_hash(c, s, c.bytes)
            sent = writer.get()
            emit("ECHO %d %s %s %.6f" % (c.bytes, sent.hex(), got.hex(), time.monotonic() - start))
        else:
            rtt(c, s)
    except (OSError, EOFError) as e:
        die(1, "%s: %s" % (c.role, e))
    mark_work_end()
    linger_and_close(c, s)


def rtt(c: argparse.Namespace, s: gkcp.Session) -> None:
    if c.count == 0 or c.size == 0:
        die(2, "usage: rtt needs -count and -size > 0")
    stream = PayloadStream(c.seed)
    samples = []
    for i in range(c.count):
        msg = stream.read(c.size)
        t0 = time.perf_counter()
        write_all(s, msg)
        back = read_full(c, s, c.size)
        samples.append((time.perf_counter() - t0) * 1e6)
        if back != msg:
            die(1, "rtt: round %d echoed different bytes" % i)
    samples.sort()
    emit("RTT %d %.1f %.1f" % (c.count, percentile(samples, 50), percentile(samples, 99)))


# ---------------------------------------------------------------- main

def _on_timeout() -> None:
    emit("TIMEOUT")
    emit("STAT bytes_in=%(bytes_in)d bytes_out=%(bytes_out)d sessions_done=%(sessions_done)d" % _progress)
    cpu_line()
    snmp_line()
    os._exit(3)


USAGE = """usage:
  python -m gkcp.bench.peer listen -addr 127.0.0.1:0 -role sink|source|echo -bytes N -sessions K [common flags]
  python -m gkcp.bench.peer dial -addr host:port -role send|recv|echo|rtt -bytes N [-count M -size B] [common flags]
("... listen -h" lists the flags with defaults)"""


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in ("listen", "dial"):
        print(USAGE, file=sys.stderr)
        die(2, "usage: missing subcommand" if not argv else "usage: unknown subcommand %r" % argv[0])
    cmd = argv[0]
    c = parse_config(cmd, argv[1:])
    if c.timeout > 0:
        # A real thread, so the deadline fires even if a greenlet hogs the hub.
        timer = threading.Timer(c.timeout, _on_timeout)
        timer.daemon = True
        timer.start()
    (listen if cmd == "listen" else dial)(c)
    work_line()
    cpu_line()
    snmp_line()
    # Exit like the Go peer: at once, without waiting for lingering sessions.
    os._exit(0)


if __name__ == "__main__":
    main()
