"""Drive the kcp-go 5.6.1 reference peer (gkcp/bench/goref/peer) from Python.

The peer is a Go program built from Debian's kcp-go package; tests and the
benchmark tool run gkcp against it.  This module builds it (with the
project's one Go build helper, gkcp.bench.gobuild), runs it, parses its line
protocol and reproduces its payload stream in pure Python.

    path = build_peer()
    with GoPeer("listen", role="sink", nbytes=N, mode="fast3",
                sndwnd=1024, rcvwnd=1024) as srv:
        host, port = srv.address
        ... send stream_bytes(1, N) to it and read the 32-byte digest ...
        srv.wait()
        srv.result            # {'kind': 'SINK', 'n': N, 'hex': ..., 'seconds': ...}
        srv.snmp, srv.cpu     # kcp.DefaultSnmp as a dict, (user, sys) seconds

What the other side of each role must do (N = nbytes, digest = SHA-256):

    listen sink    you write N bytes, then read the 32-byte digest of them
    listen source  you write 1 byte (KCP has no handshake), read N bytes,
                   then write their 32-byte digest
    listen echo    you write bytes and read them back (N in total; with
                   nbytes=0 and idle=S the session ends after S s of silence)
    dial send      you (listening) read N bytes, then write their digest
    dial recv      you read 1 byte, write N bytes, then read the digest
    dial echo/rtt  you echo everything back

A Go side that wrote last keeps its session open until that data is
acknowledged or `linger` seconds (default 3) pass, so a listener may exit up
to `linger` seconds after printing its result if the other side never
acknowledges its final write.  Accepted sessions get the settings right
after Accept and then announce their window (tellwnd, see main.go).

Nothing here blocks in a way gevent cannot see: the peer's output goes to
unnamed temporary files that are polled, sleeping with gevent.sleep once
gevent has been imported (time.sleep otherwise; importing gkcp for the
shared gkcp.bench.wire module loads it), so waiting for a Go peer lets the
process's greenlets run, patched or not.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from typing import List, NamedTuple, Optional, Tuple

from cooperative import sleep as _sleep

# The payload, the line protocol and the Go build are shared with the
# benchmark (python -m gkcp.bench), which must not import from tests/.
from gkcp.bench.gobuild import build_go_program
from gkcp.bench.wire import (  # noqa: F401  (re-exported, public API)
    CHUNK, RESULT_KINDS, PayloadStream, parse_line, stream_bytes, stream_digest)

_POLL = 0.005  # seconds between looks at the peer's output


def build_peer() -> str:
    """Build the kcp-go reference peer unless cached; return its path.

    Raises RuntimeError (never skips) when the Go toolchain or Debian's kcp-go
    source is missing or the build fails.
    """
    return build_go_program("peer")


# ------------------------------------------------------------- line protocol

# Python keyword -> peer flag.  Booleans become -flag=true/false.
_FLAGS = {
    "nodelay": "nodelay", "interval": "interval", "resend": "resend",
    "nc": "nc", "mode": "mode", "sndwnd": "sndwnd", "rcvwnd": "rcvwnd",
    "mtu": "mtu", "stream": "stream", "acknodelay": "acknodelay",
    "writedelay": "writedelay", "ds": "ds", "ps": "ps", "crypt": "crypt",
    "key": "key", "passphrase": "pass", "sockbuf": "sockbuf",
    "linger": "linger", "idle": "idle", "seed": "seed",
    "count": "count", "size": "size", "tellwnd": "tellwnd",
    "acceptdelay": "acceptdelay", "lockcrypt": "lockcrypt",
}


def peer_args(**settings) -> List[str]:
    """Peer command-line flags for settings (keys of _FLAGS; None = leave out).

    key may be bytes (sent as hex) or a hex string; passphrase maps to -pass.
    """
    args = []
    for name, value in settings.items():
        if name not in _FLAGS:
            raise TypeError(f"unknown Go peer setting {name!r}")
        if value is None:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif name == "key" and isinstance(value, (bytes, bytearray)):
            value = bytes(value).hex()
        args.append(f"-{_FLAGS[name]}={value}")
    return args


# ---------------------------------------------------------------------- run

class PeerError(RuntimeError):
    """The peer failed: ERROR line, TIMEOUT, non-zero exit or wall-clock limit."""


class PeerTimeout(PeerError):
    pass


class GoPeer:
    """One run of `peer listen` or `peer dial` (context manager; kills on exit).

    GoPeer("listen", role="sink", nbytes=N, sessions=1, **settings)
    GoPeer("dial", addr=(host, port) or "host:port", role="send", nbytes=N, **settings)

    timeout is the peer's own deadline (-timeout, it prints TIMEOUT, exit 3);
    wall_timeout (default timeout + 15 s) is enforced here by killing it.
    """

    def __init__(self, cmd: str, *, role: str, nbytes: int = 1 << 20,
                 addr=None, sessions: int = 1, timeout: float = 60,
                 wall_timeout: Optional[float] = None,
                 binary: Optional[str] = None, **settings):
        if cmd not in ("listen", "dial"):
            raise ValueError("cmd must be 'listen' or 'dial'")
        if addr is None:
            if cmd == "dial":
                raise ValueError("dial needs addr")
            addr = "127.0.0.1:0"
        if isinstance(addr, tuple):
            addr = f"{addr[0]}:{addr[1]}"
        self.cmd, self.role, self.nbytes = cmd, role, nbytes
        self.timeout = timeout
        self.wall_timeout = timeout + 15 if wall_timeout is None else wall_timeout
        self.binary = binary or build_peer()
        self.argv = [self.binary, cmd, f"-addr={addr}", f"-role={role}",
                     f"-bytes={nbytes}", f"-timeout={timeout}"]
        if cmd == "listen":
            self.argv.append(f"-sessions={sessions}")
        self.argv += peer_args(**settings)
        self.proc: Optional[subprocess.Popen] = None
        self._out = self._err = None
        self._deadline = 0.0
        self.started_at = 0.0
        self.returncode: Optional[int] = None
        self.lines: List[str] = []
        self.events: List[dict] = []

    # -- lifecycle
    def start(self) -> "GoPeer":
        self._out = tempfile.TemporaryFile()
        self._err = tempfile.TemporaryFile()
        self.started_at = time.monotonic()
        self._deadline = self.started_at + self.wall_timeout
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                     stdout=self._out, stderr=self._err)
        if self.cmd == "listen":
            self.wait_ready()
        return self

    def __enter__(self) -> "GoPeer":
        return self.start()

    def __exit__(self, *exc):
        self.kill()
        return False

    def kill(self) -> None:
        """Kill the peer if it still runs and reap it (idempotent)."""
        p = self.proc
        if p is not None and p.poll() is None:
            p.kill()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        if p is not None and self.returncode is None:
            self.returncode = p.poll()
        self._read()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- output
    def _read(self) -> None:
        if self._out is None:
            return
        data = os.pread(self._out.fileno(), 1 << 24, 0)
        text = data.decode(errors="replace")
        complete = text[:text.rfind("\n") + 1]
        lines = complete.splitlines()
        for line in lines[len(self.lines):]:
            self.lines.append(line)
            ev = parse_line(line)
            if ev is not None:
                self.events.append(ev)

    @property
    def stderr(self) -> str:
        if self._err is None:
            return ""
        return os.pread(self._err.fileno(), 1 << 20, 0).decode(errors="replace")

    def _describe(self) -> str:
        return (f"peer {' '.join(self.argv[1:])}\n  exit {self.returncode}\n"
                "  stdout:\n    " + "\n    ".join(self.lines[-20:])
                + "\n  stderr:\n    " + self.stderr[-2000:].replace("\n", "\n    "))

    def _first(self, kind: str) -> Optional[dict]:
        for ev in self.events:
            if ev["kind"] == kind:
                return ev
        return None

    # -- waiting
    def wait_ready(self, timeout: float = 10.0) -> Tuple[str, int]:
        """Wait for READY (listen only); returns (host, port)."""
        end = min(time.monotonic() + timeout, self._deadline)
        while True:
            self._read()
            ev = self._first("READY")
            if ev is not None:
                return ev["host"], ev["port"]
            if self.proc.poll() is not None:
                self.returncode = self.proc.returncode
                self._read()
                raise PeerError("peer exited before READY\n" + self._describe())
            if time.monotonic() > end:
                self.kill()
                raise PeerTimeout("no READY from peer\n" + self._describe())
            _sleep(_POLL)

    @property
    def address(self) -> Tuple[str, int]:
        ev = self._first("READY")
        if ev is None:
            raise PeerError("peer has not reported READY")
        return ev["host"], ev["port"]

    @property
    def addr(self) -> str:
        h, p = self.address
        return f"{h}:{p}"

    def wait(self, timeout: Optional[float] = None, check: bool = True) -> "GoPeer":
        """Wait for the peer to exit (bounded by the wall-clock limit and
        timeout).  With check, raise PeerError unless it exited 0 cleanly."""
        end = self._deadline
        if timeout is not None:
            end = min(end, time.monotonic() + timeout)
        while self.proc.poll() is None:
            if time.monotonic() > end:
                self.kill()
                raise PeerTimeout("peer did not finish in time\n" + self._describe())
            _sleep(_POLL)
        self.returncode = self.proc.returncode
        self._read()
        if check:
            err = self._first("ERROR")
            if err is not None:
                raise PeerError(f"peer error: {err['msg']}\n" + self._describe())
            if self._first("TIMEOUT") is not None:
                raise PeerTimeout("peer hit its -timeout\n" + self._describe())
            if self.returncode != 0:
                raise PeerError("peer failed\n" + self._describe())
        return self

    # -- results (call after wait)
    @property
    def results(self) -> List[dict]:
        self._read()
        return [ev for ev in self.events if ev["kind"] in RESULT_KINDS]

    @property
    def result(self) -> dict:
        """The single result line (dial, or listen with one session)."""
        r = self.results
        if len(r) != 1:
            raise PeerError(f"expected one result line, got {len(r)}\n" + self._describe())
        return r[0]

    @property
    def snmp(self) -> Optional[dict]:
        ev = self._first("SNMP")
        return None if ev is None else ev["snmp"]

    @property
    def cpu(self) -> Optional[Tuple[float, float]]:
        """(user, system) CPU seconds the peer reported for itself."""
        ev = self._first("CPU")
        return None if ev is None else (ev["user"], ev["sys"])

    @property
    def cpu_seconds(self) -> Optional[float]:
        c = self.cpu
        return None if c is None else c[0] + c[1]


# ------------------------------------------------------------------ helpers

def run_pair(listen_role: str, dial_role: str, nbytes: int, *,
             sessions: int = 1, timeout: float = 60, via=None,
             listen_settings: Optional[dict] = None,
             dial_settings: Optional[dict] = None, **settings):
    """Run one Go listener and one Go dialer against each other; return
    (listener, dialer) GoPeer objects after both exited cleanly.

    settings apply to both; listen_settings/dial_settings override per side.
    via: optional callable (host, port) -> (host, port) giving the address the
    dialer should use instead (e.g. a LossyRelay in front of the listener).
    """
    ls = {**settings, **(listen_settings or {})}
    ds = {**settings, **(dial_settings or {})}
    with GoPeer("listen", role=listen_role, nbytes=nbytes, sessions=sessions,
                timeout=timeout, **ls) as srv:
        target = srv.address if via is None else via(*srv.address)
        with GoPeer("dial", addr=target, role=dial_role, nbytes=nbytes,
                    timeout=timeout, **ds) as cli:
            cli.wait()
        srv.wait()
    return srv, cli


class GoBench(NamedTuple):
    mbps: float            # dialer's MB/s (1e6 bytes/s), dial to digest received
    cpu_seconds: float     # user+sys of both processes
    listen_cpu: float      # user+sys of the sink
    dial_cpu: float        # user+sys of the sender
    seconds: float         # dialer's elapsed time
    ok: bool               # sink digest == sent digest


BENCH_DEFAULTS = dict(mode="fast3", sndwnd=1024, rcvwnd=1024)


def go_bench(nbytes: int = 50_000_000, timeout: float = 120, **settings) -> GoBench:
    """Go->Go sink transfer of nbytes with the given peer settings (defaults:
    BENCH_DEFAULTS, i.e. fast3 and 1024/1024 windows); returns GoBench."""
    s = {**BENCH_DEFAULTS, **settings}
    srv, cli = run_pair("sink", "send", nbytes, timeout=timeout, **s)
    send = cli.result
    lc, dc = srv.cpu_seconds or 0.0, cli.cpu_seconds or 0.0
    return GoBench(mbps=send["mbps"], cpu_seconds=lc + dc, listen_cpu=lc,
                   dial_cpu=dc, seconds=send["seconds"],
                   ok=send["sent"] == send["peer"] == srv.result["hex"])


if __name__ == "__main__":  # quick manual benchmark
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000_000
    print(go_bench(n))
